"""Front ends at their edges: terminal IPython, plain Python, the command line, cell numbers."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nb_claude import _config
from nb_claude._panel import ChatPanel
from nb_claude.testing import DEMO_KEY, StandInServer

ROOT = Path(__file__).resolve().parent.parent


class Terminal:
    """Terminal IPython on a real pseudo-terminal, typed into line by line."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.primary, secondary = pty.openpty()
        # A new session has no controlling terminal, so getpass reads this pty, not ours.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "IPython", "--simple-prompt", "--no-banner",
             "--colors=NoColor", "--HistoryManager.enabled=False"],
            stdin=secondary, stdout=secondary, stderr=secondary, env=env, cwd=cwd,
            start_new_session=True)
        os.close(secondary)
        self.screen = ""

    def read_until(self, marker: str, timeout: float = 60) -> str:
        """Everything shown from now until `marker` (included)."""
        deadline = time.monotonic() + timeout
        while marker not in self.screen:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.primary], [], [], left)[0]:
                raise AssertionError(f"{marker!r} not shown; screen: {self.screen[-2000:]!r}")
            try:
                data = os.read(self.primary, 4096)
            except OSError:
                data = b""
            if not data:
                raise AssertionError(f"IPython ended before {marker!r}: {self.screen[-2000:]!r}")
            self.screen += data.decode("utf-8", "replace").replace("\r\n", "\n")
        shown, _, self.screen = self.screen.partition(marker)
        return shown + marker

    def type(self, line: str) -> None:
        os.write(self.primary, line.encode() + b"\n")

    def cell(self, line: str, number: int) -> str:
        """Type one cell and return what it showed, up to the next prompt."""
        self.type(line)
        return self.read_until(f"In [{number}]: ")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.type("exit")
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        os.close(self.primary)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Callable[[StandInServer], Terminal]]:
    started: list[Terminal] = []

    def start(server: StandInServer) -> Terminal:
        env = {k: v for k, v in os.environ.items() if k != "AIMLAPI_KEY"}
        env.update(NB_CLAUDE_BASE_URL=server.url, NB_CLAUDE_REPLAY="off", TERM="dumb",
                   IPYTHONDIR=str(tmp_path / "ipython"), MPLCONFIGDIR=str(tmp_path / "mpl"))
        term = Terminal(env, tmp_path)
        started.append(term)
        term.read_until("In [1]: ")
        return term

    yield start
    for term in started:
        term.close()


def test_terminal_ipython_shows_text_for_login_usage_history_and_refuses_the_panel(
        terminal: Callable[[StandInServer], Terminal]) -> None:
    with StandInServer(seed=3) as server:
        server.reply("Plain answer.", usage=(4, 6))
        term = terminal(server)
        term.cell("%load_ext nb_claude", 2)

        shown = term.cell("%claude Say something", 3)
        assert "UsageError: no API key: set AIMLAPI_KEY before starting IPython, or run " \
               "%claude_login\n" in shown
        assert "Jupyter" not in shown

        term.type("%claude_login")
        term.read_until("AI/ML API key: ")
        term.type(DEMO_KEY)
        shown = term.read_until("In [4]: ")
        assert "Key set for this session (kept in memory only)." in shown
        assert DEMO_KEY not in shown  # not echoed

        assert "Plain answer." in term.cell("%claude Say something", 5)
        usage = term.cell("%claude_usage", 6)
        assert "session: default, replies: 1, tokens in: 4, tokens out: 6, cost: " in usage
        history = term.cell("%claude_history", 7)
        assert "Conversation 'default'\n\n1. You: Say something\n\nClaude: Plain answer." in history

        chat = term.cell("%claude_chat", 8)
        echo, *said, prompt = [line for line in chat.splitlines() if line.strip()]
        assert (echo, prompt) == ("%claude_chat", "In [8]: ")
        assert said == ["UsageError: %claude_chat needs a notebook front end with widgets "
                        "(JupyterLab, Notebook or VS Code); here use %claude"]
        for screen in (usage, history, chat):
            assert "IPython.core.display" not in screen and "Traceback" not in screen
            assert "|---|" not in screen and "## " not in screen
        assert len(server.requests) == 1


