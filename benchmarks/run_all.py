"""Run every benchmark and print one Markdown table.

    python benchmarks/run_all.py [--quick] [--json PATH]

Informational: the exit status is 0 even when a target is missed; the row's
`ok` column says so.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

# Modules with `run(quick=False) -> list[dict]`; missing ones are reported, not fatal.
MODULES = ("bench_spine", "bench_attachments", "bench_display", "bench_context",
           "bench_verify", "bench_batch", "bench_error_button")

_TARGET = re.compile(r"^\s*(<=|>=|<|>|==)?\s*([0-9.]+)\s*(x\b)?")


def judge(row: dict[str, Any]) -> bool | None:
    """The row's own verdict, else its value (or ratio, for an `x` target) against `target`."""
    if "ok" in row:
        return row["ok"]
    match = _TARGET.match(str(row.get("target") or ""))
    if not match:
        return None
    op, bound, on_ratio = match.group(1) or "==", float(match.group(2)), match.group(3)
    value = row.get("ratio") if on_ratio else row.get("value")
    if not isinstance(value, (int, float)):
        return None
    return {"<=": value <= bound, ">=": value >= bound, "<": value < bound, ">": value > bound,
            "==": value == bound}[op]


def _number(value: Any, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        magnitude = abs(value)
        text = f"{value:.3g}" if magnitude < 10 else f"{value:,.1f}" if magnitude < 1000 \
            else f"{value:,.0f}"
    else:
        text = f"{value:,}" if isinstance(value, int) else str(value)
    if not unit:
        return text
    return f"{text}{unit}" if unit in ("x", "/s") else f"{text} {unit}"


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table, notes as numbered footnotes under it."""
    lines = ["| benchmark | nb_claude | baseline | ratio | target | ok |",
             "|---|---:|---:|---:|---|:-:|"]
    notes: list[str] = []
    for row in rows:
        name = row["name"]
        if row.get("note"):
            notes.append(row["note"])
            name += f" [{len(notes)}]"
        ok = judge(row)
        mark = "–" if ok is None else "✓" if ok else "✗ missed"
        unit = row.get("unit", "")
        ratio = row.get("ratio")
        lines.append(f"| {name} | {_number(row.get('value'), unit)} | "
                     f"{_number(row.get('baseline'), unit)} | "
                     f"{'–' if ratio is None else f'{ratio:.2f}x'} | {row.get('target') or '–'} "
                     f"| {mark} |")
    if notes:
        lines.append("")
        lines.extend(f"{n}. {note}" for n, note in enumerate(notes, 1))
    return "\n".join(lines)


def _module_runs(name: str) -> list[tuple[str, Callable[..., list[dict[str, Any]]]]]:
    module = importlib.import_module(name)
    parts = getattr(module, "BENCHMARKS", None)
    if parts:
        return [(f"{name}.{fn.__name__}", fn) for fn in parts]
    return [(f"{name}.run", module.run)]


def run_all(quick: bool = False, modules: tuple[str, ...] = MODULES,
            progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Every row of every module; a module or benchmark that fails becomes a noted row."""
    rows: list[dict[str, Any]] = []
    for module in modules:
        try:
            runs = _module_runs(module)
        except ImportError as exc:
            rows.append({"name": module, "value": None, "baseline": None, "ratio": None,
                         "target": "", "ok": None, "note": f"skipped: {exc}"})
            continue
        for label, fn in runs:
            if progress is not None:
                progress(label)
            started = time.perf_counter()
            takes_quick = "quick" in inspect.signature(fn).parameters
            if quick and not takes_quick:
                rows.append({"name": label, "value": None, "baseline": None, "ratio": None,
                             "target": "", "ok": None, "note": "skipped: no quick variant"})
                continue
            try:
                result = fn(quick=quick) if takes_quick else fn()
            except Exception as exc:  # informational: one failure must not hide the rest
                result = [{"name": label, "value": None, "baseline": None, "ratio": None,
                           "target": "", "ok": False,
                           "note": f"failed: {type(exc).__name__}: {exc}"}]
            for row in result:
                row.setdefault("seconds", round(time.perf_counter() - started, 2))
            rows.extend(result)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check, don't measure")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = run_all(args.quick, progress=lambda label: print(f"running {label}…",
                                                             file=sys.stderr, flush=True))
    print(table(rows))
    print(f"\n_{len(rows)} rows in {time.perf_counter() - started:.0f} s, "
          f"Python {sys.version.split()[0]}_")
    if args.json:
        for row in rows:
            row["ok"] = judge(row)
        Path(args.json).write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n",
                                   encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
