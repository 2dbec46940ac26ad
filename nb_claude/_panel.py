"""The chat panel: an ipywidgets front end over the same Session as the magics.

Requests run in a daemon thread, so Stop (a comm message the kernel's main
thread handles) works while a reply streams, and other cells can still run.
Every panel renders from the session's events, so turns made by cells, by
Python code or by another panel appear in all of them. `ChatPanel` wires three
parts: a `TranscriptView` here, and the input bar and attach picker of `_panel_parts`.
"""

from __future__ import annotations

import functools
import html
import logging
import threading
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from ._config import redact
from ._errors import NbClaudeError
from ._panel_parts import AttachPicker, InputBar, attachable_names
from ._render import Throttle, live_placeholder, live_size
from ._session import (
    Session,
    Turn,
    get_session,
    notebook_context,
    prompt_references,
    recorder_for,
    with_missing,
)

__all__ = ["ChatPanel", "TranscriptView", "attachable_names"]

log = logging.getLogger("nb_claude")

STOPPED = "<sub>⏹ interrupted</sub>"

_STYLE = """<style>
.nbc-panel { border: 1px solid var(--jp-border-color1, #ccc); border-radius: 6px;
  padding: 6px 10px 8px; max-width: 980px; background: var(--jp-layout-color0, #fff); }
.nbc-header { align-items: center; border-bottom: 1px solid var(--jp-border-color2, #e0e0e0);
  padding-bottom: 4px; margin-bottom: 4px; }
.nbc-title { flex: 1 1 auto; }
.nbc-scroll { border-radius: 4px; }
.nbc-turn { border-bottom: 1px solid var(--jp-border-color3, #eee); padding: 2px 0 6px; }
.nbc-turn .jp-OutputArea-prompt { display: none; }
.nbc-empty { color: var(--jp-ui-font-color2, #777); font-style: italic; padding: 8px 0; }
.nbc-status { color: var(--jp-ui-font-color2, #777); font-size: 12px; min-height: 18px; }
.nbc-error { color: var(--jp-error-color1, #c62828); font-size: 13px; }
.nbc-input textarea { font-family: var(--jp-ui-font-family, inherit); font-size: 14px; }
.nbc-chip { font-size: 12px; }
.nbc-controls { align-items: center; }
</style>"""


