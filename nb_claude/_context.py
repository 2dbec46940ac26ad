"""What Claude sees of the notebook: the cells run before a prompt, as stable text.

Pure functions over `CellRecord`s (which `_capture.ContextRecorder` fills in): choose the
cells (`select`), make their output stable between runs (`normalise`, since the context is
part of the replay key) and write them within a token budget (`build`). `find_references`
reads `@name` in a prompt. Nothing here imports IPython.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ._config import CHARS_PER_TOKEN, DEFAULT_CONTEXT_BUDGET

__all__ = [
    "CellError",
    "CellRecord",
    "Context",
    "ContextItem",
    "build",
    "cell_kind",
    "cell_text",
    "estimate_tokens",
    "format_tokens",
    "find_references",
    "html_to_text",
    "normalise",
    "reference_notes",
    "select",
    "unescape_references",
]

CellKind = Literal["code", "prompt", "command"]

DEFAULT_BUDGET_TOKENS = DEFAULT_CONTEXT_BUDGET
# Room kept for the header and the "left out" note when filling the budget.
_RESERVED_CHARS = 200
# A cell cut to fit the budget keeps at least this much text, else it is left out.
_MIN_CUT_CHARS = 400


# -- records


@dataclass(frozen=True, slots=True, repr=False)
class CellError:
    """An exception a cell raised: type name, message and the last frames, as text."""

    type: str
    message: str
    frames: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"<CellError {self.type}, {len(self.frames)} frames>"


@dataclass(frozen=True, slots=True, repr=False)
class CellRecord:
    """What one executed cell did, kept small: the ends of its streams, no `Out` repr.

    `displays` holds (mime, text) pairs with mime text/plain, text/markdown or text/html
    (reduced to text only when the context is built); `figures` the (width, height) of
    each PNG shown. `stdout_cut` / `stderr_cut` count the characters not kept.
    """

    execution_count: int
    code: str
    kind: CellKind = "code"
    stdout: str = ""
    stderr: str = ""
    stdout_cut: int = 0
    stderr_cut: int = 0
    displays: tuple[tuple[str, str], ...] = ()
    displays_cut: int = 0
    figures: tuple[tuple[int, int], ...] = ()
    has_out: bool = False
    error: CellError | None = None

    @property
    def is_prompt(self) -> bool:
        return self.kind == "prompt"

    def __repr__(self) -> str:
        parts = [f"[{self.execution_count}]", self.kind]
        if self.stdout or self.stderr:
            parts.append(f"{len(self.stdout) + len(self.stderr)} chars of output")
        if self.displays or self.figures:
            parts.append(f"{len(self.displays)} displays, {len(self.figures)} figures")
        if self.has_out:
            parts.append("Out")
        if self.error is not None:
            parts.append(self.error.type)
        return f"<CellRecord {', '.join(parts)}>"


@dataclass(frozen=True, slots=True, repr=False)
class ContextItem:
    """One cell as sent: its label (`[3]`), its text and that text's token estimate."""

    execution_count: int
    label: str
    text: str
    tokens: int

    def __repr__(self) -> str:
        return f"<ContextItem {self.label} {self.tokens} tokens>"


@dataclass(frozen=True, slots=True, repr=False)
class Context:
    """The notebook context of one request: the items, the block as sent, and a summary line."""

    items: tuple[ContextItem, ...] = ()
    text: str = ""
    tokens: int = 0
    dropped: int = 0
    summary: str = "no cells"
    budget_tokens: int = DEFAULT_BUDGET_TOKENS
    cells: tuple[int, ...] = field(default=())

    def __bool__(self) -> bool:
        return bool(self.text)

    def __repr__(self) -> str:
        return f"<Context {self.summary}>"


# -- which cells are nb_claude's own

# One table: the magics whose cells are never context ("prompt" ones send a prompt; the
# session that sends it moves its own "since-last").
_OWN_MAGICS: dict[str, CellKind] = {
    "claude": "prompt",
    "claude_fix": "prompt",
    "claude_context": "command",  # previewing the context must not consume it
    "claude_chat": "command",
}
_OWN_MAGIC = re.compile(r"\s*%%?(claude(?:_\w+)?)(?!\w)")


