"""The kernel's interrupt button, heard between cells: it stops replies streaming in threads.

While a cell runs, an interrupt raises KeyboardInterrupt in it, as always. Between cells
ipykernel ignores SIGINT, so a reply streaming in a worker thread (the chat panel, the Ask
Claude button) would not hear the front end's interrupt button. ipykernel brackets each
message it handles with `pre_handler_hook` / `post_handler_hook`: the first saves the handler
in `kernel.saved_sigint_handler`, the second puts it back. Set from inside a message (a
button's click is one), `saved_sigint_handler` becomes the handler between messages: ours
stops the replies registered with `on_interrupt` and otherwise does nothing, as SIG_IGN did.
A kernel without those hooks keeps its own behaviour; Stop buttons still work there.
"""

from __future__ import annotations

import itertools
import signal
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["install", "on_interrupt"]

_stops: dict[int, Callable[[], None]] = {}
_ids = itertools.count()
_lock = threading.Lock()


def _on_sigint(signum: int, frame: Any) -> None:
    with _lock:
        stops = list(_stops.values())
    if stops:  # a signal handler must not block or publish: a thread does the stopping
        threading.Thread(target=_run_all, args=(stops,), name="nb_claude-interrupt",
                         daemon=True).start()


def _run_all(stops: list[Callable[[], None]]) -> None:
    for stop in stops:
        try:
            stop()
        except Exception:  # one view's failure must not keep the others streaming
            import logging

            logging.getLogger("nb_claude").exception("stopping a reply on interrupt failed")


def install(kernel: Any) -> bool:
    """Make `_on_sigint` the kernel's handler between messages; call it from inside a message
    (a cell or a widget callback). False where the kernel has no such hooks."""
    if kernel is None or not callable(getattr(kernel, "post_handler_hook", None)):
        return False
    saved = getattr(kernel, "saved_sigint_handler", None)
    if saved is _on_sigint:
        return True
    if saved not in (signal.SIG_IGN, None):
        return False  # someone else's handler: leave it
    kernel.saved_sigint_handler = _on_sigint
    return True


def on_interrupt(stop: Callable[[], None], kernel: Any = None) -> Callable[[], None]:
    """Until the returned function is called, an interrupt of the idle kernel calls `stop`
    (in a thread). Call it in the kernel's main thread, inside a message: a click handler
    starting a worker thread; the worker calls the returned function when its reply ends."""
    if kernel is None:
        from IPython import get_ipython

        kernel = getattr(get_ipython(), "kernel", None)
    install(kernel)
    with _lock:
        key = next(_ids)
        _stops[key] = stop

    def forget() -> None:
        with _lock:
            _stops.pop(key, None)

    return forget
