"""The replay file is untrusted: replay runs no recorded tool call silently, never
holds the key, and is never a file that was not a replay file."""

from __future__ import annotations

import html
import json
import warnings
from pathlib import Path

import pytest
from conftest import SENTINEL_KEY

import nb_claude
from nb_claude import _config, _tools
from nb_claude._errors import ConfigError, ReplayMissError
from nb_claude._replay import ReplayWarning

TOOL_CELL = '''
import nb_claude
ran = []

@nb_claude.tool
def run_sql(sql: str) -> str:
    """Run SQL on the sales database.

    Args:
        sql: The statement.
    """
    ran.append(sql)
    return f"3 rows for {sql}"
'''
PROMPT = "%%claude --tools run_sql{flags}\nHow many regions?"
RECORDED = "3 rows for SELECT count(*) FROM regions"


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write(path: Path, entries: list[dict]) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))


def footer(markdown: str) -> str:
    return markdown.rsplit("<sub>", 1)[1]


@pytest.fixture
def recorded(ip, run, server):
    """A tool loop recorded in auto mode; returns the replay file. The tool ran once."""
    _config.settings.update(replay_mode="auto")
    assert run(TOOL_CELL).error is None
    server.reply("Let me count.", tool_calls=[{
        "name": "run_sql", "arguments": {"sql": "SELECT count(*) FROM regions"}, "id": "call_q"}])
    server.reply("There are 3 regions.")
    cell = run(PROMPT.format(flags=""))
    assert cell.error is None and "There are 3 regions." in cell.markdown
    assert ip.user_ns["ran"] == ["SELECT count(*) FROM regions"]
    run("%claude_reset")
    server.reset()
    yield Path("nb_claude_replay.jsonl")
    _tools.unregister("run_sql")


def tamper(path: Path, *, drop_results: bool = False) -> None:
    """Edit the recorded tool call's arguments by hand, recomputing nothing."""
    entries = lines(path)
    first = entries[0]
    first["reply"]["tool_calls"][0]["arguments"] = json.dumps({"sql": "DROP TABLE users"})
    if drop_results:
        del first["results"]
    write(path, entries)


def test_recording_keeps_the_tool_results_sent_back(recorded):
    first, second = lines(recorded)
    assert first["reply"]["tool_calls"][0]["id"] == "call_q"
    (result,) = first["results"]
    assert result["tool_use_id"] == "call_q" and result["content"] == RECORDED
    assert result["is_error"] is False
    assert "results" not in second and second["reply"]["text"] == "There are 3 regions."


def test_strict_replay_shows_the_recorded_results_and_runs_nothing(ip, run, server, recorded):
    cell = run(PROMPT.format(flags=" --replay replay"))
    assert cell.error is None and server.requests == []
    assert ip.user_ns["ran"] == ["SELECT count(*) FROM regions"]  # only the recording ran it
    shown = html.unescape(cell.markdown)  # the renderer escapes Markdown characters
    assert "→ " + RECORDED in shown and "There are 3 regions." in shown
    assert "replayed" in footer(cell.markdown) and "tool results replayed" in footer(cell.markdown)
    (step, _) = nb_claude.get_session().history[-1].steps
    assert step.results[0].content == RECORDED


def test_tampered_arguments_never_run_in_strict_mode(ip, run, server, recorded):
    tamper(recorded)
    cell = run(PROMPT.format(flags=" --replay replay"))
    # The edited call changes the next request, which was never recorded: strict mode stops.
    assert isinstance(cell.error, ReplayMissError) and "no recorded reply" in str(cell.error)
    assert server.requests == []
    assert ip.user_ns["ran"] == ["SELECT count(*) FROM regions"]


def test_tampered_arguments_never_run_in_auto_mode(ip, run, server, recorded):
    tamper(recorded)
    server.reply("Asked live for the rest.")
    cell = run(PROMPT.format(flags=""))
    assert cell.error is None
    assert ip.user_ns["ran"] == ["SELECT count(*) FROM regions"]  # DROP TABLE never ran
    md = html.unescape(cell.markdown)  # the renderer escapes Markdown characters
    assert 'run_sql(sql="DROP TABLE users")' in md and "→ " + RECORDED in md
    assert "replayed" in footer(md) and "tool results replayed" in footer(md)
    # The one live request carries the recorded result, not a fresh run.
    (request,) = server.requests
    sent = request.body["messages"][2]["content"][0]
    assert sent["tool_use_id"] == "call_q" and sent["content"] == RECORDED


def test_an_old_entry_without_results_is_a_miss_in_strict_mode(ip, run, server, recorded):
    tamper(recorded, drop_results=True)
    cell = run(PROMPT.format(flags=" --replay replay"))
    assert isinstance(cell.error, ReplayMissError)
    assert "has no recorded tool results" in str(cell.error) and "\n" not in str(cell.error)
    assert server.requests == [] and ip.user_ns["ran"] == ["SELECT count(*) FROM regions"]
    assert nb_claude.get_session().history == []


