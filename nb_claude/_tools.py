"""Python functions the model may call: schemas from type hints, validation, results.

A `Tool` wraps a function; its JSON schema comes from the type hints and its
descriptions from the docstring (Google, NumPy or reST style). `run_tool_call`
validates a call's arguments against the hints, runs the function and turns
whatever it returned into `tool_result` content. This module is pure: no
IPython, no widgets.

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
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._stream import ToolCall

__all__ = [
    "Tool",
    "ToolError",
    "ToolInterrupted",
    "ToolResult",
    "as_tool",
    "registered_tools",
    "resolve_tools",
    "result_content",
    "run_tool_call",
    "tool",
    "tool_choice_wire",
    "unregister",
]

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SUMMARY_LIMIT = 200


class ToolInterrupted(KeyboardInterrupt):
    """A tool call was interrupted while it ran; `result` says so truthfully."""

    def __init__(self, result: ToolResult) -> None:
        super().__init__(result.summary)
        self.result = result


class ToolError(ValueError):
    """A tool definition or tool option the user has to fix (one line)."""


class _Invalid(Exception):
    """An argument the model sent does not fit the parameter's type."""


class _Unsupported(Exception):
    """A type hint that has no JSON form."""


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
    """The JSON schema of one type hint; raises _Unsupported when there is none."""
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
            raise _Unsupported(f"dict keys of type {_hint_name(args[0])}")
        schema = {"type": "object"}
        if len(args) == 2 and args[1] is not Any:
            schema["additionalProperties"] = _schema(args[1], seen)
        return schema
    if origin is not None:
        raise _Unsupported(_hint_name(hint))
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
    raise _Unsupported(_hint_name(hint))


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
    except _Unsupported:
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


