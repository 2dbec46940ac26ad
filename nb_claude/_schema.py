"""Type hints as JSON schema, docstrings as descriptions, JSON values as typed arguments.

Pure and self-contained: the tool registry (`_tools`) and typed answers use the
same four functions. `json_schema(hint)` and `convert(value, hint)` work on one
type; `schema_for(fn)` and `validate(params, arguments)` on a function's
parameters.

Schema choices: an unannotated parameter (or `Any`) accepts any JSON value
(`{}`); `*args` and `**kwargs` are left out, because the model sends one JSON
object of named arguments; a parameter whose type cannot be sent as JSON
(a DataFrame, an Axes) is left out when it has a default, and refused otherwise.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import functools
import inspect
import json
import math
import pathlib
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Invalid",
    "Param",
    "SchemaError",
    "Unsupported",
    "convert",
    "json_schema",
    "parse_docstring",
    "schema_for",
    "underlying",
    "validate",
]


class SchemaError(ValueError):
    """A function or type that has no JSON schema the model could fill in (one line)."""


class Unsupported(SchemaError):
    """A type hint that has no JSON form; `what` names it."""

    def __init__(self, what: str) -> None:
        super().__init__(f"type {what} has no JSON form")
        self.what = what


class Invalid(ValueError):
    """A JSON value that does not fit its type; the message is worded for the model."""


@dataclass(frozen=True)
class Param:
    """One parameter the model may set: its name, hint and how it is passed."""

    name: str
    hint: Any
    kind: Any
    required: bool


# --- the public surface -------------------------------------------------------------

def json_schema(hint: Any) -> dict[str, Any]:
    """The JSON schema of one type hint; raises Unsupported when there is none."""
    return _schema(hint)


def convert(value: Any, hint: Any, *, path: str = "value", coerce: bool = True) -> Any:
    """`value` checked against `hint` and turned into that type; raises Invalid.

    With `coerce`, near misses a model sends (the string "3" for an int) are accepted.
    `path` names the value in the messages.
    """
    return _convert(value, hint, path, coerce)


def schema_for(fn: Callable[..., Any], name: str | None = None
               ) -> tuple[str, dict[str, Any], list[Param]]:
    """A function's description, input schema and settable parameters.

    Raises SchemaError when the parameters cannot be read or one that has no
    default has no JSON form; `name` is how the messages refer to the function.
    """
    name = name if name is not None else getattr(fn, "__name__", type(fn).__name__)
    prose, docs = parse_docstring(_doc_of(fn))
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        raise SchemaError(f"cannot read the parameters of {name!r}: "
                          "wrap it in a def with named parameters") from None
    try:
        hints = typing.get_type_hints(underlying(fn), include_extras=True)
    except Exception as exc:  # NameError for a hint that is not defined yet, mostly
        raise SchemaError(f"cannot resolve the type hints of {name!r} ({exc}): "
                          "define the types before the function") from None
    params: list[Param] = []
    props: dict[str, Any] = {}
    required: list[str] = []
    for p in signature.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue  # the model sends one object of named arguments
        hint = hints.get(p.name, p.annotation)
        try:
            schema = dict(_schema(hint))
        except Unsupported as exc:
            if p.default is not p.empty:
                continue  # not settable by the model; the default is used
            raise SchemaError(f"parameter {p.name!r} of {name!r} has type {exc.what}, which "
                              "the model cannot send as JSON: use str, int, float, bool, "
                              "list or dict, or give it a default") from None
        if p.name in docs and "description" not in schema:
            schema["description"] = docs[p.name]
        if p.default is p.empty:
            required.append(p.name)
        elif _jsonable(p.default):
            schema["default"] = _json_default_value(p.default)
        props[p.name] = schema
        params.append(Param(p.name, hint, p.kind, p.default is p.empty))
    return prose, {"type": "object", "properties": props, "required": required,
                   "additionalProperties": False}, params


def validate(params: Sequence[Param], arguments: Mapping[str, Any]
             ) -> tuple[list[Any], dict[str, Any]]:
    """Positional and keyword arguments from a JSON object; Invalid names every problem."""
    known = {p.name for p in params}
    problems = [f"unexpected argument {k!r}" for k in arguments if k not in known]
    problems += [f"missing required argument {p.name!r}" for p in params
                 if p.required and p.name not in arguments]
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for p in params:
        if p.name not in arguments:
            continue
        try:
            value = _convert(arguments[p.name], p.hint, p.name)
        except Invalid as exc:
            problems.append(str(exc))
            continue
        if p.kind is inspect.Parameter.POSITIONAL_ONLY:
            args.append(value)
        else:
            kwargs[p.name] = value
    if problems:
        raise Invalid("; ".join(problems))
    return args, kwargs


def underlying(fn: Callable[..., Any]) -> Any:
    """The function whose annotations describe `fn`'s parameters."""
    if isinstance(fn, functools.partial):
        return underlying(fn.func)
    if inspect.isfunction(fn) or inspect.ismethod(fn) or inspect.isbuiltin(fn):
        return fn
    if isinstance(fn, type):
        # The __init__ the class gives its instances, not the metaclass's.
        return typing.cast(Any, fn).__init__
    return getattr(fn, "__call__", fn)  # noqa: B004 - callable instances


