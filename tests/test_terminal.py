"""Terminal IPython: the reply streams as plain text on a real pseudo-terminal."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time

from nb_claude.testing import DEMO_KEY, StandInServer


def read_screen(primary: int, proc: subprocess.Popen[bytes]) -> str:
    """Everything the terminal showed until IPython exited (at most a minute)."""
    chunks = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            data = os.read(primary, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=30)
    os.close(primary)
    return b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")


def terminal_ipython(tmp_path, base_url: str, *, typed: str = "", code: str | None = None,
                     env: dict[str, str] | None = None) -> str:
    """Run terminal IPython on a pty against `base_url`, typing `typed` (or running `code`
    with -c), and return everything the terminal showed."""
    environ = {**os.environ, "NB_CLAUDE_BASE_URL": base_url, "AIMLAPI_KEY": DEMO_KEY,
               "NB_CLAUDE_REPLAY": "off", "IPYTHONDIR": str(tmp_path / "ipython"),
               "TERM": "dumb", **(env or {})}
    args = [sys.executable, "-m", "IPython", "--no-banner", "--colors=NoColor",
            "--HistoryManager.enabled=False"]
    args += ["-c", code] if code is not None else ["--simple-prompt"]
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(args, stdin=secondary, stdout=secondary, stderr=secondary,
                            env=environ, cwd=tmp_path)
    os.close(secondary)
    if typed:
        os.write(primary, typed.encode())
    return read_screen(primary, proc)


def test_terminal_ipython_streams_plain_text(tmp_path):
    with StandInServer(seed=2) as server:
        server.reply("Plain **text** in a terminal.", usage=(4, 6))
        screen = terminal_ipython(tmp_path, server.url,
                                  code="%load_ext nb_claude\n%claude Say something\n")
    assert "Plain **text** in a terminal." in screen
    assert "[claude-opus-4-8 · 4 in / 6 out" in screen
    assert "IPython.core.display" not in screen and "<details>" not in screen
    assert len(server.requests) == 1


def test_terminal_ipython_sends_the_cells_run_before_a_prompt(tmp_path):
    with StandInServer(seed=3) as server:
        server.reply("The second cell divided by zero.", usage=(30, 8))
        typed = ("%load_ext nb_claude\n"
                 "print('rows loaded:', 6 * 7)\n"
                 "1 / 0\n"
                 "%claude What happened?\n"
                 "exit\n")
        screen = terminal_ipython(tmp_path, server.url, typed=typed)
    assert len(server.requests) == 1, screen
    sent = server.requests[-1].body["messages"][-1]["content"]
    context = sent[0]["text"]
    assert context.startswith("Notebook cells run before this prompt, oldest first:")
    assert "In [2]:\n```python\nprint('rows loaded:', 6 * 7)\n```\nstdout:\n```\nrows loaded: 42\n```" \
        in context
    assert "In [3]:\n```python\n1 / 0\n```\nerror: ZeroDivisionError: division by zero" in context
    assert "%load_ext" not in context and "%claude" not in context
    assert sent[-1]["text"] == "What happened?"
    assert "Context: cells [2]-[3] · " in screen, screen
    assert "The second cell divided by zero." in screen
