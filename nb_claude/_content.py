"""Attachments: figures, images, DataFrames, arrays and files become Claude content blocks.

Pure module: no IPython, no widgets. pandas, numpy, matplotlib, Pillow and pypdf are
imported only when an object of that kind is attached, so attaching a file costs nothing
beyond reading it. Every limit Claude enforces on input (image size and count, PDF pages,
request size) is checked here, before anything is sent.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import os
import re
import reprlib
import stat
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, cast

__all__ = [
    "Attachment",
    "AttachmentError",
    "attachment_from",
    "image_attachment",
    "check_request_limits",
    "summarize_dataframe",
    "describe_value",
    "MAX_IMAGE_BASE64",
    "MAX_PDF_PAGES",
    "MAX_REQUEST_BYTES",
]

MAX_IMAGE_BASE64 = 5 * 1024 * 1024  # per image, measured as base64 characters
MAX_IMAGE_BYTES = MAX_IMAGE_BASE64 // 4 * 3  # raw bytes whose base64 fits in MAX_IMAGE_BASE64
MAX_IMAGE_PIXELS_EDGE = 8000
MANY_IMAGES = 20  # above this many images per request, each must be <= 2000 px
MANY_IMAGES_EDGE = 2000
MAX_IMAGES = 100
MAX_PDF_PAGES = 100
MAX_REQUEST_BYTES = 32 * 1024 * 1024
PDF_TOKENS_PER_PAGE = 1500

_IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
_IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".jpe", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".ico"}
_AV_EXTS = {
    ".mp3", ".wav", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".wma", ".aif", ".aiff",
    ".mid", ".midi", ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".wmv", ".flv", ".mpg",
    ".mpeg", ".3gp", ".ogv",
}  # fmt: skip
_AV_CLASSES = {"Audio", "Video", "YouTubeVideo", "VimeoVideo", "IFrame"}


class AttachmentError(ValueError):
    """An object or file cannot be sent to Claude; the message says what to do instead."""


@dataclass(frozen=True)
class Attachment:
    """The exact bytes sent for one attached object, with a one-line description.

    `object_type` is set for summaries of Python objects (DataFrame, Series, ndarray...):
    those go as a text block wrapped in an `<attachment>` tag; text files go as
    plain-text document blocks instead.
    """

    kind: str  # "image" | "pdf" | "text"
    media_type: str
    data: bytes
    name: str
    description: str
    width: int | None = None
    height: int | None = None
    pages: int | None = None
    title: str | None = None
    object_type: str | None = None

    def __repr__(self) -> str:
        return (f"Attachment({self.description!r}, {self.media_type}, {len(self.data):,} bytes, "
                f"sha256={self.sha256[:12]})")

    @cached_property
    def sha256(self) -> str:
        """Hex digest of `data`: a stable key for caches and provenance."""
        return hashlib.sha256(self.data).hexdigest()

    @property
    def base64_size(self) -> int:
        return 4 * math.ceil(len(self.data) / 3)

    def text(self) -> str:
        return self.data.decode("utf-8")

    def to_block(self) -> dict[str, Any]:
        """The Anthropic-native content block for this attachment."""
        if self.kind == "image":
            return {
                "type": "image",
                "source": {"type": "base64", "media_type": self.media_type, "data": _b64(self.data)},
            }
        if self.kind == "pdf":
            block: dict[str, Any] = {
                "type": "document",
                "source": {"type": "base64", "media_type": "application/pdf", "data": _b64(self.data)},
            }
        elif self.object_type is not None:
            return {
                "type": "text",
                "text": f'<attachment name="{_attr(self.name)}" kind="{_attr(self.object_type)}">\n'
                f"{self.text()}\n</attachment>",
            }
        else:
            block = {
                "type": "document",
                "source": {"type": "text", "media_type": "text/plain", "data": self.text()},
            }
        if self.title:
            block["title"] = self.title
        return block

    def estimate_tokens(self) -> int:
        """Rough input cost: images w*h/750, text chars/4, PDFs ~1,500 tokens a page.

        PDF pages also carry an image of each page, so real PDF costs vary widely;
        this is a planning figure, not a bill.
        """
        if self.kind == "image":
            return math.ceil((self.width or 0) * (self.height or 0) / 750)
        if self.kind == "pdf":
            pages = self.pages if self.pages is not None else max(1, len(self.data) // 50_000)
            return pages * PDF_TOKENS_PER_PAGE
        return math.ceil(len(self.text()) / 4)

    def thumbnail_data_uri(self, max_edge: int = 64) -> str | None:
        """A small PNG `data:` URI of an image attachment, for "what was sent" lines."""
        if self.kind != "image":
            return None
        try:
            image = _open_image(self.data, self.name)
            image.thumbnail((max_edge, max_edge))
            if image.mode not in ("RGB", "RGBA", "L", "LA"):
                image = image.convert("RGBA")
            buf = io.BytesIO()
            image.save(buf, format="PNG", optimize=True)
        except (AttachmentError, OSError, ValueError):
            return None
        return "data:image/png;base64," + _b64(buf.getvalue())

    def summary(self) -> dict[str, Any]:
        """What was sent, without the data: for provenance lines and replay files."""
        return {
            "kind": self.kind,
            "media_type": self.media_type,
            "name": self.name,
            "description": self.description,
            "sha256": self.sha256,
            "bytes": len(self.data),
            "width": self.width,
            "height": self.height,
            "pages": self.pages,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form with the data as base64, for saving a session."""
        return {
            "kind": self.kind,
            "media_type": self.media_type,
            "data": _b64(self.data),
            "name": self.name,
            "description": self.description,
            "width": self.width,
            "height": self.height,
            "pages": self.pages,
            "title": self.title,
            "object_type": self.object_type,
            "sha256": self.sha256,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Attachment:
        """Inverse of `to_dict`; refuses data whose hash does not match the saved one."""
        att = cls(
            kind=d["kind"],
            media_type=d["media_type"],
            data=base64.b64decode(d["data"], validate=True),
            name=d["name"],
            description=d["description"],
            width=d.get("width"),
            height=d.get("height"),
            pages=d.get("pages"),
            title=d.get("title"),
            object_type=d.get("object_type"),
        )
        if d.get("sha256") and d["sha256"] != att.sha256:
            raise AttachmentError(f"saved attachment {att.name!r} is corrupt (hash mismatch); attach it again")
        return att


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _attr(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:.1f} {unit}".replace(".0 ", " ")
        n /= 1024  # type: ignore[assignment]
    return f"{n} bytes"  # pragma: no cover


def _type_name(obj: object) -> str:
    cls = type(obj)
    return cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _module(obj: object) -> str:
    return type(obj).__module__ or ""


# ---------------------------------------------------------------------------- dispatch


def attachment_from(
    obj: object,
    *,
    name: str,
    max_image_edge: int = 1568,
    dataframe_budget: int = 6000,
    max_file_bytes: int = 32 * 1024 * 1024,
) -> Attachment:
    """Turn a Python object or a file path into an Attachment.

    Accepts DataFrames, Series, ndarrays (H×W×3/4 uint8 arrays are sent as images),
    matplotlib Figures/Axes, PIL images, IPython `Image` objects, raw image/PDF bytes,
    paths to image, PDF and text files, objects with `_repr_llm_()` or `_repr_png_()`,
    and multi-line strings (sent as text).
    """
    if isinstance(obj, Attachment):
        return obj
    if isinstance(obj, (str, os.PathLike)):
        if isinstance(obj, str) and ("\n" in obj or "\0" in obj):
            return _text_attachment(obj, name=name, object_type="str")
        return _file_attachment(Path(obj), name=name, max_image_edge=max_image_edge,
                                max_file_bytes=max_file_bytes)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return _bytes_attachment(bytes(obj), name=name, max_image_edge=max_image_edge)

    try:
        return _object_attachment(obj, name=name, max_image_edge=max_image_edge,
                                  dataframe_budget=dataframe_budget)
    except AttachmentError:
        raise
    except Exception as exc:  # the object's own _repr_llm_, _repr_png_ or __getattr__ failed
        raise AttachmentError(f"{name}: reading this {_type_name(obj)} failed with "
                              f"{error_line(exc)}; fix it or attach something else") from None


def error_line(exc: BaseException, limit: int = 160) -> str:
    """`Type: message` on one short line, for an error raised by the user's own object."""
    text = " ".join(str(exc).split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _object_attachment(obj: object, *, name: str, max_image_edge: int,
                       dataframe_budget: int) -> Attachment:
    module, cls_name = _module(obj), type(obj).__name__
    if cls_name in _AV_CLASSES and module.startswith("IPython"):
        raise AttachmentError(f"{name}: {cls_name} is not supported by Claude models; attach an image, PDF or text")
    repr_llm = getattr(obj, "_repr_llm_", None)
    if callable(repr_llm) and not isinstance(obj, type):
        text = repr_llm()
        if not isinstance(text, str):
            raise AttachmentError(f"{name}: _repr_llm_() returned {type(text).__name__}, not text")
        return _text_attachment(text, name=name, object_type=cls_name)
    if module.startswith("pandas"):
        if cls_name == "DataFrame":
            return _frame_attachment(obj, name, dataframe_budget, "DataFrame")
        if cls_name == "Series":
            return _frame_attachment(obj, name, dataframe_budget, "Series")
    if module.startswith("numpy") and cls_name == "ndarray":
        fig = _figure_of(obj) if cast(Any, obj).dtype == object else None
        if fig is not None:
            return figure_attachment(fig, name=name, max_image_edge=max_image_edge)
        return _array_attachment(obj, name=name, max_image_edge=max_image_edge, budget=dataframe_budget)
    if module.startswith("matplotlib") or hasattr(obj, "savefig"):
        fig = _figure_of(obj)
        if fig is not None:
            return figure_attachment(fig, name=name, max_image_edge=max_image_edge)
    if module.startswith("PIL.") and hasattr(obj, "getbbox"):
        return _image_from_pil(obj, name=name, max_image_edge=max_image_edge, source=None, original=None)
    if cls_name == "Image" and hasattr(obj, "data") and isinstance(getattr(obj, "format", None), str):
        data = obj.data  # IPython.display.Image, duck-typed
        if isinstance(data, str):
            data = base64.b64decode(data)
        if not isinstance(data, bytes) or not data:
            raise AttachmentError(f"{name}: this image has no embedded data (only a URL); save it to a file and attach that")
        return image_attachment(data, name=name, max_image_edge=max_image_edge)
    for method in ("_repr_png_", "_repr_jpeg_"):
        render = getattr(obj, method, None)
        if callable(render) and not isinstance(obj, type):
            raw = render()
            if isinstance(raw, tuple):
                raw = raw[0]
            if isinstance(raw, str):
                raw = base64.b64decode(raw)
            if isinstance(raw, bytes) and raw:
                return image_attachment(raw, name=name, max_image_edge=max_image_edge)
    raise AttachmentError(
        f"{name}: cannot attach a {_type_name(obj)}; attach a DataFrame, array, figure, image or file path"
    )


def _figure_of(obj: Any) -> Any:
    """The root matplotlib Figure behind a Figure, SubFigure, Axes or seaborn grid, or None."""
    if type(obj).__name__ == "ndarray":  # the array of Axes plt.subplots() returns
        flat = obj.ravel()
        obj = flat[0] if flat.size and hasattr(flat[0], "get_figure") else None
    for _ in range(5):
        if obj is None:
            return None
        if type(obj).__name__ == "Figure" and hasattr(obj, "savefig"):
            return obj
        obj = getattr(obj, "figure", None)
    return None


# ---------------------------------------------------------------------------- images


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise AttachmentError("attaching images needs Pillow: pip install pillow") from None
    return Image


def _open_image(data: bytes, name: str) -> Any:
    """Decode an image; true decompression bombs are refused in one line.

    Pillow warns above MAX_IMAGE_PIXELS (~89 MP) and refuses above twice that. Images
    in between (a 12000×10000 scan) are legitimate here: they are downscaled before
    sending, so the warning is silenced rather than printed into the cell.
    """
    Image = _pil()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image.load()
    except Image.DecompressionBombError:
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise AttachmentError(f"{name}: image is too large to decode safely (over {limit / 1e6:,.0f} "
                              "megapixels); shrink it before attaching") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise AttachmentError(f"{name}: not a readable image ({exc}); check the file") from None
    return image


_PNG_TEXT_CHUNKS = {b"tEXt", b"iTXt", b"zTXt", b"tIME"}


def strip_png_metadata(data: bytes) -> bytes:
    """Drop text and time chunks (e.g. "Software: Matplotlib version ..."): they are no use
    to the model and would make the same picture hash differently across library versions."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return data
    out, pos = [data[:8]], 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        end = pos + 12 + length
        if end > len(data):
            return data  # malformed: leave it alone
        if data[pos + 4:pos + 8] not in _PNG_TEXT_CHUNKS:
            out.append(data[pos:end])
        pos = end
    return b"".join(out) if pos == len(data) else data


def image_attachment(data: bytes, *, name: str, max_image_edge: int = 1568) -> Attachment:
    """An image from raw bytes of any format Pillow reads, downscaled and re-encoded as needed.

    PNG, JPEG, GIF and WebP that already fit the edge and size limits are sent untouched;
    other formats (BMP, TIFF...) become PNG.
    """
    image = _open_image(data, name)
    fmt = image.format or "PNG"
    max_edge = min(max_image_edge, MAX_IMAGE_PIXELS_EDGE)
    if fmt in _IMAGE_TYPES and max(image.size) <= max_edge and len(data) <= MAX_IMAGE_BYTES:
        w, h = image.size
        if fmt == "PNG":
            data = strip_png_metadata(data)
        return Attachment("image", _IMAGE_TYPES[fmt], data, name, f"{name}: {fmt} {w}×{h}", width=w, height=h)
    return _image_from_pil(image, name=name, max_image_edge=max_image_edge, source=fmt, original=image.size)


def _image_from_pil(
    image: Any, *, name: str, max_image_edge: int, source: str | None, original: tuple[int, int] | None
) -> Attachment:
    """Downscale (Lanczos) to the edge limit, then encode within the 5 MB base64 limit.

    Lossless sources try PNG, then optimised PNG; anything still too big, and lossy
    sources, go to JPEG at falling quality and then at smaller sizes.
    """
    Image = _pil()
    max_edge = min(max_image_edge, MAX_IMAGE_PIXELS_EDGE)
    original = original or image.size
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image = _to_8bit(image)
    elif image.mode not in ("RGB", "RGBA", "L", "LA", "P", "1"):
        image = image.convert("RGBA" if "A" in image.mode else "RGB")
    if max(image.size) > max_edge:
        scale = max_edge / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        if image.mode == "1":
            image = image.convert("L")  # a third of RGB's memory, and the same pixels
        elif image.mode == "P":
            image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)

    lossy_source = source in ("JPEG", "WEBP", "MPO")
    encoded: tuple[bytes, str] | None = None
    if not lossy_source:
        # Fast zlib on big images: the size, not the last few percent, decides PNG vs JPEG.
        level = 1 if image.width * image.height > 2_000_000 else 6
        png = _save(image, "PNG", compress_level=level)
        if len(png) <= MAX_IMAGE_BYTES:
            encoded = (png, "PNG")
        elif len(png) <= MAX_IMAGE_BYTES * 1.3:  # optimising only pays off when it is close
            png = _save(image, "PNG", optimize=True)
            if len(png) <= MAX_IMAGE_BYTES:
                encoded = (png, "PNG")
    rgb = image
    if encoded is None:
        rgb = _flatten_for_jpeg(image)
        while encoded is None:
            for quality in (85, 70, 55):
                jpeg = _save(rgb, "JPEG", quality=quality)
                if len(jpeg) <= MAX_IMAGE_BYTES:
                    encoded = (jpeg, "JPEG")
                    break
            else:
                # JPEG size is roughly proportional to pixel count: shrink by the overshoot.
                factor = min(0.9, max(0.5, 0.95 * math.sqrt(MAX_IMAGE_BYTES / len(jpeg))))
                rgb = rgb.resize((max(1, int(rgb.width * factor)), max(1, int(rgb.height * factor))),
                                 Image.Resampling.LANCZOS)
    data, fmt = encoded
    w, h = (image.width, image.height) if fmt == "PNG" else (rgb.width, rgb.height)
    notes = []
    if (w, h) != tuple(original):
        notes.append(f"downscaled from {original[0]}×{original[1]}")
    if source and source != fmt:
        notes.append(f"converted from {source}")
    desc = f"{name}: {fmt} {w}×{h}" + (f" ({', '.join(notes)})" if notes else "")
    return Attachment("image", _IMAGE_TYPES[fmt], data, name, desc, width=w, height=h)


def _to_8bit(image: Any) -> Any:
    """Stretch 16-bit/float greyscale to 8 bits: Pillow cannot save those modes as JPEG."""
    import numpy as np

    Image = _pil()
    arr = np.asarray(image, dtype=np.float64)
    lo, hi = np.nanmin(arr), np.nanmax(arr)
    scaled = np.zeros(arr.shape) if hi <= lo else (arr - lo) / (hi - lo) * 255
    return Image.fromarray(np.nan_to_num(scaled).astype(np.uint8), mode="L")


def _flatten_for_jpeg(image: Any) -> Any:
    Image = _pil()
    if image.mode in ("RGB", "L"):
        return image
    rgba = image.convert("RGBA")
    background = Image.new("RGB", rgba.size, (255, 255, 255))
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def _save(image: Any, fmt: str, **options: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


def figure_attachment(fig: Any, *, name: str, max_image_edge: int = 1568) -> Attachment:
    """Render a matplotlib Figure to PNG once, at a dpi that fits the edge limit.

    Uses `fig.savefig` only, so pyplot state (current figure, open figures) is untouched.
    """
    w_in, h_in = fig.get_size_inches()
    max_edge = min(max_image_edge, MAX_IMAGE_PIXELS_EDGE)
    # A floor of 150 dpi keeps tick labels legible; the cap keeps the long edge in bounds.
    # Agg truncates fractional pixel sizes, so max_edge / long edge never overshoots.
    dpi = min(max(float(fig.dpi), 150.0), max_edge / max(w_in, h_in, 1e-6))
    buf = io.BytesIO()
    # Fast zlib: tokens are counted in pixels, not bytes, and the PNG stays far under 5 MB.
    # No "Software" text, so the same figure hashes the same across matplotlib versions.
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None},
                pil_kwargs={"compress_level": 1})
    data = buf.getvalue()
    w, h = _png_size(data)
    if max(w, h) > max_edge or len(data) > MAX_IMAGE_BYTES:
        return image_attachment(data, name=name, max_image_edge=max_edge)  # safety net only
    return Attachment("image", "image/png", data, name, f"{name}: PNG {w}×{h}", width=w, height=h)


def _png_size(data: bytes) -> tuple[int, int]:
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _sniff(head: bytes) -> str | None:
    """Identify a file kind from its first bytes: an image format, "pdf", "av" or None."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf")):
        return None  # text byte-order marks; FF FE would otherwise pass for an MPEG frame sync
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head.startswith(b"BM") and len(head) > 14:
        return "BMP"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "TIFF"
    if b"%PDF-" in head[:1024]:
        return "pdf"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return "image" if brand in (b"avif", b"avis", b"heic", b"heix", b"mif1") else "av"
    if (
        head.startswith((b"ID3", b"OggS", b"fLaC", b"\x1aE\xdf\xa3", b"FORM", b"MThd", b".snd"))
        or head[:4] == b"RIFF" and head[8:12] in (b"WAVE", b"AVI ")
        or len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] != 0xFF
        or head.startswith(b"\x00\x00\x01\xba") or head.startswith(b"\x30\x26\xb2\x75")
    ):
        return "av"
    return None


