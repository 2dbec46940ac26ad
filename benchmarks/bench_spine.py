"""Benchmarks of nb_claude's spine: extension load, stream parsing, first byte,
display throttling, saved outputs and long sessions.

Every figure is a ratio against a baseline measured in the same run, so the
numbers mean the same on a slow or a fast machine. `run()` returns rows of
{name, value, baseline, ratio, target, ok, unit, note}; `run_all.py` prints them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import importlib.util
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

__all__ = [
    "run",
    "bench_load_ext",
    "bench_stream_cpu",
    "bench_first_byte",
    "bench_display_rate",
    "bench_saved_outputs",
    "bench_long_session",
    "service_stream",
    "standin_process",
]

BENCH_KEY = "bench-key-not-secret"
BASE_URL = "http://127.0.0.1:9/v1"
WORDS = ("the", "data", "frame", "has", "a", "column", "of", "values", "which", "we", "can",
         "group", "by", "région", "and", "then", "plot", "—", "mean", "naïve", "count", "rows",
         "`df.groupby()`", "**note**", "so", "it", "is", "not", "clear", "why", "model", "fits")


def row(name: str, value: float | None, baseline: float | None, *, target: str,
        ok: bool | None, unit: str = "", ratio: float | None = None,
        note: str = "") -> dict[str, Any]:
    """One result row; `ratio` defaults to value / baseline."""
    if ratio is None and value is not None and baseline:
        ratio = value / baseline
    return {"name": name, "value": value, "baseline": baseline, "ratio": ratio,
            "target": target, "ok": ok, "unit": unit, "note": note}


def skipped(name: str, note: str, target: str = "") -> dict[str, Any]:
    return row(name, None, None, target=target, ok=None, note=note)


def _best(fn: Callable[[], Any], repeat: int) -> float:
    """Lowest CPU time of `repeat` runs (the least disturbed by the rest of the machine)."""
    return _best_interleaved([fn], repeat)[0]


def _best_interleaved(fns: list[Callable[[], Any]], repeat: int) -> list[float]:
    """Lowest CPU time of each function, the runs taken in turns so that a slow spell of
    the machine hits every function alike instead of one of them."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, spent in zip(fns, times, strict=True):
            gc.collect()
            start = time.process_time()
            fn()
            spent.append(time.process_time() - start)
    return [min(spent) for spent in times]


@contextlib.contextmanager
def _environ(**values: str | None) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _settings(**values: Any) -> Iterator[Any]:
    """Process settings changed for the block and restored after it, key included."""
    from nb_claude import _config

    saved = dataclasses.replace(_config.settings)
    saved_key = _config._api_key
    try:
        _config.set_api_key(BENCH_KEY)
        _config.settings.update(**values)
        yield _config.settings
    finally:
        for f in dataclasses.fields(saved):
            setattr(_config.settings, f.name, getattr(saved, f.name))
        _config._api_key = saved_key


# --------------------------------------------------------------------------- 1. %load_ext

_LOAD_SCRIPT = textwrap.dedent("""
    import json, sys, time
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    start = time.perf_counter()
    shell.run_line_magic("load_ext", sys.argv[1])
    elapsed = time.perf_counter() - start
    assert sys.argv[1] in shell.extension_manager.loaded, "extension did not load"
    print(json.dumps({"ms": elapsed * 1000}))
""")


