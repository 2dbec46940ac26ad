"""The "Ask Claude" button under a traceback, and what a click shows in the same output area:
the explanation streamed as it is written, the fix as a diff against the failing cell, and
Insert below / Copy.

A click sends what `%claude_fix` sends (`_fix_flow.fix_request`) as an ordinary turn of the
default session, from a worker thread as the chat panel does, so the kernel stays free and
Stop works. The reply is untrusted text: its code is only extracted, shown escaped, and put
in the page as data for the front end's own commands; nothing here runs it.
"""

from __future__ import annotations

import functools
import html
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from ._config import redact
from ._errors import NbClaudeError
from ._panel import STOPPED
from ._render import (
    Throttle,
    live_placeholder,
    live_size,
    output_metadata,
    turn_markdown,
    turn_text,
)

__all__ = ["FixButton", "FixView", "actions_html"]

log = logging.getLogger("nb_claude")

# JupyterLab's and Notebook 7's CommandLinker runs `data-commandlinker-command` on click;
# apputils:run-all-enabled runs each command in turn. It passes `args` whole to every command
# (JupyterLab 4.6 never splits a list of per-command arguments), so one object serves both.
RUN_ALL = "apputils:run-all-enabled"
INSERT_COMMANDS = ("notebook:insert-cell-below", "notebook:replace-selection")
CANNOT_INSERT = "This front end cannot insert cells: use Copy and paste the code into a new cell."
_COPY_JS = ("navigator.clipboard.writeText(this.dataset.nbcCode).then("
            "() => { this.textContent = 'Copied'; }, "
            "() => { this.textContent = 'Copy failed: select the code above'; });")
_BUTTON = "jupyter-widgets jupyter-button widget-button"
_BUTTON_STYLE = "width:auto;padding:0 12px"

_shared: dict[str, Any] = {}


def _shared_parts() -> tuple[widgets.Layout, widgets.Layout, widgets.ButtonStyle]:
    """The layouts and the style every button shares: a failing cell then opens two widget
    models (the box and its button), not six."""
    if not _shared:
        _shared["box"] = widgets.Layout()
        _shared["button"] = widgets.Layout(width="auto", align_self="flex-start")
        _shared["style"] = widgets.ButtonStyle()
    return _shared["box"], _shared["button"], _shared["style"]


def actions_html(code: str, *, inserts_cells: bool) -> str:
    """Insert below (the front end's own commands, the code as their argument) and Copy (the
    code as a data attribute); every value escaped, so the code stays data."""
    parts = []
    if inserts_cells:
        args = json.dumps({"commands": list(INSERT_COMMANDS), "args": {"text": code}})
        parts.append(
            f'<button type="button" class="{_BUTTON} mod-primary nbc-fix-insert" '
            f'style="{_BUTTON_STYLE}" '
            f'data-commandlinker-command="{RUN_ALL}" '
            f'data-commandlinker-args="{html.escape(args, quote=True)}" '
            'title="Put the fixed code in a new cell below this one, not run">'
            "Insert below</button>")
    parts.append(
        f'<button type="button" class="{_BUTTON} nbc-fix-copy" style="{_BUTTON_STYLE}" '
        f'data-nbc-code="{html.escape(code, quote=True)}" '
        f'onclick="{html.escape(_COPY_JS, quote=True)}" '
        'title="Copy the fixed code to the clipboard">Copy</button>')
    if not inserts_cells:
        parts.append(f'<span class="nbc-fix-note">{html.escape(CANNOT_INSERT)}</span>')
    return ('<div class="nbc-fix-actions" style="display:flex;gap:8px;align-items:center;'
            'margin:6px 0 2px">' + "".join(parts) + "</div>")


