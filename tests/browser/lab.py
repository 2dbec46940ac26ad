"""Drive JupyterLab (or Notebook 7) in headless Chromium the way a user would.

Server start/stop, isolated Jupyter state and page helpers shared by the browser
tests; `conftest.py` wraps them in fixtures.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from kernel_harness import isolated_kernel_env

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "artifacts"
CHROMIUM = os.environ.get("NB_CLAUDE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
KERNEL_IDLE = "Python 3 (ipykernel) | Idle"
CELL = ".jp-NotebookPanel .jp-Cell"
_PROMPT_DONE = re.compile(r"^\[\d+\]:$")

# Settings a fresh user would otherwise be asked about in a pop-up.
_USER_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False,
    },
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def isolated_env(base: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment whose Jupyter, IPython and matplotlib state lives under `base`.

    JUPYTER_DATA_DIR only replaces the per-user data dir, so `sys.prefix/share/jupyter`
    (where ipywidgets' prebuilt lab extension lives) stays on the search path.
    """
    env = isolated_kernel_env(base)
    env.pop("JUPYTER_PATH", None)
    env.pop("JUPYTER_PREFER_ENV_PATH", None)
    env.update(extra or {})
    return env


@dataclass
class JupyterServer:
    """A running `jupyter lab` or `jupyter notebook` server on 127.0.0.1."""

    app: str
    port: int
    token: str
    root_dir: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def page_url(self, path: str) -> str:
        prefix = "/lab/tree/" if self.app == "lab" else "/notebooks/"
        return f"{self.url}{prefix}{quote(path)}?token={self.token}"

    def api(self, path: str, method: str = "GET") -> Any:
        """Call the server's REST API; returns decoded JSON (or None for an empty body)."""
        req = urllib.request.Request(f"{self.url}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with _opener.open(req, timeout=10) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 15) -> None:
        """Shut down through the API (kernels included); kill if it does not go."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, urllib.error.URLError):
                self.api("/api/shutdown", method="POST")
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# Proxy variables must never route 127.0.0.1 requests elsewhere.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def start_server(app: str, state_dir: Path, env: Mapping[str, str] | None = None,
                 timeout: float = 90) -> JupyterServer:
    """Start JupyterLab (`app="lab"`) or Notebook 7 (`app="notebook"`) and wait until it answers."""
    if app not in ("lab", "notebook"):
        raise ValueError(f"app must be 'lab' or 'notebook', not {app!r}")
    state_dir.mkdir(parents=True, exist_ok=True)
    root = state_dir / "root"
    settings = state_dir / "user-settings"
    workspaces = state_dir / "workspaces"
    for d in (root, settings, workspaces):
        d.mkdir(exist_ok=True)
    for rel, values in _USER_SETTINGS.items():
        target = settings / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))
    port, token = free_port(), secrets.token_hex(16)
    cls = "LabApp" if app == "lab" else "JupyterNotebookApp"
    cmd = [sys.executable, "-m", "jupyter", app, "--no-browser", "--ip=127.0.0.1",
           f"--port={port}", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0", "--allow-root",
           f"--{cls}.user_settings_dir={settings}", f"--{cls}.workspaces_dir={workspaces}"]
    if app == "lab":
        cmd.append("--LabApp.extension_manager=readonly")
    full_env = isolated_env(state_dir / "home", env)
    log_path = state_dir / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=full_env, cwd=root, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    server = JupyterServer(app, port, token, root, proc, log_path, full_env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter {app} exited with {proc.returncode}:\n{server.log()[-3000:]}")
        try:
            server.api("/api/status")
            return server
        except (OSError, urllib.error.URLError):
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"jupyter {app} did not answer within {timeout:.0f} s:\n{server.log()[-3000:]}")


def write_notebook(root: Path, path: str, cells: list[str] | None = None) -> Path:
    """Write a notebook of code cells (one empty cell if none) with the python3 kernel."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in (cells or [""])]
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)
    return target


def open_notebook(page: Any, server: JupyterServer, path: str, cells: list[str] | None = None,
                  timeout: float = 60) -> None:
    """Write `path` into the server's root, open it and wait until its kernel is idle."""
    write_notebook(server.root_dir, path, cells)
    page.goto(server.page_url(path))
    ms = timeout * 1000
    page.locator(CELL).first.wait_for(timeout=ms)
    _wait_kernel_session(server, path, timeout)
    if server.app == "lab":
        page.locator(".jp-StatusBar-TextItem", has_text=KERNEL_IDLE).first.wait_for(timeout=ms)
    else:
        page.locator(".jp-NotebookPanel-toolbar .jp-Notebook-ExecutionIndicator[data-status='idle']"
                     ).first.wait_for(timeout=ms)


def _wait_kernel_session(server: JupyterServer, path: str, timeout: float) -> None:
    """The execution indicator reads idle before a kernel exists: ask the server instead."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for s in server.api("/api/sessions"):
            if s.get("path") == path and (s.get("kernel") or {}).get("execution_state") == "idle":
                return
        time.sleep(0.2)
    raise TimeoutError(f"no idle kernel for {path} after {timeout:.0f} s")


def run_cell(page: Any, index_or_text: int | str, timeout: float = 60) -> int:
    """Run cell `index`, or type `text` into the last cell and run it; returns the cell index.

    Waits until the cell's prompt shows a new execution count.
    """
    cells = page.locator(CELL)
    index = index_or_text if isinstance(index_or_text, int) else cells.count() - 1
    cell = cells.nth(index)
    editor = cell.locator(".cm-content")
    editor.click()
    if isinstance(index_or_text, str):
        page.keyboard.press("ControlOrMeta+a")
        page.keyboard.press("Delete")
        # insert_text sends no key events, so no bracket auto-closing or auto-indent.
        page.keyboard.insert_text(index_or_text)
    prompt = cell.locator(".jp-InputPrompt")
    before = prompt.inner_text().strip()
    page.keyboard.press("Shift+Enter")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = prompt.inner_text().strip()
        if _PROMPT_DONE.match(now) and now != before:
            return index
        page.wait_for_timeout(50)
    raise TimeoutError(f"cell {index} still running after {timeout:.0f} s (prompt {now!r})")


def cell_output_text(page: Any, index: int) -> str:
    """The visible text of all outputs of cell `index`."""
    outputs = page.locator(CELL).nth(index).locator(".jp-OutputArea-output")
    return "\n".join(t.strip() for t in outputs.all_inner_texts())


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page PNG as artifacts/<name>.png at the repository root."""
    ARTIFACTS.mkdir(exist_ok=True)
    target = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(target), full_page=True)
    return target


def browser_problem() -> str | None:
    """Why browser tests cannot run here, or None when Chromium and Playwright are usable."""
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"Chromium not found at {CHROMIUM}: apt-get install chromium (or set NB_CLAUDE_CHROMIUM)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return 'Playwright is not installed: pip install -e ".[test]"'
    return None
