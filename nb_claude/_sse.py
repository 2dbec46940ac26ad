"""A Server-Sent Events decoder over raw bytes.

Follows the WHATWG event-stream rules: an optional UTF-8 BOM starts the
stream, lines end in CRLF, LF or CR (split as bytes, so U+2028 inside JSON is
safe), comment lines start with ":", an empty line dispatches the event. Reads
may split the stream at any byte, a CRLF included. A line longer than
`max_line` bytes raises LineTooLong instead of growing without bound.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

__all__ = ["ServerSentEvent", "SSEDecoder", "LineTooLong", "MAX_LINE_BYTES", "iter_events"]

MAX_LINE_BYTES = 16 * 1024 * 1024
_BOM = b"\xef\xbb\xbf"


class LineTooLong(ValueError):
    """The stream sent a line longer than the decoder's limit."""


class ServerSentEvent(NamedTuple):
    """One dispatched event; immutable, and cheap to make (one per streamed chunk)."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


_make_event = tuple.__new__  # ServerSentEvent(...) without its Python-level __new__


class SSEDecoder:
    """Incremental decoder: `feed(bytes)` returns the events completed so far.

    An event is dispatched when it had a `data` field (even an empty one) or an
    `event` field; callers decide what an empty event means.
    """

    __slots__ = ("max_line", "_pending", "_pending_size", "_skip_lf", "_head", "_event", "_data",
                 "_id", "_retry", "_has_fields")

    def __init__(self, max_line: int = MAX_LINE_BYTES) -> None:
        self.max_line = max_line
        # The unterminated end of the stream so far, as the reads that brought it:
        # joined once when its line ends, so a long line costs linear time.
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._skip_lf = False  # the last read ended in CR: a leading LF completes that CRLF
        self._head: bytes | None = b""  # the stream's first bytes until the BOM is ruled out
        self._reset()
        self._id: str | None = None

    def _reset(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._retry: int | None = None
        self._has_fields = False

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        if not chunk:
            return []
        if self._head is not None:
            head = self._head + chunk
            if len(head) < len(_BOM) and _BOM.startswith(head):
                self._head = head
                return []
            self._head = None
            chunk = head[len(_BOM):] if head.startswith(_BOM) else head
            if not chunk:
                return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
                if not chunk:
                    return []
        # Only the new read is searched: pending bytes hold no terminator.
        cut = max(chunk.rfind(b"\n"), chunk.rfind(b"\r"))
        if cut < 0:
            self._hold(chunk)
            return []
        last = len(chunk) - 1
        # A CR that ends the read may be the first half of a CRLF; a CR with
        # more bytes after it in the same read has already ended its line.
        self._skip_lf = cut == last and chunk[cut] == 13
        complete = chunk if cut == last else chunk[:cut + 1]
        if self._pending:
            self._pending.append(complete)
            complete = b"".join(self._pending)
            self._pending, self._pending_size = [], 0
        if cut < last:
            self._hold(chunk[cut + 1:])
        lines = complete.splitlines()
        if len(complete) > self.max_line and max(map(len, lines)) > self.max_line:
            raise LineTooLong(f"a line longer than {self.max_line} bytes")
        events: list[ServerSentEvent] = []
        data = self._data
        for line in lines:
            # Fast path for the two lines nearly every event is made of; the
            # general rules in _line give the same result for them.
            if line[:6] == b"data: ":
                data.append(line[6:].decode("utf-8", errors="replace"))
                self._has_fields = True
                continue
            event = self._line(line)
            if event is not None:
                events.append(event)
            data = self._data  # a dispatch starts a new list
        return events

    def _hold(self, part: bytes) -> None:
        self._pending.append(part)
        self._pending_size += len(part)
        if self._pending_size > self.max_line:
            self._pending, self._pending_size = [], 0
            raise LineTooLong(f"a line longer than {self.max_line} bytes")

    def flush(self) -> list[ServerSentEvent]:
        """End of stream: a final line without terminator is processed; an
        event not closed by an empty line is dispatched (servers that drop the
        connection mid-event are common)."""
        events: list[ServerSentEvent] = []
        rest = b"".join(self._pending) if self._pending else (self._head or b"")
        self._pending, self._pending_size, self._head, self._skip_lf = [], 0, None, False
        if rest:
            event = self._line(rest)
            if event is not None:
                events.append(event)
        event = self._line(b"")
        if event is not None:
            events.append(event)
        return events

    def _line(self, line: bytes) -> ServerSentEvent | None:
        if not line:
            if not self._has_fields:
                return None
            event = _make_event(ServerSentEvent, (self._event or "message",
                                                  "\n".join(self._data), self._id, self._retry))
            self._reset()
            return event
        if line[:1] == b":":
            return None
        text = line.decode("utf-8", errors="replace")
        name, sep, value = text.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._has_fields = True
        elif name == "event":
            self._event = value
            self._has_fields = True
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None


def iter_events(chunks: Iterable[bytes]) -> Iterator[ServerSentEvent]:
    """Decode an iterable of byte chunks into events, flushing at the end."""
    decoder = SSEDecoder()
    for chunk in chunks:
        yield from decoder.feed(chunk)
    yield from decoder.flush()
