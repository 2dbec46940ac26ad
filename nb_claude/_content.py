"""Attachments: figures, images, DataFrames, arrays and files become Claude content blocks.

Pure module: no IPython, no widgets. `attachment_from` asks `kind_of` what a value is and
hands it to one handler from a table; the work lives below it:

  _kinds        what a value or a byte string is (the one type classifier)
  _summaries    text summaries of DataFrames, Series, arrays and any value
  _attachment   the Attachment value, AttachmentError and Claude's request limits
  _images       decode, downscale and encode images; figures to PNG
  _documents    files read safely, text with an encoding fallback, PDFs

pandas, numpy, matplotlib, Pillow and pypdf are imported only when an object of that
kind is attached, so attaching a file costs nothing beyond reading it.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._attachment import (
    MAX_IMAGE_BASE64,
    MAX_IMAGE_BYTES,
    MAX_IMAGE_PIXELS_EDGE,
    MAX_IMAGES,
    MAX_PDF_PAGES,
    MAX_REQUEST_BYTES,
    Attachment,
    AttachmentError,
    check_request_limits,
)
from ._config import DEFAULT_DATAFRAME_BUDGET, DEFAULT_MAX_IMAGE_EDGE
from ._documents import (
    decode_text,
    pdf_attachment,
    read_file,
    strip_notebook_images,
    text_attachment,
)
from ._images import (
    IMAGE_EXTS,
    array_image_attachment,
    figure_attachment,
    image_attachment,
    is_image_array,
    pil_attachment,
    strip_png_metadata,
)
from ._kinds import figure_of, kind_of, sniff, type_name
from ._summaries import (
    describe_value,
    error_line,
    size_text,
    summarize_array,
    summarize_dataframe,
)

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
    # importable from here as before the split
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_PIXELS_EDGE",
    "MAX_IMAGES",
    "error_line",
    "figure_attachment",
    "strip_png_metadata",
]


@dataclass(frozen=True)
class _Options:
    name: str
    max_image_edge: int
    dataframe_budget: int
    max_file_bytes: int


def attachment_from(
    obj: object,
    *,
    name: str,
    max_image_edge: int = DEFAULT_MAX_IMAGE_EDGE,
    dataframe_budget: int = DEFAULT_DATAFRAME_BUDGET,
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
    options = _Options(name, max_image_edge, dataframe_budget, max_file_bytes)
    try:
        kind = kind_of(obj)
    except Exception as exc:  # the object's own __getattr__ failed
        raise _hook_failed(obj, name, exc) from None
    handler = _HANDLERS.get(kind or "", _unsupported)
    if kind in _OWN_DATA:  # no user code runs: an error here is ours, not the object's
        return handler(obj, options)
    try:
        return handler(obj, options)
    except AttachmentError:
        raise
    except Exception as exc:  # the object's own _repr_llm_, _repr_png_ or __getattr__ failed
        raise _hook_failed(obj, name, exc) from None


def _hook_failed(obj: object, name: str, exc: Exception) -> AttachmentError:
    return AttachmentError(f"{name}: reading this {type_name(obj)} failed with "
                           f"{error_line(exc)}; fix it or attach something else")


_OWN_DATA = frozenset({"text", "path", "bytes"})


def _unsupported(obj: Any, o: _Options) -> Attachment:
    raise AttachmentError(
        f"{o.name}: cannot attach a {type_name(obj)}; attach a DataFrame, array, figure, image or file path"
    )


def _av(obj: Any, o: _Options) -> Attachment:
    raise AttachmentError(f"{o.name}: {type(obj).__name__} is not supported by Claude models; "
                          "attach an image, PDF or text")


def _llm_text(obj: Any, o: _Options) -> Attachment:
    text = obj._repr_llm_()
    if not isinstance(text, str):
        raise AttachmentError(f"{o.name}: _repr_llm_() returned {type(text).__name__}, not text")
    return text_attachment(text, name=o.name, object_type=type(obj).__name__)


def _summary(text: str, o: _Options, description: str, object_type: str) -> Attachment:
    return Attachment("text", "text/plain", text.encode("utf-8"), o.name,
                      f"{o.name}: {description}", object_type=object_type)


def _frame(obj: Any, o: _Options) -> Attachment:
    text = summarize_dataframe(obj, budget=o.dataframe_budget, name=o.name)
    if kind_of(obj, probe=False) == "series":
        return _summary(text, o, f"Series {len(obj):,} values, {obj.dtype}", "Series")
    return _summary(text, o, f"DataFrame {obj.shape[0]:,} × {obj.shape[1]:,}", "DataFrame")


def _array(obj: Any, o: _Options) -> Attachment:
    """An array of Axes (plt.subplots) sends its figure; an RGB(A) uint8 array, an image."""
    fig = figure_of(obj) if obj.dtype == object else None
    if fig is not None:
        return figure_attachment(fig, name=o.name, max_image_edge=o.max_image_edge)
    if is_image_array(obj):
        return array_image_attachment(obj, name=o.name, max_image_edge=o.max_image_edge)
    shape = " × ".join(f"{s:,}" for s in obj.shape)
    text = summarize_array(obj, budget=o.dataframe_budget)
    return _summary(text, o, f"ndarray {shape} {obj.dtype}", "ndarray")


def _figure(obj: Any, o: _Options) -> Attachment:
    fig = figure_of(obj)
    if fig is None:
        return _unsupported(obj, o)
    return figure_attachment(fig, name=o.name, max_image_edge=o.max_image_edge)


def _pil_image(obj: Any, o: _Options) -> Attachment:
    return pil_attachment(obj, name=o.name, max_image_edge=o.max_image_edge, source=None,
                          original=None)


def _ipython_image(obj: Any, o: _Options) -> Attachment:
    data = obj.data
    if isinstance(data, str):
        data = base64.b64decode(data)
    if not isinstance(data, bytes) or not data:
        raise AttachmentError(f"{o.name}: this image has no embedded data (only a URL); "
                              "save it to a file and attach that")
    return image_attachment(data, name=o.name, max_image_edge=o.max_image_edge)


def _image_repr(obj: Any, o: _Options) -> Attachment:
    for method in ("_repr_png_", "_repr_jpeg_"):
        render = getattr(obj, method, None)
        if callable(render):
            raw = render()
            if isinstance(raw, tuple):
                raw = raw[0]
            if isinstance(raw, str):
                raw = base64.b64decode(raw)
            if isinstance(raw, bytes) and raw:
                return image_attachment(raw, name=o.name, max_image_edge=o.max_image_edge)
    return _unsupported(obj, o)


def _text(obj: Any, o: _Options) -> Attachment:
    return text_attachment(obj, name=o.name, object_type="str")


def _bytes(obj: Any, o: _Options) -> Attachment:
    data = bytes(obj)
    kind = sniff(data[:1024])
    if kind == "pdf":
        return pdf_attachment(data, name=o.name, title=None)
    if kind == "av":
        raise AttachmentError(f"{o.name}: audio and video are not supported by Claude models; "
                              "attach an image, PDF or text")
    if kind is not None:
        return image_attachment(data, name=o.name, max_image_edge=o.max_image_edge)
    decoded = decode_text(data)
    if decoded is None:
        raise AttachmentError(f"{o.name}: unrecognised binary data ({size_text(len(data))}); "
                              "attach an image, PDF or text")
    text, note = decoded
    return text_attachment(text, name=o.name, object_type="bytes", note=note)


def _path(obj: Any, o: _Options) -> Attachment:
    """A file, named by itself rather than by `o.name`, routed by its bytes and extension."""
    path = Path(obj).expanduser()
    data = read_file(path, max_file_bytes=o.max_file_bytes)
    fname, ext = path.name, path.suffix.lower()
    kind = sniff(data[:1024])
    if ext == ".pdf" or kind == "pdf":
        if kind != "pdf":
            raise AttachmentError(f"{fname} is not a PDF file (no %PDF header); check the file")
        return pdf_attachment(data, name=fname, title=fname)
    if kind == "av":
        raise AttachmentError(f"{fname}: audio and video files are not supported by Claude models")
    if kind is not None or ext in IMAGE_EXTS:
        return image_attachment(data, name=fname, max_image_edge=o.max_image_edge)
    decoded = decode_text(data)
    if decoded is None:
        raise AttachmentError(f"{fname} is a binary file Claude cannot read; attach text, a PDF or an image")
    text, note = decoded
    if ext == ".ipynb":
        text = strip_notebook_images(text)
    return text_attachment(text, name=fname, title=fname, note=note)


_HANDLERS: dict[str, Callable[[Any, _Options], Attachment]] = {
    "text": _text,
    "path": _path,
    "bytes": _bytes,
    "llm_repr": _llm_text,
    "av": _av,
    "dataframe": _frame,
    "series": _frame,
    "array": _array,
    "figure": _figure,
    "axes": _figure,
    "pil_image": _pil_image,
    "ipython_image": _ipython_image,
    "image_repr": _image_repr,
}
