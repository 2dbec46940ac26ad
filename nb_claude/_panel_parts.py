"""The chat panel's controls: the input bar and the attach picker.

Each part owns its widgets and their state; `ChatPanel` lays the widgets out
and wires the parts to the session.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from ._errors import NbClaudeError

__all__ = ["AttachPicker", "InputBar", "attachable_names", "button", "model_options"]

log = logging.getLogger("nb_claude")

LAST_PLOT = "\0last plot"  # picker value for the latest displayed plot; never a variable name
MODELS = ("anthropic/claude-opus-4-8",)  # the service also accepts "claude-opus-4-8": same model
_MAX_PICKS = 60
_PROMPT = "Attach a variable or plot…"


def button(description: str, css: str, *, icon: str = "", style: str = "",
           tooltip: str = "") -> widgets.Button:
    """A compact button with its CSS class (the browser tests select by class)."""
    made = widgets.Button(description=description, icon=icon, button_style=style,
                          tooltip=tooltip or description, layout=widgets.Layout(width="auto"))
    made.add_class(css)
    return made


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


class InputBar:
    """The prompt box, Send and Stop, New conversation and the model picker."""

    def __init__(self, model: str, *, send: Callable[[Any], None],
                 stop: Callable[[Any], None], new: Callable[[Any], None]) -> None:
        self.model = widgets.Dropdown(options=model_options(model), value=model,
                                      layout=widgets.Layout(width="230px"))
        self.model.add_class("nbc-model")
        self.new_button = button("New conversation", "nbc-new", icon="plus",
                                 tooltip="Forget this session's turns")
        self.input = widgets.Textarea(placeholder="Ask Claude…", rows=3,
                                      layout=widgets.Layout(width="100%"))
        self.input.add_class("nbc-input")
        self.stop_button = button("Stop", "nbc-stop", icon="stop", style="warning",
                                  tooltip="Stop the reply")
        self.stop_button.disabled = True
        self.send_button = button("Send", "nbc-send", icon="paper-plane", style="primary",
                                  tooltip="Send the prompt")
        self.send_button.on_click(send)
        self.stop_button.on_click(stop)
        self.new_button.on_click(new)

    def __repr__(self) -> str:
        return f"InputBar(model={self.model.value!r})"

    def set_busy(self, *, replying: bool, sending: bool) -> None:
        """Stop while a reply streams; Send while this panel has no request of its own."""
        self.stop_button.disabled = not replying
        self.send_button.disabled = sending

    def clear(self, prompt: str) -> None:
        """Empty the box after `prompt` was answered, unless the user typed on meanwhile."""
        if self.input.value == prompt:
            self.input.value = ""


class AttachPicker:
    """The variables and the last plot the next message attaches: a picker and its chips."""

    def __init__(self, shell: Any, plots: Any, session: Any) -> None:
        self.shell, self.plots, self.session = shell, plots, session
        self._names: list[str] = []
        self.dropdown = widgets.Dropdown(options=[(_PROMPT, "")], value="",
                                         layout=widgets.Layout(width="260px"))
        self.dropdown.add_class("nbc-attach")
        self.chips = widgets.HBox()
        self.chips.add_class("nbc-chips")
        self.dropdown.observe(self._picked, names="value")
        self._hooked = False
        if shell is not None and hasattr(shell, "events"):
            shell.events.register("post_run_cell", self._after_cell)
            self._hooked = True

    def __repr__(self) -> str:
        return f"AttachPicker(attached={self.names!r})"

    @property
    def names(self) -> list[str]:
        """Names of the variables (or "last plot") the next Send attaches."""
        return ["last plot" if n == LAST_PLOT else n for n in self._names]

    @names.setter
    def names(self, names: list[str]) -> None:
        self._names = [LAST_PLOT if n == "last plot" else n for n in names]
        self._show_chips()

    def clear(self) -> None:
        self.names = []

    def refresh(self) -> None:
        """List the namespace's attachable variables (and the last plot) in the picker."""
        options: list[tuple[str, str]] = [(_PROMPT, "")]
        if self.plots is not None and _has_plot(self.plots):
            options.append(("last plot", LAST_PLOT))
        options += attachable_names(self._namespace())
        if options != list(self.dropdown.options):
            self.dropdown.unobserve(self._picked, names="value")
            self.dropdown.options = options
            self.dropdown.value = ""
            self.dropdown.observe(self._picked, names="value")
        self._show_chips()

    def resolve(self) -> list[Any]:
        """The picked values as `Session.ask` takes them; refuses a name no longer defined."""
        namespace = self._namespace()
        result: list[Any] = []
        for name in self._names:
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

    def close(self) -> None:
        """Stop refreshing after each cell."""
        if self._hooked:
            self._hooked = False
            with contextlib.suppress(ValueError):
                self.shell.events.unregister("post_run_cell", self._after_cell)

    def _namespace(self) -> dict[str, Any]:
        return getattr(self.shell, "user_ns", None) or {}

    def _after_cell(self, _result: Any = None) -> None:
        try:
            self.refresh()
        except Exception:  # a post-run hook must never break the user's cell
            log.debug("refreshing the attach picker failed", exc_info=True)

    def _picked(self, change: dict[str, Any]) -> None:
        name = change["new"]
        if not name:
            return
        if name not in self._names:
            self._names.append(name)
        self._show_chips()
        self.dropdown.value = ""

    def _show_chips(self) -> None:
        chips = []
        for name in self._names:
            label = "last plot" if name == LAST_PLOT else name
            chip = button(f"{label} ✕", "nbc-chip", icon="paperclip",
                          tooltip=f"Remove {label} from the next message")
            chip.on_click(lambda _b, n=name: self._unpick(n))
            chips.append(chip)
        for old in self.chips.children:
            old.close()
        self.chips.children = tuple(chips)

    def _unpick(self, name: str) -> None:
        if name in self._names:
            self._names.remove(name)
        self._show_chips()


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


def _has_plot(plots: Any) -> bool:
    try:
        return plots.last_cell() is not None
    except Exception:
        return False