def cell_kind(code: str) -> CellKind:
    """"prompt" for a %%claude / %claude / %claude_fix cell, "command" for nb_claude's other
    magics, else "code"."""
    if "%claude" not in code[:200]:
        return "code"
    match = _OWN_MAGIC.match(code)
    if match is None:
        return "code"
    return _OWN_MAGICS.get(match.group(1), "command")


# -- normalisation

_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{8,16}\b")
_TIMING = re.compile(
    r"^(CPU times|Wall time): .*$"
    r"|^.*\S (?:±|\+-) .*\S per loop \(mean (?:±|\+-) std\. dev\. of .*$"
    r"|^The slowest run took .* times longer than the fastest\..*$",
    re.MULTILINE,
)
_TMP_PATH = re.compile(
    r"(?<![\w./~-])(?:/private)?(?:/tmp|/var/folders)(?![\w-])(?:/[^\s'\"(),;:\]>]*[^\s'\"(),;:\]>.])?"
    r"|\b[A-Za-z]:(?:\\{1,2}|/)Users(?:\\{1,2}|/)[^\s'\"\\/]+(?:\\{1,2}|/)"
    r"(?:AppData(?:\\{1,2}|/)Local(?:\\{1,2}|/))?Temp\b[^\s'\"(),;\]>]*"
)


def _timing_placeholder(match: re.Match[str]) -> str:
    label = match.group(1)
    return f"{label}: <time>" if label else "<timeit result>"


def _last_state(line: str) -> str:
    """A carriage-return progress line as a terminal leaves it: its last non-empty state."""
    states = [s for s in line.split("\r") if s]
    return states[-1] if states else ""


def normalise(text: str) -> str:
    """Output text made stable between runs: no ANSI codes, addresses as `0x…`, timings,
    temp paths as `<tmp>`, and only the last state of a carriage-return progress line."""
    if not text:
        return text
    if "\x1b" in text:
        text = _ANSI.sub("", text)
    if "\r" in text:
        text = text.replace("\r\n", "\n")
        if "\r" in text:
            text = "\n".join(_last_state(line) if "\r" in line else line
                             for line in text.split("\n"))
    if "0x" in text:
        text = _ADDRESS.sub("0x…", text)
    if " time" in text or "per loop" in text or "slowest run" in text:
        text = _TIMING.sub(_timing_placeholder, text)
    if "/tmp" in text or "/var/folders" in text or "Temp" in text:
        text = _TMP_PATH.sub("<tmp>", text)
    return text


_HTML_DROP = re.compile(r"<(script|style)\b.*?</\1\s*>|<!--.*?-->", re.IGNORECASE | re.DOTALL)
_HTML_BREAK = re.compile(r"<br\s*/?>|</(?:p|div|tr|li|h[1-6]|table|thead|tbody|pre)\s*>",
                         re.IGNORECASE)
_HTML_CELL = re.compile(r"</t[dh]\s*>", re.IGNORECASE)
_HTML_TAG = re.compile(r"<[^>]*>")
_SPACES = re.compile(r"[ \t\f\v]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")
_HTML_LIMIT = 100_000


def html_to_text(markup: str) -> str:
    """HTML reduced to its text, cheaply: breaks at block ends, `|` between table cells."""
    from html import unescape  # its entity table costs 2 ms to import: only when needed

    markup = markup[:_HTML_LIMIT]
    markup = _HTML_DROP.sub("", markup)
    markup = _HTML_BREAK.sub("\n", markup)
    markup = _HTML_CELL.sub(" | ", markup)
    text = unescape(_HTML_TAG.sub("", markup))
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip(" |") if line.endswith(" | ") else line.strip()
                     for line in text.split("\n"))
    return _BLANK_LINES.sub("\n", text).strip()


# -- selection

SINCE_LAST = "since-last"
_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


