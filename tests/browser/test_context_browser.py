"""Claude sees the notebook, as a JupyterLab user sees it: a Context line under the
prompt, and the exact text sent behind a collapsed "what Claude saw"."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from nb_claude.testing import StandInServer

from .lab import CELL, JupyterServer, open_notebook, run_cell, screenshot

HEADER = "Notebook cells run before this prompt, oldest first:"
CODE = "numbers = [3, 1, 2]\nprint('sorted:', sorted(numbers))"


@pytest.fixture(scope="module")
def standin() -> Iterator[StandInServer]:
    with StandInServer(seed=9) as server:
        yield server


@pytest.fixture
def lab_env(standin: StandInServer) -> dict[str, str]:
    return {"NB_CLAUDE_BASE_URL": standin.url, "AIMLAPI_KEY": "sk-nbc-browser-context",
            "NB_CLAUDE_REPLAY": "off"}


def test_the_context_line_and_what_claude_saw_under_a_prompt(
        page: Any, lab_server: JupyterServer, standin: StandInServer) -> None:
    standin.reset()
    open_notebook(page, lab_server, "context.ipynb")
    run_cell(page, "%load_ext nb_claude")  # Shift+Enter leaves a new cell below
    code_index = run_cell(page, CODE)
    code_count = page.locator(CELL).nth(code_index).locator(".jp-InputPrompt").inner_text()
    n = int(code_count.strip().strip("[]:"))
    standin.reply("The cell printed the sorted list **[1, 2, 3]**.", usage=(80, 12))
    index = run_cell(page, "%%claude\nWhat did the last cell print?")

    sent = standin.requests[-1].body["messages"][-1]["content"]
    assert sent[0]["text"].startswith(HEADER) and f"In [{n}]:" in sent[0]["text"]
    assert "%load_ext" not in sent[0]["text"]

    output = page.locator(CELL).nth(index).locator(".jp-OutputArea-output")
    assert output.count() == 1
    rendered = output.first
    context_line = rendered.get_by_text("Context: cell", exact=False).first
    context_line.wait_for(state="visible", timeout=10_000)
    assert f"[{n}]" in context_line.inner_text() and "tokens" in context_line.inner_text()

    saw = rendered.locator("details", has=page.locator("summary", has_text="what Claude saw"))
    assert saw.count() == 1
    assert saw.get_attribute("open") is None  # collapsed
    code_line = saw.get_by_text("sorted(numbers)", exact=False).first
    assert not code_line.is_visible()
    saw.locator("summary").first.click()
    code_line.wait_for(state="visible", timeout=5_000)
    assert saw.get_attribute("open") is not None
    shown = saw.inner_text()
    assert "numbers = [3, 1, 2]" in shown and "print('sorted:', sorted(numbers))" in shown
    assert "sorted: [1, 2, 3]" in shown  # its output too
    assert "[1, 2, 3]" in rendered.inner_text()
    screenshot(page, "context")
