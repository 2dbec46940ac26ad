"""The "Ask Claude" button in a real JupyterLab (and Notebook 7): a failing cell shows it,
a click streams the explanation and the diff, Insert below puts the fix in a new cell that
has not run, and Copy puts it on the clipboard."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from nb_claude.testing import StandInServer

from .lab import ARTIFACTS, CELL, JupyterServer, open_notebook, run_cell

SETUP = ("%load_ext nb_claude\nimport pandas as pd\n"
         "df = pd.DataFrame({'region': ['north', 'south', 'north'], 'revenue': [10, 20, 30]})")
FAILING = 'by_region = df.groupby("regoin")\nby_region.revenue.mean()'
FIXED = 'by_region = df.groupby("region")\nby_region.revenue.mean()'
EXPLANATION = ("`df` has no column `regoin`: it is a typo for `region`, so pandas raises a "
               "`KeyError` when it looks the grouping key up among the columns.")


@pytest.fixture(scope="module")
def standin() -> Iterator[StandInServer]:
    with StandInServer(seed=5) as server:
        yield server


@pytest.fixture
def lab_env(standin: StandInServer) -> dict[str, str]:
    return {"NB_CLAUDE_BASE_URL": standin.url, "AIMLAPI_KEY": "sk-nbc-browser-fix",
            "NB_CLAUDE_REPLAY": "off"}


def shot(page: Any, cell: Any, bottom: Any, name: str, height: float) -> None:
    """The `height` pixels of `cell` that end at the bottom of `bottom`, as a PNG."""
    bottom.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    area, end = cell.bounding_box(), bottom.bounding_box()
    top = max(area["y"], end["y"] + end["height"] - height)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"),
                    clip={"x": area["x"], "y": top, "width": area["width"],
                          "height": end["y"] + end["height"] + 8 - top})


def editor_text(cell: Any) -> str:
    return "\n".join(line.rstrip() for line in cell.locator(".cm-content .cm-line").all_inner_texts())


@pytest.mark.parametrize("jupyter_app", ["lab", "notebook"])
def test_ask_claude_streams_the_fix_and_inserts_it_below_unrun(
        page: Any, lab_server: JupyterServer, standin: StandInServer, jupyter_app: str) -> None:
    standin.reset()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=lab_server.url)
    open_notebook(page, lab_server, f"fix-{jupyter_app}.ipynb")
    run_cell(page, SETUP)
    index = run_cell(page, FAILING)
    cells = page.locator(CELL)
    failing = cells.nth(index)
    count = cells.count()
    assert count == index + 2  # Shift+Enter on the last cell added an empty one below

    # The traceback, and under it one button; nothing sent yet.
    failing.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
                    ).first.wait_for()
    ask = failing.locator("button.nbc-ask")
    ask.wait_for()
    assert ask.count() == 1 and "KeyError" in failing.inner_text()
    assert standin.requests == []
    if jupyter_app == "lab":
        shot(page, failing, ask, "error-button", 240)

    # Click: the explanation streams in, then the diff and the two buttons.
    words = EXPLANATION.split(" ")
    chunks = [w + " " for w in words] + [f"\n\n```python\n{FIXED}\n```\n"]
    standin.reply(chunks=chunks, delay=0.05)
    ask.click()
    box = failing.locator(".nbc-fix")
    box.locator(".nbc-fix-reply").get_by_text("typo", exact=False).wait_for(timeout=15_000)
    diff = box.locator(".nbc-fix-diff pre")
    diff.wait_for(timeout=15_000)
    assert len(standin.requests) == 1
    shown = diff.inner_text()
    assert '- by_region = df.groupby("regoin")' in shown
    assert '+ by_region = df.groupby("region")' in shown
    assert "  by_region.revenue.mean()" in shown  # unchanged context line
    assert ask.is_disabled()
    assert box.locator(".nbc-fix-reply").locator("code", has_text="regoin").count() >= 1
    if jupyter_app == "lab":
        actions = box.locator(".nbc-fix-actions")
        shot(page, failing, actions, "fix-diff",
             actions.bounding_box()["y"] - box.bounding_box()["y"] + 110)

    # Copy: the fixed code on the clipboard.
    copy = box.locator("button.nbc-fix-copy")
    copy.click()
    page.wait_for_function("() => document.querySelector('button.nbc-fix-copy')"
                           ".textContent === 'Copied'", timeout=5_000)
    assert page.evaluate("() => navigator.clipboard.readText()") == FIXED

    # Insert below: a new cell right under the failing one, holding the fix, not run.
    box.locator("button.nbc-fix-insert").click()
    deadline = time.monotonic() + 10
    while cells.count() != count + 1 and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert page.locator(".jp-Dialog").count() == 0  # no "Run Command?" prompt
    assert cells.count() == count + 1
    inserted = cells.nth(index + 1)
    assert editor_text(inserted) == FIXED
    assert inserted.locator(".jp-InputPrompt").inner_text().strip() in ("[ ]:", "")
    assert inserted.locator(".jp-OutputArea-output").count() == 0
    assert editor_text(cells.nth(index)) == FAILING  # the failing cell is left as it was
    assert len(standin.requests) == 1


HOSTILE_CODE = ("x = \"</pre></button><img src=x onerror=\\\"window.__nbcPwned=1\\\">\"\n"
                "y = '\"&amp;<b>' + `{}`.format(1)")
HOSTILE_NOTE = "Fixed. <img src=x onerror=\"window.__nbcPwned=2\"> <script>window.__nbcPwned=3</script>"


def test_hostile_fix_code_is_shown_and_inserted_as_text_and_never_runs(
        page: Any, lab_server: JupyterServer, standin: StandInServer) -> None:
    """A reply is untrusted: its explanation, diff and code stay text in the page, and
    Insert below puts exactly that text in a cell (through an attribute and a command's
    JSON) without running it."""
    standin.reset()
    open_notebook(page, lab_server, "fix-hostile.ipynb")
    run_cell(page, SETUP)
    index = run_cell(page, FAILING)
    cells = page.locator(CELL)
    count = cells.count()
    failing = cells.nth(index)
    ask = failing.locator("button.nbc-ask")
    ask.wait_for()
    standin.fix_reply(HOSTILE_NOTE, HOSTILE_CODE)
    ask.click()
    box = failing.locator(".nbc-fix")
    box.locator(".nbc-fix-diff pre").wait_for(timeout=15_000)
    assert "onerror" in box.locator(".nbc-fix-diff pre").inner_text()  # shown, as text
    assert box.locator("img").count() == 0 and box.locator("script").count() == 0
    box.locator("button.nbc-fix-insert").click()
    deadline = time.monotonic() + 10
    while cells.count() != count + 1 and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert cells.count() == count + 1
    assert editor_text(cells.nth(index + 1)) == HOSTILE_CODE
    page.wait_for_timeout(300)
    assert page.evaluate("() => window.__nbcPwned") is None
    assert cells.nth(index + 1).locator(".jp-OutputArea-output").count() == 0