def _child_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    # Bytecode as an installed package has it, cached outside the checkout.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    env["IPYTHONDIR"] = str(tmp / "ipython")
    env["MPLCONFIGDIR"] = str(tmp / "matplotlib")
    env["PYTHONPATH"] = os.pathsep.join([str(tmp / "ext"), str(ROOT),
                                         env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _load_ms(module: str, env: dict[str, str]) -> float:
    out = subprocess.run([sys.executable, "-c", _LOAD_SCRIPT, module], env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["ms"])


def bench_load_ext(quick: bool = False) -> list[dict[str, Any]]:
    """`%load_ext nb_claude` in a fresh bare shell vs loading a no-op extension."""
    repeat = 2 if quick else 9
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "ext").mkdir()
        (tmp / "ext" / "nbc_bench_noop.py").write_text(
            "def load_ipython_extension(ipython):\n    pass\n")
        env = _child_env(tmp)
        modules = ["nbc_bench_noop", "nb_claude"]
        optional = "jupyter_ai_magics"
        has_optional = importlib.util.find_spec(optional) is not None
        if has_optional:
            modules.append(optional)
        for module in modules:  # warm the bytecode cache
            _load_ms(module, env)
        samples: dict[str, list[float]] = {m: [] for m in modules}
        for _ in range(repeat):  # interleaved, so drift hits every column alike
            for module in modules:
                samples[module].append(_load_ms(module, env))
    base = statistics.median(samples["nbc_bench_noop"])
    ours = statistics.median(samples["nb_claude"])
    added = ours - base
    rows = [row("%load_ext nb_claude: ms added over a bare shell", added, base,
                ratio=ours / base, target="<= 10 ms added", ok=added <= 10, unit="ms",
                note=f"median of {repeat} fresh processes: nb_claude {ours:.1f} ms, "
                     f"no-op extension {base:.1f} ms")]
    if has_optional:
        theirs = statistics.median(samples[optional]) - base
        rows.append(row(f"%load_ext {optional}: ms added (comparison)", theirs, base,
                        ratio=(theirs + base) / base, target="-", ok=None, unit="ms"))
    else:
        rows.append(skipped(f"%load_ext {optional}: ms added (comparison)",
                            f"skipped: {optional} is not installed"))
    return rows


# --------------------------------------------------------------------------- 2. stream CPU


def service_stream(n_chunks: int, *, seed: int = 7) -> bytes:
    """A streamed reply shaped like the service's recordings, `n_chunks` content deltas."""
    rng = random.Random(seed)
    created = 1770989120
    base = {"created": created, "model": "claude-opus-4-8", "object": "chat.completion.chunk",
            "usage": None}

    def event(payload: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"

    def delta(content: str, id_: str = "") -> dict[str, Any]:
        return {"id": id_, "choices": [{"index": 0, "delta": {
            "content": content, "role": "assistant", "refusal": None}}], **base}

    parts = [event(delta("", "msg_018vBenchmarkStream"))]
    for _ in range(n_chunks):
        words = rng.choices(WORDS, k=rng.randint(1, 3))
        parts.append(event(delta(" " + " ".join(words))))
    parts.append(event({"id": "", "choices": [{"index": 0, "delta": {
        "content": "", "role": "assistant", "refusal": None}, "finish_reason": "stop"}],
        **base, "usage": {"prompt_tokens": 16, "completion_tokens": n_chunks,
                          "total_tokens": 16 + n_chunks}}))
    parts.append(event({"id": "", "choices": [{"index": 0, "finish_reason": "stop"}], **base,
                        "meta": {"usage": {"credits_used": 2480, "usd_spent": 0.00124}}}))
    return b"".join(parts)


def _reads(data: bytes, *, seed: int = 11) -> list[bytes]:
    """The stream cut into 1-4 KB reads at arbitrary bytes, as TCP delivers it."""
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(data):
        step = rng.randint(1024, 4096)
        out.append(data[i:i + step])
        i += step
    return out


def _mock_transport(reads: list[bytes]) -> Any:
    import httpx

    class Reads(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            return iter(reads)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"},
                              stream=Reads())

    return httpx.MockTransport(handler)


_BODY = {"model": "anthropic/claude-opus-4-8", "max_tokens": 1024,
         "messages": [{"role": "user", "content": "Hi"}]}


def _nb_claude_consume(transport: Any) -> Callable[[], str]:
    from nb_claude._client import Client
    from nb_claude._stream import Reply, accumulate

    client = Client(api_key=BENCH_KEY, base_url=BASE_URL, transport=transport, max_retries=0)

    def consume() -> str:
        reply = Reply()
        for event in client.stream(_BODY):
            accumulate(event, reply)
        assert reply.done
        return reply.text

    return consume


def _baseline_consume(transport: Any) -> Callable[[], str]:
    import httpx

    http = httpx.Client(transport=transport, trust_env=False)

    def consume() -> str:
        pieces: list[str] = []
        with http.stream("POST", BASE_URL + "/chat/completions", json={**_BODY, "stream": True},
                         headers={"Authorization": f"Bearer {BENCH_KEY}"}) as response:
            for line in response.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    event = json.loads(line[6:])
                    for choice in event.get("choices") or ():
                        content = (choice.get("delta") or {}).get("content")
                        if content:
                            pieces.append(content)
        return "".join(pieces)

    return consume


def _session_consume(transport: Any) -> Callable[[], str]:
    from nb_claude._config import Settings
    from nb_claude._session import Session

    # max_tokens large enough that the client's runaway-reply cap never cuts the long stream.
    session = Session("bench-stream", config=Settings(base_url=BASE_URL, replay_mode="off",
                                                      max_retries=0, max_tokens=128_000),
                      transport=transport)

    def consume() -> str:
        session.history.clear()
        return session.ask("Hi", display=False).text

    return consume


OPENAI_ROW = "stream CPU per chunk, openai SDK parsing into its typed chunk objects (comparison)"


def bench_stream_cpu(quick: bool = False) -> list[dict[str, Any]]:
    """CPU per chunk to turn the same byte stream into text: nb_claude vs raw httpx."""
    n = 500 if quick else 20_000
    repeat = 2 if quick else 5
    reads = _reads(service_stream(n))
    transport = _mock_transport(reads)
    ours, base = _nb_claude_consume(transport), _baseline_consume(transport)
    assert ours() == base(), "nb_claude and the baseline read different text"
    with _settings(replay_mode="off"):
        whole = _session_consume(transport)
        assert whole() == base()
        t_base, t_ours, t_session = _best_interleaved([base, ours, whole], 2 * repeat)
    per = 1e6 / (n + 3)
    rows = [
        row(f"stream CPU per chunk, Client.stream + accumulate ({n:,} chunks)", t_ours * per,
            t_base * per, target="<= 1.2x", ok=t_ours / t_base <= 1.2, unit="µs",
            note="baseline: httpx iter_lines + json.loads on the same MockTransport reads"),
        row("stream CPU per chunk, whole Session.ask (no display)", t_session * per,
            t_base * per, target="<= 1.2x", ok=t_session / t_base <= 1.2, unit="µs"),
    ]
    if importlib.util.find_spec("openai") is None:
        rows.append(skipped(OPENAI_ROW,
                            "skipped: openai is not installed"))
    else:
        t_openai = _best(_openai_consume(transport), repeat)
        rows.append(row(OPENAI_ROW, t_openai * per,
                        t_base * per, target="-", ok=None, unit="µs"))
    return rows


def _openai_consume(transport: Any) -> Callable[[], str]:
    import httpx
    import openai

    client = openai.OpenAI(api_key=BENCH_KEY, base_url=BASE_URL,
                           http_client=httpx.Client(transport=transport))

    def consume() -> str:
        pieces = []
        for chunk in client.chat.completions.create(model=_BODY["model"], stream=True,
                                                    messages=_BODY["messages"]):
            for choice in chunk.choices:
                if choice.delta and choice.delta.content:
                    pieces.append(choice.delta.content)
        return "".join(pieces)

    return consume


# --------------------------------------------------------------------------- 3. first byte


class _FirstUpdate:
    """A view that only notes when the first update arrived."""

    def __init__(self) -> None:
        self.first: float | None = None

    def start(self, turn: Any) -> None:
        pass

    def update(self, turn: Any, *, force: bool = False) -> None:
        if self.first is None:
            self.first = time.perf_counter()

    def finish(self, turn: Any) -> None:
        pass

    def fail(self, turn: Any, exc: BaseException) -> None:
        pass


@contextlib.contextmanager
def standin_process(latency: float = 0.0) -> Iterator[str]:
    """The stand-in served by its own process (never competing for this one's GIL or CPU
    clock), adding `latency` seconds to every chat request; yields its base URL."""
    process = subprocess.Popen([sys.executable, "-m", "nb_claude.testing", "--no-quirks",
                                "--latency", str(latency)],
                               stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"the stand-in did not start: {url!r}")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def bench_first_byte(quick: bool = False) -> list[dict[str, Any]]:
    """Time to the first event: Session.ask vs a raw httpx streaming POST, same server."""
    import httpx

    from nb_claude._config import Settings
    from nb_claude._session import Session

    repeat = 5 if quick else 200
    ours: list[float] = []
    base: list[float] = []
    with standin_process() as url, _settings(replay_mode="off"):
        session = Session("bench-ttfb", config=Settings(base_url=url, replay_mode="off",
                                                        max_retries=0))
        http = httpx.Client(trust_env=False)
        body = session.request_body("Hi")

        def raw() -> float:
            start = time.perf_counter()
            with http.stream("POST", url + "/chat/completions",
                             content=json.dumps(body).encode(),
                             headers={"Authorization": f"Bearer {BENCH_KEY}",
                                      "Content-Type": "application/json"}) as response:
                lines = response.iter_lines()
                for line in lines:
                    if line.startswith("data: "):
                        json.loads(line[6:])
                        first = time.perf_counter()
                        break
                for _ in lines:  # the rest of the reply, as the session reads it too
                    pass
            return first - start

        def ask() -> float:
            view = _FirstUpdate()
            session.history.clear()
            start = time.perf_counter()
            session.ask("Hi", view=view)
            assert view.first is not None
            return view.first - start

        for _ in range(5):  # warm connections and imports
            raw()
            ask()
        for i in range(repeat):
            pair = [(base, raw), (ours, ask)]
            for samples, fn in pair if i % 2 else pair[::-1]:
                samples.append(fn())
        http.close()
    b, o = statistics.median(base), statistics.median(ours)
    return [row("time to first event, Session.ask vs raw httpx", o * 1000, b * 1000,
                target="<= 1.1x", ok=o / b <= 1.1, unit="ms",
                note=f"median of {repeat}; stand-in in its own process on 127.0.0.1, no added "
                     f"latency; nb_claude adds {1000 * (o - b):.2f} ms (the service's own first "
                     "byte takes about a second)")]


# --------------------------------------------------------------------------- 4. display


def bench_display_rate(quick: bool = False) -> list[dict[str, Any]]:
    """Display publishes per second while a fast reply streams into a %%claude cell."""
    from IPython.testing.globalipapp import get_ipython
    from IPython.utils.capture import capture_output

    from nb_claude import _session
    from nb_claude.testing import StandInServer

    chunks, seconds = (40, 0.4) if quick else (400, 2.0)
    ip = get_ipython()
    saved_types = ip.display_formatter.active_types
    ip.display_formatter.active_types = ip.display_formatter.format_types
    ip.extension_manager.load_extension("nb_claude")
    magics = ip.magics_manager.registry["ClaudeMagics"]
    saved_traits = {name: getattr(magics, name) for name in magics._SETTINGS}
    saved_sessions = dict(_session._sessions)
    try:
        with StandInServer(quirks=False) as server, _settings():
            magics._push_all()
            for name, value in (("base_url", server.url), ("replay_mode", "off"),
                                ("max_retries", 0), ("updates_per_second", 10.0)):
                magics.set_trait(name, value)
            _session._sessions.clear()
            server.reply(chunks=[f"w{i} " for i in range(chunks)], delay=seconds / chunks)
            start = time.perf_counter()
            with capture_output() as captured:
                result = ip.run_cell("%%claude --session bench-display\nCount to a lot.",
                                     store_history=False)
            elapsed = time.perf_counter() - start
            result.raise_error()
    finally:
        for name, value in saved_traits.items():
            magics.set_trait(name, value)
        _session._sessions.clear()
        _session._sessions.update(saved_sessions)
        ip.display_formatter.active_types = saved_types
    publishes = len(captured.outputs)
    final = captured.outputs[-1].data.get("text/markdown", "") if captured.outputs else ""
    assert f"w{chunks - 1}" in final, "the reply did not reach the display"
    # The first state (a waiting mark) and the final one are not throttled updates.
    rate = (publishes - 2) / elapsed
    return [row(f"live display updates per second ({chunks} chunks in {elapsed:.1f} s)", rate,
                chunks / elapsed, target="<= 10/s", ok=rate <= 10, unit="/s",
                note=f"{publishes} display publishes in all, first and final state included; "
                     "baseline: one update per chunk")]


_OUTPUT_MESSAGES = {"display_data", "update_display_data", "stream", "execute_result", "error",
                    "clear_output"}
_NOTEBOOK_CELLS = ["%load_ext nb_claude", "%%claude\nCount to a lot."]


def bench_saved_outputs(quick: bool = False) -> list[dict[str, Any]]:
    """Outputs a saved notebook keeps for one streamed reply, run by nbclient in a kernel."""
    import nbformat
    from nbclient import NotebookClient

    from nb_claude.testing import StandInServer

    chunks = 20 if quick else 200
    published: list[str] = []

    class Counting(NotebookClient):  # notes every output message the kernel sent
        def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
            kind = msg["header"]["msg_type"]
            if cell_index == 1 and kind in _OUTPUT_MESSAGES:
                published.append(kind)
            return super().process_message(msg, cell, cell_index)

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in _NOTEBOOK_CELLS]
    with StandInServer(quirks=False) as server, tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        server.reply(chunks=[f"w{i} " for i in range(chunks)], delay=1.0 / chunks)
        env = {"NB_CLAUDE_BASE_URL": server.url, "AIMLAPI_KEY": "stand-in",
               "NB_CLAUDE_REPLAY": "off", "PYTHONPATH": str(ROOT)}
        for var, sub in (("IPYTHONDIR", "ipython"), ("MPLCONFIGDIR", "matplotlib"),
                         ("JUPYTER_CONFIG_DIR", "jc"), ("JUPYTER_DATA_DIR", "jd"),
                         ("JUPYTER_RUNTIME_DIR", "jr")):
            (tmp / sub).mkdir()
            env[var] = str(tmp / sub)
        with _environ(**env):
            client = Counting(notebook, timeout=120, kernel_name="python3",
                              resources={"metadata": {"path": tmp_name}})
            client.execute()
    outputs = notebook.cells[1].outputs
    text = json.dumps([o.get("data", {}) for o in outputs])
    assert f"w{chunks - 1}" in text, "the reply did not reach the saved notebook"
    return [row("outputs saved in the notebook per streamed reply", len(outputs),
                len(published), target="1", ok=len(outputs) == 1, unit="",
                note=f"baseline: output messages the kernel sent for the cell "
                     f"({chunks} chunks)")]


# --------------------------------------------------------------------------- 5. long session


def _history(turns: int, seed: int = 3) -> tuple[list[Any], int]:
    """`turns` complete turns of about 2 KB of text each, and their raw text size."""
    from nb_claude._session import Step, Turn
    from nb_claude._stream import Reply, Usage

    rng = random.Random(seed)
    history, raw = [], 0
    for i in range(turns):
        prompt = f"Question {i}: " + " ".join(rng.choices(WORDS, k=100))
        answer = " ".join(rng.choices(WORDS, k=280))
        raw += len(prompt.encode()) + len(answer.encode())
        reply = Reply(text=answer, finish_reason="end_turn", raw_finish_reason="stop",
                      usage=Usage(50, 300, 0.001), model="claude-opus-4-8", id=f"msg_{i}")
        turn = Turn(prompt, steps=[Step(reply)], source="cell")
        turn._freeze()  # as the session does when it records a turn
        history.append(turn)
    return history, raw


def bench_long_session(quick: bool = False) -> list[dict[str, Any]]:
    """Request building as the history grows, and what the history holds in memory."""
    from nb_claude._config import Settings
    from nb_claude._session import Session

    sizes = (25, 50, 100) if quick else (100, 200, 500, 1000)
    repeat = 2 if quick else 5
    history, _ = _history(sizes[-1])
    session = Session("bench-long", config=Settings(base_url=BASE_URL, replay_mode="off"))
    times = []
    for size in sizes:
        session.history = history[:size]

        def build() -> None:
            body = session.request_body("And now?")
            json.dumps(body, ensure_ascii=False).encode()

        assert len(session.messages) == 2 * size
        times.append(_best(build, repeat))
    slope = (math.log(times[-1]) - math.log(times[0])) / (math.log(sizes[-1]) - math.log(sizes[0]))
    factor = 2 ** slope
    # what the same request costs with no session at all: json.dumps of ready-made messages
    messages = session.messages
    t_dumps = _best(lambda: json.dumps(messages, ensure_ascii=False).encode(), repeat)

    gc.collect()
    tracemalloc.start()
    held, raw = _history(sizes[-1])
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    strings = sum(sys.getsizeof(t.prompt) + sys.getsizeof(t.reply.text) for t in held)
    del held
    n = sizes[-1]
    ms = [f"{s}: {t * 1000:.2f} ms" for s, t in zip(sizes, times, strict=True)]
    return [
        row(f"request building, growth per doubling of history ({sizes[0]}-{n} turns)", factor,
            2.0, target="<= 1.15x (linear)", ok=factor / 2 <= 1.15, unit="x",
            note="request_body + json.dumps at " + ", ".join(ms)),
        row(f"request building at {n} turns vs json.dumps of the messages", times[-1] * 1000,
            t_dumps * 1000, target="<= 1.5x", ok=times[-1] / t_dumps <= 1.5, unit="ms"),
        row(f"memory of a {n}-turn history vs its raw UTF-8 text (tracemalloc peak)",
            peak / 1e6, raw / 1e6, target="<= 3x", ok=peak / raw <= 3, unit="MB",
            note=f"Python's own str objects for this text take {strings / 1e6:.2f} MB (2 bytes "
                 f"a character once a text holds one beyond Latin-1, such as an em dash); "
                 f"{current / 1e6:.2f} MB held after building"),
    ]


# --------------------------------------------------------------------------- all


BENCHMARKS: tuple[Callable[..., list[dict[str, Any]]], ...] = (
    bench_load_ext, bench_stream_cpu, bench_first_byte, bench_display_rate,
    bench_saved_outputs, bench_long_session)


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Every spine benchmark; `quick` runs tiny sizes (a smoke test, not a measurement)."""
    rows: list[dict[str, Any]] = []
    for bench in BENCHMARKS:
        rows.extend(bench(quick=quick))
    return rows
