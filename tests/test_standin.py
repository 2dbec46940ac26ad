"""The stand-in server, checked on the wire with raw httpx and raw sockets."""

from __future__ import annotations

import ast
import base64
import io
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nb_claude._stream import Reply, StreamError, accumulate, reply_from_response
from nb_claude.testing import (
    DEFAULT_REPLY_LABEL,
    FAULT_TEXT,
    MAX_IMAGE_BASE64_BYTES,
    MAX_REQUEST_BYTES,
    StandInServer,
)

MODEL = "anthropic/claude-opus-4-8"
ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "nb_claude" / "testing"


@pytest.fixture(scope="module")
def _srv() -> Iterator[StandInServer]:
    with StandInServer(seed=3) as server:
        yield server


@pytest.fixture
def srv(_srv: StandInServer) -> Iterator[StandInServer]:
    _srv.reset()
    yield _srv
    assert _srv.pending() == 0, "a test left scripted answers unused"


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=10,
                      headers={"authorization": "Bearer test-key"}) as c:
        yield c


def body(*messages: Any, **extra: Any) -> dict[str, Any]:
    msgs = list(messages) or [{"role": "user", "content": "Hello there"}]
    return {"model": MODEL, "max_tokens": 1000, "messages": msgs, **extra}


def post(client: httpx.Client, server: StandInServer, payload: Any) -> httpx.Response:
    return client.post(server.url + "/chat/completions", json=payload)


def stream_raw(client: httpx.Client, server: StandInServer, payload: dict[str, Any]
               ) -> tuple[httpx.Response, bytes]:
    with client.stream("POST", server.url + "/chat/completions",
                       json={**payload, "stream": True}) as response:
        raw = b"".join(response.iter_raw())
    return response, raw


def sse(raw: bytes) -> list[dict[str, str]]:
    """A small, independent SSE parser: lines split on bytes, comments kept as ':'."""
    events, current = [], {}
    for line in re.split(rb"\r\n|\r|\n", raw):
        if not line:
            if current:
                events.append(current)
            current = {}
            continue
        if line.startswith(b":"):
            events.append({":": line[1:].decode().strip()})
            continue
        name, _, value = line.partition(b":")
        current[name.decode()] = value.removeprefix(b" ").decode()
    if current:
        events.append(current)
    return events


def chunks(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(e["data"]) for e in sse(raw)
            if "data" in e and e["data"] != "[DONE]" and "event" not in e]


def fold(events: list[dict[str, Any]]) -> Reply:
    reply = Reply()
    for event in events:
        accumulate(event, reply)
    return reply


def inner_error(response: httpx.Response) -> tuple[int, dict[str, Any]]:
    """The upstream status and Anthropic error object inside the service envelope."""
    envelope = response.json()
    assert set(envelope) == {"requestId", "statusCode", "timestamp", "path", "message"}
    assert envelope["statusCode"] == response.status_code
    assert envelope["path"] == "/v1/chat/completions"
    status, _, rest = envelope["message"].partition(" ")
    return int(status), json.loads(rest)


def png(width: int = 4, height: int = 3, fmt: str = "PNG") -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode()


def image_block(data: str, media_type: str = "image/png") -> dict[str, Any]:
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def pdf() -> str:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    buffer = io.BytesIO()
    writer.write(buffer)
    return base64.b64encode(buffer.getvalue()).decode()


# --------------------------------------------------------------------------- wire shape


def test_non_streaming_reply_has_the_service_shape(srv: StandInServer, client: httpx.Client):
    srv.reply("Two plus two is four.", finish_reason="end_turn", usage=(24, 414),
              usd_spent=0.013611)
    response = post(client, srv, body())
    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "chat.completion"
    assert data["id"].startswith("msg_")
    assert data["model"] == "claude-opus-4-8"
    choice = data["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "Two plus two is four.",
                                 "reasoning_content": ""}
    assert choice["finish_reason"] == "end_turn" and choice["logprobs"] is None
    assert data["usage"] == {"prompt_tokens": 24, "completion_tokens": 414, "total_tokens": 438}
    assert data["meta"]["usage"] == {"credits_used": 27222, "usd_spent": 0.013611}
    assert response.headers["x-aimlapi-credits-used"] == "27222"
    assert response.headers["x-aimlapi-usd-spent"] == "0.013611"
    assert response.headers["x-inference-id"]
    reply = reply_from_response(data)
    assert (reply.text, reply.finish_reason, reply.usage.cost_usd) == (
        "Two plus two is four.", "end_turn", 0.013611)


