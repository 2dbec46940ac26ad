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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._engine import NO_STDIN, CannotAsk, Engine, View
from ._errors import ConfigError
from ._exchange import STAND_IN_HEADER as STAND_IN_HEADER
from ._turns import Step, Turn

if TYPE_CHECKING:
    from ._client import CancelToken
    from ._stream import Reply

__all__ = ["Session", "Turn", "Step", "get_session", "sessions"]

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
            view: Any = None, **options: Any) -> Reply:
        """Send `prompt` (with attachments) and return the reply.

        Options: model, max_tokens, system, stop, stream, thinking, tools,
        tool_choice, max_steps, confirm, replay, replay_tools, namespace.
        `confirm` may be a confirmer `(name, arguments) -> bool`; the default one
        asks on the cell's stdin. In a notebook the reply is displayed as it
        streams unless display=False.
        """
        shown: View | None = view
        if shown is None and (display or (display is None and _in_notebook())):
            from ._render import InlineView

            shown = InlineView(self.settings.updates_per_second)
        return self.send(prompt, attach=attach, cell_id=cell_id, new=new, source=source,
                         cancel=cancel, label=label, view=shown, confirmer=_ask_on_stdin,
                         **options)

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
