"""Error help, the pure part: the prompt that asks Claude to fix a failing cell, the code
block taken from its reply, and that code shown as a diff against the failing cell.

The `%claude_fix` magic and the "Ask Claude" button both use it. Nothing here imports
IPython or widgets, and nothing here runs code: the reply is untrusted text from which
code is only extracted, and every diff line is escaped before it is shown.
"""

from __future__ import annotations

import ast
import difflib
import functools
import html
import io
import keyword
import os
import re
import sysconfig
import tokenize
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ._context import CellRecord, normalise
from ._kinds import kind_of, type_name
from ._render import _fence
from ._summaries import clip, describe_value

__all__ = ["FixRequest", "chosen_frames", "diff_html", "diff_markdown", "fix_prompt",
           "proposed_code", "unified_diff", "wants_help"]

DEFAULT_FRAMES_LIMIT = 12
DEFAULT_VARIABLE_BUDGET = 1_000  # characters of summary per variable
DEFAULT_MAX_VARIABLES = 6


@dataclass(frozen=True, slots=True, repr=False)
class FixRequest:
    """What is asked of Claude for one failing cell, and what the caller may show of it:
    the failing code and the names whose values were summarised."""

    prompt: str
    code: str
    variables: tuple[str, ...] = ()
    execution_count: int = 0
    error: str = ""

    def __repr__(self) -> str:
        names = ", ".join(self.variables) or "no variables"
        return f"<FixRequest [{self.execution_count}] {self.error.split(':')[0]}, {names}>"


# -- which errors get help

_NO_HELP = frozenset({"KeyboardInterrupt", "SystemExit", "GeneratorExit"})


def wants_help(exc_type_name: str, *, is_nb_claude_usage_error: bool) -> bool:
    """False for an interrupt, an exit and nb_claude's own usage errors (their one line
    already says what to do); True for any other error."""
    if is_nb_claude_usage_error:
        return False
    return exc_type_name.rsplit(".", 1)[-1] not in _NO_HELP


# -- traceback frames

# A frame as `_capture` writes it: "  In [5], line 2, in f\n    return 1 / x"
# (a SyntaxError's frame has no ", in name").
_FRAME_HEAD = re.compile(r"^\s*(?P<place>.*?), line (?P<line>\d+)(?:, in (?P<func>.*))?\s*$")
_CELL_PLACE = re.compile(r"^(?:In \[(?P<n>\d+)\]|Cell In ?\[(?P<m>\d+)\].*|<ipython-input-.*"
                         r"|<cell.*)$")


@dataclass(frozen=True, slots=True)
class _Frame:
    text: str
    place: str
    line: int | None
    func: str | None
    cell: int | None  # the execution count of a frame in a cell, when named
    user: bool


@functools.cache
def stdlib_roots() -> tuple[str, ...]:
    """The standard library's folders, each ending in a separator."""
    paths = sysconfig.get_paths()
    roots = {paths[key] for key in ("stdlib", "platstdlib") if paths.get(key)}
    return tuple(os.path.join(root, "") for root in roots)


def is_user_file(filename: str, names: dict[str, int]) -> bool:
    """A cell's code or a file of the user's; not an installed package or the standard library."""
    if filename in names:  # first: a cell's file name may start with "<"
        return True
    if filename.startswith("<") or "site-packages" in filename or "dist-packages" in filename:
        return False
    return not filename.startswith(stdlib_roots())


def chosen_frames(filenames: list[str], names: dict[str, int], keep: int) -> list[int]:
    """The `keep` frames to keep, in order: the one that raised, the user's own (latest first),
    then the latest others. A KeyError raised deep in pandas keeps the cell's frame."""
    count = len(filenames)
    chosen = {count - 1} if count else set()
    users = [i for i in range(count - 1, -1, -1) if is_user_file(filenames[i], names)]
    for i in [*users, *range(count - 1, -1, -1)]:
        if len(chosen) >= keep:
            break
        chosen.add(i)
    return sorted(chosen)


