"""One reducer for streamed and whole replies: errors, refusals, the model, equal fields."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import SENTINEL_KEY

import nb_claude
from nb_claude import _config
from nb_claude._client import Client
from nb_claude._errors import StreamError
from nb_claude._sse import ServerSentEvent, iter_events
from nb_claude._stream import Reply, accumulate, events_from_sse, reply_from_response
from nb_claude.testing import StandInServer

REQUESTED = "anthropic/claude-opus-4-8"
SERVED = "claude-opus-4-8-20260401"
BODY = {"model": REQUESTED, "max_tokens": 4096,
        "messages": [{"role": "user", "content": "Hi"}]}


def history() -> list[tuple[str, str, str | None]]:
    return [(t.prompt, t.reply.text, t.reply.error) for t in nb_claude.get_session().history]


@pytest.fixture
def seeded(run: Any, server: StandInServer) -> list[tuple[str, str, str | None]]:
    server.reply("Earlier answer.")
    assert run("%%claude\nEarlier question").error is None
    server.reset()
    return history()


def test_no_stream_error_finish_raises_and_records_nothing(run: Any, server: StandInServer,
                                                           seeded: Any) -> None:
    _config.settings.update(replay_mode="auto")
    replay = Path("nb_claude_replay.jsonl")
    server.stream_error(style="finish", message="Overloaded")
    cell = run("%%claude --no-stream\nq")
    assert isinstance(cell.error, StreamError)
    text = str(cell.error)
    assert "ended the reply with an error" in text and "\n" not in text
    assert SENTINEL_KEY not in text + cell.stdout + cell.stderr
    assert not replay.exists() or replay.read_text().strip() == ""
    assert history() == seeded
    server.reply("Recovered.")
    assert run("%%claude --no-stream\nAgain").error is None
    assert len(replay.read_text().splitlines()) == 1  # a good whole reply is still recorded


def _served(stream: bool, **script: Any) -> Reply:
    """One reply from a fresh stand-in (same seed: same ids and signature), folded as the
    session folds it (a stream into a reply pre-filled with the requested model)."""
    with StandInServer(seed=5, quirks=False) as server:
        server.reply(**script)
        client = Client(api_key="stand-in", base_url=server.url, max_retries=0)
        try:
            if stream:
                reply = Reply(model=REQUESTED)
                for event in client.stream(BODY):
                    accumulate(event, reply)
            else:
                reply = reply_from_response(client.create(BODY))
        finally:
            client.close()
    return reply


FIELDS = ("text", "thinking", "thinking_signature", "tool_calls", "finish_reason",
          "raw_finish_reason", "usage", "model", "id", "error", "warnings")


@pytest.mark.parametrize("thinking_field", ["reasoning_content", "reasoning",
                                            "reasoning_details"])
def test_streamed_and_whole_replies_have_equal_fields(thinking_field: str) -> None:
    script = {"text": "Checking the revenue — naïve café.", "thinking": "Let me look at it.",
              "thinking_field": thinking_field, "model": SERVED,
              "tool_calls": [{"id": "call_1", "name": "column_stats",
                              "arguments": {"column": "revenue"}}]}
    streamed, whole = _served(True, **script), _served(False, **script)
    for name in FIELDS:
        assert getattr(streamed, name) == getattr(whole, name), name
    assert streamed.model == SERVED and streamed.finish_reason == "tool_use"
    assert streamed.tool_calls[0].input == {"column": "revenue"}
    assert streamed.thinking == "Let me look at it." and streamed.usage.cost_usd is not None
    if thinking_field == "reasoning_details":
        assert streamed.thinking_signature.startswith("sig_")


@pytest.mark.parametrize("flag", ["", " --no-stream"])
def test_reply_model_is_the_one_the_service_used(run: Any, server: StandInServer,
                                                 flag: str) -> None:
    server.reply("Hello.", model=SERVED)
    cell = run(f"%%claude{flag}\nHi")
    assert cell.error is None
    assert nb_claude.get_session().history[-1].reply.model == SERVED
    assert server.requests[-1].body["model"] == REQUESTED
    unnamed = {"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": "stop"}]}
    assert accumulate(unnamed, Reply(model=REQUESTED)).model == REQUESTED  # nothing said
    first = accumulate({**unnamed, "model": SERVED}, Reply(model=REQUESTED))
    assert accumulate({**unnamed, "model": "other"}, first).model == SERVED  # the first word


REFUSAL = "I can't help with that request."


def _refusal_sse(finish: str) -> bytes:
    base = {"id": "", "created": 1770989120, "model": SERVED, "object": "chat.completion.chunk",
            "usage": None}
    events = [
        {**base, "id": "msg_refused", "choices": [{"index": 0, "delta": {
            "role": "assistant", "content": None, "refusal": ""}}]},
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": None,
                                                    "refusal": REFUSAL[:10]}}]},
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": None,
                                                    "refusal": REFUSAL[10:]}}]},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}],
         "usage": {"prompt_tokens": 9, "completion_tokens": 8, "total_tokens": 17}},
    ]
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + \
        b"data: [DONE]\n\n"


def _refusal_json(finish: str) -> bytes:
    return json.dumps({
        "id": "msg_refused", "object": "chat.completion", "model": SERVED, "created": 1,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": None,
                                             "refusal": REFUSAL},
                     "finish_reason": finish}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 8, "total_tokens": 17}}).encode()


@pytest.mark.parametrize("flag", ["", " --no-stream"])
@pytest.mark.parametrize("finish, expected", [("stop", "refusal"), ("end_turn", "refusal"),
                                              ("max_tokens", "max_tokens")])
def test_openai_style_refusal_shows_as_a_refusal(run: Any, server: StandInServer, flag: str,
                                                 finish: str, expected: str) -> None:
    if flag:
        server.raw(200, _refusal_json(finish), headers={"content-type": "application/json"})
    else:
        server.raw(200, _refusal_sse(finish), headers={"content-type": "text/event-stream"})
    cell = run(f"%%claude{flag}\nSomething it refuses")
    assert cell.error is None
    assert REFUSAL in cell.markdown
    reply = nb_claude.get_session().history[-1].reply
    assert reply.text == REFUSAL and reply.finish_reason == expected
    assert reply.raw_finish_reason == finish and not reply.partial


def _sse(*datas: str, name: str = "message") -> Iterator[ServerSentEvent]:
    return (ServerSentEvent(name, data) for data in datas)


def test_events_from_sse_shapes() -> None:
    events = list(events_from_sse(_sse('{"a": 1}', '{"b": 2}  ', '{"c": 3} x', "[1]", "",
                                       " {\"d\": 4}")))
    assert events[:2] == [{"a": 1}, {"b": 2}]
    assert "malformed" in events[2]["nb_claude_warning"]
    assert "unknown shape" in events[3]["nb_claude_warning"]
    assert events[4:] == [{"d": 4}]
    (error,) = events_from_sse(_sse('{"error": {"message": "Overloaded"}}', name="error"))
    assert error == {"error": {"message": "Overloaded"}}


def test_done_ends_the_events_and_closes_the_source() -> None:
    closed = []

    def source() -> Iterator[ServerSentEvent]:
        try:
            yield from _sse('{"a": 1}', "[DONE]", '{"never": 1}')
        finally:
            closed.append(True)

    assert list(events_from_sse(source())) == [{"a": 1}]
    assert closed == [True]
    events = events_from_sse(source())
    assert next(events) == {"a": 1}
    events.close()
    assert closed == [True, True]


def test_anthropic_native_blocks_fold_like_deltas() -> None:
    body = {"id": "msg_native", "model": SERVED, "choices": [{"index": 0, "message": {
        "role": "assistant", "content": [
            {"type": "thinking", "thinking": "Hmm.", "signature": "sig_n"},
            {"type": "text", "text": "Calling."},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"x": 1}}]},
        "finish_reason": "tool_use"}]}
    reply = reply_from_response(body, Reply(model=REQUESTED))
    assert (reply.text, reply.thinking, reply.thinking_signature) == ("Calling.", "Hmm.", "sig_n")
    assert [(c.id, c.name, c.input) for c in reply.tool_calls] == [("toolu_1", "f", {"x": 1})]
    assert reply.model == SERVED and reply.finish_reason == "tool_use" and reply.done


def test_whole_error_finish_raises_like_a_streamed_one() -> None:
    body = {"choices": [{"index": 0, "message": {"content": "Partial"},
                         "finish_reason": "error"}]}
    with pytest.raises(StreamError, match="ended the reply with an error"):
        reply_from_response(body)
    streamed = Reply()
    data = b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": "Partial"},
                                                "finish_reason": "error"}]}).encode() + b"\n\n"
    with pytest.raises(StreamError, match="ended the reply with an error"):
        for event in events_from_sse(iter_events([data])):
            accumulate(event, streamed)
    assert streamed.text == "Partial" and streamed.error and streamed.partial
