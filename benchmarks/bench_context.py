"""What "Claude sees the notebook" costs: the recorder's overhead per executed cell, and
building the context block from 1,000 recorded cells.

`run()` returns rows of {name, value, baseline, ratio, target, ok, unit, note}.
"""

from __future__ import annotations

import gc
import io
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from bench_spine import row  # noqa: E402

__all__ = ["run", "bench_cell_overhead", "bench_context_build", "realistic_cells"]

OVERHEAD_TARGET_MS = 0.2
BUILD_TARGET_MS = 5.0


def _shell() -> Any:
    from IPython.testing.globalipapp import get_ipython

    return get_ipython()


def _run_cells(shell: Any, sources: list[str]) -> float:
    """Seconds (wall clock) to run these cells as a front end would, their output discarded."""
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = io.StringIO()
    try:
        gc.collect()
        start = time.perf_counter()
        for source in sources:
            shell.run_cell(source, store_history=True)
        return time.perf_counter() - start
    finally:
        sys.stdout, sys.stderr = saved


def bench_cell_overhead(quick: bool = False) -> list[dict[str, Any]]:
    """Time added to each executed cell by a registered ContextRecorder: batches of trivial
    cells with and without it, in turns, best batch of each."""
    from nb_claude._capture import ContextRecorder

    shell = _shell()
    cells, rounds = (100, 2) if quick else (1_000, 7)
    rows = []
    for label, source in (("trivial cell `x = 1`", "x = 1"),
                          ("cell printing one line", "print('x')")):
        sources = [source] * cells
        _run_cells(shell, sources[:50])  # warm caches
        plain: list[float] = []
        recorded: list[float] = []
        for _ in range(rounds):
            plain.append(_run_cells(shell, sources))
            recorder = ContextRecorder(shell)
            recorder.register()
            try:
                recorded.append(_run_cells(shell, sources))
            finally:
                recorder.unregister()
        base_ms = min(plain) / cells * 1000
        with_ms = min(recorded) / cells * 1000
        added = max(0.0, with_ms - base_ms)
        # The median of paired differences is steadier than the difference of minima.
        paired = statistics.median(r - p for r, p in zip(recorded, plain, strict=True))
        rows.append(row(f"context recorder: time added per {label} (ms)", round(added, 4),
                        round(base_ms, 4), target=f"< {OVERHEAD_TARGET_MS}",
                        ok=added < OVERHEAD_TARGET_MS, unit="ms",
                        note=(f"{cells:,} cells through shell.run_cell, {rounds} interleaved "
                              f"rounds, best of each; baseline = the cell without the "
                              f"recorder; median paired difference "
                              f"{max(0.0, paired) / cells * 1000:.4f} ms")))
    return rows


def realistic_cells(count: int) -> list[str]:
    """Cells as an analysis makes them: assignments, prints, values, a warning, an error."""
    kinds = [
        "data = list(range({i} % 50 + 10))\ntotal = sum(data)",
        "print(f'step {i}: total =', sum(range({i} % 50)))",
        "{{'cell': {i}, 'mean': {i} / 3, 'tags': ['a', 'b']}}",
        "import sys\nprint('warning: {i} rows dropped', file=sys.stderr)",
        "for k in range(5):\n    print('row', k, 'of cell {i}', 'x' * 40)",
        "def check_{i}(x):\n    raise ValueError(f'bad value {{x}}')\ncheck_{i}({i})",
    ]
    return [kinds[i % len(kinds)].format(i=i) for i in range(count)]


def _best(fn: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_context_build(quick: bool = False) -> list[dict[str, Any]]:
    """Building the context block from 1,000 recorded cells: `--cells all` within the
    default budget (what a prompt pays), and with no budget (every cell written)."""
    from nb_claude._capture import ContextRecorder, out_text
    from nb_claude._context import build

    shell = _shell()
    cells = 100 if quick else 1_000
    recorder = ContextRecorder(shell, max_cells=cells)
    recorder.register()
    try:
        _run_cells(shell, realistic_cells(cells))
    finally:
        recorder.unregister()
    records = recorder.select("all")
    assert len(records) == cells, len(records)

    def out(n: int) -> str | None:
        return out_text(shell, n)

    def in_budget() -> Any:
        return build(records, budget_tokens=6_000, out_text=out)

    def unbounded() -> Any:
        return build(records, budget_tokens=10**9, out_text=out)

    repeat = 3 if quick else 20
    t_budget = _best(in_budget, repeat)
    t_all = _best(unbounded, max(1, repeat // 4))
    context, everything = in_budget(), unbounded()
    per_cell_ms = t_all / cells * 1000
    return [
        row(f"context build: {cells:,} cells, --cells all, 6,000-token budget (ms)",
            round(t_budget * 1000, 3), round(per_cell_ms, 4), target=f"< {BUILD_TARGET_MS}",
            ok=t_budget * 1000 < BUILD_TARGET_MS, unit="ms",
            note=(f"{context.summary}; baseline = time to write one cell "
                  "(the unbounded build / cells)")),
        row(f"context build: {cells:,} cells, no budget (ms), every cell written",
            round(t_all * 1000, 3), round(per_cell_ms, 4), target="-", ok=None, unit="ms",
            note=f"{everything.summary}; informational"),
    ]


BENCHMARKS = (bench_cell_overhead, bench_context_build)


def run(quick: bool = False) -> list[dict[str, Any]]:
    return [r for fn in BENCHMARKS for r in fn(quick=quick)]


if __name__ == "__main__":
    from run_all import table

    print(table(run(quick="--quick" in sys.argv)))