def test_stream_reproduces_the_recorded_shape(srv: StandInServer, client: httpx.Client):
    srv.reply("Hi there, how are you?", usage=(16, 258), usd_spent=0.00124)
    response, raw = stream_raw(client, srv, body())
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in response.headers
    assert response.headers["x-inference-id"]
    assert b"[DONE]" not in raw
    events = chunks(raw)
    first, *middle, finish, last = events
    assert first["id"].startswith("msg_") and len(first["id"]) > 10
    assert first["choices"][0]["delta"] == {"content": "", "role": "assistant", "refusal": None}
    assert all(e["id"] == "" for e in events[1:])
    for event in [first, *middle]:
        assert event["object"] == "chat.completion.chunk" and event["usage"] is None
        assert "finish_reason" not in event["choices"][0]
        delta = event["choices"][0]["delta"]
        assert delta["role"] == "assistant" and delta["refusal"] is None
    assert "".join(e["choices"][0]["delta"]["content"] for e in middle) == "Hi there, how are you?"
    assert len(middle) > 2
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert finish["choices"][0]["delta"]["content"] == ""
    assert finish["usage"] == {"prompt_tokens": 16, "completion_tokens": 258, "total_tokens": 274}
    assert last["choices"] == [{"index": 0, "finish_reason": "stop"}]
    assert last["usage"] is None
    assert last["meta"] == {"usage": {"credits_used": 2480, "usd_spent": 0.00124}}
    reply = fold(events)
    assert (reply.text, reply.finish_reason, reply.usage.output_tokens) == (
        "Hi there, how are you?", "end_turn", 258)


def test_done_line_endings_and_keepalives_on_request(srv: StandInServer, client: httpx.Client):
    srv.reply("ok then", done=True, line_ending="\r\n", keepalive=True, split=False)
    _, raw = stream_raw(client, srv, body())
    assert raw.endswith(b"data: [DONE]\r\n\r\n")
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert {":": "keepalive"} in sse(raw)
    srv.reply("ok then", line_ending="\r", keepalive=False)
    _, raw = stream_raw(client, srv, body())
    assert b"\n" not in raw and raw.count(b"\r\r") == len(chunks(raw))
    assert b"keepalive" not in raw


def test_without_quirks_the_stream_is_plain(client: httpx.Client):
    with StandInServer(quirks=False) as plain:
        for _ in range(3):
            plain.reply("one two three four five six")
            response, raw = stream_raw(client, plain, body())
            assert b"\r" not in raw and b"keepalive" not in raw
            assert raw.count(b"\n\n") == len(chunks(raw))


def _normalised(raw: bytes) -> bytes:
    raw = re.sub(rb'"created":\d+', b'"created":0', raw)
    return re.sub(rb'"(msg|call)_\w+"', b'"id"', raw)


def test_quirks_are_seeded(client: httpx.Client):
    runs = []
    for seed in (11, 11, 12):
        with StandInServer(seed=seed) as server:
            raws = []
            for _ in range(4):
                server.reply("Deterministic quirks, please: one two three.")
                raws.append(_normalised(stream_raw(client, server, body())[1]))
            runs.append(raws)
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    endings = {re.search(rb"\}(\r\n|\r|\n)", raw).group(1) for run in runs for raw in run}
    assert len(endings) > 1, "seeded line endings should vary between requests"
    assert any(b": keepalive" in raw for run in runs for raw in run)


def _raw_reads(server: StandInServer, payload: dict[str, Any]) -> list[bytes]:
    """Every socket read of one request sent over a raw socket."""
    data = json.dumps(payload).encode()
    host, port = server.url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Bearer k\r\nContent-Type: application/json\r\n"
                     b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data))
        reads = []
        while piece := sock.recv(65536):
            reads.append(piece)
    return reads


def _raw_stream(server: StandInServer, payload: dict[str, Any]) -> tuple[list[bytes], list[bytes]]:
    """(every socket read, each HTTP chunk of the body) for one streamed request."""
    reads = _raw_reads(server, {**payload, "stream": True})
    wire = b"".join(reads)
    head, _, rest = wire.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    pieces = []
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        pieces.append(rest[:size])
        assert rest[size:size + 2] == b"\r\n"
        rest = rest[size + 2:]
    return reads, pieces


