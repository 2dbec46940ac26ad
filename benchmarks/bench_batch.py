"""Claude over many items: `nb_claude.map` against the ideal and against `openai.AsyncOpenAI`
with a semaphore, on the same stand-in with 200 ms added to every request; memory of
100,000 finished short answers; re-running a finished batch from its replay file.

The stand-in serves from its own process, so the CPU figures are the client's alone
(`time.process_time` of this process: every thread of the client, no server).
`run()` returns rows of {name, value, baseline, ratio, target, ok, unit, note}.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from bench_spine import BENCH_KEY, _settings, row, skipped, standin_process  # noqa: E402

__all__ = ["run", "bench_batch_speed", "bench_batch_memory", "standin_process", "items",
           "TEMPLATE"]

LATENCY = 0.2  # seconds the stand-in adds to every request
CONCURRENCY = 16
TEMPLATE = "Classify the sentiment of this review as positive, neutral or negative: {}"
WALL_TARGET = 1.15  # x the ideal
OPENAI_TARGET = 1.1  # x AsyncOpenAI's wall time
CPU_TARGET_MS = 1.0  # client CPU per item
MEMORY_TARGET_MB = 100.0
RERUN_TARGET_S = 2.0
DEAD_URL = "http://127.0.0.1:9/v1"  # nothing listens: a request sent there fails at once


def items(count: int) -> list[str]:
    """Short reviews, each different, so every item is its own request and replay entry."""
    moods = ("Loved it, works as described", "Arrived late and the box was crushed",
             "It is fine, nothing special", "Stopped working after a week",
             "Great value for the price", "The colour is not what the photo shows")
    return [f"#{i}: {moods[i % len(moods)]}." for i in range(count)]


def _session(url: str, replay_path: Path, *, mode: str = "auto", transport: Any = None) -> Any:
    from nb_claude._config import Settings
    from nb_claude._session import Session

    config = Settings(base_url=url, replay_mode=mode, replay_path=str(replay_path),
                      context="none")
    return Session("bench-batch", config=config, transport=transport)


def _map(session: Any, reviews: list[str]) -> tuple[Any, float, float]:
    """(result, wall seconds, CPU seconds) of one `map` over `reviews`, no progress shown."""
    from nb_claude._batch_view import NullView

    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    result = session.map(TEMPLATE, reviews, concurrency=CONCURRENCY, confirm=True,
                         view=NullView())
    return result, time.perf_counter() - wall, time.process_time() - cpu


def _checked(result: Any, count: int, *, replayed: int | None = None) -> None:
    errors = [e for e in result["error"] if e]
    if len(result) != count or errors:
        raise RuntimeError(f"{len(errors)} of {len(result)} items failed, e.g. {errors[:1]}")
    if replayed is not None and result.attrs["nb_claude"]["replayed"] != replayed:
        raise RuntimeError(f"{result.attrs['nb_claude']['replayed']} replayed, not {replayed}")


def _in_own_loop(main: Any) -> Any:
    """asyncio.run(main()), in a thread of its own when this thread already runs a loop (as
    under pytest after the browser tests)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(main())).result()


def _openai_run(url: str, session: Any, reviews: list[str]) -> tuple[float, float]:
    """(wall, CPU) of `AsyncOpenAI` + `asyncio.Semaphore(16)` sending the same requests."""
    import openai

    options = session.options(stream=False)

    async def main() -> int:
        # The SDK's own HTTP client and defaults (retries included); no proxy for 127.0.0.1.
        client = openai.AsyncOpenAI(api_key=BENCH_KEY, base_url=url,
                                    http_client=openai.DefaultAsyncHttpxClient(trust_env=False))
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(review: str) -> str:
            async with gate:
                response = await client.chat.completions.create(
                    model=options.model, max_tokens=options.max_tokens,
                    messages=[{"role": "user", "content": TEMPLATE.format(review)}])
                return response.choices[0].message.content or ""

        answers = await asyncio.gather(*(one(r) for r in reviews))
        await client.close()
        return sum(1 for a in answers if a)

    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    answered = _in_own_loop(main)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if answered != len(reviews):
        raise RuntimeError(f"AsyncOpenAI got {answered} answers for {len(reviews)} requests")
    return wall, cpu


