"""Documents: files read safely, text decoded with an encoding fallback, PDFs checked.

A file is read without blocking (a FIFO never hangs the kernel) and within a size limit;
text falls back from UTF-8 to UTF-16/32 by byte-order mark or NUL pattern, then cp1252
and latin-1; PDFs are refused when encrypted or over Claude's page limit. pypdf is used
when installed.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
from pathlib import Path

from ._attachment import MAX_PDF_PAGES, Attachment, AttachmentError
from ._summaries import size_text

__all__ = ["AV_EXTS", "decode_text", "pdf_attachment", "read_file", "strip_notebook_images",
           "text_attachment"]

AV_EXTS = frozenset({
    ".mp3", ".wav", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".wma", ".aif", ".aiff",
    ".mid", ".midi", ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".wmv", ".flv", ".mpg",
    ".mpeg", ".3gp", ".ogv",
})  # fmt: skip


def read_file(path: Path, *, max_file_bytes: int) -> bytes:
    """The bytes of a regular file, refusing directories, pipes, sockets, devices, audio and
    video files, and anything over `max_file_bytes`."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise AttachmentError(f"file not found: {path}; check the path (relative to {Path.cwd()})") from None
    except OSError as exc:
        raise AttachmentError(f"cannot read {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise AttachmentError(f"{path} is a directory; attach a file inside it")
    if not stat.S_ISREG(st.st_mode):
        raise AttachmentError(f"{path} is {_special_kind(st.st_mode)}, not a regular file; "
                              "attach a regular file (copy the data into one first)")
    ext = path.suffix.lower()
    if ext in AV_EXTS:
        raise AttachmentError(f"{path.name}: audio and video files are not supported by Claude models")
    if st.st_size > max_file_bytes:
        raise AttachmentError(
            f"{path} is {size_text(st.st_size)}, over the {size_text(max_file_bytes)} limit; attach a smaller file"
        )
    try:
        # Non-blocking, and checked again once open: a FIFO put there since stat() must
        # not hang the kernel waiting for a writer.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with open(fd, "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise AttachmentError(f"{path} is {_special_kind(mode)}, not a regular file; "
                                      "attach a regular file (copy the data into one first)")
            data = fh.read(max_file_bytes + 1)  # the file may have grown since stat()
    except OSError as exc:
        raise AttachmentError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > max_file_bytes:
        raise AttachmentError(f"{path} is over the {size_text(max_file_bytes)} limit; attach a smaller file")
    return data


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def decode_text(data: bytes) -> tuple[str, str | None] | None:
    """Decode bytes that look like text; None for binary. Returns (text, fallback note)."""
    if data.startswith(b"\xef\xbb\xbf"):
        return _try(data, "utf-8-sig", None)
    if data.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return _try(data, "utf-32", "decoded as UTF-32")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return _try(data, "utf-16", "decoded as UTF-16")
    sample = data[:65536]
    if sample and b"\x00" in sample:
        # BOM-less UTF-16: NULs on one side of mostly-ASCII pairs.
        even, odd = sample[0::2].count(0), sample[1::2].count(0)
        half = len(sample) / 2
        if odd > 0.4 * half and even < 0.05 * half:
            return _try(data, "utf-16-le", "decoded as UTF-16")
        if even > 0.4 * half and odd < 0.05 * half:
            return _try(data, "utf-16-be", "decoded as UTF-16")
        return None
    try:
        text = data.decode("utf-8")
        note = None
    except UnicodeDecodeError as exc:
        if exc.start >= len(data) - 3 and len(data) > 65536:
            return None  # a cut-off multibyte sequence is not why a large file fails
        for encoding in ("cp1252", "latin-1"):
            try:
                text, note = data.decode(encoding), f"decoded as {encoding}"
                break
            except UnicodeDecodeError:
                continue
        else:  # pragma: no cover - latin-1 decodes everything
            return None
    return (text, note) if _looks_like_text(text) else None


def _try(data: bytes, encoding: str, note: str | None) -> tuple[str, str | None] | None:
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        return None
    return (text, note) if _looks_like_text(text) else None


_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f-\x9f]")


def _looks_like_text(text: str) -> bool:
    sample = text[:20000]
    return not sample or len(_CONTROL.findall(sample)) <= 0.02 * len(sample)


def strip_notebook_images(text: str) -> str:
    """Replace embedded output images in a notebook's JSON; they would swamp the text."""
    try:
        nb = json.loads(text)
        for cell in nb.get("cells", []):
            for output in cell.get("outputs", []) or []:
                data = output.get("data") or {}
                for mime in list(data):
                    if mime.startswith("image/") and mime != "image/svg+xml":
                        data[mime] = "<image omitted>"
        return json.dumps(nb, indent=1, ensure_ascii=False)
    except (ValueError, AttributeError, TypeError):
        return text


def text_attachment(
    text: str, *, name: str, title: str | None = None, object_type: str | None = None,
    note: str | None = None,
) -> Attachment:
    """Text as a plain-text document (`title` set) or, with `object_type`, an object's text."""
    lines = text.count("\n") + (1 if text and not text.endswith("\n") else 0)
    label = object_type or "text"
    desc = f"{name}: {label}, {lines:,} lines, {len(text):,} chars" + (f", {note}" if note else "")
    return Attachment("text", "text/plain", text.encode("utf-8"), name, desc, title=title,
                      object_type=object_type)


# ---------------------------------------------------------------------------- PDFs


def pdf_attachment(data: bytes, *, name: str, title: str | None) -> Attachment:
    """A PDF document block; refuses encrypted PDFs and ones over 100 pages.

    Pages are counted with pypdf when it is installed. Without it, `/Type /Page` objects
    are counted in the raw bytes, which misses pages inside compressed object streams;
    the count is then reported as unknown rather than guessed.
    """
    if b"%PDF-" not in data[:1024]:
        raise AttachmentError(f"{name} is not a PDF file (no %PDF header); check the file")
    pages = _pdf_pages(data, name)
    if pages is not None and pages > MAX_PDF_PAGES:
        raise AttachmentError(
            f"{name} has {pages} pages; Claude reads at most {MAX_PDF_PAGES}: split it and attach a part"
        )
    count = f"{pages} page{'s' if pages != 1 else ''}" if pages is not None else "pages unknown"
    desc = f"{name}: PDF, {count}, {size_text(len(data))}"
    return Attachment("pdf", "application/pdf", data, name, desc, pages=pages, title=title or name)


def _pdf_pages(data: bytes, name: str) -> int | None:
    try:
        import pypdf
    except ImportError:
        pass
    else:
        try:
            reader = pypdf.PdfReader(io.BytesIO(data))
            if reader.is_encrypted:
                raise AttachmentError(f"{name} is encrypted; save an unencrypted copy and attach that")
            return len(reader.pages)
        except AttachmentError:
            raise
        except Exception as exc:  # pypdf raises many types on damaged files
            raise AttachmentError(f"{name} could not be read as a PDF ({type(exc).__name__}); check the file") from None
    if re.search(rb"/Encrypt\s", data):
        raise AttachmentError(f"{name} is encrypted; save an unencrypted copy and attach that")
    n = len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", data))
    return n or None
