"""What a value or a byte string is: the one type classifier the attachments, the tools
and the panel share.

Types are recognised by the module and class names along their MRO, so subclasses count
and pandas, numpy, matplotlib, PIL and IPython are never imported just to look.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["IMAGE_KINDS", "figure_of", "kind_of", "sniff", "type_name"]

# Class name -> ((module root, kind), ...): a class matches when its module is the root or
# inside it. The first class along the MRO that matches decides, so subclasses inherit.
_TYPE_KINDS: dict[str, tuple[tuple[str, str], ...]] = {
    "DataFrame": (("pandas", "dataframe"),),
    "Series": (("pandas", "series"),),
    "ndarray": (("numpy", "array"),),
    "generic": (("numpy", "scalar"),),  # numpy scalars: float64, int32, bool_, datetime64...
    "Figure": (("matplotlib", "figure"),),
    "SubFigure": (("matplotlib", "figure"),),
    "Axes": (("matplotlib", "axes"),),
    "Image": (("PIL", "pil_image"), ("IPython", "ipython_image")),
    **{name: (("IPython", "av"),) for name in ("Audio", "Video", "YouTubeVideo", "VimeoVideo",
                                                "IFrame")},
}

IMAGE_KINDS = frozenset({"figure", "axes", "pil_image", "ipython_image"})
"""Kinds that are pictures by type alone; "image_repr" objects also draw themselves."""


def kind_of(value: object, *, probe: bool = True) -> str | None:
    """The kind of `value`: "dataframe", "series", "array", "scalar", "figure", "axes",
    "pil_image", "ipython_image", "av", "bytes", "path", "text", "llm_repr", "image_repr",
    or None.

    A str is "text" when it has a newline or NUL, else "path". With `probe=False` only the
    type is read, so scanning a namespace never runs a value's own `__getattr__`. With
    `probe=True` (the default) the value's hooks are looked up too, in this order:
    `_repr_llm_` (before any library type, so an object can describe itself), then
    duck-typed figures (seaborn grids, matplotlib artists), images with embedded data,
    and `_repr_png_` / `_repr_jpeg_`. Errors raised by those lookups propagate.
    """
    if isinstance(value, str):
        return "text" if "\n" in value or "\0" in value else "path"
    if isinstance(value, os.PathLike):
        return "path"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "bytes"
    if isinstance(value, type):
        return None
    kind = _type_kind(type(value))
    if not probe or kind == "av":
        return kind
    if _hook(value, "_repr_llm_"):
        return "llm_repr"
    if kind is not None:
        return kind
    cls = type(value)
    if ((_module(cls).startswith("matplotlib") or hasattr(value, "savefig"))
            and figure_of(value) is not None):
        return "figure"
    if (cls.__name__ == "Image" and hasattr(value, "data")
            and isinstance(getattr(value, "format", None), str)):
        return "ipython_image"  # IPython.display.Image look-alikes
    if _hook(value, "_repr_png_") or _hook(value, "_repr_jpeg_"):
        return "image_repr"
    return None


def _type_kind(cls: type) -> str | None:
    for klass in cls.__mro__:
        for root, kind in _TYPE_KINDS.get(klass.__name__, ()):
            module = _module(klass)
            if module == root or module.startswith(root + "."):
                return kind
    return None


def _module(cls: type) -> str:
    module = getattr(cls, "__module__", None)
    return module if isinstance(module, str) else ""


def _hook(value: object, name: str) -> bool:
    return callable(getattr(value, name, None))


def type_name(obj: object) -> str:
    """`int` for builtins, `module.Qualname` for everything else: for messages."""
    cls = type(obj)
    return cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def figure_of(obj: Any) -> Any:
    """The root matplotlib Figure behind a Figure, SubFigure, Axes or seaborn grid, or None."""
    if type(obj).__name__ == "ndarray":  # the array of Axes plt.subplots() returns
        flat = obj.ravel()
        obj = flat[0] if flat.size and hasattr(flat[0], "get_figure") else None
    for _ in range(5):
        if obj is None:
            return None
        if _is_root_figure(type(obj)) and hasattr(obj, "savefig"):
            return obj
        obj = getattr(obj, "figure", None)
    return None


def _is_root_figure(cls: type) -> bool:
    return cls.__name__ == "Figure" or any(
        k.__name__ == "Figure" and _module(k).startswith("matplotlib") for k in cls.__mro__)


def sniff(head: bytes) -> str | None:
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
