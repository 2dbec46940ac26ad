"""`python -m nb_claude verify`: re-run notebooks in strict replay mode and say, per AI
cell, whether its reply still replays from the replay file.

Each notebook runs in a fresh kernel of this interpreter (nbclient, the notebook's folder
as the working directory). The kernel never gets the API key, and its base URL is a
loopback port that refuses connections, so nothing can be sent even if a cell asks.
nbclient and nbformat are imported here only, when the command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._config import ENV_KEY, redact

__all__ = ["CellResult", "NotebookResult", "verify", "kernel_env", "main", "build_parser"]

DEFAULT_TIMEOUT = 300.0  # seconds per cell
STALE, MISSING = "ReplayStaleError", "ReplayMissError"
_SNIPPET = 30
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]+")
# Variables that would send a kernel's requests elsewhere (proxies are ignored for loopback).
_REDIRECTS = ("NB_CLAUDE_BASE_URL", "NB_CLAUDE_REPLAY")


@dataclass
class CellResult:
    """What one AI cell did: `status` is ok, stale, missing or error."""

    index: int
    execution_count: int | None
    cell_id: str | None
    snippet: str
    status: str
    state: str | None = None
    detail: str = ""
    replies: list[dict[str, Any]] = field(default_factory=list)

    @property
    def label(self) -> str:
        number = self.execution_count if self.execution_count is not None else " "
        return f"cell [{number}]"

    def line(self, path: str) -> str:
        head = f"{path} {self.label} {self.snippet!r}:"
        if self.status == "ok":
            return f"{head} ok {self.state or ''}".rstrip()
        word = {"stale": "STALE", "missing": "MISSING"}.get(self.status, "ERROR")
        return f"{head} {word}: {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "execution_count": self.execution_count,
                "cell_id": self.cell_id, "snippet": self.snippet, "status": self.status,
                "state": self.state, "detail": self.detail, "replies": self.replies}


@dataclass
class NotebookResult:
    """One notebook's AI cells, or the reason it could not run to the end."""

    path: str
    cells: list[CellResult] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.error and all(c.status == "ok" for c in self.cells)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "ok": self.ok, "error": self.error or None,
                "seconds": round(self.seconds, 2), "cells": [c.to_dict() for c in self.cells]}


# -- reading a notebook ------------------------------------------------------------


