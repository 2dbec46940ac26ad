"""Claude in Jupyter notebooks: `%load_ext nb_claude`, then `%%claude` cells."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "ChatPanel",
    "Reply",
    "Session",
    "Turn",
    "get_session",
    "load_ipython_extension",
    "map",
    "set_api_key",
    "tool",
    "unload_ipython_extension",
]

if TYPE_CHECKING:
    from ._config import set_api_key
    from ._panel import ChatPanel
    from ._session import Session, Turn, get_session, map
    from ._stream import Reply
    from ._tools import tool

_LAZY = {
    "ChatPanel": "._panel",
    "Reply": "._stream",
    "Session": "._session",
    "Turn": "._session",
    "get_session": "._session",
    "map": "._session",
    "set_api_key": "._config",
    "tool": "._tools",
}


def __getattr__(name: str) -> Any:
    # Imported on first use so that `%load_ext nb_claude` stays cheap.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nb_claude' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


def load_ipython_extension(ipython: Any) -> None:
    """Register %%claude, %claude_chat and friends, and start remembering cells and plots."""
    from ._capture import ContextRecorder
    from ._magics import ClaudeMagics, protect_questions

    # One recorder per shell: loading again (or %reload_ext) keeps the cells seen so far.
    previous = ipython.magics_manager.registry.get("ClaudeMagics")
    recorder = getattr(previous, "recorder", None)
    if recorder is None or recorder.shell is not ipython:
        recorder = ContextRecorder(ipython)
    recorder.register()
    magics = ClaudeMagics(ipython)
    magics.recorder = recorder
    ipython.register_magics(magics)
    from ._error_button import ErrorHook

    if previous is not None and getattr(previous, "errors", None) is not None:
        previous.errors.unregister()
    magics.errors = ErrorHook(ipython, magics)
    magics.errors.register()
    cleanup = getattr(ipython, "input_transformers_cleanup", None)
    if cleanup is not None and protect_questions not in cleanup:
        cleanup.append(protect_questions)
    try:
        from ._plots import PlotRecorder
    except ImportError:
        return
    magics.plots = PlotRecorder(ipython)
    magics.plots.install()


def unload_ipython_extension(ipython: Any) -> None:
    from ._magics import protect_questions

    cleanup = getattr(ipython, "input_transformers_cleanup", [])
    if protect_questions in cleanup:
        cleanup.remove(protect_questions)
    magics = ipython.magics_manager.registry.get("ClaudeMagics")
    if magics is not None and getattr(magics, "recorder", None) is not None:
        magics.recorder.unregister()
    if magics is not None and getattr(magics, "errors", None) is not None:
        magics.errors.unregister()
    if magics is not None and getattr(magics, "plots", None) is not None:
        magics.plots.uninstall()
