"""A batch's items: the prompt of each row, list value or dict, what it attaches, what
the requests made from them would cost, and the table their answers make.

A template's `{field}` is filled from the item: a DataFrame's column, a dict's key,
or, for a Series or a list, the value itself as `{}` or `{item}`. `{{` and `}}` are
literal braces. Every field is checked against what the items have before anything
is sent. Pure: no IPython, no widgets; pandas is only looked at, never imported.
"""

from __future__ import annotations

import json
import math
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._config import CHARS_PER_TOKEN
from ._errors import ConfigError

__all__ = ["Items", "Estimate", "make_items", "template_fields", "request_tokens", "table",
           "answer_for", "replay_file", "merged"]

_FORMATTER = string.Formatter()
_SHOWN = 8  # column names listed in an error


def template_fields(template: str) -> list[str]:
    """The top-level names the template's `{fields}` use, in order ('' for `{}` or `{0}`).

    `{price:.2f}` and `{row[0]}` name `price` and `row`; a field inside a format spec
    (`{x:{width}}`) counts too.
    """
    if not isinstance(template, str) or not template.strip():
        raise ConfigError("the template is empty: write the prompt, with {column} where each "
                          "item's value goes")
    found: list[str] = []
    try:
        pieces = list(_FORMATTER.parse(template))
    except ValueError as exc:
        raise ConfigError(f"the template cannot be read: {exc}; write {{{{ and }}}} for "
                          "literal braces") from None
    for _, field, spec, _ in pieces:
        if field is None:
            continue
        head = field.split(".", 1)[0].split("[", 1)[0]
        found.append("" if head.isdigit() else head)
        if spec and "{" in spec:
            found += template_fields(spec)
    return found


def _listed(values: Iterable[object]) -> str:
    names = [str(n) for n in values]
    shown = ", ".join(names[:_SHOWN]) + (f", … ({len(names)} in all)" if len(names) > _SHOWN
                                         else "")
    return shown or "none"


def _is_frame(value: object) -> bool:
    return type(value).__name__ == "DataFrame" and hasattr(value, "columns")


def _is_series(value: object) -> bool:
    return type(value).__name__ == "Series" and hasattr(value, "index")


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


class _Fields(Mapping[str, Any]):
    """One item's values for `str.format_map`: a row of columns, or a dict."""

    __slots__ = ("_columns", "_row", "_dict")

    def __init__(self, columns: Mapping[str, Sequence[Any]] | None, row: int,
                 values: Mapping[str, Any] | None = None) -> None:
        self._columns, self._row, self._dict = columns, row, values

    def __getitem__(self, key: str) -> Any:
        if self._dict is not None:
            return self._dict[key]
        assert self._columns is not None
        return self._columns[key][self._row]

    def __iter__(self) -> Any:
        return iter(self._dict if self._dict is not None else self._columns or {})

    def __len__(self) -> int:
        return len(self._dict if self._dict is not None else self._columns or {})


class Items:
    """The items of a batch: `len(items)`, `prompt(i)`, `attach(i)`, and `index` (the
    input's own index for a DataFrame or Series, else None)."""

    def __init__(self, template: str, count: int, *, index: Any = None,
                 columns: dict[str, list[Any]] | None = None,
                 dicts: Sequence[Mapping[str, Any]] | None = None,
                 values: Sequence[Any] | None = None,
                 attachments: Sequence[Any] | None = None, pandas: bool = False) -> None:
        self.template = template
        self.count = count
        self.index = index
        self.pandas = pandas  # the input was a pandas object
        self._columns = columns
        self._dicts = dicts
        self._values = values
        self._attachments = attachments

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return f"Items(count={self.count})"

    @property
    def attaches(self) -> bool:
        """Whether items carry attachments (`attach=` was given)."""
        return self._attachments is not None

    def prompt(self, position: int) -> str:
        """The template filled from item `position` (0-based)."""
        if self._values is not None:
            value = self._values[position]
            return _FORMATTER.vformat(self.template, (value,), {"item": value})
        fields = _Fields(self._columns, position,
                         self._dicts[position] if self._dicts is not None else None)
        return _FORMATTER.vformat(self.template, (), fields)

    def attach(self, position: int) -> list[Any]:
        """What item `position` attaches: a list of images, paths or values (maybe empty)."""
        if self._attachments is None:
            return []
        value = self._attachments[position]
        if isinstance(value, (list, tuple)):
            return [v for v in value if not _missing(v)]
        return [] if _missing(value) else [value]


