"""Record what each executed cell did, so a prompt can carry the cells run before it.

`ContextRecorder` hooks IPython's `pre_run_cell` / `post_run_cell` events, taps the
`write` of `sys.stdout` / `sys.stderr` while a cell runs and wraps `shell.display_pub.publish`
(politely, like `_plots.PlotRecorder`). It keeps the tail of each stream, the text of
each display and the size of each PNG; never the `Out` value's repr, which `out_text`
makes only when a context is built. Records are `_context.CellRecord`s.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
import sys
import threading
import traceback
from collections import deque
from typing import TYPE_CHECKING, Any

from ._config import DEFAULT_CONTEXT_BUDGET

if TYPE_CHECKING:
    from ._context import CellError, CellKind, CellRecord, Context

# _context (regexes, dataclasses) is imported at the first cell, not by %load_ext.

__all__ = ["ContextRecorder", "aside", "out_text", "recorder_for"]

DEFAULT_MAX_CELLS = 300
DEFAULT_STREAM_LIMIT = 8_192  # characters kept of each stream, per cell
DEFAULT_MAX_FRAMES = 3
_MAX_MESSAGE = 2_000
# Stand-in reprs that say nothing: prefer the HTML a display also carries.
_DEFAULT_REPR = re.compile(r"^<[\w.]+ object(?: at 0x[0-9a-fA-F]+)?>$")


class _Aside(threading.local):
    """`with aside:` what nb_claude shows after a cell (the error button) is not its output."""

    depth = 0

    def __enter__(self) -> None:
        self.depth += 1

    def __exit__(self, *exc: object) -> None:
        self.depth -= 1


aside = _Aside()


class _Tail:
    """The last `limit` characters written to one stream, and how many came before.

    Writes may come from any thread, hence the lock.
    """

    __slots__ = ("limit", "cut", "_chunks", "_size", "_lock")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.cut = 0
        self._chunks: list[str] = []
        self._size = 0
        self._lock = threading.Lock()

    def add(self, text: str) -> None:
        size = len(text)
        if not size:
            return
        with self._lock:
            if size >= self.limit:
                self.cut += self._size + size - self.limit
                self._chunks = [text[-self.limit:]]
                self._size = self.limit
                return
            self._chunks.append(text)
            self._size += size
            if self._size > 2 * self.limit:
                joined = "".join(self._chunks)
                self.cut += len(joined) - self.limit
                self._chunks = [joined[-self.limit:]]
                self._size = self.limit

    def snapshot(self) -> tuple[str, int]:
        """(the last `limit` characters, how many characters came before them)."""
        with self._lock:
            text = "".join(self._chunks)
            return text[-self.limit:], self.cut + max(0, len(text) - self.limit)


class _Tap:
    """Records what one cell writes to a stream by patching that stream object's `write`,
    as IPython 9 does for its history: `sys.stdout` stays the same object (ipykernel
    checks its class), and a stream a cell replaced, or a logger holds, still counts."""

    __slots__ = ("stream", "tail", "_wrapper", "_own")

    def __init__(self, stream: Any, tail: _Tail, recorder: ContextRecorder) -> None:
        self.stream = stream
        self.tail: _Tail | None = tail
        original = stream.write
        tap = self

        def write(data: Any, *args: Any, **kwargs: Any) -> Any:
            result = original(data, *args, **kwargs)
            tail = tap.tail
            if tail is not None and isinstance(data, str) and not recorder._quiet():
                tail.add(data)
            return result

        self._own = getattr(stream, "__dict__", {}).get("write")
        try:
            stream.write = write
        except (AttributeError, TypeError):  # a stream that takes no attributes: not recorded
            self.tail, self._wrapper = None, None
        else:
            self._wrapper = write

    def close(self) -> _Tail | None:
        """Stop recording; put `write` back unless something patched it since."""
        tail, self.tail = self.tail, None
        if self._wrapper is not None and vars(self.stream).get("write") is self._wrapper:
            if self._own is None:
                del self.stream.write
            else:
                self.stream.write = self._own
        self._wrapper = None
        return tail


class _Running:
    """What one running cell has done so far."""

    __slots__ = ("code", "kind", "out", "err", "released", "displays", "displays_cut",
                 "figures")

    def __init__(self, code: str, kind: CellKind) -> None:
        self.code = code
        self.kind = kind
        self.out: _Tap | None = None
        self.err: _Tap | None = None
        self.displays: list[tuple[str | None, str, str]] = []  # (display_id, mime, text)
        self.displays_cut = 0
        self.figures: list[tuple[int, int]] = []
        self.released: tuple[_Tail | None, _Tail | None] = (None, None)


class ContextRecorder:
    """Records, per executed cell, its code, stream tails, displays, figures and error."""

    def __init__(self, shell: Any, *, max_cells: int = DEFAULT_MAX_CELLS,
                 stream_limit: int = DEFAULT_STREAM_LIMIT,
                 max_frames: int = DEFAULT_MAX_FRAMES) -> None:
        self.shell = shell
        self.stream_limit = max(1, stream_limit)
        self.max_frames = max(0, max_frames)
        self._records: deque[CellRecord] = deque(maxlen=max(1, max_cells))
        self._since: dict[str, int] = {}  # session name -> the cell its last prompt covered
        self._running: list[_Running] = []  # a stack: a cell may run cells
        self._in_displayhook = False
        self._active = False
        self._publisher: Any = None
        self._original: Any = None
        self._wrapper: Any = None
        self._had_own_publish = False
        self._hook: Any = None
        self._patches: list[tuple[Any, str, Any, Any]] = []
        self._in_traceback = 0
        self._in_publish = 0

    def __repr__(self) -> str:
        state = "registered" if self._active else "not registered"
        return f"<ContextRecorder {state}, {len(self._records)} cells>"

    # -- queries

    @property
    def records(self) -> list[CellRecord]:
        """The remembered cells, oldest first (prompts included, marked by `kind`)."""
        return list(self._records)

    @property
    def newest(self) -> int | None:
        """Execution count of the newest recorded cell, if any."""
        records = self._records
        return records[-1].execution_count if records else None

    def since(self, session: str = "default") -> int | None:
        """The cell after which "since-last" starts for `session`: where its last sent
        prompt ran (or, for the panel and Python, the newest cell when it was sent)."""
        return self._since.get(session)

    def mark(self, session: str = "default", upto: int | None = None) -> None:
        """`session` sent a prompt: its "since-last" now starts after cell `upto` (default:
        the newest recorded cell). Other sessions keep their own."""
        upto = self.newest if upto is None else upto
        if upto is not None:
            self._since[session] = upto

    def select(self, spec: str | int | None = "since-last", *,
               since: int | None = None) -> list[CellRecord]:
        """The code cells `spec` names; "since-last" means after cell `since` (None: all)."""
        return _ctx().select(self._records, spec, since)

    def build(self, spec: str | int | None = "since-last", *, since: int | None = None,
              budget_tokens: int = DEFAULT_CONTEXT_BUDGET, out_limit: int = 2_000) -> Context:
        """The context for `spec`, reading `Out` values from the shell."""
        shell = self.shell
        return _ctx().build(self.select(spec, since=since), budget_tokens=budget_tokens,
                            out_text=lambda n: out_text(shell, n, out_limit))

    def clear(self) -> None:
        """Forget every cell and every session's "since-last" (cell numbers may restart)."""
        self._records.clear()
        self._since.clear()

    # -- installation

    def register(self) -> None:
        """Start recording; calling it again does nothing."""
        if self._active:
            return
        self._active = True
        self._wrap_publisher()
        self._patch_shell_writes()
        self.shell.events.register("pre_run_cell", self._pre_run_cell)
        self.shell.events.register("post_run_cell", self._post_run_cell)

    def unregister(self) -> None:
        """Stop recording; restore what was wrapped where nothing wrapped it since."""
        if not self._active:
            return
        self._active = False
        for event, callback in (("pre_run_cell", self._pre_run_cell),
                                ("post_run_cell", self._post_run_cell)):
            with contextlib.suppress(ValueError):
                self.shell.events.unregister(event, callback)
        while self._running:  # unregistered from inside a cell
            self._release(self._running.pop())
        self._unwrap_publisher()
        self._unpatch_shell_writes()

    def _wrap_publisher(self) -> None:
        publisher = self.shell.display_pub
        if self._publisher is publisher and vars(publisher).get("publish") is self._wrapper:
            return
        self._unwrap_publisher()
        original = publisher.publish
        recorder = self

        def publish(data: Any, *args: Any, **kwargs: Any) -> Any:
            # A stale wrapper left in another's chain stays inert.
            if recorder._wrapper is publish and recorder._running and not aside.depth:
                with contextlib.suppress(Exception):  # recording must never break display
                    recorder._record_display(data, kwargs)
            recorder._in_publish += 1  # a terminal's publisher prints: not cell output
            try:
                return original(data, *args, **kwargs)
            finally:
                recorder._in_publish -= 1

        publish.__wrapped__ = original  # type: ignore[attr-defined]
        self._had_own_publish = "publish" in vars(publisher)
        self._publisher, self._original, self._wrapper = publisher, original, publish
        publisher.publish = publish

    def _unwrap_publisher(self) -> None:
        from ._plots import unwrap_publish

        unwrap_publish(self._publisher, self._wrapper, self._original, self._had_own_publish)
        self._publisher = self._original = self._wrapper = None

    def _patch_shell_writes(self) -> None:
        """Keep the shell's own writes out of the stdout tail: a terminal's `Out[n]: …` (the
        value is read from `Out` when the context is built) and a printed traceback."""
        hook = self.shell.displayhook
        if hook is self._hook:
            return
        self._unpatch_shell_writes()
        start, finish = hook.start_displayhook, hook.finish_displayhook
        show = self.shell._showtraceback
        recorder = self

        def start_displayhook(*args: Any, **kwargs: Any) -> Any:
            recorder._in_displayhook = True
            return start(*args, **kwargs)

        def finish_displayhook(*args: Any, **kwargs: Any) -> Any:
            try:
                return finish(*args, **kwargs)
            finally:
                recorder._in_displayhook = False

        def _showtraceback(*args: Any, **kwargs: Any) -> Any:
            recorder._in_traceback += 1
            try:
                return show(*args, **kwargs)
            finally:
                recorder._in_traceback -= 1

        self._hook = hook
        self._patches = []
        for owner, name, wrapper in ((hook, "start_displayhook", start_displayhook),
                                     (hook, "finish_displayhook", finish_displayhook),
                                     (self.shell, "_showtraceback", _showtraceback)):
            own = vars(owner).get(name)
            try:
                setattr(owner, name, wrapper)
            except AttributeError:
                continue
            self._patches.append((owner, name, wrapper, own))

    def _unpatch_shell_writes(self) -> None:
        for owner, name, wrapper, own in self._patches:
            if vars(owner).get(name) is wrapper:  # else something wrapped it since: leave it
                if own is None:
                    delattr(owner, name)
                else:
                    setattr(owner, name, own)
        self._hook, self._patches = None, []
        self._in_displayhook = False

    def _quiet(self) -> bool:
        """True while the shell itself writes to stdout: `Out[n]:`, a traceback, a display."""
        return (self._in_displayhook or self._in_traceback > 0 or self._in_publish > 0
                or aside.depth > 0)

    # -- events

    def _pre_run_cell(self, info: Any = None) -> None:
        code = getattr(info, "raw_cell", None) or ""
        state = _Running(code, _ctx().cell_kind(code))
        self._in_displayhook = False
        if state.kind == "code":
            shell = self.shell
            if shell.display_pub is not self._publisher:
                self._wrap_publisher()  # capture_output or another extension swapped it in
            if shell.displayhook is not self._hook:
                self._patch_shell_writes()
            state.out = _Tap(sys.stdout, _Tail(self.stream_limit), self)
            if sys.stderr is not sys.stdout:
                state.err = _Tap(sys.stderr, _Tail(self.stream_limit), self)
        self._running.append(state)

    def _post_run_cell(self, result: Any = None) -> None:
        if not self._running:
            return
        state = self._running.pop()
        self._release(state)
        self._in_displayhook = False
        n = getattr(result, "execution_count", None)
        if not isinstance(n, int):
            return  # store_history=False: a cell with no number cannot be named
        if state.kind != "code":
            self._records.append(_ctx().CellRecord(n, state.code, state.kind))
            return
        out, err = state.released
        stdout, stdout_cut = out.snapshot() if out else ("", 0)
        stderr, stderr_cut = err.snapshot() if err else ("", 0)
        self._records.append(_ctx().CellRecord(
            execution_count=n,
            code=state.code,
            stdout=stdout,
            stderr=stderr,
            stdout_cut=stdout_cut,
            stderr_cut=stderr_cut,
            displays=tuple((mime, text) for _, mime, text in state.displays),
            displays_cut=state.displays_cut,
            figures=tuple(state.figures),
            has_out=getattr(result, "result", None) is not None,
            error=self._error(result),
        ))

    @staticmethod
    def _release(state: _Running) -> None:
        """Stop recording this cell's streams (stderr first: the reverse of patching)."""
        err = state.err.close() if state.err is not None else None
        out = state.out.close() if state.out is not None else None
        state.released = (out, err)

    # -- recording

    def _record_display(self, data: Any, kwargs: dict[str, Any]) -> None:
        state = self._running[-1]
        if state.kind != "code" or not isinstance(data, dict):
            return
        png = data.get("image/png")
        if png is not None:
            size = png_size(png)
            if size is not None:
                state.figures.append(size)
                del state.figures[:-20]
            return
        shown = _display_text(data, self.stream_limit)
        if shown is None:
            return
        transient = kwargs.get("transient") or {}
        display_id = transient.get("display_id") if isinstance(transient, dict) else None
        if kwargs.get("update") and display_id is not None:
            for i, (other, _, _) in enumerate(state.displays):
                if other == display_id:
                    state.displays[i] = (display_id, *shown)
                    return
        state.displays.append((display_id, *shown))
        total = sum(len(text) for _, _, text in state.displays)
        while len(state.displays) > 1 and total > 2 * self.stream_limit:
            total -= len(state.displays.pop(0)[2])
            state.displays_cut += 1

    def _error(self, result: Any) -> CellError | None:
        exc = getattr(result, "error_in_exec", None) or getattr(result, "error_before_exec", None)
        if not isinstance(exc, BaseException):
            return None
        names = getattr(self.shell.compile, "_filename_map", {})
        frames: tuple[str, ...]
        if isinstance(exc, SyntaxError):
            frame = f"  {_place(exc.filename or '', names)}, line {exc.lineno}"
            if exc.text:
                frame += f"\n    {exc.text.strip()}"
            message, frames = str(exc.msg), (_ctx().normalise(frame),)
        else:
            message = str(exc)
            frames = _frames(exc.__traceback__, names, self.max_frames)
        if len(message) > _MAX_MESSAGE:
            message = message[:_MAX_MESSAGE] + " […]"
        return _ctx().CellError(type(exc).__name__, _ctx().normalise(message), frames)


