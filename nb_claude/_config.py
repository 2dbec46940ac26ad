"""Settings, defaults and the API key. The environment is read here only."""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import secrets
from dataclasses import dataclass, field, fields
from typing import Any, cast
from urllib.parse import urlsplit

from ._errors import ConfigError

__all__ = ["Settings", "Secret", "settings", "get_api_key", "set_api_key", "redact"]

DEFAULT_BASE_URL = "https://api.aimlapi.com/v1"
DEFAULT_MODEL = "anthropic/claude-opus-4-8"
DEFAULT_MAX_TOKENS = 8192
DEFAULT_TIMEOUT = 600.0
DEFAULT_FIRST_BYTE_TIMEOUT = 60.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_MAX_RETRIES = 2
DEFAULT_REPLAY_PATH = "nb_claude_replay.jsonl"
DEFAULT_MAX_IMAGE_EDGE = 1568
DEFAULT_DATAFRAME_BUDGET = 6000
CHARS_PER_TOKEN = 4  # how every estimate turns text into tokens
DEFAULT_CONTEXT_BUDGET = 6000  # tokens of notebook context a prompt may carry
DEFAULT_TOOL_RESULT_BUDGET = 20_000  # characters of text a tool result may send
DEFAULT_MAX_STEPS = 10
DEFAULT_UPDATES_PER_SECOND = 10.0
DEFAULT_BATCH_CONFIRM_USD = 1.00  # a batch estimated above this asks before sending
DEFAULT_CONTEXT = "since-last"  # which cells a prompt carries: since-last, none, all or N
DEFAULT_CONTEXT_BUDGET = 6_000  # tokens of notebook context a prompt may carry
CONTEXT_WORDS = ("since-last", "none", "all")
MAX_OUTPUT_TOKENS = 128_000
CONTEXT_TOKENS = 1_000_000
MIN_THINKING_BUDGET = 1024
REPLAY_TOOLS = ("replay", "run")
REPLAY_MODES = ("auto", "replay", "record", "off")
_MODE_ALIASES = {
    **{mode: mode for mode in REPLAY_MODES},
    **dict.fromkeys(("1", "true", "yes", "on", "enabled", "enable"), "auto"),
    **dict.fromkeys(("0", "false", "no", "none", "disabled", "disable"), "off"),
}

# US dollars per million input / output tokens, for estimates when the service
# does not report what a reply cost.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "claude-opus-4-8": (5.0, 25.0),
}

ENV_KEY = "AIMLAPI_KEY"


def _number(name: str, value: object, *, integer: bool = False, minimum: float = 0.0,
            strict: bool = True, maximum: float | None = None) -> None:
    """A real number (an int if `integer`) above (or at, if not `strict`) `minimum`."""
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    ok = False
    if isinstance(value, kinds) and not isinstance(value, bool):
        number = float(cast(float, value))
        ok = math.isfinite(number) and (number > minimum if strict else number >= minimum) \
            and (maximum is None or number <= maximum)
    if not ok:
        kind = "a whole number" if integer else "a number"
        bound = f"above {minimum:g}" if strict else f"at least {minimum:g}"
        upto = f" and at most {maximum:g}" if maximum is not None else ""
        raise ConfigError(f"{name} must be {kind} {bound}{upto}, not {value!r}")


def check_base_url(value: object, name: str = "base_url") -> None:
    """An http(s) URL with a host, e.g. https://api.aimlapi.com/v1."""
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name} must be an http(s) URL such as {DEFAULT_BASE_URL}, "
                          f"not {value!r}")


def _prices(value: object) -> None:
    message = ("prices must map each model to (input, output) US dollars per million tokens, "
               "e.g. {'claude-opus-4-8': (5.0, 25.0)}")
    if not isinstance(value, dict):
        raise ConfigError(message)
    for model, pair in value.items():
        if not isinstance(model, str) or not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ConfigError(message)
        for price in pair:
            if isinstance(price, bool) or not isinstance(price, (int, float)) \
                    or not math.isfinite(price) or price < 0:
                raise ConfigError(message)


