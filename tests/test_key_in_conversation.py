"""A key that enters the conversation (a reply quoting it, a tool returning it) is shown
and written as *** everywhere nb_claude shows or writes it."""

from __future__ import annotations

import json
from typing import Any

import nb_claude
from nb_claude._render import InlineView
from nb_claude._session import Step, Turn
from nb_claude._stream import Reply


def _key() -> str:
    from conftest import SENTINEL_KEY

    return SENTINEL_KEY


def test_a_reply_quoting_the_key_shows_stars_in_the_cell_history_and_exports(
        run: Any, server: Any, tmp_path: Any) -> None:
    key = _key()
    server.reply(chunks=["Your key is ", key[:10], key[10:], " — keep it safe."])
    cell = run("%%claude\nWhat is my key?")
    assert cell.error is None
    shown = json.dumps([o.data for o in cell.outputs])
    assert key not in shown
    assert "Your key is ***" in cell.markdown
    history = run("%claude_history")
    assert key not in json.dumps([o.data for o in history.outputs])
    session = nb_claude.get_session()
    assert key not in session.to_markdown()
    notebook = session.to_notebook(tmp_path / "c.ipynb")
    assert key not in notebook.read_text()
    saved = session.save(tmp_path / "c.json")
    assert key not in saved.read_text()


def test_a_tool_returning_the_key_shows_stars(run: Any, server: Any) -> None:
    key = _key()
    run("import nb_claude\n@nb_claude.tool\ndef env() -> str:\n    '''The environment.'''\n"
        "    import os\n    return 'AIMLAPI_KEY=' + os.environ['AIMLAPI_KEY']\n")
    server.reply(tool_calls=[{"name": "env", "arguments": "{}"}])
    server.reply("done")
    cell = run("%%claude --tools env\nShow the environment")
    assert cell.error is None, cell.error
    assert key not in json.dumps([o.data for o in cell.outputs])
    assert "AIMLAPI_KEY=***" in cell.markdown
    from nb_claude._tools import unregister

    unregister("env")


def test_the_terminal_stream_never_shows_a_key_split_across_chunks(
        configured: Any, monkeypatch: Any, capsys: Any) -> None:
    key = _key()
    view = InlineView(10.0)
    view._terminal = True
    turn = Turn("q", [])
    reply = Reply(model="anthropic/claude-opus-4-8")
    turn.steps.append(Step(reply))
    text = "x" * 300 + " key: " + key + " and more text " + "y" * 300
    for end in range(0, len(text) + 1, 7):
        reply.text = text[:end]
        view.update(turn)
    reply.text = text
    reply.finish_reason = "end_turn"
    view.finish(turn)
    out = capsys.readouterr().out
    assert key not in out and key[:12] not in out
    assert "key: *** and more text " + "y" * 300 in out and out.startswith("x" * 300)
