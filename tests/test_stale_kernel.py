"""Restart & Run All after the data changed: the reply says it is stale, in a real kernel.

The notebook is recorded once; then the cell that makes the DataFrame, above the prompt,
is edited, and the notebook runs again in a fresh kernel: in `auto` the prompt is asked
again and its footer and output metadata say what changed; in strict `replay` mode the
cell fails with `ReplayStaleError` naming it and the change.
"""

from __future__ import annotations

import html

import nbformat
import pytest
from kernel_harness import run_notebook

from nb_claude.testing import DEMO_KEY, StandInServer

pytestmark = pytest.mark.kernel

SOURCES = [
    "%load_ext nb_claude",
    "import pandas as pd\ndf = pd.DataFrame({'region': ['n'] * ROWS, 'sales': range(ROWS)})",
    "%%claude\nSummarise @df",
]
DATA = 1  # the cell edited between runs, above the prompt


def write_nb(path, rows: int):
    sources = [s.replace("ROWS", str(rows)) for s in SOURCES]
    nbformat.write(nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(s) for s in sources]), path)
    return path


def reply(nb) -> tuple[str, dict]:
    """(the footer as read, the nb_claude metadata) of the prompt cell's reply."""
    for output in nb.cells[-1].get("outputs", []):
        meta = output.get("metadata", {}).get("nb_claude")
        if meta:
            footer = output["data"]["text/markdown"].rsplit("<sub>", 1)[1]
            return html.unescape(footer), meta
    raise AssertionError(f"no reply in {nb.cells[-1].get('outputs')}")


def errors(nb) -> list[dict]:
    return [o for cell in nb.cells for o in cell.get("outputs", [])
            if o.get("output_type") == "error"]


def test_changed_data_above_the_prompt_makes_the_reply_stale(tmp_path):
    path = tmp_path / "stale.ipynb"
    with StandInServer(seed=3) as server:
        env = {"NB_CLAUDE_REPLAY": "auto", "NB_CLAUDE_BASE_URL": server.url,
               "AIMLAPI_KEY": DEMO_KEY}
        first = run_notebook(write_nb(path, 10), env=env, cwd=tmp_path)
        assert errors(first) == [] and len(server.requests) == 1
        footer, meta = reply(first)
        assert " · live" in footer and meta["state"] == "live"
        described = {i["name"]: i["description"] for i in meta["inputs"]}
        assert described["@df"] == "DataFrame 10 × 2: region, sales"
        assert "[2]" in described  # the data cell, as notebook context

        again = run_notebook(path, env=env, cwd=tmp_path)  # unchanged: replayed
        assert len(server.requests) == 1 and reply(again)[1]["state"] == "replayed"

        stale = run_notebook(write_nb(path, 12), env=env, cwd=tmp_path)
        assert errors(stale) == [] and len(server.requests) == 2, "asked again"
        footer, meta = reply(stale)
        assert "stale: df changed (10 × 2 -> 12 × 2); cell [2] changed (asked again)" in footer
        assert meta["state"] == "stale"
        assert meta["changed"] == ["df changed (10 × 2 -> 12 × 2)", "cell [2] changed"]

        strict = run_notebook(write_nb(path, 14), env={**env, "NB_CLAUDE_REPLAY": "replay"},
                              cwd=tmp_path, allow_errors=True)
        assert len(server.requests) == 2  # strict replay never asks
        [error] = errors(strict)
        assert error["ename"] == "ReplayStaleError"
        assert "cell [3]" in error["evalue"] and "Summarise @df" in error["evalue"]
        assert "df changed (12 × 2 -> 14 × 2); cell [2] changed" in error["evalue"]
