"""The session treats every reply as untrusted: it asks no questions where it cannot,
caps a runaway reply, says truthfully what was kept, stops before a reset, answers
every tool call after an interrupt, and refuses text it cannot send."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import SENTINEL_KEY

import nb_claude
from nb_claude import _config, _tools
from nb_claude._errors import ConfigError, StreamError
from nb_claude.testing import _Script

TOOL_CELL = '''
import nb_claude
ran = []

@nb_claude.tool
def lookup(n: int) -> int:
    """Look a number up."""
    ran.append(n)
    return n * 10
'''


@pytest.fixture
def lookup(ip, run):
    assert run(TOOL_CELL).error is None
    yield ip.user_ns["ran"]
    _tools.unregister("lookup")


def footer(markdown: str) -> str:
    return markdown.rsplit("<sub>", 1)[1]


# ---------------------------------------------------------------- confirmation


@pytest.mark.parametrize("error", ["StdinNotImplementedError", "EOFError"])
def test_confirm_without_stdin_declines_with_the_reason(run, server, lookup, monkeypatch, error):
    from IPython.core.error import StdinNotImplementedError

    exc = StdinNotImplementedError("raw_input was called, but this frontend does not support "
                                    "input requests.") if error != "EOFError" else EOFError()

    def no_stdin(prompt: str = "") -> str:
        raise exc

    monkeypatch.setattr("builtins.input", no_stdin)
    server.reply(tool_calls=[{"name": "lookup", "arguments": {"n": 4}, "id": "call_1"}])
    server.reply("Could not look it up.")
    cell = run("%%claude --tools lookup --confirm\nLook up 4")
    assert cell.error is None and cell.stderr == ""
    assert lookup == []
    (sent,) = server.requests[1].body["messages"][2]["content"]
    assert sent["is_error"] is True
    assert sent["content"] == ("not run: no way to ask: this front end has no input box; "
                               "pass --confirm only in interactive notebooks")
    assert "no way to ask" in cell.markdown and "Could not look it up." in cell.markdown


def test_an_injected_confirmer_is_asked_instead_of_stdin(configured, server, lookup,
                                                          monkeypatch):
    monkeypatch.setattr("builtins.input", lambda prompt="": pytest.fail("asked on stdin"))
    asked = []
    server.reply(tool_calls=[{"name": "lookup", "arguments": {"n": 1}, "id": "call_a"},
                             {"name": "lookup", "arguments": {"n": 2}, "id": "call_b"}])
    server.reply("Done.")
    reply = nb_claude.get_session().ask(
        "Look up 1 and 2", tools="lookup", display=False,
        confirm=lambda name, arguments: asked.append((name, arguments)) or "1" in arguments)
    assert reply.text == "Done." and lookup == [1]
    assert asked == [("lookup", '{"n": 1}'), ("lookup", '{"n": 2}')]
    yes, no = server.requests[1].body["messages"][2]["content"]
    assert yes["is_error"] is False and no == {
        "type": "tool_result", "tool_use_id": "call_b", "content": "the user declined this call",
        "is_error": True}


# ---------------------------------------------------------------- runaway replies


def test_a_runaway_stream_is_stopped_and_the_partial_reply_kept(run, server):
    chunk = "All work and no play makes a long reply. " * 5
    server.reply(chunks=[chunk] * 400, done=True)  # about 84,000 characters
    started = time.monotonic()
    cell = run("%%claude --max-tokens 50\nTell me a story")
    assert time.monotonic() - started < 5
    limit = 16 * 50 + 1024
    assert isinstance(cell.error, StreamError)
    message = str(cell.error)
    assert message.startswith("the reply passed ") and "\n" not in message
    assert message.endswith("characters, more than max_tokens=50 allows: stopped; "
                            "the partial reply was kept")
    turn = nb_claude.get_session().history[-1]
    assert limit < len(turn.reply.text) <= limit + len(chunk)
    assert turn.reply.partial and "more than max_tokens=50" in turn.reply.error
    assert "error: the reply passed" in footer(cell.markdown)
    server.reply("next")
    assert run("%%claude\nnext").error is None  # the connection was let go cleanly


def test_a_reply_within_its_allowance_is_untouched(run, server):
    text = "word " * 300  # 1,500 characters: within 16 * 50 + 1024
    server.reply(text)
    cell = run("%%claude --max-tokens 50\nShort story")
    assert cell.error is None
    assert nb_claude.get_session().history[-1].reply.text == text


# ---------------------------------------------------------------- what was kept


def test_a_drop_after_content_says_the_partial_reply_was_kept(run, server):
    server.drop(after_chunks=3)
    cell = run("%%claude\nq")
    message = str(cell.error)
    assert isinstance(cell.error, StreamError) and message.count("partial reply was kept") == 1
    assert message.endswith("; the partial reply was kept")
    assert nb_claude.get_session().history[-1].reply.text


@pytest.mark.parametrize("how", ["drop", "error event"])
def test_a_failure_before_any_content_says_nothing_was_kept(run, server, how):
    if how == "drop":  # the stream opens, says nothing, and the connection drops
        server._push(_Script(chunks=["", ""], inject="drop", after=1))
    else:
        server.stream_error(after_chunks=0, message="Overloaded")
    cell = run("%%claude\nq")
    message = str(cell.error)
    assert isinstance(cell.error, StreamError)
    assert "partial reply was kept" not in message and message.endswith("; nothing was kept")
    assert nb_claude.get_session().history == []


# ---------------------------------------------------------------- reset


def test_reset_stops_a_streaming_reply_first(run, server):
    session = nb_claude.get_session()
    server.reply("earlier")
    session.ask("earlier question", display=False)
    server.stall(10, after_chunks=2, text="a reply that stalls half way and then carries on")
    streaming = threading.Event()
    session.subscribe(lambda event, turn: streaming.set()
                      if event == "update" and turn is not None and turn.reply.text else None)
    worker = threading.Thread(target=session.ask, args=("stalls",), kwargs={"display": False})
    worker.start()
    assert streaming.wait(5)
    started = time.monotonic()
    cell = run("%claude_reset")
    assert time.monotonic() - started < 1
    assert cell.error is None and session.history == []
    worker.join(5)
    assert not worker.is_alive() and session.history == []  # not re-added afterwards
    server.reply("fresh")
    session.ask("fresh start", display=False)
    assert server.requests[-1].body["messages"] == [{"role": "user", "content": "fresh start"}]


# ---------------------------------------------------------------- interrupted tools


STUCK_CELL = '''
from nb_claude._tools import ToolInterrupted, ToolResult

@nb_claude.tool
def stuck(n: int) -> int:
    """Interrupted while it runs: what run_tool_call raises when the user stops a tool."""
    raise ToolInterrupted(ToolResult("call_2", "stuck", "stuck was interrupted while running",
                                     is_error=True, summary="interrupted"))
'''


def test_an_interrupted_tool_answers_every_call_truthfully(run, server, lookup):
    assert run(STUCK_CELL).error is None
    try:
        server.reply("Three lookups.", tool_calls=[
            {"name": "lookup", "arguments": {"n": 1}, "id": "call_1"},
            {"name": "stuck", "arguments": {"n": 2}, "id": "call_2"},
            {"name": "lookup", "arguments": {"n": 3}, "id": "call_3"}])
        cell = run("%%claude --tools lookup,stuck\nGo")
        assert cell.error is None and "interrupted" in footer(cell.markdown)
        assert lookup == [1]  # the call after the interrupted one never ran
        turn = nb_claude.get_session().history[-1]
        assert turn.interrupted
        results = turn.steps[0].results
        assert [(r.tool_use_id, r.is_error) for r in results] == [
            ("call_1", False), ("call_2", True), ("call_3", True)]
        assert results[0].content == "10"
        assert results[1].content.startswith("stuck was interrupted while running")
        assert results[2].content == "not run: interrupted"
        server.reply("after")
        run("%%claude --tools lookup,stuck\nAfter")  # with tools: the native blocks go back
        messages = server.requests[-1].body["messages"]
        uses = [b["id"] for b in messages[1]["content"] if b["type"] == "tool_use"]
        answers = [b["tool_use_id"] for b in messages[2]["content"] if b["type"] == "tool_result"]
        assert uses == answers == ["call_1", "call_2", "call_3"]
        assert messages[2]["content"][-1] == {"type": "text", "text": "After"}
    finally:
        _tools.unregister("stuck")


# ---------------------------------------------------------------- bad text, the key


def test_a_lone_surrogate_in_a_prompt_is_a_one_line_error(configured, server):
    session = nb_claude.get_session()
    for call in (session.ask, session.request_body):
        with pytest.raises(ConfigError) as info:
            call("tell me about \ud800 this", display=False) if call is session.ask \
                else call("tell me about \ud800 this")
        assert str(info.value) == ("the prompt has a lone surrogate (\\ud800) at character 15: "
                                   "delete it or paste the text again")
    with pytest.raises(ConfigError, match="system prompt has a lone surrogate"):
        session.ask("fine", system="be \udfff brief", display=False)
    assert server.requests == [] and session.history == []


def test_a_lone_surrogate_in_a_cell_is_a_usage_error(ip, server):
    # Not stored in IPython's history, which cannot hold a lone surrogate either.
    result = ip.run_cell("%claude tell me about \ud800 this", store_history=False)
    error = result.error_in_exec
    assert type(error).__name__ == "UsageError" and "lone surrogate" in str(error)
    assert server.requests == []


def test_the_session_never_holds_the_key(configured, server):
    session = nb_claude.get_session()
    server.reply("ok")
    session.ask("hello", display=False)
    assert session._clients and SENTINEL_KEY not in repr(vars(session))
    (identity,) = session._clients
    # Neither the key nor an object that can reveal it: a short digest identifies it.
    assert all(SENTINEL_KEY not in str(part) and not hasattr(part, "reveal")
               for part in identity)
    _config.set_api_key("sk-another-key-0123456789abcdef")
    server.reply("again")
    session.ask("again", display=False)
    (changed,) = session._clients  # a new key still makes a new client
    assert changed != identity
