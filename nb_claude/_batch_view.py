"""How a running batch shows its progress: a widget bar in notebooks, one rewritten text
line in terminal IPython, nothing where there is no display.

A view receives snapshots (numbers only) and, at the end, the engine's note; it never
reads items or replies. Every number is formatted here, and the note is escaped, so no
text from the data reaches the page as markup or the terminal as control characters.
"""

from __future__ import annotations

import html
import re
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol, TextIO

from ._config import redact

__all__ = ["BatchView", "NullView", "ProgressLike", "TerminalView", "WidgetView",
           "batch_metadata", "status_text", "summary_text", "view_for"]

INTERRUPT_COMMAND = "notebook:interrupt-kernel"  # JupyterLab 4 and Notebook 7
WIDGET_INTERVAL = 0.2  # seconds between bar updates: 5 a second
TERMINAL_INTERVAL = 0.25  # seconds between rewrites of the terminal line
_NOTE_LIMIT = 300

# The Stop button is shown only inside a JupyterLab or Notebook 7 notebook, where the
# application's CommandLinker turns a click on it into the interrupt command; elsewhere
# (VS Code, Colab, an output view) the hint names the front end's own interrupt button.
_STOP_CSS = (".nbc-batch-stop{display:none;margin-left:8px}"
             ".jp-NotebookPanel .nbc-batch-stop{display:inline-block}"
             ".jp-NotebookPanel .nbc-batch-hint{display:none}"
             ".nbc-batch-hint{margin-left:8px;opacity:.75}")
STOP_HTML = (f"<style>{_STOP_CSS}</style>"
             f"<button class='nbc-batch-stop jupyter-button mod-warning' type='button' "
             f"data-commandlinker-command='{INTERRUPT_COMMAND}' "
             "title='Interrupt the kernel: answers already received are kept'>■ Stop</button>"
             "<span class='nbc-batch-hint'>To stop: the front end's interrupt button "
             "(answers already received are kept)</span>")


class ProgressLike(Protocol):
    """The fields of the batch engine's progress snapshot that a view reads."""

    total: int
    done: int
    errors: int
    replayed: int
    in_flight: int
    concurrency: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    elapsed: float
    rate: float
    eta: float | None
    state: str
    estimated: bool  # the cost is an estimate, not a charge


class BatchView(Protocol):
    """What the engine drives: `update` comes at most ~10 times a second."""

    def start(self, progress: ProgressLike) -> None: ...

    def update(self, progress: ProgressLike) -> None: ...

    def finish(self, progress: ProgressLike, note: str) -> None: ...


# -- text ---------------------------------------------------------------------

def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return 0


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def duration(seconds: Any) -> str:
    """`9 s`, `2.5 s`, `1 min 05 s`, `2 h 03 min`."""
    value = _float(seconds)
    if value is None or value < 0:
        return "–"
    if value < 10:
        return f"{value:.1f} s"
    whole = round(value)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def _money(progress: ProgressLike) -> str:
    """The cost so far; `~$0.0119 (estimate)` when it is estimated, as the magic says it."""
    number = _float(progress.cost_usd)
    if number is None:
        return "$–"
    if getattr(progress, "estimated", False) is True:
        return f"~${number:,.4f} (estimate)"
    return f"${number:,.4f}"


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


def _tokens(progress: ProgressLike) -> str:
    return (f"{_int(progress.input_tokens):,} in / {_int(progress.output_tokens):,} out "
            "tokens")


def status_text(progress: ProgressLike) -> str:
    """The running line: done/total, rate, errors, in flight, tokens, cost, ETA."""
    done, total = _int(progress.done), _int(progress.total)
    parts = [f"{done:,}/{total:,}"]
    rate = _float(progress.rate)
    parts.append(f"{rate:,.1f}/s" if rate else "–/s")
    parts.append(_plural(_int(progress.errors), "error"))
    replayed = _int(progress.replayed)
    if replayed:
        parts.append(f"{replayed:,} replayed")
    parts.append(f"{_int(progress.in_flight)}/{_int(progress.concurrency)} in flight")
    parts.append(_tokens(progress))
    parts.append(_money(progress))
    eta = _float(progress.eta)
    parts.append(f"ETA {duration(eta)}" if eta is not None else "ETA –")
    return " · ".join(parts)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def clean_note(note: Any) -> str:
    """The engine's note as one line of plain text: no control characters, no key."""
    text = " ".join(_CONTROL.sub(" ", redact(str(note or ""))).split())
    return text if len(text) <= _NOTE_LIMIT else text[: _NOTE_LIMIT - 1] + "…"


_HEADS = {"finished": "Finished", "stopped": "Stopped", "failed": "Failed"}


def summary_text(progress: ProgressLike, note: str = "") -> str:
    """The one line a finished batch leaves: done, errors, replayed, tokens, cost, time, note."""
    head = _HEADS.get(str(progress.state), "Ended")
    done, total = _int(progress.done), _int(progress.total)
    parts = [f"{head}: {done:,}/{total:,} done", _plural(_int(progress.errors), "error")]
    if total > done:
        parts.append(f"{total - done:,} not run")
    parts += [f"{_int(progress.replayed):,} replayed", _tokens(progress), _money(progress),
              duration(progress.elapsed)]
    cleaned = clean_note(note)
    if cleaned:
        parts.append(cleaned)
    return " · ".join(parts)


# -- views --------------------------------------------------------------------

