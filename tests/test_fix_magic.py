"""%claude_fix in a real IPython shell against the stand-in: the failing cell, its error
and its variables are sent; the fix comes back as a diff and a new cell, never run; the
request is an ordinary turn, recorded and replayed offline."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError

import nb_claude
from nb_claude import _config, _magics
from nb_claude._capture import ContextRecorder
from nb_claude._fix_flow import NO_FAILING_CELL

pd = pytest.importorskip("pandas")

SETUP = "import pandas as pd\ndf = pd.DataFrame({'region': ['n', 's', 'n'], 'revenue': [1, 2, 3]})"
FAILING = 'df.groupby("regoin").revenue.mean()'
FIXED = 'df.groupby("region").revenue.mean()'
REPLY = ("The column is spelt `region`, not `regoin`, so the lookup raises a KeyError.\n\n"
         f"```python\n{FIXED}\n```\n")


@pytest.fixture
def inserted(ip: Any, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """What was put in a new cell below: (code, replace) per call of set_next_input."""
    calls: list[tuple[str, bool]] = []
    monkeypatch.setattr(ip, "set_next_input",
                        lambda text, replace=False: calls.append((text, replace)))
    return calls


def sent_text(server: Any) -> str:
    """Every text block of the last request's last message, joined."""
    blocks = server.requests[-1].body["messages"][-1]["content"]
    if isinstance(blocks, str):
        return blocks
    return "\n\n".join(b.get("text", "") for b in blocks)


def prompt_text(server: Any) -> str:
    """The last block of the last request: the fix prompt itself."""
    blocks = server.requests[-1].body["messages"][-1]["content"]
    return blocks if isinstance(blocks, str) else blocks[-1]["text"]


def fail(run: Any) -> int:
    """Run the setup and the failing cell; the failing cell's number."""
    assert run(SETUP).error is None
    cell = run(FAILING)
    assert isinstance(cell.error, KeyError), cell.error
    return cell.result.execution_count


def outputs_with(cell: Any, mime: str) -> list[str]:
    return [o.data[mime] for o in cell.outputs if mime in o.data]


def test_fix_sends_the_failing_code_error_and_columns_and_offers_the_fix(
        ip: Any, run: Any, server: Any, recorder: ContextRecorder,
        inserted: list[tuple[str, bool]]) -> None:
    n = fail(run)
    server.reply(REPLY)
    cell = run("%claude_fix")
    assert cell.error is None, cell.error
    assert len(server.requests) == 1
    prompt = prompt_text(server)
    assert prompt.startswith(f"Cell In [{n}] failed.")
    assert FAILING in prompt and "KeyError" in prompt and "'regoin'" in prompt
    assert "'region'" in prompt and "'revenue'" in prompt  # the DataFrame's columns
    assert "ONE fenced ```python code block" in prompt
    # the context: the cells before the failing one, not the failing cell again
    text = sent_text(server)
    assert "Notebook cells run before this prompt" in text
    context = text[: text.index(prompt)]
    assert "df = pd.DataFrame" in context and FAILING not in context
    # the fix: a new cell below, not run, and the diff shown
    assert inserted == [(FIXED, False)]
    html = outputs_with(cell, "text/html")
    plain = outputs_with(cell, "text/plain")
    assert any('<span' in h and "regoin" in h and "region" in h for h in html)
    assert any(p.startswith("--- failing") and f"-{FAILING}" in p and f"+{FIXED}" in p
               for p in plain)
    # an ordinary turn of the session
    turn = nb_claude.get_session().history[-1]
    assert turn.source == "fix" and turn.reply.text.startswith("The column is spelt")
    labels = [i["label"] for i in turn.context["items"]]
    assert labels == [f"[{n - 1}]"]  # the setup cell; the failing one is in the prompt


def test_fix_n_picks_that_cell_and_cell_magic_adds_instructions(
        run: Any, server: Any, recorder: ContextRecorder,
        inserted: list[tuple[str, bool]]) -> None:
    n = fail(run)
    other = run("1 / 0")
    assert isinstance(other.error, ZeroDivisionError)
    server.reply(REPLY).reply("Divide by a number that is not zero.\n\n```python\n1 / 1\n```")
    assert run(f"%claude_fix {n}").error is None
    prompt = prompt_text(server)
    assert f"Cell In [{n}] failed." in prompt and "KeyError" in prompt
    assert "ZeroDivisionError" not in prompt
    assert inserted[-1] == (FIXED, False)
    cell = run("%%claude_fix\nKeep it to one line.")  # the last failing cell: 1 / 0
    assert cell.error is None, cell.error
    prompt = prompt_text(server)
    assert f"Cell In [{other.result.execution_count}] failed." in prompt
    assert "ZeroDivisionError" in prompt and "My note:\nKeep it to one line." in prompt
    assert inserted[-1] == ("1 / 1", False)


