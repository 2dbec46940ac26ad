"""A conversation: its turns, the requests they make, and what they cost.

The magics and the chat panel are two front ends over the same Session. A
turn enters the history only when its reply is complete or explicitly marked
partial; a failed request leaves the history as it was.
"""

from __future__ import annotations

import functools
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._config import (
    CONTEXT_TOKENS,
    MAX_OUTPUT_TOKENS,
    MIN_THINKING_BUDGET,
    REPLAY_TOOLS,
    Settings,
    get_api_key,
    resolve_mode,
    settings,
)
from ._errors import Cancelled, ConfigError, NbClaudeError, ReplayMissError, StreamError
from ._stream import Reply, Usage, accumulate, reply_from_response

if TYPE_CHECKING:
    import httpx

    from ._client import CancelToken, Client
    from ._content import Attachment
    from ._tools import Tool, ToolResult

__all__ = ["Session", "Turn", "Step", "get_session", "sessions"]

_MODEL_RE = re.compile(r"^(anthropic/)?claude-[a-z0-9][a-z0-9.\-]*$")

Listener = Callable[[str, "Turn | None"], None]
Confirmer = Callable[[str, str], bool]
"""Asked before a tool call runs: `confirmer(name, arguments_json) -> run it?`."""

# The stand-in server (nb_claude.testing) marks its responses with this header: its
# costs are made up, so no money was spent.
STAND_IN_HEADER = "x-nb-claude-stand-in"

# A reply may hold this many characters per max_tokens token (text, thinking and
# tool-call arguments together) before the stream counts as runaway.
_CHARS_PER_TOKEN = 16
_REPLY_SLACK_CHARS = 1024
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_NO_STDIN = ("no way to ask: this front end has no input box; pass --confirm only in "
             "interactive notebooks")
_NOT_RUN = "not run: interrupted"


@dataclass
class Step:
    """One request of a turn: the reply and the tool results sent back after it.

    `offline`: the reply came from the offline stand-in, so its cost was never spent.
    `recorded`: the replay file this live reply was appended to, if any.
    """

    reply: Reply
    results: list[ToolResult] = field(default_factory=list)
    offline: bool = False
    recorded: str = ""

    def __repr__(self) -> str:
        return f"Step(reply={self.reply!r}, results={len(self.results)})"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"reply": self.reply.to_dict(),
                                "results": [r.to_dict() for r in self.results]}
        if self.offline:
            data["offline"] = True
        if self.recorded:
            data["recorded"] = self.recorded
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Step:
        from ._tools import ToolResult

        return cls(Reply.from_dict(data["reply"]),
                   [ToolResult.from_dict(r) for r in data.get("results", [])],
                   offline=bool(data.get("offline", False)),
                   recorded=str(data.get("recorded") or ""))