def test_split_writes_arrive_as_separate_reads(srv: StandInServer):
    srv.reply("Grüße aus Zürich — ünïcödé everywhere: 漢字かな € ✓ " * 3, line_ending="\r\n",
              split=True)
    reads, pieces = _raw_stream(srv, body())
    events_sent = len(chunks(b"".join(pieces)))
    assert len(pieces) > events_sent, "writes should be split inside events"
    assert len(reads) > 5, "split writes should reach the client as separate reads"
    broken_utf8 = 0
    for piece in pieces:
        try:
            piece.decode("utf-8")
        except UnicodeDecodeError:
            broken_utf8 += 1
    assert broken_utf8 > 0, "some writes should end inside a UTF-8 character"
    assert any(a.endswith(b"\r") and b.startswith(b"\n") for a, b in zip(pieces, pieces[1:], strict=False))
    assert fold(chunks(b"".join(pieces))).text.startswith("Grüße aus Zürich")
    srv.reply("Grüße aus Zürich", split=False)
    reads, pieces = _raw_stream(srv, body())
    assert all(p.endswith((b"\n\n", b"\r\r", b"\r\n\r\n")) for p in pieces)


def test_thinking_comes_first_under_each_field(srv: StandInServer, client: httpx.Client):
    for name in ("reasoning_content", "reasoning", "reasoning_details"):
        srv.reply("The answer.", thinking="Let me think about it.", thinking_field=name)
        events = chunks(stream_raw(client, srv, body())[1])
        deltas = [e["choices"][0].get("delta", {}) for e in events]
        kinds = ["thinking" if name in d else "text" if d.get("content") else "" for d in deltas]
        kinds = [k for k in kinds if k]
        assert kinds == sorted(kinds, key=lambda k: k != "thinking") and "thinking" in kinds
        reply = fold(events)
        assert (reply.thinking, reply.text) == ("Let me think about it.", "The answer.")
        if name == "reasoning_details":
            items = [d[name][0] for d in deltas if name in d]
            assert all(item["type"] == "reasoning.text" for item in items)
            assert reply.thinking_signature.startswith("sig_")
        srv.reply("The answer.", thinking="Deep thought.", thinking_field=name)
        message = post(client, srv, body()).json()["choices"][0]["message"]
        assert name in message
        assert reply_from_response(post_json := {"choices": [{"message": message}]}) and \
            reply_from_response(post_json).thinking == "Deep thought."


def test_tool_calls_stream_in_fragments_by_index(srv: StandInServer, client: httpx.Client):
    arguments = {"column": "prix €", "bins": [1, 2, 3], "note": "a \"quoted\" word"}
    srv.reply("Let me look.", tool_calls=[{"name": "column_stats", "arguments": arguments},
                                          {"name": "plot", "arguments": "{}", "id": "call_fixed"}])
    events = chunks(stream_raw(client, srv, body())[1])
    fragments = [f for e in events for f in e["choices"][0].get("delta", {}).get("tool_calls") or []]
    heads = [f for f in fragments if f.get("type") == "function" and f["function"]["arguments"] == ""]
    assert [h["index"] for h in heads] == [0, 1]
    assert heads[0]["id"].startswith("call_") and heads[1]["id"] == "call_fixed"
    assert heads[0]["function"]["name"] == "column_stats"
    first_args = "".join(f["function"]["arguments"] for f in fragments if f["index"] == 0)
    assert json.loads(first_args) == arguments
    assert sum(1 for f in fragments if f["index"] == 0) > 3
    repeats = [f for f in fragments[1:] if f["index"] == 0 and f.get("id") == heads[0]["id"]
               and f["function"]["arguments"]]
    assert repeats, "with quirks, some fragments repeat the id and name"
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"
    reply = fold(events)
    assert [c.name for c in reply.tool_calls] == ["column_stats", "plot"]
    assert reply.tool_calls[0].input == arguments and reply.finish_reason == "tool_use"

    srv.reply("", tool_calls=[{"name": "plot", "arguments": {"x": 1}}], fragmented=False)
    events = chunks(stream_raw(client, srv, body())[1])
    fragments = [f for e in events for f in e["choices"][0].get("delta", {}).get("tool_calls") or []]
    assert len(fragments) == 1 and json.loads(fragments[0]["function"]["arguments"]) == {"x": 1}

    srv.reply("", tool_calls=[{"name": "plot", "arguments": {"x": 1}, "id": "call_1"}])
    message = post(client, srv, body()).json()["choices"][0]
    assert message["finish_reason"] == "tool_calls"
    call = message["message"]["tool_calls"][0]
    assert call["id"] == "call_1" and call["type"] == "function"
    assert isinstance(call["function"]["arguments"], str)
    assert json.loads(call["function"]["arguments"]) == {"x": 1}


