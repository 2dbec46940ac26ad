"""The batch progress views: the terminal line, the widget bar, throttling, escaping and
the no-op view. The views read snapshots only; these tests build them by hand."""

from __future__ import annotations

import dataclasses
import glob
import io
import os
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from test_terminal import terminal_ipython

from nb_claude import _batch_view
from nb_claude._batch_view import (
    INTERRUPT_COMMAND,
    NullView,
    TerminalView,
    WidgetView,
    status_text,
    summary_text,
    view_for,
)
from nb_claude.testing import StandInServer

SENTINEL_KEY = "sk-nbc-SENTINEL-7f3a9c2e41"


@dataclasses.dataclass
class Snap:
    """The shape of the engine's progress snapshot."""

    total: int = 40
    done: int = 0
    errors: int = 0
    replayed: int = 0
    in_flight: int = 0
    concurrency: int = 4
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    elapsed: float = 0.0
    rate: float = 0.0
    eta: float | None = None
    state: str = "running"
    estimated: bool = False


def snap_at(done: int, **changes: Any) -> Snap:
    values: dict[str, Any] = dict(done=done, in_flight=min(4, 40 - done), input_tokens=30 * done,
                                  output_tokens=12 * done, cost_usd=0.0011 * done,
                                  elapsed=done / 8, rate=8.0, eta=(40 - done) / 8)
    values.update(changes)
    return Snap(**values)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# -- text -------------------------------------------------------------------------

def test_the_status_line_holds_every_figure() -> None:
    line = status_text(snap_at(12, errors=1, replayed=3, input_tokens=12_345))
    assert line == ("12/40 · 8.0/s · 1 error · 3 replayed · 4/4 in flight · "
                    "12,345 in / 144 out tokens · $0.0132 · ETA 3.5 s")
    assert status_text(Snap()) == "0/40 · –/s · 0 errors · 0/4 in flight · " \
                                  "0 in / 0 out tokens · $0.0000 · ETA –"
    assert "ETA 2 min 05 s" in status_text(snap_at(1, eta=125.0))


def test_the_summary_says_how_the_batch_ended() -> None:
    done = snap_at(40, state="finished", errors=2, replayed=10, elapsed=73.0, in_flight=0)
    assert summary_text(done, "saved to labels") == (
        "Finished: 40/40 done · 2 errors · 10 replayed · 1,200 in / 480 out tokens · "
        "$0.0440 · 1 min 13 s · saved to labels")
    stopped = summary_text(snap_at(17, state="stopped"), "stopped: 17 of 40 kept")
    assert stopped.startswith("Stopped: 17/40 done · ") and stopped.endswith("17 of 40 kept")


def test_an_estimated_cost_reads_as_an_estimate_everywhere() -> None:
    estimate = snap_at(12, estimated=True)
    assert " · ~$0.0132 (estimate) · ETA" in status_text(estimate)
    assert " · ~$0.0132 (estimate) · " in summary_text(snap_at(12, estimated=True,
                                                               state="finished"))
    assert "~" not in status_text(snap_at(12)) and "estimate" not in status_text(snap_at(12))
    assert "estimate" not in status_text(snap_at(12, estimated="yes"))  # a flag, not text


def test_a_failed_run_and_rows_not_run_are_said() -> None:
    failed = summary_text(snap_at(25, state="failed"), "failed: RuntimeError: disk full")
    assert failed.startswith("Failed: 25/40 done · 0 errors · 15 not run · ")
    assert failed.endswith("failed: RuntimeError: disk full")
    assert "not run" not in summary_text(snap_at(40, state="finished"))


def test_a_terminal_line_can_leave_the_summary_to_its_caller() -> None:
    stream = io.StringIO()
    view = TerminalView(stream, interval=0, width=200)
    view.last_line = False
    view.start(snap_at(0))
    view.update(snap_at(20))
    view.finish(snap_at(40, state="finished"), "40 items, 0 errors")
    shown = stream.getvalue()
    assert "Finished" not in shown and shown.endswith("\r" + " " * len(status_text(
        snap_at(20))) + "\r")  # the progress line blanked, the cursor at its start
    failing = io.StringIO()
    view = TerminalView(failing, interval=0, width=200)
    view.last_line = False
    view.start(snap_at(0))
    view.finish(snap_at(3, state="failed"), "failed: RuntimeError: boom")
    assert failing.getvalue().endswith("failed: RuntimeError: boom\n")  # a failure still says so


def test_numbers_only_whatever_the_snapshot_carries() -> None:
    odd = Snap(total="<b>40</b>", done=float("nan"), errors=None, rate="fast",  # type: ignore[arg-type]
               cost_usd=float("inf"), eta=float("nan"), state="<script>")
    line, summary = status_text(odd), summary_text(odd)
    assert line == "0/0 · –/s · 0 errors · 0/4 in flight · 0 in / 0 out tokens · $– · ETA –"
    assert summary.startswith("Ended: 0/0 done")
    assert "<" not in line + summary and "fast" not in line


