"""Fold the service's chat-completion events into a Reply.

`accumulate(event, reply)` is the only place where a stream changes state;
renderers read the Reply and never parse events.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from ._errors import StreamError

__all__ = ["Reply", "ToolCall", "Usage", "StreamError", "accumulate", "reply_from_response",
           "normalise_finish_reason"]

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
    _tool_index: dict[int, ToolCall] = field(default_factory=dict, repr=False, compare=False)

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


# Keys that can carry thinking text or its signature; plain deltas have none.
_THINKING_KEYS = frozenset({"reasoning_content", "reasoning", "reasoning_details",
                            "thinking_signature", "signature"})


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


def accumulate(event: dict[str, Any], reply: Reply) -> Reply:
    """Fold one decoded stream event into `reply` and return it.

    Unknown shapes are ignored; an error event raises StreamError after
    recording its message on the reply.
    """
    if not isinstance(event, dict):
        return reply
    if "nb_claude_warning" in event:
        reply.warnings.append(str(event["nb_claude_warning"]))
        return reply
    if "error" in event and event["error"]:
        reply.error = _error_message(event["error"])
        raise StreamError(reply.error)
    if not reply.id and event.get("id"):
        reply.id = event["id"]
    if not reply.model and event.get("model"):
        reply.model = event["model"]
    choices = event.get("choices")
    if isinstance(choices, list):
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or choice.get("message")
            if isinstance(delta, dict):
                content = delta.get("content")
                if isinstance(content, str) and content:
                    _append(reply, "text", content)
                if not _THINKING_KEYS.isdisjoint(delta):
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
            raw = choice.get("finish_reason")
            if isinstance(raw, str) and raw:
                reply.raw_finish_reason = raw
                reply.finish_reason = normalise_finish_reason(raw)
                if reply.finish_reason == "error":
                    reply.error = reply.error or "the service ended the reply with an error"
                    raise StreamError(reply.error)
    if event.get("usage") or "meta" in event:
        _apply_usage(event, reply)
    return reply


def reply_from_response(body: dict[str, Any]) -> Reply:
    """Build a Reply from a non-streaming chat.completion body."""
    reply = Reply()
    if not isinstance(body, dict):
        raise StreamError("the service answered with something that is not a JSON object")
    if body.get("error"):
        reply.error = _error_message(body["error"])
        raise StreamError(reply.error)
    reply.id = body.get("id") or ""
    reply.model = body.get("model") or ""
    choices = body.get("choices") or []
    if choices and isinstance(choices[0], dict):
        choice = choices[0]
        message = choice.get("message") or {}
        content = message.get("content")
        if isinstance(content, str):
            reply.text = content
        elif isinstance(content, list):
            # Some routes answer with Anthropic-native content blocks.
            for block in content:
                if not isinstance(block, dict):
                    continue
                if block.get("type") == "text":
                    reply.text += block.get("text", "")
                elif block.get("type") == "thinking":
                    reply.thinking += block.get("thinking", "")
                    reply.thinking_signature = block.get("signature", "") or reply.thinking_signature
                elif block.get("type") == "tool_use":
                    reply.tool_calls.append(ToolCall(block.get("id", ""), block.get("name", ""),
                                                     json.dumps(block.get("input", {}))))
        reply.thinking += _reasoning_text(message)
        reply.thinking_signature = _signature(message) or reply.thinking_signature
        for position, fragment in enumerate(message.get("tool_calls") or []):
            if isinstance(fragment, dict):
                _apply_tool_delta(fragment, position, reply)
        raw = choice.get("finish_reason")
        if isinstance(raw, str) and raw:
            reply.raw_finish_reason = raw
            reply.finish_reason = normalise_finish_reason(raw)
    _apply_usage(body, reply)
    return reply
