"""Settings, defaults and the API key. The environment is read here only."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

__all__ = ["Settings", "settings", "get_api_key", "set_api_key", "redact"]

DEFAULT_BASE_URL = "https://api.aimlapi.com/v1"
DEFAULT_MODEL = "anthropic/claude-opus-4-8"
DEFAULT_MAX_TOKENS = 8192
DEFAULT_TIMEOUT = 600.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_MAX_RETRIES = 2
DEFAULT_REPLAY_PATH = "nb_claude_replay.jsonl"
DEFAULT_MAX_IMAGE_EDGE = 1568
DEFAULT_DATAFRAME_BUDGET = 6000
DEFAULT_MAX_STEPS = 10
DEFAULT_UPDATES_PER_SECOND = 10.0
MAX_OUTPUT_TOKENS = 128_000
CONTEXT_TOKENS = 1_000_000
MIN_THINKING_BUDGET = 1024

# US dollars per million input / output tokens, for estimates when the service
# does not report what a reply cost.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "claude-opus-4-8": (5.0, 25.0),
}

ENV_KEY = "AIMLAPI_KEY"


@dataclass
class Settings:
    """Process-wide defaults; `%config ClaudeMagics.*` writes through to these."""

    model: str = field(default_factory=lambda: os.environ.get("NB_CLAUDE_MODEL") or DEFAULT_MODEL)
    base_url: str = field(
        default_factory=lambda: os.environ.get("NB_CLAUDE_BASE_URL") or DEFAULT_BASE_URL)
    max_tokens: int = DEFAULT_MAX_TOKENS
    system: str = ""
    stream: bool = True
    timeout: float = DEFAULT_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    replay_mode: str = field(default_factory=lambda: os.environ.get("NB_CLAUDE_REPLAY") or "auto")
    replay_path: str = DEFAULT_REPLAY_PATH
    max_image_edge: int = DEFAULT_MAX_IMAGE_EDGE
    dataframe_budget: int = DEFAULT_DATAFRAME_BUDGET
    max_steps: int = DEFAULT_MAX_STEPS
    confirm_tools: bool = False
    updates_per_second: float = DEFAULT_UPDATES_PER_SECOND
    prices: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(DEFAULT_PRICES))

    def update(self, **values: object) -> None:
        names = {f.name for f in fields(self)}
        for name, value in values.items():
            if name not in names:
                raise AttributeError(f"unknown setting {name!r}")
            setattr(self, name, value)

    def price_for(self, model: str) -> tuple[float, float] | None:
        return self.prices.get(model) or self.prices.get(model.rsplit("/", 1)[-1])


settings = Settings()

_api_key: str | None = None


def set_api_key(key: str | None) -> None:
    """Keep the key in this process's memory only."""
    global _api_key
    _api_key = key.strip() if key else None


def get_api_key() -> str | None:
    return _api_key or os.environ.get(ENV_KEY) or None


def redact(text: str) -> str:
    """Remove the API key from text that may reach a user or a file."""
    for key in {_api_key, os.environ.get(ENV_KEY)}:
        if key and len(key) >= 4 and key in text:
            text = text.replace(key, "***")
    return text
