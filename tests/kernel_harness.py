"""A real IPython kernel, driven the way a notebook front end drives it.

`KernelSession.execute` sends the execute request itself (with JupyterLab's
`cellId` metadata, which nbclient does not send) and folds iopub messages into
nbformat-like outputs, applying `update_display_data` and `clear_output` like a
front end. `run_notebook` runs a whole notebook with nbclient.
"""

from __future__ import annotations

import os
import queue
import re
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ExecResult", "KernelSession", "isolated_kernel_env", "run_notebook"]


def isolated_kernel_env(base: Path, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The current environment with IPython, Jupyter and matplotlib state moved under `base`."""
    full = dict(os.environ)
    for var, sub in [("IPYTHONDIR", "ipython"), ("MPLCONFIGDIR", "matplotlib"),
                     ("JUPYTER_CONFIG_DIR", "jupyter-config"), ("JUPYTER_DATA_DIR", "jupyter-data"),
                     ("JUPYTER_RUNTIME_DIR", "jupyter-runtime")]:
        path = base / sub
        path.mkdir(parents=True, exist_ok=True)
        full[var] = str(path)
    full["JUPYTER_PLATFORM_DIRS"] = "1"
    full["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    full.update(env or {})
    return full


def _kernel_manager(connection_file: Path) -> Any:
    """A manager for this interpreter's own ipykernel, ignoring kernel specs in $HOME."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    return KernelManager(kernel_name="python3", connection_file=str(connection_file),
                         kernel_spec_manager=KernelSpecManager(kernel_dirs=[]))


@dataclass
class ExecResult:
    """What a front end shows for one execute request, plus the raw traffic."""

    msg_id: str
    cell_id: str | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    reply: dict[str, Any] = field(default_factory=dict)
    display_ids: dict[str, list[int]] = field(default_factory=dict)
    _clear_pending: bool = False

    @property
    def error(self) -> dict[str, Any] | None:
        """{"ename", "evalue", "traceback"} of the cell's error, or None."""
        for out in self.outputs:
            if out["output_type"] == "error":
                return {k: out[k] for k in ("ename", "evalue", "traceback")}
        if self.reply.get("status") == "error":
            return {k: self.reply.get(k) for k in ("ename", "evalue", "traceback")}
        return None

    @property
    def payloads(self) -> list[dict[str, Any]]:
        return list(self.reply.get("payload") or [])

    @property
    def execution_count(self) -> int | None:
        return self.reply.get("execution_count")

    def count_of(self, msg_type: str) -> int:
        return sum(1 for m in self.messages if m["header"]["msg_type"] == msg_type)

    def stream(self, name: str = "stdout") -> str:
        return "".join(o["text"] for o in self.outputs
                       if o["output_type"] == "stream" and o["name"] == name)

    def data(self, mime: str = "text/plain") -> list[Any]:
        """The `mime` value of each display_data / execute_result output that has one."""
        return [o["data"][mime] for o in self.outputs if mime in o.get("data", {})]

    def _apply(self, msg: dict[str, Any]) -> None:
        kind, content = msg["header"]["msg_type"], msg["content"]
        if kind == "clear_output":
            if content.get("wait"):
                self._clear_pending = True
            else:
                self._clear()
            return
        if kind not in ("stream", "display_data", "execute_result", "error"):
            return
        if self._clear_pending:
            self._clear()
        if kind == "stream":
            last = self.outputs[-1] if self.outputs else None
            # Front ends merge consecutive writes to the same stream into one output.
            if last and last["output_type"] == "stream" and last["name"] == content["name"]:
                last["text"] += content["text"]
            else:
                self.outputs.append({"output_type": "stream", "name": content["name"],
                                     "text": content["text"]})
            return
        if kind == "error":
            self.outputs.append({"output_type": "error", "ename": content["ename"],
                                 "evalue": content["evalue"], "traceback": content["traceback"]})
            return
        out: dict[str, Any] = {"output_type": kind, "data": content.get("data", {}),
                               "metadata": content.get("metadata", {})}
        if kind == "execute_result":
            out["execution_count"] = content.get("execution_count")
        display_id = (content.get("transient") or {}).get("display_id")
        if display_id:
            self.display_ids.setdefault(display_id, []).append(len(self.outputs))
        self.outputs.append(out)

    def _update(self, display_id: str, content: dict[str, Any]) -> None:
        for index in self.display_ids.get(display_id, []):
            self.outputs[index]["data"] = content.get("data", {})
            self.outputs[index]["metadata"] = content.get("metadata", {})

    def _clear(self) -> None:
        self.outputs.clear()
        self.display_ids.clear()
        self._clear_pending = False