def test_explain_sends_the_explain_prompt_and_inserts_nothing(
        run: Any, server: Any, recorder: ContextRecorder,
        inserted: list[tuple[str, bool]]) -> None:
    fail(run)
    server.reply(REPLY)
    cell = run("%claude_fix --explain --no-context")
    assert cell.error is None, cell.error
    prompt = prompt_text(server)
    assert prompt.endswith("Do not write the fixed cell.")
    assert "Notebook cells run before this prompt" not in sent_text(server)
    assert inserted == []
    assert not any("<span" in h for h in outputs_with(cell, "text/html"))


def test_a_reply_without_code_gets_a_note(run: Any, server: Any, recorder: ContextRecorder,
                                          inserted: list[tuple[str, bool]]) -> None:
    fail(run)
    server.reply("Check the spelling of the column name.")
    cell = run("%claude_fix")
    assert cell.error is None and inserted == []
    assert "No code block in the reply" in cell.markdown


def test_a_front_end_that_cannot_insert_cells_shows_the_code(
        run: Any, server: Any, recorder: ContextRecorder, inserted: list[tuple[str, bool]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_magics, "_front_end_inserts_cells", lambda shell: False)
    fail(run)
    server.reply(REPLY)
    cell = run("%claude_fix")
    assert cell.error is None and inserted == []
    assert "cannot insert cells" in cell.markdown and FIXED in cell.markdown


def test_the_fixed_code_is_never_run(run: Any, server: Any, ip: Any, recorder: ContextRecorder,
                                     inserted: list[tuple[str, bool]]) -> None:
    fail(run)
    server.reply("Like this:\n\n```python\nimport os\nPWNED = os.getpid()\n```")
    assert run("%claude_fix").error is None
    assert "PWNED" not in ip.user_ns and inserted[-1][0].endswith("PWNED = os.getpid()")


def test_with_no_error_or_an_unknown_cell_a_usage_error(
        run: Any, server: Any, recorder: ContextRecorder) -> None:
    ok = run("x = 1")
    cell = run("%claude_fix")
    assert isinstance(cell.error, UsageError) and str(cell.error) == NO_FAILING_CELL
    cell = run(f"%claude_fix {ok.result.execution_count}")
    assert isinstance(cell.error, UsageError) and "raised no error" in str(cell.error)
    cell = run("%claude_fix 99999")
    assert isinstance(cell.error, UsageError) and "no cell [99999]" in str(cell.error)
    assert server.requests == []


def test_without_a_recorder_a_usage_error(ip: Any, run: Any, server: Any,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    magics = ip.magics_manager.registry["ClaudeMagics"]
    monkeypatch.setattr(magics, "recorder", None)
    cell = run("%claude_fix")
    assert isinstance(cell.error, UsageError) and "%load_ext nb_claude" in str(cell.error)
    assert server.requests == []


def test_strict_replay_after_recording_sends_nothing(
        ip: Any, run: Any, server: Any, recorder: ContextRecorder,
        inserted: list[tuple[str, bool]]) -> None:
    _config.settings.update(replay_mode="auto")
    start = ip.execution_count
    fail(run)
    server.reply(REPLY)
    first = run("%claude_fix")
    assert first.error is None and len(server.requests) == 1
    entries = [json.loads(line) for line in
               Path("nb_claude_replay.jsonl").read_text().splitlines() if line.strip()]
    assert len(entries) == 1
    # a fresh kernel running the same notebook, offline and strict
    run("%claude_reset")
    server.reset()
    recorder.clear()
    ip.history_manager.reset(new_session=True)
    ip.execution_count = start
    _config.settings.update(replay_mode="replay")
    fail(run)
    second = run("%claude_fix")
    assert second.error is None, second.error
    assert server.requests == []
    assert inserted == [(FIXED, False), (FIXED, False)]
    assert "replayed" in second.markdown.rsplit("<sub>", 1)[1]


def test_code_format_shows_reply_code_as_text_where_cells_cannot_be_inserted(
        run: Any, server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A block holding a shorter fence cannot close the shown fence and let HTML out."""
    monkeypatch.setattr(_magics, "_front_end_inserts_cells", lambda shell: False)
    hostile = "x = 1\n```\n<img src=x onerror=alert(1)>"
    server.reply(f"Here:\n\n````python\n{hostile}\n````\n")
    cell = run("%%claude -f code --no-context\nGive me code")
    assert cell.error is None
    shown = cell.outputs[-1].data["text/markdown"]
    fence = re.search(r"^(`{4,})python$", shown, re.M)
    assert fence is not None and shown.rstrip().endswith(fence.group(1))
    assert hostile in shown