def _display_text(data: dict[str, Any], limit: int) -> tuple[str, str] | None:
    """(mime, text) of a display: Markdown, else plain text, else HTML (kept raw; reduced
    when the context is built, or now if it is long)."""
    markdown = data.get("text/markdown")
    plain = data.get("text/plain")
    markup = data.get("text/html")
    if isinstance(markdown, str):
        mime, text = "text/markdown", markdown
    elif isinstance(markup, str) and (not isinstance(plain, str)
                                      or _DEFAULT_REPR.match(plain.strip())):
        mime, text = "text/html", markup
        if len(text) > limit:
            mime, text = "text/plain", _ctx().html_to_text(text)
    elif isinstance(plain, str):
        mime, text = "text/plain", plain
    else:
        return None
    if len(text) > limit:
        text = text[:limit] + f"\n[… {len(text) - limit:,} more characters …]"
    return mime, text


def png_size(value: Any) -> tuple[int, int] | None:
    """(width, height) from a PNG's header, given bytes or base64 text; None if not a PNG."""
    if isinstance(value, str):
        try:
            head = base64.b64decode(value[:32])
        except (binascii.Error, ValueError):
            return None
    elif isinstance(value, (bytes, bytearray)):
        head = bytes(value[:24])
    else:
        return None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _place(filename: str, names: dict[str, int]) -> str:
    """`In [5]` for a cell's code, else the file, from the package down when installed."""
    n = names.get(filename)
    if n is not None:
        return f"In [{n}]"
    for marker in ("site-packages/", "dist-packages/"):
        if marker in filename:
            return filename.rsplit(marker, 1)[1]
    return filename