class KernelSession:
    """A running ipykernel with isolated state; use as a context manager."""

    def __init__(self, env: Mapping[str, str] | None = None, cwd: str | Path | None = None,
                 *, startup_timeout: float = 60) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="nbc-kernel-")
        base = Path(self._tmp.name)
        self.env = isolated_kernel_env(base, env)
        self.cwd = str(cwd or base)
        self.startup_timeout = startup_timeout
        self.km = _kernel_manager(base / "kernel.json")
        self.kc: Any = None
        self.results: dict[str, ExecResult] = {}

    def __enter__(self) -> KernelSession:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.km.start_kernel(env=self.env, cwd=self.cwd)
        self.kc = self.km.client()
        self.kc.start_channels()
        try:
            self.kc.wait_for_ready(timeout=self.startup_timeout)
        except RuntimeError:
            self.stop()
            raise
        self._drain_iopub(0.2)

    def stop(self) -> None:
        if self.kc is not None:
            self.kc.stop_channels()
            self.kc = None
        if self.km.has_kernel:
            self.km.shutdown_kernel(now=True)
        self._tmp.cleanup()

    def interrupt(self) -> None:
        self.km.interrupt_kernel()

    def execute(self, code: str, cell_id: str | None = None, timeout: float = 60) -> ExecResult:
        """Run `code` like a front end would and return once the kernel is idle again."""
        content = {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                   "allow_stdin": False, "stop_on_error": True}
        metadata = {"cellId": cell_id} if cell_id is not None else {}
        msg = self.kc.session.msg("execute_request", content, metadata=metadata)
        result = ExecResult(msg["header"]["msg_id"], cell_id)
        self.results[result.msg_id] = result
        self.kc.shell_channel.send(msg)
        deadline = time.monotonic() + timeout
        while True:
            m = self._next_iopub(deadline, code)
            self._route(m)
            if (m["parent_header"].get("msg_id") == result.msg_id
                    and m["header"]["msg_type"] == "status"
                    and m["content"]["execution_state"] == "idle"):
                break
        while not result.reply:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no execute_reply within {timeout} s for {code[:60]!r}")
            try:
                reply = self.kc.get_shell_msg(timeout=remaining)
            except queue.Empty:
                continue
            if reply["parent_header"].get("msg_id") == result.msg_id:
                result.reply = reply["content"]
        return result

    def drain(self, timeout: float = 0.5) -> None:
        """Apply iopub messages that arrive after a cell finished (background threads)."""
        self._drain_iopub(timeout)

    def _next_iopub(self, deadline: float, code: str) -> dict[str, Any]:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"kernel still busy after timeout running {code[:60]!r}")
            try:
                return self.kc.get_iopub_msg(timeout=min(remaining, 1.0))
            except queue.Empty:
                if not self.km.is_alive():
                    raise RuntimeError("the kernel died") from None

    def _drain_iopub(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        while (remaining := end - time.monotonic()) > 0:
            try:
                self._route(self.kc.get_iopub_msg(timeout=remaining))
            except queue.Empty:
                return

    def _route(self, msg: dict[str, Any]) -> None:
        owner = self.results.get(msg["parent_header"].get("msg_id", ""))
        if owner is not None:
            owner.messages.append(msg)
        if msg["header"]["msg_type"] == "update_display_data":
            # A front end updates the display wherever it is, also in earlier cells.
            display_id = msg["content"].get("transient", {}).get("display_id")
            for result in self.results.values():
                result._update(display_id, msg["content"])
        elif owner is not None:
            owner._apply(msg)


def run_notebook(path: str | Path, *, env: Mapping[str, str] | None = None,
                 cwd: str | Path | None = None, timeout: float = 120,
                 allow_errors: bool = False) -> Any:
    """Execute the notebook at `path` in a fresh isolated kernel; returns the NotebookNode."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(str(path), as_version=4)
    with tempfile.TemporaryDirectory(prefix="nbc-nb-") as tmp:
        base = Path(tmp)
        km = _kernel_manager(base / "kernel.json")
        client = NotebookClient(nb, km=km, timeout=timeout, allow_errors=allow_errors,
                                kernel_name="python3",
                                resources={"metadata": {"path": str(cwd or Path(path).parent)}})
        client.execute(env=isolated_kernel_env(base, env))
    return nb


_TIMING = re.compile(r" · \d+\.\d s")
_RECORDED = re.compile(r" · recorded in [^·<]+")
# Provenance that differs between a live run and its replay, or that older outputs lack.
RUN_STATE = frozenset({"replayed", "state", "inputs", "changed"})


def reply_outputs(nb: Any, ignore: frozenset[str] = RUN_STATE) -> list[tuple[str, dict[str, Any]]]:
    """(Markdown, provenance) of every reply output, without what differs between a recording
    run and its replay: timings, "recorded in", the live/replayed word and the `ignore` keys."""
    found = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            meta = output.get("metadata", {}).get("nb_claude")
            if meta and "batch" not in meta:  # a --each summary counts, it is not a reply
                md = _RECORDED.sub("", _TIMING.sub("", output["data"]["text/markdown"]))
                md = md.replace(" · replayed", "").replace(" · live", "")
                found.append((md, {k: v for k, v in meta.items() if k not in ignore}))
    return found