def make_items(template: str, items: object, attach: object = None) -> Items:
    """Items from a DataFrame (its rows), a Series or list (its values) or a list of dicts.

    Raises ConfigError (one line) for a field the items do not have, naming it and what
    is there, and for an `attach=` that does not fit the items.
    """
    fields = template_fields(template)
    named = [f for f in fields if f]
    if _is_frame(items):
        return _frame_items(template, items, named, fields, attach)
    if _is_series(items):
        values: list[Any] = items.tolist()  # type: ignore[attr-defined]
        _check_single(fields, "a Series")
        return Items(template, len(values), index=items.index,  # type: ignore[attr-defined]
                     values=values, attachments=_per_item(attach, len(values), None),
                     pandas=True)
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable) \
            or isinstance(items, Mapping):
        raise ConfigError(f"cannot run over a {type(items).__name__}: pass a DataFrame, a "
                          "Series, a list of values or a list of dicts")
    listed = list(items)
    if listed and all(isinstance(item, Mapping) for item in listed):
        return _dict_items(template, listed, fields, named, attach)
    if any(isinstance(item, Mapping) for item in listed):
        raise ConfigError("the list mixes dicts and other values: pass all dicts (filled by "
                          "key) or no dicts (filled as {item})")
    _check_single(fields, "a list")
    return Items(template, len(listed), values=listed,
                 attachments=_per_item(attach, len(listed), None))


def _check_single(fields: list[str], what: str) -> None:
    """A Series or a list fills `{}` or `{item}` only."""
    for field in fields:
        if field not in ("", "item"):
            raise ConfigError(f"the template uses {{{field}}}, but the items are {what} of "
                              "values: write {} or {item} where each value goes (or {{ }} for "
                              "literal braces)")


def _frame_items(template: str, frame: Any, named: list[str], fields: list[str],
                 attach: object) -> Items:
    available = {str(c): c for c in frame.columns}
    if "" in fields:
        raise ConfigError(f"the template has {{}}, but the items are a DataFrame's rows: name "
                          f"a column instead, one of {_listed(available)}")
    for field in named:
        if field not in available:
            raise ConfigError(f"the template uses {{{field}}}, which is not a column of the "
                              f"DataFrame (columns: {_listed(available)}); write {{{{ }}}} "
                              "for literal braces")
    columns = {name: frame[available[name]].tolist() for name in dict.fromkeys(named)}
    count = len(frame)
    return Items(template, count, index=frame.index, columns=columns,
                 attachments=_per_item(attach, count, (frame, available)), pandas=True)


def _dict_items(template: str, listed: list[Mapping[str, Any]], fields: list[str],
                named: list[str], attach: object) -> Items:
    if "" in fields:
        raise ConfigError("the template has {}, but the items are dicts: name a key instead, "
                          f"one of {_listed(listed[0])}")
    for position, item in enumerate(listed):
        for field in named:
            if field not in item:
                raise ConfigError(f"the template uses {{{field}}}, which item {position} does "
                                  f"not have (its keys: {_listed(item)}); write {{{{ }}}} for "
                                  "literal braces")
    if isinstance(attach, str):
        for position, item in enumerate(listed):
            if attach not in item:
                raise ConfigError(f"attach={attach!r} is not a key of item {position} (its "
                                  f"keys: {_listed(item)})")
        return Items(template, len(listed), dicts=listed,
                     attachments=[item[attach] for item in listed])
    return Items(template, len(listed), dicts=listed,
                 attachments=_per_item(attach, len(listed), None))