def one_line(text: object, limit: int = 200) -> str:
    """Untrusted text for a terminal: no control characters or escapes, one short line."""
    flat = " ".join(_CONTROL.sub(" ", redact(str(text))).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def is_ai_source(source: str) -> bool:
    """A `%%claude` cell or a `%claude ...` line: not `%claude_usage` and friends."""
    first = source.lstrip().split(None, 1)
    return bool(first) and first[0] in ("%%claude", "%claude")


def _snippet(source: str) -> str:
    lines = source.strip().splitlines()
    if lines and is_ai_source(source):
        head = lines[0].strip().split(None, 1)
        rest = [head[1]] if head[0] == "%claude" and len(head) > 1 else []
        if head[0] == "%%claude":
            rest = lines[1:]
        lines = [line for line in rest if line.strip()] or lines
    text = one_line(lines[0] if lines else "", 1000)
    return text if len(text) <= _SNIPPET else text[: _SNIPPET - 1] + "…"


def _meta(output: Mapping[str, Any]) -> dict[str, Any] | None:
    meta = (output.get("metadata") or {}).get("nb_claude")
    return dict(meta) if isinstance(meta, Mapping) else None


def _state(meta: Mapping[str, Any]) -> str:
    state = meta.get("state")
    if state in ("live", "replayed", "stale"):
        return str(state)
    return "replayed" if meta.get("replayed") is True else "live"


def _changed(meta: Mapping[str, Any]) -> str:
    changed = meta.get("changed")
    if isinstance(changed, list) and changed:
        return one_line(", ".join(str(c) for c in changed))
    return "the request changed"


_REPLY_KEYS = ("model", "request_sha256", "state", "replayed", "created", "finish_reason",
               "usage", "inputs", "changed")


def classify(cell: Mapping[str, Any], index: int, *, was_ai: bool = False,
             record: bool = False) -> CellResult | None:
    """The verdict on one executed cell, or None when it is not an AI cell."""
    if cell.get("cell_type") != "code":
        return None
    outputs = list(cell.get("outputs") or [])
    metas = [m for m in (_meta(o) for o in outputs) if m is not None]
    batches = [m["batch"] for m in metas if isinstance(m.get("batch"), Mapping)]
    metas = [m for m in metas if "batch" not in m]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    names = {str(o.get("ename")) for o in errors}
    source = str(cell.get("source") or "")
    if not (was_ai or metas or batches or is_ai_source(source) or names & {STALE, MISSING}):
        return None
    result = CellResult(index, cell.get("execution_count"), (cell.get("id") or None),
                        _snippet(source), "ok",
                        replies=[{k: m[k] for k in _REPLY_KEYS if k in m} for m in metas])
    states = [_state(m) for m in metas]
    error = errors[0] if errors else None
    if error is not None and error.get("ename") == STALE:
        result.status, result.state = "stale", "stale"
        result.detail = one_line(error.get("evalue", "")) or "the request changed"
    elif error is not None and error.get("ename") == MISSING:
        result.status, result.detail = "missing", "not in the replay file"
    elif error is not None:
        result.status = "error"
        result.detail = one_line(f"{error.get('ename')}: {error.get('evalue', '')}")
    elif "stale" in states:
        result.status, result.state = "stale", "stale"
        result.detail = _changed(metas[states.index("stale")])
    elif "live" in states:
        result.state = "recorded" if record else "live"
        if not record:
            result.status, result.detail = "error", "asked the service live, not replayed"
    elif states:
        result.state = "replayed"
    elif batches:
        _classify_batch(result, batches[-1], record=record)
    elif "--dry-run" in source.split("\n", 1)[0]:
        result.state = "dry run, nothing sent"
    else:
        result.state = "no reply"  # a line such as `%claude --help`: nothing to replay
    return result


def _classify_batch(result: CellResult, batch: Mapping[str, Any], *, record: bool) -> None:
    """A `--each` cell: every item replayed, or which were asked live or not run."""
    def count(key: str) -> int:
        value = batch.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    total, sent, not_run = count("total"), count("sent"), count("not_run")
    result.replies = [{"batch": {k: batch[k] for k in ("total", "done", "errors", "replayed",
                                                       "sent", "not_run", "state")
                                 if k in batch}}]
    items = f"{total:,} item{'' if total == 1 else 's'}"
    if not_run:
        result.status, result.detail = "missing", f"{not_run:,} of {items} not run"
    elif sent and not record:
        result.status = "error"
        result.detail = f"{sent:,} of {items} asked the service live, not replayed"
    else:
        result.state = (f"recorded {items}" if sent else f"replayed {items}")


def notebook_cells(nb: Any, original: Any, *, record: bool = False) -> list[CellResult]:
    was = [bool(any(_meta(o) for o in c.get("outputs") or [])) for c in original.cells]
    found = []
    for index, cell in enumerate(nb.cells):
        made = classify(cell, index, was_ai=index < len(was) and was[index], record=record)
        if made is not None:
            found.append(made)
    return found


# -- the kernel's environment ------------------------------------------------------


@contextlib.contextmanager
def refusing_port() -> Iterator[str]:
    """A loopback URL whose port is bound but never listened on: connections are refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        sock.close()


def kernel_env(environ: Mapping[str, str], *, record: bool, dead_url: str) -> dict[str, str]:
    """The kernel's environment: strict replay, no key and a dead base URL; or, to record,
    `auto` mode with the caller's key and base URL."""
    env = dict(environ)
    if record:
        env["NB_CLAUDE_REPLAY"] = "auto"
        return env
    key = (env.get(ENV_KEY) or "").strip()
    for name in list(env):
        if name == ENV_KEY or (key and env[name].strip() == key):
            del env[name]  # the key, and any copy of it under another name
    for name in _REDIRECTS:
        env.pop(name, None)
    env["NB_CLAUDE_REPLAY"] = "replay"
    env["NB_CLAUDE_BASE_URL"] = dead_url
    return env


# -- running -----------------------------------------------------------------------


async def _run_one(path: Path, shown: str, original: Any, env: dict[str, str],
                   timeout: float, record: bool, gate: asyncio.Semaphore) -> NotebookResult:
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    result = NotebookResult(shown)
    async with gate:
        started = time.perf_counter()
        nb = nbformat.from_dict(json.loads(json.dumps(original)))
        with tempfile.TemporaryDirectory(prefix="nbc-verify-") as tmp:
            # This interpreter's own kernel, whatever kernel specs say: nb_claude is here.
            km = AsyncKernelManager(kernel_name="python3",
                                    connection_file=str(Path(tmp) / "kernel.json"),
                                    kernel_spec_manager=KernelSpecManager(kernel_dirs=[]))
            client = NotebookClient(nb, km=km, timeout=timeout, allow_errors=True,
                                    kernel_name="python3", record_timing=False,
                                    resources={"metadata": {"path": str(path.parent)}})
            try:
                # The kernel's own stderr (its startup warnings) is not the notebook's.
                await client.async_execute(env=env, stderr=subprocess.DEVNULL)
            except Exception as exc:  # a dead kernel or a cell past its timeout
                result.error = one_line(f"{type(exc).__name__}: {exc}")
        result.cells = notebook_cells(nb, original, record=record)
        result.seconds = time.perf_counter() - started
    return result


async def _run_all(paths: Sequence[tuple[Path, str, Any]], env: dict[str, str],
                   timeout: float, record: bool, jobs: int) -> list[NotebookResult]:
    gate = asyncio.Semaphore(max(1, jobs))
    return list(await asyncio.gather(*(_run_one(p, shown, nb, env, timeout, record, gate)
                                       for p, shown, nb in paths)))


def read_notebooks(paths: Sequence[str | os.PathLike[str]]) -> list[tuple[Path, str, Any]]:
    """(resolved path, path as given, notebook) of each; ValueError names one it cannot read."""
    import nbformat

    found = []
    for given in paths:
        path = Path(given).resolve()
        try:
            found.append((path, str(given), nbformat.read(str(path), as_version=4)))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"cannot read {given} as a notebook: {exc}") from None
    return found


