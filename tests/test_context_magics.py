"""Claude sees the notebook: %%claude, %claude_context and the panel carry the cells run
before a prompt and its `@name` variables, in a real IPython shell against the stand-in."""

from __future__ import annotations

import html
import io
import re
import time
from typing import Any

import pytest

import nb_claude
from nb_claude import _config
from nb_claude._capture import ContextRecorder

pd = pytest.importorskip("pandas")


def content(server: Any) -> list[dict[str, Any]]:
    return server.requests[-1].body["messages"][-1]["content"]


def png() -> bytes:
    image = pytest.importorskip("PIL.Image").new("RGB", (30, 20), "white")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


CELLS = [
    "print('rows loaded: 5')",
    "6 * 7",
    "from IPython.display import Markdown, Image, display\ndisplay(Markdown('**Note**: raw'))",
    "raise ValueError('bad value')",
    "df = pd.DataFrame({'a': range(5), 'b': list('vwxyz')})",
    "display(Image(PNG))",
]


def expected_context(n: list[int]) -> str:
    """The context block as sent for CELLS run as cells n[0]..n[5], exactly."""
    return "\n\n".join([
        "Notebook cells run before this prompt, oldest first:",
        f"In [{n[0]}]:\n```python\nprint('rows loaded: 5')\n```\nstdout:\n```\nrows loaded: 5\n```",
        f"In [{n[1]}]:\n```python\n6 * 7\n```\nOut [{n[1]}]:\n```\n42\n```",
        f"In [{n[2]}]:\n```python\n{CELLS[2]}\n```\ndisplay (text/markdown):\n```\n"
        "**Note**: raw\n```",
        f"In [{n[3]}]:\n```python\nraise ValueError('bad value')\n```\n"
        f"error: ValueError: bad value\ntraceback (last frame):\n  In [{n[3]}], line 1, "
        "in <module>\n    raise ValueError('bad value')",
        f"In [{n[4]}]:\n```python\n{CELLS[4]}\n```",
        f"In [{n[5]}]:\n```python\ndisplay(Image(PNG))\n```\n"
        f"figure 30×20 shown in [{n[5]}]; attach it with --plot {n[5]}",
    ])


def run_cells(ip: Any, run: Any) -> list[int]:
    ip.user_ns.update(pd=pd, PNG=png())
    numbers = []
    for source in CELLS:
        cell = run(source)
        assert (cell.error is None) == ("raise" not in source), cell.error
        numbers.append(cell.result.execution_count)
    return numbers


def test_a_prompt_carries_the_cells_run_before_it_and_its_at_names(
        ip: Any, run: Any, server: Any, recorder: ContextRecorder) -> None:
    n = run_cells(ip, run)
    server.reply("The error is in the cell before the frame.")
    cell = run("%%claude\nWhat went wrong, and what is in @df? Not @nope, nor \\@df.")
    assert cell.error is None, cell.error
    blocks = content(server)
    assert [b["type"] for b in blocks] == ["text", "text", "text"]
    assert blocks[0]["text"] == expected_context(n)
    assert blocks[1]["text"].startswith('<attachment name="@df"')
    assert "DataFrame @df: 5 rows × 2 columns" in blocks[1]["text"]
    assert blocks[2]["text"] == "What went wrong, and what is in @df? Not @nope, nor @df."
    turn = nb_claude.get_session().history[-1]
    assert turn.context["missing"] == ["nope"]
    assert [i["label"] for i in turn.context["items"]] == [f"[{k}]" for k in n]
    first = html.unescape(cell.markdown.split("\n\n", 1)[0])
    assert first.startswith(f"Context: cells [{n[0]}]-[{n[-1]}] · ")
    assert " · @df DataFrame 5 × 2 · " in first and first.endswith(" · @nope not found")
    assert "Attached:" not in cell.markdown
    assert "<details><summary>what Claude saw</summary>" in cell.markdown
    plain = cell.outputs[-1].data["text/plain"]
    assert plain.splitlines()[0] == turn_line(turn)


