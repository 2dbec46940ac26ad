"""The stand-in's answer to a fix request (`%claude_fix`, the Ask Claude button).

The stand-in calls no model, so it cannot reason about an error. For the one kind of error
it can fix honestly from the request alone, a missing key or attribute whose closest match
the request lists (a DataFrame's "all columns:" line), it puts that name in and says so;
otherwise it returns None and the usual echo answers. This is what lets the offline demo show
a fix, a diff and a new cell.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from ._rules import _last_user_text

__all__ = ["fix_guess"]

_FAILED = re.compile(r"^Cell In \[\d+\] failed\. Help me fix it\.")
_CELL = re.compile(r"The failing cell, In \[\d+\]:\n(?P<fence>`{3,})python\n(?P<code>.*?)\n"
                   r"(?P=fence)", re.S)
_ERROR = re.compile(r"The error:\n`{3,}\n(?P<type>KeyError|AttributeError): (?P<message>[^\n]*)\n")
_KEY = re.compile(r"""^['"](?P<name>[^'"\n]+)['"]$""")
_ATTRIBUTE = re.compile(r"""has no attribute ['"](?P<name>[^'"\n]+)['"]""")
_COLUMNS = re.compile(r"^all columns: (?P<names>.+)$", re.M)
_QUOTED = re.compile(r"""'((?:[^'\\]|\\.)*)'""")
_EXPLAIN_ONLY = "Do not write the fixed cell."


def _missing_name(kind: str, message: str) -> str | None:
    match = _KEY.match(message.strip()) if kind == "KeyError" else _ATTRIBUTE.search(message)
    return match.group("name") if match else None


def fix_guess(body: dict[str, Any]) -> str | None:
    """A fix for the request's failing cell when a close column name explains it, else None.

    The text has no label: the caller puts the stand-in's own label in front."""
    text = _last_user_text(body)
    start = text.rfind("Cell In [")
    if start < 0 or not _FAILED.match(text[start:]):
        return None
    text = text[start:]
    cell, error = _CELL.search(text), _ERROR.search(text)
    if cell is None or error is None:
        return None
    missing = _missing_name(error.group("type"), error.group("message"))
    names = [n for line in _COLUMNS.findall(text) for n in _QUOTED.findall(line)]
    if missing is None or not names:
        return None
    close = difflib.get_close_matches(missing, names, n=1, cutoff=0.6)
    code = cell.group("code")
    if not close or close[0] == missing or missing not in code:
        return None
    found = close[0]
    explanation = (f"The stand-in does not reason; it matched the missing name `{missing}` to "
                   f"the closest column the request shows, `{found}`.")
    if _EXPLAIN_ONLY in text:
        return explanation
    fixed = re.sub(rf"(['\"]){re.escape(missing)}\1", lambda m: f"{m.group(1)}{found}{m.group(1)}",
                   code)
    if fixed == code:
        fixed = re.sub(rf"\.{re.escape(missing)}\b", f".{found}", code)
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", fixed)), default=0))
    return f"{explanation}\n\n{fence}python\n{fixed}\n{fence}\n"
