"""The attachment value and Claude's input limits.

An Attachment is the exact bytes sent for one attached object, with its media type, a
one-line description and a sha256 id (a stable key for caches and provenance). The
limits Claude enforces on a request (image size and count, PDF pages, request size) are
checked here, before anything is sent. Pillow is imported only to decode an image.
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from ._config import CHARS_PER_TOKEN
from ._summaries import size_text

__all__ = [
    "MAX_IMAGE_BASE64",
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_PIXELS_EDGE",
    "MAX_IMAGES",
    "MAX_PDF_PAGES",
    "MAX_REQUEST_BYTES",
    "MANY_IMAGES",
    "MANY_IMAGES_EDGE",
    "PDF_TOKENS_PER_PAGE",
    "Attachment",
    "AttachmentError",
    "b64",
    "check_request_limits",
    "load_pil",
    "open_image",
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
        """The Anthropic-native content block for this attachment (decided in _wire)."""
        from ._wire import attachment_block

        return attachment_block(self)

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
        return math.ceil(len(self.text()) / CHARS_PER_TOKEN)

    def thumbnail_data_uri(self, max_edge: int = 64) -> str | None:
        """A small PNG `data:` URI of an image attachment, for "what was sent" lines."""
        if self.kind != "image":
            return None
        try:
            image = open_image(self.data, self.name)
            image.thumbnail((max_edge, max_edge))
            if image.mode not in ("RGB", "RGBA", "L", "LA"):
                image = image.convert("RGBA")
            buf = io.BytesIO()
            image.save(buf, format="PNG", optimize=True)
        except (AttachmentError, OSError, ValueError):
            return None
        return "data:image/png;base64," + b64(buf.getvalue())

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
            "data": b64(self.data),
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


def b64(data: bytes) -> str:
    """`data` as ASCII base64, the form content blocks carry."""
    return base64.b64encode(data).decode("ascii")


def _attr(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


# ---------------------------------------------------------------------------- decoding


def load_pil() -> Any:
    """`PIL.Image`, imported at first use; a missing Pillow is a one-line AttachmentError."""
    try:
        from PIL import Image
    except ImportError:
        raise AttachmentError("attaching images needs Pillow: pip install pillow") from None
    return Image


def open_image(data: bytes, name: str) -> Any:
    """Decode an image; true decompression bombs are refused in one line.

    Pillow warns above MAX_IMAGE_PIXELS (~89 MP) and refuses above twice that. Images
    in between (a 12000×10000 scan) are legitimate here: they are downscaled before
    sending, so the warning is silenced rather than printed into the cell.
    """
    Image = load_pil()
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
            f"attachments total {size_text(total)}, over the 32 MB request limit; attach fewer or smaller files"
        )
