"""After a failing cell: an "Ask Claude" button under the traceback (a one-line hint in
terminal IPython), and nothing else.

A `post_run_cell` hook: the cell still fails and no request goes out until the button is
clicked. This module is imported by `%load_ext`, so it imports nothing heavy; the button
itself lives in `_fix_button` (ipywidgets), which a kernel imports in a background thread
after loading so that the first failing cell does not pay for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from typing import Any

__all__ = ["ErrorHook", "HINT", "front_end"]

log = logging.getLogger("nb_claude")

HINT = "Ask Claude about this error: run %claude_fix (or %claude_fix --explain)."
_PACKAGE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "")


def front_end(shell: Any) -> str:
    """"widgets" in a kernel (a notebook front end), else "terminal"."""
    return "widgets" if getattr(shell, "kernel", None) is not None else "terminal"


def own_usage_error(exc: BaseException) -> bool:
    """An error nb_claude raised to say what to do (a UsageError of its magics, or one of its
    own errors): its one line is the help, so no button."""
    from IPython.core.error import UsageError

    if not isinstance(exc, UsageError):
        return any(cls.__module__.startswith("nb_claude.") for cls in type(exc).__mro__)
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
            return True
        tb = tb.tb_next
    return False


class ErrorHook:
    """Shows the button (or the hint) after each cell whose error wants help, while
    `magics.error_button` is on."""

    def __init__(self, shell: Any, magics: Any) -> None:
        self.shell = shell
        self.magics = magics
        self.shown = 0  # buttons and hints shown, for tests and diagnostics
        self._active = False
        self._warmer: threading.Thread | None = None

    def __repr__(self) -> str:
        state = "registered" if self._active else "not registered"
        return f"<ErrorHook {state}, {self.shown} shown>"

    def register(self) -> None:
        """Start watching cells; in a kernel, import the button's modules in the background."""
        if self._active:
            return
        self._active = True
        self.shell.events.register("post_run_cell", self._post_run_cell)
        if front_end(self.shell) == "widgets" and getattr(self.magics, "error_button", True):
            self._warm()

    def unregister(self) -> None:
        if not self._active:
            return
        self._active = False
        with contextlib.suppress(ValueError):
            self.shell.events.unregister("post_run_cell", self._post_run_cell)

    def _warm(self) -> None:
        """ipywidgets takes ~100 ms to import: do it now, off the main thread."""
        if f"{__package__}._fix_button" in sys.modules:
            return

        def load() -> None:
            try:
                from . import _fix, _fix_button  # noqa: F401
            except Exception:  # no ipywidgets: the first failing cell says so
                log.debug("preloading the error button failed", exc_info=True)

        self._warmer = threading.Thread(target=load, name="nb_claude-warm", daemon=True)
        self._warmer.start()

    def _post_run_cell(self, result: Any = None) -> None:
        exc = getattr(result, "error_in_exec", None) or getattr(result, "error_before_exec", None)
        if exc is None or not getattr(self.magics, "error_button", True):
            return
        try:
            self._offer(result, exc)
        except Exception:  # a post-run hook must never add an error to the user's cell
            log.debug("showing the error button failed", exc_info=True)

    def _offer(self, result: Any, exc: BaseException) -> None:
        from ._fix import wants_help

        if not wants_help(type(exc).__name__, is_nb_claude_usage_error=own_usage_error(exc)):
            return
        from ._capture import aside

        with aside:  # not the cell's output: a later prompt's context leaves it out
            self._show(result)

    def _show(self, result: Any) -> None:
        from IPython.display import display

        if front_end(self.shell) != "widgets":
            self.shown += 1
            display({"text/plain": HINT}, raw=True)
            return
        number = getattr(result, "execution_count", None)
        if not isinstance(number, int):  # a cell run without history cannot be named
            return
        warmer = self._warmer
        if warmer is not None:  # never import the same modules in two threads at once
            warmer.join()
            self._warmer = None
        try:
            from ._fix_button import FixButton
        except ImportError:  # no ipywidgets in this kernel
            self.shown += 1
            display({"text/plain": HINT}, raw=True)
            return
        self.shown += 1
        # The widget's own bundle, published as is (IPython's formatters add nothing to it);
        # where the widget cannot show (a saved notebook on GitHub, nbconvert), the hint does.
        bundle = {**FixButton(self.shell, number)._repr_mimebundle_(), "text/plain": HINT}
        publisher = self.shell.display_pub
        own = vars(publisher).get("_flush_streams")
        if not callable(getattr(publisher, "_flush_streams", None)):
            display(bundle, raw=True)
            return
        # ipykernel flushes stdout and stderr before each display, each flush a round trip to
        # its output thread: the traceback just flushed them, and the two round trips would
        # cost more than the button itself.
        publisher._flush_streams = _no_flush
        try:
            display(bundle, raw=True)
        finally:
            if vars(publisher).get("_flush_streams") is _no_flush:
                if own is None:
                    del publisher._flush_streams
                else:
                    publisher._flush_streams = own


def _no_flush() -> None:
    """In place of ipykernel's stream flush while the button is published."""