def select(records: Iterable[CellRecord], spec: str | int | None,
           since: int | None = None) -> list[CellRecord]:
    """The code cells `spec` names, oldest first: "since-last" (after cell `since`, all when
    None),
    "none", N (the last N run), "A-B" (execution counts A to B) or "all"."""
    cells = [r for r in records if r.kind == "code"]
    if spec is None or spec == SINCE_LAST:
        if since is None:
            return cells
        return [r for r in cells if r.execution_count > since]
    if isinstance(spec, bool):
        raise ValueError(f"not a cell selection: {spec!r}")
    if isinstance(spec, int):
        if spec < 0:
            raise ValueError(f"--cells needs a count of 0 or more, not {spec}")
        return cells[-spec:] if spec else []
    text = spec.strip().lower()
    if text == "none":
        return []
    if text == "all":
        return cells
    if text.isdigit():
        return select(cells, int(text), since)
    match = _RANGE.match(text)
    if match:
        first, last = int(match.group(1)), int(match.group(2))
        if first > last:
            raise ValueError(f"--cells {spec}: the range runs backwards; write {last}-{first}")
        return [r for r in cells if first <= r.execution_count <= last]
    raise ValueError(f"--cells {spec!r}: use a count (3), a range of cell numbers (3-7), "
                     "'all', 'none' or 'since-last'")


# -- building


