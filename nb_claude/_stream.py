"""Turn the service's answers into a Reply: Server-Sent Events to JSON events, and
JSON events folded into the reply.

`accumulate(event, reply)` is the only place where a reply changes state, for
streamed and whole answers alike; renderers read the Reply and never parse events.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ._errors import StreamError
from ._sse import ServerSentEvent

__all__ = ["Reply", "ToolCall", "Usage", "StreamError", "accumulate", "reply_from_response",
           "events_from_sse", "normalise_finish_reason"]

# Raw Anthropic stop reasons are kept; OpenAI-style ones are mapped onto them.
_FINISH_REASONS = {
    "end_turn": "end_turn",
    "stop": "end_turn",
    "stop_sequence": "stop_sequence",
    "max_tokens": "max_tokens",
    "length": "max_tokens",
    "model_context_window_exceeded": "max_tokens",
    "tool_use": "tool_use",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "refusal": "refusal",
    "content_filter": "refusal",
    "pause_turn": "pause_turn",
    "error": "error",
}


def normalise_finish_reason(raw: str | None) -> str | None:
    if raw is None or raw == "":
        return None
    return _FINISH_REASONS.get(raw, raw)


@dataclass
class Usage:
    """Token counts and cost; numbers from the service are approximate."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    credits: float | None = None
    estimated: bool = False

    def __add__(self, other: Usage) -> Usage:
        def add(a: float | None, b: float | None) -> float | None:
            return b if a is None else a if b is None else a + b

        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            add(self.cost_usd, other.cost_usd),
            add(self.credits, other.credits),
            self.estimated or other.estimated,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": self.cost_usd,
            "credits": self.credits,
            "estimated": self.estimated,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Usage:
        return cls(
            int(data.get("input_tokens") or 0),
            int(data.get("output_tokens") or 0),
            data.get("cost_usd"),
            data.get("credits"),
            bool(data.get("estimated", False)),
        )


@dataclass
class ToolCall:
    """One call the model asked for; `arguments` is the raw JSON text."""

    id: str = ""
    name: str = ""
    arguments: str = ""

    @property
    def input(self) -> dict[str, Any]:
        """The parsed arguments; raises ValueError when they are not a JSON object."""
        if not self.arguments.strip():
            return {}
        value = json.loads(self.arguments)
        if not isinstance(value, dict):
            raise ValueError(f"arguments of {self.name!r} are not a JSON object")
        return value

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolCall:
        return cls(data.get("id", ""), data.get("name", ""), data.get("arguments", ""))


@dataclass
class Reply:
    """What the model answered in one request, complete or partial."""

    text: str = ""
    thinking: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    raw_finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    id: str = ""
    error: str | None = None
    interrupted: bool = False
    replayed: bool = False
    request_sha256: str = ""
    created: float = field(default_factory=time.time)
    elapsed: float = 0.0
    inference_id: str = ""
    thinking_signature: str = ""
    warnings: list[str] = field(default_factory=list)
    # A typed answer (`schema=`): the validated value, None for untyped replies. Not
    # saved by `to_dict`: the recorded tool call is its source, and is parsed again.
    data: Any = field(default=None, repr=False, compare=False)
    _tool_index: dict[int, ToolCall] = field(default_factory=dict, repr=False, compare=False)
    # Whether `model` is the one the service said it used, not the one asked for.
    _model_from_service: bool = field(default=False, repr=False, compare=False)
    # Whether the service refused in `refusal` text (OpenAI style) rather than in content.
    _refused: bool = field(default=False, repr=False, compare=False)

    @property
    def done(self) -> bool:
        """True once the service said why it stopped."""
        return self.finish_reason is not None

    @property
    def partial(self) -> bool:
        return self.interrupted or self.error is not None or not self.done

    def __repr__(self) -> str:
        text = self.text if len(self.text) <= 60 else self.text[:57] + "..."
        return (f"Reply(text={text!r}, finish_reason={self.finish_reason!r}, model={self.model!r}, "
                f"tool_calls={len(self.tool_calls)}, usage={self.usage.input_tokens}/"
                f"{self.usage.output_tokens})")

    def _repr_markdown_(self) -> str:
        return self.text

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "thinking": self.thinking,
            "thinking_signature": self.thinking_signature,
            "tool_calls": [c.to_dict() for c in self.tool_calls],
            "finish_reason": self.finish_reason,
            "raw_finish_reason": self.raw_finish_reason,
            "usage": self.usage.to_dict(),
            "model": self.model,
            "id": self.id,
            "error": self.error,
            "interrupted": self.interrupted,
            "request_sha256": self.request_sha256,
            "created": self.created,
            "elapsed": self.elapsed,
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reply:
        return cls(
            text=data.get("text", ""),
            thinking=data.get("thinking", ""),
            thinking_signature=data.get("thinking_signature", ""),
            tool_calls=[ToolCall.from_dict(c) for c in data.get("tool_calls", [])],
            finish_reason=data.get("finish_reason"),
            raw_finish_reason=data.get("raw_finish_reason"),
            usage=Usage.from_dict(data.get("usage") or {}),
            model=data.get("model", ""),
            id=data.get("id", ""),
            error=data.get("error"),
            interrupted=bool(data.get("interrupted", False)),
            request_sha256=data.get("request_sha256", ""),
            created=float(data.get("created") or 0.0),
            elapsed=float(data.get("elapsed") or 0.0),
            warnings=list(data.get("warnings", [])),
        )


