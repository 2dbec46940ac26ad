"""The benchmarks still run: each measurement at a tiny size, and the combined table.

Smoke tests only; no timing is asserted.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

bench_spine = importlib.import_module("bench_spine")
run_all = importlib.import_module("run_all")

ROW_KEYS = {"name", "value", "baseline", "ratio", "target"}


def check_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every row has the shared shape; measured rows hold finite, positive numbers."""
    assert rows
    measured = []
    for row in rows:
        assert row.keys() >= ROW_KEYS, row
        assert isinstance(row["name"], str) and row["name"]
        if row["value"] is None:
            assert row["note"].startswith("skipped"), row
            continue
        for key in ("value", "baseline", "ratio"):
            assert isinstance(row[key], (int, float)) and math.isfinite(row[key]), (key, row)
        assert row["baseline"] > 0 and row["value"] >= 0
        # comparison columns (another library, target "-") are measured but not judged
        assert row["ok"] in (True, False) or (row["ok"] is None and row["target"] == "-"), row
        measured.append(row)
    json.dumps(rows)  # --json must be able to write them
    return measured


def test_service_stream_is_what_the_client_reads():
    from nb_claude._sse import iter_events
    from nb_claude._stream import Reply, accumulate, events_from_sse

    data = bench_spine.service_stream(50)
    reads = bench_spine._reads(data)
    assert b"".join(reads) == data and len(reads) >= 2
    assert all(len(r) <= 4096 for r in reads)
    reply = Reply()
    for event in events_from_sse(iter_events(reads)):
        accumulate(event, reply)
    assert reply.done and reply.id == "msg_018vBenchmarkStream"
    assert reply.usage.output_tokens == 50 and reply.usage.cost_usd == pytest.approx(0.00124)
    assert len(reply.text.split()) >= 50


def test_load_ext():
    rows = check_rows(bench_spine.bench_load_ext(quick=True))
    assert rows[0]["unit"] == "ms" and rows[0]["baseline"] < 1000


def test_stream_cpu():
    rows = check_rows(bench_spine.bench_stream_cpu(quick=True))
    assert len(rows) >= 2 and all(r["unit"] == "µs" for r in rows)


def test_first_byte():
    (row,) = check_rows(bench_spine.bench_first_byte(quick=True))
    assert row["unit"] == "ms"


def test_display_rate(_shell):
    (row,) = check_rows(bench_spine.bench_display_rate(quick=True))
    assert row["unit"] == "/s"
    assert _shell.display_formatter.active_types == _shell.display_formatter.format_types


@pytest.mark.kernel
def test_saved_outputs():
    (row,) = check_rows(bench_spine.bench_saved_outputs(quick=True))
    assert row["value"] == 1 and row["baseline"] > 1


@pytest.mark.kernel
def test_error_button_overhead():
    module = importlib.import_module("bench_error_button")
    assert "bench_error_button" in run_all.MODULES
    rows = check_rows(module.run(quick=True))
    assert [r["unit"] for r in rows] == ["ms"] * 4
    assert rows[0]["target"] == "< 2.0 ms" and rows[0]["ok"] in (True, False)
    assert all(r["target"] == "-" for r in rows[1:])


def test_long_session():
    rows = check_rows(bench_spine.bench_long_session(quick=True))
    assert [r["unit"] for r in rows] == ["x", "ms", "MB"]


def test_attachments_run_on_a_tiny_frame_and_figure(monkeypatch):
    module = pytest.importorskip("bench_attachments")
    from matplotlib.figure import Figure

    full_frame, rows_n = module._frame, 2_000

    def small_figure() -> Figure:
        fig = Figure(figsize=(4, 3), dpi=100)
        fig.subplots().plot([1, 3, 2])
        return fig

    monkeypatch.setattr(module, "ROWS", rows_n)
    monkeypatch.setattr(module, "_frame", lambda n=rows_n: full_frame(n))
    monkeypatch.setattr(module, "_figure", small_figure)
    rows = module.run()
    assert [r["target"] for r in rows] == [">= 50x faster", ">= 1000x smaller", "< 200 ms",
                                           "< 200 ms"]
    for row in rows:
        assert row.keys() >= ROW_KEYS, row
        assert isinstance(row["value"], (int, float)) and math.isfinite(row["value"])
        assert row["value"] >= 0
    summary_time, summary_size, encode, cpu = rows
    assert f"{rows_n:,}×20" in summary_time["name"]
    assert summary_time["baseline"] > 0 and summary_time["ratio"] > 0
    # a 2,000-row CSV is bigger than the summary, which stays within its budget
    assert 0 < summary_size["value"] <= 6000 < summary_size["baseline"]
    assert summary_size["ratio"] == round(summary_size["baseline"] / summary_size["value"], 1)
    size = re.search(r"-> PNG (\d+)×(\d+),", encode["name"])
    assert size is not None and int(size[1]) * 3 == int(size[2]) * 4  # the 4:3 figure sent
    assert encode["baseline"] > 0 and encode["ratio"] > 0
    assert cpu["baseline"] is None and cpu["ratio"] is None
    assert [run_all.judge(r) for r in rows][1:2] == [False]  # 2,000 rows is no 1000x win
    json.dumps(rows)