def bench_batch_speed(quick: bool = False) -> list[dict[str, Any]]:
    """1,000 items at concurrency 16 against a 200 ms stand-in: wall time against the ideal
    and against AsyncOpenAI, client CPU per item, and the re-run from the replay file."""
    from nb_claude import _exchange

    count, latency = (64, 0.05) if quick else (1_000, LATENCY)
    reviews = items(count)
    ideal = count * latency / CONCURRENCY
    try:
        import openai
    except ImportError:
        openai_missing, openai_version = True, ""
    else:
        openai_missing, openai_version = False, openai.__version__
    with tempfile.TemporaryDirectory(prefix="nbc-bench-batch-") as tmp, \
            standin_process(latency) as url, _settings(replay_mode="auto"):
        warm = _session(url, Path(tmp) / "warm.jsonl", mode="off")
        _checked(_map(warm, items(CONCURRENCY * 2))[0], CONCURRENCY * 2)  # imports, sockets
        if not openai_missing:
            _openai_run(url, warm, items(CONCURRENCY * 2))
        replay_path = Path(tmp) / "replay.jsonl"
        session = _session(url, replay_path)
        result, wall, cpu = _map(session, reviews)
        _checked(result, count, replayed=0)
        base_wall = base_cpu = None
        if not openai_missing:
            base_wall, base_cpu = _openai_run(url, session, reviews)
        unrecorded = _session(url, Path(tmp) / "off.jsonl", mode="off")
        plain, _, plain_cpu = _map(unrecorded, reviews)
        _checked(plain, count)
        # The same batch again: in this kernel (the parsed file reused), then as a
        # restarted kernel reads it; nothing can reach a server.
        again = _session(DEAD_URL, replay_path)
        rerun, rerun_wall, _ = _map(again, reviews)
        _checked(rerun, count, replayed=count)
        _exchange._replay_files.pop(os.path.abspath(replay_path), None)
        cold = _session(DEAD_URL, replay_path)
        rerun_cold, cold_wall, _ = _map(cold, reviews)
        _checked(rerun_cold, count, replayed=count)
        size_mb = replay_path.stat().st_size / 1e6
    setup = (f"{count:,} items, concurrency {CONCURRENCY}, stand-in in its own process adding "
             f"{latency * 1000:.0f} ms a request, non-streamed replies, every answer recorded "
             f"in the replay file as it arrives")
    rows = [row(f"batch of {count:,} at concurrency {CONCURRENCY}: wall time vs the ideal "
                f"({count:,} x {latency:g} s / {CONCURRENCY})", wall, ideal,
                target=f"<= {WALL_TARGET}x", ok=wall / ideal <= WALL_TARGET, unit="s",
                note=setup)]
    cpu_ms = cpu / count * 1000
    if openai_missing or base_wall is None or base_cpu is None:
        rows.append(skipped("batch wall time vs AsyncOpenAI + Semaphore(16)",
                            "skipped: the openai package is not installed"))
        rows.append(row("batch: client CPU per item", cpu_ms, CPU_TARGET_MS,
                        target=f"< {CPU_TARGET_MS} ms", ok=cpu_ms < CPU_TARGET_MS, unit="ms"))
    else:
        base_ms = base_cpu / count * 1000
        rows.append(row(f"batch of {count:,}: wall time vs AsyncOpenAI + Semaphore("
                        f"{CONCURRENCY}), same server", wall, base_wall,
                        target=f"<= {OPENAI_TARGET}x", ok=wall / base_wall <= OPENAI_TARGET,
                        unit="s", note=f"openai {openai_version}: AsyncOpenAI with its default "
                                       "HTTP client, the same prompts, model and max_tokens; "
                                       "it records nothing"))
        rows.append(row("batch: client CPU per item vs AsyncOpenAI's", cpu_ms, base_ms,
                        target=f"< {CPU_TARGET_MS} ms and < baseline",
                        ok=cpu_ms < CPU_TARGET_MS and cpu_ms < base_ms, unit="ms",
                        note="process CPU time of the benchmark process (all its threads; "
                             "the stand-in runs in another process) over the whole run, "
                             "divided by the items"))
    plain_ms = plain_cpu / count * 1000
    rows.append(row("batch: client CPU per item with replay off (nothing recorded)", plain_ms,
                    cpu_ms, target=f"< {CPU_TARGET_MS} ms", ok=plain_ms < CPU_TARGET_MS,
                    unit="ms", note="baseline = the same batch recording every answer; the "
                                    "difference is what writing the replay file costs"))
    rows.append(row(f"re-running the finished {count:,}-item batch from its replay file",
                    rerun_wall, wall, target=f"< {RERUN_TARGET_S} s",
                    ok=rerun_wall < RERUN_TARGET_S, unit="s",
                    note=f"baseline = the live run; the file ({size_mb:.1f} MB) already parsed "
                         f"by this process, as when a cell is run again; the session points at "
                         f"a closed port, so every answer came from the file"))
    rows.append(row("re-running it after a kernel restart (the file read from disk)",
                    cold_wall, wall, target=f"< {RERUN_TARGET_S} s",
                    ok=cold_wall < RERUN_TARGET_S, unit="s"))
    return rows