@dataclass
class Turn:
    """A prompt (with attachments) and everything the model answered to it."""

    prompt: str
    attachments: list[Attachment] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    cell_id: str | None = None
    source: str = "python"
    options: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    note: str = ""
    _wire: list[dict[str, Any]] | None = field(default=None, repr=False, compare=False)

    def __repr__(self) -> str:
        prompt = self.prompt if len(self.prompt) <= 40 else self.prompt[:37] + "..."
        return (f"Turn(prompt={prompt!r}, attachments={len(self.attachments)}, "
                f"steps={len(self.steps)}, source={self.source!r}, cell_id={self.cell_id!r})")

    @property
    def reply(self) -> Reply:
        """The last reply of the turn (the answer, after any tool calls)."""
        return self.steps[-1].reply if self.steps else Reply()

    @property
    def text(self) -> str:
        return "\n\n".join(s.reply.text for s in self.steps if s.reply.text)

    @property
    def usage(self) -> Usage:
        total = Usage()
        for step in self.steps:
            total = total + step.reply.usage
        return total

    @property
    def interrupted(self) -> bool:
        return any(s.reply.interrupted for s in self.steps)

    @property
    def offline(self) -> bool:
        """Some reply of this turn came from the offline stand-in (no money was spent)."""
        return any(s.offline for s in self.steps)

    def user_content(self) -> str | list[dict[str, Any]]:
        if not self.attachments:
            return self.prompt
        blocks = [a.to_block() for a in self.attachments]
        if self.prompt:
            blocks.append({"type": "text", "text": self.prompt})
        return blocks

    def wire(self) -> list[dict[str, Any]]:
        """The messages this turn contributes to later requests (cached once complete)."""
        if self._wire is not None:
            return self._wire
        messages: list[dict[str, Any]] = [{"role": "user", "content": self.user_content()}]
        for step in self.steps:
            answered = bool(step.results)
            blocks = _assistant_blocks(step.reply, include_tools=answered)
            if not blocks:
                break
            messages.append({"role": "assistant", "content": _simplify(blocks)})
            if answered:
                messages.append({"role": "user", "content": [r.to_block() for r in step.results]})
            else:
                break
        if len(messages) == 1:
            return []  # nothing was answered: the prompt alone is not sent again
        return messages

    def _freeze(self) -> None:
        self._wire = None
        self._wire = self.wire()

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "attachments": [a.to_dict() for a in self.attachments],
            "steps": [s.to_dict() for s in self.steps],
            "cell_id": self.cell_id,
            "source": self.source,
            "options": self.options,
            "created": self.created,
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Turn:
        from ._content import Attachment

        turn = cls(
            prompt=data.get("prompt", ""),
            attachments=[Attachment.from_dict(a) for a in data.get("attachments", [])],
            steps=[Step.from_dict(s) for s in data.get("steps", [])],
            cell_id=data.get("cell_id"),
            source=data.get("source", "python"),
            options=dict(data.get("options") or {}),
            created=float(data.get("created") or time.time()),
            note=data.get("note", ""),
        )
        turn._freeze()
        return turn


def _assistant_blocks(reply: Reply, *, include_tools: bool) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if reply.thinking and reply.thinking_signature:
        blocks.append({"type": "thinking", "thinking": reply.thinking,
                       "signature": reply.thinking_signature})
    text = reply.text.rstrip()
    if text:
        blocks.append({"type": "text", "text": text})
    if include_tools:
        for call in reply.tool_calls:
            try:
                arguments = call.input
            except ValueError:
                arguments = {}
            blocks.append({"type": "tool_use", "id": call.id, "name": call.name,
                           "input": arguments})
    return blocks


