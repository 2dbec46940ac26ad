"""The chat panel in a real JupyterLab: send, stream, stop, and a %%claude cell showing up."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from nb_claude.testing import StandInServer

from .lab import JupyterServer, open_notebook, run_cell, screenshot

FIRST_REPLY = [
    "Here is a **small** table:\n\n", "| x | x² |\n", "|---|---|\n", "| 2 | 4 |\n",
    "| 3 | 9 |\n\n", "and the code:\n\n", "```python\n", "squares = [x * x for x in range(4)]\n",
    "```\n",
]
SLOW_REPLY = [f"slow{i} " for i in range(40)]


@pytest.fixture(scope="module")
def standin() -> Iterator[StandInServer]:
    with StandInServer(seed=3) as server:
        yield server


@pytest.fixture
def lab_env(standin: StandInServer) -> dict[str, str]:
    return {"NB_CLAUDE_BASE_URL": standin.url, "AIMLAPI_KEY": "sk-nbc-browser-test",
            "NB_CLAUDE_REPLAY": "off"}


def last_word(text: str) -> int:
    """The highest N of the "slowN" words shown."""
    return max(int(n) for n in re.findall(r"slow(\d+)", text))


def turns(page: Any) -> Any:
    return page.locator(".nbc-panel .nbc-turn")


def test_panel_sends_streams_stops_and_shows_cell_turns(
        page: Any, lab_server: JupyterServer, standin: StandInServer) -> None:
    standin.reset()
    open_notebook(page, lab_server, "panel.ipynb")
    run_cell(page, "%load_ext nb_claude\n%claude_chat")
    panel = page.locator(".nbc-panel")
    panel.wait_for()
    assert panel.locator(".nbc-empty").inner_text().startswith("No turns yet")

    # Send: the reply streams in and is rendered as Markdown by the front end.
    standin.reply(chunks=FIRST_REPLY, delay=0.15)
    panel.locator(".nbc-input textarea").fill("Show me squares")
    panel.locator("button.nbc-send").click()
    turns(page).first.locator("table").wait_for(timeout=15_000)  # seen mid-stream
    first = turns(page).first
    first.locator("pre").first.wait_for(timeout=15_000)
    page.wait_for_function(
        "() => { const t = document.querySelector('.nbc-panel .nbc-turn');"
        " return t !== null && t.innerText.includes(' in / ') && !t.innerText.includes('▍'); }",
        timeout=15_000)
    assert "You: Show me squares" in first.inner_text()
    assert first.locator("strong", has_text="small").count() == 1
    assert "squares = [x * x" in first.locator("pre").inner_text()
    assert " in / " in first.inner_text()  # the usage footer
    assert panel.locator(".nbc-input textarea").input_value() == ""

    # Stop during a slow reply: it ends at once and is marked interrupted.
    standin.reply(chunks=SLOW_REPLY, delay=0.3)
    panel.locator(".nbc-input textarea").fill("Count slowly")
    panel.locator("button.nbc-send").click()
    second = turns(page).nth(1)
    second.get_by_text("slow2", exact=False).wait_for(timeout=15_000)
    stopped_at = time.monotonic()
    panel.locator("button.nbc-stop").click()
    second.get_by_text("interrupted").wait_for(timeout=5_000)
    assert time.monotonic() - stopped_at < 3
    at_stop = last_word(second.inner_text())
    page.wait_for_timeout(1200)  # four chunk intervals: nothing more may arrive
    assert last_word(second.inner_text()) <= at_stop + 1  # a chunk in flight may land
    assert panel.locator(".nbc-status").inner_text().strip() == "Stopped."

    # A %%claude cell continues the panel's conversation and appears in the panel.
    standin.reply(chunks=["From ", "the ", "*cell*."], delay=0.1)
    run_cell(page, "%%claude\nAnd now from a cell?")
    third = turns(page).nth(2)
    third.locator("em", has_text="cell").wait_for(timeout=15_000)
    assert "You: And now from a cell?" in third.inner_text()
    messages = standin.requests[-1].body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[0]["content"] == "Show me squares"
    assert messages[3]["content"].startswith("slow0 slow1 slow2")
    assert turns(page).count() == 3
    # The transcript scrolls and stays pinned to the newest turn.
    scroll_box = panel.locator(".nbc-scroll").bounding_box()
    newest = third.bounding_box()
    assert newest["y"] + newest["height"] <= scroll_box["y"] + scroll_box["height"] + 1

    panel.scroll_into_view_if_needed()
    screenshot(page, "panel")


@pytest.mark.parametrize("jupyter_app", ["notebook"])
def test_panel_works_in_notebook7(page: Any, lab_server: JupyterServer,
                                  standin: StandInServer) -> None:
    standin.reset()
    open_notebook(page, lab_server, "panel-nb7.ipynb")
    run_cell(page, "%load_ext nb_claude\n%claude_chat")
    panel = page.locator(".nbc-panel")
    panel.wait_for()
    standin.reply(chunks=["Hello ", "from **Notebook 7**."], delay=0.1)
    panel.locator(".nbc-input textarea").fill("Hi there")
    panel.locator("button.nbc-send").click()
    turns(page).first.locator("strong", has_text="Notebook 7").wait_for(timeout=15_000)
    turns(page).first.get_by_text(" in / ").wait_for(timeout=15_000)  # finished: footer shown
    assert "You: Hi there" in turns(page).first.inner_text()
    screenshot(page, "panel-notebook7")