def _per_item(attach: object, count: int, frame: tuple[Any, dict[str, Any]] | None
              ) -> list[Any] | None:
    """One attachment value (or list of them) per item, from a column name or a sequence."""
    if attach is None:
        return None
    if isinstance(attach, str):
        if frame is None:
            raise ConfigError(f"attach={attach!r} names a column, but these items have no "
                              "columns: pass a list with one image, path or value per item")
        data, available = frame
        if attach not in available:
            raise ConfigError(f"attach={attach!r} is not a column of the DataFrame (columns: "
                              f"{_listed(available)})")
        return list(data[available[attach]].tolist())
    if _is_series(attach):
        values = list(attach.tolist())  # type: ignore[attr-defined]
    elif isinstance(attach, (list, tuple)):
        values = list(attach)
    else:
        raise ConfigError("attach= takes a column name or a list with one image, path or "
                          f"value per item, not a {type(attach).__name__}")
    if len(values) != count:
        raise ConfigError(f"attach= has {len(values):,} values for {count:,} items: pass one "
                          "per item (None for none)")
    return values


@dataclass
class Estimate:
    """What the items not yet replayed would cost, from a sample of their requests."""

    items: int
    replayed: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None

    def line(self) -> str:
        cost = "cost unknown (no price for the model)" if self.cost_usd is None \
            else f"about ${self.cost_usd:,.2f}"
        already = f" ({self.replayed:,} already in the replay file)" if self.replayed else ""
        return (f"{self.items:,} items to send{already}: ~{self.input_tokens:,} input tokens and "
                f"up to ~{self.output_tokens:,} output tokens, {cost}")


def request_tokens(body: dict[str, Any], attachments: list[Any]) -> int:
    """About how many input tokens a request is: its JSON text without attachment data
    (CHARS_PER_TOKEN a token) plus each attachment's own estimate, as dry runs count."""
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            if value.get("type") in ("base64", "text") and "data" in value:
                return {k: v for k, v in value.items() if k != "data"}
            return {k: strip(v) for k, v in value.items()}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    text = json.dumps(strip(body), ensure_ascii=False)
    return math.ceil(len(text) / CHARS_PER_TOKEN) + sum(a.estimate_tokens() for a in attachments)


def table(columns: dict[str, list[Any]], index: Any, about: dict[str, Any]) -> Any:
    """The answers as a DataFrame on the input's `index` (`about` in its attrs), or a list
    of dicts where pandas is not installed."""
    try:
        import pandas as pd
    except ImportError:
        keys = list(columns)
        return [dict(zip(keys, row, strict=True)) for row in zip(*columns.values(), strict=True)]
    frame = pd.DataFrame(columns, index=index)
    frame.attrs["nb_claude"] = about
    return frame


def answer_for(schema: object, namespace: Any) -> Any:
    """The typed answer for `schema` (None for plain text); ConfigError if unsupported."""
    if schema is None:
        return None
    from ._typed import answer_for as typed

    try:
        return typed(schema, namespace)
    except ValueError as exc:  # SchemaError: one line saying what is supported
        raise ConfigError(str(exc)) from None


def replay_file(path: str) -> Any:
    """The process's one `ReplayFile` object for `path` (its parsed entries shared)."""
    from ._exchange import _replay_file as shared

    return shared(path)


def merged(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Same-role neighbours joined, so the messages alternate as the service requires."""
    from ._wire import as_blocks

    out: list[dict[str, Any]] = []
    for message in messages:
        if out and out[-1]["role"] == message["role"]:
            out[-1] = {"role": message["role"], "content": as_blocks(out[-1]["content"])
                       + as_blocks(message["content"])}
        else:
            out.append(message)
    return out
