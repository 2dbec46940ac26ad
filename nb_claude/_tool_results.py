"""A tool's return value as `tool_result` content: JSON text, or text and image blocks.

Pure: no IPython, no widgets. Figures, images, DataFrames and arrays are turned
into blocks or descriptions by `_content`, imported only when one comes back.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import json
from typing import Any

from ._config import DEFAULT_TOOL_RESULT_BUDGET
from ._kinds import IMAGE_KINDS, kind_of
from ._wire import attachment_block

__all__ = ["TOOL_RESULT_BUDGET", "result_content"]

TOOL_RESULT_BUDGET = DEFAULT_TOOL_RESULT_BUDGET


def _truncate(text: str, budget: int) -> str:
    if len(text) <= budget:
        return text
    note = f"\n[... truncated: {len(text)} characters in all, the first {{}} shown]"
    keep = max(budget - len(note) - 8, 0)
    return text[:keep] + note.format(keep)


def _json_default(obj: Any) -> Any:
    if getattr(obj, "shape", None) == () and callable(getattr(obj, "item", None)):
        return obj.item()  # numpy scalars
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (_dt.date, _dt.time)):
        return obj.isoformat()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    from ._content import describe_value

    return describe_value(obj, budget=500)


def _is_image(value: Any) -> bool:
    return kind_of(value, probe=False) in IMAGE_KINDS


def _is_json(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, dict, list, tuple)):
        return True
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return True
    kind = kind_of(value, probe=False)
    return kind == "scalar" or (kind == "array" and getattr(value, "shape", None) == ())


def _image_blocks(value: Any, index: int) -> list[dict[str, Any]]:
    from ._content import attachment_from

    attachment = attachment_from(value, name=f"image {index}")
    return [attachment_block(attachment), {"type": "text", "text": f"[{attachment.description}]"}]


def result_content(value: object, *, budget: int = TOOL_RESULT_BUDGET) -> str | list[dict[str, Any]]:
    """A tool's return value as `tool_result` content: text, or text and image blocks.

    Plain data goes as JSON, figures and images as image blocks, DataFrames,
    arrays, bytes and other objects as a short description; text is cut to `budget`.
    """
    if isinstance(value, str):
        return _truncate(value, budget)
    if _is_image(value):
        return _image_blocks(value, 1)
    if isinstance(value, (list, tuple)) and any(_is_image(v) for v in value):
        blocks: list[dict[str, Any]] = []
        share = max(budget // len(value), 200)
        for index, item in enumerate(value, 1):
            if _is_image(item):
                blocks += _image_blocks(item, index)
            else:
                blocks.append({"type": "text", "text": str(result_content(item, budget=share))})
        return blocks
    if _is_json(value):
        return _truncate(json.dumps(value, default=_json_default, ensure_ascii=False), budget)
    from ._content import describe_value

    return _truncate(describe_value(value, budget=budget), budget)