def _is_library(place: str) -> bool:
    """Installed packages and the standard library; a cell or a file of the user's is not."""
    if place.startswith("<"):
        return place.startswith("<frozen")
    if "site-packages" in place or "dist-packages" in place:
        return True
    if not os.path.isabs(place):  # `_capture` shortens an installed file to its package path
        return True
    return place.startswith(stdlib_roots())


def _parse_frame(text: str) -> _Frame:
    head = text.split("\n", 1)[0]
    match = _FRAME_HEAD.match(head)
    if match is None:
        return _Frame(text, head.strip(), None, None, None, not _is_library(head.strip()))
    place = match.group("place").strip()
    cell_match = _CELL_PLACE.match(place)
    cell = None
    if cell_match is not None:
        number = cell_match.group("n") or cell_match.group("m")
        cell = int(number) if number else None
    user = cell_match is not None or not _is_library(place)
    return _Frame(text, place, int(match.group("line")), match.group("func"), cell, user)


def _traceback_text(frames: list[_Frame], limit: int) -> str:
    """The frames oldest first: the user's in full, a library frame as its first line."""
    shown = [f.text.rstrip() if f.user else f.text.split("\n", 1)[0].rstrip() for f in frames]
    if limit > 0 and len(shown) > limit:
        keep = max(1, limit - 1)
        left = len(shown) - keep - 1
        shown = [shown[0], f"  [… {left} frame{'s' if left != 1 else ''} not shown …]",
                 *shown[-keep:]]
    return "\n".join(normalise(line) for line in shown)


def _failing_line(record: CellRecord, frames: list[_Frame]) -> int | None:
    """The line of the failing cell that raised, when a frame of that cell at its top level
    says so (a frame inside a function reads its locals, not the namespace)."""
    for frame in reversed(frames):
        if frame.cell == record.execution_count and frame.func in (None, "<module>"):
            return frame.line
    return None


# -- the variables named in the failing line

_IPYTHON_NAMES = frozenset({"In", "Out", "exit", "quit", "get_ipython"})
_MAGIC = re.compile(r"^([ \t]*)(?:%%?\w+|!.*)", re.MULTILINE)
_CODE_TYPES = (types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
               types.MethodType, type)


def _names_in(node: ast.AST) -> list[str]:
    found = [n for n in ast.walk(node) if isinstance(n, ast.Name)]
    found.sort(key=lambda n: (n.lineno, n.col_offset))
    return [n.id for n in found]


def _names_by_tokens(source: str) -> list[str]:
    """Names in code `ast` cannot parse (magics, a cut statement), skipping attributes."""
    names: list[str] = []
    previous = ""
    source = _MAGIC.sub(r"\1", source)  # a magic's name, a shell command
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.NAME and previous != "." \
                    and not keyword.iskeyword(token.string):
                names.append(token.string)
            previous = token.string
    except (tokenize.TokenError, SyntaxError):  # an unclosed bracket ends the scan
        pass
    return names


def _names_on_line(code: str, line: int | None) -> list[str]:
    """Names read in line `line` of `code` (its whole statement if that spans lines), or
    in all of `code` when the line is unknown."""
    lines = code.splitlines()
    if line is not None and not 1 <= line <= len(lines):
        line = None
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return _names_by_tokens(code if line is None else lines[line - 1].strip())
    if line is None:
        return _names_in(tree)
    around = [s for s in ast.walk(tree) if isinstance(s, ast.stmt)
              and s.lineno <= line <= (s.end_lineno or s.lineno)]
    if not around:
        return []
    stmt = min(around, key=lambda s: (s.end_lineno or s.lineno) - s.lineno)
    names = [n for n in ast.walk(stmt) if isinstance(n, ast.Name)]
    if hasattr(stmt, "body"):  # a compound statement: only its header line
        names = [n for n in names if n.lineno == line]
    names.sort(key=lambda n: (n.lineno, n.col_offset))
    return [n.id for n in names]


def _wanted(name: str, namespace: Mapping[str, object]) -> bool:
    if name.startswith("_") or name in _IPYTHON_NAMES or name not in namespace:
        return False
    return not isinstance(namespace[name], _CODE_TYPES)


