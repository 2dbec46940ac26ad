"""`%claude_chat --dock` in a real JupyterLab: the panel sits in the right side area, shows
a %%claude cell's turn, comes back once when docked again, and closes with its tab."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from nb_claude.testing import StandInServer

from .lab import JupyterServer, cell_output_text, open_notebook, run_cell, screenshot

SIDE = "#jp-right-stack"
DOCKED = f"{SIDE} .jupyterlab-sidecar .nbc-panel.nbc-docked"
CLAUDE_TAB = ".jp-SideBar.jp-mod-right .lm-TabBar-tab"


@pytest.fixture(scope="module")
def standin() -> Iterator[StandInServer]:
    with StandInServer(seed=5) as server:
        yield server


@pytest.fixture
def lab_env(standin: StandInServer) -> dict[str, str]:
    return {"NB_CLAUDE_BASE_URL": standin.url, "AIMLAPI_KEY": "sk-nbc-browser-test",
            "NB_CLAUDE_REPLAY": "off"}


def claude_tabs(page: Any) -> Any:
    return page.locator(CLAUDE_TAB, has_text="Claude")


def kernel_says(page: Any, code: str) -> str:
    """Run `code` in a new last cell and return what it printed."""
    page.locator(".jp-NotebookPanel .jp-Cell").last.locator(".cm-content").click()
    return cell_output_text(page, run_cell(page, code))


def test_docked_panel_sits_beside_the_notebook(page: Any, lab_server: JupyterServer,
                                               standin: StandInServer) -> None:
    standin.reset()
    open_notebook(page, lab_server, "dock.ipynb")
    first = run_cell(page, "%load_ext nb_claude\n%claude_chat --dock")
    panel = page.locator(DOCKED)
    panel.wait_for(timeout=15_000)
    # In the right-hand side area, not in the cell's output: the cell shows only the note
    # (its copy of the chat, for Notebook 7's page, stays hidden here).
    assert page.locator(".jp-NotebookPanel .nbc-panel >> visible=true").count() == 0
    assert page.locator(".jp-NotebookPanel .nbc-dock-fallback").count() == 1
    assert "docked in JupyterLab's right side area" in cell_output_text(page, first)
    assert claude_tabs(page).count() == 1
    side = page.locator(SIDE).bounding_box()
    notebook = page.locator(".jp-NotebookPanel").bounding_box()
    box = panel.bounding_box()
    assert box["x"] >= notebook["x"] + notebook["width"] - 1  # right of the notebook
    assert side["x"] <= box["x"] and box["x"] + box["width"] <= side["x"] + side["width"] + 1
    assert panel.locator(".nbc-empty").inner_text().startswith("No turns yet")

    # A prompt from a %%claude cell shows in the docked panel as it streams.
    standin.reply(chunks=["Use **groupby** ", "then ", "`mean()`."], delay=0.1)
    run_cell(page, "%%claude\nHow do I average by group?")
    turn = panel.locator(".nbc-turn").first
    turn.locator("strong", has_text="groupby").wait_for(timeout=15_000)
    turn.get_by_text(" in / ").wait_for(timeout=15_000)  # finished: the usage footer
    assert "You: How do I average by group?" in turn.inner_text()
    assert standin.requests[-1].body["messages"][-1]["content"] == "How do I average by group?"

    # Typed into the side panel, keys reach its input, not the notebook's shortcuts.
    cells = page.locator(".jp-NotebookPanel .jp-Cell").count()
    panel.locator(".nbc-input textarea").click()
    page.keyboard.type("And a bar chart of it?")
    assert panel.locator(".nbc-input textarea").input_value() == "And a bar chart of it?"
    assert page.locator(".jp-NotebookPanel .jp-Cell").count() == cells
    standin.reply(chunks=["Call ", "`df.plot.bar()`."], delay=0.05)
    panel.locator("button.nbc-send").click()
    second = panel.locator(".nbc-turn").nth(1)
    second.get_by_text(" in / ").wait_for(timeout=15_000)
    assert "df.plot.bar()" in second.inner_text()
    assert standin.requests[-1].body["messages"][-1]["content"] == "And a bar chart of it?"
    screenshot(page, "dock")

    # Docking again brings the same panel back in one fresh tab: no pile of side panels.
    run_cell(page, "%claude_chat --dock")
    page.wait_for_timeout(1000)
    assert page.locator(DOCKED).count() == 1
    assert claude_tabs(page).count() == 1
    assert "How do I average by group?" in page.locator(DOCKED).inner_text()
    assert kernel_says(page, "from nb_claude._dock import docked_panel\n"
                             "print(docked_panel() is not None)") == "True"

    # Closing the side tab closes the dock in the kernel too; --dock opens a new one.
    # The tab is rotated: click where its x is drawn (Lumino hit-tests the icon's box).
    icon = claude_tabs(page).locator(".lm-TabBar-tabCloseIcon").bounding_box()
    page.mouse.click(icon["x"] + icon["width"] / 2, icon["y"] + icon["height"] / 2)
    page.locator(DOCKED).wait_for(state="detached", timeout=10_000)
    page.wait_for_timeout(500)  # the front end reports the removed view to the kernel
    assert kernel_says(page, "print(docked_panel())") == "None"
    run_cell(page, "%claude_chat --dock")
    page.locator(DOCKED).wait_for(timeout=15_000)
    assert claude_tabs(page).count() == 1
    assert "How do I average by group?" in page.locator(DOCKED).inner_text()


@pytest.mark.parametrize("jupyter_app", ["notebook"])
def test_in_notebook_7_the_docked_chat_opens_in_the_cell(
        page: Any, lab_server: JupyterServer, standin: StandInServer, jupyter_app: str) -> None:
    """Notebook 7 has no side area sidecar can use; the chat shows in the cell instead."""
    standin.reset()
    open_notebook(page, lab_server, "dock-nb7.ipynb")
    first = run_cell(page, "%load_ext nb_claude\n%claude_chat --dock")
    inline = page.locator(".jp-NotebookPanel .nbc-dock-fallback .nbc-panel")
    inline.wait_for(state="visible", timeout=15_000)
    assert "Notebook 7" in cell_output_text(page, first)
    standin.reply(chunks=["Use ", "**groupby**."], delay=0.05)
    run_cell(page, "%%claude\nHow do I average by group?")
    turn = inline.locator(".nbc-turn").first
    turn.get_by_text(" in / ").wait_for(timeout=15_000)
    assert "How do I average by group?" in turn.inner_text()