def test_the_note_is_one_plain_line_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIMLAPI_KEY", SENTINEL_KEY)
    note = (f"stopped <script>alert(1)</script>\x1b[31m red\x1b[0m\r\nnext"
            f"\u2028line key={SENTINEL_KEY} " + "x" * 500)
    cleaned = _batch_view.clean_note(note)
    assert "\x1b" not in cleaned and "\r" not in cleaned and "\n" not in cleaned
    assert "\u2028" not in cleaned and SENTINEL_KEY not in cleaned
    assert cleaned.startswith("stopped <script>alert(1)</script> [31m red [0m next line key=")
    assert len(cleaned) == 300 and cleaned.endswith("…")


# -- terminal -----------------------------------------------------------------------

def test_the_terminal_line_is_rewritten_in_place_a_few_times_a_second() -> None:
    clock, out = Clock(), io.StringIO()
    view = TerminalView(out, clock=clock, width=200)
    view.start(Snap())
    for done in range(1, 41):  # the engine's 10 updates a second for 4 s
        clock.now += 0.1
        view.update(snap_at(done))
    view.finish(snap_at(40, state="finished", in_flight=0), "done")
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    lines = text.split("\r")[1:]
    assert 12 <= len(lines) - 2 <= 16  # at most 4 a second over 4 s, plus start and finish
    assert lines[0].startswith("0/40 · ") and lines[-1].startswith("Finished: 40/40 done")
    shown = [int(re.match(r"(\d+)/40", line)[1]) for line in lines[1:-1]]  # type: ignore[index]
    assert shown == sorted(shown) and shown[-1] >= 37
    assert view.writes == len(lines)


def test_a_shorter_line_blanks_out_the_longer_one_and_long_lines_never_wrap() -> None:
    out = io.StringIO()
    view = TerminalView(out, width=100, interval=0)
    view.start(snap_at(10, input_tokens=10**9, output_tokens=10**9))
    first = out.getvalue()
    assert len(first) == 1 + 99 and first.endswith("…")  # \r + one column short of the width
    view.update(Snap(total=1, concurrency=1))
    second = out.getvalue()[len(first):]
    assert len(second) == len(first)  # padded with spaces over what the first line left
    assert second.rstrip(" ").endswith("ETA –")


def test_terminal_ipython_gets_the_line_on_a_real_terminal(tmp_path: Path) -> None:
    """`nb_claude.map` in terminal IPython on a pty: the line is rewritten in place while
    the items come in, then the summary stays on a line of its own."""
    code = ("import nb_claude\n"
            "r = nb_claude.map('Label this: {}', [f'item {i}' for i in range(16)], "
            "concurrency=2, confirm=True)\n"
            "print('rows', len(r), r.attrs['nb_claude']['state'])\n")
    with StandInServer(seed=15, quirks=False, latency=0.15) as server:
        screen = terminal_ipython(tmp_path, server.url, code=code, env={"COLUMNS": "150"})
        sent = len(server.requests)
    assert sent == 16
    lines = [line for line in screen.split("\n") if "\r" in line]
    assert len(lines) == 1, screen  # one line, rewritten
    rewrites = lines[0].split("\r")[1:]
    assert 3 <= len(rewrites) <= 12, rewrites  # 1.2 s at most 4 a second, + start and end
    assert rewrites[0].startswith("0/16 · ")
    shown = [int(re.match(r"(\d+)/16", r)[1]) for r in rewrites[1:-1]]  # type: ignore[index]
    assert shown == sorted(shown) and 0 < shown[-1] < 16
    assert rewrites[-1].startswith("Finished: 16/16 done · 0 errors · 0 replayed · ")
    assert screen.split("\n")[screen.split("\n").index(lines[0]) + 1] == "rows 16 finished"




# -- where there is no display ------------------------------------------------------------

class FakeKernelShell:
    kernel = object()


def test_view_for_picks_by_front_end(capsys: pytest.CaptureFixture[str]) -> None:
    assert isinstance(view_for(FakeKernelShell()), WidgetView)
    view = view_for(None)  # pytest's captured stdout is no terminal
    assert isinstance(view, NullView)
    view.start(Snap())
    view.update(snap_at(3))
    view.finish(snap_at(40, state="finished"), "note")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_terminal_ipython_without_a_terminal_shows_nothing(_shell: Any) -> None:
    from IPython.utils.capture import capture_output

    with capture_output() as captured:
        view = view_for(_shell)
        view.start(Snap())
        view.finish(snap_at(40, state="finished"), "")
    assert isinstance(view, NullView)
    assert captured.stdout == "" and captured.outputs == []


# -- the widget bar -----------------------------------------------------------------