def _doc_of(fn: Any) -> str | None:
    """The docstring that describes `fn`; a partial's own docstring is generic."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.getdoc(fn)


# --- docstrings ---------------------------------------------------------------------

_PARAM_SECTIONS = {"args", "arguments", "parameters", "params", "keyword args",
                   "keyword arguments", "other parameters", "other args"}
_SECTIONS = _PARAM_SECTIONS | {
    "returns", "return", "yields", "yield", "raises", "raise", "examples", "example", "notes",
    "note", "attributes", "see also", "warnings", "warning", "warns", "todo", "references",
    "methods"}
_REST_PARAM_TAGS = {"param", "parameter", "arg", "argument", "key", "keyword"}
_REST_FIELD = re.compile(r"^:(\w+)([^:]*):\s*(.*)$")
_GOOGLE_ENTRY = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_NUMPY_ENTRY = re.compile(r"^\*{0,2}(\w+(?:\s*,\s*\*{0,2}\w+)*)\s*(?::.*)?$")
_ENTRY = {"google": _GOOGLE_ENTRY, "numpy": _NUMPY_ENTRY}


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _join(lines: list[str]) -> str:
    """Prose lines as paragraphs: lines joined by spaces, paragraphs by a blank line."""
    paragraphs: list[list[str]] = [[]]
    for line in lines:
        if line.strip():
            paragraphs[-1].append(line.strip())
        elif paragraphs[-1]:
            paragraphs.append([])
    return "\n\n".join(" ".join(p) for p in paragraphs if p)


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a docstring into its prose and its parameter descriptions.

    The prose is everything before the first section (`Args:`, a NumPy
    `Parameters` header, a reST `:param x:` field, ...).
    """
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    prose: list[str] = []
    params: dict[str, list[str]] = {}
    section: str | None = None  # None while still in the prose
    style = ""
    current: list[str] | None = None  # the lines of the entry being read
    entry_indent = -1
    i = 0
    while i < len(lines):
        line, stripped = lines[i], lines[i].strip()
        top = _indent(line) == 0
        header = stripped.rstrip(":").strip().lower()
        underline = lines[i + 1].strip() if i + 1 < len(lines) else ""
        field = _REST_FIELD.match(stripped) if top else None
        if top and stripped.endswith(":") and header in _SECTIONS:
            section, style, current, entry_indent = header, "google", None, -1
        elif top and header in _SECTIONS and underline and set(underline) == {"-"}:
            section, style, current, entry_indent = header, "numpy", None, 0
            i += 1
        elif field:
            section, style, current = "rest", "rest", None
            words = field.group(2).split()
            if field.group(1) in _REST_PARAM_TAGS and words:
                current = params[words[-1]] = [field.group(3)]
        elif section is None:
            prose.append(line)
        elif (section in _PARAM_SECTIONS and stripped
              and entry_indent in (-1, _indent(line))
              and (entry := _ENTRY[style].match(stripped))):
            entry_indent = _indent(line)
            current = [entry.group(2)] if style == "google" else []
            for name in re.split(r"\s*,\s*", entry.group(1)):
                params[name.lstrip("*")] = current
        elif current is not None:
            current.append(stripped)
        i += 1
    described = {name: _join(text) for name, text in params.items()}
    return _join(prose), {name: text for name, text in described.items() if text}


