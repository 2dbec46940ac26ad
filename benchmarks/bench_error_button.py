"""What the "Ask Claude" button costs a failing cell: the time a cell that raises takes in a
real kernel with `%load_ext nb_claude` (the button shown under each traceback) against the
same cell with the extension not loaded; in the steady state and for the first failing cell.

Timed inside the kernel (`shell.run_cell` of a failing cell, the traceback and the button
sent to the front end as usual), so ZeroMQ round trips do not blur the difference.
`run()` returns rows of {name, value, baseline, ratio, target, ok, unit, note}.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from bench_spine import row  # noqa: E402

__all__ = ["run", "bench_failing_cell", "bench_first_failing_cell"]

ADDED_TARGET_MS = 2.0
FAILING = "1 / 0"  # the cheapest traceback: the added time is the largest share of it

# Defined in the kernel: ms per failing cell, over n cells run by the shell as cells are;
# and per-cell pairs, each cell run once in each of two states (what `switch(state)` sets).
_TIMER = """
import json as _nbc_json, time as _nbc_time
def _nbc_failing(n, code):
    shell = get_ipython()
    start = _nbc_time.perf_counter()
    for _ in range(n):
        shell.run_cell(code, store_history=True)
    return (_nbc_time.perf_counter() - start) / n * 1000
def _nbc_pairs(n, code, switch):
    shell, times = get_ipython(), ([], [])
    for _ in range(n):
        for state in (True, False):
            switch(state)
            start = _nbc_time.perf_counter()
            shell.run_cell(code, store_history=True)
            times[not state].append((_nbc_time.perf_counter() - start) * 1000)
    switch(True)
    print(_nbc_json.dumps(times))
def _nbc_loaded(state):
    import nb_claude
    (nb_claude.load_ipython_extension if state else nb_claude.unload_ipython_extension)(
        get_ipython())
def _nbc_button(state):
    get_ipython().magics_manager.registry["ClaudeMagics"].error_button = state
def _nbc_hook(n):
    from IPython.core.interactiveshell import ExecutionInfo, ExecutionResult
    hook = get_ipython().magics_manager.registry["ClaudeMagics"].errors
    result = ExecutionResult(ExecutionInfo("1 / 0", True, False, True, None))
    result.execution_count, result.error_in_exec = 1, ZeroDivisionError("division by zero")
    times = []
    for _ in range(n):
        start = _nbc_time.perf_counter()
        hook._post_run_cell(result)
        times.append((_nbc_time.perf_counter() - start) * 1000)
    print(_nbc_json.dumps(times))
