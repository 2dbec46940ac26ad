"""The core conversation (`_engine.Engine`) chooses no display and asks no questions;
the one function `wire_messages` assembles every request's messages."""

from __future__ import annotations

import threading

import pytest

from nb_claude._engine import Engine
from nb_claude._session import Session
from nb_claude._stream import Reply, ToolCall
from nb_claude._tools import ToolResult
from nb_claude._turns import Step, Turn, wire_messages


def test_the_engine_declines_a_call_that_needs_asking_when_nobody_can_ask(configured, server,
                                                                          monkeypatch):
    monkeypatch.setattr("builtins.input", lambda prompt="": pytest.fail("asked on stdin"))
    ran: list[int] = []

    def lookup(n: int) -> int:
        """Look a number up."""
        ran.append(n)
        return n

    server.reply(tool_calls=[{"name": "lookup", "arguments": {"n": 4}, "id": "call_1"}])
    server.reply("Could not.")
    reply = Engine("core").send("Look up 4", tools=[lookup], confirm=True)
    assert reply.text == "Could not." and ran == []
    (sent,) = server.requests[1].body["messages"][2]["content"]
    assert sent["is_error"] is True and sent["content"].startswith("not run: no way to ask")


def test_the_engine_asks_the_confirmer_it_is_given(configured, server):
    asked: list[str] = []
    server.reply(tool_calls=[{"name": "lookup", "arguments": {"n": 1}, "id": "call_1"}])
    server.reply("Done.")

    def lookup(n: int) -> int:
        """Look a number up."""
        return n

    reply = Engine("core").send("Look up 1", tools=[lookup], confirm=True,
                                confirmer=lambda name, arguments: asked.append(name) or True)
    assert reply.text == "Done." and asked == ["lookup"]


def test_the_public_session_asks_on_stdin_by_default(configured, server, monkeypatch):
    answers: list[str] = []
    monkeypatch.setattr("builtins.input", lambda prompt="": answers.append(prompt) or "n")
    server.reply(tool_calls=[{"name": "lookup", "arguments": {"n": 1}, "id": "call_1"}])
    server.reply("Declined.")

    def lookup(n: int) -> int:
        """Look a number up."""
        return n

    assert threading.current_thread() is threading.main_thread()
    Session("public").ask("Look up 1", tools=[lookup], confirm=True, display=False)
    assert answers and answers[0].startswith("Run tool lookup(")


def _answered_turn() -> Turn:
    call = ToolCall(id="t1", name="f", arguments='{"x": 1}')
    asked = Reply(text="Let me look.", tool_calls=[call])
    result = ToolResult("t1", "f", "1")
    return Turn("Q", steps=[Step(asked, [result]), Step(Reply(text="unanswered"))])


def test_a_pending_turn_sends_its_prompt_and_only_its_answered_steps() -> None:
    done = Turn("Earlier", steps=[Step(Reply(text="Earlier answer."))])
    messages = wire_messages([done], _answered_turn())
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[2]["content"] == "Q"
    assert messages[3]["content"][-1]["type"] == "tool_use"
    assert messages[4]["content"][0]["type"] == "tool_result"
    assert wire_messages([], Turn("Alone")) == [{"role": "user", "content": "Alone"}]


def test_a_finished_turn_ends_at_its_first_unanswered_reply() -> None:
    messages = _answered_turn().wire()
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[-1]["content"] == "unanswered"
    assert Turn("never answered").wire() == []