def test_raw_finish_reason_usage_and_missing_cost(srv: StandInServer, client: httpx.Client):
    srv.reply("cut", finish_reason="max_tokens", usage=(5, 7), usd_spent=None)
    events = chunks(stream_raw(client, srv, body())[1])
    assert events[-2]["usage"] == {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    assert events[-1]["choices"][0]["finish_reason"] == "max_tokens"
    assert "usd_spent" not in events[-1]["meta"]["usage"]
    assert fold(events).usage.cost_usd is None
    srv.reply("cut", usd_spent=None)
    response = post(client, srv, body())
    assert "x-aimlapi-usd-spent" not in response.headers
    assert "x-aimlapi-credits-used" in response.headers


def test_explicit_chunks_and_timing(srv: StandInServer, client: httpx.Client):
    srv.reply(chunks=["al", "pha ", "β"], first_byte_delay=0.3, delay=0.1)
    started = time.monotonic()
    with client.stream("POST", srv.url + "/chat/completions",
                       json={**body(), "stream": True}) as response:
        headers_at = time.monotonic() - started
        raw = b"".join(response.iter_raw())
    assert headers_at >= 0.28
    assert time.monotonic() - started >= 0.28 + 0.25
    contents = [e["choices"][0]["delta"]["content"] for e in chunks(raw)[1:-2]]
    assert contents == ["al", "pha ", "β"]


# --------------------------------------------------------------------------- faults


def test_faults_use_the_service_envelope_and_headers(srv: StandInServer, client: httpx.Client):
    srv.fault(429, headers={"retry-after": "1"}).fault(500, "upstream said no",
                                                       upstream_status=400)
    srv.fault(503, "busy", envelope="openai", headers={"x-should-retry": "false"})
    assert srv.pending() == 3
    response = post(client, srv, body())
    assert response.status_code == 429 and response.headers["retry-after"] == "1"
    upstream, error = inner_error(response)
    assert upstream == 429
    assert error == {"type": "error", "error": {"type": "rate_limit_error",
                                                "message": "Too Many Requests"}}
    response = post(client, srv, body())
    assert response.status_code == 500
    upstream, error = inner_error(response)
    assert upstream == 400 and error["error"]["message"] == "upstream said no"
    response = post(client, srv, body())
    assert response.status_code == 503 and response.headers["x-should-retry"] == "false"
    assert response.json() == {"error": {"message": "busy", "type": "api_error"}}
    assert srv.pending() == 0
    assert post(client, srv, body()).json()["choices"][0]["message"]["content"].startswith(
        DEFAULT_REPLY_LABEL)


def test_drop_before_any_byte(srv: StandInServer, client: httpx.Client):
    srv.drop()
    with pytest.raises(httpx.RemoteProtocolError):
        post(client, srv, body())
    srv.drop()
    assert _raw_reads(srv, body(stream=True)) == []  # EOF before a single byte


def test_drop_after_chunks_is_abrupt(srv: StandInServer, client: httpx.Client):
    srv.drop(after_chunks=2)
    received = bytearray()
    with pytest.raises(httpx.RemoteProtocolError), client.stream(
            "POST", srv.url + "/chat/completions", json={**body(), "stream": True}) as response:
        assert response.status_code == 200
        for piece in response.iter_raw():
            received += piece
    events = chunks(bytes(received))
    assert len(events) == 3  # the opening chunk and two content chunks
    assert all("finish_reason" not in e["choices"][0] for e in events)
    assert fold(events).text == " ".join(FAULT_TEXT.split()[:2]) + " "
    srv.drop(after_chunks=1)
    with pytest.raises(httpx.RemoteProtocolError):
        post(client, srv, body())


def test_stall_then_continue(srv: StandInServer, client: httpx.Client):
    srv.stall(0.4, after_chunks=1, text="slow and steady")
    gaps, last = [], None
    with client.stream("POST", srv.url + "/chat/completions",
                       json={**body(), "stream": True}) as response:
        raw = b""
        for piece in response.iter_raw():
            now = time.monotonic()
            if last is not None:
                gaps.append(now - last)
            last, raw = now, raw + piece
    assert max(gaps) >= 0.35
    reply = fold(chunks(raw))
    assert reply.text == "slow and steady" and reply.finish_reason == "end_turn"


def test_malformed_event_then_the_stream_goes_on(srv: StandInServer, client: httpx.Client):
    srv.malformed(after_chunks=1, text="one two three")
    _, raw = stream_raw(client, srv, body())
    datas = [e["data"] for e in sse(raw) if "data" in e]
    bad = [d for d in datas if not d.startswith("{") or not _is_json(d)]
    assert len(bad) == 1 and bad[0].startswith("{not json")
    good = [json.loads(d) for d in datas if d not in bad]
    reply = fold(good)
    assert reply.text == "one two three" and reply.finish_reason == "end_turn"


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def test_unknown_chunk_is_valid_json_of_another_shape(srv: StandInServer, client: httpx.Client):
    srv.unknown_chunk(after_chunks=2, text="alpha beta gamma")
    events = chunks(stream_raw(client, srv, body())[1])
    odd = [e for e in events if "choices" not in e]
    assert len(odd) == 1 and odd[0]["object"] != "chat.completion.chunk"
    assert fold(events).text == "alpha beta gamma"


@pytest.mark.parametrize("style", ["data", "event", "finish"])
def test_stream_errors_end_the_stream(srv: StandInServer, client: httpx.Client, style: str):
    srv.stream_error(style, after_chunks=2, message="Overloaded")
    _, raw = stream_raw(client, srv, body())
    parsed = sse(raw)
    last = [e for e in parsed if "data" in e][-1]
    payload = json.loads(last["data"])
    if style == "data":
        assert payload["error"]["message"] == "Overloaded" and "event" not in last
    elif style == "event":
        assert last["event"] == "error" and payload["error"]["message"] == "Overloaded"
    else:
        assert payload["choices"][0]["finish_reason"] == "error"
        assert payload["error"]["message"] == "Overloaded"
    reply = Reply()
    with pytest.raises(StreamError):
        for event in [json.loads(e["data"]) for e in parsed if "data" in e]:
            accumulate(event, reply)
    assert reply.text == " ".join(FAULT_TEXT.split()[:2]) + " "


def test_truncate_ends_cleanly_without_finish(srv: StandInServer, client: httpx.Client):
    srv.truncate(after_chunks=2, text="one two three four")
    response, raw = stream_raw(client, srv, body())  # no exception: a clean EOF
    events = chunks(raw)
    assert len(events) == 3
    assert not any("finish_reason" in c for e in events for c in e["choices"])
    reply = fold(events)
    assert reply.text == "one two " and not reply.done


def test_stop_cuts_a_stalled_stream(client: httpx.Client):
    server = StandInServer().start()
    server.stall(30, after_chunks=1)
    started = time.monotonic()
    with client.stream("POST", server.url + "/chat/completions",
                       json={**body(), "stream": True}) as response:
        iterator = response.iter_raw()
        next(iterator)
        server.stop()
        with pytest.raises(httpx.RemoteProtocolError):
            for _ in iterator:
                pass
    assert time.monotonic() - started < 5


# --------------------------------------------------------------------------- validation


def _with(**changes: Any) -> dict[str, Any]:
    payload = body()
    for key, value in changes.items():
        if value is None:
            payload.pop(key, None)
        else:
            payload[key] = value
    return payload


def _msgs(*messages: dict[str, Any]) -> dict[str, Any]:
    return body(*messages)


def _user(*blocks: Any) -> dict[str, Any]:
    return {"role": "user", "content": list(blocks)}


def _text(text: str = "look") -> dict[str, Any]:
    return {"type": "text", "text": text}


_USE = {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f",
                                          "input": {}}]}
