"""`python -m nb_claude.demo` starts JupyterLab and, without a key, the stand-in server."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from kernel_harness import isolated_kernel_env

from nb_claude.testing import DEMO_KEY

pytestmark = pytest.mark.kernel
HAVE_PROC = Path("/proc/self/environ").exists()

READY = re.compile(r"JupyterLab is ready: (http://127\.0\.0\.1:(\d+)/lab/tree/(\S+)\?token=(\w+))")
STANDIN = re.compile(r"No AIMLAPI_KEY set: replies come from the offline stand-in server at "
                     r"(http://127\.0\.0\.1:\d+/v1), not from Claude\.")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _refuses(url: str) -> bool:
    try:
        httpx.get(url, timeout=2, trust_env=False)
    except httpx.ConnectError:
        return True
    return False


class Demo:
    """The demo as a subprocess whose output is collected line by line."""

    def __init__(self, cwd: Path, env: dict[str, str], *args: str) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nb_claude.demo", "--no-browser", *args], cwd=cwd, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 90) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if m := pattern.search(line):
                    return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{pattern.pattern!r} not seen; output:\n" + "\n".join(self.lines))

    def jupyter_pids(self) -> list[int]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(p) for p in children.read_text().split()] if children.exists() else []

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("1 + 1")]
    (tmp_path / "notebooks").mkdir()
    nbformat.write(nb, tmp_path / "notebooks" / "quickstart.ipynb")
    return tmp_path


@pytest.fixture
def demo_env(tmp_path: Path) -> dict[str, str]:
    env = isolated_kernel_env(tmp_path / "state")
    for var in ("AIMLAPI_KEY", "NB_CLAUDE_BASE_URL", "NB_CLAUDE_DEMO", "JUPYTER_TOKEN"):
        env.pop(var, None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _proc_environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_demo_without_key_uses_standin_and_stops_cleanly(workdir: Path,
                                                         demo_env: dict[str, str]) -> None:
    port = _free_port()
    demo = Demo(workdir, demo_env, "--port", str(port))
    try:
        standin_url = demo.wait_for(STANDIN).group(1)
        url, seen_port, nb_path, token = demo.wait_for(READY).groups()
        assert int(seen_port) == port and nb_path == "notebooks/quickstart.ipynb"
        lab = f"http://127.0.0.1:{port}"
        status = httpx.get(f"{lab}/api/status", params={"token": token}, trust_env=False)
        assert status.status_code == 200
        nb = httpx.get(f"{lab}/api/contents/{nb_path}", params={"token": token}, trust_env=False)
        assert nb.status_code == 200 and nb.json()["type"] == "notebook"

        reply = httpx.post(f"{standin_url}/chat/completions", trust_env=False, timeout=10,
                           headers={"Authorization": f"Bearer {DEMO_KEY}"},
                           json={"model": "anthropic/claude-opus-4-8", "max_tokens": 64,
                                 "messages": [{"role": "user", "content": "Hello?"}]})
        assert reply.status_code == 200
        assert reply.json()["choices"][0]["message"]["content"]

        pids = demo.jupyter_pids()
        if HAVE_PROC:
            assert len(pids) == 1
            assert token not in Path(f"/proc/{pids[0]}/cmdline").read_text()
            lab_env = _proc_environ(pids[0])
            assert lab_env["NB_CLAUDE_BASE_URL"] == standin_url
            assert lab_env["AIMLAPI_KEY"] == DEMO_KEY
            assert lab_env["NB_CLAUDE_DEMO"] == "1"

        demo.proc.send_signal(signal.SIGINT)  # what Ctrl-C does
        assert demo.proc.wait(30) == 0
        assert _refuses(f"{lab}/api/status")
        assert _refuses(standin_url)
        for pid in pids:
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    finally:
        demo.kill()


def test_demo_with_key_starts_no_standin(workdir: Path, demo_env: dict[str, str]) -> None:
    demo_env["AIMLAPI_KEY"] = "sk-real-looking-key-123"
    demo = Demo(workdir, demo_env, "--port", str(_free_port()))
    try:
        demo.wait_for(READY)
        assert not any("stand-in" in line for line in demo.lines)
        assert not any("sk-real-looking-key-123" in line for line in demo.lines)
        if HAVE_PROC:
            lab_env = _proc_environ(demo.jupyter_pids()[0])
            assert lab_env["AIMLAPI_KEY"] == "sk-real-looking-key-123"
            assert "NB_CLAUDE_BASE_URL" not in lab_env
        demo.proc.terminate()
        assert demo.proc.wait(30) == 0
    finally:
        demo.kill()


def test_missing_notebook_says_what_to_do(tmp_path: Path, demo_env: dict[str, str]) -> None:
    r = subprocess.run([sys.executable, "-m", "nb_claude.demo", "--no-browser"], cwd=tmp_path,
                       env=demo_env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip() == ("Notebook not found: notebooks/quickstart.ipynb. Run this from the "
                                "nb_claude repository root or pass --notebook PATH.")


def test_missing_jupyterlab_says_what_to_do(workdir: Path, demo_env: dict[str, str]) -> None:
    code = ("import sys; sys.modules['jupyterlab'] = None\n"
            "from nb_claude.demo import main; sys.exit(main(['--no-browser']))")
    r = subprocess.run([sys.executable, "-c", code], cwd=workdir, env=demo_env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip() == 'JupyterLab is not installed: pip install -e ".[demo]"'


def test_help_lists_options() -> None:
    r = subprocess.run([sys.executable, "-m", "nb_claude.demo", "--help"], capture_output=True,
                       text=True, timeout=60, env=dict(os.environ))
    assert r.returncode == 0
    assert "--port" in r.stdout and "--notebook" in r.stdout