"""


class _Kernel:
    """A fresh ipykernel with its own IPython and Jupyter state."""

    def __init__(self, tmp: Path) -> None:
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_client.manager import KernelManager

        env = dict(os.environ)
        for var, sub in (("IPYTHONDIR", "ipython"), ("MPLCONFIGDIR", "matplotlib"),
                         ("JUPYTER_CONFIG_DIR", "jc"), ("JUPYTER_DATA_DIR", "jd"),
                         ("JUPYTER_RUNTIME_DIR", "jr")):
            (tmp / sub).mkdir(parents=True, exist_ok=True)
            env[var] = str(tmp / sub)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        self.km = KernelManager(kernel_name="python3", connection_file=str(tmp / "k.json"),
                                kernel_spec_manager=KernelSpecManager(kernel_dirs=[]))
        self.km.start_kernel(env=env, cwd=str(tmp))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def run(self, code: str) -> str:
        """Run `code`; what it printed (errors it raises inside nested cells are expected)."""
        printed: list[str] = []

        def hook(msg: dict[str, Any]) -> None:
            if msg["header"]["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
                printed.append(msg["content"]["text"])

        reply = self.kc.execute_interactive(code, timeout=300, output_hook=hook)
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"{code[:40]!r} failed: {reply['content'].get('evalue')}")
        return "".join(printed)

    def failing_ms(self, n: int) -> float:
        return float(self.run(f"print(_nbc_failing({n}, {FAILING!r}))").split()[-1])

    def stop(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@contextmanager
def _kernel() -> Iterator[_Kernel]:
    with tempfile.TemporaryDirectory(prefix="nbc-bench-") as tmp:
        kernel = _Kernel(Path(tmp))
        try:
            kernel.run(_TIMER)
            yield kernel
        finally:
            kernel.stop()


def _paired(kernel: _Kernel, cells: int, switch: str) -> tuple[float, float, float]:
    """(median ms with, median ms without, median of the per-cell differences)."""
    on, off = json.loads(kernel.run(f"_nbc_pairs({cells}, {FAILING!r}, {switch})")
                         .strip().splitlines()[-1])
    diffs = [a - b for a, b in zip(on, off, strict=True)]
    return statistics.median(on), statistics.median(off), statistics.median(diffs)


def bench_failing_cell(quick: bool = False) -> list[dict[str, Any]]:
    """Steady state: each failing cell run twice in a row, once with the extension loaded and
    once not (then once with the button on and once off); the median per-cell difference, which
    a busy machine disturbs far less than a difference of batch times."""
    cells = 20 if quick else 300
    with _kernel() as kernel:
        kernel.run("%load_ext nb_claude")
        kernel.run("import time; time.sleep(1)")  # the background import has finished
        kernel.failing_ms(10)  # every first time (widgets, tracebacks) out of the way
        loaded, plain, added = _paired(kernel, cells, "_nbc_loaded")
        on, off, button = _paired(kernel, cells, "_nbc_button")
        shown = kernel.run("print(get_ipython().magics_manager.registry['ClaudeMagics']"
                           ".errors.shown)")
        hook = json.loads(kernel.run(f"_nbc_hook({cells})").strip().splitlines()[-1])
    assert int(shown.split()[-1]) >= cells, "no button was shown"
    how = (f"`{FAILING}` run by shell.run_cell in a real kernel, {cells} cells, each run "
           "twice in a row, once in each state; value = median per-cell difference")
    return [
        row("failing cell, extension loaded (Ask Claude button shown) vs not: ms added",
            round(max(0.0, added), 3), round(plain, 3), ratio=loaded / plain,
            target=f"< {ADDED_TARGET_MS} ms", ok=added < ADDED_TARGET_MS, unit="ms",
            note=f"{how}; baseline = median time of the cell with the extension not loaded"),
        row("failing cell, extension loaded: the button alone (error_button on vs off), ms",
            round(max(0.0, button), 3), round(off, 3), ratio=on / off, target="-", ok=None,
            unit="ms", note=f"{how}; informational: the rest is the context recorder"),
        row("the post-run hook alone: kernel main-thread ms per failing cell (button shown)",
            round(statistics.median(hook), 3), round(off, 3),
            ratio=statistics.median(hook) / off, target="-", ok=None, unit="ms",
            note=(f"median of {cells} calls of the hook after a ZeroDivisionError: two widget "
                  "models opened and one display sent; baseline = median time of the failing "
                  "cell with the button off; informational")),
    ]


def bench_first_failing_cell(quick: bool = False) -> list[dict[str, Any]]:
    """The first failing cell of a fresh kernel, a second after `%load_ext nb_claude`, against
    the first failing cell of a fresh kernel without it (median of fresh kernel pairs)."""
    pairs = 1 if quick else 3
    plain: list[float] = []
    loaded: list[float] = []
    for _ in range(pairs):
        with _kernel() as kernel:
            kernel.run("import time; time.sleep(1)")
            plain.append(kernel.failing_ms(1))
        with _kernel() as kernel:
            kernel.run("%load_ext nb_claude")
            kernel.run("import time; time.sleep(1)")  # a user reads, types, runs a cell
            loaded.append(kernel.failing_ms(1))
    base, first = statistics.median(plain), statistics.median(loaded)
    return [row("first failing cell after %load_ext nb_claude: ms added",
                round(max(0.0, first - base), 1),
                round(base, 1), ratio=first / base, target="-", ok=None, unit="ms",
                note=(f"median of {pairs} pairs of fresh kernels; baseline = the first failing "
                      "cell of a kernel without the extension (IPython's own first traceback); "
                      "ipywidgets is imported in the background after %load_ext"))]


BENCHMARKS = (bench_failing_cell, bench_first_failing_cell)


def run(quick: bool = False) -> list[dict[str, Any]]:
    return [r for fn in BENCHMARKS for r in fn(quick=quick)]


if __name__ == "__main__":
    from run_all import table

    print(table(run(quick="--quick" in sys.argv)))
