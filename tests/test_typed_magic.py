"""`%%claude --schema NAME --out x` in a real IPython shell against the stand-in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import nb_claude
from nb_claude import _config

DEFINE = '''
import dataclasses, enum
from typing import Literal, TypedDict

class Sentiment(TypedDict):
    label: Literal["positive", "neutral", "negative"]
    reason: str

@dataclasses.dataclass
class Point:
    x: int
    y: int

class Tone(enum.Enum):
    CALM = "calm"
    ANGRY = "angry"

Level = Literal["low", "high"]
contract = {"type": "object", "properties": {"kind": {"enum": ["lease", "sale"]}},
            "required": ["kind"]}
'''


@pytest.fixture
def defined(run):
    cell = run(DEFINE)
    assert cell.error is None
    return run


def test_schema_and_out_store_the_parsed_value(defined, ip, server):
    cell = defined("%%claude --schema Sentiment --out labels\nClassify: great value.")
    assert cell.error is None
    value = ip.user_ns["labels"]
    assert value["label"] in ("positive", "neutral", "negative") and value["reason"]
    body = server.requests[-1].body
    assert body["tool_choice"] == {"type": "function", "function": {"name": "answer"}}
    assert body["tools"][0]["input_schema"]["properties"]["label"]["enum"] == [
        "positive", "neutral", "negative"]
    md = cell.markdown
    assert md.startswith("```json\n") and json.loads(md.split("```json\n")[1].split("\n```")[0]) \
        == value
    assert "asked for tools" not in md and "not run" not in md


@pytest.mark.parametrize("name, check", [
    ("Point", lambda v: type(v).__name__ == "Point" and isinstance(v.x, int)),
    ("Tone", lambda v: type(v).__name__ == "Tone"),
    ("Level", lambda v: v in ("low", "high")),
    ("contract", lambda v: v["kind"] in ("lease", "sale")),
])
def test_each_kind_through_the_magic(defined, ip, name, check):
    cell = defined(f"%%claude --schema {name} --out got\nAnswer.")
    assert cell.error is None and check(ip.user_ns["got"]), ip.user_ns.get("got")


def test_the_line_magic_takes_schema_too(defined, ip, server):
    assert defined("%claude --schema Tone --out tone Is this calm?").error is None
    assert type(ip.user_ns["tone"]).__name__ == "Tone"
    assert server.requests[-1].body["messages"][-1]["content"] == "Is this calm?"


def test_out_without_schema_still_stores_the_text(run, ip, server):
    server.reply("plain answer")
    assert run("%%claude --out text\nHi").error is None
    assert ip.user_ns["text"] == "plain answer"


@pytest.mark.parametrize("source, message", [
    ("%%claude --schema Nope\nhi", "unknown schema 'Nope': nothing is named 'Nope' in the "
                                   "notebook"),
    ("%%claude --schema number\nhi", "schema number is a value of type int, not a type"),
    ("%%claude --schema Sentiment --thinking\nhi", "--schema cannot go with --thinking"),
    ("%%claude --schema Sentiment -f code\nhi", "--schema answers with data, not code"),
    ("%%claude --schema Sentiment --dry-run --thinking\nhi", "--schema cannot go with"),
])
def test_bad_schema_use_is_a_usage_error_and_sends_nothing(defined, server, source, message):
    defined("number = 3")
    cell = defined(source)
    assert type(cell.error).__name__ == "UsageError", cell.error
    assert message in str(cell.error)
    assert "Traceback" not in cell.stdout + cell.stderr
    assert server.requests == [] and nb_claude.get_session().history == []


def test_dry_run_shows_the_answer_tool_and_its_choice(defined, server):
    cell = defined("%%claude --dry-run --schema Tone\nHow does it sound?")
    assert cell.error is None and server.requests == []
    shown = json.loads(cell.markdown.split("```json\n", 1)[1].rsplit("\n```", 1)[0])
    assert shown["tool_choice"] == {"type": "function", "function": {"name": "answer"}}
    assert shown["tools"][0]["name"] == "answer"
    assert shown["tools"][0]["input_schema"]["properties"]["value"]["enum"] == ["calm", "angry"]


def test_retry_shows_the_failed_call_and_keeps_the_good_answer(defined, ip, server):
    server.reply("", tool_calls=[{"name": "answer", "arguments": {"x": "one", "y": 2}}])
    server.reply("", tool_calls=[{"name": "answer", "arguments": {"x": 1, "y": 2}}])
    cell = defined("%%claude --schema Point --out p\nWhere?")
    assert ip.user_ns["p"].x == 1 and len(server.requests) == 2
    assert "failed: Invalid answer: answer.x: expected an integer" in cell.markdown
    assert "2 steps" in cell.markdown


def test_twice_invalid_stores_none_and_shows_the_error(defined, ip, server):
    ip.user_ns["p"] = "stale"
    for _ in range(2):
        server.reply("", tool_calls=[{"name": "answer", "arguments": {"x": 1}}])
    cell = defined("%%claude --schema Point --out p\nWhere?")
    assert ip.user_ns["p"] is None
    assert "error: no valid answer: answer: missing key 'y' (also when asked again with the " \
        "error)" in cell.markdown


def test_replay_offline_in_strict_mode_stores_the_same_value(defined, ip, server, tmp_path):
    _config.settings.update(replay_mode="auto", replay_path=str(tmp_path / "r.jsonl"))
    assert defined("%%claude --schema Sentiment --out first\nClassify: fine.").error is None
    assert Path(tmp_path / "r.jsonl").exists()
    defined("%claude_reset")
    server.reset()
    cell = defined("%%claude --replay replay --schema Sentiment --out second\n"
                   "Classify: fine.")
    assert cell.error is None and server.requests == []
    assert ip.user_ns["second"] == ip.user_ns["first"]
    assert "replayed" in cell.markdown


def test_help_documents_schema(ip):
    from IPython.utils.capture import capture_output

    with capture_output() as captured:
        ip.run_line_magic("pinfo", "%%claude")
    text = captured.stdout + "".join(str(o.data) for o in captured.outputs)
    assert "--schema NAME" in text and "--schema Sentiment --out label" in text
    assert "the parsed answer" in text