def estimate_tokens(text: str) -> int:
    """Tokens of text the way `Attachment.estimate_tokens` counts them: chars / 4."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def format_tokens(tokens: int) -> str:
    """`600 tokens`, `1.1k tokens`, `12k tokens`."""
    if tokens < 1000:
        return f"{tokens} tokens"
    if tokens < 10_000:
        return f"{tokens / 1000:.1f}k tokens"
    return f"{round(tokens / 1000)}k tokens"


def _fenced(text: str, info: str = "") -> str:
    """Text in a code fence longer than any backtick run inside it."""
    fence = "```"
    if "```" in text:
        longest = max(len(run) for run in re.findall(r"`{3,}", text))
        fence = "`" * (longest + 1)
    return f"{fence}{info}\n{text.rstrip(chr(10))}\n{fence}"


def _stream(label: str, text: str, cut: int) -> str:
    text = normalise(text)
    if cut:
        text = f"[… {cut:,} earlier characters not kept …]\n{text}"
    return f"{label}:\n{_fenced(text)}"


def cell_text(record: CellRecord, out_text: Callable[[int], str | None] | None = None) -> str:
    """One cell as Claude reads it: number and code, then Out, streams, displays, errors
    and figures (named, not sent)."""
    n = record.execution_count
    parts = [f"In [{n}]:\n{_fenced(record.code, 'python')}"]
    if record.stdout or record.stdout_cut:
        parts.append(_stream("stdout", record.stdout, record.stdout_cut))
    if record.stderr or record.stderr_cut:
        parts.append(_stream("stderr", record.stderr, record.stderr_cut))
    if record.displays_cut:
        parts.append(f"[… {record.displays_cut:,} earlier displays not kept …]")
    for mime, shown in record.displays:
        shown = html_to_text(shown) if mime == "text/html" else shown
        parts.append(f"display ({mime}):\n{_fenced(normalise(shown))}")
    for width, height in record.figures:
        parts.append(f"figure {width}×{height} shown in [{n}]; attach it with --plot {n}")
    if record.has_out and out_text is not None:
        shown_out = out_text(n)
        if shown_out is not None:
            parts.append(f"Out [{n}]:\n{_fenced(normalise(shown_out))}")
    if record.error is not None:
        error = record.error
        lines = [f"error: {error.type}: {normalise(error.message)}".rstrip()]
        if error.frames:
            count = len(error.frames)
            lines.append(f"traceback (last {count} frames):" if count > 1
                         else "traceback (last frame):")
            lines.extend(normalise(frame) for frame in error.frames)
        parts.append("\n".join(lines))
    return "\n".join(parts)


def _cut_to(text: str, chars: int) -> str:
    """Text cut in the middle to about `chars` characters, saying how much went."""
    if len(text) <= chars:
        return text
    note = f"\n[… {len(text) - chars:,} characters cut to fit the context budget …]\n"
    keep = max(0, chars - len(note))
    head = keep // 3
    return text[:head] + note + text[len(text) - (keep - head):]


def _label_range(numbers: Sequence[int]) -> str:
    if not numbers:
        return "no cells"
    if len(numbers) == 1:
        return f"cell [{numbers[0]}]"
    return f"cells [{numbers[0]}]-[{numbers[-1]}]"


_HEADER = "Notebook cells run before this prompt, oldest first:"


def build(records: Sequence[CellRecord], *, budget_tokens: int = DEFAULT_BUDGET_TOKENS,
          out_text: Callable[[int], str | None] | None = None) -> Context:
    """The context block for these cells within `budget_tokens`; when they do not all fit,
    the newest are kept and a note says how many earlier cells were left out."""
    records = [r for r in records if r.kind == "code"]
    if not records:
        return Context(budget_tokens=budget_tokens)
    budget_chars = max(0, budget_tokens * 4 - _RESERVED_CHARS - len(_HEADER))
    kept: list[tuple[CellRecord, str]] = []
    used = 0
    for record in reversed(records):
        text = cell_text(record, out_text)
        room = budget_chars - used - 2
        if len(text) > room:
            if not kept and room >= _MIN_CUT_CHARS:  # the newest cell alone is too long
                kept.append((record, _cut_to(text, room)))
            break
        kept.append((record, text))
        used += len(text) + 2
    kept.reverse()
    dropped = len(records) - len(kept)
    blocks = [_HEADER]
    if dropped:
        blocks.append(f"[{dropped:,} earlier cell{'s' if dropped != 1 else ''} left out to fit "
                      f"the {budget_tokens:,}-token context budget]")
    items = tuple(ContextItem(r.execution_count, f"[{r.execution_count}]", t, estimate_tokens(t))
                  for r, t in kept)
    if not items:  # the header still says what the note is about
        text = "\n\n".join(blocks)
        text = text if estimate_tokens(text) <= budget_tokens else ""
        return Context(text=text, tokens=estimate_tokens(text), dropped=dropped,
                       summary=f"no cells · {dropped:,} left out", budget_tokens=budget_tokens)
    blocks.extend(item.text for item in items)
    text = "\n\n".join(blocks)
    tokens = estimate_tokens(text)
    numbers = tuple(item.execution_count for item in items)
    summary = f"{_label_range(numbers)} · {format_tokens(tokens)}"
    if dropped:
        summary += f" · {dropped:,} left out"
    return Context(items=items, text=text, tokens=tokens, dropped=dropped, summary=summary,
                   budget_tokens=budget_tokens, cells=numbers)


# -- @name references

_CODE = re.compile(r"^[ \t]*(`{3,}|~{3,})[^\n]*\n.*?(?:^[ \t]*\1[ \t]*$|\Z)|(`+).+?\2",
                   re.MULTILINE | re.DOTALL)
_REFERENCE = re.compile(r"(?<![\w\\@.])@([^\W\d]\w*)")


def _outside_code(prompt: str) -> Iterable[tuple[int, int]]:
    """(start, end) of the stretches of `prompt` outside code spans and fences."""
    start = 0
    for match in _CODE.finditer(prompt):
        yield start, match.start()
        start = match.end()
    yield start, len(prompt)


def find_references(prompt: str, namespace: Mapping[str, object]) -> tuple[list[str], list[str]]:
    """(names defined in `namespace`, names not defined) that `@name` refers to, in order of
    first mention. Code spans, fences, `\\@name` and e-mail addresses are not references."""
    found: list[str] = []
    missing: list[str] = []
    if "@" not in prompt:
        return found, missing
    for start, end in _outside_code(prompt):
        for match in _REFERENCE.finditer(prompt, start, end):
            name = match.group(1)
            if name in found or name in missing:
                continue
            (found if name in namespace else missing).append(name)
    return found, missing


def reference_notes(context: Mapping[str, object]) -> list[str]:
    """`@name not found` and `@name not attachable (module)` for the `@names` a turn's
    context lists as missing or not attachable."""
    missing = context.get("missing")
    refused = context.get("not_attachable")
    notes = [f"@{name} not found" for name in missing] if isinstance(missing, (list, tuple)) else []
    if isinstance(refused, dict):
        notes += [f"@{name} not attachable ({why})" for name, why in refused.items()]
    return notes


def unescape_references(prompt: str) -> str:
    """The prompt with `\\@` written as `@` outside code, as it is sent."""
    if "\\@" not in prompt:
        return prompt
    return "".join(prompt[a:b].replace("\\@", "@") + prompt[b:c]
                   for (a, b), c in _with_next_start(prompt))


def _with_next_start(prompt: str) -> Iterable[tuple[tuple[int, int], int]]:
    stretches = list(_outside_code(prompt))
    for i, (a, b) in enumerate(stretches):
        following = stretches[i + 1][0] if i + 1 < len(stretches) else b
        yield (a, b), following