class FixView:
    """Shows the fix turn in an Output widget as it streams: the chat panel's way (outputs set
    directly, so the worker thread may update them), throttled, with a trailing render so a
    pause in the stream never leaves old text showing."""

    def __init__(self, out: widgets.Output, rate: float) -> None:
        self.out = out
        self.throttle = Throttle(rate)
        self.renders = 0
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._turn: Any = None
        self._over = False  # stopped or finished: no more live renders

    def __repr__(self) -> str:
        return f"FixView(renders={self.renders}, over={self._over})"

    def start(self, turn: Any) -> None:
        with self._lock:
            self._turn = turn
            self._render(turn, live=True)

    def update(self, turn: Any, *, force: bool = False) -> None:
        with self._lock:
            self._turn = turn
            if self._over:
                return
            wait = self.throttle.wait()
            if force or (wait <= 0 and self.throttle.fits(live_size(turn))):
                self._cancel()
                self._render(turn, live=True)
            elif self._timer is None:
                self._timer = threading.Timer(max(wait, 0.05), self._flush)
                self._timer.daemon = True
                self._timer.start()

    def finish(self, turn: Any) -> None:
        with self._lock:
            self._cancel()
            self._over = True
            self._render(turn, live=False)

    def fail(self, turn: Any, exc: BaseException) -> None:
        with self._lock:
            self._cancel()
            self._over = True
            self.out.outputs = ()

    def freeze(self) -> None:
        """Stop: show what came so far, marked interrupted, before the thread has wrapped up."""
        with self._lock:
            self._cancel()
            if self._turn is not None and not self._over:
                self._over = True
                self._show(turn_markdown(self._turn, live=False, with_footer=False)
                           + "\n\n" + STOPPED, turn_text(self._turn), {})

    def _flush(self) -> None:
        with self._lock:
            self._timer = None
            if not self._over and self._turn is not None:
                self._render(self._turn, live=True)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _render(self, turn: Any, *, live: bool) -> None:
        if live:
            markdown, text, metadata = turn_markdown(turn, live=True), live_placeholder(turn), {}
        else:
            markdown, text = turn_markdown(turn), turn_text(turn)
            metadata = output_metadata(turn)
            if turn.interrupted:
                markdown += "\n\n" + STOPPED
        self._show(markdown, text, metadata)

    def _show(self, markdown: str, text: str, metadata: dict[str, Any]) -> None:
        self.renders += 1
        self.out.outputs = ({"output_type": "display_data", "metadata": metadata,
                             "data": {"text/markdown": markdown, "text/plain": text}},)
        self.throttle.record(len(markdown) + len(text))