def turn_line(turn: Any) -> str:
    from nb_claude._render import context_line

    return context_line(turn)


def test_since_last_moves_with_each_prompt_and_own_magics_are_not_context(
        run: Any, server: Any, recorder: ContextRecorder) -> None:
    server.reply("one").reply("two")
    first = run("a = 1")
    run("%claude_context")
    run("%%claude\nFirst?")
    assert content(server)[0]["text"].count("In [") == 1
    assert f"In [{first.result.execution_count}]" in content(server)[0]["text"]
    second = run("b = 2")
    run("%%claude\nSecond?")
    text = content(server)[0]["text"]
    assert text.count("In [") == 1 and f"In [{second.result.execution_count}]" in text
    assert "%claude" not in text


def test_cells_options_and_no_context(run: Any, server: Any,
                                      recorder: ContextRecorder) -> None:
    numbers = [run(f"v{i} = {i}").result.execution_count for i in range(4)]
    server.reply("a").reply("b").reply("c").reply("d")
    run("%%claude --cells 2\nLast two?")
    assert [f"In [{k}]" in content(server)[0]["text"] for k in numbers] == [
        False, False, True, True]
    run(f"%%claude --cells {numbers[0]}-{numbers[1]}\nA range?")
    sent = server.requests[-1].body["messages"][-1]["content"]
    assert [f"In [{k}]" in sent[0]["text"] for k in numbers] == [True, True, False, False]
    run("%claude --cells all All of them?")
    sent = server.requests[-1].body["messages"][-1]["content"]
    assert all(f"In [{k}]" in sent[0]["text"] for k in numbers)
    run("%%claude --no-context\nNone?")
    assert server.requests[-1].body["messages"][-1]["content"] == "None?"


@pytest.mark.parametrize("line, message", [
    ("--cells 7-3", "runs backwards"),
    ("--cells some", "use a count"),
    ("--cells 2 --no-context", "contradict"),
])
def test_a_bad_cells_value_is_a_usage_error(run: Any, server: Any, recorder: ContextRecorder,
                                            line: str, message: str) -> None:
    for source in (f"%%claude {line}\nq", f"%claude_context {line}"):
        cell = run(source)
        assert type(cell.error).__name__ == "UsageError" and message in str(cell.error)
    assert server.requests == []


def test_claude_context_previews_without_sending_or_moving_since_last(
        run: Any, server: Any, recorder: ContextRecorder) -> None:
    n = run("print('hello')").result.execution_count
    preview = run("%claude_context")
    assert preview.error is None and server.requests == []
    md = preview.markdown
    assert html.unescape(md).startswith(f"Context: cell [{n}] · ") and "what Claude saw" in md
    assert "```\nhello\n```" in md
    assert run("%claude_context --no-context").markdown == "Context: no cells"
    server.reply("ok")
    run("%%claude\nWhat was printed?")
    assert f"In [{n}]" in content(server)[0]["text"]  # the preview consumed nothing
    assert run("%claude_context").markdown == "Context: no cells"


def test_a_missing_name_is_left_as_text_and_reported(run: Any, server: Any,
                                                     recorder: ContextRecorder) -> None:
    server.reply("ok")
    cell = run("%claude --no-context What is @undefined_thing here?")
    assert cell.error is None, cell.error
    assert server.requests[-1].body["messages"][-1]["content"] == \
        "What is @undefined_thing here?"
    turn = nb_claude.get_session().history[-1]
    assert turn.context == {"text": "", "summary": "", "items": [],
                            "missing": ["undefined_thing"]}
    assert html.unescape(cell.markdown).startswith("Context: @undefined_thing not found\n\n")


def test_dry_run_lists_the_context_items(run: Any, server: Any,
                                         recorder: ContextRecorder) -> None:
    n = run("x = 3").result.execution_count
    cell = run("%%claude --dry-run\nWhat is x?")
    assert server.requests == [] and cell.error is None
    assert f"- [{n}] · ~" in html.unescape(cell.markdown)


