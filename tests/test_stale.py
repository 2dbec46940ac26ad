"""Every answer knows what it was based on, and a stale answer says so.

A recorded entry carries a digest and a description per input; when a cell's request
misses but an earlier entry of the same cell and prompt exists, the reply is stale: asked
again in `auto` (the footer says what changed), `ReplayStaleError` in strict mode.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest

from nb_claude import _config
from nb_claude._errors import ReplayMissError, ReplayStaleError
from nb_claude._inputs import Provenance, previous_entry, what_changed

REPLAY = Path("nb_claude_replay.jsonl")


def lines(path: Path = REPLAY) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def footer(markdown: str) -> str:
    """The footer as a reader sees it (Markdown's escapes undone)."""
    return html.unescape(markdown.rsplit("<sub>", 1)[1])


@pytest.fixture
def auto(ip):
    _config.settings.update(replay_mode="auto")
    return REPLAY


def frame(run, rows: int) -> None:
    run(f"import pandas as pd\ndf = pd.DataFrame({{'region': ['n'] * {rows}, "
        f"'sales': list(range({rows}))}})")


def fresh(run, server) -> None:
    """What a fresh kernel would start with: no history, no requests seen."""
    run("%claude_reset")
    server.reset()


@pytest.mark.parametrize("prompt", ["%%claude\nSummarise @df", "%%claude --attach df\nSummarise"])
def test_a_changed_dataframe_makes_the_reply_stale_and_is_asked_again(run, server, auto, prompt):
    frame(run, 10)
    server.reply("Ten rows.")
    first = run(prompt)
    assert first.error is None and len(server.requests) == 1
    assert footer(first.markdown).count("live") == 1
    entry = lines()[0]
    kinds = [i["kind"] for i in entry["inputs"]]
    assert kinds == ["prompt", "attachment", "system", "options", "history"]
    attached = entry["inputs"][1]
    assert attached["description"] == "DataFrame 10 × 2: region, sales"
    assert attached["size"] == "10 × 2" and len(attached["digest"]) == 16
    assert entry["cell"]["session"] == "default" and entry["cell"]["position"] == 0
    assert "base64" not in json.dumps(entry["inputs"])

    fresh(run, server)
    frame(run, 12)
    server.reply("Twelve rows.")
    second = run(prompt)
    assert second.error is None and len(server.requests) == 1  # asked again
    assert "Twelve rows." in second.markdown
    assert "stale: df changed (10 × 2 -> 12 × 2) (asked again)" in footer(second.markdown)
    meta = second.metadata["nb_claude"]
    assert meta["state"] == "stale" and meta["changed"] == ["df changed (10 × 2 -> 12 × 2)"]
    assert [i["description"] for i in meta["inputs"] if i["kind"] == "attachment"] == [
        "DataFrame 12 × 2: region, sales"]
    assert len(lines()) == 2  # the new answer is recorded, with its own inputs

    fresh(run, server)
    third = run(prompt)  # now the new record answers it
    assert server.requests == [] and "Twelve rows." in third.markdown
    assert third.metadata["nb_claude"]["state"] == "replayed"
    assert "stale" not in footer(third.markdown)


def test_strict_mode_names_the_cell_and_what_changed(run, server, auto):
    frame(run, 10)
    server.reply("Ten rows.")
    run("%%claude\nSummarise @df")
    fresh(run, server)
    frame(run, 11)
    _config.settings.update(replay_mode="replay")
    cell = run("%%claude\nSummarise @df")
    assert isinstance(cell.error, ReplayStaleError) and isinstance(cell.error, ReplayMissError)
    message = str(cell.error)
    assert "\n" not in message and "strict replay mode" in message
    assert "cell [" in message and "Summarise @df" in message  # the cell
    assert "df changed (10 × 2 -> 11 × 2)" in message
    assert cell.error.changed == ["df changed (10 × 2 -> 11 × 2)"]
    assert server.requests == []


def test_a_rerun_without_change_is_replayed(run, server, auto):
    frame(run, 10)
    server.reply("Ten rows.")
    run("%%claude\nSummarise @df")
    fresh(run, server)
    frame(run, 10)  # the same data, made again
    cell = run("%%claude\nSummarise @df")
    assert server.requests == [] and "Ten rows." in cell.markdown
    assert footer(cell.markdown).count("replayed") == 1 and "stale" not in cell.markdown
    meta = cell.metadata["nb_claude"]
    assert meta["state"] == "replayed" and "changed" not in meta
    _config.settings.update(replay_mode="replay")
    fresh(run, server)
    assert run("%%claude\nSummarise @df").error is None  # strict mode too


def test_an_old_entry_without_inputs_still_replays_and_staleness_is_unknown(run, server, auto):
    frame(run, 10)
    server.reply("Ten rows.")
    run("%%claude\nSummarise @df")
    old = [{k: v for k, v in e.items() if k not in ("inputs", "cell")} for e in lines()]
    REPLAY.write_text("".join(json.dumps(e) + "\n" for e in old))
    fresh(run, server)
    cell = run("%%claude\nSummarise @df")
    assert server.requests == [] and cell.metadata["nb_claude"]["state"] == "replayed"
    fresh(run, server)
    frame(run, 12)
    _config.settings.update(replay_mode="replay")
    missed = run("%%claude\nSummarise @df").error
    assert isinstance(missed, ReplayMissError) and not isinstance(missed, ReplayStaleError)
    assert "no recorded reply" in str(missed)


def test_a_changed_context_cell_is_named(run, server, auto):
    _config.settings.update(context="none")
    count = run("x = 1\nprint(x)").result.execution_count
    server.reply("x is 1.")
    first = run(f"%%claude --cells {count}-{count}\nWhat is x?")
    assert first.error is None
    cells = [i for i in lines()[0]["inputs"] if i["kind"] == "cell"]
    assert cells == [{"kind": "cell", "name": f"[{count}]", "count": count,
                      "digest": cells[0]["digest"], "description": f"cell [{count}]: x = 1"}]
    fresh(run, server)
    count = run("x = 2\nprint(x)").result.execution_count
    server.reply("x is 2.")
    second = run(f"%%claude --cells {count}-{count}\nWhat is x?")
    assert len(server.requests) == 1
    assert f"stale: cell [{count}] changed (asked again)" in footer(second.markdown)
    assert second.metadata["nb_claude"]["changed"] == [f"cell [{count}] changed"]


def test_a_different_prompt_is_a_plain_miss(run, server, auto):
    server.reply("one")
    run("%%claude\nfirst question")
    fresh(run, server)
    server.reply("two")
    cell = run("%%claude\nanother question")
    assert cell.metadata["nb_claude"]["state"] == "live"
    assert "stale" not in cell.markdown


def test_a_tampered_entry_is_text_and_never_crashes(run, server, auto):
    frame(run, 10)
    server.reply("Ten rows.")
    run("%%claude\nSummarise @df")
    entry = lines()[0]
    attached = next(i for i in entry["inputs"] if i["kind"] == "attachment")
    attached["size"] = "<img src=x onerror=alert(1)>\n[link](http://x)"
    entry["inputs"] += ["junk", {"kind": 3}, {"kind": "cell", "name": None, "digest": "x"}]
    entry["key"] = "0" * 64
    junk = {**entry, "key": "1" * 64, "inputs": "not a list", "cell": ["nope"]}
    REPLAY.write_text(json.dumps(entry) + "\n" + json.dumps(junk) + "\n")
    fresh(run, server)
    frame(run, 12)
    server.reply("Twelve rows.")
    cell = run("%%claude\nSummarise @df")
    assert cell.error is None and len(server.requests) == 1
    shown = cell.markdown.rsplit("<sub>", 1)[1]
    assert "stale: df changed (" in shown and "<img" not in shown and "](http" not in shown
    assert "\n" not in cell.metadata["nb_claude"]["changed"][0]


# ---------------------------------------------------------------- the comparison


def _inputs(**digests: str) -> list[dict]:
    return [{"kind": kind, "name": kind, "digest": value, "description": ""}
            for kind, value in digests.items()]


def test_what_changed_names_options_and_falls_back_to_the_request():
    old = [*_inputs(prompt="p", system="s"),
           {"kind": "options", "name": "options", "digest": "a",
            "description": "model m · max_tokens 1024 · thinking off · tools none"}]
    new = [*_inputs(prompt="p", system="t"),
           {"kind": "options", "name": "options", "digest": "b",
            "description": "model m · max_tokens 2048 · thinking off · tools none"}]
    assert what_changed(old, new) == ["the system prompt changed",
                                      "options changed (max_tokens 1024 -> max_tokens 2048)"]
    assert what_changed(old, old) == ["the request changed"]
    assert what_changed("garbage", new)[0] == "the prompt changed"


def test_previous_entry_matches_the_same_cell_and_prompt_only():
    mine = Provenance(_inputs(prompt="p"), {"id": None, "label": "cell [3] ('q')",
                                            "session": "default", "position": 2, "step": 0})
    other_session = {"inputs": _inputs(prompt="p"), "created": "2",
                     "cell": {**mine.cell, "session": "other"}}
    other_prompt = {"inputs": _inputs(prompt="q"), "created": "3", "cell": mine.cell}
    older = {"inputs": _inputs(prompt="p"), "created": "1", "cell": {**mine.cell, "position": 5}}
    newer = {"inputs": _inputs(prompt="p"), "created": "4",
             "cell": {**mine.cell, "label": "cell [9] ('q')", "position": 6}}
    assert previous_entry([other_session, other_prompt], mine) is None
    assert previous_entry([older, newer, other_session, None, {"cell": 1}], mine) is older
    again = {**older, "created": "5", "cell": mine.cell}
    assert previous_entry([older, again, newer], mine) is again  # the latest of the cell
    labelled = Provenance(mine.inputs, {**mine.cell, "position": 7})
    assert previous_entry([newer], labelled) is None
    assert previous_entry([{**newer, "cell": {**newer["cell"], "label": "cell [3] ('q')"}}],
                          labelled) is not None
    with_id = Provenance(mine.inputs, {**mine.cell, "id": "abc"})
    assert previous_entry([{**older, "cell": {**mine.cell, "id": "xyz"}}], with_id) is None