# --------------------------------------------------------------------------- events


_DONE: dict[str, Any] = {}  # `data: [DONE]`: the stream is over
# json.loads' own checks and wrappers cost a third of parsing a chunk, and a
# chunk is one JSON object from its first byte: raw_decode reads it directly.
_raw_decode = json.JSONDecoder().raw_decode


def _json_or_warning(data: str) -> dict[str, Any]:
    """The JSON object in `data`, or a warning event saying why it was skipped."""
    try:
        value = json.loads(data)
    except ValueError:
        return {"nb_claude_warning": f"skipped a malformed event: {data[:60]!r}"}
    if not isinstance(value, dict):
        return {"nb_claude_warning": f"skipped an event of unknown shape: {data[:60]!r}"}
    return value


def _parse_event(name: str, data: str) -> dict[str, Any] | None:
    """One Server-Sent Event as a JSON event; `_DONE` at the end, None for an empty one."""
    if data.strip() == "[DONE]":
        return _DONE
    if name == "error":
        value = _json_or_warning(data) if data else {}
        error = value.get("error", value) if value else {"message": "the service sent an error"}
        return {"error": error or {"message": data or "the service sent an error"}}
    if not data:
        return None
    return _json_or_warning(data)


def events_from_sse(events: Iterable[ServerSentEvent]) -> Iterator[dict[str, Any]]:
    """The JSON events in a stream of Server-Sent Events, up to `data: [DONE]`.

    Malformed events become `{"nb_claude_warning": ...}` and an `event: error`
    becomes `{"error": ...}`; `accumulate` decides what they mean. The source
    is closed when this iterator ends or is closed.
    """
    source = iter(events)
    try:
        for event in source:
            data = event.data
            if data[:1] == "{" and event.event != "error":  # nearly every chunk: one object
                try:
                    value, end = _raw_decode(data)
                except ValueError:
                    end = -1
                if end == len(data) and isinstance(value, dict):
                    yield value
                    continue
            parsed = _parse_event(event.event, data)
            if parsed is _DONE:
                return
            if parsed is not None:
                yield parsed
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()


# --------------------------------------------------------------------------- the reducer


def _append(holder: Reply | ToolCall, name: str, piece: str) -> None:
    """`holder.name += piece` in amortised constant time.

    With the holder's reference dropped first, CPython grows the string in
    place instead of copying the whole text for every chunk. Nothing in the
    three middle statements can switch threads, so no reader sees it empty.
    """
    attrs = holder.__dict__
    text = attrs[name]
    attrs[name] = ""
    text += piece
    attrs[name] = text


# The keys of a delta that carries only text: `refusal` is there, null, in every chunk.
_PLAIN_DELTA = frozenset({"content", "role", "refusal"})


def _reasoning_text(holder: dict[str, Any]) -> str:
    """Thinking text under any of the names the service's routes use."""
    for key in ("reasoning_content", "reasoning"):
        value = holder.get(key)
        if isinstance(value, str) and value:
            return value
    details = holder.get("reasoning_details")
    if isinstance(details, list):
        parts = []
        for item in details:
            if isinstance(item, dict):
                part = item.get("text") or item.get("summary") or item.get("thinking")
                if isinstance(part, str):
                    parts.append(part)
        return "".join(parts)
    if isinstance(details, str):
        return details
    return ""


def _signature(holder: dict[str, Any]) -> str:
    details = holder.get("reasoning_details")
    if isinstance(details, list):
        for item in details:
            if isinstance(item, dict) and isinstance(item.get("signature"), str):
                return item["signature"]
    sig = holder.get("thinking_signature") or holder.get("signature")
    return sig if isinstance(sig, str) else ""


def _error_message(error: Any) -> str:
    if isinstance(error, dict):
        message = error.get("message") or error.get("type") or json.dumps(error)[:200]
        return str(message)
    return str(error)


def _apply_usage(event: dict[str, Any], reply: Reply) -> None:
    usage = event.get("usage")
    if isinstance(usage, dict):
        prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
        completion = usage.get("completion_tokens", usage.get("output_tokens"))
        if isinstance(prompt, int):
            reply.usage.input_tokens = prompt
        if isinstance(completion, int):
            reply.usage.output_tokens = completion
    meta = event.get("meta")
    if isinstance(meta, dict) and isinstance(meta.get("usage"), dict):
        spent = meta["usage"].get("usd_spent")
        credits = meta["usage"].get("credits_used")
        if isinstance(spent, (int, float)):
            reply.usage.cost_usd = float(spent)
            reply.usage.estimated = False
        if isinstance(credits, (int, float)):
            reply.usage.credits = credits