def _simplify(blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    if len(blocks) == 1 and blocks[0]["type"] == "text":
        return blocks[0]["text"]
    return blocks


def _as_blocks(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def wire_messages(turns: Iterable[Turn]) -> list[dict[str, Any]]:
    """All turns as one alternating user/assistant list (same-role neighbours merged)."""
    merged: list[dict[str, Any]] = []
    for turn in turns:
        for message in turn.wire():
            if merged and merged[-1]["role"] == message["role"]:
                merged[-1] = {"role": message["role"],
                              "content": _as_blocks(merged[-1]["content"])
                              + _as_blocks(message["content"])}
            else:
                merged.append(message)
    return merged


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
    confirmer: Confirmer | None = None  # None: ask on the cell's stdin
    confirm_explicit: bool = False  # the caller chose confirm=..., not the settings

    @property
    def max_reply_chars(self) -> int:
        return _CHARS_PER_TOKEN * self.max_tokens + _REPLY_SLACK_CHARS

    def body(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "max_tokens": self.max_tokens,
                                "messages": messages}
        if self.system:
            body["system"] = self.system
        if self.stop:
            body["stop_sequences"] = list(self.stop)
        if self.tools:
            from ._tools import tool_choice_wire

            body["tools"] = [t.to_wire() for t in self.tools]
            choice = tool_choice_wire(self.tool_choice, self.tools)
            if choice is not None:
                body["tool_choice"] = choice
        if self.thinking == "adaptive":
            body["thinking"] = {"type": "adaptive"}
        elif self.thinking == "disabled":
            body["thinking"] = {"type": "disabled"}
        elif isinstance(self.thinking, int):
            body["thinking"] = {"type": "enabled", "budget_tokens": self.thinking}
        return body

    def summary(self) -> dict[str, Any]:
        return {"model": self.model, "max_tokens": self.max_tokens, "system": self.system,
                "stop": self.stop, "thinking": self.thinking,
                "tools": [t.name for t in self.tools], "tool_choice": self.tool_choice}


class _class_or_instance:
    """A method that receives the class and, when called on an instance, that instance."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        self.__doc__ = func.__doc__

    def __get__(self, obj: Any, cls: type) -> Callable[..., Any]:
        return functools.partial(self.func, cls, obj)


class Session:
    """One conversation shared by the magics, the chat panel and Python code."""

    def __init__(self, name: str = "default", *, config: Settings | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.name = name
        self.settings = config if config is not None else settings
        self.history: list[Turn] = []
        self.transport = transport
        self._lock = threading.RLock()
        self._listeners: list[Listener] = []
        self._clients: dict[tuple[Any, ...], Client] = {}
        self._active: CancelToken | None = None
        self.busy = False

    def __repr__(self) -> str:
        return f"Session(name={self.name!r}, turns={len(self.history)})"

    # -- observing --------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(event, turn)` on "start", "update", "end", "error" and "reset"."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _emit(self, event: str, turn: Turn | None) -> None:
        for listener in list(self._listeners):
            try:
                listener(event, turn)
            except Exception:  # a broken view must never break a request
                import logging

                logging.getLogger("nb_claude").exception("session listener failed")

    # -- state ------------------------------------------------------------
    @property
    def messages(self) -> list[dict[str, Any]]:
        """The wire messages the next request would carry before its new prompt."""
        return wire_messages(self.history)

    @property
    def usage(self) -> Usage:
        total = Usage()
        for turn in self.history:
            total = total + turn.usage
        return total

    def reset(self) -> None:
        """Forget the conversation, stopping a reply in flight first (from any thread)."""
        # The reply's thread holds the lock until its turn is closed; stop it (and
        # any request that takes the lock next) rather than wait for it to end.
        while not self._lock.acquire(timeout=0.05):
            self.stop()
        try:
            self.history.clear()
        finally:
            self._lock.release()
        self._emit("reset", None)

    def stop(self) -> None:
        """Stop the request in flight, if any (from any thread)."""
        token = self._active
        if token is not None:
            token.cancel()

    # -- requests ---------------------------------------------------------
    def options(self, *, model: str | None = None, max_tokens: int | None = None,
                system: str | None = None, stop: str | Sequence[str] | None = None,
                stream: bool | None = None, thinking: bool | int | str | None = None,
                tools: object = None, tool_choice: str | None = None,
                max_steps: int | None = None, confirm: bool | Confirmer | None = None,
                replay: str | None = None, replay_tools: str | None = None,
                namespace: Mapping[str, object] | None = None) -> Options:
        """Validate options against the service's limits, before anything is sent.

        `confirm` is True/False, or a confirmer `(name, arguments) -> bool` that
        asks in the caller's own way (and turns confirmation on).
        """
        cfg = self.settings
        model = (model or cfg.model).strip()
        if not _MODEL_RE.match(model):
            raise ConfigError(f"unknown model {model!r}: use a Claude model id such as "
                              "anthropic/claude-opus-4-8")
        max_tokens = cfg.max_tokens if max_tokens is None else max_tokens
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or \
                not 1 <= max_tokens <= MAX_OUTPUT_TOKENS:
            raise ConfigError(f"--max-tokens must be between 1 and {MAX_OUTPUT_TOKENS:,}, "
                              f"not {max_tokens}")
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        for item in stops:
            if not isinstance(item, str) or not item.strip():
                raise ConfigError("a stop sequence must be non-empty text")
            _check_text(item, "stop sequence")
        system = cfg.system if system is None else system
        _check_text(system, "system prompt")
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

    def attachments(self, attach: object) -> list[Attachment]:
        """Turn objects, paths and (name, object) pairs into attachments, checking limits."""
        if attach is None:
            return []
        items = attach if isinstance(attach, (list, tuple)) else [attach]
        if not items:
            return []
        from ._content import Attachment, AttachmentError, attachment_from, check_request_limits

        result: list[Attachment] = []
        for position, item in enumerate(items, 1):
            if isinstance(item, Attachment):
                result.append(item)
                continue
            labelled = isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
            if labelled:
                name, obj = item
            else:
                name, obj = _default_name(item, position), item
            try:
                made = attachment_from(obj, name=name,
                                       max_image_edge=self.settings.max_image_edge,
                                       dataframe_budget=self.settings.dataframe_budget)
            except AttachmentError as exc:
                raise ConfigError(str(exc)) from None
            result.append(_labelled(made, name) if labelled else made)
        everything = [*self._history_attachments(), *result]
        try:
            check_request_limits(everything)
        except AttachmentError as exc:
            raise ConfigError(str(exc)) from None
        tokens = sum(a.estimate_tokens() for a in everything)
        if tokens > CONTEXT_TOKENS:
            raise ConfigError(f"the attachments come to about {tokens:,} tokens, over Claude's "
                              f"{CONTEXT_TOKENS:,}-token context: attach a smaller file or a slice")
        return result

    def _history_attachments(self) -> list[Attachment]:
        return [a for turn in self.history for a in turn.attachments]

    def _base(self, cell_id: str | None) -> tuple[int | None, list[Turn]]:
        if cell_id is not None:
            for index, turn in enumerate(self.history):
                if turn.cell_id == cell_id:
                    return index, self.history[:index]
        return None, list(self.history)

    def request_body(self, prompt: str, *, attach: object = None, cell_id: str | None = None,
                     **options: Any) -> dict[str, Any]:
        """The exact JSON body `ask` would send first (for --dry-run); sends nothing."""
        _check_text(prompt, "prompt")
        opts = self.options(**options)
        turn = Turn(_clean(prompt), self.attachments(attach))
        _, base = self._base(cell_id)
        body = opts.body(wire_messages([*base, _pending(turn)]))
        body["stream"] = opts.stream
        return body

    def ask(self, prompt: str, *, attach: object = None, cell_id: str | None = None,
            new: bool = False, display: bool | None = None, source: str = "python",
            cancel: CancelToken | None = None, label: str | None = None,
            view: Any = None, **options: Any) -> Reply:
        """Send `prompt` (with attachments) and return the reply.

        Options: model, max_tokens, system, stop, stream, thinking, tools,
        tool_choice, max_steps, confirm, replay, replay_tools, namespace.
        `confirm` may be a confirmer `(name, arguments) -> bool`; the default one
        asks on the cell's stdin. In a notebook the reply is displayed as it
        streams unless display=False.
        """
        if not isinstance(prompt, str) or not prompt.strip():
            raise ConfigError("the prompt is empty: write a question in the cell")
        _check_text(prompt, "prompt")
        opts = self.options(**options)
        attachments = self.attachments(attach)
        if view is None and (display or (display is None and _in_notebook())):
            from ._render import InlineView

            view = InlineView(self.settings.updates_per_second)
        from ._client import CancelToken

        token = cancel or CancelToken()
        turn = Turn(_clean(prompt), attachments, cell_id=cell_id, source=source,
                    options=opts.summary())
        if view is not None:
            view.start(turn)  # the waiting mark shows even while another turn holds the lock
        try:
            self._lock.acquire()
        except KeyboardInterrupt:
            if view is not None:
                view.fail(turn, KeyboardInterrupt())
            raise
        try:
            if new:
                self.history.clear()
                self._emit("reset", None)
            index, base = self._base(cell_id)
            self._active = token
            self.busy = True
            self._emit("start", turn)
            try:
                self._run(turn, base, opts, token, view, label)
            except (KeyboardInterrupt, Cancelled):
                if not turn.steps:
                    turn.steps.append(Step(Reply(model=opts.model)))
                turn.reply.interrupted = True
                self._close_turn(turn, index, view, "interrupted")
                return turn.reply
            except NbClaudeError as exc:
                kept = bool(turn.reply.text or turn.reply.thinking
                            or any(s.results for s in turn.steps))
                if isinstance(exc, StreamError):
                    turn.reply.error = _say_what_was_kept(exc, kept)
                if isinstance(exc, StreamError) and kept:
                    self._close_turn(turn, index, view, "error")
                else:
                    if view is not None:
                        view.fail(turn, exc)
                    self._emit("error", turn)
                raise
            except Exception as exc:  # a bug must not leave a waiting mark or a half turn
                if view is not None:
                    view.fail(turn, exc)
                self._emit("error", turn)
                raise
            finally:
                self._active = None
                self.busy = False
            self._close_turn(turn, index, view, "end")
        finally:
            self._lock.release()
        return turn.reply

    def _close_turn(self, turn: Turn, index: int | None, view: Any, event: str) -> None:
        """Record the turn (complete or marked partial) and show its final state."""
        turn._freeze()
        if turn.wire() or turn.reply.text or turn.reply.thinking:
            if index is not None and index < len(self.history) and \
                    self.history[index].cell_id == turn.cell_id:
                self.history[index] = turn
            else:
                self.history.append(turn)
        if view is not None:
            view.finish(turn)
        self._emit("end" if event != "error" else "error", turn)

    def _run(self, turn: Turn, base: list[Turn], opts: Options, token: CancelToken, view: Any,
             label: str | None) -> None:
        tool_map = {t.name: t for t in opts.tools}
        for step_number in range(opts.max_steps):
            # One merged list: a turn interrupted in its tools ends on a user message.
            body = opts.body(wire_messages([*base, _pending(turn)]))
            step = Step(Reply(model=opts.model))
            turn.steps.append(step)
            last = step_number == opts.max_steps - 1
            found = self._request(body, opts, step, turn, token, view, label, tools_run=not last)
            reply = step.reply
            if not reply.tool_calls or reply.partial:
                return
            if last:
                turn.note = _join_note(turn.note, f"stopped after {opts.max_steps} tool steps "
                                                  "(--max-steps); the last tool calls were not run")
                return
            if found.results is not None and opts.replay_tools == "replay":
                step.results = found.results  # recorded: nothing runs again
                turn.note = _join_note(turn.note, "tool results replayed")
            else:
                if reply.replayed:
                    turn.note = _join_note(turn.note, "replayed tool calls were run again")
                self._call_tools(step, tool_map, opts, view, turn)
                if found.record is not None:
                    self._record(turn, step, found.record, step.results)
            if view is not None:
                view.update(turn, force=True)
            self._emit("update", turn)

    def _call_tools(self, step: Step, tool_map: dict[str, Tool], opts: Options, view: Any,
                    turn: Turn) -> None:
        """Run the step's tool calls into `step.results`; every call gets a result.

        A replayed call always asks first unless the caller passed confirm=False.
        """
        from ._tools import ToolInterrupted, ToolResult, run_tool_call

        reply = step.reply
        ask = opts.confirm or (reply.replayed and not opts.confirm_explicit)
        confirmer = opts.confirmer or _ask_on_stdin
        results: list[ToolResult] = []
        for position, call in enumerate(reply.tool_calls):
            if ask:
                reason = None  # why nobody could be asked
                try:
                    allowed = confirmer(call.name, call.arguments)
                except _CannotAsk as exc:
                    allowed, reason = False, str(exc)
                except (EOFError, NotImplementedError):  # IPython's StdinNotImplementedError
                    allowed, reason = False, _NO_STDIN
                if not allowed:
                    content = f"not run: {reason}" if reason else "the user declined this call"
                    results.append(ToolResult(call.id, call.name, content, is_error=True,
                                              summary=reason or "declined",
                                              arguments=call.arguments))
                    continue
            try:
                results.append(run_tool_call(call, tool_map))
            except ToolInterrupted as exc:
                # Answer every call, so no tool_use is left without its result.
                results.append(exc.result)
                results += [ToolResult(c.id, c.name, _NOT_RUN, is_error=True, summary=_NOT_RUN,
                                       arguments=c.arguments)
                            for c in reply.tool_calls[position + 1:]]
                step.results = results
                raise
        step.results = results

    def _request(self, body: dict[str, Any], opts: Options, step: Step, turn: Turn,
                 token: CancelToken, view: Any, label: str | None, *,
                 tools_run: bool = True) -> _Found:
        """Fill `step.reply` from the replay file or the service.

        A reply that asks for tools is recorded by `_run` once its results are
        known; `tools_run` says whether its tool calls would run in this turn.
        """
        from ._replay import ReplayError, request_key

        key = request_key(body)
        replay_file = _replay_file(self.settings.replay_path) if opts.replay != "off" else None
        where = f" for {label}" if label else ""
        if replay_file is not None and opts.replay in ("auto", "replay"):
            try:
                entry = _get_entry(replay_file, key)
            except ReplayError as exc:
                raise ConfigError(str(exc)) from None
            if entry is not None:
                recorded = Reply.from_dict(entry["reply"])
                results = _recorded_results(entry, recorded)
                if recorded.tool_calls and tools_run and results is None \
                        and opts.replay_tools == "replay":
                    # Never run a recorded call silently: ask live (auto) or stop (strict).
                    if opts.replay == "replay":
                        raise ReplayMissError(
                            f"the recorded reply{where} in {replay_file.path.name} asks for tools "
                            "but has no recorded tool results (strict replay mode): record it "
                            "again with --replay record, or pass --replay-tools run to run them")
                else:
                    step.reply = recorded
                    step.offline = entry.get("offline") is True
                    recorded.replayed = True
                    recorded.request_sha256 = key
                    if view is not None:
                        view.update(turn, force=True)
                    self._emit("update", turn)
                    return _Found(results=results)
            elif opts.replay == "replay":
                raise ReplayMissError(
                    f"no recorded reply{where} in {replay_file.path.name} (strict replay mode): "
                    "the prompt, an attachment or an option changed; run it with a key and "
                    "--replay auto to record it")
        reply = step.reply
        reply.request_sha256 = key
        client = self._client()
        started = time.monotonic()

        def on_response(response: Any) -> None:
            reply.inference_id = response.headers.get("x-inference-id", "")
            step.offline = bool(response.headers.get(STAND_IN_HEADER))

        try:
            if opts.stream:
                listeners = self._listeners
                limit = opts.max_reply_chars
                events = client.stream(body, cancel=token, on_response=on_response)
                try:
                    for event in events:
                        accumulate(event, reply)
                        if len(reply.text) + len(reply.thinking) > limit or (
                                reply.tool_calls and _reply_chars(reply) > limit):
                            size = _reply_chars(reply)
                            raise StreamError(
                                f"the reply passed {size:,} characters, more than "
                                f"max_tokens={opts.max_tokens} allows: stopped")
                        if view is not None:
                            view.update(turn)
                        if listeners:
                            self._emit("update", turn)
                finally:
                    close = getattr(events, "close", None)
                    if close is not None:
                        close()  # a runaway stream stops being read here
            else:
                data = client.create(body, cancel=token, on_response=on_response)
                fresh = reply_from_response(data)
                fresh.request_sha256, fresh.inference_id = key, reply.inference_id
                step.reply = reply = fresh
        finally:
            reply.elapsed = time.monotonic() - started
            if reply.model == "":
                reply.model = opts.model
            _estimate_cost(reply, self.settings)
            if step.offline:
                reply.usage.estimated = True  # made up by the stand-in: never money spent
        if not reply.done and not reply.error:
            reply.warnings.append("the stream ended without saying why it stopped")
        if replay_file is None or opts.replay not in ("auto", "record") or not reply.done \
                or reply.partial:
            return _Found()
        record = _Record(replay_file, key, body)
        if reply.tool_calls and tools_run:
            return _Found(record=record)  # written with its tool results, after they ran
        self._record(turn, step, record, None)
        return _Found()

    def _record(self, turn: Turn, step: Step, record: _Record,
                results: list[ToolResult] | None) -> None:
        """Append a finished step to the replay file; a failure costs only the record."""
        from ._replay import ReplayError

        try:
            record.file.put(record.key, reply=step.reply.to_dict(), request=record.body,
                            results=None if results is None else [r.to_dict() for r in results],
                            extra={"offline": True} if step.offline else None)
        except ReplayError as exc:  # the reply is good; only its record failed
            turn.note = _join_note(turn.note, f"not recorded: {exc}")
        else:
            step.recorded = Path(record.file.path).name

    def _client(self) -> Client:
        from ._client import Client

        cfg = self.settings
        key = get_api_key()
        # The key's digest, never the key: this dict shows in vars(session).
        identity = (cfg.base_url, key.digest if key else None, cfg.timeout,
                    cfg.connect_timeout, cfg.first_byte_timeout, cfg.max_retries,
                    id(self.transport))
        client = self._clients.get(identity)
        if client is None:
            for old in self._clients.values():
                old.close()
            self._clients = {identity: Client(api_key=key, base_url=cfg.base_url,
                                              timeout=cfg.timeout,
                                              connect_timeout=cfg.connect_timeout,
                                              first_byte_timeout=cfg.first_byte_timeout,
                                              max_retries=cfg.max_retries,
                                              transport=self.transport)}
            client = self._clients[identity]
        return client

    # -- export -----------------------------------------------------------
    def to_markdown(self) -> str:
        """The conversation as Markdown."""
        from ._render import session_markdown

        return session_markdown(self)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the whole conversation, attachments included, as JSON."""
        from ._export import save_session

        with self._lock:
            return save_session(self, path)

    @_class_or_instance
    def load(cls: type[Session], self: Session | None, path: str | os.PathLike[str]) -> Session:
        """`Session.load(path)` makes a new session; `session.load(path)` replaces its history."""
        from ._export import load_turns

        name, turns = load_turns(path)
        session = self if self is not None else cls(name)
        with session._lock:
            session.history[:] = turns
        session._emit("reset", None)
        return session

    def to_notebook(self, path: str | os.PathLike[str]) -> Path:
        """Write an .ipynb with a Markdown cell per turn (images as cell attachments)."""
        from ._export import write_notebook

        with self._lock:
            return write_notebook(self, path)


def _clean(prompt: str) -> str:
    return prompt.strip("\n").rstrip()


def _pending(turn: Turn) -> Turn:
    """The turn so far as it must be sent: answered tool calls only."""
    view = Turn(turn.prompt, turn.attachments, [s for s in turn.steps if s.results])
    messages = view.wire() if view.steps else []
    if not messages:
        view._wire = [{"role": "user", "content": turn.user_content()}]
    return view


_replay_files: dict[str, Any] = {}


def _replay_file(path: str) -> Any:
    """One ReplayFile per absolute path, so its parsed entries are reused between requests."""
    from ._replay import ReplayFile

    resolved = os.path.abspath(path)
    replay_file = _replay_files.get(resolved)
    if replay_file is None:
        replay_file = _replay_files[resolved] = ReplayFile(resolved)
    return replay_file


def _get_entry(replay_file: Any, key: str) -> dict[str, Any] | None:
    entry = replay_file.get(key)
    if entry is None or not isinstance(entry.get("reply"), dict):
        return None
    return entry


def _estimate_cost(reply: Reply, cfg: Settings) -> None:
    if reply.usage.cost_usd is not None:
        return
    price = cfg.price_for(reply.model)
    if price is None:
        return
    reply.usage.cost_usd = (reply.usage.input_tokens * price[0]
                            + reply.usage.output_tokens * price[1]) / 1e6
    reply.usage.estimated = True


def _labelled(attachment: Attachment, label: str) -> Attachment:
    """The attachment shown under the caller's label: `("sales data", "sales.csv")`.

    Only what the user sees changes; a file keeps its name as the document title
    the model reads, so the request (and its replay key) stays the same.
    """
    if attachment.name == label:
        return attachment
    import dataclasses

    prefix = f"{attachment.name}: "
    rest = attachment.description[len(prefix):] if attachment.description.startswith(prefix) \
        else attachment.description
    return dataclasses.replace(attachment, name=label, description=f"{label}: {rest}")


def _default_name(obj: object, position: int) -> str:
    from pathlib import PurePath

    if isinstance(obj, (str, PurePath)):
        return PurePath(obj).name or str(obj)
    return f"attachment {position}"


class _CannotAsk(Exception):
    """The confirmer has no way to ask; the call is declined with this reason."""


def _ask_on_stdin(name: str, arguments: str) -> bool:
    """The default confirmer: ask on the cell's stdin, where there is one."""
    if threading.current_thread() is not threading.main_thread():
        raise _CannotAsk("no way to ask outside the notebook's main thread (as in the chat "
                         "panel); run the prompt in a cell with --confirm")
    try:
        answer = input(f"Run tool {name}({arguments[:200]})? [y/N] ")
    except (EOFError, NotImplementedError):  # NotImplementedError: StdinNotImplementedError
        raise _CannotAsk(_NO_STDIN) from None
    return answer.strip().lower() in ("y", "yes")


@dataclass
class _Record:
    """Where a fresh reply is to be recorded: the file, its request key and body."""

    file: Any
    key: str
    body: dict[str, Any]


@dataclass
class _Found:
    """What `_request` learned: recorded tool results, or a record still to write."""

    results: list[ToolResult] | None = None
    record: _Record | None = None


def _recorded_results(entry: dict[str, Any], reply: Reply) -> list[ToolResult] | None:
    """The entry's tool results in call order, or None unless every call has a usable one."""
    from ._tools import ToolResult

    raw = entry.get("results")
    if not reply.tool_calls or not isinstance(raw, list):
        return None
    by_id: dict[str, ToolResult] = {}
    for item in raw:
        if not isinstance(item, dict):
            return None
        content = item.get("content")
        if not isinstance(content, str) and not (
                isinstance(content, list) and all(isinstance(b, dict) for b in content)):
            return None
        result = ToolResult.from_dict(item)
        by_id[result.tool_use_id] = result
    try:
        return [by_id[call.id] for call in reply.tool_calls]
    except KeyError:
        return None


def _reply_chars(reply: Reply) -> int:
    return len(reply.text) + len(reply.thinking) + sum(len(c.arguments) for c in reply.tool_calls)


def _join_note(note: str, addition: str) -> str:
    if addition in note.split("; "):
        return note
    return f"{note}; {addition}" if note else addition


def _check_text(text: str, what: str) -> None:
    """Refuse text that cannot be sent as UTF-8 JSON, naming where the bad character is."""
    found = _SURROGATE_RE.search(text) if isinstance(text, str) else None
    if found is not None:
        raise ConfigError(f"the {what} has a lone surrogate (\\u{ord(found.group()):04x}) at "
                          f"character {found.start() + 1}: delete it or paste the text again")


def _say_what_was_kept(exc: StreamError, kept: bool) -> str:
    """End the error's one line with whether the partial reply was kept; return the cause."""
    # The client's own wording said "kept" whether or not anything was: drop it.
    message = str(exc).replace("the partial reply was kept", "").rstrip("; ")
    exc.args = (message + ("; the partial reply was kept" if kept else "; nothing was kept"),)
    return message


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


_sessions: dict[str, Session] = {}
_sessions_lock = threading.Lock()


def get_session(name: str = "default") -> Session:
    """The named session shared by magics, panels and Python code in this kernel."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("a session name must be non-empty text")
    with _sessions_lock:
        session = _sessions.get(name)
        if session is None:
            session = _sessions[name] = Session(name)
        return session


def sessions() -> dict[str, Session]:
    return dict(_sessions)