def _fail(path: str, hint: Any, value: Any) -> _Invalid:
    return _Invalid(f"{path}: expected {_expect(hint)}, got {_show(value)}")


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
        problems: dict[Any, _Invalid] = {}
        for strict in (True, False) if coerce else (True,):
            for option in args:
                try:
                    return _convert(value, option, path, coerce=not strict)
                except _Invalid as exc:
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
                raise _Invalid(f"{path}: expected an array of {len(args)} items, "
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
            raise _Invalid("; ".join(problems))
        converted = {k: _convert(v, fields.get(k, Any), f"{path}.{k}", coerce)
                     for k, v in value.items()}
        return converted if typing.is_typeddict(hint) else hint(**converted)
    model_validate = getattr(hint, "model_validate", None)
    if callable(model_validate):
        try:
            return model_validate(value)
        except Exception as exc:  # a pydantic ValidationError, worded for the model
            raise _Invalid(f"{path}: {exc}") from None
    return value


# --- tools --------------------------------------------------------------------------

@dataclass(frozen=True)
class _Param:
    name: str
    hint: Any
    kind: Any
    required: bool


def _underlying(fn: Callable[..., Any]) -> Any:
    """The function whose annotations describe `fn`'s parameters."""
    if isinstance(fn, functools.partial):
        return _underlying(fn.func)
    if inspect.isfunction(fn) or inspect.ismethod(fn) or inspect.isbuiltin(fn):
        return fn
    if isinstance(fn, type):
        # The __init__ the class gives its instances, not the metaclass's.
        return typing.cast(Any, fn).__init__
    return getattr(fn, "__call__", fn)  # noqa: B004 - callable instances


def _default_name(fn: Callable[..., Any]) -> str:
    if isinstance(fn, functools.partial):
        return _default_name(fn.func)
    return getattr(fn, "__name__", None) or type(fn).__name__


class Tool:
    """A Python function the model may call.

    Calling the tool calls the function, so a decorated function keeps working
    as a function in the notebook.
    """

    name: str
    description: str
    fn: Callable[..., Any]
    input_schema: dict[str, Any]

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None,
                 description: str | None = None) -> None:
        if isinstance(fn, Tool):
            description = fn.description if description is None else description
            fn = fn.fn
        if not callable(fn):
            raise ToolError(f"{_show_obj(fn)} is not a function: pass a function or a tool name")
        functools.update_wrapper(self, fn, updated=())
        self.fn = fn
        self.named = name is not None  # chosen with @tool(name=...), not taken from the def
        self.name = name if name is not None else _default_name(fn)
        if not _NAME_RE.match(self.name):
            raise ToolError(f"tool name {self.name!r} is not valid: use letters, digits, _ or - "
                            "(at most 64), e.g. @nb_claude.tool(name='my_tool')")
        prose, param_docs = parse_docstring(_doc_of(fn))
        self.description = prose if description is None else description
        self._params, self.input_schema = self._build(fn, param_docs)

    def _build(self, fn: Callable[..., Any], docs: dict[str, str]
               ) -> tuple[list[_Param], dict[str, Any]]:
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):
            raise ToolError(f"cannot read the parameters of {self.name!r}: "
                            "wrap it in a def with named parameters") from None
        try:
            hints = typing.get_type_hints(_underlying(fn), include_extras=True)
        except Exception as exc:  # NameError for a hint that is not defined yet, mostly
            raise ToolError(f"cannot resolve the type hints of {self.name!r} ({exc}): "
                            "define the types before the function") from None
        params: list[_Param] = []
        props: dict[str, Any] = {}
        required: list[str] = []
        for p in signature.parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue  # the model sends one object of named arguments
            hint = hints.get(p.name, p.annotation)
            try:
                schema = dict(_schema(hint))
            except _Unsupported as exc:
                if p.default is not p.empty:
                    continue  # not settable by the model; the default is used
                raise ToolError(f"parameter {p.name!r} of {self.name!r} has type {exc}, which "
                                "the model cannot send as JSON: use str, int, float, bool, "
                                "list or dict, or give it a default") from None
            if p.name in docs and "description" not in schema:
                schema["description"] = docs[p.name]
            if p.default is p.empty:
                required.append(p.name)
            elif _jsonable(p.default):
                schema["default"] = _json_default_value(p.default)
            props[p.name] = schema
            params.append(_Param(p.name, hint, p.kind, p.default is p.empty))
        return params, {"type": "object", "properties": props, "required": required,
                        "additionalProperties": False}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def to_wire(self) -> dict[str, Any]:
        """The tool as the request's `tools` list carries it."""
        return {"name": self.name, "description": self.description,
                "input_schema": self.input_schema}

    def __repr__(self) -> str:
        return f"Tool({self.name!r}, params={[p.name for p in self._params]})"

    def bind(self, arguments: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """Positional and keyword arguments for `fn` from the model's JSON object.

        Raises ValueError with every problem, worded for the model to fix.
        """
        known = {p.name: p for p in self._params}
        problems = [f"unexpected argument {k!r}" for k in arguments if k not in known]
        problems += [f"missing required argument {p.name!r}" for p in self._params
                     if p.required and p.name not in arguments]
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for p in self._params:
            if p.name not in arguments:
                continue
            try:
                value = _convert(arguments[p.name], p.hint, p.name)
            except _Invalid as exc:
                problems.append(str(exc))
                continue
            if p.kind is inspect.Parameter.POSITIONAL_ONLY:
                args.append(value)
            else:
                kwargs[p.name] = value
        if problems:
            names = ", ".join(known) or "none"
            raise ValueError(f"invalid arguments for {self.name}: " + "; ".join(problems)
                             + f" (parameters: {names}). Fix them and call the tool again.")
        return args, kwargs


def _doc_of(fn: Any) -> str | None:
    """The docstring that describes `fn`; a partial's own docstring is generic."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.getdoc(fn)


def _show_obj(obj: Any) -> str:
    text = repr(obj)
    return text if len(text) <= 40 else text[:37] + "..."


_REGISTRY: dict[str, Tool] = {}


def tool(fn: Callable[..., Any] | None = None, *, name: str | None = None,
         description: str | None = None) -> Any:
    """Make a function callable by the model; usable as `@tool` or `@tool(name=...)`.

    The tool is registered by name (a re-run cell replaces the earlier one) and
    returned, so the name still refers to something callable.
    """
    if fn is None:
        return functools.partial(tool, name=name, description=description)
    if isinstance(fn, str):
        raise ToolError(f"use @nb_claude.tool(name={fn!r}) to name a tool")
    made = Tool(fn, name=name, description=description)
    _REGISTRY[made.name] = made
    return made


def registered_tools() -> dict[str, Tool]:
    """Every registered tool by name (a copy)."""
    return dict(_REGISTRY)


def unregister(name: str | Tool) -> None:
    """Forget a registered tool; an unknown name is ignored so cells can be re-run."""
    _REGISTRY.pop(name.name if isinstance(name, Tool) else name, None)


def as_tool(obj: object) -> Tool:
    """A Tool as is, or a function wrapped as one (without registering it)."""
    if isinstance(obj, Tool):
        return obj
    if callable(obj):
        return Tool(obj)
    raise ToolError(f"{_show_obj(obj)} is not a function: pass a function or a tool name")


def resolve_tools(spec: str | Sequence[object] | None,
                  namespace: Mapping[str, object] | None = None) -> list[Tool]:
    """The tools a request offers, from names, functions or Tools.

    With a `namespace` (the user's, as it is now), "all" means the @tool functions
    bound in it and a name means whatever it is bound to now, so a deleted tool is
    gone and a redefined function is used as redefined. Without one (the Python API),
    names and "all" refer to the registry of @tool functions.
    """
    if spec is None:
        return []
    if isinstance(spec, str):
        if spec.strip().lower() == "all":
            return _all_tools(namespace)
        items: Sequence[object] = [s for s in re.split(r"[,\s]+", spec) if s]
    elif isinstance(spec, (Tool,)) or callable(spec):
        items = [spec]
    else:
        items = spec
    found: list[Tool] = []
    for item in items:
        made = _lookup(item, namespace) if isinstance(item, str) else as_tool(item)
        _add(found, made)
    return found


def _add(found: list[Tool], made: Tool) -> None:
    same = next((t for t in found if t.name == made.name), None)
    if same is None:
        found.append(made)
    elif same is not made and same.fn is not made.fn:
        raise ToolError(f"two tools are named {made.name!r}: "
                        "rename one with @nb_claude.tool(name=...)")


def _all_tools(namespace: Mapping[str, object] | None) -> list[Tool]:
    if namespace is None:
        if not _REGISTRY:
            raise ToolError("no tools are registered: decorate functions with @nb_claude.tool")
        return list(_REGISTRY.values())
    bound: dict[int, tuple[str, Tool]] = {}
    for binding, value in list(namespace.items()):
        if isinstance(value, Tool) and not binding.startswith("_"):
            seen = bound.get(id(value))
            if seen is None or binding == value.name:  # prefer the tool's own name
                bound[id(value)] = (binding, value)
    if not bound:
        raise ToolError("no tools in the notebook: decorate functions with @nb_claude.tool "
                        "and run their cells")
    found: list[Tool] = []
    for binding, value in bound.values():
        _add(found, _as_bound(value, binding))
    return found


def _as_bound(value: Tool, binding: str) -> Tool:
    """A tool under the name the notebook now gives it, unless its name was chosen."""
    if value.named or value.name == binding or not _NAME_RE.match(binding):
        return value
    return Tool(value, name=binding)


def _lookup(name: str, namespace: Mapping[str, object] | None) -> Tool:
    if namespace is None:
        if name in _REGISTRY:
            return _REGISTRY[name]
        raise ToolError(f"unknown tool {name!r}: decorate it with @nb_claude.tool or pass the "
                        "function")
    if name not in namespace:
        raise ToolError(f"unknown tool {name!r}: nothing is named {name} in the notebook; "
                        "define the function (run its cell) first")
    value = namespace[name]
    if isinstance(value, Tool):
        return _as_bound(value, name)
    if callable(value):
        return Tool(value, name=name) if _NAME_RE.match(name) else as_tool(value)
    raise ToolError(f"unknown tool {name!r}: {name} is not a function but {_show_obj(value)}")


_CHOICES = {"auto": "auto", "none": "none", "required": "required", "any": "required"}


def tool_choice_wire(choice: str | Tool | None, tools: Sequence[Tool]
                     ) -> str | dict[str, Any] | None:
    """The request's `tool_choice` value, or None when nothing should be sent."""
    if choice is None:
        return None
    name = choice.name if isinstance(choice, Tool) else str(choice).strip()
    if not tools:
        raise ToolError(f"tool_choice {name!r} needs tools: pass some with --tools")
    if name.lower() in _CHOICES:
        return _CHOICES[name.lower()]
    names = [t.name for t in tools]
    if name not in names:
        raise ToolError(f"tool_choice {name!r} is not one of the tools ({', '.join(names)}): "
                        "use auto, none, required or one of them")
    return {"type": "function", "function": {"name": name}}


# --- results ------------------------------------------------------------------------

@dataclass
class ToolResult:
    """What one tool call gave back, as the model and the notebook see it."""

    tool_use_id: str
    name: str
    content: str | list[dict[str, Any]]
    is_error: bool = False
    summary: str = ""
    arguments: str = ""

    def __repr__(self) -> str:
        state = "error" if self.is_error else "ok"
        return f"ToolResult({self.name!r}, {state}, {self.summary[:60]!r})"

    def to_block(self) -> dict[str, Any]:
        """The native `tool_result` block for the next user message."""
        return {"type": "tool_result", "tool_use_id": self.tool_use_id,
                "content": self.content, "is_error": self.is_error}

    def to_dict(self) -> dict[str, Any]:
        return {"tool_use_id": self.tool_use_id, "name": self.name, "content": self.content,
                "is_error": self.is_error, "summary": self.summary,
                "arguments": self.arguments}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ToolResult:
        return cls(str(data.get("tool_use_id", "")), str(data.get("name", "")),
                   data.get("content", ""), bool(data.get("is_error", False)),
                   str(data.get("summary", "")), str(data.get("arguments", "")))


def _summary(content: str | list[dict[str, Any]]) -> str:
    if isinstance(content, str):
        text = content
    else:
        parts = []
        for block in content:
            if block.get("type") == "text":
                parts.append(str(block.get("text", "")))
            else:
                parts.append(f"[{block.get('type', 'block')}]")
        text = " ".join(parts)
    text = " ".join(text.split())
    return text if len(text) <= _SUMMARY_LIMIT else text[:_SUMMARY_LIMIT - 3] + "..."


def run_tool_call(call: ToolCall, tools: Mapping[str, Tool], *,
                  result_budget: int = 20_000) -> ToolResult:
    """Run one call the model asked for; problems become error results, never raised.

    An interrupt while the function runs raises ToolInterrupted, whose `result` says
    the call was interrupted (it may have done part of its work); an async tool is
    cancelled first. Other BaseExceptions (SystemExit) propagate.
    """

    def error(message: str) -> ToolResult:
        return ToolResult(call.id, call.name, message, True, _summary(message), call.arguments)

    found = tools.get(call.name)
    if found is None:
        available = ", ".join(tools) or "none"
        return error(f"unknown tool {call.name!r}; available: {available}")
    try:
        arguments = call.input
    except ValueError as exc:
        return error(f"the arguments for {call.name} are not a JSON object ({exc}); "
                     "send a JSON object that matches the input schema")
    try:
        args, kwargs = found.bind(arguments)
    except ValueError as exc:
        return error(str(exc))
    try:
        value = _invoke(found.fn, args, kwargs)
    except KeyboardInterrupt:
        message = (f"{call.name} was interrupted while running: the user stopped it, and it "
                   "may have done part of its work")
        raise ToolInterrupted(ToolResult(call.id, call.name, message, True, "interrupted",
                                         call.arguments)) from None
    except Exception as exc:
        return error(_describe_exception(exc))
    try:
        content = result_content(value, budget=result_budget)
    except Exception as exc:
        return error(f"{call.name} returned a value that could not be sent: "
                     f"{type(exc).__name__}: {exc}")
    return ToolResult(call.id, call.name, content, False, _summary(content), call.arguments)


def _invoke(fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
    """Call `fn`; a coroutine function runs to completion on its own event loop.

    An interrupt while an async tool runs cancels its task (so its `finally` runs and
    it stops), waits briefly for that, and re-raises the KeyboardInterrupt.
    """
    if not inspect.iscoroutinefunction(_underlying(fn)):
        return fn(*args, **kwargs)
    import asyncio
    import threading

    # A notebook kernel already runs an event loop in this thread, so use another one.
    box: dict[str, Any] = {}
    started, finished = threading.Event(), threading.Event()

    async def main() -> Any:
        box["loop"], box["task"] = asyncio.get_running_loop(), asyncio.current_task()
        started.set()
        return await fn(*args, **kwargs)

    def run() -> None:
        try:
            box["value"] = asyncio.run(main())
        except BaseException as exc:
            box["error"] = exc
        finally:
            started.set()
            finished.set()

    threading.Thread(target=run, name="nb_claude-tool", daemon=True).start()
    try:
        # Short waits return to the interpreter often, so an interrupt is seen at once
        # even when the signal went to another thread. (Not Thread.join: an interrupted
        # join can mark a live thread as stopped.)
        while not finished.wait(0.05):
            pass
    except KeyboardInterrupt:
        _cancel(box, started, finished)
        raise
    error = box.get("error")
    if isinstance(error, asyncio.CancelledError):  # cancelled by the tool's own code
        raise RuntimeError("the tool's task was cancelled before it returned")
    if error is not None:
        raise error
    return box.get("value")


def _cancel(box: dict[str, Any], started: Any, finished: Any, wait: float = 2.0) -> None:
    """Cancel the async tool's task on its own loop and give it `wait` seconds to stop."""
    started.wait(wait)
    loop, task = box.get("loop"), box.get("task")
    if loop is not None and task is not None:
        try:
            loop.call_soon_threadsafe(task.cancel)
        except RuntimeError:  # the loop has already closed: the tool finished
            return
    finished.wait(wait)


@functools.cache
def _library_dirs() -> tuple[str, ...]:
    """Where nb_claude, the standard library and installed packages live: not user code."""
    import sysconfig

    paths = sysconfig.get_paths()
    found = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    return (str(pathlib.Path(__file__).parent), *sorted(found))


def _describe_exception(exc: BaseException) -> str:
    """`Type: message`, plus where in the user's own code it was raised."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    where = None
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not filename.startswith(_library_dirs()):
            where = tb
        tb = tb.tb_next
    if where is not None:
        text += f" (in {where.tb_frame.f_code.co_name}, line {where.tb_lineno})"
    return text


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


def _is_instance(value: Any, module: str, names: tuple[str, ...]) -> bool:
    """isinstance against a class of a module only if that module is already imported."""
    loaded = sys.modules.get(module)
    classes = tuple(c for n in names if isinstance(c := getattr(loaded, n, None), type))
    return bool(classes) and isinstance(value, classes)


def _is_image(value: Any) -> bool:
    return (_is_instance(value, "PIL.Image", ("Image",))
            or _is_instance(value, "matplotlib.figure", ("Figure", "SubFigure"))
            or _is_instance(value, "matplotlib.axes", ("Axes",))
            or _is_instance(value, "IPython.core.display", ("Image",)))


def _is_json(value: Any) -> bool:
    return (value is None or isinstance(value, (bool, int, float, dict, list, tuple))
            or (dataclasses.is_dataclass(value) and not isinstance(value, type))
            or (type(value).__module__ == "numpy" and getattr(value, "shape", None) == ()))


def _image_blocks(value: Any, index: int) -> list[dict[str, Any]]:
    from ._content import attachment_from

    attachment = attachment_from(value, name=f"image {index}")
    return [attachment.to_block(), {"type": "text", "text": f"[{attachment.description}]"}]


def result_content(value: object, *, budget: int = 20_000) -> str | list[dict[str, Any]]:
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