def test_settings_are_validated(ip: Any) -> None:
    magics = ip.magics_manager.registry["ClaudeMagics"]
    for good in ("since-last", "none", "all", 3, 0):
        _config.Settings.validate("context", good)
    for bad in ("sometimes", -1, True, 2.5):
        with pytest.raises(nb_claude._errors.ConfigError):
            _config.Settings.validate("context", bad)
    with pytest.raises(nb_claude._errors.ConfigError):
        _config.Settings.validate("context_budget", 0)
    assert _config.Settings().context == "since-last"
    assert _config.Settings().context_budget == 6_000
    magics.context_budget = 1234
    assert _config.settings.context_budget == 1234
    from traitlets import TraitError

    with pytest.raises(TraitError):
        magics.context = "sometimes"


LOAD_TWICE = """
import json
from IPython.core.interactiveshell import InteractiveShell
import nb_claude
from nb_claude._session import recorder_for
shell = InteractiveShell.instance()
shell.run_line_magic("load_ext", "nb_claude")
first = recorder_for(shell)
nb_claude.load_ipython_extension(shell)
shell.run_line_magic("reload_ext", "nb_claude")
shell.run_cell("print('once')", store_history=True)
print(json.dumps({"same": recorder_for(shell) is first,
                  "records": [r.code for r in first.records]}))
"""


def test_loading_twice_keeps_one_recorder_and_records_once(tmp_path: Any) -> None:
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", LOAD_TWICE], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, env={"IPYTHONDIR": str(tmp_path),
                                                         "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"same": True, "records": ["print('once')"]}


def test_the_python_api_takes_a_spec_or_a_dict(ip: Any, run: Any, server: Any,
                                               recorder: ContextRecorder) -> None:
    session = nb_claude.get_session()
    n = run("y = 5").result.execution_count
    server.reply("a").reply("b").reply("c")
    session.ask("Nothing?", display=False)
    assert server.requests[-1].body["messages"][-1]["content"] == "Nothing?"
    session.ask("Since last?", context=True, display=False)
    assert f"In [{n}]" in content(server)[0]["text"]
    session.ask("Again?", context="since-last", display=False)
    assert content(server) == "Again?"  # those cells were sent already
    with pytest.raises(nb_claude._errors.ConfigError):
        session.ask("Bad?", context=2.5, display=False)


def test_the_panel_send_carries_the_context_and_at_names(ip: Any, run: Any, server: Any,
                                                         recorder: ContextRecorder) -> None:
    pytest.importorskip("ipywidgets")
    from nb_claude import ChatPanel

    n = run("frame = pd.DataFrame({'z': [1, 2]})").result.execution_count
    server.reply("From the panel.")
    panel = ChatPanel(nb_claude.get_session(), shell=ip)
    try:
        panel.input.value = "Look at @frame"
        panel._on_send()
        deadline = time.monotonic() + 10
        while panel._token is not None and time.monotonic() < deadline:
            time.sleep(0.01)  # the request's thread may already be done
        assert panel._token is None and len(server.requests) == 1
        blocks = content(server)
        assert f"In [{n}]" in blocks[0]["text"]
        assert blocks[1]["text"].startswith('<attachment name="@frame"')
        assert blocks[2]["text"] == "Look at @frame"
        shown = html.unescape(panel.markdown[-1].split("\n\n")[1])
        assert shown.startswith(f"Context: cell [{n}] · ")
    finally:
        panel.close()


def cells_in(text: str) -> list[int]:
    return [int(k) for k in re.findall(r"^In \[(\d+)\]:", text, re.MULTILINE)]


def sent_cells(server: Any) -> list[int]:
    sent = content(server)
    return cells_in(sent[0]["text"]) if isinstance(sent, list) else []