def _answer_transport() -> Any:
    """An in-process, zero-latency service: every request answered with one short label."""
    import httpx

    payload = json.dumps({
        "id": "msg_bench", "object": "chat.completion", "model": "claude-opus-4-8",
        "created": 1776417936,
        "choices": [{"index": 0, "finish_reason": "end_turn",
                     "message": {"role": "assistant", "content": "negative"}}],
        "usage": {"prompt_tokens": 31, "completion_tokens": 2, "total_tokens": 33},
    }).encode()

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=payload, headers={"content-type": "application/json"})

    return httpx.MockTransport(answer)


def bench_batch_memory(quick: bool = False) -> list[dict[str, Any]]:
    """Peak memory of a run of 100,000 short answers (an in-process transport, no latency),
    against what the answers and their inputs take as plain Python strings."""
    count = 2_000 if quick else 100_000
    reviews = items(count)
    with tempfile.TemporaryDirectory(prefix="nbc-bench-batch-") as tmp, \
            _settings(replay_mode="off"):
        session = _session("http://127.0.0.1:9/v1", Path(tmp) / "replay.jsonl", mode="off",
                           transport=_answer_transport())
        _checked(_map(session, items(CONCURRENCY))[0], CONCURRENCY)  # imports
        gc.collect()
        tracemalloc.start()
        try:
            result, wall, _ = _map(session, reviews)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        _checked(result, count)
    strings = sum(sys.getsizeof(TEMPLATE.format(r)) + sys.getsizeof("negative") for r in reviews)
    peak_mb = peak / 1e6
    return [row(f"memory of {count:,} finished short answers (tracemalloc peak of the run)",
                peak_mb, strings / 1e6, target=f"< {MEMORY_TARGET_MB:.0f} MB",
                ok=peak_mb < MEMORY_TARGET_MB, unit="MB",
                note=f"an in-process transport answering at once, replay off; baseline = the "
                     f"prompts and answers as Python strings; {wall:.1f} s under tracemalloc")]


BENCHMARKS: tuple[Callable[..., list[dict[str, Any]]], ...] = (bench_batch_speed,
                                                               bench_batch_memory)


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Every batch benchmark; `quick` runs tiny sizes (a smoke test, not a measurement)."""
    rows: list[dict[str, Any]] = []
    for bench in BENCHMARKS:
        rows.extend(bench(quick=quick))
    return rows


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run_all import table

    print(table(run(quick="--quick" in sys.argv[1:])))