class FixButton(widgets.VBox):
    """One "Ask Claude" button for the failing cell [number]; a click streams the fix below it.

    Clicked twice, it sends once; Stop keeps the partial explanation, marked interrupted;
    a failure before any reply (no key, no such cell) shows one line and the button again.
    """

    def __init__(self, shell: Any, number: int, *, session: str = "default") -> None:
        box, layout, style = _shared_parts()
        self.shell = shell
        self.number = number
        self.session_name = session
        self.state = "ready"  # ready -> asking -> done (or back to ready after a failure)
        self.reply: Any = None
        self.view: FixView | None = None
        self._lock = threading.RLock()
        self._token: Any = None
        self._thread: threading.Thread | None = None
        self.ask_button = widgets.Button(
            description="Ask Claude", icon="comment", layout=layout, style=style,
            tooltip="Ask Claude to explain this error and fix the cell (sends the cell, the "
                    "error and the cells before it)",
            _dom_classes=("nbc-ask",))
        self.ask_button.on_click(self._ask)
        super().__init__([self.ask_button], layout=box, _dom_classes=("nbc-fix",))
        self.explanation: widgets.Output | None = None
        self.stop_button: widgets.Button | None = None
        self.message: widgets.HTML | None = None
        self.diff: widgets.HTML | None = None
        self.actions: widgets.HTML | None = None

    def __repr__(self) -> str:
        return f"FixButton(cell [{self.number}], {self.state})"

    # -- clicks (the kernel's main thread) -------------------------------------
    def _ask(self, _button: Any = None) -> None:
        with self._lock:
            if self.state != "ready":
                return
            self.state = "asking"
        self.ask_button.disabled = True
        try:
            self._start()
        except Exception as exc:  # a widget callback must never die silently
            log.exception("the error button's request could not start")
            self._failed(f"unexpected {type(exc).__name__}: see the kernel log")

    def _start(self) -> None:
        from IPython.core.error import UsageError

        from ._capture import recorder_for
        from ._client import CancelToken
        from ._fix_flow import fix_request
        from ._interrupts import on_interrupt
        from ._session import get_session

        try:
            session = get_session(self.session_name)
            recorder = recorder_for(self.shell)
            record, request, context = fix_request(self.shell, recorder, session,
                                                   number=self.number)
        except (UsageError, NbClaudeError, ValueError) as exc:
            self._failed(str(exc))
            return
        assert recorder is not None  # fix_request refuses a missing recorder
        on_sent = functools.partial(recorder.mark, session.name, recorder.newest)
        if self.explanation is None:
            self.explanation = widgets.Output(_dom_classes=("nbc-fix-reply",))
            self.stop_button = widgets.Button(description="Stop", icon="stop",
                                              button_style="warning",
                                              layout=_shared_parts()[1],
                                              tooltip="Stop the reply",
                                              _dom_classes=("nbc-fix-stop",))
            self.stop_button.on_click(self._stop)
        assert self.stop_button is not None
        self.stop_button.disabled = False
        self.view = FixView(self.explanation, session.settings.updates_per_second)
        self._token = token = CancelToken()
        self.children = (self.ask_button, self.explanation, self.stop_button)
        forget = on_interrupt(self._stop, getattr(self.shell, "kernel", None))
        self._thread = threading.Thread(
            target=self._run, args=(session, request.prompt, context, record.code, token,
                                    on_sent, forget),
            name=f"nb_claude-fix-{self.number}", daemon=True)
        self._thread.start()

    def _stop(self, _button: Any = None) -> None:
        """End the reply now; the explanation so far stays, marked interrupted."""
        with self._lock:
            token, view = self._token, self.view
            if token is None:
                return
            token.cancel()
            if view is not None:
                view.freeze()
            if self.stop_button is not None:
                self.stop_button.disabled = True

    # -- the request (a worker thread) ------------------------------------------
    def _run(self, session: Any, prompt: str, context: dict[str, Any], old: str, token: Any,
             on_sent: Any, forget: Callable[[], None] = lambda: None) -> None:
        try:
            reply = session.ask(prompt, source="fix", view=self.view, display=False,
                                label=f"fix [{self.number}]", context=context,
                                on_sent=on_sent, cancel=token,
                                namespace=getattr(self.shell, "user_ns", None))
        except NbClaudeError as exc:
            self._failed(str(exc))
            return
        except Exception as exc:
            log.exception("the error button's request failed")
            self._failed(f"unexpected {type(exc).__name__}: see the kernel log")
            return
        finally:
            forget()
            with self._lock:
                self._token = None
            self._remove(self.stop_button)
        with self._lock:
            self.reply = reply
            self.state = "done"
        self.ask_button.description = "Asked Claude"
        if reply.error:
            self._note(reply.error)
        elif not reply.interrupted:
            self._offer(old, reply.text)

    def _offer(self, old: str, reply_text: str) -> None:
        from ._fix import diff_html, proposed_code
        from ._fix_flow import NO_CODE, UNCHANGED
        from ._magics import _front_end_inserts_cells

        new = proposed_code(reply_text)
        if new is None or new.strip() == old.strip():
            self._note(NO_CODE if new is None else UNCHANGED)
            return
        self.diff = widgets.HTML(diff_html(old, new), _dom_classes=("nbc-fix-diff",))
        self.actions = widgets.HTML(
            actions_html(new, inserts_cells=_front_end_inserts_cells(self.shell)),
            _dom_classes=("nbc-fix-actions-box",))
        self.children = tuple([*self.children, self.diff, self.actions])

    # -- messages -----------------------------------------------------------------
    def _failed(self, message: str) -> None:
        """Nothing was asked (or the request failed): say why; the button works again."""
        self._note("⚠ " + message, error=True)
        with self._lock:
            self.state = "ready"
        self.ask_button.disabled = False

    def _note(self, text: str, *, error: bool = False) -> None:
        color = "var(--jp-error-color1, #c62828)" if error else "var(--jp-ui-font-color2, #666)"
        value = (f'<span style="color:{color};font-size:13px">'
                 f"{html.escape(redact(text))}</span>")
        if self.message is None:
            self.message = widgets.HTML(value, _dom_classes=("nbc-fix-message",))
        else:
            self.message.value = value
        if self.message not in self.children:
            self.children = tuple([*self.children, self.message])

    def _remove(self, child: widgets.Widget | None) -> None:
        if child is not None and child in self.children:
            self.children = tuple(c for c in self.children if c is not child)
