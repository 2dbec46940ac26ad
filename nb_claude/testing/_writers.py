"""The JSON and SSE writers: a reply's bytes, with the service's quirks.

Pure functions of a `_Script`, its plan and a seeded random generator; the handler in
`_server` only puts the bytes on the wire (and sleeps or drops where a step says so).
"""

from __future__ import annotations

import itertools
import json
import random
import re
import uuid
from datetime import datetime, timezone
from typing import Any

from ._replies import _fragments, _pieces, _Script

# Every reply the stand-in makes carries this header (nb_claude._exchange.STAND_IN_HEADER):
# its costs are made up, so the client must never count them as money spent.
STAND_IN_HEADER = "x-nb-claude-stand-in"
_STAND_IN_MARK = {STAND_IN_HEADER: "1"}
_SPLIT_PAUSE = 0.0005  # between split writes, so a client really sees separate reads

_ERROR_TYPES = {
    400: ("invalid_request_error", "Bad request"),
    401: ("authentication_error", "Invalid API key"),
    403: ("permission_error", "Insufficient credits: top up your balance to continue"),
    404: ("not_found_error", "Not found"),
    408: ("timeout_error", "Request timeout"),
    409: ("conflict_error", "Conflict"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes"),
    429: ("rate_limit_error", "Too Many Requests"),
    500: ("api_error", "Internal server error"),
    502: ("api_error", "Bad gateway"),
    503: ("api_error", "Service unavailable"),
    504: ("timeout_error", "Generation timeout"),
    529: ("overloaded_error", "Overloaded"),
}


def _error_payload(status: int, message: str, error_type: str, *, envelope: str,
                   upstream: int | None, path: str, rng: random.Random) -> dict[str, Any]:
    """An error body in the service's envelope (the upstream error as a string) or OpenAI's."""
    if envelope == "openai":
        return {"error": {"message": message, "type": error_type}}
    inner = json.dumps({"type": "error", "error": {"type": error_type, "message": message}},
                       ensure_ascii=False, separators=(",", ":"))
    return {
        "requestId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "statusCode": status,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "path": path,
        "message": f"{upstream or status} {inner}",
    }


def _completion(script: _Script, plan: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """A non-streaming chat.completion body and its headers, with the scripted fault mapped
    onto one body (a drop is the handler's: it cuts this body in half)."""
    message: dict[str, Any] = {"role": "assistant", "content": script.text}
    thinking = script.thinking or ""
    if script.thinking_field == "reasoning_details":
        message["reasoning_details"] = [{"type": "reasoning.text", "text": thinking,
                                         "signature": plan["signature"]}] if thinking else []
    else:
        message[script.thinking_field] = thinking
    if plan["calls"]:
        message["content"] = script.text or None
        message["tool_calls"] = [
            {"id": c["id"], "type": "function",
             "function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in plan["calls"]]
    finish: str | None = plan["finish"]
    if script.inject == "truncate":
        finish = None
    elif script.inject == "error" and script.style == "finish":
        finish = "error"
    payload: dict[str, Any] = {
        "id": plan["id"], "object": "chat.completion", "model": plan["model"],
        "created": plan["created"],
        "choices": [{"index": 0, "message": message, "finish_reason": finish,
                     "logprobs": None}],
        "usage": plan["usage"], "meta": plan["meta"]}
    if script.inject == "unknown":
        payload["x_notice"] = {"kind": "queue_position", "value": 0}
    if script.inject == "error" and script.style != "finish":
        payload = {"error": {"message": script.message, "type": "overloaded_error"}}
    headers = {"x-inference-id": plan["inference_id"],
               "x-aimlapi-credits-used": str(plan["meta"]["usage"]["credits_used"])}
    if "usd_spent" in plan["meta"]["usage"]:
        headers["x-aimlapi-usd-spent"] = str(plan["meta"]["usage"]["usd_spent"])
    headers.update(_STAND_IN_MARK)
    data = json.dumps(payload, ensure_ascii=False).encode()
    if script.inject == "malformed":
        data = data[:len(data) // 2]
    return data, headers


def _stream_headers(plan: dict[str, Any]) -> dict[str, str]:
    return {"content-type": "text/event-stream", "cache-control": "no-cache",
            "transfer-encoding": "chunked", "x-inference-id": plan["inference_id"],
            **_STAND_IN_MARK}


def _sse_steps(script: _Script, plan: dict[str, Any], eol: bytes, keepalive: bool,
               quirks: bool, rng: random.Random) -> list[tuple[str, Any]]:
    """The response as steps: ("data", bytes), ("sleep", s), ("drop", None), ("end", None)."""
    steps: list[tuple[str, Any]] = []
    count = 0
    fired = False
    base = {"id": "", "choices": [], "created": plan["created"], "model": plan["model"],
            "object": "chat.completion.chunk", "usage": None}

    def emit(event: dict[str, Any] | bytes, name: bytes = b"") -> None:
        if keepalive and rng.random() < 0.12:
            steps.append(("data", b": keepalive" + eol + eol))
        data = event if isinstance(event, bytes) else b"data: " + json.dumps(
            event, ensure_ascii=False, separators=(",", ":")).encode()
        steps.append(("data", (b"event: " + name + eol if name else b"") + data + eol + eol))

    def delta(**fields: Any) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": {
            **fields, "role": "assistant", "refusal": None}}]}

    def injected(force: bool = False) -> bool:
        """Apply the scripted fault if it is due; True when the stream ends here."""
        nonlocal fired
        if script.inject is None or fired or (count != script.after and not force):
            return False
        fired = True
        kind = script.inject
        if kind == "drop":
            steps.append(("drop", None))
            return True
        if kind == "stall":
            steps.append(("sleep", script.seconds))
        elif kind == "malformed":
            emit(b'data: {not json, "choices":[{"delta":{"content":"')
        elif kind == "unknown":
            emit({"id": "", "object": "service.notice",
                  "notice": {"kind": "queue_position", "value": 0}})
        elif kind == "error":
            if script.style == "event":
                emit({"type": "error", "error": {"type": "overloaded_error",
                                                 "message": script.message}}, b"error")
            elif script.style == "finish":
                emit({**base, "choices": [{"index": 0, "delta": {
                    "content": "", "role": "assistant", "refusal": None},
                    "finish_reason": "error"}],
                    "error": {"message": script.message, "type": "overloaded_error"}})
            else:
                emit({"error": {"message": script.message, "type": "overloaded_error"}})
            steps.append(("end", None))
            return True
        elif kind == "truncate":
            steps.append(("end", None))
            return True
        return False

    def content(event: dict[str, Any]) -> bool:
        nonlocal count
        emit(event)
        count += 1
        if script.delay:
            steps.append(("sleep", script.delay))
        return injected()

    if keepalive:
        steps.append(("data", b": keepalive" + eol + eol))
    if injected():
        return steps
    emit({**delta(content=""), "id": plan["id"]})
    if script.thinking:
        pieces = _pieces(script.thinking)
        for k, piece in enumerate(pieces):
            if script.thinking_field == "reasoning_details":
                item: dict[str, Any] = {"type": "reasoning.text", "text": piece}
                if k == len(pieces) - 1:
                    item["signature"] = plan["signature"]
                event = delta(content="", reasoning_details=[item])
            else:
                event = delta(content="", **{script.thinking_field: piece})
            if content(event):
                return steps
    for piece in script.chunks if script.chunks is not None else _pieces(script.text):
        if content(delta(content=piece)):
            return steps
    for i, call in enumerate(plan["calls"]):
        head = {"index": i, "id": call["id"], "type": "function",
                "function": {"name": call["name"], "arguments": ""}}
        fragments = _fragments(call["arguments"], rng, quirks) if script.fragmented else []
        if not script.fragmented:
            head["function"]["arguments"] = call["arguments"]
        if content(delta(content=None, tool_calls=[head])):
            return steps
        for k, fragment in enumerate(fragments):
            part: dict[str, Any] = {"index": i, "function": {"arguments": fragment}}
            if quirks and k == 1:  # a repeated id and name must not be appended
                part = {**head, "function": {"name": call["name"], "arguments": fragment}}
            elif quirks and k == 2:
                part = {"index": i, "id": "", "function": {"name": "", "arguments": fragment}}
            if content(delta(content=None, tool_calls=[part])):
                return steps
    if injected(force=True):  # asked for a fault after more chunks than there were
        return steps
    finish = plan["finish"]
    emit({**base, "choices": [{"index": 0, "delta": {"content": "", "role": "assistant",
                                                     "refusal": None},
                               "finish_reason": finish}], "usage": plan["usage"]})
    emit({**base, "choices": [{"index": 0, "finish_reason": finish}], "meta": plan["meta"]})
    if script.done:
        emit(b"data: [DONE]")
    steps.append(("end", None))
    return steps


def _frames(run: list[bytes], split: bool, rng: random.Random) -> list[bytes]:
    """One run of SSE bytes as HTTP chunks: one per event, or cut at awkward places."""
    data = b"".join(run)
    if not data:
        return []
    ends = list(itertools.accumulate(len(r) for r in run))
    offsets = [0, *(_cuts(data, ends, rng) if split else ends), len(data)]
    return [b"%x\r\n%s\r\n" % (b - a, data[a:b])
            for a, b in zip(offsets, offsets[1:], strict=False) if b > a]


def _cuts(data: bytes, ends: list[int], rng: random.Random) -> list[int]:
    """Offsets where one run of SSE bytes is split into separate writes.

    Every run with such places is cut inside some UTF-8 characters and between
    some \\r\\n pairs; some event boundaries are not cut, so that one read can
    hold several events.
    """
    cuts: set[int] = set()
    start = 0
    for end in ends:
        for _ in range(rng.choice((0, 1, 1, 2))):
            if end - start > 1:
                cuts.add(rng.randrange(start + 1, end))
        if rng.random() < 0.75:
            cuts.add(end)
        start = end
    for pattern in (rb"[\x80-\xbf]", rb"(?<=\r)\n"):
        tricky = [m.start() for m in re.finditer(pattern, data)]
        if tricky:
            cuts.update(rng.sample(tricky, k=max(1, len(tricky) // 8)))
    return sorted(c for c in cuts if 0 < c < len(data))
