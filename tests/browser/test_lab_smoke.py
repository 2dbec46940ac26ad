"""JupyterLab runs code and renders ipywidgets in a real browser, with no build step."""

from __future__ import annotations

from typing import Any

import pytest

from .lab import JupyterServer, cell_output_text, open_notebook, run_cell, screenshot

WIDGET_CELL = """\
import ipywidgets as w
b = w.Button(description="nbc-smoke")
b.add_class("nbc-smoke")
def _clicked(button):
    button.description = "clicked " + str(1 + 1)
b.on_click(_clicked)
b
"""


def test_lab_runs_code_and_widgets(page: Any, lab_server: JupyterServer) -> None:
    open_notebook(page, lab_server, "smoke.ipynb")
    index = run_cell(page, "1+1")
    assert cell_output_text(page, index) == "2"

    run_cell(page, WIDGET_CELL)
    button = page.locator("button.nbc-smoke")
    button.wait_for()
    assert button.inner_text() == "nbc-smoke"
    button.click()
    page.locator("button.nbc-smoke", has_text="clicked 2").wait_for(timeout=10_000)
    screenshot(page, "lab-smoke")


@pytest.mark.parametrize("jupyter_app", ["notebook"])
def test_notebook7_runs_code(page: Any, lab_server: JupyterServer) -> None:
    open_notebook(page, lab_server, "smoke-nb7.ipynb", cells=["6*7"])
    run_cell(page, 0)
    assert cell_output_text(page, 0) == "42"
    screenshot(page, "notebook7-smoke")
