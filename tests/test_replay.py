"""Reproducible notebooks: the replay file, provenance, strict mode, save/load and export."""

from __future__ import annotations

import base64
import json
import re
import warnings
from pathlib import Path

import nbformat
import pytest
from conftest import SENTINEL_KEY

import nb_claude
from nb_claude import _config

FOOTER = re.compile(r" · \d+\.\d s")


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def auto(ip):
    _config.settings.update(replay_mode="auto")
    return Path("nb_claude_replay.jsonl")


def test_auto_records_then_replays_without_any_request(run, server, auto):
    server.reply("Recorded answer.", usage=(12, 3))
    first = run("%%claude\nWhat is a p-value?")
    assert len(server.requests) == 1
    entries = lines(auto)
    assert len(entries) == 1
    entry = entries[0]
    assert entry["reply"]["text"] == "Recorded answer."
    assert entry["key"] == first.metadata["nb_claude"]["request_sha256"]
    assert entry["request"]["model"] == "anthropic/claude-opus-4-8"
    run("%claude_reset")
    server.reset()
    second = run("%%claude\nWhat is a p-value?")
    assert server.requests == []
    assert second.markdown.startswith("Recorded answer.")
    assert "replayed" in second.markdown.rsplit("<sub>", 1)[1]
    meta1, meta2 = first.metadata["nb_claude"], second.metadata["nb_claude"]
    assert meta2["replayed"] is True and meta1["replayed"] is False
    for field in ("model", "request_sha256", "usage", "finish_reason", "created"):
        assert meta1[field] == meta2[field], field
    assert nb_claude.get_session().history[-1].reply.text == "Recorded answer."


def test_context_is_hashed_so_later_cells_replay_too(run, server, auto):
    server.reply("one").reply("two")
    run("%%claude\nfirst")
    run("%%claude\nsecond")
    run("%claude_reset")
    server.reset()
    assert run("%%claude\nfirst").markdown.startswith("one")
    assert run("%%claude\nsecond").markdown.startswith("two")
    assert server.requests == []
    server.reply("fresh")
    run("%claude_reset")
    run("%%claude\nfirst")
    run("%%claude\nsecond, edited")  # an edited prompt asks again
    assert len(server.requests) == 1


def test_strict_replay_miss_names_the_cell_and_sends_nothing(run, server, auto):
    cell = run("%%claude --replay replay\nNever recorded")
    assert "no recorded reply for cell [" in str(cell.error)
    assert "'Never recorded'" in str(cell.error)
    assert server.requests == [] and nb_claude.get_session().history == []


def test_strict_replay_needs_no_key(run, server, auto, monkeypatch):
    server.reply("ok")
    run("%%claude\nq")
    monkeypatch.delenv("AIMLAPI_KEY")
    _config.settings.update(replay_mode="replay", base_url="http://127.0.0.1:9/v1")
    run("%claude_reset")
    assert run("%%claude\nq").markdown.startswith("ok")


def test_refresh_and_record_ask_again_and_the_newest_entry_wins(run, server, auto):
    server.reply("old").reply("new")
    run("%%claude\nq")
    run("%claude_reset")
    assert run("%%claude --refresh\nq").markdown.startswith("new")
    assert len(lines(auto)) == 2
    run("%claude_reset")
    server.reset()
    assert run("%%claude\nq").markdown.startswith("new") and server.requests == []


def test_changed_attachment_data_asks_again(run, server, auto):
    run("import pandas as pd\ndf = pd.DataFrame({'x': [1, 2, 3]})")
    server.reply("first frame").reply("second frame")
    run("%%claude --attach df\nDescribe")
    run("%claude_reset")
    run("df.loc[1, 'x'] = 20")
    assert "\n\nsecond frame" in run("%%claude --attach df\nDescribe").markdown
    assert len(server.requests) == 2


def test_tool_loops_replay_step_by_step(run, server, auto):
    run("import nb_claude\ncalls = []\n@nb_claude.tool\ndef add(a: int, b: int) -> int:\n"
        "    '''Add.'''\n    calls.append((a, b))\n    return a + b\n")
    server.reply(tool_calls=[{"name": "add", "arguments": {"a": 2, "b": 3}, "id": "call_1"}])
    server.reply("It is 5.")
    first = run("%%claude --tools add\n2+3?")
    entries = lines(auto)
    assert len(entries) == 2
    assert entries[0]["results"][0]["tool_use_id"] == "call_1"  # the results sent back
    assert "results" not in entries[1]
    run("%claude_reset")
    server.reset()
    second = run("%%claude --tools add\n2+3?")
    assert server.requests == []
    recorded = " · recorded in nb_claude_replay.jsonl"
    assert recorded in first.markdown.rsplit("<sub>", 1)[1]
    assert "recorded in" not in second.markdown  # a replay adds nothing to the file
    assert FOOTER.sub("", first.markdown).replace(recorded, "").replace(" · live", "") == \
        FOOTER.sub("", second.markdown).replace(" · replayed", "").replace(
            " · tool results replayed", "")
    assert "tool results replayed" in second.markdown.rsplit("<sub>", 1)[1]
    assert run("print(calls)").stdout == "[(2, 3)]\n"  # the replay ran nothing
    nb_claude._tools.unregister("add")


