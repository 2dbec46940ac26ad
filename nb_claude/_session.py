"""The public Session: the core conversation plus the notebook's defaults.

The magics, the chat panel and Python code share one Session per name. The core
(`_engine.Engine`) chooses no display and asks no questions; this layer adds what
plain Python expects in a notebook: the reply displayed as it streams, a tool call
confirmed on the cell's stdin, and export to Markdown, JSON and .ipynb.
"""

from __future__ import annotations

import functools
import os
import threading
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._engine import NO_STDIN, CannotAsk, Engine, View
from ._errors import ConfigError
from ._exchange import STAND_IN_HEADER as STAND_IN_HEADER
from ._turns import Step, Turn

if TYPE_CHECKING:
    from ._capture import ContextRecorder
    from ._client import CancelToken
    from ._config import Settings
    from ._context import Context
    from ._stream import Reply

__all__ = ["Session", "Turn", "Step", "get_session", "sessions", "recorder_for",
           "notebook_context", "prompt_references", "context_dict"]

class _class_or_instance:
    """A method that receives the class and, when called on an instance, that instance."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        self.__doc__ = func.__doc__

    def __get__(self, obj: Any, cls: type) -> Callable[..., Any]:
        return functools.partial(self.func, cls, obj)


class Session(Engine):
    """One conversation shared by the magics, the chat panel and Python code."""

    def ask(self, prompt: str, *, attach: object = None, cell_id: str | None = None,
            new: bool = False, display: bool | None = None, source: str = "python",
            cancel: CancelToken | None = None, label: str | None = None,
            view: Any = None, context: object = None, **options: Any) -> Reply:
        """Send `prompt` (with attachments) and return the reply.

        Options: model, max_tokens, system, stop, stream, thinking, tools,
        tool_choice, max_steps, confirm, replay, replay_tools, namespace.
        `confirm` may be a confirmer `(name, arguments) -> bool`; the default one
        asks on the cell's stdin. In a notebook the reply is displayed as it
        streams unless display=False. `context` is the notebook context: None or
        False (none), a cell selection ("since-last" or True, N, "A-B", "all") read
        from the current shell, or a dict as `Turn.context` holds it.
        """
        sent = self.resolve_context(context)
        shown: View | None = view
        if shown is None and (display or (display is None and _in_notebook())):
            from ._render import InlineView

            shown = InlineView(self.settings.updates_per_second)
        return self.send(prompt, attach=attach, cell_id=cell_id, new=new, source=source,
                         cancel=cancel, label=label, view=shown, confirmer=_ask_on_stdin,
                         context=sent, **options)

    def resolve_context(self, context: object) -> dict[str, Any]:
        """`Turn.context` for what `ask(context=...)` takes; a selection read from the
        current shell moves its "since-last" past the cells it sends."""
        if context is None or context is False:
            return {}
        if isinstance(context, Mapping):
            return dict(context)
        spec: object = "since-last" if context is True else context
        from ._context import Context

        if isinstance(spec, Context):
            return context_dict(spec)
        if not isinstance(spec, (str, int)):
            raise ConfigError(f"context must be None, True, 'since-last', a number of cells, "
                              f"'A-B', 'all' or a dict, not {type(spec).__name__}")
        recorder = recorder_for()
        if recorder is None:
            raise ConfigError("notebook context needs the extension: run %load_ext nb_claude")
        made = notebook_context(spec, recorder=recorder, settings=self.settings)
        mark_sent(recorder)
        return made

    # -- export -----------------------------------------------------------
    def to_markdown(self) -> str:
        """The conversation as Markdown."""
        from ._render import session_markdown

        return session_markdown(self)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the whole conversation, attachments included, as JSON."""
        from ._export import save_session

        with self._lock:
            return save_session(self, path)

    @_class_or_instance
    def load(cls: type[Session], self: Session | None, path: str | os.PathLike[str]) -> Session:
        """`Session.load(path)` makes a new session; `session.load(path)` replaces its history."""
        from ._export import load_turns

        name, turns = load_turns(path)
        session = self if self is not None else cls(name)
        with session._lock:
            session.history[:] = turns
        session._emit("reset", None)
        return session

    def to_notebook(self, path: str | os.PathLike[str]) -> Path:
        """Write an .ipynb with a Markdown cell per turn (images as cell attachments)."""
        from ._export import write_notebook

        with self._lock:
            return write_notebook(self, path)


