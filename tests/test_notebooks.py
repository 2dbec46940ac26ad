"""Every notebook in notebooks/ re-runs from its replay file: no key, no network, no errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from kernel_harness import reply_outputs, run_notebook

from nb_claude.testing import DEMO_KEY, StandInServer

pytestmark = pytest.mark.kernel
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
ALL = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))


def errors(nb) -> list[str]:
    """Errors of cells not tagged `raises-exception` (a cell that fails on purpose, to show
    the Ask Claude button and %claude_fix)."""
    return [f"{o.get('ename')}: {o.get('evalue')}" for cell in nb.cells
            if "raises-exception" not in cell.get("metadata", {}).get("tags", [])
            for o in cell.get("outputs", []) if o.get("output_type") == "error"]


@pytest.fixture
def workdir(tmp_path):
    """A copy of notebooks/, so runs never touch the committed replay file."""
    target = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, target)
    return target


def test_the_notebooks_ship_with_a_replay_file():
    assert ALL == ["quickstart.ipynb", "reproducible-analysis.ipynb"]
    entries = (NOTEBOOKS / "nb_claude_replay.jsonl").read_text().splitlines()
    assert len(entries) >= 8
    for name in ALL:
        text = (NOTEBOOKS / name).read_text()
        assert "offline stand-in server" in text  # labelled as recorded against the stand-in


@pytest.mark.parametrize("name", ALL)
def test_notebook_runs_in_strict_replay_mode_without_network(name, workdir):
    with StandInServer() as watcher:  # any request reaching it is a network attempt
        env = {"NB_CLAUDE_REPLAY": "replay", "NB_CLAUDE_BASE_URL": watcher.url,
               "AIMLAPI_KEY": ""}
        done = run_notebook(workdir / name, env=env, cwd=workdir, timeout=180,
                            allow_errors=True)
        assert watcher.requests == []
    assert errors(done) == []
    outputs = reply_outputs(done)
    assert outputs, "the notebook shows no reply"
    committed = reply_outputs(nbformat.read(NOTEBOOKS / name, as_version=4))
    assert outputs == committed  # the same replies as the committed outputs


def test_restart_and_run_all_twice_makes_no_request_the_second_time(workdir):
    (workdir / "nb_claude_replay.jsonl").unlink()
    with StandInServer(seed=5) as server:
        env = {"NB_CLAUDE_REPLAY": "auto", "NB_CLAUDE_BASE_URL": server.url,
               "AIMLAPI_KEY": DEMO_KEY}
        first = run_notebook(workdir / "reproducible-analysis.ipynb", env=env, cwd=workdir)
        made = len(server.requests)
        second = run_notebook(workdir / "reproducible-analysis.ipynb", env=env, cwd=workdir)
        assert made >= 3 and len(server.requests) == made
    assert errors(first) == errors(second) == []
    assert reply_outputs(first) == reply_outputs(second)
