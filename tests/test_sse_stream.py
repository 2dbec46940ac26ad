"""The SSE decoder and the stream reducer on committed transcripts of every quirk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nb_claude._errors import StreamError
from nb_claude._sse import ServerSentEvent, SSEDecoder, iter_events
from nb_claude._stream import (
    Reply,
    accumulate,
    events_from_sse,
    normalise_finish_reason,
    reply_from_response,
)

FIXTURES = Path(__file__).parent / "fixtures" / "sse"


def load(name: str) -> bytes:
    return (FIXTURES / f"{name}.sse").read_bytes()


def events_of(chunks) -> list[ServerSentEvent]:
    return list(iter_events(chunks))


def fold(chunks) -> tuple[Reply, str | None]:
    reply = Reply()
    try:
        for event in events_from_sse(iter_events(chunks)):
            accumulate(event, reply)
    except StreamError as exc:
        return reply, str(exc)
    return reply, None


def test_service_transcript_exact_events_and_reply():
    events = events_of([load("service_basic")])
    assert [e.event for e in events] == ["message"] * 6
    first = json.loads(events[0].data)
    assert first["id"] == "msg_018vAbC"
    assert "finish_reason" not in first["choices"][0]
    assert json.loads(events[-1].data)["choices"] == [{"index": 0, "finish_reason": "stop"}]
    reply, error = fold([load("service_basic")])
    assert error is None
    assert reply.text == "Hi there — naïve café ☕"
    assert reply.id == "msg_018vAbC"
    assert reply.finish_reason == "end_turn" and reply.raw_finish_reason == "stop"
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (16, 258)
    assert reply.usage.cost_usd == pytest.approx(0.00124)
    assert reply.usage.credits == 2480
    assert reply.done and not reply.partial


def test_openai_style_usage_in_empty_choices_and_done():
    reply, error = fold([load("openai_usage_done")])
    assert error is None
    assert reply.text == "Hello" and reply.finish_reason == "max_tokens"
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (5, 1)
    assert reply.usage.cost_usd is None


def test_crlf_keepalive_and_u2028_inside_json():
    events = events_of([load("crlf_keepalive")])
    assert len(events) == 3
    assert events[2].id == "7"
    reply, _ = fold([load("crlf_keepalive")])
    assert reply.text == "a\u2028b"
    assert reply.finish_reason == "end_turn"


def test_cr_only_line_endings():
    reply, _ = fold([load("cr_only")])
    assert reply.text == "one\ntwo" and reply.finish_reason == "stop_sequence"
    assert reply.id == "msg_cr"


@pytest.mark.parametrize("name, thinking, text, signature", [
    ("thinking_reasoning_content", "Let me think.", "Answer.", ""),
    ("thinking_reasoning", "Hmm, yes", "Done.", "sig_abc"),
])
def test_thinking_under_each_field(name, thinking, text, signature):
    reply, _ = fold([load(name)])
    assert reply.thinking == thinking and reply.text == text
    assert reply.thinking_signature == signature


def test_fragmented_tool_calls_accumulate_by_index():
    reply, _ = fold([load("tool_calls_fragmented")])
    assert reply.text == "Checking."
    assert reply.finish_reason == "tool_use"
    assert [(c.id, c.name) for c in reply.tool_calls] == [("call_1", "column_stats"),
                                                          ("call_2", "region_of")]
    assert reply.tool_calls[0].input == {"column": "revenue"}
    assert reply.tool_calls[1].input == {}


@pytest.mark.parametrize("name, message", [
    ("error_data", "Overloaded"),
    ("error_event", "Internal server error"),
    ("finish_error", "the service ended the reply with an error"),
])
def test_mid_stream_errors_keep_partial_text(name, message):
    reply, error = fold([load(name)])
    assert error == message
    assert reply.text == "Partial" and reply.error == message and reply.partial


def test_stream_without_finish_is_partial():
    reply, error = fold([load("no_finish")])
    assert error is None and reply.text == "Cut off"
    assert not reply.done and reply.partial


def test_malformed_and_unknown_chunks_are_skipped_with_a_warning():
    reply, error = fold([load("malformed_unknown")])
    assert error is None
    assert reply.text == "AB" and reply.finish_reason == "end_turn"
    assert len(reply.warnings) == 1 and "malformed" in reply.warnings[0]


ALL = sorted(p.stem for p in FIXTURES.glob("*.sse"))


@pytest.mark.parametrize("name", ALL)
def test_every_single_byte_split_gives_the_same_events(name):
    data = load(name)
    whole = events_of([data])
    for cut in range(len(data) + 1):
        assert events_of([data[:cut], data[cut:]]) == whole, cut


@pytest.mark.parametrize("name", ALL)
def test_one_byte_at_a_time(name):
    data = load(name)
    assert events_of([data[i:i + 1] for i in range(len(data))]) == events_of([data])


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(ALL), cuts=st.lists(st.integers(min_value=0, max_value=4000),
                                                max_size=40))
def test_any_split_property(name, cuts):
    data = load(name)
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert events_of(pieces) == events_of([data])
    assert fold(pieces)[0].text == fold([data])[0].text


def test_decoder_rules():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"data:b\n\n") == [ServerSentEvent("message", "a\nb")]
    assert decoder.feed(b"event: error\ndata: {}\n\n") == [ServerSentEvent("error", "{}")]
    assert decoder.feed(b": comment only\n\n") == []
    assert decoder.feed(b"retry: 100\ndata: x\n\n")[0].retry == 100
    decoder.feed(b"data: unterminated")
    assert decoder.flush() == [ServerSentEvent("message", "unterminated")]


def test_finish_reasons_are_normalised():
    assert [normalise_finish_reason(r) for r in
            ("stop", "end_turn", "length", "max_tokens", "tool_calls", "tool_use",
             "content_filter", "refusal", "stop_sequence", None)] == [
        "end_turn", "end_turn", "max_tokens", "max_tokens", "tool_use", "tool_use",
        "refusal", "refusal", "stop_sequence", None]


def test_non_streaming_response_shapes():
    body = {"id": "msg_012q", "object": "chat.completion", "model": "claude-opus-4-8",
            "created": 1776417936,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi",
                                                 "reasoning_content": "thought"},
                         "finish_reason": "end_turn", "logprobs": None}],
            "usage": {"prompt_tokens": 24, "completion_tokens": 414, "total_tokens": 438},
            "meta": {"usage": {"credits_used": 27222, "usd_spent": 0.013611}}}
    reply = reply_from_response(body)
    assert (reply.text, reply.thinking, reply.finish_reason, reply.id) == (
        "Hi", "thought", "end_turn", "msg_012q")
    assert reply.usage.cost_usd == pytest.approx(0.013611)
    tools = {"choices": [{"message": {"content": None, "tool_calls": [
        {"id": "call_9", "type": "function",
         "function": {"name": "f", "arguments": "{\"x\": 1}"}}]}, "finish_reason": "tool_calls"}]}
    reply = reply_from_response(tools)
    assert reply.tool_calls[0].input == {"x": 1} and reply.finish_reason == "tool_use"


def test_reply_round_trips_through_dict():
    reply, _ = fold([load("tool_calls_fragmented")])
    again = Reply.from_dict(json.loads(json.dumps(reply.to_dict())))
    assert again.text == reply.text and again.tool_calls == reply.tool_calls
    assert again.usage == reply.usage