def _frames(tb: Any, names: dict[str, int], keep: int) -> tuple[str, ...]:
    """`keep` frames as text (see `_fix.chosen_frames`), IPython's frames before the first
    cell left out."""
    if not keep or tb is None:
        return ()
    summary = list(traceback.extract_tb(tb))
    first_cell = next((i for i, f in enumerate(summary) if f.filename in names), 0)
    summary = summary[first_cell:]
    frames = []
    from ._fix import chosen_frames

    for index in chosen_frames([f.filename for f in summary], names, keep):
        frame = summary[index]
        line = f"  {_place(frame.filename, names)}, line {frame.lineno}, in {frame.name}"
        if frame.line:
            line += f"\n    {frame.line.strip()}"
        frames.append(_ctx().normalise(line))
    return tuple(frames)


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
    recorder = getattr(registry.get("ClaudeMagics"), "recorder", None)
    return recorder if isinstance(recorder, ContextRecorder) else None


def out_text(shell: Any, execution_count: int, limit: int = 2_000) -> str | None:
    """The text form of `Out[execution_count]`, as the shell shows it, cut to `limit`
    characters; None when there is no such value (never returned, or `%reset out`)."""
    outputs = getattr(shell, "user_ns", {}).get("Out")
    if not isinstance(outputs, dict) or execution_count not in outputs:
        return None
    value = outputs[execution_count]
    formatters = shell.display_formatter.formatters
    try:
        text = formatters["text/plain"](value)
        if isinstance(text, str) and _DEFAULT_REPR.match(text.strip()):
            # say what a rich object shows (Markdown, HTML) rather than its class name
            richer = formatters["text/markdown"](value)
            if not isinstance(richer, str):
                markup = formatters["text/html"](value)
                richer = _ctx().html_to_text(markup) if isinstance(markup, str) else None
            text = richer if isinstance(richer, str) else text
    except Exception:
        text = None
    if not isinstance(text, str):  # IPython's formatters report a failing repr, return None
        text = f"<{type(value).__name__} object; its repr failed>"
    if len(text) > limit:
        text = text[:limit] + f"\n[… {len(text) - limit:,} more characters …]"
    return text


def _ctx() -> Any:
    from . import _context

    return _context
