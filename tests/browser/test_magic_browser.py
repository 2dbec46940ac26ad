"""What a %%claude cell looks like in a real JupyterLab: live, then one rendered output."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from nb_claude.testing import StandInServer

from .lab import CELL, JupyterServer, open_notebook, run_cell, screenshot

ANSWER = [
    "Region **north** is the most skewed:\n\n", "| region | mean | median |\n",
    "|---|---|---|\n", "| north | 5.5 | 1.0 |\n", "| south | 2.0 | 2.0 |\n\n",
    "```python\n", "sales.groupby('region').revenue.skew()\n", "```\n",
]


@pytest.fixture(scope="module")
def standin() -> Iterator[StandInServer]:
    with StandInServer(seed=4) as server:
        yield server


@pytest.fixture
def lab_env(standin: StandInServer) -> dict[str, str]:
    return {"NB_CLAUDE_BASE_URL": standin.url, "AIMLAPI_KEY": "sk-nbc-browser-magic",
            "NB_CLAUDE_REPLAY": "off"}


SETUP = """%load_ext nb_claude
%matplotlib inline
import nb_claude, pandas as pd, matplotlib.pyplot as plt
sales = pd.DataFrame({"region": ["north", "south", "north"], "revenue": [1.0, 2.0, 10.0]})

@nb_claude.tool
def column_stats(column: str) -> dict:
    \"\"\"Summary statistics of one column.\"\"\"
    return sales[column].describe().round(2).to_dict()

sales.plot.bar(x="region", y="revenue");"""


def test_a_cell_with_thinking_tools_and_a_plot_renders_as_one_tidy_output(
        page: Any, lab_server: JupyterServer, standin: StandInServer) -> None:
    standin.reset()
    open_notebook(page, lab_server, "magic.ipynb")
    run_cell(page, SETUP)
    assert page.locator(CELL).nth(0).locator(".jp-OutputArea-output img").count() == 1
    page.keyboard.press("Escape")
    page.keyboard.press("b")  # a new cell below
    standin.reply("Let me look at revenue.", thinking="The user wants skew by region.",
                  tool_calls=[{"name": "column_stats", "arguments": {"column": "revenue"}}],
                  delay=0.05)
    standin.reply(chunks=ANSWER, delay=0.1, usage=(120, 60))
    index = run_cell(page, "%%claude --plot --attach sales --tools column_stats --thinking\n"
                           "Which region's revenue is most skewed?")
    output = page.locator(CELL).nth(index).locator(".jp-OutputArea-output")
    assert output.count() == 1  # one settled output, not the intermediate states
    rendered = output.first
    sent = rendered.locator("img").first
    assert sent.get_attribute("src").startswith("data:image/png;base64,")
    assert "sales: DataFrame 3 × 2" in rendered.inner_text()
    thinking, tool = rendered.locator("details").all()[:2]
    assert thinking.get_attribute("open") is None  # collapsed
    assert thinking.locator("summary").inner_text() == "Thinking"
    assert "column_stats(" in tool.locator("summary").inner_text()
    tool.locator("summary").click()
    assert '"mean": 4.33' in tool.inner_text()
    assert rendered.locator("table").count() == 1
    assert rendered.locator("pre code, .cm-editor, pre").count() >= 1
    footer = rendered.locator("sub").last.inner_text()
    assert "claude-opus-4-8 · " in footer and "2 steps" in footer
    screenshot(page, "magic")
    request = standin.requests[-1].body
    assert request["messages"][-1]["content"][0]["type"] == "tool_result"


def test_code_format_puts_the_code_in_a_new_cell_below(
        page: Any, lab_server: JupyterServer, standin: StandInServer) -> None:
    standin.reset()
    open_notebook(page, lab_server, "code.ipynb")
    run_cell(page, "%load_ext nb_claude")
    page.keyboard.press("Escape")
    page.keyboard.press("b")
    standin.reply("Here you go:\n\n```python\nprint(sum(range(10)))\n```\n")
    index = run_cell(page, "%%claude -f code\nSum 0..9 in Python")
    new_cell = page.locator(CELL).nth(index + 1)
    new_cell.locator(".cm-content").wait_for(timeout=10_000)
    assert new_cell.locator(".cm-content").inner_text().strip() == "print(sum(range(10)))"
