"""A batch in a real JupyterLab: the progress bar moves while the cell runs, and Stop
(a plain button that runs the front end's interrupt command) stops it."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from nb_claude.testing import StandInServer

from .lab import JupyterServer, open_notebook, run_cell, screenshot


@pytest.fixture
def lab_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """A server of its own for each test (JupyterLab reopens the notebooks of earlier tests
    in hidden tabs); the stand-in's address for the test that asks Claude."""
    env = {"NB_CLAUDE_TEST_SERVER": request.node.originalname}
    if "standin" in request.fixturenames:
        server = request.getfixturevalue("standin")
        env.update({"NB_CLAUDE_BASE_URL": server.url, "AIMLAPI_KEY": "sk-nbc-browser-batch",
                    "NB_CLAUDE_REPLAY": "auto"})
    return env


VISIBLE_CELL = ".jp-NotebookPanel:visible .jp-Cell"  # earlier notebooks stay open in hidden tabs

# A loop that drives the view as the engine does, stopped only by a kernel interrupt.
VIEW_LOOP = """\
import time
from nb_claude._batch_view import view_for

class Snap:
    def __init__(self, done):
        self.total, self.done, self.errors, self.replayed = 400, done, 0, 0
        self.in_flight, self.concurrency = 2, 2
        self.input_tokens, self.output_tokens, self.cost_usd = 10 * done, 5 * done, 0.001 * done
        self.elapsed, self.rate, self.eta = done / 10, 10.0, (400 - done) / 10
        self.state = "running"

view, done = view_for(get_ipython()), 0
view.start(Snap(0))
try:
    while done < 400:
        time.sleep(0.1)
        done += 1
        view.update(Snap(done))
    end = Snap(done); end.state = "finished"
except KeyboardInterrupt:
    end = Snap(done); end.state = "stopped"
view.finish(end, "<b>kept</b> what finished")
kept = done
"""


def start_cell(page: Any, index: int, text: str) -> Any:
    """Type `text` into cell `index` and run it without waiting; returns the cell."""
    cell = page.locator(VISIBLE_CELL).nth(index)
    cell.locator(".cm-content").click()
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(text)
    page.keyboard.press("Shift+Enter")
    return cell


def done_count(cell: Any) -> int:
    text = cell.locator(".nbc-batch-status").inner_text()
    match = re.match(r"(\d+)/(\d+)", text.replace(",", ""))
    assert match, text
    return int(match[1])


def wait_for_prompt(cell: Any, timeout: float = 30) -> None:
    """Until the cell's prompt shows an execution count again (the cell ended)."""
    prompt = cell.locator(".jp-InputPrompt")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.match(r"^\[\d+\]:$", prompt.inner_text().strip()):
            return
        time.sleep(0.05)
    raise TimeoutError(f"the cell still runs after {timeout:.0f} s")


def stop_and_settle(page: Any, cell: Any, *, confirm: bool = False) -> int:
    """Watch the bar move, click Stop (and JupyterLab's "Run Once" when asked), then check
    the summary the bar settles into; returns the number it says were done."""
    cell.locator(".nbc-batch-status").wait_for(timeout=30_000)
    first = done_count(cell)
    page.wait_for_timeout(800)
    assert done_count(cell) > first  # the bar moves while the kernel is busy
    stop = cell.locator("button.nbc-batch-stop")
    assert stop.is_visible() and not cell.locator(".nbc-batch-hint").is_visible()
    assert stop.get_attribute("data-commandlinker-command") == "notebook:interrupt-kernel"
    stop.click()
    if confirm:
        dialog = page.locator(".jp-Dialog")
        dialog.wait_for(timeout=10_000)
        assert "notebook:interrupt-kernel" in dialog.inner_text()
        dialog.get_by_role("button", name="Run Once").click()
    wait_for_prompt(cell)
    summary = cell.locator(".nbc-batch-summary")
    summary.wait_for(timeout=10_000)
    text = summary.inner_text()
    assert text.startswith("■ Stopped: ") and text.endswith("<b>kept</b> what finished"), text
    stopped_at = int(re.search(r"Stopped: (\d+)/400", text)[1])  # type: ignore[index]
    assert first < stopped_at < 400
    assert cell.locator(".nbc-batch-bar").count() == 0
    return stopped_at