def test_partial_replies_are_never_recorded(run, server, auto):
    server.drop(after_chunks=2)
    cell = run("%%claude\nq")
    assert "dropped" in str(cell.error)
    assert not auto.exists() or lines(auto) == []


def test_corrupt_and_truncated_lines_are_skipped_with_a_warning(run, server, auto):
    server.reply("good")
    run("%%claude\nq")
    text = auto.read_text()
    auto.write_text("{not json\n" + text + '{"v": 1, "key": "abc", "rep')
    run("%claude_reset")
    server.reset()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cell = run("%%claude\nq")
    assert cell.markdown.startswith("good") and server.requests == []
    assert len([w for w in caught if "nb_claude_replay.jsonl" in str(w.message)]) == 2
    server.reply("another")
    run("%%claude\nmore")
    assert lines_tail_valid(auto)


def lines_tail_valid(path: Path) -> bool:
    last = path.read_text().splitlines()[-1]
    return json.loads(last)["reply"]["text"] == "another"


def test_replay_file_and_exports_never_hold_the_key(run, server, auto, tmp_path):
    run("import numpy as np\nfrom PIL import Image\n"
        "img = Image.fromarray((np.arange(64*48*3) % 255).astype('uint8').reshape(48, 64, 3))")
    server.reply("A gradient.")
    run("%%claude --attach img\nWhat is this?")
    session = nb_claude.get_session()
    saved = session.save(tmp_path / "s.json")
    notebook = session.to_notebook(tmp_path / "s.ipynb")
    markdown = session.to_markdown()
    for text in (auto.read_text(), saved.read_text(), notebook.read_text(), markdown):
        assert SENTINEL_KEY not in text
    recorded = auto.read_text()
    sent = base64.b64encode(session.history[0].attachments[0].data).decode("ascii")
    # The file names the image by its hash; neither its bytes nor a data field is in it.
    assert sent[:64] not in recorded and "base64" not in recorded and '"data"' not in recorded
    entry = lines(auto)[0]
    image = entry["request"]["messages"][0]["content"][0]
    assert image["media_type"] == "image/png" and len(image["sha256"]) == 64


def test_save_load_round_trip_keeps_attachments(configured, server, tmp_path):
    from PIL import Image

    session = nb_claude.get_session()
    picture = Image.new("RGB", (30, 20), "red")
    server.reply("Red.")
    session.ask("Colour?", attach=[("pic", picture)], display=False)
    path = session.save(tmp_path / "conv.json")
    loaded = nb_claude.Session.load(path)
    assert loaded.name == "default" and len(loaded.history) == 1
    assert loaded.messages == session.messages
    again = nb_claude.Session("other").load(path)
    assert again.name == "other" and again.messages == session.messages
    with pytest.raises(nb_claude._errors.ConfigError, match="not a saved nb_claude session"):
        (tmp_path / "bad.json").write_text("{}")
        nb_claude.Session.load(tmp_path / "bad.json")


def test_to_notebook_writes_a_markdown_cell_per_turn_with_image_attachments(configured, server,
                                                                           tmp_path):
    from PIL import Image

    session = nb_claude.get_session()
    server.reply("First.").reply("Second.")
    session.ask("Look", attach=[("pic", Image.new("RGB", (10, 10), "blue"))], display=False)
    session.ask("Again", display=False)
    nb = nbformat.read(session.to_notebook(tmp_path / "out.ipynb"), as_version=4)
    nbformat.validate(nb)
    turns = nb.cells[1:]
    assert len(turns) == 2 and all(c.cell_type == "markdown" for c in turns)
    assert "Look" in turns[0].source and "First." in turns[0].source
    (name, bundle), = turns[0].attachments.items()
    assert f"(attachment:{name})" in turns[0].source and "image/png" in bundle
    assert "Second." in turns[1].source


def test_an_unwritable_replay_file_does_not_cost_the_reply(run, server, auto, tmp_path):
    _config.settings.update(replay_path=str(tmp_path / "no-such-dir" / "replay.jsonl"))
    server.reply("Still answered.")
    cell = run("%%claude\nq")
    assert cell.error is None and "Still answered." in cell.markdown
    assert "not recorded:" in cell.markdown.rsplit("<sub>", 1)[1]
    assert nb_claude.get_session().history[-1].reply.text == "Still answered."