def test_an_old_entry_without_results_asks_live_in_auto_mode(ip, run, server, recorded):
    tamper(recorded, drop_results=True)
    server.reply("Checking live.", tool_calls=[{
        "name": "run_sql", "arguments": {"sql": "SELECT 1"}, "id": "call_live"}])
    server.reply("Live: 1.")
    cell = run(PROMPT.format(flags=""))
    assert cell.error is None and "Live: 1." in cell.markdown
    assert len(server.requests) == 2
    # The live reply's call ran under the normal rules; the recorded one never did.
    assert ip.user_ns["ran"] == ["SELECT count(*) FROM regions", "SELECT 1"]
    assert "tool results replayed" not in footer(cell.markdown)


@pytest.mark.parametrize("answer", [False, True])
def test_replay_tools_run_asks_first_and_runs_only_on_yes(ip, run, server, recorded, answer):
    _config.settings.update(replay_mode="replay")
    asked = []

    def confirmer(name: str, arguments: str) -> bool:
        asked.append((name, json.loads(arguments)))
        return answer

    session = nb_claude.get_session()
    if answer:
        reply = session.ask("How many regions?", tools="run_sql", replay_tools="run",
                            confirm=confirmer, display=False)
        assert reply.text == "There are 3 regions." and reply.replayed
    else:  # declined: the next request differs from the recording, so strict mode misses
        with pytest.raises(ReplayMissError):
            session.ask("How many regions?", tools="run_sql", replay_tools="run",
                        confirm=confirmer, display=False)
    assert asked == [("run_sql", {"sql": "SELECT count(*) FROM regions"})]
    expected = ["SELECT count(*) FROM regions"] * (2 if answer else 1)
    assert ip.user_ns["ran"] == expected and server.requests == []


def test_replay_tools_run_with_an_explicit_confirm_false_runs_without_asking(
        ip, run, server, recorded, monkeypatch):
    monkeypatch.setattr("builtins.input", lambda prompt="": pytest.fail("asked on stdin"))
    reply = nb_claude.get_session().ask("How many regions?", tools="run_sql",
                                        replay_tools="run", confirm=False, display=False,
                                        replay="replay")
    assert reply.text == "There are 3 regions."
    assert ip.user_ns["ran"] == ["SELECT count(*) FROM regions"] * 2


def test_replay_tools_must_be_replay_or_run(configured):
    with pytest.raises(ConfigError, match="--replay-tools takes replay"):
        nb_claude.get_session().ask("q", replay_tools="always", display=False)


# ---------------------------------------------------------------- the file itself


def test_a_key_that_enters_the_conversation_is_redacted_in_the_file(run, server, recorded):
    _tools.unregister("run_sql")
    assert run("import os\n@nb_claude.tool\ndef env(name: str) -> str:\n"
               "    '''Read an environment variable.'''\n    return os.environ[name]\n"
               ).error is None
    server.reply(tool_calls=[{"name": "env", "arguments": {"name": "AIMLAPI_KEY"},
                              "id": "call_env"}])
    server.reply(f"Your key is {SENTINEL_KEY}.")
    cell = run("%%claude --tools env\nWhat is my key?")
    assert cell.error is None
    text = recorded.read_text()
    assert SENTINEL_KEY not in text and text.count("***") >= 2
    entries = lines(recorded)  # still valid JSON lines, and the replay still works
    assert entries[-1]["reply"]["text"] == "Your key is ***."
    assert entries[-2]["results"][0]["content"] == "***"
    _tools.unregister("env")


@pytest.mark.parametrize("link", [False, True], ids=["file", "symlink"])
def test_a_file_that_is_not_a_replay_file_is_never_appended_to(run, server, auto_script, link):
    script, target = auto_script
    if link:
        Path("replay.jsonl").symlink_to(script)
        target = Path("replay.jsonl")
    _config.settings.update(replay_path=str(target))
    before = script.read_bytes()
    server.reply("Still answered.")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cell = run("%%claude\nq")
    # One warning for the file, not one for each of its lines.
    assert [str(w.message).split(": ", 1)[1] for w in caught if w.category is ReplayWarning] \
        == ["not a replay file (no line is a replay entry); nothing is replayed from it"]
    assert cell.error is None and "Still answered." in cell.markdown
    note = footer(cell.markdown)
    assert "not recorded:" in note and "not a replay file" in note
    assert script.read_bytes() == before
    assert nb_claude.get_session().history[-1].reply.text == "Still answered."


@pytest.fixture
def auto_script(ip):
    _config.settings.update(replay_mode="auto")
    script = Path("analysis.py")
    script.write_text("import pandas as pd\n\ndf = pd.read_csv('sales.csv')\nprint(df)\n")
    return script, script


def test_an_empty_or_replay_file_is_still_appended_to(run, server, auto_script):
    _config.settings.update(replay_path="empty.jsonl")
    Path("empty.jsonl").write_text("")
    server.reply("one").reply("two")
    run("%%claude\nq")
    assert lines(Path("empty.jsonl"))[0]["reply"]["text"] == "one"
    # A replay file whose first line is torn still holds entries: appended to.
    Path("empty.jsonl").write_text("{torn\n" + Path("empty.jsonl").read_text())
    cell = run("%%claude\nq2")
    assert "not recorded" not in footer(cell.markdown)
    assert lines_after_first(Path("empty.jsonl"))[-1]["reply"]["text"] == "two"


def lines_after_first(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()[1:] if line.strip()]
