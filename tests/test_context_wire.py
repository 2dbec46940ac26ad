"""A turn's notebook context goes before its attachments and prompt, becomes part of the
user turn in the history (sent once, never again as new context), and is in the replay key."""

from __future__ import annotations

from typing import Any

import nb_claude
from nb_claude._replay import request_key
from nb_claude._turns import Turn

CONTEXT = {"text": "<notebook>\n[3] df.mean()\n</notebook>", "summary": "cells [3] · 9 tokens",
           "items": [{"label": "[3]", "tokens": 9, "text": "[3] df.mean()"}], "missing": []}


def test_context_is_sent_before_the_prompt_and_kept_in_the_history(configured: Any,
                                                                   server: Any) -> None:
    session = nb_claude.get_session()
    body = session.request_body("Why?", context=CONTEXT)
    content = body["messages"][-1]["content"]
    assert content == [{"type": "text", "text": CONTEXT["text"]}, {"type": "text", "text": "Why?"}]
    assert request_key(body) != request_key(session.request_body("Why?"))
    session.ask("Why?", context=CONTEXT, display=False)
    second = session.request_body("And then?")
    texts = [b["text"] for m in second["messages"] if isinstance(m["content"], list)
             for b in m["content"]]
    assert texts.count(CONTEXT["text"]) == 1
    assert second["messages"][-1]["content"] == "And then?"
    assert session.history[0].context == CONTEXT


def test_a_turn_without_context_sends_a_plain_prompt() -> None:
    assert Turn("Hi").user_content() == "Hi"


def test_context_survives_save_and_load(configured: Any, server: Any, tmp_path: Any) -> None:
    session = nb_claude.get_session()
    session.ask("Why?", context=CONTEXT, display=False)
    loaded = nb_claude.Session.load(session.save(tmp_path / "s.json"))
    assert loaded.history[0].context == CONTEXT
    assert loaded.messages == session.messages