def _summary(value: object, budget: int, *, key_error: bool) -> str:
    try:
        text = describe_value(value, budget=budget)
    except Exception as exc:  # the user's own object: its repr may fail
        text = f"<{type_name(value)}: could not be summarised ({type(exc).__name__})>"
    if key_error and kind_of(value, probe=False) == "dataframe":
        try:  # a wide frame's summary names only some columns: the lookup needs them all
            columns = ", ".join(repr(c) for c in value.columns)  # type: ignore[attr-defined]
            text = clip(f"all columns: {columns}", budget) + "\n" + text
        except Exception:
            pass
    return text


def _variables(names: Iterable[str], namespace: Mapping[str, object], *, budget: int,
               limit: int, key_error: bool) -> list[tuple[str, str]]:
    chosen: list[tuple[str, str]] = []
    for name in dict.fromkeys(names):
        if len(chosen) >= limit:
            break
        if _wanted(name, namespace):
            value = namespace[name]
            label = f"{name} ({type_name(value)})"
            chosen.append((name, f"{label}:\n{_fence(_summary(value, budget, key_error=key_error))}"))
    return chosen


# -- the prompt

_SYNTAX_ERRORS = frozenset({"SyntaxError", "IndentationError", "TabError"})

_ASK_FIX = ("Explain briefly, in a few sentences, what caused this error. Then give ONE fenced "
            "```python code block holding the whole fixed cell, ready to replace the failing "
            "one: keep the rest of the cell as it is and change only what the fix needs. Do "
            "not write any other code block.")
_ASK_EXPLAIN = ("Explain briefly, in a few sentences, what caused this error and how to fix "
                "it. Do not write the fixed cell.")


def fix_prompt(record: CellRecord, *, namespace: Mapping[str, object],
               frames_limit: int = DEFAULT_FRAMES_LIMIT, explain_only: bool = False,
               extra: str = "", variable_budget: int = DEFAULT_VARIABLE_BUDGET,
               max_variables: int = DEFAULT_MAX_VARIABLES) -> FixRequest:
    """The request for help with the failing cell `record`: its code, the error, the frames
    of the user's code, and summaries of the variables named in the failing line.

    The cells run before it are the notebook context, which the caller adds.
    """
    error = record.error
    if error is None:
        raise ValueError(f"cell [{record.execution_count}] raised no error")
    n = record.execution_count
    error_line = f"{error.type}: {normalise(error.message)}".rstrip(": ")
    frames = [_parse_frame(text) for text in error.frames]
    parts = [f"Cell In [{n}] failed. Help me fix it.",
             f"The failing cell, In [{n}]:\n{_fence(record.code.rstrip(), 'python')}",
             f"The error:\n{_fence(error_line)}"]
    if frames:
        parts.append("The traceback, oldest frame first (my code in full, library frames "
                     f"one line each):\n{_fence(_traceback_text(frames, frames_limit))}")
    chosen: list[tuple[str, str]] = []
    if error.type not in _SYNTAX_ERRORS:  # the cell never ran: its names hold old values
        line = _failing_line(record, frames)
        chosen = _variables(_names_on_line(record.code, line), namespace,
                            budget=variable_budget, limit=max_variables,
                            key_error=error.type in ("KeyError", "AttributeError"))
        if chosen:
            where = "the failing line" if line is not None else "the failing cell"
            parts.append(f"Variables named in {where}, as they are now:\n\n"
                         + "\n\n".join(text for _, text in chosen))
    if extra.strip():
        parts.append(f"My note:\n{extra.strip()}")
    parts.append(_ASK_EXPLAIN if explain_only else _ASK_FIX)
    return FixRequest(prompt="\n\n".join(parts), code=record.code,
                      variables=tuple(name for name, _ in chosen), execution_count=n,
                      error=error_line)


# -- the proposed code

_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>.*?)[ \t]*$")
_PYTHON_INFO = frozenset({"", "python", "py", "python3", "py3", "ipython", "ipython3"})


