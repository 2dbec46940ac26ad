"""Benchmarks of what showing a reply costs: display traffic of a streamed reply against
its final output, and making untrusted reply text safe against plain escaping.

`run()` returns rows of {name, value, baseline, ratio, target, ok, unit, note}.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from bench_spine import row  # noqa: E402

__all__ = ["run", "bench_display_traffic", "bench_safe_markdown", "reply_text"]

LINE = ("The *mean* of `revenue` is 4.2 & the median 1.0 <- skewed; see [docs](https://e.com) "
        "and $x<1$.\n")


def reply_text(size: int) -> str:
    paragraph = LINE * 8 + "\n"
    return (paragraph * (size // len(paragraph) + 1))[:size]


def _stream_through_view(size: int, chunks: int) -> tuple[int, int, int]:
    """(bytes of every display message, bytes of the final one, messages) for one reply."""
    from IPython.testing.globalipapp import get_ipython

    from nb_claude._render import InlineView
    from nb_claude._session import Step, Turn
    from nb_claude._stream import Reply

    ip = get_ipython()
    sizes: list[int] = []
    saved_types = ip.display_formatter.active_types
    ip.display_formatter.active_types = ip.display_formatter.format_types
    publisher = ip.display_pub

    def publish(data: dict[str, Any], metadata: Any = None, source: Any = None, *,
                transient: Any = None, update: bool = False, **kwargs: Any) -> None:
        content = {"data": data, "metadata": metadata or {}, "transient": transient or {}}
        sizes.append(len(json.dumps(content, ensure_ascii=False).encode()))

    publisher.publish = publish  # type: ignore[method-assign]
    try:
        text = reply_text(size)
        view = InlineView(10.0)
        view._terminal = False
        turn = Turn("Explain the data", [])
        reply = Reply(model="anthropic/claude-opus-4-8")
        turn.steps.append(Step(reply))
        view.start(turn)
        for event in range(1, chunks + 1):
            reply.text = text[:size * event // chunks]
            view.update(turn)
            time.sleep(0.002)
        reply.finish_reason = "end_turn"
        turn._freeze()
        view.finish(turn)
    finally:
        del publisher.publish
        ip.display_formatter.active_types = saved_types
    return sum(sizes), sizes[-1], len(sizes)


def bench_display_traffic(quick: bool = False) -> list[dict[str, Any]]:
    """Bytes a streamed reply sends to the front end against its final output."""
    sizes = (10_000, 100_000) if quick else (100_000, 1_000_000, 10_000_000)
    rows = []
    for size in sizes:
        chunks = 200 if quick else 1_000
        started = time.perf_counter()
        total, final, messages = _stream_through_view(size, chunks)
        elapsed = time.perf_counter() - started
        label = f"{size / 1e6:g} MB" if size >= 1_000_000 else f"{size // 1000} KB"
        rows.append(row(f"display traffic of a streamed {label} reply vs its final output",
                        total / 1e6, final / 1e6, target="<= 3x", ok=total <= 3 * final,
                        unit="MB",
                        note=f"{messages} display messages for {chunks} chunks in "
                             f"{elapsed:.1f} s, the real InlineView and IPython's display "
                             "publisher; baseline: the final output alone"))
    return rows


def bench_safe_markdown(quick: bool = False) -> list[dict[str, Any]]:
    """safe_markdown on a large reply against escaping the same text with str.replace."""
    from nb_claude._markdown import safe_markdown

    size = 1_000_000 if quick else 10_000_000
    text = reply_text(size)
    small = reply_text(size // 10)

    def best(fn: Any, value: str, repeat: int = 3) -> float:
        times = []
        for _ in range(repeat):
            gc.collect()
            started = time.perf_counter()
            fn(value)
            times.append(time.perf_counter() - started)
        return min(times)

    escape = lambda s: s.replace("&", "&amp;").replace("<", "&lt;")  # noqa: E731
    ours, baseline = best(safe_markdown, text), best(escape, text)
    tenth = best(safe_markdown, small)
    label = f"{size / 1e6:g} MB"
    return [
        row(f"safe_markdown of a {label} reply vs str.replace escaping (ms)", ours * 1000,
            baseline * 1000, target="<= 100x", ok=ours <= 100 * baseline, unit="ms",
            note="the reply mixes prose, inline code, math, links, `<` and `&` on every line"),
        row(f"safe_markdown time growth, {label} vs a tenth of it", ours / tenth, 10.0,
            target="<= 12x (linear)", ok=ours / tenth <= 12, unit="x",
            ratio=ours / tenth / 10),
    ]


BENCHMARKS = (bench_display_traffic, bench_safe_markdown)


def run(quick: bool = False) -> list[dict[str, Any]]:
    return [r for fn in BENCHMARKS for r in fn(quick=quick)]


if __name__ == "__main__":
    from run_all import table

    print(table(run(quick="--quick" in sys.argv)))