def test_terminal_replay_miss_names_the_cell_it_ran_in(
        terminal: Callable[[StandInServer], Terminal], tmp_path: Path) -> None:
    (tmp_path / "nb_claude_replay.jsonl").write_text("")
    with StandInServer(seed=4) as server:
        term = terminal(server)
        term.cell("%load_ext nb_claude", 2)
        term.cell("x = 1", 3)
        shown = term.cell("%claude --replay replay Never recorded", 4)
        assert "no recorded reply for cell [3] ('Never recorded')" in shown
        assert server.requests == []


def test_the_python_api_outside_ipython_says_how_to_give_the_key() -> None:
    with StandInServer(seed=5) as server:
        env = {k: v for k, v in os.environ.items() if k != "AIMLAPI_KEY"}
        env.update(NB_CLAUDE_BASE_URL=server.url, NB_CLAUDE_REPLAY="off")
        code = ("import sys, nb_claude\nfrom nb_claude._errors import MissingKeyError\n"
                "try:\n    nb_claude.get_session().ask('hi', display=False)\n"
                "except MissingKeyError as exc:\n    print(exc)\n"
                "print('IPython' in sys.modules)\n")
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=60, cwd=ROOT)
    assert out.stdout.splitlines() == ["no API key: set AIMLAPI_KEY before starting Python",
                                       "False"], out.stderr
    assert server.requests == []


def test_the_command_line_prints_the_settings_to_paste() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "nb_claude.testing", "--port", "0"],
                               stdout=subprocess.PIPE, env=env)
    try:
        assert process.stdout is not None
        out, deadline = b"", time.monotonic() + 30
        while out.count(b"\n") < 4 and time.monotonic() < deadline:
            if select.select([process.stdout], [], [], 0.1)[0]:
                out += os.read(process.stdout.fileno(), 4096)
        lines = out.decode().splitlines()
        assert len(lines) == 4, lines
        url = lines[0]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", url)
        assert lines[2] == f"NB_CLAUDE_BASE_URL={url}"
        assert lines[3] == "AIMLAPI_KEY=offline"
        assert "any key works" in lines[1] and DEMO_KEY in lines[1]
        settings = dict(line.split("=", 1) for line in lines[2:])
        with httpx.Client(trust_env=False, headers={
                "authorization": f"Bearer {settings['AIMLAPI_KEY']}"}) as client:
            response = client.post(settings["NB_CLAUDE_BASE_URL"] + "/chat/completions", json={
                "model": "claude-opus-4-8", "max_tokens": 50,
                "messages": [{"role": "user", "content": "hi"}]})
        assert response.status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=5)


