"""A Server-Sent Events decoder over raw bytes.

Follows the WHATWG event-stream rules: lines end in CRLF, LF or CR (split as
bytes, so U+2028 inside JSON is safe), comment lines start with ":", an empty
line dispatches the event. Reads may split the stream at any byte.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

__all__ = ["ServerSentEvent", "SSEDecoder", "iter_events"]


class ServerSentEvent(NamedTuple):
    """One dispatched event; immutable, and cheap to make (one per streamed chunk)."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


_make_event = tuple.__new__  # ServerSentEvent(...) without its Python-level __new__


class SSEDecoder:
    """Incremental decoder: `feed(bytes)` returns the events completed so far."""

    __slots__ = ("_buffer", "_skip_lf", "_event", "_data", "_id", "_retry", "_has_fields")

    def __init__(self) -> None:
        self._buffer = b""
        self._skip_lf = False
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
        if self._skip_lf and chunk[:1] == b"\n":
            chunk = chunk[1:]
            if not chunk:
                self._skip_lf = False
                return []
        self._skip_lf = False
        buffer = self._buffer + chunk if self._buffer else chunk
        # A complete line ends at the last terminator; a trailing CR may be the
        # first half of a CRLF, so the next chunk's leading LF is dropped.
        cut = max(buffer.rfind(b"\n"), buffer.rfind(b"\r"))
        if cut < 0:
            self._buffer = buffer
            return []
        self._buffer = buffer[cut + 1:]
        if buffer[cut] == 13:  # b"\r"
            self._skip_lf = True
        events: list[ServerSentEvent] = []
        data = self._data
        for line in buffer[: cut + 1].splitlines():
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

    def flush(self) -> list[ServerSentEvent]:
        """End of stream: a final line without terminator is processed; an
        event not closed by an empty line is dispatched (servers that drop the
        connection mid-event are common)."""
        events: list[ServerSentEvent] = []
        if self._buffer:
            event = self._line(self._buffer)
            self._buffer = b""
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
            return event if event.data or event.event != "message" else None
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
