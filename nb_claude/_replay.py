"""Record and replay replies so a notebook re-runs without a key or the network.

The replay file is JSON Lines, one entry per request, appended and never
rewritten, so it merges well in git and survives several kernels writing at
once. An entry is found by `request_key(body)`; the last entry for a key wins.
A reply that asked for tools carries the tool results sent back (`results`),
so a replay never has to run a recorded call. An entry also carries `inputs`, one
digest and description per input, and `cell`, where the request came from (see
`_inputs`); older entries lack them and still replay. The file is untrusted input: the
API key is redacted from everything written, and a file that is not a replay
file is never appended to.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import pathlib
import threading
import warnings
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from ._config import redact

try:
    import fcntl
except ImportError:  # Windows: O_APPEND alone keeps whole lines apart in practice.
    fcntl = None  # type: ignore[assignment]

__all__ = ["ReplayError", "ReplayWarning", "ReplayFile", "request_key", "request_summary"]


# Top-level body keys that do not change what the model answers.
_KEY_IGNORED = frozenset({"stream", "metadata"})
# Keys an entry always has; `extra` may not replace them.
_RESERVED = frozenset({"v", "key", "created", "request", "reply", "results"})
_SYSTEM_CHARS = 200
_TEXT_CHARS = 80
_SCAN_BLOCK = 1 << 16
_MAX_LINE = 1 << 26  # a longer line is not a replay entry; it is skipped, not kept in memory


class ReplayError(RuntimeError):
    """The replay file cannot serve the request: a bad mode, an unwritable file, a miss."""


class ReplayWarning(UserWarning):
    """A line of the replay file could not be used and was skipped."""


def _canonical(value: Any) -> bytes:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # Lone surrogates cannot be UTF-8; escaping them keeps the key defined.
    return text.encode("utf-8", errors="backslashreplace")


def request_key(body: dict) -> str:
    """sha256 hex of the canonical request body, ignoring keys that do not change the answer."""
    if not isinstance(body, dict):
        raise TypeError("request_key expects the request body as a dict")
    return hashlib.sha256(_canonical({k: v for k, v in body.items()
                                      if k not in _KEY_IGNORED})).hexdigest()


# ---------------------------------------------------------------- summaries


def _text_summary(text: str) -> dict[str, Any]:
    return {"type": "text", "chars": len(text), "text": text[:_TEXT_CHARS]}


def _payload_summary(data: Any, *, encoded: bool) -> dict[str, Any]:
    """Hash and size of an attachment's bytes; the data itself never leaves."""
    if not isinstance(data, str):
        return {"sha256": None, "bytes": None}
    if encoded:
        try:
            raw = base64.b64decode(data, validate=False)
        except (binascii.Error, ValueError):
            return {"sha256": hashlib.sha256(data.encode("utf-8", "backslashreplace")).hexdigest(),
                    "bytes": None}
    else:
        raw = data.encode("utf-8", "backslashreplace")
    return {"sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}


def _data_url_summary(kind: str, url: Any) -> dict[str, Any]:
    """Summary of an OpenAI-style data: URL part; remote URLs are kept as their scheme only."""
    out: dict[str, Any] = {"type": kind}
    if isinstance(url, str) and url.startswith("data:") and "," in url:
        header, data = url[5:].split(",", 1)
        out["media_type"] = header.split(";", 1)[0] or None
        out.update(_payload_summary(data, encoded=header.endswith(";base64")))
    else:
        out["source"] = "url"
    return out


def _source_summary(block: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": block.get("type")}
    source = block.get("source")
    if isinstance(source, dict):
        out["media_type"] = source.get("media_type")
        kind = source.get("type")
        if kind in ("base64", "text"):
            out.update(_payload_summary(source.get("data"), encoded=kind == "base64"))
        else:
            out["source"] = kind
    if isinstance(block.get("title"), str):
        out["title"] = block["title"][:_TEXT_CHARS]
    return out


def _block_summary(block: Any) -> dict[str, Any]:
    if isinstance(block, str):
        return _text_summary(block)
    if not isinstance(block, dict):
        return {"type": type(block).__name__}
    kind = block.get("type")
    if kind == "text":
        return _text_summary(str(block.get("text", "")))
    if kind in ("image", "document"):
        return _source_summary(block)
    if kind == "image_url":
        image = block.get("image_url")
        return _data_url_summary("image_url", image.get("url") if isinstance(image, dict) else image)
    if kind == "file":
        file: dict[str, Any] = block["file"] if isinstance(block.get("file"), dict) else {}
        out = _data_url_summary("file", file.get("file_data"))
        if isinstance(file.get("filename"), str):
            out["title"] = file["filename"][:_TEXT_CHARS]
        return out
    if kind == "tool_use":
        return {"type": kind, "id": block.get("id"), "name": block.get("name")}
    if kind == "tool_result":
        content = block.get("content")
        parts = [content] if isinstance(content, str) else content if isinstance(content, list) else []
        return {"type": kind, "tool_use_id": block.get("tool_use_id"),
                "is_error": bool(block.get("is_error", False)),
                "content": [_block_summary(part) for part in parts]}
    if kind in ("thinking", "redacted_thinking"):
        return {"type": kind, "chars": len(str(block.get("thinking", "")))}
    return {"type": kind}


def _message_summary(message: Any) -> dict[str, Any]:
    if not isinstance(message, dict):
        return {"role": None, "content": [_block_summary(message)]}
    content = message.get("content")
    blocks = [content] if isinstance(content, str) else content if isinstance(content, list) else []
    out: dict[str, Any] = {"role": message.get("role"),
                           "content": [_block_summary(block) for block in blocks]}
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        out["tool_calls"] = [(call.get("function") or {}).get("name") for call in calls
                             if isinstance(call, dict)]
    if message.get("tool_call_id"):
        out["tool_call_id"] = message["tool_call_id"]
    return out


def _system_summary(system: Any) -> dict[str, Any] | None:
    if system is None:
        return None
    if isinstance(system, list):
        system = "\n".join(str(block.get("text", "")) if isinstance(block, dict) else str(block)
                           for block in system)
    text = str(system)
    return {"chars": len(text), "text": text[:_SYSTEM_CHARS]}


def _tool_name(tool: Any) -> Any:
    if not isinstance(tool, dict):
        return None
    function = tool.get("function")
    return tool.get("name") or (function.get("name") if isinstance(function, dict) else None)


def request_summary(body: dict) -> dict:
    """A small, readable account of a request for reviewers of the replay file.

    Only whitelisted fields are copied, so neither attachment data nor any
    credential that strayed into the body can reach the file.
    """
    summary: dict[str, Any] = {"model": body.get("model"), "max_tokens": body.get("max_tokens")}
    if "system" in body:
        summary["system"] = _system_summary(body["system"])
    for name in ("stop_sequences", "thinking", "tool_choice"):
        if name in body:
            summary[name] = body[name]
    if isinstance(body.get("tools"), list):
        summary["tools"] = [_tool_name(tool) for tool in body["tools"]]
    messages = body.get("messages")
    summary["messages"] = ([_message_summary(m) for m in messages]
                           if isinstance(messages, list) else [])
    return summary


# ---------------------------------------------------------------- the file


@contextlib.contextmanager
def _locked(fd: int, exclusive: bool) -> Iterator[None]:
    """Hold an advisory flock on `fd`; a filesystem without locks still works, unlocked."""
    locked = False
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            locked = True
        except OSError:
            pass
    try:
        yield
    finally:
        if locked:
            fcntl.flock(fd, fcntl.LOCK_UN)


def _pread(fd: int, size: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, size, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # Windows has no pread
    chunks = []
    while size > 0 and (chunk := os.read(fd, size)):
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _encode_line(entry: dict[str, Any]) -> bytes:
    """One JSON line with the API key redacted (a tool or a reply may have quoted it)."""
    text = json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
    redacted = redact(text)
    if redacted != text:
        try:
            json.loads(redacted)
        except ValueError:  # the key straddled JSON syntax: redact string by string
            redacted = json.dumps(_redact_strings(entry), ensure_ascii=False,
                                  separators=(",", ":"))
    try:
        return redacted.encode("utf-8") + b"\n"
    except UnicodeEncodeError:  # a lone surrogate: fall back to \u escapes
        return redact(json.dumps(_redact_strings(entry), separators=(",", ":"))).encode(
            "ascii") + b"\n"


def _encode_lines(entries: list[dict[str, Any]]) -> bytes:
    """Several entries' lines, looked through for the key once; any doubt (the key found, a
    lone surrogate) and each line is made by `_encode_line`."""
    text = "\n".join(json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
                     for entry in entries) + "\n"
    if redact(text) == text:
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            pass
    return b"".join(_encode_line(entry) for entry in entries)


def _redact_strings(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(str(k)): _redact_strings(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_strings(v) for v in value]
    return value


def _decode_entry(line: bytes) -> tuple[dict[str, Any] | None, str]:
    """The replay entry on one line, or None and what is wrong with the line."""
    try:
        entry = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None, "line"
    if isinstance(entry, dict) and isinstance(entry.get("key"), str) \
            and isinstance(entry.get("reply"), dict):
        return entry, ""
    return None, "entry without key or reply"


def _holds_entries(fd: int, size: int) -> bool:
    """True when the file is blank or one of its lines is a replay entry.

    Reads only as far as the first entry, so a real replay file costs one block.
    """
    offset, pending, blank, skipping = 0, b"", True, False
    while offset < size:
        block = _pread(fd, min(_SCAN_BLOCK, size - offset), offset)
        if not block:
            break
        offset += len(block)
        *lines, pending = (pending + block).split(b"\n")
        for line in lines:
            if skipping:
                skipping = False
                continue
            if line.strip():
                blank = False
                if _decode_entry(line.strip())[0] is not None:
                    return True
        if len(pending) > _MAX_LINE:
            pending, skipping, blank = b"", True, False
    if pending.strip() and not skipping:
        blank = False
        if _decode_entry(pending.strip())[0] is not None:
            return True
    return blank


class ReplayFile:
    """An append-only JSON Lines file of recorded replies, keyed by `request_key`.

    Parsed entries are kept in memory; a `get` re-reads only when the file
    changed on disk, and only the appended tail when it merely grew.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = pathlib.Path(os.fspath(path)).expanduser()
        self._lock = threading.RLock()
        # (inode, size) of the file when it was last seen to hold replay entries
        self._checked: tuple[int, int] | None = None
        self._reset()

    def __repr__(self) -> str:
        return f"ReplayFile({str(self.path)!r})"

    def _reset(self) -> None:
        self._entries: dict[str, dict[str, Any]] = {}
        self._count = 0
        self._offset = 0  # bytes consumed: always just after a b"\n"
        self._lineno = 0  # lines consumed
        self._tail: dict[str, Any] | None = None  # a valid entry not yet ended by b"\n"
        self._warned: set[int] = set()  # byte offsets of lines already warned about
        self._stat: tuple[int, int, int] | None = None

    # -- reading

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._reset()
            return
        except OSError as exc:
            raise ReplayError(f"cannot read replay file {self.path}: {exc.strerror}") from None
        if (st.st_size, st.st_mtime_ns, st.st_ino) != self._stat:
            self._load()

    def _load(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        except FileNotFoundError:
            self._reset()
            return
        except OSError as exc:
            raise ReplayError(f"cannot read replay file {self.path}: {exc.strerror}") from None
        try:
            with _locked(fd, exclusive=False):
                st = os.fstat(fd)
                start = self._tail_start(fd, st)
                if start is None:
                    self._reset()
                    start = 0
                data = _pread(fd, st.st_size - start, start) if st.st_size > start else b""
                self._stat = (st.st_size, st.st_mtime_ns, st.st_ino)
        except OSError as exc:
            raise ReplayError(f"cannot read replay file {self.path}: {exc.strerror}") from None
        finally:
            os.close(fd)
        self._parse(data)

    def _tail_start(self, fd: int, st: os.stat_result) -> int | None:
        """Where to resume reading, or None when the file must be read again from the start."""
        if self._stat is None or self._stat[2] != st.st_ino or st.st_size < self._stat[0]:
            return None
        if st.st_size == self._stat[0]:
            return None  # same size, new mtime: rewritten in place
        # A file rewritten under us would no longer have a line end where we stopped.
        if self._offset and _pread(fd, 1, self._offset - 1) != b"\n":
            return None
        return self._offset

    def _parse(self, data: bytes) -> None:
        *lines, rest = data.split(b"\n")
        offset = self._offset
        problems: list[tuple[int, str]] = []  # (byte offset, message) of skipped lines
        for line in lines:
            self._lineno += 1
            entry = self._entry(line, offset, self._lineno, "corrupt", problems)
            if entry is not None:
                self._entries[entry["key"]] = entry
                self._count += 1
            offset += len(line) + 1
        self._offset = offset
        self._tail = (self._entry(rest, offset, self._lineno + 1, "truncated", problems)
                      if rest else None)
        self._warned.update(offset for offset, _ in problems)
        messages = [message for _, message in problems]
        if not self._count and self._tail is None and len(messages) > 1:
            # Not a replay file at all (a mistyped replay_path): one warning, not one a line.
            messages = [f"{self.path}: not a replay file (no line is a replay entry); "
                        "nothing is replayed from it"]
        for message in messages:
            warnings.warn(message, ReplayWarning, stacklevel=5)

    def _entry(self, line: bytes, offset: int, lineno: int, what: str,
               problems: list[tuple[int, str]]) -> dict[str, Any] | None:
        line = line.strip()
        if not line:
            return None
        entry, problem = _decode_entry(line)
        if entry is not None:
            return entry
        if problem == "line":
            problem = f"{what} line"
        if offset not in self._warned:
            problems.append((offset, f"{self.path}:{lineno}: skipped {problem} in replay file"))
        return None

    def get(self, key: str) -> dict | None:
        """The last entry recorded for `key`, or None."""
        with self._lock:
            self._refresh()
            if self._tail is not None and self._tail["key"] == key:
                return self._tail
            return self._entries.get(key)

    def __len__(self) -> int:
        """Number of valid entries, counting each re-recording of a key."""
        with self._lock:
            self._refresh()
            return self._count + (self._tail is not None)

    def keys(self) -> set[str]:
        with self._lock:
            self._refresh()
            keys = set(self._entries)
            if self._tail is not None:
                keys.add(self._tail["key"])
            return keys

    def entries(self) -> list[dict[str, Any]]:
        """The last entry of each key, in the order the keys were first recorded."""
        with self._lock:
            self._refresh()
            found = list(self._entries.values())
            if self._tail is not None:
                found.append(self._tail)
            return found

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    # -- writing

    def put(self, key: str, *, reply: dict, request: dict, results: list[dict] | None = None,
            extra: dict | None = None) -> dict:
        """Append an entry for `key` and return it.

        `request` is the request body; only its `request_summary` is stored.
        `results` are the tool results sent back after a reply that asked for tools.
        An existing file none of whose lines is a replay entry is refused.
        """
        entry = self._new_entry(key, reply, request, results, extra)
        self._append(_encode_line(entry), sync=True)
        return entry

    def put_many(self, entries: list[tuple[str, dict, dict, dict | None]]) -> int:
        """Append (key, reply, request, extra) entries in one locked write; their number.

        For many answers arriving at once (a batch): each line is whole once the write
        returns, so a killed kernel loses none of them; unlike `put`, the disk is not
        synced for each, so only a machine crash could lose the last burst.
        """
        made = [self._new_entry(key, reply, request, None, extra)
                for key, reply, request, extra in entries]
        if made:
            self._append(_encode_lines(made), sync=False)
        return len(made)

    @staticmethod
    def _new_entry(key: str, reply: dict, request: dict, results: list[dict] | None,
                   extra: dict | None) -> dict[str, Any]:
        clash = _RESERVED.intersection(extra or {})
        if clash:
            raise ValueError(f"extra may not set {', '.join(sorted(clash))}")
        created = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        entry = {"v": 1, "key": key, "created": created.replace("+00:00", "Z"),
                 "request": request_summary(request), "reply": reply, **(extra or {})}
        if results is not None:
            entry["results"] = results
        return entry

    def _append(self, line: bytes, *, sync: bool) -> None:
        """Write whole lines at the end of the file under its lock (refusing a file that is
        not a replay file), after a line end."""
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(self.path, flags, 0o644)
        except FileNotFoundError:
            raise ReplayError(f"cannot write replay file {self.path}: its folder does not exist; "
                              "create it or choose another path") from None
        except OSError as exc:
            raise ReplayError(f"cannot write replay file {self.path}: {exc.strerror}; "
                              "choose a writable path or set the replay mode to 'off'") from None
        try:
            with _locked(fd, exclusive=True):
                st = os.fstat(fd)
                size = st.st_size
                checked = self._checked
                if size and (checked is None or checked[0] != st.st_ino or size < checked[1]):
                    if not _holds_entries(fd, size):
                        raise ReplayError(
                            f"not recording to {self.path}: it is not a replay file (no line "
                            "is a replay entry); set replay_path to a new .jsonl file")
                    self._checked = (st.st_ino, size)
                if size and _pread(fd, 1, size - 1) != b"\n":
                    line = b"\n" + line  # a writer died mid-line: do not glue onto it
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view):]
                if sync:
                    os.fsync(fd)
        except OSError as exc:
            raise ReplayError(f"cannot write replay file {self.path}: {exc.strerror}; "
                              "choose a writable path or set the replay mode to 'off'") from None
        finally:
            os.close(fd)