# --- schemas from type hints --------------------------------------------------------

_SIMPLE: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
    list: {"type": "array"},
    tuple: {"type": "array"},
    set: {"type": "array", "uniqueItems": True},
    frozenset: {"type": "array", "uniqueItems": True},
    dict: {"type": "object"},
    _dt.datetime: {"type": "string", "format": "date-time"},
    _dt.date: {"type": "string", "format": "date"},
    _dt.time: {"type": "string", "format": "time"},
    pathlib.Path: {"type": "string"},
}
# TypedDict's Required[X] / NotRequired[X] (kept by include_extras) describe X.
_KEY_MARKERS = {m for m in (getattr(typing, "Required", None),
                            getattr(typing, "NotRequired", None)) if m is not None}
_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean",
               type(None): "null"}


_ARRAY_ABCS = {"Sequence", "MutableSequence", "Collection", "Iterable", "Set", "MutableSet"}


def _origin_name(origin: Any) -> str:
    """The name of a collections.abc origin such as Sequence, or ""."""
    return getattr(origin, "__name__", "") if origin is not None else ""


def _is_union(origin: Any) -> bool:
    return origin is typing.Union or origin is types.UnionType


def _enum_schema(values: list[Any]) -> dict[str, Any]:
    kinds = {_JSON_TYPES.get(type(v)) for v in values}
    schema: dict[str, Any] = {}
    if len(kinds) == 1 and None not in kinds:
        schema["type"] = kinds.pop()
    schema["enum"] = values
    return schema


def _schema(hint: Any, seen: tuple[Any, ...] = ()) -> dict[str, Any]:
    """The JSON schema of one type hint; raises Unsupported when there is none."""
    if hint is inspect.Parameter.empty or hint is Any or hint is object:
        return {}
    if hint is None:
        hint = type(None)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in _KEY_MARKERS:
        return _schema(args[0], seen)
    if origin is typing.Annotated:
        schema = dict(_schema(args[0], seen))
        for meta in args[1:]:
            if isinstance(meta, str):
                schema["description"] = meta
            elif isinstance(meta, Mapping):
                schema.update(meta)
            elif isinstance(getattr(meta, "description", None), str):
                schema["description"] = meta.description
        return schema
    if origin is typing.Literal:
        return _enum_schema([a.value if isinstance(a, enum.Enum) else a for a in args])
    if _is_union(origin):
        options = [_schema(a, seen) for a in args]
        nulls = [o for o in options if o == {"type": "null"}]
        others = [o for o in options if o != {"type": "null"}]
        if nulls and len(others) == 1 and set(others[0]) == {"type"} \
                and isinstance(others[0]["type"], str):
            return {"type": [others[0]["type"], "null"]}
        return {"anyOf": options}
    if origin in (list, set, frozenset) or _origin_name(origin) in _ARRAY_ABCS:
        schema = dict(_SIMPLE.get(origin, {"type": "array"}))
        if args:
            schema["items"] = _schema(args[0], seen)
        return schema
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": _schema(args[0], seen)}
        if not args:
            return {"type": "array"}
        items = [_schema(a, seen) for a in args]
        return {"type": "array", "prefixItems": items, "minItems": len(items),
                "maxItems": len(items)}
    if origin is dict or _origin_name(origin) in ("Mapping", "MutableMapping"):
        if args and args[0] not in (str, Any):
            raise Unsupported(f"dict keys of type {_hint_name(args[0])}")
        schema = {"type": "object"}
        if len(args) == 2 and args[1] is not Any:
            schema["additionalProperties"] = _schema(args[1], seen)
        return schema
    if origin is not None:
        raise Unsupported(_hint_name(hint))
    if hint in _SIMPLE:
        return dict(_SIMPLE[hint])
    if isinstance(hint, type):
        if issubclass(hint, enum.Enum):
            return _enum_schema([m.value for m in hint])
        if hint in seen:
            return {"type": "object"}
        if typing.is_typeddict(hint):
            fields = typing.get_type_hints(hint, include_extras=True)
            required = [k for k in fields if _required_key(hint, k, fields[k])]
            return _object_schema({k: _schema(v, (*seen, hint)) for k, v in fields.items()},
                                  required, hint.__doc__)
        if dataclasses.is_dataclass(hint):
            fields = typing.get_type_hints(hint, include_extras=True)
            props: dict[str, Any] = {}
            required = []
            for f in dataclasses.fields(hint):
                if not f.init:
                    continue
                props[f.name] = _schema(fields.get(f.name, Any), (*seen, hint))
                if (f.default is dataclasses.MISSING
                        and f.default_factory is dataclasses.MISSING):
                    required.append(f.name)
                elif f.default is not dataclasses.MISSING and _jsonable(f.default):
                    props[f.name]["default"] = _json_default_value(f.default)
            return _object_schema(props, required, None)
        model_json_schema = getattr(hint, "model_json_schema", None)
        if callable(model_json_schema):  # pydantic models
            return model_json_schema()
    raise Unsupported(_hint_name(hint))