def test_the_bar_shows_the_latest_snapshot_at_most_once_an_interval(_shell: Any) -> None:
    from IPython.utils.capture import capture_output

    clock = Clock()
    with capture_output() as captured:
        view = WidgetView(clock=clock, interval=0.25)
        view.start(Snap())
        assert (view.bar.value, view.bar.max) == (0, 40)
        for done in range(1, 21):  # the engine's updates, 8 a second (exact binary ticks)
            clock.now = 100 + done * 0.125
            view.update(snap_at(done, errors=1 if done > 15 else 0))
            if done == 7:
                assert view.bar.value == 6  # 0.125 s after the last shown: held back
    assert view.updates == 11  # start + one every 0.25 s
    assert view.bar.value == 20 and view.bar.bar_style == "danger"
    assert "20/40 · 8.0/s · 1 error · 4/4 in flight · 600 in / 240 out tokens · $0.0220 · " \
           "ETA 2.5 s" in view.status.value
    assert len(captured.outputs) == 1  # one display; the rest is widget state
    assert {"nbc-batch"} <= set(view.box._dom_classes)
    assert "nbc-batch-status" in view.status._dom_classes


def test_the_finished_bar_becomes_a_one_line_summary(_shell: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from IPython.utils.capture import capture_output

    monkeypatch.setenv("AIMLAPI_KEY", SENTINEL_KEY)

    view = WidgetView(interval=0)
    published: list[tuple[Any, dict[str, Any]]] = []
    with capture_output():
        view.start(Snap())
        assert view.handle is not None
        view.handle.update = lambda obj, **kw: published.append((obj, kw))
        view.update(snap_at(30))
        note = f"stopped <img src=x onerror=alert(1)> & kept 30 {SENTINEL_KEY}"
        view.finish(snap_at(30, state="stopped", replayed=5), note)
    ((bundle, kw),) = published
    assert kw == {"raw": True, "metadata": {"nb_claude": {"batch": {
        "total": 40, "done": 30, "errors": 0, "replayed": 5, "sent": 0, "not_run": 10,
        "state": "stopped"}}}}
    text = bundle["text/plain"]
    assert text.startswith("Stopped: 30/40 done · 0 errors · 10 not run · 5 replayed · ")
    assert "<img src=x onerror=alert(1)>" in text and SENTINEL_KEY not in text
    html_out = bundle["text/html"]
    assert html_out.startswith("<div class='nbc-batch-summary'>■ Stopped: 30/40 done")
    assert "<img" not in html_out and "&lt;img src=x onerror=alert(1)&gt; &amp; kept 30" in html_out
    assert view.bar.comm is None and view.box.comm is None  # the widgets are closed


def test_the_stop_button_runs_jupyterlabs_interrupt_command() -> None:
    """The button's command is the interrupt command of the installed JupyterLab, shown
    only inside a notebook panel; the hint stands in elsewhere."""
    assert f"data-commandlinker-command='{INTERRUPT_COMMAND}'" in _batch_view.STOP_HTML
    assert ".jp-NotebookPanel .nbc-batch-stop{display:inline-block}" in _batch_view.STOP_HTML
    assert ".jp-NotebookPanel .nbc-batch-hint{display:none}" in _batch_view.STOP_HTML
    bundles = glob.glob(os.path.join(sys.prefix, "share/jupyter/lab/static/jlab_core.*.js"))
    if not bundles:
        pytest.skip("JupyterLab is not installed in this environment")
    source = Path(bundles[0]).read_text(encoding="utf-8", errors="replace")
    assert f'interrupt="{INTERRUPT_COMMAND}"' in source
    assert '"commandlinker-command"' in source


@pytest.mark.kernel
def test_in_a_kernel_the_bar_moves_by_widget_state_not_new_outputs(tmp_path: Path) -> None:
    from kernel_harness import KernelSession

    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_batch_view import snap_at
        from nb_claude._batch_view import view_for
        view = view_for(get_ipython())
        view.start(snap_at(0))
        for done in range(1, 21):
            time.sleep(0.05)
            view.update(snap_at(done))
        view.finish(snap_at(20, state="stopped"), "stopped <b>early</b>")
        print(type(view).__name__, view.updates)
    """)
    with KernelSession(cwd=tmp_path) as kernel:
        result = kernel.execute(code)
    assert result.error is None, result.error
    name, updates = result.stream().split()
    assert name == "WidgetView" and 5 <= int(updates) <= 8  # 1 s at 5 a second, + start, end
    assert result.count_of("display_data") == 1
    assert result.count_of("update_display_data") == 1
    states = [m["content"]["data"]["state"] for m in result.messages
              if m["header"]["msg_type"] == "comm_msg"
              and m["content"]["data"].get("method") == "update"]
    values = [s["value"] for s in states if isinstance(s.get("value"), int)]
    assert values == sorted(values) and values[-1] >= 15 and len(values) >= 4
    (output,) = [o for o in result.outputs if o["output_type"] == "display_data"]
    assert "widget-view" not in str(output["data"])
    assert output["data"]["text/plain"].startswith("Stopped: 20/40 done")
    assert "stopped &lt;b&gt;early&lt;/b&gt;" in output["data"]["text/html"]