def _apply_tool_delta(fragment: dict[str, Any], position: int, reply: Reply) -> None:
    index = fragment.get("index", position)
    if not isinstance(index, int):
        index = position
    call = reply._tool_index.get(index)
    if call is None:
        call = reply._tool_index[index] = ToolCall()
        reply.tool_calls.append(call)
    if fragment.get("id") and not call.id:
        call.id = fragment["id"]
    function = fragment.get("function") or {}
    if isinstance(function, dict):
        if function.get("name") and not call.name:
            call.name = function["name"]
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            _append(call, "arguments", arguments)
        elif isinstance(arguments, dict):
            call.arguments += json.dumps(arguments)


def _apply_blocks(blocks: list[Any], reply: Reply) -> None:
    """Anthropic-native content blocks, as some routes answer."""
    for block in blocks:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            _append(reply, "text", block["text"])
        elif kind == "thinking":
            if isinstance(block.get("thinking"), str):
                _append(reply, "thinking", block["thinking"])
            if isinstance(block.get("signature"), str) and block["signature"]:
                reply.thinking_signature = block["signature"]
        elif kind == "tool_use":
            reply.tool_calls.append(ToolCall(str(block.get("id") or ""),
                                             str(block.get("name") or ""),
                                             json.dumps(block.get("input", {}))))


def _apply_extras(delta: dict[str, Any], reply: Reply) -> None:
    """Everything in a delta or message besides plain text: thinking, tools, a refusal."""
    thinking = _reasoning_text(delta)
    if thinking:
        _append(reply, "thinking", thinking)
    signature = _signature(delta)
    if signature:
        reply.thinking_signature = signature
    tool_calls = delta.get("tool_calls")
    if isinstance(tool_calls, list):
        for position, fragment in enumerate(tool_calls):
            if isinstance(fragment, dict):
                _apply_tool_delta(fragment, position, reply)
    refusal = delta.get("refusal")
    if isinstance(refusal, str) and refusal:
        _append(reply, "text", refusal)
        reply._refused = True
        if reply.finish_reason == "end_turn":
            reply.finish_reason = "refusal"


def _apply_finish(raw: Any, reply: Reply) -> None:
    if not isinstance(raw, str):
        return
    reply.raw_finish_reason = raw
    reply.finish_reason = normalise_finish_reason(raw)
    if reply.finish_reason == "error":
        reply.error = reply.error or "the service ended the reply with an error"
        raise StreamError(reply.error)
    if reply._refused and reply.finish_reason == "end_turn":
        reply.finish_reason = "refusal"  # a refusal the service ended as a normal stop


def _apply_header(event: dict[str, Any], reply: Reply) -> None:
    if not reply.id and event.get("id"):
        reply.id = event["id"]
    if not reply._model_from_service:
        model = event.get("model")
        if isinstance(model, str) and model:
            reply.model = model  # the service's word beats the id the request asked for
            reply._model_from_service = True


def accumulate(event: dict[str, Any], reply: Reply) -> Reply:
    """Fold one JSON event, a streamed chunk or a whole chat.completion, into `reply`.

    A `message` folds like a `delta`. Unknown shapes are ignored; an error
    event or an error finish raises StreamError after recording its message
    on the reply.
    """
    if not isinstance(event, dict):
        return reply
    if "nb_claude_warning" in event:
        reply.warnings.append(str(event["nb_claude_warning"]))
        return reply
    if "error" in event and event["error"]:
        reply.error = _error_message(event["error"])
        raise StreamError(reply.error)
    if not reply._model_from_service or not reply.id:
        _apply_header(event, reply)
    choices = event.get("choices")
    if isinstance(choices, list):
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or choice.get("message")
            if isinstance(delta, dict):
                content = delta.get("content")
                if isinstance(content, str):
                    if content:  # `_append(reply, "text", content)`, inlined: every chunk
                        attrs = reply.__dict__
                        text = attrs["text"]
                        attrs["text"] = ""
                        text += content
                        attrs["text"] = text
                elif isinstance(content, list):
                    _apply_blocks(content, reply)
                if not _PLAIN_DELTA.issuperset(delta) or delta.get("refusal"):
                    _apply_extras(delta, reply)
            raw = choice.get("finish_reason")
            if raw:
                _apply_finish(raw, reply)
    if event.get("usage") or "meta" in event:
        _apply_usage(event, reply)
    return reply


def reply_from_response(body: dict[str, Any], reply: Reply | None = None) -> Reply:
    """Fold a non-streaming chat.completion body into `reply` (a new one by default).

    The same reducer as a stream's, so a whole reply ends, fails and refuses
    exactly as a streamed one does.
    """
    if not isinstance(body, dict):
        raise StreamError("the service answered with something that is not a JSON object")
    return accumulate(body, Reply() if reply is None else reply)
