"""A request's options: defaults from the settings, checked against the service's limits.

Everything is validated here, before anything is sent; the wire form of the
options is `_wire.request_body`'s business.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._config import (
    DEFAULT_MODEL,
    MAX_OUTPUT_TOKENS,
    MIN_THINKING_BUDGET,
    REPLAY_TOOLS,
    Settings,
    resolve_mode,
)
from ._errors import ConfigError
from ._wire import request_body

if TYPE_CHECKING:
    from ._tools import Tool

__all__ = ["Options", "Confirmer", "resolve_options", "check_text"]

Confirmer = Callable[[str, str], bool]
"""Asked before a tool call runs: `confirmer(name, arguments_json) -> run it?`."""

_MODEL_RE = re.compile(r"^(anthropic/)?claude-[a-z0-9][a-z0-9.\-]*$")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")

# A reply may hold this many characters per max_tokens token (text, thinking and
# tool-call arguments together) before the stream counts as runaway.
_CHARS_PER_TOKEN = 16
_REPLY_SLACK_CHARS = 1024


@dataclass
class Options:
    """A request's options after defaults and validation."""

    model: str
    max_tokens: int
    system: str
    stop: list[str]
    stream: bool
    thinking: str | int | None
    tools: list[Tool]
    tool_choice: str | None
    max_steps: int
    confirm: bool
    replay: str
    replay_tools: str = "replay"
    confirmer: Confirmer | None = None  # None: the one the caller of the turn passes
    confirm_explicit: bool = False  # the caller chose confirm=..., not the settings

    @property
    def max_reply_chars(self) -> int:
        return _CHARS_PER_TOKEN * self.max_tokens + _REPLY_SLACK_CHARS

    def body(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        return request_body(messages, model=self.model, max_tokens=self.max_tokens,
                            system=self.system, stop=self.stop, tools=self.tools,
                            choice=self.tool_choice, thinking=self.thinking)

    def summary(self) -> dict[str, Any]:
        return {"model": self.model, "max_tokens": self.max_tokens, "system": self.system,
                "stop": self.stop, "thinking": self.thinking,
                "tools": [t.name for t in self.tools], "tool_choice": self.tool_choice}


def resolve_options(cfg: Settings, *, model: str | None = None,
                    max_tokens: int | None = None, system: str | None = None,
                    stop: str | Sequence[str] | None = None, stream: bool | None = None,
                    thinking: bool | int | str | None = None, tools: object = None,
                    tool_choice: str | None = None, max_steps: int | None = None,
                    confirm: bool | Confirmer | None = None, replay: str | None = None,
                    replay_tools: str | None = None,
                    namespace: Mapping[str, object] | None = None) -> Options:
    """Validate options against the service's limits (with `cfg`'s defaults), before
    anything is sent.

    `confirm` is True/False, or a confirmer `(name, arguments) -> bool` that
    asks in the caller's own way (and turns confirmation on).
    """
    model = (model or cfg.model).strip()
    if not _MODEL_RE.match(model):
        raise ConfigError(f"unknown model {model!r}: use a Claude model id such as "
                          f"{DEFAULT_MODEL}")
    max_tokens = cfg.max_tokens if max_tokens is None else max_tokens
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or \
            not 1 <= max_tokens <= MAX_OUTPUT_TOKENS:
        raise ConfigError(f"--max-tokens must be between 1 and {MAX_OUTPUT_TOKENS:,}, "
                          f"not {max_tokens}")
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    for item in stops:
        if not isinstance(item, str) or not item.strip():
            raise ConfigError("a stop sequence must be non-empty text")
        check_text(item, "stop sequence")
    system = cfg.system if system is None else system
    check_text(system, "system prompt")
    if thinking is True:
        thinking = "adaptive"
    elif thinking is False or thinking is None:
        thinking = None
    elif isinstance(thinking, str) and thinking.strip().isdigit():
        thinking = int(thinking)
    if isinstance(thinking, int):
        if thinking < MIN_THINKING_BUDGET or thinking >= max_tokens:
            raise ConfigError(
                f"--thinking budget must be at least {MIN_THINKING_BUDGET} and below "
                f"--max-tokens ({max_tokens}), not {thinking}")
    elif thinking not in (None, "adaptive", "disabled"):
        raise ConfigError(f"--thinking takes a token budget (>= {MIN_THINKING_BUDGET}) or "
                          f"nothing, not {thinking!r}")
    tool_list: list[Tool] = []
    if tools:
        from ._tools import ToolError, resolve_tools, tool_choice_wire

        try:
            tool_list = resolve_tools(tools, namespace)  # type: ignore[arg-type]
            tool_choice_wire(tool_choice, tool_list)
        except ToolError as exc:
            raise ConfigError(str(exc)) from None
    elif tool_choice not in (None, "none", "auto"):
        raise ConfigError("--tool-choice needs --tools")
    steps = cfg.max_steps if max_steps is None else max_steps
    if not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"--max-steps must be 1 or more, not {steps}")
    mode = resolve_mode(replay or cfg.replay_mode)
    chosen = replay_tools or cfg.replay_tools or "replay"
    rerun = chosen.strip().lower() if isinstance(chosen, str) else chosen
    if rerun not in REPLAY_TOOLS:
        raise ConfigError(f"--replay-tools takes replay (use the recorded tool results) or "
                          f"run (run them again, asking first), not {chosen!r}")
    confirmer = confirm if callable(confirm) else None
    return Options(model=model, max_tokens=max_tokens, system=system, stop=stops,
                   stream=cfg.stream if stream is None else bool(stream),
                   thinking=thinking, tools=tool_list, tool_choice=tool_choice,
                   max_steps=steps,
                   confirm=bool(cfg.confirm_tools if confirm is None else confirm),
                   replay=mode, replay_tools=rerun, confirmer=confirmer,
                   confirm_explicit=confirm is not None)


def check_text(text: str, what: str) -> None:
    """Refuse text that cannot be sent as UTF-8 JSON, naming where the bad character is."""
    found = _SURROGATE_RE.search(text) if isinstance(text, str) else None
    if found is not None:
        raise ConfigError(f"the {what} has a lone surrogate (\\u{ord(found.group()):04x}) at "
                          f"character {found.start() + 1}: delete it or paste the text again")
