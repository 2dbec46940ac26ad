"""The chat panel: an ipywidgets front end over the same Session as the magics.

Requests run in a daemon thread, so Stop (a comm message the kernel's main
thread handles) works while a reply streams, and other cells can still run.
Every panel renders from the session's events, so turns made by cells, by
Python code or by another panel appear in all of them.
"""

from __future__ import annotations

import contextlib
import html
import logging
import threading
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from ._config import redact
from ._errors import NbClaudeError
from ._render import Throttle, live_placeholder, live_size
from ._session import Session, Turn, get_session

__all__ = ["ChatPanel", "attachable_names"]

log = logging.getLogger("nb_claude")

LAST_PLOT = "\0last plot"  # picker value for the latest displayed plot; never a variable name
MODELS = ("anthropic/claude-opus-4-8",)  # the service also accepts "claude-opus-4-8": same model
STOPPED = "<sub>⏹ interrupted</sub>"
_MAX_PICKS = 60

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


def model_options(current: str) -> list[tuple[str, str]]:
    """(label, id) for the model picker: each model once, under the id the settings use.

    The service takes a model with or without its "anthropic/" prefix; both ids are one model.
    """
    options: dict[str, str] = {_model_name(current): current}
    for model in MODELS:
        options.setdefault(_model_name(model), model)
    return [(name, model) for name, model in options.items()]


def _model_name(model: str) -> str:
    return model.removeprefix("anthropic/")


