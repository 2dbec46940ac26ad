"""Re-record the notebooks' replay file against the offline stand-in server.

    python tests/record_notebooks.py [NOTEBOOK ...]

Runs each notebook in notebooks/ in a fresh kernel with the stand-in as the
API (no key, no network), records every reply into
notebooks/nb_claude_replay.jsonl, and saves the notebook with its outputs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from kernel_harness import run_notebook

from nb_claude.testing import DEMO_KEY, StandInServer

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
REPLAY = NOTEBOOKS / "nb_claude_replay.jsonl"


def record(paths: list[Path]) -> None:
    REPLAY.unlink(missing_ok=True)
    with StandInServer(seed=0) as server:
        env = {"NB_CLAUDE_BASE_URL": server.url, "AIMLAPI_KEY": DEMO_KEY,
               "NB_CLAUDE_REPLAY": "record"}
        for path in paths:
            done = run_notebook(path, env=env, cwd=NOTEBOOKS, timeout=180)
            nbformat.write(done, path)
            sys.stdout.write(f"recorded {path.name}: {len(server.requests)} requests so far\n")


if __name__ == "__main__":
    chosen = [Path(p).resolve() for p in sys.argv[1:]] or sorted(NOTEBOOKS.glob("*.ipynb"))
    record(chosen)
