"""Exceptions a user may see: each carries one short line that says what to do."""

from __future__ import annotations

import sys

__all__ = [
    "NbClaudeError",
    "ConfigError",
    "MissingKeyError",
    "APIError",
    "APIStatusError",
    "APIConnectionError",
    "APITimeoutError",
    "StreamError",
    "ReplayMissError",
    "ReplayStaleError",
    "Cancelled",
]


class NbClaudeError(Exception):
    """Base class. In IPython it renders as one line, not a traceback."""

    def _render_traceback_(self) -> list[str]:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None and getattr(shell.InteractiveTB, "mode", "") in ("Verbose", "Docs"):
            return shell.InteractiveTB.structured_traceback(type(self), self, self.__traceback__)
        return [f"\x1b[0;31m{type(self).__name__}\x1b[0m: {self}"]


class ConfigError(NbClaudeError, ValueError):
    """Bad input or options: nothing was sent."""


class MissingKeyError(ConfigError):
    """No key anywhere; the advice fits where the user is: a kernel, terminal IPython, or Python."""

    def __init__(self) -> None:
        super().__init__(_missing_key_advice())


def _missing_key_advice() -> str:
    ipython = sys.modules.get("IPython")  # not imported: plain Python, not IPython
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return "no API key: set AIMLAPI_KEY before starting Python"
    if getattr(shell, "kernel", None) is None:
        return "no API key: set AIMLAPI_KEY before starting IPython, or run %claude_login"
    return ("no API key: run %claude_login, or set the AIMLAPI_KEY environment variable "
            "before starting Jupyter")


class APIError(NbClaudeError):
    """The request failed; the history is as it was before."""


class APIStatusError(APIError):
    def __init__(self, message: str, *, status: int, upstream_status: int | None = None,
                 error_type: str | None = None, attempts: int = 1) -> None:
        super().__init__(message)
        self.status = status
        self.upstream_status = upstream_status
        self.error_type = error_type
        self.attempts = attempts


class APIConnectionError(APIError):
    pass


class APITimeoutError(APIConnectionError):
    pass


class StreamError(APIError):
    """The reply broke after its response began; the caller says whether anything was kept."""


class ReplayMissError(APIError):
    """Strict replay mode and the replay file has no entry for this request."""


class ReplayStaleError(ReplayMissError):
    """Strict replay mode, and the cell's recorded reply was based on inputs that changed.

    `changed` lists what differs, e.g. `["df changed (10 × 2 -> 12 × 2)", "cell [4] changed"]`.
    """

    def __init__(self, message: str, *, changed: list[str] | None = None) -> None:
        super().__init__(message)
        self.changed = list(changed or [])


class Cancelled(NbClaudeError):
    """The user stopped the request (Stop button or kernel interrupt)."""