class Pace:
    """At most one update per `interval` seconds; the first always passes."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._next = float("-inf")

    def __repr__(self) -> str:
        return f"Pace(interval={self.interval})"

    def ready(self) -> bool:
        now = self.clock()
        if now < self._next:
            return False
        self._next = now + self.interval
        return True


class NullView:
    """Nowhere to show progress (a script with its output redirected, a test)."""

    def __repr__(self) -> str:
        return "NullView()"

    def start(self, progress: ProgressLike) -> None:
        return None

    def update(self, progress: ProgressLike) -> None:
        return None

    def finish(self, progress: ProgressLike, note: str) -> None:
        return None


class TerminalView:
    """One progress line rewritten in place with `\\r`, then the summary on its own line
    (or, with `last_line` False, the line blanked for the caller's own summary; a failed
    run still says so)."""

    def __init__(self, stream: TextIO | None = None, *, interval: float = TERMINAL_INTERVAL,
                 clock: Callable[[], float] = time.monotonic, width: int | None = None) -> None:
        self._stream = stream
        self.pace = Pace(interval, clock)
        self.width = width
        self.writes = 0
        self.last_line = True
        self._shown = 0  # characters of the line now on screen

    def __repr__(self) -> str:
        return f"TerminalView(writes={self.writes})"

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stdout

    def _columns(self) -> int:
        width = self.width or shutil.get_terminal_size((100, 24)).columns
        return max(20, width - 1)  # a line as wide as the terminal wraps, and \r then misses

    def _write(self, text: str, *, end: str = "") -> None:
        columns = self._columns()
        if len(text) > columns:
            text = text[: columns - 1] + "…"
        pad = " " * max(0, self._shown - len(text))
        self.stream.write(f"\r{text}{pad}{end}")
        self.stream.flush()
        self._shown = 0 if end else len(text)
        self.writes += 1

    def start(self, progress: ProgressLike) -> None:
        self.pace.ready()
        self._write(status_text(progress))

    def update(self, progress: ProgressLike) -> None:
        if self.pace.ready():
            self._write(status_text(progress))

    def finish(self, progress: ProgressLike, note: str) -> None:
        if self.last_line or progress.state == "failed":
            self._write(summary_text(progress, note), end="\n")
        elif self._shown:
            self.stream.write("\r" + " " * self._shown + "\r")
            self.stream.flush()
            self._shown = 0


class WidgetView:
    """A progress bar, a status line and Stop, updated in place through widget state.

    Stop is a plain HTML button that JupyterLab's CommandLinker turns into the notebook's
    interrupt command: the kernel is busy running the cell, so a widget callback would
    only arrive after the batch. At the end the whole display is replaced by the one-line
    summary, so a saved notebook keeps text, not a widget.
    """

    def __init__(self, *, interval: float = WIDGET_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        import ipywidgets as widgets

        self.pace = Pace(interval, clock)
        self.updates = 0
        self.handle: Any = None
        self.bar = widgets.IntProgress(value=0, min=0, max=1,
                                       layout=widgets.Layout(width="260px"))
        self.bar.add_class("nbc-batch-bar")
        self.status = widgets.HTML("")
        self.status.add_class("nbc-batch-status")
        self.stop = widgets.HTML(STOP_HTML)
        self.stop.add_class("nbc-batch-controls")
        self.box = widgets.HBox([self.bar, self.status, self.stop],
                                layout=widgets.Layout(align_items="center"))
        self.box.add_class("nbc-batch")

    def __repr__(self) -> str:
        return f"WidgetView(done={self.bar.value}, total={self.bar.max}, updates={self.updates})"

    def _show(self, progress: ProgressLike) -> None:
        total = _int(progress.total)
        with self.bar.hold_sync():
            self.bar.max = max(total, 1)
            self.bar.value = min(max(_int(progress.done), 0), max(total, 1))
            self.bar.bar_style = "danger" if _int(progress.errors) else ""
        self.status.value = f"<span>{html.escape(status_text(progress))}</span>"
        self.updates += 1

    def start(self, progress: ProgressLike) -> None:
        from IPython.display import display

        self.pace.ready()
        self._show(progress)
        self.handle = display(self.box, display_id=True)

    def update(self, progress: ProgressLike) -> None:
        if self.pace.ready():
            self._show(progress)

    def finish(self, progress: ProgressLike, note: str) -> None:
        text = summary_text(progress, note)
        mark = "✓" if progress.state == "finished" and not _int(progress.errors) else \
            "✗" if progress.state == "failed" else "■"
        bundle = {"text/html": f"<div class='nbc-batch-summary'>{mark} {html.escape(text)}</div>",
                  "text/plain": text}
        if self.handle is not None:
            self.handle.update(bundle, raw=True, metadata=batch_metadata(progress))
        for widget in (self.bar, self.status, self.stop, self.box):
            widget.close()


def batch_metadata(progress: ProgressLike) -> dict[str, Any]:
    """The summary output's metadata: how the batch ended, in numbers, for tools that read
    a saved notebook (`nb_claude verify`)."""
    total, done = _int(progress.total), _int(progress.done)
    state = str(progress.state) if progress.state in _HEADS else "ended"
    return {"nb_claude": {"batch": {
        "total": total, "done": done, "errors": _int(progress.errors),
        "replayed": _int(progress.replayed), "sent": _int(getattr(progress, "sent", 0)),
        "not_run": max(0, total - done), "state": state}}}


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def view_for(shell: Any) -> BatchView:
    """A widget bar in a kernel, a text line on a terminal, else nothing."""
    if shell is not None and getattr(shell, "kernel", None) is not None:
        return WidgetView()
    if _isatty(sys.stdout):
        return TerminalView()
    return NullView()