def test_table_and_json(tmp_path):
    rows = [
        {"name": "a", "value": 2.0, "baseline": 1.0, "ratio": 2.0, "target": "<= 1.5x"},
        {"name": "b", "value": 120.0, "baseline": 900.0, "ratio": 7.5, "target": "< 200 ms"},
        {"name": "c", "value": None, "baseline": None, "ratio": None, "target": "",
         "ok": None, "note": "skipped: not installed"},
    ]
    assert [run_all.judge(r) for r in rows] == [False, True, None]
    text = run_all.table(rows)
    lines = text.splitlines()
    assert lines[0].startswith("| benchmark | nb_claude | baseline | ratio | target | ok |")
    assert "✗ missed" in lines[2] and "✓" in lines[3]
    assert lines[-1] == "1. skipped: not installed"


def test_run_all_command(tmp_path):
    """The one command, quick and limited to the cheap benchmarks, writes table and JSON."""
    out = tmp_path / "rows.json"
    code = ("import sys, run_all, bench_spine\n"
            "bench_spine.BENCHMARKS = (bench_spine.bench_stream_cpu, "
            "bench_spine.bench_long_session)\n"
            "sys.exit(run_all.main(sys.argv[1:]))\n")
    result = subprocess.run([sys.executable, "-c", code, "--quick", "--json", str(out)],
                            cwd=BENCH, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(BENCH)})
    assert result.returncode == 0, result.stderr
    assert "| benchmark | nb_claude | baseline | ratio | target | ok |" in result.stdout
    rows = json.loads(out.read_text())
    assert any(r["name"].startswith("stream CPU per chunk") for r in rows)
    assert all("ok" in r for r in rows)


def test_the_standin_command_adds_latency_to_every_request():
    import httpx

    bench_batch = importlib.import_module("bench_batch")
    body = {"model": "anthropic/claude-opus-4-8", "max_tokens": 16,
            "messages": [{"role": "user", "content": "Hi"}]}
    headers = {"Authorization": "Bearer bench-key-not-secret"}
    seconds = {}
    for latency in (0.0, 0.4):
        with bench_batch.standin_process(latency) as url, httpx.Client(trust_env=False) as http:
            http.get(url + "/models", headers=headers)  # connected, not counted
            start = time.perf_counter()
            response = http.post(url + "/chat/completions", json=body, headers=headers)
            seconds[latency] = time.perf_counter() - start
            assert response.status_code == 200 and response.json()["choices"]
    assert seconds[0.4] >= 0.4 > seconds[0.0]
    bad = subprocess.run([sys.executable, "-m", "nb_claude.testing", "--latency", "soon"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--latency: expected seconds between 0 and 600, got 'soon'" \
        in bad.stderr.splitlines()[-1]


def test_batch_benchmarks_run_at_a_tiny_size():
    bench_batch = importlib.import_module("bench_batch")
    rows = check_rows(bench_batch.run(quick=True))
    names = [r["name"] for r in rows]
    assert names[0].startswith("batch of 64 at concurrency 16: wall time vs the ideal")
    assert any("AsyncOpenAI" in n for n in names)  # openai is in the test extra
    reruns = [r for r in rows if r["name"].startswith("re-running")]
    assert len(reruns) == 2 and all(r["ok"] for r in reruns)  # tiny files replay at once
    memory = rows[-1]
    assert memory["name"].startswith("memory of 2,000 finished short answers")
    assert 0 < memory["value"] < 100 and memory["ok"]
    assert "bench_batch" in run_all.MODULES