def verify(paths: Sequence[str | os.PathLike[str]], *, record: bool = False,
           timeout: float = DEFAULT_TIMEOUT, jobs: int | None = None,
           environ: Mapping[str, str] | None = None) -> list[NotebookResult]:
    """Run each notebook (up to `jobs` kernels at once) and classify its AI cells."""
    chosen = read_notebooks(paths)
    jobs = jobs or min(len(chosen), os.cpu_count() or 1) or 1
    with refusing_port() as dead:
        env = kernel_env(os.environ if environ is None else environ, record=record,
                         dead_url=dead)
        return asyncio.run(_run_all(chosen, env, timeout, record, jobs))


# -- the command -------------------------------------------------------------------


def summary(results: Sequence[NotebookResult], seconds: float) -> dict[str, Any]:
    cells = [c for r in results for c in r.cells]
    counts = {s: sum(c.status == s for c in cells) for s in ("ok", "stale", "missing", "error")}
    return {"notebooks": len(results), "ai_cells": len(cells), **counts,
            "failed_notebooks": sum(bool(r.error) for r in results),
            "seconds": round(seconds, 1)}


def summary_line(totals: Mapping[str, Any]) -> str:
    failed = totals["failed_notebooks"]
    tail = f"; {failed} notebook(s) did not run to the end" if failed else ""
    return (f"{totals['notebooks']} notebook(s), {totals['ai_cells']} AI cell(s): "
            f"{totals['ok']} ok, {totals['stale']} stale, {totals['missing']} missing, "
            f"{totals['error']} error(s){tail} in {totals['seconds']} s")


def exit_code(results: Sequence[NotebookResult]) -> int:
    return 0 if all(r.ok for r in results) else 1


USAGE = """\
python -m nb_claude verify [--json] [--record] [--timeout S] [--jobs N] NOTEBOOK.ipynb [...]

Re-run each notebook in a fresh kernel in strict replay mode (no key, no network) and
say per AI cell whether its reply replays: ok, STALE, MISSING or ERROR.
Exit status: 0 every AI cell replayed; 1 stale, missing or error; 2 bad usage."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nb_claude verify", usage=USAGE.splitlines()[0],
        description="Check that every AI cell of these notebooks replays from its "
                    "replay file, without a key or the network.",
        epilog="exit status: 0 every AI cell replayed; 1 stale, missing or error; "
               "2 bad usage")
    parser.add_argument("notebooks", nargs="+", metavar="NOTEBOOK.ipynb")
    parser.add_argument("--json", action="store_true", help="machine output, per notebook "
                        "and per cell")
    parser.add_argument("--record", action="store_true",
                        help="ask again for stale and missing cells (auto mode, needs "
                             f"{ENV_KEY}) and append them to the replay file")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S",
                        help=f"seconds per cell (default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--jobs", type=int, default=0, metavar="N",
                        help="kernels at once (default: the number of cores)")
    return parser


def main(argv: Sequence[str], out: Any = None, err: Any = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        args = build_parser().parse_args(list(argv))
    except SystemExit as exc:
        return 2 if exc.code else 0
    missing = [p for p in args.notebooks if not Path(p).is_file()]
    if missing:
        err.write(f"nb_claude verify: no such notebook: {one_line(missing[0])}\n")
        return 2
    if args.record and not (os.environ.get(ENV_KEY) or "").strip():
        err.write(f"nb_claude verify: --record asks the service again and needs a key: "
                  f"set {ENV_KEY}\n")
        return 2
    started = time.perf_counter()
    try:
        results = verify(args.notebooks, record=args.record, timeout=args.timeout,
                         jobs=args.jobs or None)
    except ValueError as exc:  # not a notebook nbformat can read
        err.write(f"nb_claude verify: {one_line(exc)}\n")
        return 2
    totals = summary(results, time.perf_counter() - started)
    code = exit_code(results)
    if args.json:
        document = {"notebooks": [r.to_dict() for r in results], "summary": totals,
                    "exit_code": code}
        out.write(redact(json.dumps(document, indent=1, ensure_ascii=False)) + "\n")
        return code
    for result in results:
        for cell in result.cells:
            out.write(cell.line(result.path) + "\n")
        if result.error:
            out.write(f"{result.path}: ERROR: {result.error}\n")
    out.write(summary_line(totals) + "\n")
    return code