def attachable_names(namespace: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, name) for the variables the panel offers to attach.

    Types are recognised by module and class name, so pandas, matplotlib and
    PIL are never imported just to look.
    """
    found = []
    for name, value in list(namespace.items()):
        if name.startswith("_") or name in ("In", "Out"):
            continue
        kind = _attachable_kind(value)
        if kind is not None:
            found.append((f"{name} · {kind}", name))
        if len(found) >= _MAX_PICKS:
            break
    return found


def _attachable_kind(value: object) -> str | None:
    cls = type(value)
    module, name = cls.__module__ or "", cls.__name__
    if isinstance(value, type):
        return None
    if module.startswith("pandas") and name in ("DataFrame", "Series"):
        shape = getattr(value, "shape", ())
        return f"{name} {'×'.join(str(n) for n in shape)}"
    if module.startswith("numpy") and name == "ndarray":
        shape = getattr(value, "shape", ())
        return f"array {'×'.join(str(n) for n in shape)}"
    if module.startswith("matplotlib") and (name in ("Figure", "SubFigure") or name.endswith("Axes")
                                            or name == "AxesSubplot"):
        return "figure" if "Figure" in name else "axes"
    if module.startswith("PIL.") and hasattr(value, "getbbox"):
        size = getattr(value, "size", None)
        return f"image {size[0]}×{size[1]}" if isinstance(size, tuple) and len(size) == 2 else "image"
    if module.startswith("IPython") and name == "Image":
        return "image"
    return None


def _button(description: str, css: str, *, icon: str = "", style: str = "",
            tooltip: str = "") -> widgets.Button:
    button = widgets.Button(description=description, icon=icon, button_style=style,
                            tooltip=tooltip or description,
                            layout=widgets.Layout(width="auto"))
    button.add_class(css)
    return button


def _bundle(markdown: str, text: str) -> tuple[dict[str, Any], ...]:
    return ({"output_type": "display_data", "data": {"text/markdown": markdown,
                                                     "text/plain": text},
             "metadata": {}},)


class ChatPanel(widgets.VBox):
    """A chat over one session: transcript, input, Send/Stop, model and attachments."""

    def __init__(self, session: Session | str | None = None, *, shell: Any = None,
                 plots: Any = None, **kwargs: Any) -> None:
        if not isinstance(session, Session):
            session = get_session(session or "default")
        self.session = session
        self.shell = shell if shell is not None else _current_shell()
        self.plots = plots if plots is not None else _plot_recorder(self.shell)
        self.renders = 0  # live (throttled) renders, for tests and diagnostics
        self._lock = threading.RLock()
        self._live: Turn | None = None
        self._own: Turn | None = None
        self._stopped: set[int] = set()
        self._slots: list[widgets.Output] = []
        self._shown: dict[int, str] = {}  # id(Output) -> markdown it shows
        self._live_slot: widgets.Output | None = None
        self._throttle = Throttle(session.settings.updates_per_second)
        self._timer: threading.Timer | None = None
        self._token: Any = None
        self._thread: threading.Thread | None = None
        self._attached: list[str] = []

        title = widgets.HTML(f"<b>Claude</b> · session <code>{html.escape(session.name)}</code>")
        title.add_class("nbc-title")
        model = session.settings.model
        self.model = widgets.Dropdown(options=model_options(model), value=model,
                                      layout=widgets.Layout(width="230px"))
        self.model.add_class("nbc-model")
        self.new_button = _button("New conversation", "nbc-new", icon="plus",
                                  tooltip="Forget this session's turns")
        header = widgets.HBox([title, self.model, self.new_button])
        header.add_class("nbc-header")

        self.transcript = widgets.VBox(layout=widgets.Layout(flex="0 0 auto"))
        self.transcript.add_class("nbc-transcript")
        self._empty = widgets.HTML("No turns yet: ask something below, or run a "
                                   "<code>%%claude</code> cell.")
        self._empty.add_class("nbc-empty")
        # column-reverse keeps the view pinned to the newest turn as content grows.
        scroll = widgets.Box([self.transcript], layout=widgets.Layout(
            display="flex", flex_flow="column-reverse", overflow="auto", max_height="460px"))
        scroll.add_class("nbc-scroll")

        self.status = widgets.HTML("")
        self.status.add_class("nbc-status")
        self.error = widgets.HTML("", layout=widgets.Layout(display="none"))
        self.error.add_class("nbc-error")
        self.chips = widgets.HBox()
        self.chips.add_class("nbc-chips")
        self.input = widgets.Textarea(placeholder="Ask Claude…", rows=3,
                                      layout=widgets.Layout(width="100%"))
        self.input.add_class("nbc-input")
        self.attach = widgets.Dropdown(options=[("Attach a variable or plot…", "")], value="",
                                       layout=widgets.Layout(width="260px"))
        self.attach.add_class("nbc-attach")
        self.stop_button = _button("Stop", "nbc-stop", icon="stop", style="warning",
                                   tooltip="Stop the reply")
        self.stop_button.disabled = True
        self.send_button = _button("Send", "nbc-send", icon="paper-plane", style="primary",
                                   tooltip="Send the prompt")
        spacer = widgets.Box(layout=widgets.Layout(flex="1 1 auto"))
        controls = widgets.HBox([self.attach, spacer, self.stop_button, self.send_button])
        controls.add_class("nbc-controls")

        super().__init__([widgets.HTML(_STYLE), header, scroll, self.status, self.error,
                          self.chips, self.input, controls], **kwargs)
        self.add_class("nbc-panel")

        self.send_button.on_click(self._on_send)
        self.stop_button.on_click(self._stop)
        self.new_button.on_click(self._new)
        self.attach.observe(self._picked, names="value")
        self._unsubscribe: Callable[[], None] | None = session.subscribe(self._on_event)
        self._hooked = False
        if self.shell is not None and hasattr(self.shell, "events"):
            self.shell.events.register("post_run_cell", self._after_cell)
            self._hooked = True
        self.refresh_attachables()
        with self._lock:
            self._sync()

    def __repr__(self) -> str:
        return f"ChatPanel(session={self.session.name!r}, turns={len(self.session.history)})"

    # -- what the panel shows ----------------------------------------------
    @property
    def markdown(self) -> list[str]:
        """The Markdown each transcript entry shows, oldest first."""
        return [self._shown.get(id(slot), "") for slot in self.transcript.children
                if isinstance(slot, widgets.Output)]

    def _show(self, slot: widgets.Output, markdown: str, text: str) -> None:
        if self._shown.get(id(slot)) == markdown:
            return
        self._shown[id(slot)] = markdown
        slot.outputs = _bundle(markdown, text)

    def _new_slot(self) -> widgets.Output:
        slot = widgets.Output()
        slot.add_class("nbc-turn")
        return slot

    def _sync(self) -> None:
        """Show the session's history; drops the live slot (caller holds the lock)."""
        history = list(self.session.history)
        live = self._live_slot
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
        if self._live_slot is not None and self._live_slot not in self._slots:
            self._shown.pop(id(self._live_slot), None)
            self._live_slot.close()
        self._live_slot = None
        self._layout()

    def _layout(self) -> None:
        children: list[widgets.Widget] = list(self._slots)
        if self._live_slot is not None and self._live_slot not in children:
            children.append(self._live_slot)
        if not children:
            children = [self._empty]
        if tuple(children) != self.transcript.children:
            self.transcript.children = tuple(children)

    def _render_live(self, *, force: bool = False) -> None:
        """Show the turn in flight, within the throttle's budget (caller holds the lock)."""
        turn = self._live
        if turn is None or self._live_slot is None:
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
        self._show(self._live_slot, markdown, text)
        self._throttle.record(size)

    # -- session events (from whichever thread runs the request) -------------
    def _on_event(self, event: str, turn: Turn | None) -> None:
        with self._lock:
            if event in ("start", "update") and turn is not None:
                if turn is not self._live:
                    self._begin(turn)
                elif event == "update" and id(turn) not in self._stopped:
                    self._throttled()
                return
            self._cancel_timer()
            if turn is not None:
                self._stopped.discard(id(turn))
            self._live = None
            self._sync()
            self._busy(self._token is not None)

    def _begin(self, turn: Turn) -> None:
        self._cancel_timer()
        self._live = turn
        if threading.current_thread() is self._thread:
            self._own = turn
        slot = None
        if turn.cell_id is not None:  # a re-run cell streams into its old turn's place
            for index, old in enumerate(self.session.history):
                if old.cell_id == turn.cell_id and index < len(self._slots):
                    slot = self._slots[index]
        self._live_slot = slot or self._new_slot()
        self._layout()
        self._throttle = Throttle(self.session.settings.updates_per_second)
        self._render_live(force=True)
        self._busy(True)

    def _throttled(self) -> None:
        wait = self._throttle.wait()
        if wait <= 0:
            self._cancel_timer()
            self._render_live()
        elif self._timer is None:
            # A trailing render, so a pause in the stream never leaves old text showing.
            self._timer = threading.Timer(wait, self._flush)
            self._timer.daemon = True
            self._timer.start()

    def _flush(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._render_live()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _busy(self, busy: bool) -> None:
        self.stop_button.disabled = not busy
        self.send_button.disabled = self._token is not None
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
        self.refresh_attachables()
        try:
            attach = self._resolve_attachments()
        except (NbClaudeError, ValueError) as exc:
            self._show_error(str(exc))
            return
        from ._client import CancelToken

        token = CancelToken()
        self._token = token
        thread = threading.Thread(target=self._run, args=(prompt, attach, self.model.value, token),
                                  name=f"nb_claude-panel-{self.session.name}", daemon=True)
        self._thread = thread
        self.send_button.disabled = True
        self.stop_button.disabled = False
        self._set_status("Sending…")
        thread.start()

    def _run(self, prompt: str, attach: list[Any], model: str, token: Any) -> None:
        try:
            self.session.ask(prompt, attach=attach, model=model, display=False, source="panel",
                             cancel=token)
        except NbClaudeError as exc:
            self._show_error(str(exc))
        except Exception as exc:  # a widget thread must never die silently
            log.exception("the chat panel's request failed")
            self._show_error(f"unexpected {type(exc).__name__}: see the kernel log")
        else:
            if self.input.value == prompt:
                self.input.value = ""
            self._attached.clear()
            self._show_chips()
        finally:
            with self._lock:
                if self._token is token:
                    self._token = None
                    self._thread = None
                self._own = None
                self._busy(self._live is not None)
            if token.cancelled:
                self._set_status("Stopped.")

    def _stop(self, _button: Any = None) -> None:
        """End the reply now; the transcript marks it interrupted before the thread ends."""
        with self._lock:
            token, live = self._token, self._live
            if token is not None:
                token.cancel()
                freeze = live is not None and live is self._own
            else:
                self.session.stop()
                freeze = live is not None
            if freeze and live is not None:
                self._cancel_timer()
                self._stopped.add(id(live))
                self._render_live(force=True)
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

    # -- attachments ------------------------------------------------------------
    def refresh_attachables(self) -> None:
        """List the namespace's attachable variables (and the last plot) in the picker."""
        namespace = getattr(self.shell, "user_ns", None) or {}
        options: list[tuple[str, str]] = [("Attach a variable or plot…", "")]
        if self.plots is not None and _has_plot(self.plots):
            options.append(("last plot", LAST_PLOT))
        options += attachable_names(namespace)
        if options != list(self.attach.options):
            self.attach.unobserve(self._picked, names="value")
            self.attach.options = options
            self.attach.value = ""
            self.attach.observe(self._picked, names="value")
        self._show_chips()

    def _after_cell(self, _result: Any = None) -> None:
        try:
            self.refresh_attachables()
        except Exception:  # a post-run hook must never break the user's cell
            log.debug("refreshing the attach picker failed", exc_info=True)

    def _picked(self, change: dict[str, Any]) -> None:
        name = change["new"]
        if not name:
            return
        if name not in self._attached:
            self._attached.append(name)
        self._show_chips()
        self.attach.value = ""

    @property
    def attached(self) -> list[str]:
        """Names of the variables (or "last plot") the next Send attaches."""
        return ["last plot" if n == LAST_PLOT else n for n in self._attached]

    @attached.setter
    def attached(self, names: list[str]) -> None:
        self._attached = [LAST_PLOT if n == "last plot" else n for n in names]
        self._show_chips()

    def _show_chips(self) -> None:
        chips = []
        for name in self._attached:
            label = "last plot" if name == LAST_PLOT else name
            chip = _button(f"{label} ✕", "nbc-chip", icon="paperclip",
                           tooltip=f"Remove {label} from the next message")
            chip.on_click(lambda _b, n=name: self._unpick(n))
            chips.append(chip)
        for old in self.chips.children:
            old.close()
        self.chips.children = tuple(chips)

    def _unpick(self, name: str) -> None:
        if name in self._attached:
            self._attached.remove(name)
        self._show_chips()

    def _resolve_attachments(self) -> list[Any]:
        namespace = getattr(self.shell, "user_ns", None) or {}
        result: list[Any] = []
        for name in self._attached:
            if name == LAST_PLOT:
                if self.plots is None:
                    raise NbClaudeError("no plot recorder: run %load_ext nb_claude first")
                result.extend(self.plots.attachments(
                    None, max_image_edge=self.session.settings.max_image_edge))
            elif name in namespace:
                result.append((name, namespace[name]))
            else:
                raise NbClaudeError(f"{name} is no longer defined: remove it from the attachments")
        return result

    # -- lifetime ---------------------------------------------------------------
    def close(self) -> None:
        """Stop listening to the session and the shell, then close the widgets."""
        unsubscribe, self._unsubscribe = getattr(self, "_unsubscribe", None), None
        if unsubscribe is not None:
            unsubscribe()
        if getattr(self, "_hooked", False):
            self._hooked = False
            with contextlib.suppress(ValueError):
                self.shell.events.unregister("post_run_cell", self._after_cell)
        if hasattr(self, "_lock"):
            with self._lock:
                self._cancel_timer()
        _close_tree(self.children)
        super().close()


def _turn_markdown(turn: Turn, *, live: bool, footer: bool = True) -> str:
    from ._render import turn_markdown

    return turn_markdown(turn, live=live, prompt=True, with_footer=footer)


def _turn_text(turn: Turn) -> str:
    return f"You: {turn.prompt}\n\n{turn.text or '…'}"


def _close_tree(children: tuple[widgets.Widget, ...]) -> None:
    for child in children:
        _close_tree(getattr(child, "children", ()))
        child.close()


def _has_plot(plots: Any) -> bool:
    try:
        return plots.last_cell() is not None
    except Exception:
        return False


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