# ---------------------------------------------------------------------------- bytes and files


def _bytes_attachment(data: bytes, *, name: str, max_image_edge: int) -> Attachment:
    kind = _sniff(data[:1024])
    if kind == "pdf":
        return _pdf_attachment(data, name=name, title=None)
    if kind == "av":
        raise AttachmentError(f"{name}: audio and video are not supported by Claude models; attach an image, PDF or text")
    if kind is not None:
        return image_attachment(data, name=name, max_image_edge=max_image_edge)
    decoded = _decode_text(data)
    if decoded is None:
        raise AttachmentError(f"{name}: unrecognised binary data ({_size(len(data))}); attach an image, PDF or text")
    text, note = decoded
    return _text_attachment(text, name=name, object_type="bytes", note=note)


def _file_attachment(path: Path, *, name: str, max_image_edge: int, max_file_bytes: int) -> Attachment:
    path = path.expanduser()
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
    if ext in _AV_EXTS:
        raise AttachmentError(f"{path.name}: audio and video files are not supported by Claude models")
    if st.st_size > max_file_bytes:
        raise AttachmentError(
            f"{path} is {_size(st.st_size)}, over the {_size(max_file_bytes)} limit; attach a smaller file"
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
        raise AttachmentError(f"{path} is over the {_size(max_file_bytes)} limit; attach a smaller file")
    fname = path.name
    kind = _sniff(data[:1024])
    if ext == ".pdf" or kind == "pdf":
        if kind != "pdf":
            raise AttachmentError(f"{fname} is not a PDF file (no %PDF header); check the file")
        return _pdf_attachment(data, name=fname, title=fname)
    if kind == "av":
        raise AttachmentError(f"{fname}: audio and video files are not supported by Claude models")
    if kind is not None or ext in _IMAGE_EXTS:
        return image_attachment(data, name=fname, max_image_edge=max_image_edge)
    decoded = _decode_text(data)
    if decoded is None:
        raise AttachmentError(f"{fname} is a binary file Claude cannot read; attach text, a PDF or an image")
    text, note = decoded
    if ext == ".ipynb":
        text = _strip_notebook_images(text)
    return _text_attachment(text, name=fname, title=fname, note=note)


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def _decode_text(data: bytes) -> tuple[str, str | None] | None:
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


def _strip_notebook_images(text: str) -> str:
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


def _text_attachment(
    text: str, *, name: str, title: str | None = None, object_type: str | None = None,
    note: str | None = None,
) -> Attachment:
    lines = text.count("\n") + (1 if text and not text.endswith("\n") else 0)
    label = object_type or "text"
    desc = f"{name}: {label}, {lines:,} lines, {len(text):,} chars" + (f", {note}" if note else "")
    return Attachment("text", "text/plain", text.encode("utf-8"), name, desc, title=title,
                      object_type=object_type)


# ---------------------------------------------------------------------------- PDFs


def _pdf_attachment(data: bytes, *, name: str, title: str | None) -> Attachment:
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
    desc = f"{name}: PDF, {count}, {_size(len(data))}"
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


# ---------------------------------------------------------------------------- arrays


def _array_attachment(arr: Any, *, name: str, max_image_edge: int, budget: int) -> Attachment:
    """An ndarray: H×W×3 or H×W×4 uint8 (both edges >= 8) is sent as an image, else summarised."""
    if arr.dtype == "uint8" and arr.ndim == 3 and arr.shape[2] in (3, 4) and min(arr.shape[:2]) >= 8:
        Image = _pil()
        import numpy as np

        image = Image.fromarray(np.ascontiguousarray(arr), mode="RGB" if arr.shape[2] == 3 else "RGBA")
        return _image_from_pil(image, name=name, max_image_edge=max_image_edge, source=None, original=None)
    text = _summarize_array(arr, budget=budget)
    shape = " × ".join(f"{s:,}" for s in arr.shape)
    return Attachment("text", "text/plain", text.encode("utf-8"), name,
                      f"{name}: ndarray {shape} {arr.dtype}", object_type="ndarray")


def _summarize_array(arr: Any, *, budget: int = 6000) -> str:
    import numpy as np

    lines = [f"ndarray shape={arr.shape} dtype={arr.dtype} size={arr.size:,} ({_size(arr.nbytes)})"]
    flat = arr.reshape(-1) if arr.flags.c_contiguous or arr.size < 1_000_000 else arr.ravel()
    if arr.size and arr.dtype.kind in "biuf":
        sample = flat if flat.size <= 1_000_000 else flat[:: flat.size // 1_000_000 + 1]
        exact = sample is flat
        values = sample.astype(np.float64, copy=False)
        finite = np.isfinite(values)
        n_nan = int(np.isnan(values).sum()) if arr.dtype.kind == "f" else 0
        stats = []
        if finite.any():
            vals = values[finite] if not finite.all() else values
            stats = [f"min={vals.min():.6g}", f"max={vals.max():.6g}", f"mean={vals.mean():.6g}",
                     f"std={vals.std():.6g}"]
        if n_nan:
            stats.append(f"nan={n_nan:,}")
        lines.append(("stats: " if exact else f"stats (strided sample of {sample.size:,}): ") + " ".join(stats))
    elif arr.size and arr.dtype.kind in "Mm":
        lines.append(f"range: {flat.min()} .. {flat.max()}")
    with np.printoptions(threshold=60, edgeitems=3, linewidth=100, precision=5):
        rendering = np.array2string(arr, max_line_width=100,
                                    formatter={"object": lambda v: _cell(repr(v), 60)})
    lines.append("values:\n" + rendering)
    return _clip("\n".join(lines), budget)


def _clip(text: str, budget: int) -> str:
    if len(text) <= budget:
        return text
    marker = f"\n… [{len(text) - budget:,} more chars]"
    return text[: max(0, budget - len(marker))] + marker


# ---------------------------------------------------------------------------- DataFrames


def _frame_attachment(obj: Any, name: str, budget: int, kind: str) -> Attachment:
    text = summarize_dataframe(obj, budget=budget, name=name)
    if kind == "Series":
        shape = f"{len(obj):,} values, {obj.dtype}"
    else:
        shape = f"{obj.shape[0]:,} × {obj.shape[1]:,}"
    return Attachment("text", "text/plain", text.encode("utf-8"), name, f"{name}: {kind} {shape}",
                      object_type=kind)


_SAMPLE_ROWS = 10_000  # rows used for describe() and value estimates on large frames
_DETAIL_COLS = 40  # columns listed one per line; wider frames are summarised
_EXACT_OBJECT_CELLS = 1_000_000  # object/string cells scanned for exact null counts


def summarize_dataframe(df: Any, *, budget: int = 6000, name: str | None = None) -> str:
    """A compact, faithful text summary of a DataFrame or Series, within `budget` characters.

    Costs are bounded for any size: statistics on wide or long frames come from a
    row sample and a column subset (and say so); the frame is never rendered whole.
    """
    import pandas as pd

    kind = "Series" if isinstance(df, pd.Series) else "DataFrame"
    if kind == "Series":
        df = df.to_frame(name=df.name if df.name is not None else (name or 0))
    # Most detailed first; the first rendering that fits the budget wins.
    cache: dict[Any, Any] = {}
    for level in range(4):
        text = _render_frame(df, kind=kind, name=name, level=level, cache=cache)
        if len(text) <= budget:
            return text
    return _clip(text, budget)


def _render_frame(df: Any, *, kind: str, name: str | None, level: int, cache: dict[Any, Any]) -> str:
    """One rendering at a level of detail (0 = most); `cache` keeps per-column work across levels."""
    import numpy as np

    n_rows, n_cols = df.shape
    head_rows, tail_rows = [(5, 3), (4, 2), (3, 2), (2, 1)][level]
    show_cols = [16, 12, 8, 6][level]
    detail_cols = [_DETAIL_COLS, 30, 20, 12][level]
    colwidth = [40, 30, 24, 16][level]

    out: list[str] = []
    title = f"{kind} {name}" if name else kind
    mem = cache["memory"] if "memory" in cache else cache.setdefault("memory", _memory(df))
    if kind == "Series":
        out.append(f"{title}: {n_rows:,} values, dtype {df.dtypes.iloc[0]}, memory ~{_size(mem)}")
    else:
        out.append(f"{title}: {n_rows:,} rows × {n_cols:,} columns, memory ~{_size(mem)}")
    out.append("index: " + _index_info(df.index))
    if n_cols and hasattr(df.columns, "nlevels") and df.columns.nlevels > 1:
        out.append(f"columns: MultiIndex with {df.columns.nlevels} levels {list(df.columns.names)}")

    sample_pos = None
    if n_rows > _SAMPLE_ROWS:
        sample_pos = np.sort(np.random.default_rng(0).integers(0, n_rows, _SAMPLE_ROWS))
    positions = list(range(min(n_cols, detail_cols)))
    wide = n_cols > detail_cols
    if wide:
        dtype_counts = df.dtypes.astype(str).value_counts()
        out.append("dtypes: " + ", ".join(f"{k} ×{v:,}" for k, v in dtype_counts.items()))
        first = ", ".join(_col_name(c) for c in df.columns[:8])
        last = ", ".join(_col_name(c) for c in df.columns[-4:])
        out.append(f"columns: {first}, …, {last}")
        out.append(f"details for the first {len(positions)} of {n_cols:,} columns:")
    else:
        out.append("columns (name: dtype, nulls):")

    object_cols = sum(1 for j in positions if df.dtypes.iloc[j].kind == "O" or str(df.dtypes.iloc[j]) in ("str", "string"))
    exact_objects = n_rows * object_cols <= _EXACT_OBJECT_CELLS
    top_lines: list[str] = []
    sample_df = None if sample_pos is None else df.iloc[sample_pos, : len(positions)]
    for j in positions:
        col = df.iloc[:, j]
        sample = col if sample_df is None else sample_df.iloc[:, j]
        if ("col", j) not in cache:
            cache["col", j] = _column_info(col, sample, n_rows, exact_objects, sampled=sample_pos is not None)
        line, top = cache["col", j]
        out.append(f"  {_col_name(df.columns[j])}: {line}")
        if top:
            top_lines.append(f"  {_col_name(df.columns[j])}: {top}")

    if n_rows == 0:
        out.append("(no rows)")
    elif n_cols:
        cols = list(range(n_cols)) if n_cols <= show_cols else (
            list(range(show_cols - 2)) + [n_cols - 2, n_cols - 1])
        note = "" if n_cols <= show_cols else f" (columns {show_cols - 2} of {n_cols:,} shown, plus the last 2)"
        if n_rows <= head_rows + tail_rows:
            out.append(f"rows{note}:")
            out.append(_table(df.iloc[:, cols], colwidth))  # few rows here
        else:
            out.append(f"head{note}:")
            # Rows first, then columns: iloc[rows, list] would copy whole columns.
            out.append(_table(df.iloc[:head_rows].iloc[:, cols], colwidth))
            out.append("tail:")
            out.append(_table(df.iloc[n_rows - tail_rows:].iloc[:, cols], colwidth))

    n_desc = [12, 10, 6, 4][level]
    if ("describe", n_desc) not in cache:
        cache["describe", n_desc] = _describe(df, positions[:n_desc], sample_df)
    desc = cache["describe", n_desc]
    if desc:
        label = "numeric summary" + (
            f" (min/max exact; other statistics from a random sample of {_SAMPLE_ROWS:,} rows)"
            if sample_pos is not None else "")
        out.append(label + ":")
        out.append(desc)
    if top_lines:
        src = " (from a sample)" if sample_pos is not None else ""
        out.append(f"top values{src}:")
        out.extend(top_lines[: [20, 12, 8, 4][level]])
    return "\n".join(out)


def _col_name(c: Any) -> str:
    if isinstance(c, tuple):
        return "/".join(str(x) for x in c)
    return str(c)


def _memory(df: Any) -> int:
    """Shallow memory plus an object-column estimate from up to 1,000 rows (deep is O(n))."""
    try:
        shallow = int(df.memory_usage(index=True, deep=False).sum())
    except Exception:
        return 0
    obj = [j for j, dt in enumerate(df.dtypes.iloc[:200]) if dt.kind == "O" or str(dt) in ("str", "string")]
    if not obj or not len(df):
        return shallow
    head = df.iloc[: min(1000, len(df)), obj]
    try:
        per_row = (head.memory_usage(index=False, deep=True).sum()
                   - head.memory_usage(index=False, deep=False).sum()) / len(head)
    except Exception:
        return shallow
    return shallow + int(per_row * len(df))


def _index_info(index: Any) -> str:
    import pandas as pd

    n = len(index)
    label = f" name={index.name!r}" if getattr(index, "name", None) is not None else ""
    if isinstance(index, pd.RangeIndex):
        return f"RangeIndex {index.start:,}..{index.stop - index.step:,} step {index.step}{label}" if n else "RangeIndex (empty)"
    if isinstance(index, pd.MultiIndex):
        levels = ", ".join(
            f"{lvl_name!r}: {lvl.dtype} ({len(lvl):,} values)" for lvl_name, lvl in zip(index.names, index.levels, strict=True)
        )
        return f"MultiIndex {index.nlevels} levels [{levels}]"
    parts = [f"{type(index).__name__} dtype={index.dtype}{label}"]
    if n:
        parts.append(f"from {_cell(index[0])} to {_cell(index[-1])}")
        if index.dtype.kind in "iufMm" and n <= 5_000_000:
            parts.append("sorted" if index.is_monotonic_increasing else "unsorted")
    tz = getattr(index, "tz", None)
    if tz is not None:
        parts.append(f"tz={tz}")
    freq = getattr(index, "freqstr", None)
    if freq:
        parts.append(f"freq={freq}")
    return ", ".join(parts)


def _cell(value: Any, width: int = 40) -> str:
    text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _column_info(col: Any, sample: Any, n_rows: int, exact_objects: bool, *, sampled: bool) -> tuple[str, str | None]:
    """One line for the column listing, and a top-values line for low-cardinality columns."""
    import numpy as np
    import pandas as pd

    dtype = col.dtype
    dname = str(dtype)
    is_object = dtype.kind == "O" and not isinstance(dtype, pd.CategoricalDtype)
    is_text = dname in ("str", "string")
    # Null counts: exact where a vectorised pass is cheap, estimated from the sample otherwise.
    if dtype.kind in "iub" and isinstance(dtype, np.dtype):
        nulls, approx = 0, False
    elif dtype.kind == "f" and isinstance(dtype, np.dtype):
        nulls, approx = _nan_count(col.to_numpy()), False
    elif (is_object or is_text) and not exact_objects:
        nulls, approx = int(sample.isna().sum()) * n_rows // max(len(sample), 1), True
    else:
        nulls, approx = int(col.isna().sum()), False
    null_text = f"~{nulls / n_rows:.1%} null" if approx and n_rows else f"{nulls:,} null"
    line = f"{dname}, {null_text}"
    if is_object and len(sample):
        try:
            inferred = pd.api.types.infer_dtype(sample.iloc[:2000], skipna=True)
        except Exception:
            inferred = "mixed"
        line += f" (holds {inferred})" if inferred not in ("string",) else " (holds strings)"
    top = None
    try:
        if isinstance(dtype, pd.CategoricalDtype):
            counts = col.value_counts()  # counts category codes: cheap at any length
            line += f", {len(dtype.categories):,} categories" + (" ordered" if dtype.ordered else "")
            top = _top(counts, len(col) - nulls, approx=False)
        elif dname in ("bool", "boolean"):
            top = _top(col.value_counts(), len(col) - nulls, approx=False)
        elif is_object or is_text:
            probe = sample.iloc[:5000]
            nunique = probe.nunique()
            if nunique <= 20 and nunique < max(len(probe) // 2, 2):
                top = _top(sample.value_counts(), int(sample.notna().sum()), approx=sampled)
            else:
                line += f", ~{nunique:,} distinct in {len(probe):,} sampled" if sampled else f", {nunique:,} distinct"
    except TypeError:  # unhashable values (dicts, lists)
        pass
    if dtype.kind == "M" and len(col) and nulls < len(col):
        line += f", {_cell(col.min())} .. {_cell(col.max())}"
    return line, top


def _nan_count(values: Any) -> int:
    """NaN count of a float array; the min pass settles the common no-NaN case."""
    import numpy as np

    if not values.size or not np.isnan(values.min()):
        return 0
    return int(np.count_nonzero(np.isnan(values)))


def _top(counts: Any, total: int, *, approx: bool) -> str | None:
    if not total or counts.empty:
        return None
    shown = counts.iloc[:6]
    sign = "~" if approx else ""
    parts = [f"{_cell(k, 30)!s} {sign}{v / total:.1%}" for k, v in shown.items()]
    more = f", … ({len(counts):,} distinct)" if len(counts) > len(shown) else ""
    return ", ".join(parts) + more


def _describe(df: Any, positions: list[int], sample: Any) -> str:
    """count/mean/std/quartiles of numeric columns; min/max are always over every row."""
    import numpy as np
    import pandas as pd

    numeric = [
        j for j in positions
        if pd.api.types.is_numeric_dtype(df.dtypes.iloc[j]) and not pd.api.types.is_bool_dtype(df.dtypes.iloc[j])
    ]
    if not numeric or not len(df):
        return ""
    rows = []
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for j in numeric:
            full = df.iloc[:, j].to_numpy(dtype="float64", na_value=np.nan)
            part = full if sample is None else sample.iloc[:, j].to_numpy(dtype="float64", na_value=np.nan)
            q = np.nanpercentile(part, [25, 50, 75]) if part.size else [np.nan] * 3
            rows.append([
                int(np.count_nonzero(~np.isnan(part))), np.nanmean(part), np.nanstd(part, ddof=1),
                _fast_extreme(full, np.min, np.nanmin), *q, _fast_extreme(full, np.max, np.nanmax),
            ])
    desc = pd.DataFrame(rows, index=[_col_name(df.columns[j]) for j in numeric],
                        columns=["count", "mean", "std", "min", "25%", "50%", "75%", "max"])
    if sample is not None:
        desc = desc.drop(columns=["count"])
    return desc.to_string(float_format=lambda v: f"{v:.4g}")


def _fast_extreme(values: Any, plain: Any, nan_aware: Any) -> float:
    """min/max without nan-aware overhead unless the fast pass hits a NaN."""
    import numpy as np

    if not values.size:
        return float("nan")
    result = plain(values)
    return nan_aware(values) if np.isnan(result) else result


def _table(view: Any, colwidth: int) -> str:
    import pandas as pd

    view = view.copy()
    for j in range(view.shape[1]):
        col = view.iloc[:, j]
        if col.dtype.kind == "O" or isinstance(col.dtype, pd.StringDtype):
            view.isetitem(j, col.map(lambda v: _cell(v, colwidth), na_action="ignore").astype(object))
    view.columns = [_col_name(c) for c in view.columns]
    return view.to_string(max_colwidth=colwidth, float_format=lambda v: f"{v:.6g}")


# ---------------------------------------------------------------------------- values


def describe_value(obj: Any, *, budget: int = 6000) -> str:
    """A short, text-safe rendering of any value, for tool results and previews."""
    if _module(obj).startswith("numpy") and type(obj).__name__ != "ndarray" and hasattr(obj, "item"):
        obj = obj.item()  # numpy scalars, some of which subclass float and int
    if obj is None or isinstance(obj, (bool, int, float, complex)):
        return repr(obj)
    if isinstance(obj, str):
        return _clip(obj, budget)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        data = bytes(obj)
        kind = _sniff(data[:1024])
        return f"<{len(data):,} bytes" + (f", {kind}" if kind else "") + ">"
    module, cls_name = _module(obj), type(obj).__name__
    repr_llm = getattr(obj, "_repr_llm_", None)
    if callable(repr_llm) and not isinstance(obj, type):
        try:
            text = repr_llm()
            if isinstance(text, str):
                return _clip(text, budget)
        except Exception:
            pass
    if module.startswith("pandas") and cls_name in ("DataFrame", "Series"):
        return summarize_dataframe(obj, budget=budget)
    if module.startswith("numpy") and cls_name == "ndarray":
        return _summarize_array(obj, budget=budget)
    if isinstance(obj, (dict, list, tuple, set, frozenset)):
        if _small(obj):
            try:
                return _clip(json.dumps(obj, ensure_ascii=False, default=_json_default), budget)
            except (TypeError, ValueError):
                pass
        limited = reprlib.Repr()
        limited.maxlevel, limited.maxdict, limited.maxlist, limited.maxtuple = 4, 30, 30, 30
        limited.maxset, limited.maxstring, limited.maxother = 30, 200, 200
        return _clip(limited.repr(obj), budget)
    try:
        text = repr(obj)
    except Exception as exc:
        text = f"<{_type_name(obj)}: repr failed: {type(exc).__name__}>"
    return _clip(text, budget)


def _small(obj: Any, limit: int = 2000) -> bool:
    """True when a container holds at most `limit` items in all (stops counting early)."""
    stack, seen = [obj], 0
    while stack:
        item = stack.pop()
        if isinstance(item, (dict, list, tuple, set, frozenset)):
            seen += len(item)
            if seen > limit:
                return False
            stack.extend(item.values() if isinstance(item, dict) else item)
    return True


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return list(value)
    return describe_value(value, budget=500)


# ---------------------------------------------------------------------------- request limits


def check_request_limits(attachments: Sequence[Attachment]) -> None:
    """Refuse a set of attachments Claude would reject in one request."""
    images = [a for a in attachments if a.kind == "image"]
    if len(images) > MAX_IMAGES:
        raise AttachmentError(f"{len(images)} images in one request; Claude accepts at most {MAX_IMAGES}: attach fewer")
    for a in images:
        if a.base64_size > MAX_IMAGE_BASE64:
            raise AttachmentError(f"{a.name}: image is over 5 MB; attach it again to re-encode it smaller")
        if max(a.width or 0, a.height or 0) > MAX_IMAGE_PIXELS_EDGE:
            raise AttachmentError(f"{a.name}: image is over 8000 px on a side; attach it again to downscale it")
    if len(images) > MANY_IMAGES:
        big = [a for a in images if max(a.width or 0, a.height or 0) > MANY_IMAGES_EDGE]
        if big:
            raise AttachmentError(
                f"{len(images)} images in one request: with more than {MANY_IMAGES}, each must be at most "
                f"{MANY_IMAGES_EDGE}×{MANY_IMAGES_EDGE} px ({big[0].name} is {big[0].width}×{big[0].height}); "
                "attach fewer or use a smaller max_image_edge"
            )
    for a in attachments:
        if a.kind == "pdf" and a.pages is not None and a.pages > MAX_PDF_PAGES:
            raise AttachmentError(f"{a.name} has {a.pages} pages; Claude reads at most {MAX_PDF_PAGES}: split it")
    total = sum(a.base64_size if a.kind in ("image", "pdf") else len(a.data) for a in attachments)
    if total > MAX_REQUEST_BYTES:
        raise AttachmentError(
            f"attachments total {_size(total)}, over the 32 MB request limit; attach fewer or smaller files"
        )