def _context_spec(value: object) -> None:
    """since-last, none, all, or a count of cells (0 or more)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return
    if isinstance(value, str) and (value.strip().lower() in CONTEXT_WORDS
                                   or value.strip().isdigit()):
        return
    raise ConfigError(f"context must be 'since-last', 'none', 'all' or a number of cells, "
                      f"not {value!r}")


def resolve_mode(value: str | None, *, default: str = "auto") -> str:
    """Normalise a replay mode from a flag, config or environment value."""
    text = (value or "").strip().lower() or default.strip().lower()
    mode = _MODE_ALIASES.get(text)
    if mode is None:
        raise ConfigError(f"unknown replay mode {value if value else default!r}: "
                          f"use one of {', '.join(REPLAY_MODES)}")
    return mode


def _replay_mode(value: object) -> None:
    if not isinstance(value, str):
        raise ConfigError(f"replay_mode must be auto, replay, record or off, not {value!r}")
    try:
        resolve_mode(value)
    except ConfigError as exc:
        raise ConfigError(f"replay_mode: {exc}") from None


def _one_of(name: str, choices: tuple[str, ...]) -> Any:
    def check(value: object) -> None:
        if value not in choices:
            raise ConfigError(f"{name} must be {' or '.join(repr(c) for c in choices)}, "
                              f"not {value!r}")
    return check


def _kind(name: str, kind: type, what: str) -> Any:
    def check(value: object) -> None:
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"{name} must be {what}, not {value!r}")
    return check


def _text(name: str) -> Any:
    def check(value: object) -> None:
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{name} must be a non-empty string, not {value!r}")
    return check


_CHECKS: dict[str, Any] = {
    "model": _text("model"),
    "base_url": check_base_url,
    "max_tokens": lambda v: _number("max_tokens", v, integer=True, minimum=1, strict=False,
                                    maximum=MAX_OUTPUT_TOKENS),
    "system": _kind("system", str, "a string"),
    "stream": _kind("stream", bool, "True or False"),
    "timeout": lambda v: _number("timeout (seconds)", v),
    "connect_timeout": lambda v: _number("connect_timeout (seconds)", v),
    "first_byte_timeout": lambda v: _number("first_byte_timeout (seconds)", v),
    "max_retries": lambda v: _number("max_retries", v, integer=True, strict=False),
    "replay_mode": _replay_mode,
    "replay_path": _text("replay_path"),
    "replay_tools": _one_of("replay_tools", REPLAY_TOOLS),
    "max_image_edge": lambda v: _number("max_image_edge (pixels)", v, integer=True, minimum=1,
                                        strict=False),
    "dataframe_budget": lambda v: _number("dataframe_budget (characters)", v, integer=True,
                                          minimum=1, strict=False),
    "max_steps": lambda v: _number("max_steps", v, integer=True, minimum=1, strict=False),
    "confirm_tools": _kind("confirm_tools", bool, "True or False"),
    "updates_per_second": lambda v: _number("updates_per_second", v),
    "prices": _prices,
    "context": _context_spec,
    "context_budget": lambda v: _number("context_budget (tokens)", v, integer=True, minimum=1,
                                        strict=False),
    "batch_confirm_usd": lambda v: _number("batch_confirm_usd (US dollars)", v, strict=False),
}


@dataclass(repr=False, eq=False)  # two fewer generated methods: %load_ext stays cheap
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
    first_byte_timeout: float = DEFAULT_FIRST_BYTE_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    replay_mode: str = field(default_factory=lambda: os.environ.get("NB_CLAUDE_REPLAY") or "auto")
    replay_path: str = DEFAULT_REPLAY_PATH
    replay_tools: str = "replay"  # "replay": recorded tool results; "run": run them again
    max_image_edge: int = DEFAULT_MAX_IMAGE_EDGE
    dataframe_budget: int = DEFAULT_DATAFRAME_BUDGET
    max_steps: int = DEFAULT_MAX_STEPS
    confirm_tools: bool = False
    updates_per_second: float = DEFAULT_UPDATES_PER_SECOND
    prices: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(DEFAULT_PRICES))
    context: str | int = DEFAULT_CONTEXT
    context_budget: int = DEFAULT_CONTEXT_BUDGET
    batch_confirm_usd: float = DEFAULT_BATCH_CONFIRM_USD

    @staticmethod
    def validate(name: str, value: object) -> None:
        """Raise ConfigError (one line saying what is allowed) if `value` is not valid for `name`."""
        check = _CHECKS.get(name)
        if check is None:
            if name not in {f.name for f in fields(Settings)}:
                raise ConfigError(f"unknown setting {name!r}")
            return
        check(value)

    def update(self, **values: object) -> None:
        """Set several settings at once; nothing changes if any value is invalid."""
        names = {f.name for f in fields(self)}
        for name, value in values.items():
            if name not in names:
                raise AttributeError(f"unknown setting {name!r}")
            self.validate(name, value)
        for name, value in values.items():
            setattr(self, name, value)

    def price_for(self, model: str) -> tuple[float, float] | None:
        return self.prices.get(model) or self.prices.get(model.rsplit("/", 1)[-1])


settings = Settings()


# --------------------------------------------------------------------------- the key

_SALT = secrets.token_bytes(16)  # per process: a digest cannot be checked against guesses


class Secret:
    """A key held masked (XOR with a random pad): no repr, str, pickle or attribute shows it.

    `reveal()` gives the clear text; call it only where the text is used at once.
    `digest` identifies the key (for caches) without revealing it.
    """

    __slots__ = ("_pad", "_masked", "digest")

    def __init__(self, value: str) -> None:
        raw = value.encode("utf-8", "surrogatepass")
        pad = secrets.token_bytes(len(raw))
        self._pad = pad
        self._masked = bytes(a ^ b for a, b in zip(raw, pad, strict=True))
        self.digest = hmac.new(_SALT, raw, hashlib.sha256).hexdigest()[:32]

    def reveal(self) -> str:
        return bytes(a ^ b for a, b in zip(self._masked, self._pad, strict=True)).decode(
            "utf-8", "surrogatepass")

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __bool__(self) -> bool:
        return bool(self._masked)

    def __len__(self) -> int:
        return len(self._masked)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self.digest, other.digest)

    def __hash__(self) -> int:
        return hash(self.digest)

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled or copied")


_api_key: Secret | None = None
_env_key: tuple[str, Secret] | None = None  # (digest of $AIMLAPI_KEY, the same as a Secret)


def set_api_key(key: str | Secret | None) -> None:
    """Keep the key in this process's memory only (masked)."""
    global _api_key
    if isinstance(key, Secret):
        _api_key = key or None
        return
    key = key.strip() if key else ""
    _api_key = Secret(key) if key else None


def get_api_key() -> Secret | None:
    """The key from %claude_login, else from $AIMLAPI_KEY, as a Secret; None if there is none."""
    return _api_key if _api_key is not None else _env_secret()


def _env_secret() -> Secret | None:
    global _env_key
    value = (os.environ.get(ENV_KEY) or "").strip()
    if not value:
        return None
    digest = hmac.new(_SALT, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:32]
    if _env_key is None or _env_key[0] != digest:
        _env_key = (digest, Secret(value))
    return _env_key[1]


# A string that can be a key: long, no whitespace, only the characters keys are made of.
_KEY_LIKE = re.compile(r"[A-Za-z0-9._~+/=:-]{16,}")


def redact(text: str) -> str:
    """Remove the API key from text that may reach a user or a file.

    Only a value that can be a key is looked for, so that a short or word-like
    value (a demo key such as "stand-in") never blanks out ordinary prose.
    """
    for secret in (_api_key, _env_secret()):
        if secret is not None and _KEY_LIKE.fullmatch(secret.reveal()):
            text = text.replace(secret.reveal(), "***")
    return text