@pytest.mark.parametrize("jupyter_app", ["lab", "notebook"])
def test_stop_interrupts_the_running_cell_and_the_bar_settles(
        page: Any, lab_server: JupyterServer, jupyter_app: str) -> None:
    open_notebook(page, lab_server, f"stop-{jupyter_app}.ipynb")
    cell = start_cell(page, 0, VIEW_LOOP)
    stopped_at = stop_and_settle(page, cell)
    index = run_cell(page, "print('kept', kept)")
    assert f"kept {stopped_at}" in page.locator(VISIBLE_CELL).nth(index).inner_text()


def test_in_a_notebook_not_yet_trusted_stop_asks_once(
        page: Any, lab_server: JupyterServer) -> None:
    """A cell loaded from disk and not yet run leaves the notebook untrusted: JupyterLab
    asks before running the command, and "Run Once" stops the batch."""
    open_notebook(page, lab_server, "stop-untrusted.ipynb", cells=["", "1 + 1"])
    cell = start_cell(page, 0, VIEW_LOOP)
    stop_and_settle(page, cell, confirm=True)


@pytest.fixture(scope="module")
def standin() -> Iterator[StandInServer]:
    with StandInServer(seed=15, latency=0.3) as server:
        yield server




SETUP = """%load_ext nb_claude
import pandas as pd
reviews = pd.DataFrame({"text": [f"review <b>{i}</b>: fine" for i in range(40)]},
                       index=[f"r{i}" for i in range(40)])"""
EACH = "%%claude --each reviews --concurrency 2 --out labels --yes\nLabel this review: {text}"


def test_each_over_a_dataframe_shows_a_moving_bar_and_stop_keeps_what_finished(
        page: Any, lab_server: JupyterServer, standin: StandInServer) -> None:
    standin.reset()
    open_notebook(page, lab_server, "each.ipynb")
    run_cell(page, SETUP)
    cell = start_cell(page, 1, EACH)
    cell.locator(".nbc-batch-status").wait_for(timeout=30_000)
    first = done_count(cell)
    page.wait_for_timeout(1_500)  # 0.3 s a request, two at a time: about ten more
    moved = done_count(cell)
    assert first < moved < 40
    assert "/2 in flight" in cell.locator(".nbc-batch-status").inner_text()
    screenshot(page, "batch-progress")
    cell.locator("button.nbc-batch-stop").click()
    wait_for_prompt(cell)
    summary = cell.locator(".nbc-batch-summary")
    summary.wait_for(timeout=10_000)
    text = summary.inner_text()
    kept = int(re.search(r"Stopped: (\d+)/40 done", text)[1])  # type: ignore[index]
    assert moved <= kept < 40 and "stopped: " in text, text
    assert f" · {40 - kept} not run · " in text and " (estimate) · " in text, text
    assert text.endswith("result in labels (reply, error)"), text
    assert cell.locator(".nbc-batch-bar").count() == 0
    assert "labels ←" not in cell.inner_text()  # one summary: the bar's, not a second line
    assert len(standin.requests) <= kept + 2  # nothing sent after Stop but what was in flight

    index = run_cell(page, "print(len(labels), (labels['error'] == '').sum(), "
                           "labels.attrs['nb_claude']['state'], list(labels.index[:2]))")
    printed = page.locator(VISIBLE_CELL).nth(index).locator(".jp-OutputArea-output").last
    assert printed.inner_text().strip() == f"40 {kept} stopped ['r0', 'r1']"
    screenshot(page, "batch-stopped")

    # Run the cell again: the kept answers come from the replay file, the rest is sent.
    sent_before = len(standin.requests)
    cell = start_cell(page, 1, EACH)
    cell.locator(".nbc-batch-status").wait_for(timeout=30_000)  # a new bar, then its end
    wait_for_prompt(cell, timeout=60)
    final = cell.locator(".nbc-batch-summary").inner_text()
    assert final.startswith("✓ Finished: 40/40 done · 0 errors") and \
        f"{kept} replayed" in final, final
    assert len(standin.requests) - sent_before == 40 - kept