def test_since_last_is_kept_per_session(run: Any, server: Any,
                                        recorder: ContextRecorder) -> None:
    server.reply("1").reply("2").reply("3").reply("4")
    run("%%claude\nFirst, in the default session")
    a = run("a = 1").result.execution_count
    other = run("%%claude --session other\nIn another session")
    assert sent_cells(server) == [a]
    b = run("b = 2").result.execution_count
    run("%%claude\nAnd the default session now?")
    assert sent_cells(server) == [a, b]  # the other session's prompt consumed nothing here
    assert recorder.since("other") == other.result.execution_count
    c = run("c = 3").result.execution_count
    run("%%claude --session other\nAnd the other one?")
    assert sent_cells(server) == [b, c]


def test_a_request_that_fails_leaves_since_last_where_it_was(
        ip: Any, run: Any, server: Any, recorder: ContextRecorder) -> None:
    pytest.importorskip("ipywidgets")
    from nb_claude import ChatPanel

    a = run("a = 1").result.execution_count
    server.fault(400, "bad request")
    failed = run("%%claude\nFirst try")
    assert failed.error is not None and recorder.since() is None
    server.reply("ok")
    run("%%claude\nSecond try")
    assert sent_cells(server) == [a]

    session = nb_claude.get_session()
    b = run("b = 2").result.execution_count
    server.fault(400, "bad request")
    with pytest.raises(nb_claude._errors.NbClaudeError):
        session.ask("From Python", context=True, display=False)
    server.reply("ok")
    session.ask("From Python again", context=True, display=False)
    assert sent_cells(server) == [b]
    assert recorder.since() == b

    c = run("c = 3").result.execution_count
    panel = ChatPanel(session, shell=ip)
    try:
        for reply in ("fail", "ok"):
            if reply == "fail":
                server.fault(400, "bad request")
            else:
                server.reply("ok")
            panel.input.value = "From the panel"
            before = len(server.requests)
            panel._on_send()
            deadline = time.monotonic() + 10
            while panel._token is not None and time.monotonic() < deadline:
                time.sleep(0.01)  # the request's thread may already be done: a 400 is quick
            assert panel._token is None and panel._thread is None
            assert len(server.requests) == before + 1  # Send did start a request
            assert sent_cells(server) == [c]
            assert recorder.since() == (b if reply == "fail" else c)
        assert panel.error.layout.display == "none"
    finally:
        panel.close()


def test_an_at_name_that_cannot_be_attached_stays_text(run: Any, server: Any,
                                                       recorder: ContextRecorder) -> None:
    run("import os\ncount = 5\nnotes = 'line one\\nline two'")
    server.reply("ok")
    cell = run("%%claude --no-context\nUse @os to count @count things in @notes.")
    assert cell.error is None, cell.error
    sent = content(server)
    assert [b["text"][:25] for b in sent[:-1]] == ['<attachment name="@notes"']
    assert sent[-1]["text"] == "Use @os to count @count things in @notes."
    turn = nb_claude.get_session().history[-1]
    assert turn.context["not_attachable"] == {"os": "module", "count": "int"}
    first = html.unescape(cell.markdown.split("\n\n", 1)[0])
    assert first.startswith("Context: @notes ")
    assert first.endswith(" · @os not attachable (module) · @count not attachable (int)")
    dry = run("%%claude --dry-run --no-context\nAnd @os?")
    assert "- @os not attachable (module)" in html.unescape(dry.markdown)
    strict = run("%%claude --attach os\nAnd now?")  # --attach itself stays strict
    assert type(strict.error).__name__ == "UsageError" and "module" in str(strict.error)


def test_a_strict_replay_miss_names_the_notebook_context(run: Any, server: Any,
                                                         recorder: ContextRecorder) -> None:
    a = run("a = 1").result.execution_count
    miss = run("%%claude --replay replay\nWhat is a?")
    assert miss.error is not None and server.requests == []
    message = str(miss.error)
    assert "strict replay mode" in message
    assert (f"the prompt, an attachment, the cells run before it (its notebook context: "
            f"cell [{a}]) or an option changed") in message
    assert recorder.since() is None  # nothing was sent
    bare = run("%%claude --replay replay --no-context\nWhat is a?")
    assert "the prompt, an attachment or an option changed" in str(bare.error)
