"""Open the quickstart notebook in JupyterLab: `python -m nb_claude.demo [--port N] [--notebook PATH]`.

Without an AIMLAPI_KEY the notebook talks to the offline stand-in server,
started in this process, so the demo works with no account and no network.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

DEFAULT_NOTEBOOK = Path("notebooks") / "quickstart.ipynb"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nb_claude.demo", description="Open a notebook in JupyterLab with nb_claude ready to use.")
    p.add_argument("--port", type=int, default=None, help="JupyterLab port (default: first free from 8888)")
    p.add_argument("--notebook", type=Path, default=DEFAULT_NOTEBOOK,
                   help=f"notebook to open (default: {DEFAULT_NOTEBOOK})")
    p.add_argument("--no-browser", action="store_true", help="do not open a web browser")
    return p


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _free_port(start: int = 8888) -> int:
    """The first port from `start` that is free on 127.0.0.1, so the printed URL is right."""
    for port in range(start, start + 100):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _lab_command(notebook: Path, port: int, no_browser: bool) -> tuple[list[str], Path]:
    """The `jupyter lab` command line and its root dir (the cwd, if it holds the notebook)."""
    cwd = Path.cwd().resolve()
    root = cwd if cwd in notebook.parents else notebook.parent
    cmd = [sys.executable, "-m", "jupyter", "lab", str(notebook.relative_to(root)),
           f"--ServerApp.root_dir={root}", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", "--ServerApp.log_level=WARN"]
    if no_browser:
        cmd.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    return cmd, root


def _wait_ready(lab: subprocess.Popen[bytes], url: str, timeout: float = 120) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and lab.poll() is None:
        try:
            with opener.open(url, timeout=5):
                return True
        except (OSError, urllib.error.URLError):
            time.sleep(0.2)
    return False


def _say(text: str, stream: Any = None) -> None:
    """A line for the person at the console (this module is a console program)."""
    out = stream if stream is not None else sys.stdout
    out.write(text + "\n")
    out.flush()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    notebook: Path = args.notebook.expanduser().resolve()
    if not notebook.is_file():
        _say(f"Notebook not found: {args.notebook}. Run this from the nb_claude repository root "
             "or pass --notebook PATH.", sys.stderr)
        return 2
    if importlib.util.find_spec("jupyterlab") is None:
        _say('JupyterLab is not installed: pip install -e ".[demo]"', sys.stderr)
        return 1

    env = dict(os.environ, NB_CLAUDE_DEMO="1")
    standin = None
    if not env.get("AIMLAPI_KEY"):
        from nb_claude.testing import DEMO_KEY, StandInServer

        standin = StandInServer().start()
        env["NB_CLAUDE_BASE_URL"] = standin.url
        env["AIMLAPI_KEY"] = DEMO_KEY
        _say(f"No AIMLAPI_KEY set: replies come from the offline stand-in server at "
             f"{standin.url}, not from Claude.")

    port, token = args.port or _free_port(), secrets.token_hex(24)
    cmd, root = _lab_command(notebook, port, args.no_browser)
    env["JUPYTER_TOKEN"] = token  # in the environment, not on a command line `ps` shows
    base = f"http://127.0.0.1:{port}"
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    lab: subprocess.Popen[bytes] | None = None
    try:
        # Its own session: Ctrl-C reaches only this process, which then stops
        # JupyterLab with SIGTERM instead of its interactive "Shutdown?" prompt.
        lab = subprocess.Popen(cmd, env=env, cwd=root, stdin=subprocess.DEVNULL,
                               start_new_session=True)
        if _wait_ready(lab, f"{base}/api/status?token={token}"):
            rel = quote(notebook.relative_to(root).as_posix())
            _say(f"JupyterLab is ready: {base}/lab/tree/{rel}?token={token}\n"
                 "Press Ctrl-C to stop.")
        return lab.wait()
    except KeyboardInterrupt:
        _say("Stopping JupyterLab...")
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut cleanup short
        if lab is not None and lab.poll() is None:
            lab.terminate()
            try:
                lab.wait(20)
            except subprocess.TimeoutExpired:
                lab.kill()
                lab.wait()
        if standin is not None:
            standin.stop()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)


if __name__ == "__main__":
    sys.exit(main())
