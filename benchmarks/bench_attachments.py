"""Attachment costs: a 1M × 20 DataFrame summary against `to_csv`, and encoding a large figure.

Run `python benchmarks/bench_attachments.py` for a table; `run()` returns the rows so a
combined benchmark can import them.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

ROWS = 1_000_000


def _best(fn: Callable[[], Any], repeat: int, clock: Callable[[], float] = time.perf_counter) -> tuple[float, Any]:
    """Fastest time in seconds over `repeat` calls (wall clock unless told), and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = clock()
        result = fn()
        best = min(best, clock() - start)
    return best, result


def _frame(n: int = ROWS) -> Any:
    """Twenty columns of the kinds data scientists hold: floats, ints, text, categories, times."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    data: dict[str, Any] = {f"x{i}": rng.normal(size=n) for i in range(14)}
    data["count"] = rng.integers(0, 1000, n)
    data["city"] = rng.choice(["Paris", "Lyon", "Nice", "Lille"], n)
    data["segment"] = pd.Categorical(rng.choice(["a", "b", "c"], n))
    data["when"] = pd.date_range("2024-01-01", periods=n, freq="s", tz="UTC")
    data["score"] = pd.array(rng.integers(0, 10, n), dtype="Int64")
    data["id"] = [f"user-{i:07d}" for i in range(n)]
    return pd.DataFrame(data)


def _figure() -> Any:
    """A typical exploratory 2×2 figure at 40 × 30 inches and 100 dpi: 4000 × 3000 px natively."""
    import numpy as np
    from matplotlib.figure import Figure

    rng = np.random.default_rng(1)
    fig = Figure(figsize=(40, 30), dpi=100)
    axes = fig.subplots(2, 2).ravel()
    x = rng.normal(size=2000)
    axes[0].scatter(x, 2 * x + rng.normal(size=2000), s=6)
    axes[0].set(title="y against x", xlabel="x", ylabel="y")
    axes[1].plot(np.cumsum(rng.normal(size=2000)))
    axes[2].hist(rng.normal(size=10_000), bins=50)
    axes[3].bar(["a", "b", "c", "d"], [3, 7, 2, 5])
    return fig


def run() -> list[dict[str, Any]]:
    """Measure and return rows of {name, value, baseline, ratio, target}."""
    import matplotlib

    matplotlib.use("Agg")
    from nb_claude._content import attachment_from, image_attachment, summarize_dataframe

    rows: list[dict[str, Any]] = []
    df = _frame()
    summarize_dataframe(df.iloc[:1000])  # warm imports and caches
    t_summary, summary = _best(lambda: summarize_dataframe(df, name="df"), repeat=5)
    t_csv, csv = _best(df.to_csv, repeat=1)
    rows.append({
        "name": f"DataFrame {ROWS:,}×20 summary time (ms) vs to_csv",
        "value": round(t_summary * 1000, 1),
        "baseline": round(t_csv * 1000, 1),
        "ratio": round(t_csv / t_summary, 1),
        "target": ">= 50x faster",
    })
    rows.append({
        "name": f"DataFrame {ROWS:,}×20 summary size (chars) vs to_csv",
        "value": len(summary),
        "baseline": len(csv),
        "ratio": round(len(csv) / len(summary), 1),
        "target": ">= 1000x smaller",
    })
    del csv

    fig = _figure()
    attachment_from(fig, name="warm", max_image_edge=200)
    t_fig, att = _best(lambda: attachment_from(fig, name="fig"), repeat=5)

    def native_then_resize() -> Any:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=fig.dpi)
        return image_attachment(buf.getvalue(), name="fig")

    t_naive, _ = _best(native_then_resize, repeat=1)
    cpu_fig, _ = _best(lambda: attachment_from(fig, name="fig"), repeat=5, clock=time.process_time)
    rows.append({
        "name": f"Figure 4000×3000 px encode (ms) -> PNG {att.width}×{att.height}, vs render+resize",
        "value": round(t_fig * 1000, 1),
        "baseline": round(t_naive * 1000, 1),
        "ratio": round(t_naive / t_fig, 1),
        "target": "< 200 ms",
    })
    rows.append({  # CPU time is what a busy machine cannot inflate
        "name": "Figure 4000×3000 px encode, CPU time (ms)",
        "value": round(cpu_fig * 1000, 1),
        "baseline": None,
        "ratio": None,
        "target": "< 200 ms",
    })
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    headers = ["name", "value", "baseline", "ratio", "target"]
    cells = [[str(row[h]) for h in headers] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)) for cell in cells]
    return "\n".join(lines)


if __name__ == "__main__":
    print(_table(run()))
