"""Images: decode, downscale, encode as PNG or JPEG within Claude's limits; figures to PNG.

Pillow is imported at first use; a figure is rendered with its own `savefig`, so pyplot
state is untouched. PNG text chunks are dropped so the same picture hashes the same
across library versions.
"""

from __future__ import annotations

import io
import math
from typing import Any

from ._attachment import (
    MAX_IMAGE_BYTES,
    MAX_IMAGE_PIXELS_EDGE,
    Attachment,
    load_pil,
    open_image,
)
from ._config import DEFAULT_MAX_IMAGE_EDGE

__all__ = ["IMAGE_EXTS", "array_image_attachment", "figure_attachment", "image_attachment",
           "is_image_array", "pil_attachment", "strip_png_metadata"]

_IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".gif", ".webp", ".bmp", ".tif", ".tiff",
                        ".ico"})


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


def image_attachment(data: bytes, *, name: str, max_image_edge: int = DEFAULT_MAX_IMAGE_EDGE) -> Attachment:
    """An image from raw bytes of any format Pillow reads, downscaled and re-encoded as needed.

    PNG, JPEG, GIF and WebP that already fit the edge and size limits are sent untouched;
    other formats (BMP, TIFF...) become PNG.
    """
    image = open_image(data, name)
    fmt = image.format or "PNG"
    max_edge = min(max_image_edge, MAX_IMAGE_PIXELS_EDGE)
    if fmt in _IMAGE_TYPES and max(image.size) <= max_edge and len(data) <= MAX_IMAGE_BYTES:
        w, h = image.size
        if fmt == "PNG":
            data = strip_png_metadata(data)
        return Attachment("image", _IMAGE_TYPES[fmt], data, name, f"{name}: {fmt} {w}×{h}", width=w, height=h)
    return pil_attachment(image, name=name, max_image_edge=max_image_edge, source=fmt, original=image.size)


def pil_attachment(
    image: Any, *, name: str, max_image_edge: int, source: str | None, original: tuple[int, int] | None
) -> Attachment:
    """Downscale (Lanczos) to the edge limit, then encode within the 5 MB base64 limit.

    Lossless sources try PNG, then optimised PNG; anything still too big, and lossy
    sources, go to JPEG at falling quality and then at smaller sizes.
    """
    Image = load_pil()
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

    Image = load_pil()
    arr = np.asarray(image, dtype=np.float64)
    lo, hi = np.nanmin(arr), np.nanmax(arr)
    scaled = np.zeros(arr.shape) if hi <= lo else (arr - lo) / (hi - lo) * 255
    return Image.fromarray(np.nan_to_num(scaled).astype(np.uint8), mode="L")


def _flatten_for_jpeg(image: Any) -> Any:
    Image = load_pil()
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


def figure_attachment(fig: Any, *, name: str, max_image_edge: int = DEFAULT_MAX_IMAGE_EDGE) -> Attachment:
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


def is_image_array(arr: Any) -> bool:
    """H×W×3 or H×W×4 uint8 with both edges >= 8: an array that is a picture."""
    return bool(arr.dtype == "uint8" and arr.ndim == 3 and arr.shape[2] in (3, 4)
                and min(arr.shape[:2]) >= 8)


def array_image_attachment(arr: Any, *, name: str, max_image_edge: int = DEFAULT_MAX_IMAGE_EDGE) -> Attachment:
    """An RGB or RGBA uint8 array (see `is_image_array`) as an image."""
    import numpy as np

    Image = load_pil()
    image = Image.fromarray(np.ascontiguousarray(arr), mode="RGB" if arr.shape[2] == 3 else "RGBA")
    return pil_attachment(image, name=name, max_image_edge=max_image_edge, source=None, original=None)