def _ask_on_stdin(name: str, arguments: str) -> bool:
    """The default confirmer: ask on the cell's stdin, where there is one."""
    if threading.current_thread() is not threading.main_thread():
        raise CannotAsk("no way to ask outside the notebook's main thread (as in the chat "
                        "panel); run the prompt in a cell with --confirm")
    try:
        answer = input(f"Run tool {name}({arguments[:200]})? [y/N] ")
    except (EOFError, NotImplementedError):  # NotImplementedError: StdinNotImplementedError
        raise CannotAsk(NO_STDIN) from None
    return answer.strip().lower() in ("y", "yes")


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


# -- the notebook's context -------------------------------------------------

# How far a prompt sent outside a prompt cell (the panel, Python code) has consumed the
# recorded cells, so "since-last" does not send them again; prompt cells move the
# recorder's own mark.
_sent_upto: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def recorder_for(shell: Any = None) -> ContextRecorder | None:
    """The `ContextRecorder` that `%load_ext nb_claude` registered on `shell` (default: the
    current shell), or None."""
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return None
        shell = get_ipython()
    registry = getattr(getattr(shell, "magics_manager", None), "registry", None) or {}
    return getattr(registry.get("ClaudeMagics"), "recorder", None)


def mark_sent(recorder: ContextRecorder) -> None:
    """The cells recorded so far have been offered to Claude: "since-last" starts after them."""
    records = recorder.records
    if records:
        _sent_upto[recorder] = records[-1].execution_count


def _since(recorder: ContextRecorder) -> int | None:
    marks = [m for m in (recorder.last_prompt, _sent_upto.get(recorder)) if m is not None]
    return max(marks) if marks else None


def context_dict(context: Context, missing: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """A built `Context` as `Turn.context` holds it; {} when there is nothing to say."""
    if not context.text and not missing:
        return {}
    return {"text": context.text, "summary": context.summary if context.text else "",
            "items": [{"label": i.label, "tokens": i.tokens, "text": i.text}
                      for i in context.items],
            "missing": list(missing)}


def notebook_context(spec: object = "since-last", *, recorder: ContextRecorder | None = None,
                     shell: Any = None, settings: Settings | None = None) -> dict[str, Any]:
    """`Turn.context` for the cells `spec` names ("since-last", "none", N, "A-B", "all"),
    within `settings.context_budget`; a bad spec raises ValueError. Moves no mark."""
    from ._capture import out_text
    from ._context import build, select

    if spec is True:
        spec = "since-last"
    if not isinstance(spec, (str, int)) or isinstance(spec, bool):
        raise ValueError(f"not a cell selection: {spec!r}")
    recorder = recorder if recorder is not None else recorder_for(shell)
    if recorder is None:
        select([], spec, None)  # still refuses a bad spec
        return {}
    from ._config import settings as defaults

    chosen = select(recorder.records, spec, _since(recorder))
    source = recorder.shell
    built = build(chosen, budget_tokens=(settings or defaults).context_budget,
                  out_text=lambda n: out_text(source, n))
    return context_dict(built)


def prompt_references(prompt: str, namespace: Mapping[str, Any]
                      ) -> tuple[str, list[tuple[str, Any]], list[str]]:
    """(the prompt as sent, `("@name", value)` attachments, names not defined) for the
    `@name` references in `prompt`; `\\@name` is sent as `@name`."""
    from ._context import find_references, unescape_references

    found, missing = find_references(prompt, namespace)
    return (unescape_references(prompt), [(f"@{name}", namespace[name]) for name in found],
            missing)


def with_missing(context: dict[str, Any], missing: list[str]) -> dict[str, Any]:
    """`context` noting the `@names` that were not defined."""
    if not missing:
        return context
    return {"text": "", "summary": "", "items": [], **context, "missing": list(missing)}


_sessions: dict[str, Session] = {}
_sessions_lock = threading.Lock()


def get_session(name: str = "default") -> Session:
    """The named session shared by magics, panels and Python code in this kernel."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("a session name must be non-empty text")
    with _sessions_lock:
        session = _sessions.get(name)
        if session is None:
            session = _sessions[name] = Session(name)
        return session


def sessions() -> dict[str, Session]:
    return dict(_sessions)