def _required_key(typed_dict: Any, key: str, hint: Any) -> bool:
    # __required_keys__ misses Required/NotRequired written as strings
    # (`from __future__ import annotations`) before Python 3.12.
    marker = typing.get_origin(hint)
    if marker in _KEY_MARKERS:
        return marker is getattr(typing, "Required", None)
    return key in typed_dict.__required_keys__


def _object_schema(props: dict[str, Any], required: list[str], doc: str | None
                   ) -> dict[str, Any]:
    _, descriptions = parse_docstring(doc)
    for name, text in descriptions.items():
        if name in props and "description" not in props[name]:
            props[name]["description"] = text
    return {"type": "object", "properties": props, "required": required,
            "additionalProperties": False}


def _hint_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _json_default_value(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else (
        list(value) if isinstance(value, tuple) else value)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(_json_default_value(value), allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


# --- argument validation ------------------------------------------------------------

def _show(value: Any) -> str:
    try:
        text = json.dumps(value, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _expect(hint: Any) -> str:
    try:
        schema = _schema(hint)
    except Unsupported:
        return _hint_name(hint)
    if "enum" in schema:
        return "one of " + ", ".join(_show(v) for v in schema["enum"])
    kind = schema.get("type", "")
    if isinstance(kind, list):
        kind = " or ".join(kind)
    if "anyOf" in schema:
        return " or ".join(_expect(a) for a in typing.get_args(hint))
    names = {"string": "a string", "integer": "an integer", "number": "a number",
             "boolean": "true or false", "null": "null", "array": "an array",
             "object": "an object"}
    text = names.get(kind, kind or "any value")
    if schema.get("format"):
        text += f" ({schema['format']}, ISO 8601)"
    return text


def _fail(path: str, hint: Any, value: Any) -> Invalid:
    return Invalid(f"{path}: expected {_expect(hint)}, got {_show(value)}")


def _convert(value: Any, hint: Any, path: str, coerce: bool = True) -> Any:
    """`value` checked against `hint` and turned into what the function expects."""
    if hint is inspect.Parameter.empty or hint is Any or hint is object:
        return value
    if hint is None or hint is type(None):
        if value is None:
            return None
        raise _fail(path, hint, value)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated or origin in _KEY_MARKERS:
        return _convert(value, args[0], path, coerce)
    if _is_union(origin):
        problems: dict[Any, Invalid] = {}
        for strict in (True, False) if coerce else (True,):
            for option in args:
                try:
                    return _convert(value, option, path, coerce=not strict)
                except Invalid as exc:
                    problems[option] = exc
        options = [a for a in args if a is not type(None)]
        if value is not None and len(options) == 1:
            raise problems[options[0]]  # Optional[X]: what is wrong as an X says more
        raise _fail(path, hint, value)
    if origin is typing.Literal:
        for option in args:
            plain = option.value if isinstance(option, enum.Enum) else option
            if type(value) is type(plain) and value == plain:
                return option
        if coerce and isinstance(value, str):
            for option in args:
                plain = option.value if isinstance(option, enum.Enum) else option
                if str(plain) == value:
                    return option
        raise _fail(path, hint, value)
    if origin is not None:
        return _convert_generic(value, origin, args, hint, path, coerce)
    if isinstance(hint, type):
        return _convert_class(value, hint, path, coerce)
    return value


def _convert_generic(value: Any, origin: Any, args: tuple[Any, ...], hint: Any, path: str,
                     coerce: bool) -> Any:
    schema = _schema(hint)
    if schema.get("type") == "array":
        if coerce and isinstance(value, str):
            value = _loads_or(value, value)
        if not isinstance(value, list):
            raise _fail(path, hint, value)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise Invalid(f"{path}: expected an array of {len(args)} items, "
                               f"got {len(value)}")
            return tuple(_convert(v, a, f"{path}[{i}]", coerce)
                         for i, (v, a) in enumerate(zip(value, args, strict=True)))
        item = args[0] if args else Any
        items = [_convert(v, item, f"{path}[{i}]", coerce) for i, v in enumerate(value)]
        if origin in (set, frozenset):
            return origin(items)
        return tuple(items) if origin is tuple else items
    if schema.get("type") == "object":
        if coerce and isinstance(value, str):
            value = _loads_or(value, value)
        if not isinstance(value, dict):
            raise _fail(path, hint, value)
        item = args[1] if len(args) == 2 else Any
        return {k: _convert(v, item, f"{path}.{k}", coerce) for k, v in value.items()}
    return value


def _loads_or(text: str, fallback: Any) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return fallback


_INT_RE = re.compile(r"^\s*[+-]?\d+\s*$")


def _convert_class(value: Any, hint: type, path: str, coerce: bool) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        if coerce and isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise _fail(path, hint, value)
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if coerce and isinstance(value, float) and value.is_integer():
            return int(value)
        if coerce and isinstance(value, str) and _INT_RE.match(value):
            return int(value)
        raise _fail(path, hint, value)
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if coerce and isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if math.isfinite(number):
                return number
        raise _fail(path, hint, value)
    if hint is str:
        if isinstance(value, str):
            return value
        if coerce and isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise _fail(path, hint, value)
    if hint in (list, tuple, set, frozenset, dict):
        return _convert_generic(value, hint, (), hint, path, coerce)
    if hint in (_dt.datetime, _dt.date, _dt.time):
        if isinstance(value, str):
            try:
                return hint.fromisoformat(value.strip())
            except ValueError:
                pass
        raise _fail(path, hint, value)
    if issubclass(hint, pathlib.PurePath):
        if isinstance(value, str):
            return hint(value)
        raise _fail(path, hint, value)
    if issubclass(hint, enum.Enum):
        for member in hint:
            if type(member.value) is type(value) and member.value == value:
                return member
        if coerce and isinstance(value, str):
            for member in hint:
                if value in (member.name, str(member.value)):
                    return member
        raise _fail(path, hint, value)
    if typing.is_typeddict(hint) or dataclasses.is_dataclass(hint):
        if coerce and isinstance(value, str):
            value = _loads_or(value, value)
        if not isinstance(value, dict):
            raise _fail(path, hint, value)
        schema = _schema(hint)
        fields = typing.get_type_hints(hint, include_extras=True)
        problems = [f"{path}: unexpected key {k!r}" for k in value
                    if k not in schema["properties"]]
        problems += [f"{path}: missing key {k!r}" for k in schema["required"]
                     if k not in value]
        if problems:
            raise Invalid("; ".join(problems))
        converted = {k: _convert(v, fields.get(k, Any), f"{path}.{k}", coerce)
                     for k, v in value.items()}
        return converted if typing.is_typeddict(hint) else hint(**converted)
    model_validate = getattr(hint, "model_validate", None)
    if callable(model_validate):
        try:
            return model_validate(value)
        except Exception as exc:  # a pydantic ValidationError, worded for the model
            raise Invalid(f"{path}: {exc}") from None
    return value
