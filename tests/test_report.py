"""The methods report: every reply with its model, date, tokens and inputs, no key, and
no prompt text unless asked for."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import SENTINEL_KEY
from kernel_harness import run_notebook

from nb_claude import Session, _config
from nb_claude._report import report_json, report_markdown, write_report

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PROMPT = f"Describe <b>|these|</b> numbers, key {SENTINEL_KEY}"


def ask_twice(configured):
    """A live reply recorded to the replay file, then the same request replayed."""
    _config.settings.update(replay_mode="auto")
    frame = {"label": "[2]", "tokens": 3, "text": "x = [1, 2]"}
    for name in ("live", "again"):
        session = Session(name)
        session.ask(PROMPT, attach=b"1,2,3\n", display=False, max_tokens=300,
                    context={"text": "[2] x = [1, 2]", "items": [frame]})
        yield session


def test_report_lists_each_reply_without_key_or_prompt(configured, server):
    live, again = ask_twice(configured)
    assert len(server.requests) == 1
    for session, state in ((live, "live"), (again, "replayed")):
        data = report_json(session)
        (reply,) = data["replies"]
        assert reply["state"] == state and reply["model"] and reply["date"]
        assert reply["usage"]["input_tokens"] > 0 and reply["usage"]["output_tokens"] > 0
        assert len(reply["request_sha256"][0]) == 64
        assert reply["options"]["max_tokens"] == 300
        kinds = {i["kind"] for i in reply["inputs"]}
        assert {"attachment", "cell"} <= kinds
        text = report_markdown(session) + json.dumps(data)
        assert SENTINEL_KEY not in text
        assert "Describe" not in text and "x = [1, 2]" not in text  # no prompt, no cell code
        assert "### Totals" in report_markdown(session)
    assert report_json(again)["totals"]["states"]["replayed"] == 1


def test_prompts_are_shown_escaped_and_redacted(configured):
    _, again = ask_twice(configured)
    markdown = report_markdown(again, prompts=True)
    assert "Describe" in markdown and "<b>" not in markdown and "&lt;b&gt;" in markdown
    assert SENTINEL_KEY not in markdown and "&#42;&#42;&#42;" in markdown  # "***", escaped
    prompt = report_json(again, prompts=True)["replies"][0]["prompt"]
    assert prompt.startswith("Describe") and prompt.endswith("key ***")


def test_untrusted_model_id_is_escaped(configured):
    _, again = ask_twice(configured)
    again.history[0].steps[0].reply.model = "<img src=x onerror=alert(1)>"
    markdown = report_markdown(again)
    assert "<img" not in markdown and "&lt;img" in markdown


def test_write_report_markdown_and_json(configured, tmp_path):
    _, again = ask_twice(configured)
    md = write_report(again, tmp_path / "methods.md")
    js = write_report(again, tmp_path / "methods.txt", as_json=True)
    assert md.read_text().startswith("## Methods")
    assert json.loads(js.read_text())["format"] == "nb_claude.report"


@pytest.mark.kernel
def test_report_of_the_replayed_analysis_notebook(tmp_path):
    import nbformat

    work = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, work)
    path = work / "reproducible-analysis.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "from nb_claude._report import write_report\n"
        "write_report(nb_claude.get_session(), 'methods.json', as_json=True)\n"
        "write_report(nb_claude.get_session(), 'methods.md')"))
    nbformat.write(nb, path)
    env = {"NB_CLAUDE_REPLAY": "replay", "NB_CLAUDE_BASE_URL": "http://127.0.0.1:9/v1",
           "AIMLAPI_KEY": SENTINEL_KEY}
    done = run_notebook(path, env=env, cwd=work, timeout=180, allow_errors=True)
    assert not [o for c in done.cells for o in c.get("outputs", [])
                if o.get("output_type") == "error"]
    data = json.loads((work / "methods.json").read_text())
    markdown = (work / "methods.md").read_text()
    assert len(data["replies"]) == 3
    for reply in data["replies"]:
        assert reply["state"] == "replayed"
        assert reply["model"] and reply["date"] and reply["usage"]["input_tokens"] > 0
        assert reply["inputs"]
    assert "@stats" in json.dumps(data["replies"][0]["inputs"])
    for text in (json.dumps(data), markdown):
        assert SENTINEL_KEY not in text
    assert markdown.count("### Reply ") == 3


def test_the_report_magic_shows_and_writes_the_report(run, server, tmp_path):
    server.reply("First.", usage=(10, 3))
    assert run("%%claude --no-context\nWhat is a p-value?").error is None
    shown = run("%claude_report")
    assert shown.error is None
    assert "claude-opus-4-8" in shown.markdown and "What is a p-value?" not in shown.markdown
    written = run(f"%claude_report --json {tmp_path / 'methods.json'}")
    assert written.error is None and "Report written to" in written.markdown
    data = json.loads((tmp_path / "methods.json").read_text())
    assert SENTINEL_KEY not in json.dumps(data)
    import nb_claude

    md = nb_claude.get_session().to_report(tmp_path / "methods.md")  # the Python API
    assert "claude-opus-4-8" in md.read_text() and SENTINEL_KEY not in md.read_text()