def _code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of each closed fenced block; an unclosed one (a cut reply) is left out."""
    blocks: list[tuple[str, str]] = []
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    i = 0
    while i < len(lines):
        match = _OPEN.match(lines[i])
        i += 1
        if match is None:
            continue
        fence, info = match.group("fence"), match.group("info")
        if fence[0] == "`" and "`" in info:  # inline code such as ```x```, not a fence
            continue
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        width = len(match.group("indent").expandtabs(4))
        body: list[str] = []
        while i < len(lines) and not closing.match(lines[i]):
            body.append(_dedent(lines[i], width))
            i += 1
        if i < len(lines):
            blocks.append((info.split()[0].lower() if info.split() else "", "\n".join(body)))
            i += 1
    return blocks


def _dedent(line: str, width: int) -> str:
    stripped = line.lstrip(" \t")
    lead = line[: len(line) - len(stripped)].expandtabs(4)
    return lead[width:] + stripped


def first_code_block(reply_text: str) -> str | None:
    """The reply's first closed fenced block, whatever its language (for `-f code`)."""
    blocks = [code.strip("\n") for _, code in _code_blocks(reply_text) if code.strip()]
    return blocks[0] if blocks else None


def proposed_code(reply_text: str) -> str | None:
    """The fixed cell in a reply: its python (or unlabelled) fenced block, the longest when
    there are several; None when there is none. Only extracted, never run."""
    candidates = [code.strip("\n") for lang, code in _code_blocks(reply_text)
                  if lang in _PYTHON_INFO and code.strip()]
    return max(candidates, key=len) if candidates else None


# -- diffs

def _lines(text: str) -> list[str]:
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def unified_diff(old: str, new: str, *, old_name: str = "failing", new_name: str = "fixed",
                 context: int = 3) -> str:
    """A unified diff as `diff -u` writes it ("" when nothing changed); `patch` applies it
    to the old cell saved with a final newline."""
    return "".join(difflib.unified_diff([f"{line}\n" for line in _lines(old)],
                                        [f"{line}\n" for line in _lines(new)],
                                        old_name, new_name, n=context))


def diff_markdown(old: str, new: str, *, context: int = 3) -> str:
    """The unified diff in a ```diff fence, as exports write it."""
    return _fence(unified_diff(old, new, context=context).rstrip("\n") or "(no changes)", "diff")


_PRE_STYLE = ("margin:0;padding:4px 0;font-family:monospace;font-size:12.5px;line-height:1.45;"
              "overflow-x:auto;border:1px solid #d0d7de;border-radius:4px")
_LINE_STYLE = "display:block;padding:0 8px;white-space:pre"
_MARK_STYLES = {"+": ";background:#e6ffec;color:#1a4d26", "-": ";background:#ffebe9;color:#6e1a1a",
                " ": "", "~": ";color:#8a8a8a;font-style:italic"}


def _html_line(mark: str, text: str) -> str:
    shown = f"⋯ {text}" if mark == "~" else f"{mark} {text}"
    return (f'<span style="{_LINE_STYLE}{_MARK_STYLES[mark]}">'
            f"{html.escape(shown, quote=True)}</span>")


def _skipped(count: int) -> str:
    return _html_line("~", f"{count} unchanged line{'s' if count != 1 else ''}")


def diff_html(old: str, new: str, *, context: int = 3) -> str:
    """The diff as a <pre> for a notebook: added lines green, removed lines red, long
    unchanged stretches folded. Every line is escaped: it shows as text, never as markup."""
    a, b = _lines(old), _lines(new)
    if a == b:
        return f'<pre style="{_PRE_STYLE}">{_html_line("~", "no changes")}</pre>'
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    rows: list[str] = []
    done = 0
    for group in matcher.get_grouped_opcodes(context):
        if group[0][1] > done:
            rows.append(_skipped(group[0][1] - done))
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                rows.extend(_html_line(" ", line) for line in a[i1:i2])
                continue
            rows.extend(_html_line("-", line) for line in a[i1:i2])
            rows.extend(_html_line("+", line) for line in b[j1:j2])
        done = group[-1][2]
    if len(a) > done:
        rows.append(_skipped(len(a) - done))
    return f'<pre style="{_PRE_STYLE}">' + "".join(rows) + "</pre>"