class TranscriptView(widgets.Box):
    """The session's turns, one Output each, and the turn in flight rendered live.

    Live renders go through a `Throttle`, with a trailing render on a timer so a pause
    in the stream never leaves old text showing. Callers hold `lock` around every call.
    """

    def __init__(self, session: Session, lock: threading.RLock) -> None:
        self.session = session
        self.lock = lock
        self.renders = 0  # live (throttled) renders, for tests and diagnostics
        self.live: Turn | None = None
        self.live_slot: widgets.Output | None = None
        self._slots: list[widgets.Output] = []
        self._shown: dict[int, str] = {}  # id(Output) -> markdown it shows
        self._stopped: set[int] = set()
        self._throttle = Throttle(session.settings.updates_per_second)
        self._timer: threading.Timer | None = None
        self.entries = widgets.VBox(layout=widgets.Layout(flex="0 0 auto"))
        self.entries.add_class("nbc-transcript")
        self._empty = widgets.HTML("No turns yet: ask something below, or run a "
                                   "<code>%%claude</code> cell.")
        self._empty.add_class("nbc-empty")
        # column-reverse keeps the view pinned to the newest turn as content grows.
        super().__init__([self.entries], layout=widgets.Layout(
            display="flex", flex_flow="column-reverse", overflow="auto", max_height="460px"))
        self.add_class("nbc-scroll")

    def __repr__(self) -> str:
        return f"TranscriptView(entries={len(self._slots)}, live={self.live is not None})"

    @property
    def markdown(self) -> list[str]:
        """The Markdown each transcript entry shows, oldest first."""
        return [self._shown.get(id(slot), "") for slot in self.entries.children
                if isinstance(slot, widgets.Output)]

    def sync(self) -> None:
        """Show the session's history; drops the live slot."""
        history = list(self.session.history)
        live = self.live_slot
        if live is not None and live not in self._slots and len(history) > len(self._slots):
            self._slots.append(live)  # the finished turn keeps its element: no flicker
        while len(self._slots) < len(history):
            self._slots.append(self._new_slot())
        for slot in self._slots[len(history):]:
            self._shown.pop(id(slot), None)
            slot.close()
        del self._slots[len(history):]
        for slot, turn in zip(self._slots, history, strict=True):
            self._show(slot, _turn_markdown(turn, live=False), _turn_text(turn))
        if self.live_slot is not None and self.live_slot not in self._slots:
            self._shown.pop(id(self.live_slot), None)
            self.live_slot.close()
        self.live_slot = None
        self._layout()

    def begin(self, turn: Turn) -> None:
        """Show `turn` as the live one; a re-run cell streams into its old turn's place."""
        self._cancel_timer()
        self.live = turn
        slot = None
        if turn.cell_id is not None:
            for index, old in enumerate(self.session.history):
                if old.cell_id == turn.cell_id and index < len(self._slots):
                    slot = self._slots[index]
        self.live_slot = slot or self._new_slot()
        self._layout()
        self._throttle = Throttle(self.session.settings.updates_per_second)
        self._render_live(force=True)

    def update(self) -> None:
        """The live turn grew: render now if the throttle allows, else on a timer."""
        if self.live is None or id(self.live) in self._stopped:
            return
        wait = self._throttle.wait()
        if wait <= 0:
            self._cancel_timer()
            self._render_live()
        elif self._timer is None:
            self._timer = threading.Timer(wait, self._flush)
            self._timer.daemon = True
            self._timer.start()

    def freeze(self) -> None:
        """Mark the live turn interrupted now, before its thread has wrapped up."""
        if self.live is not None:
            self._cancel_timer()
            self._stopped.add(id(self.live))
            self._render_live(force=True)

    def end(self, turn: Turn | None) -> None:
        """The live turn is over (recorded or not): show the history as it is."""
        self._cancel_timer()
        if turn is not None:
            self._stopped.discard(id(turn))
        self.live = None
        self.sync()

    def close(self) -> None:
        with self.lock:
            self._cancel_timer()
        super().close()

    def _show(self, slot: widgets.Output, markdown: str, text: str) -> None:
        if self._shown.get(id(slot)) == markdown:
            return
        self._shown[id(slot)] = markdown
        slot.outputs = ({"output_type": "display_data", "metadata": {},
                         "data": {"text/markdown": markdown, "text/plain": text}},)

    def _new_slot(self) -> widgets.Output:
        slot = widgets.Output()
        slot.add_class("nbc-turn")
        return slot

    def _layout(self) -> None:
        children: list[widgets.Widget] = list(self._slots)
        if self.live_slot is not None and self.live_slot not in children:
            children.append(self.live_slot)
        if not children:
            children = [self._empty]
        if tuple(children) != self.entries.children:
            self.entries.children = tuple(children)

    def _render_live(self, *, force: bool = False) -> None:
        """Show the turn in flight, within the throttle's budget."""
        turn = self.live
        if turn is None or self.live_slot is None:
            return
        self._timer = None
        stopped = id(turn) in self._stopped
        force = force or stopped
        if not force and not self._throttle.fits(live_size(turn)):
            self._throttle.skip()
            return
        if stopped:
            markdown = _turn_markdown(turn, live=False, footer=False) + "\n\n" + STOPPED
            text = _turn_text(turn)
        else:
            markdown = _turn_markdown(turn, live=True)
            text = live_placeholder(turn)
        size = len(markdown) + len(text)
        if not force and not self._throttle.fits(size):
            self._throttle.skip()
            return
        self.renders += 1
        self._show(self.live_slot, markdown, text)
        self._throttle.record(size)

    def _flush(self) -> None:
        with self.lock:
            if self._timer is not None:
                self._render_live()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class ChatPanel(widgets.VBox):
    """A chat over one session: wires a transcript view, an input bar and an attach picker
    to the session (events, a request thread, Stop, New, errors)."""

    def __init__(self, session: Session | str | None = None, *, shell: Any = None,
                 plots: Any = None, recorder: Any = None, **kwargs: Any) -> None:
        if not isinstance(session, Session):
            session = get_session(session or "default")
        self.session = session
        self.shell = shell if shell is not None else _current_shell()
        self.plots = plots if plots is not None else _plot_recorder(self.shell)
        self.recorder = recorder if recorder is not None else recorder_for(self.shell)
        self._lock = threading.RLock()
        self._own: Turn | None = None  # the live turn when this panel's thread started it
        self._token: Any = None
        self._thread: threading.Thread | None = None
        self.view = TranscriptView(session, self._lock)
        self.bar = InputBar(session.settings.model, send=self._on_send, stop=self._stop,
                            new=self._new)
        self.picker = AttachPicker(self.shell, self.plots, session)
        self.transcript, self.input, self.model = self.view.entries, self.bar.input, self.bar.model
        self.send_button, self.stop_button = self.bar.send_button, self.bar.stop_button
        self.new_button, self.attach, self.chips = (self.bar.new_button, self.picker.dropdown,
                                                    self.picker.chips)
        self.status = _html("", "nbc-status")
        self.error = _html("", "nbc-error", layout=widgets.Layout(display="none"))
        title = _html(f"<b>Claude</b> · session <code>{html.escape(session.name)}</code>",
                      "nbc-title")
        header = _row([title, self.model, self.new_button], "nbc-header")
        spacer = widgets.Box(layout=widgets.Layout(flex="1 1 auto"))
        controls = _row([self.attach, spacer, self.stop_button, self.send_button], "nbc-controls")
        super().__init__([widgets.HTML(_STYLE), header, self.view, self.status, self.error,
                          self.chips, self.input, controls], **kwargs)
        self.add_class("nbc-panel")
        self._unsubscribe: Callable[[], None] | None = session.subscribe(self._on_event)
        self.refresh_attachables()
        with self._lock:
            self.view.sync()

    def __repr__(self) -> str:
        return f"ChatPanel(session={self.session.name!r}, turns={len(self.session.history)})"

    @property
    def markdown(self) -> list[str]:
        """The Markdown each transcript entry shows, oldest first."""
        return self.view.markdown

    @property
    def renders(self) -> int:
        """Live (throttled) renders so far, for tests and diagnostics."""
        return self.view.renders

    @property
    def _live_slot(self) -> widgets.Output | None:
        return self.view.live_slot

    @property
    def attached(self) -> list[str]:
        """Names of the variables (or "last plot") the next Send attaches."""
        return self.picker.names

    @attached.setter
    def attached(self, names: list[str]) -> None:
        self.picker.names = names

    def refresh_attachables(self) -> None:
        """List the namespace's attachable variables (and the last plot) in the picker."""
        self.picker.refresh()

    # -- session events (from whichever thread runs the request) -------------
    def _on_event(self, event: str, turn: Turn | None) -> None:
        with self._lock:
            if event in ("start", "update") and turn is not None:
                if turn is not self.view.live:
                    if threading.current_thread() is self._thread:
                        self._own = turn
                    self.view.begin(turn)
                    self._busy(True)
                elif event == "update":
                    self.view.update()
                return
            self.view.end(turn)
            self._busy(self._token is not None)

    def _busy(self, busy: bool) -> None:
        self.bar.set_busy(replying=busy, sending=self._token is not None)
        if busy:
            self._set_status("Claude is replying…")
        elif self.status.value == "Claude is replying…":
            self._set_status("")

    def _set_status(self, text: str) -> None:
        self.status.value = html.escape(text)

    def _show_error(self, message: str) -> None:
        self.error.value = "⚠ " + html.escape(redact(message)) if message else ""
        self.error.layout.display = "" if message else "none"

    # -- controls -------------------------------------------------------------
    def _on_send(self, _button: Any = None) -> None:
        """Start a turn in a daemon thread; the main thread stays free for Stop."""
        if self._token is not None:
            return
        prompt = self.input.value
        self._show_error("")
        if not prompt.strip():
            self._show_error("write a question first, then press Send")
            return
        self.picker.refresh()
        try:
            attach = self.picker.resolve()
            sent, context, on_sent = self._context(prompt, attach)
        except (NbClaudeError, ValueError) as exc:
            self._show_error(str(exc))
            return
        from ._client import CancelToken

        token = CancelToken()
        self._token = token
        from ._interrupts import on_interrupt

        forget = on_interrupt(self._stop, getattr(self.shell, "kernel", None))
        thread = threading.Thread(target=self._run,
                                  args=(sent, attach, self.model.value, token, prompt, context,
                                        on_sent, forget),
                                  name=f"nb_claude-panel-{self.session.name}", daemon=True)
        self._thread = thread
        self.bar.set_busy(replying=True, sending=True)
        self._set_status("Sending…")
        thread.start()

    def _context(self, prompt: str, attach: list[Any]
                 ) -> tuple[str, dict[str, Any], Callable[[], None] | None]:
        """What a cell would carry with this prompt: the cells `settings.context` names (read
        here, in the kernel's main thread), and the prompt's `@names` added to `attach`; last,
        what moves "since-last" past the cells recorded now, once the prompt is sent."""
        namespace = getattr(self.shell, "user_ns", None) or {}
        settings = self.session.settings
        sent, references, missing, refused = prompt_references(prompt, namespace, settings)
        picked = {a[0] for a in attach if isinstance(a, tuple)}
        attach.extend(r for r in references if r[0][1:] not in picked)
        context = notebook_context(settings.context, recorder=self.recorder, settings=settings,
                                   session=self.session.name)
        recorder = self.recorder
        on_sent = None if recorder is None else functools.partial(
            recorder.mark, self.session.name, recorder.newest)
        return sent, with_missing(context, missing, refused), on_sent

    def _run(self, prompt: str, attach: list[Any], model: str, token: Any,
             typed: str | None = None, context: dict[str, Any] | None = None,
             on_sent: Callable[[], None] | None = None,
             forget: Callable[[], None] = lambda: None) -> None:
        try:
            self.session.ask(prompt, attach=attach, model=model, display=False, source="panel",
                             cancel=token, context=context, on_sent=on_sent)
        except NbClaudeError as exc:
            self._show_error(str(exc))
        except Exception as exc:  # a widget thread must never die silently
            log.exception("the chat panel's request failed")
            self._show_error(f"unexpected {type(exc).__name__}: see the kernel log")
        else:
            self.bar.clear(typed if typed is not None else prompt)
            self.picker.clear()
        finally:
            forget()
            with self._lock:
                if self._token is token:
                    self._token = None
                    self._thread = None
                self._own = None
                self._busy(self.view.live is not None)
            if token.cancelled:
                self._set_status("Stopped.")

    def _stop(self, _button: Any = None) -> None:
        """End the reply now; the transcript marks it interrupted before the thread ends."""
        with self._lock:
            token, live = self._token, self.view.live
            if token is not None:
                token.cancel()
                freeze = live is not None and live is self._own
            else:
                self.session.stop()
                freeze = live is not None
            if freeze:
                self.view.freeze()
            self.stop_button.disabled = True
            self._set_status("Stopped.")

    def _new(self, _button: Any = None) -> None:
        """Start a new conversation (stopping this panel's reply first)."""
        self._show_error("")
        if self._token is not None or self.session.busy:
            self._stop()
            # The request thread holds the session's lock until it has wrapped up.
            threading.Thread(target=self.session.reset, daemon=True).start()
        else:
            self.session.reset()
        self._set_status("")

    # -- lifetime ---------------------------------------------------------------
    def close(self) -> None:
        """Stop listening to the session and the shell, then close the widgets."""
        unsubscribe, self._unsubscribe = getattr(self, "_unsubscribe", None), None
        if unsubscribe is not None:
            unsubscribe()
        picker = getattr(self, "picker", None)
        if picker is not None:
            picker.close()
        _close_tree(self.children)  # the transcript view cancels its timer
        super().close()


def _html(value: str, css: str, **kwargs: Any) -> widgets.HTML:
    made = widgets.HTML(value, **kwargs)
    made.add_class(css)
    return made


def _row(children: list[widgets.Widget], css: str) -> widgets.HBox:
    row = widgets.HBox(children)
    row.add_class(css)
    return row


def _turn_markdown(turn: Turn, *, live: bool, footer: bool = True) -> str:
    from ._render import turn_markdown

    return turn_markdown(turn, live=live, prompt=True, with_footer=footer)


def _turn_text(turn: Turn) -> str:
    return f"You: {turn.prompt}\n\n{turn.text or '…'}"


def _close_tree(children: tuple[widgets.Widget, ...]) -> None:
    for child in children:
        _close_tree(getattr(child, "children", ()))
        child.close()


def _current_shell() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def _plot_recorder(shell: Any) -> Any:
    """The PlotRecorder of `%load_ext nb_claude`, if the extension is loaded."""
    registry = getattr(getattr(shell, "magics_manager", None), "registry", {}) or {}
    magics = registry.get("ClaudeMagics")
    return getattr(magics, "plots", None)