_RESULT = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"}

INVALID = {
    "missing model": (_with(model=None), 400, "model: Field required"),
    "missing messages": (_with(messages=None), 400, "messages: Field required"),
    "empty messages": (_with(messages=[]), 400, "non-empty list"),
    "unknown model": (_with(model="gpt-5"), 404, "model not found"),
    "max_tokens zero": (_with(max_tokens=0), 400, "max_tokens"),
    "max_tokens too big": (_with(max_tokens=128_001), 400, "max_tokens"),
    "max_tokens text": (_with(max_tokens="100"), 400, "max_tokens"),
    "max_tokens bool": (_with(max_tokens=True), 400, "max_tokens"),
    "thinking budget small": (_with(thinking={"type": "enabled", "budget_tokens": 1000}), 400,
                              "greater than or equal to 1024"),
    "thinking budget over max": (_with(thinking={"type": "enabled", "budget_tokens": 1000},
                                       max_tokens=900), 400, "budget_tokens"),
    "thinking budget equal max": (_with(thinking={"type": "enabled", "budget_tokens": 2048},
                                        max_tokens=2048), 400,
                                  "`max_tokens` must be greater than `thinking.budget_tokens`"),
    "thinking unknown type": (_with(thinking={"type": "sometimes"}), 400, "thinking.type"),
    "stop_sequences string": (_with(stop_sequences="END"), 400, "stop_sequences"),
    "stop_sequences numbers": (_with(stop_sequences=[1]), 400, "stop_sequences"),
    "role bot": (_msgs({"role": "bot", "content": "hi"}), 400, "messages.0.role"),
    "first is assistant": (_msgs({"role": "assistant", "content": "hi"},
                                 {"role": "user", "content": "yo"}), 400, "first message"),
    "empty string": (_msgs({"role": "user", "content": ""}), 400, "non-empty content"),
    "empty list": (_msgs({"role": "user", "content": []}), 400, "non-empty content"),
    "empty text block": (_msgs(_user(_text(""))), 400, "text content blocks must be non-empty"),
    "blank text block": (_msgs(_user(_text("  \n"))), 400, "non-whitespace text"),
    "prefill ends in space": (_msgs(_user(_text()), {"role": "assistant", "content": "Sure, "}),
                              400, "trailing whitespace"),
    "unknown block": (_msgs(_user({"type": "video", "data": "x"})), 400, "does not match"),
    "mixed shapes": (_msgs(_user({"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                                 image_block(png()))), 400, "cannot be mixed"),
    "system role with document": (_msgs({"role": "system", "content": "be brief"}, _user(
        {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                        "data": "notes"}})), 400, "cannot be mixed"),
    "tool_use unanswered": (_msgs(_user(_text()), _USE, {"role": "user", "content": "and?"}),
                            400, "`tool_use` ids were found without `tool_result` blocks"),
    "tool_use last": (_msgs(_user(_text()), _USE), 400, "toolu_1"),
    "tool_result orphan": (_msgs(_user(_RESULT)), 400, "unexpected `tool_use_id`"),
    "tool_result after text": (_msgs(_user(_text()), _USE, _user(_text("here"), _RESULT)), 400,
                               "must come first"),
    "tool_use from user": (_msgs(_user(_USE["content"][0])), 400, "only be in `assistant`"),
    "image bmp": (_msgs(_user(image_block(png(), "image/bmp"))), 400, "media_type"),
    "image mislabelled": (_msgs(_user(image_block(png(fmt="JPEG"), "image/png"))), 400,
                          "does not match the provided media type image/png"),
    "image not an image": (_msgs(_user(image_block(base64.b64encode(b"hello").decode()))), 400,
                           "Could not process image"),
    "image bad base64": (_msgs(_user(image_block("%%%"))), 400, "base64"),
    "image too wide": (_msgs(_user(image_block(png(8001, 1)))), 400, "8000 pixels"),
    "many images too wide": (_msgs(_user(*[image_block(png(2001, 1))] * 21)), 400,
                             "2000 pixels"),
    "too many images": (_msgs(_user(*[image_block(png())] * 101)), 400, "maximum of 100 images"),
    "pdf not a pdf": (_msgs(_user({"type": "document", "source": {
        "type": "base64", "media_type": "application/pdf",
        "data": base64.b64encode(b"not a pdf").decode()}})), 400, "PDF specified was not valid"),
    "openai tool without call": (_msgs({"role": "user", "content": "hi"},
                                       {"role": "tool", "tool_call_id": "c1", "content": "1"}),
                                 400, "tool_call_id"),
    "openai image type": (_msgs(_user({"type": "image_url", "image_url": {
        "url": "data:image/tiff;base64,AAAA"}})), 400, "image media type"),
    "tools without schema": (_with(tools=[{"name": "f"}]), 400, "input_schema"),
    "stream not bool": (_with(stream="yes"), 400, "stream"),
}


@pytest.mark.parametrize("case", list(INVALID), ids=list(INVALID))
def test_invalid_requests_are_refused_before_streaming(srv: StandInServer, client: httpx.Client,
                                                       case: str):
    payload, status, fragment = INVALID[case]
    srv.reply("must not be used")
    response = client.post(srv.url + "/chat/completions",
                           json={**payload, "stream": payload.get("stream", True)})
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    upstream, error = inner_error(response)
    assert upstream == status
    expected = "not_found_error" if status == 404 else "invalid_request_error"
    assert error["type"] == "error" and error["error"]["type"] == expected
    assert fragment in error["error"]["message"]
    assert srv.pending() == 1, "a refused request must not use a scripted answer"
    srv.reset()


def test_invalid_json_and_oversized_bodies(srv: StandInServer, client: httpx.Client):
    response = client.post(srv.url + "/chat/completions", content=b'{"model": ',
                           headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "not valid JSON" in inner_error(response)[1]["error"]["message"]
    big = b'{"model": "x", "pad": "' + b"a" * MAX_REQUEST_BYTES + b'"}'
    response = client.post(srv.url + "/chat/completions", content=big,
                           headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert inner_error(response)[1]["error"]["type"] == "request_too_large"
    assert srv.requests[-1].raw == b"" and srv.requests[-1].body is None


def test_image_size_limit_counts_base64_bytes(srv: StandInServer, client: httpx.Client):
    data = png()
    padded = data + "A" * (MAX_IMAGE_BASE64_BYTES + 1 - len(data))
    response = post(client, srv, _msgs(_user(image_block(padded))))
    assert response.status_code == 400
    assert "image exceeds 5 MB maximum" in inner_error(response)[1]["error"]["message"]


def test_valid_rich_conversation_and_unknown_keys_pass(srv: StandInServer, client: httpx.Client):
    payload = body(
        _user(_text("What is in these?"), image_block(png(40, 30)),
              image_block(png(8, 8, "WEBP"), "image/webp"), image_block(png(5, 5, "GIF"), "image/gif"),
              {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                              "data": pdf()}, "title": "report.pdf"}),
        {"role": "assistant", "content": [_text("Let me check."), *_USE["content"]]},
        _user(_RESULT, _text("Go on.")),
        {"role": "assistant", "content": "Sure"},
        system="Be brief.", temperature=0.2, top_p=0.5, stream_options={"include_usage": True},
        tools=[{"name": "f", "description": "d", "input_schema": {"type": "object"}}],
        tool_choice={"type": "function", "function": {"name": "f"}},
        thinking={"type": "enabled", "budget_tokens": 1024}, metadata={"user_id": "u"},
        max_tokens=4096)
    response = post(client, srv, payload)
    assert response.status_code == 200, response.text
    text = response.json()["choices"][0]["message"]["content"]
    assert "5 messages (user, assistant, user, assistant, user)" not in text
    assert "4 messages (user, assistant, user, assistant)" in text
    assert "1 tool result (toolu_1)" in text and "tools: f" in text
    payload["messages"] = payload["messages"][:1]
    text = post(client, srv, payload).json()["choices"][0]["message"]["content"]
    assert "3 images (image/png" in text and "image/webp" in text and "image/gif" in text
    assert "1 document (application/pdf" in text and "report.pdf" in text
    openai = body({"role": "system", "content": "Be brief."},
                  {"role": "user", "content": [
                      {"type": "text", "text": "see"},
                      {"type": "image_url", "image_url": {"url": "data:image/png;base64," + png()}}]})
    response = post(client, srv, openai)
    assert response.status_code == 200, response.text
    assert "system prompt: yes" in response.json()["choices"][0]["message"]["content"]


# --------------------------------------------------------------------------- auth and records


def test_missing_or_wrong_key_is_401_and_never_echoed(client: httpx.Client):
    with StandInServer(api_key="sk-right-0123") as server, \
            httpx.Client(trust_env=False) as bare:
        url = server.url + "/chat/completions"
        response = bare.post(url, json=body())
        assert response.status_code == 401
        assert inner_error(response)[1]["error"]["type"] == "authentication_error"
        response = bare.post(url, json=body(), headers={"authorization": "Bearer sk-wrong-9876"})
        assert response.status_code == 401 and "sk-wrong-9876" not in response.text
        assert "sk-right-0123" not in response.text and "sk-right" not in repr(server)
        response = bare.post(url, json=body(), headers={"authorization": "Bearer sk-right-0123"})
        assert response.status_code == 200
        assert len(server.requests) == 3
    with StandInServer() as open_server, httpx.Client(trust_env=False) as bare:
        url = open_server.url + "/chat/completions"
        assert bare.post(url, json=body(), headers={"authorization": "Bearer anything"}
                         ).status_code == 200
        assert bare.post(url, json=body(), headers={"authorization": "Basic abc"}).status_code == 401


def test_requests_are_recorded_and_reset(srv: StandInServer, client: httpx.Client):
    srv.fault(500)
    post(client, srv, body())
    post(client, srv, _with(max_tokens=0))
    post(client, srv, body(metadata={"user_id": "u1"}))
    assert [r.method for r in srv.requests] == ["POST"] * 3
    assert all(r.path == "/v1/chat/completions" for r in srv.requests)
    first = srv.requests[0]
    assert first.headers["authorization"] == "Bearer test-key"
    assert first.headers["content-type"] == "application/json"
    assert first.body == body() and json.loads(first.raw) == body()
    assert "test-key" not in repr(first) and "test-key" not in repr(srv.requests)
    assert srv.requests[1].body["max_tokens"] == 0
    assert srv.requests[2].body["metadata"] == {"user_id": "u1"}
    srv.reply("x").reset()
    assert srv.requests == [] and srv.pending() == 0


def test_default_reply_is_deterministic_and_honest(client: httpx.Client):
    payload = body({"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"},
                   _user(_text("x" * 52), image_block(png(300, 200))),
                   system="Be brief.", stop_sequences=["ZZZ"],
                   tools=[{"name": "column_stats", "input_schema": {"type": "object"}}],
                   thinking={"type": "enabled", "budget_tokens": 2048}, max_tokens=4000)
    texts = []
    for seed in (1, 2):
        with StandInServer(seed=seed) as server:
            for _ in range(2):
                texts.append(post(client, server, payload).json()["choices"][0]["message"])
            events = chunks(stream_raw(client, server, payload)[1])
            streamed = fold(events)
    assert all(t == texts[0] for t in texts)
    text = texts[0]["content"]
    assert text.startswith(DEFAULT_REPLY_LABEL)
    assert "3 messages (user, assistant, user)" in text
    assert "52 characters of text and 1 image (image/png" in text
    assert "system prompt: yes" in text and "tools: column_stats" in text
    assert "thinking: enabled (budget 2048 tokens)" in text and "stop sequences: 1" in text
    assert texts[0]["reasoning_content"]
    assert streamed.text == text and streamed.thinking == texts[0]["reasoning_content"]
    assert streamed.tool_calls == [] and streamed.finish_reason == "end_turn"


def test_default_reply_honours_max_tokens_and_stop_sequences(srv: StandInServer,
                                                             client: httpx.Client):
    choice = post(client, srv, _with(max_tokens=5)).json()["choices"][0]
    assert choice["finish_reason"] == "max_tokens" and len(choice["message"]["content"]) == 20
    choice = post(client, srv, _with(stop_sequences=["received"])).json()["choices"][0]
    assert choice["finish_reason"] == "stop_sequence"
    assert choice["message"]["content"].endswith("I ")


def test_models_and_unknown_paths(srv: StandInServer, client: httpx.Client):
    models = client.get(srv.url + "/models").json()
    assert [m["id"] for m in models["data"]] == ["anthropic/claude-opus-4-8", "claude-opus-4-8"]
    response = client.post(srv.url + "/completions", json=body())
    assert response.status_code == 404


def test_command_line_serves_until_terminated(tmp_path: Any):
    process = subprocess.Popen([sys.executable, "-m", "nb_claude.testing", "--port", "0"],
                               stdout=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip()  # type: ignore[union-attr]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", url)
        with httpx.Client(trust_env=False, headers={"authorization": "Bearer k"}) as c:
            response = c.post(url + "/chat/completions", json=body())
        assert response.json()["choices"][0]["message"]["content"].startswith(DEFAULT_REPLY_LABEL)
    finally:
        process.terminate()
        process.wait(timeout=5)


def test_every_answer_that_is_a_reply_carries_the_stand_in_mark(srv: StandInServer,
                                                              client: httpx.Client):
    srv.reply("Whole.").reply("Streamed.").fault(429)
    assert post(client, srv, body()).headers["x-nb-claude-stand-in"] == "1"
    response, _ = stream_raw(client, srv, body())
    assert response.headers["x-nb-claude-stand-in"] == "1"
    assert "x-nb-claude-stand-in" not in post(client, srv, body()).headers  # an error
    assert post(client, srv, body()).headers["x-nb-claude-stand-in"] == "1"  # default reply


def test_the_stand_in_package_imports_only_the_standard_library():
    """Every module of nb_claude.testing, lazy imports included: relative imports stay inside
    the package and nothing names nb_claude; importing them all loads no other module."""
    modules = sorted(PACKAGE.glob("*.py"))
    assert len(modules) > 1
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                assert node.level in (0, 1) and not (node.module or "").startswith(
                    "nb_claude"), (path.name, node.module)
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("nb_claude") for a in node.names), path.name
    names = [p.stem for p in modules if p.stem != "__init__"]
    code = ("import importlib, sys, nb_claude.testing\n"
            f"for name in {names!r}:\n"
            "    importlib.import_module('nb_claude.testing.' + name)\n"
            "print(sorted(m for m in sys.modules if m.startswith('nb_claude')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    expected = {"nb_claude", "nb_claude.testing"} | {f"nb_claude.testing.{n}" for n in names}
    assert out.stdout.strip() and ast.literal_eval(out.stdout.strip()) == sorted(expected), \
        out.stderr