def test_the_stand_in_imports_nothing_else_from_the_package() -> None:
    code = ("import sys, nb_claude.testing\n"
            "print(sorted(m for m in sys.modules if m.startswith('nb_claude')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    loaded = eval(out.stdout)  # noqa: S307 - a list literal this test printed
    assert loaded[:2] == ["nb_claude", "nb_claude.testing"], out.stderr
    assert all(m.startswith("nb_claude.testing.") for m in loaded[2:]), loaded


# --- cell numbers in a real shell -------------------------------------------------------------


def test_a_strict_replay_miss_names_the_cell_it_ran_in(run: Any, server: StandInServer) -> None:
    _config.settings.update(replay_mode="auto")
    Path("nb_claude_replay.jsonl").write_text("")
    for _ in range(3):
        assert run("x = 1").result.success
    cell = run("%%claude --replay replay\nNever recorded")
    number = cell.result.execution_count
    assert f"no recorded reply for cell [{number}] ('Never recorded')" in str(cell.error)
    assert server.requests == []


def test_a_cell_that_is_not_kept_in_the_history_gets_no_number(ip: Any) -> None:
    from nb_claude._plots import running_cell_number

    seen: list[int | None] = []
    ip.user_ns["_seen"] = seen
    ip.user_ns["_number"] = running_cell_number
    kept = ip.run_cell("_seen.append(_number(get_ipython()))", store_history=True)
    ip.run_cell("_seen.append(_number(get_ipython()))", store_history=False)
    assert seen == [kept.execution_count, None]
    assert running_cell_number(ip) is None  # between cells


def test_a_cell_that_draws_a_plot_and_asks_about_it_names_its_own_number(
        ip: Any, run: Any, server: StandInServer) -> None:
    """Images shown while a cell runs belong to its In [N], also under IPython 9, where
    `execution_count` is already N + 1 then: `--plot` and `--plot N` both find them."""
    from IPython.core.pylabtools import select_figure_formats
    from matplotlib.figure import Figure

    from nb_claude import get_session

    draw = ("from IPython.display import display\nfrom matplotlib.figure import Figure\n"
            "fig = Figure(figsize=(2, 2)); fig.add_subplot().plot([1, 3, 2]); display(fig)\n")
    select_figure_formats(ip, {"png"})
    try:
        server.reply("A line.").reply("The same line.")
        cell = run(draw + "%claude --plot Describe the plot")
        assert cell.error is None, cell.error
        number = cell.result.execution_count
        assert [a.name for a in get_session().history[-1].attachments] == [f"plot [{number}]"]

        number = ip.execution_count  # the In [N] the next cell gets
        cell = run(draw + f"%claude --plot {number} Describe the plot")
        assert cell.error is None, cell.error
        assert cell.result.execution_count == number
        assert [a.name for a in get_session().history[-1].attachments] == [f"plot [{number}]"]
        sent = server.requests[-1].body["messages"][-1]["content"]
        assert [block["type"] for block in sent] == ["image", "text"]
    finally:
        ip.display_formatter.formatters["image/png"].pop(Figure, None)


# --- the chat panel ---------------------------------------------------------------------------


@pytest.fixture
def panel(configured: _config.Settings, ip: Any) -> Iterator[ChatPanel]:
    made = ChatPanel(shell=ip)
    yield made
    if made._thread is not None:
        made._thread.join(5)
    made.close()


def test_the_model_picker_lists_each_model_once(configured: _config.Settings) -> None:
    for model in ("anthropic/claude-opus-4-8", "claude-opus-4-8"):
        configured.update(model=model)
        made = ChatPanel(shell=None, plots=None)
        try:
            assert made.model.options == (("claude-opus-4-8", model),)
            assert made.model.value == model
        finally:
            made.close()
    configured.update(model="claude-sonnet-4-6")
    made = ChatPanel(shell=None, plots=None)
    try:
        assert [value for _, value in made.model.options] == ["claude-sonnet-4-6",
                                                              "anthropic/claude-opus-4-8"]
    finally:
        made.close()


def test_the_panels_last_plot_is_shrunk_to_max_image_edge(
        panel: ChatPanel, ip: Any, server: StandInServer, configured: _config.Settings) -> None:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (800, 400), "blue").save(buffer, format="PNG")
    ip.user_ns["png"] = buffer.getvalue()
    assert ip.run_cell("from IPython.display import Image as _I, display as _d\n_d(_I(data=png))",
                       store_history=True).success
    configured.update(max_image_edge=200)
    panel.attached = ["last plot"]
    server.reply("A blue rectangle.")
    panel.input.value = "what is this?"
    panel.send_button.click()
    deadline = time.monotonic() + 10
    while panel._thread is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert panel.error.value == ""
    (image,) = panel.session.history[-1].attachments
    assert max(image.width, image.height) == 200
    sent = [b for b in server.requests[-1].body["messages"][0]["content"] if b["type"] == "image"]
    assert len(sent) == 1


# --- %load_ext builds no argument parser --------------------------------------------------------


def test_parsers_are_built_on_first_use_and_the_help_still_lists_the_options(ip: Any) -> None:
    code = ("import IPython.core.magic_arguments as m\nbuilt = []\n"
            "real = m.construct_parser\n"
            "m.construct_parser = lambda f: built.append(f.__name__) or real(f)\n"
            "from IPython.core.interactiveshell import InteractiveShell\n"
            "shell = InteractiveShell.instance()\nshell.run_line_magic('load_ext', 'nb_claude')\n"
            "print(built)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "[]", out.stderr

    from IPython.utils.capture import capture_output

    from nb_claude._magics import ClaudeMagics

    assert "--plot [N]" in (ClaudeMagics.claude.__doc__ or "")
    assert "Ask Claude." in (ClaudeMagics.claude.__doc__ or "")
    with capture_output() as help_:
        ip.run_cell("%%claude?\n")
    assert "--max-tokens N" in help_.stdout and "Ask Claude." in help_.stdout
    assert "--session NAME" in (ClaudeMagics.claude_usage.__doc__ or "")
