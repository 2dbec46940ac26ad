"""Binder's start hook serves the offline stand-in when no key is set."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from nb_claude.testing import DEMO_KEY

BINDER = Path(__file__).resolve().parents[1] / "binder"


def _run_start(env: dict[str, str]) -> tuple[dict[str, str], str]:
    """Run `binder/start env` and return the environment it handed to the command."""
    r = subprocess.run(["bash", str(BINDER / "start"), "env", "-0"], env=env,
                       capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr.decode()
    pairs = (item.decode().split("=", 1) for item in r.stdout.split(b"\0") if b"=" in item)
    return dict(pairs), r.stderr.decode()


@pytest.fixture
def base_env() -> dict[str, str]:
    # Only the venv's interpreter and the system's basic tools: no user PATH.
    path = os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"])
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NB_CLAUDE_", "AIMLAPI_"))}
    env["PATH"] = path
    return env


def _gone(pid: int, timeout: float = 10) -> bool:
    """The process exited (a zombie waiting for a reaper counts as exited)."""
    deadline = time.monotonic() + timeout
    stat_file = Path(f"/proc/{pid}/stat")
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            if stat_file.exists() and stat_file.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except (ProcessLookupError, FileNotFoundError):
            return True
        time.sleep(0.05)
    return False


def test_start_without_key_serves_the_standin(base_env: dict[str, str]) -> None:
    env, stderr = _run_start(base_env)
    pid = int(env["NB_CLAUDE_STANDIN_PID"])
    try:
        assert env["AIMLAPI_KEY"] == DEMO_KEY
        assert env["NB_CLAUDE_REPLAY"] == "auto"
        url = env["NB_CLAUDE_BASE_URL"]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        assert f"offline stand-in server at {url}" in stderr
        reply = httpx.post(f"{url}/chat/completions", trust_env=False, timeout=10,
                           headers={"Authorization": f"Bearer {DEMO_KEY}"},
                           json={"model": "anthropic/claude-opus-4-8", "max_tokens": 64,
                                 "messages": [{"role": "user", "content": "Hi"}]})
        assert reply.status_code == 200
        assert reply.json()["choices"][0]["message"]["content"]
    finally:
        os.kill(pid, signal.SIGTERM)
    assert _gone(pid)
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, trust_env=False, timeout=2)


def test_start_with_key_leaves_it_alone(base_env: dict[str, str]) -> None:
    base_env["AIMLAPI_KEY"] = "sk-user-key"
    base_env["NB_CLAUDE_REPLAY"] = "off"
    env, stderr = _run_start(base_env)
    assert env["AIMLAPI_KEY"] == "sk-user-key"
    assert env["NB_CLAUDE_REPLAY"] == "off"
    assert "NB_CLAUDE_BASE_URL" not in env and "NB_CLAUDE_STANDIN_PID" not in env
    assert "sk-user-key" not in stderr


def test_hooks_are_executable_bash() -> None:
    for name in ("start", "postBuild"):
        path = BINDER / name
        assert path.stat().st_mode & stat.S_IXUSR, f"binder/{name} must be executable"
        assert path.read_text().startswith("#!/bin/bash\n")
        subprocess.run(["bash", "-n", str(path)], check=True, timeout=10)
    assert (BINDER / "start").read_text().rstrip().endswith('exec "$@"')
    assert '-e ".[data]"' in (BINDER / "postBuild").read_text()
