"""Typed answers: a type or JSON schema as one forced tool, its call as the answer.

`answer_for(schema)` makes an `Answer`: the tool whose `input_schema` is the schema,
the `tool_choice` that forces it, and `parse(reply)`, which validates the call's
arguments into the value the user asked for (a dict for a TypedDict, a dataclass or
pydantic instance, an Enum member, ...). Type hints are checked with `_schema.convert`,
the validation tool arguments get; pydantic models with their own `model_validate`;
JSON-schema dicts with `jsonschema` when it is installed, else with a small checker of
types, required keys, enums and bounds. Pure: no IPython, no widgets.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._schema import Invalid, SchemaError, Unsupported, convert, json_schema, parse_docstring
from ._wire import assistant_blocks, tool_choice, tool_definition, tool_result_block

if TYPE_CHECKING:
    from ._stream import Reply

__all__ = ["Answer", "AnswerError", "SchemaError", "answer_for", "ANSWER_TOOL"]

ANSWER_TOOL = "answer"
SUPPORTED = ("a TypedDict, a dataclass, an Enum, Literal[...], a pydantic model or a "
             "JSON-schema dict")
_DESCRIPTION = ("Give your answer by calling this tool: its arguments are the answer, and "
                "nothing else is read.")


class AnswerError(ValueError):
    """The reply has no call of the answer tool, or its arguments do not fit (one line)."""


class Answer:
    """One answer type as the request's only tool, and the check of what comes back."""

    def __init__(self, schema: dict[str, Any], *, hint: Any = None, kind: str = "hint",
                 wrapped: bool = False, title: str = "", description: str = "",
                 name: str = ANSWER_TOOL) -> None:
        self.name = name
        self.schema = schema
        self.hint = hint  # the Python type (kind "hint" or "pydantic"), or None
        self.kind = kind  # "hint" | "pydantic" | "json"
        self.wrapped = wrapped  # a non-object answer travels as {"value": ...}
        self.title = title
        self.description = description or _DESCRIPTION
        self._validator: Any = None

    def __repr__(self) -> str:
        return f"Answer({self.title or self.kind!r}, fields={self.field_names()})"

    @property
    def input_schema(self) -> dict[str, Any]:
        return self.schema

    # -- the request -----------------------------------------------------
    def tool_block(self) -> dict[str, Any]:
        """The answer tool as the request's `tools` list carries it."""
        return tool_definition(self)

    def tool_choice_block(self) -> Any:
        """The `tool_choice` that forces the answer tool."""
        return tool_choice(self.name, [self.name])

    def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        """`body` offering only the answer tool, forced, and without thinking (Claude
        refuses a forced tool with thinking on)."""
        typed = {k: v for k, v in body.items() if k not in ("tools", "tool_choice", "thinking")}
        typed["tools"] = [self.tool_block()]
        typed["tool_choice"] = self.tool_choice_block()
        return typed

    # -- the reply -------------------------------------------------------
    def parse(self, reply: Reply) -> Any:
        """The validated answer in `reply`; raises AnswerError saying what is wrong."""
        call = next((c for c in reply.tool_calls if c.name == self.name), None)
        if call is None:
            why = {"refusal": " (it refused)", "max_tokens": " (it was cut at max_tokens)"}
            raise AnswerError(f"the model did not call {self.name}"
                              f"{why.get(reply.finish_reason or '', '')}")
        try:
            arguments = call.input
        except ValueError as exc:
            raise AnswerError(f"the arguments of {self.name} are not a JSON object ({exc})"
                              ) from None
        return self.validate(arguments)

    def validate(self, arguments: Mapping[str, Any]) -> Any:
        """The answer from the tool's arguments; raises AnswerError naming every problem."""
        try:
            return self._validate(arguments)
        except Invalid as exc:
            raise AnswerError(str(exc)) from None

    def _validate(self, arguments: Mapping[str, Any]) -> Any:
        if self.wrapped:
            extra = [k for k in arguments if k != "value"]
            if "value" not in arguments or extra:
                problems = ["missing key 'value'"] if "value" not in arguments else []
                raise Invalid("; ".join(problems + [f"unexpected key {k!r}" for k in extra]))
        if self.kind == "hint":
            if self.wrapped:
                return convert(arguments["value"], self.hint, path="value")
            return convert(dict(arguments), self.hint, path="answer")
        if self.kind == "pydantic":
            try:
                return self.hint.model_validate(arguments["value"] if self.wrapped
                                                else dict(arguments))
            except Exception as exc:  # pydantic's ValidationError
                raise Invalid(_pydantic_problems(exc)) from None
        problems = self._json_problems(dict(arguments))
        if problems:
            raise Invalid("; ".join(problems[:8]))
        return arguments["value"] if self.wrapped else dict(arguments)

    def _json_problems(self, value: Any) -> list[str]:
        if self._validator is None:
            self._validator = _json_validator(self.schema)
        if self._validator is False:
            return _check(value, self.schema, "answer", self.schema)
        errors = sorted(self._validator.iter_errors(value), key=lambda e: list(e.path))
        return [f"{_dotted('answer', e.absolute_path)}: {e.message[:200]}" for e in errors]

    def error_results(self, reply: Reply, error: AnswerError) -> list[tuple[str, str]]:
        """(tool_use_id, message for the model) for every call in `reply`: each needs a
        tool result."""
        again = f"Call {self.name} again with arguments that match its input schema."
        return [(c.id, f"Invalid answer: {error}. {again}" if c.name == self.name else
                 f"Only {self.name} is available: call it with the answer.")
                for c in reply.tool_calls]

    def retry_messages(self, reply: Reply, error: AnswerError) -> list[dict[str, Any]]:
        """The wire messages after the user message for the one retry: the assistant's
        call and a tool result carrying the error. A reply without a call gets its text
        (if any) and a user note instead; callers merge same-role neighbours."""
        results = self.error_results(reply, error)
        blocks = assistant_blocks(reply, include_tools=bool(results))
        messages = [{"role": "assistant", "content": blocks}] if blocks else []
        if results:
            content: list[dict[str, Any]] = [
                tool_result_block(_Result(i, m)) for i, m in results]
        else:
            content = [{"type": "text", "text": f"No answer: {error}. Answer by calling "
                                                f"{self.name} with the answer as its arguments."}]
        return messages + [{"role": "user", "content": content}]

    # -- the value -------------------------------------------------------
    def field_names(self) -> list[str]:
        """One name per DataFrame column: the object's properties, or "value"."""
        if self.wrapped:
            return ["value"]
        return list(self.schema.get("properties") or {})

    def columns(self, value: Any) -> dict[str, Any]:
        """One entry per field (missing optional fields are None); {"value": v} otherwise."""
        if self.wrapped:
            return {"value": value}
        if isinstance(value, Mapping):
            return {name: value.get(name) for name in self.field_names()}
        fields = getattr(type(value), "model_fields", None)  # pydantic: properties are aliases
        attrs = {(getattr(f, "alias", None) or n): n for n, f in fields.items()} \
            if isinstance(fields, Mapping) else {}
        return {name: getattr(value, attrs.get(name, name), None) for name in self.field_names()}

    def show(self, value: Any) -> str:
        """The value as a JSON code fence (untrusted text: the fence is longer than any
        backtick run inside it)."""
        from ._render_context import _fence

        text = json.dumps(plain(value), ensure_ascii=False, indent=2, default=str)
        return _fence(text, "json")


@dataclasses.dataclass
class _Result:
    tool_use_id: str
    content: str
    is_error: bool = True


def plain(value: Any) -> Any:
    """A parsed answer as JSON values: members by value, instances as dicts."""
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        return dump(mode="json")
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, (_dt.date, _dt.time)):
        return value.isoformat()
    return value


# --- making an Answer -------------------------------------------------------------------

def answer_for(schema: object, namespace: Mapping[str, Any] | None = None) -> Answer:
    """The Answer for a TypedDict, dataclass, Enum, Literal[...], pydantic model, JSON-schema
    dict, or the name of one in `namespace`; raises SchemaError (one line) otherwise."""
    if isinstance(schema, Answer):
        return schema
    title = ""
    if isinstance(schema, str):
        title = schema.strip()
        schema = _lookup(title, namespace)
    if isinstance(schema, Mapping):
        return _from_json_schema(dict(schema), title)
    title = title or getattr(schema, "__name__", "") or str(schema).replace("typing.", "")
    if _is_pydantic(schema):
        made = dict(schema.model_json_schema())  # type: ignore[attr-defined]
        return _made(made, hint=schema, kind="pydantic", title=title,
                     doc=getattr(schema, "__doc__", None))
    if not _is_hint(schema):
        raise SchemaError(f"schema {title or _short(schema)} is a value of type "
                          f"{type(schema).__name__}, not a type: use {SUPPORTED}")
    try:
        made = json_schema(schema)
    except (Unsupported, TypeError) as exc:
        what = exc.what if isinstance(exc, Unsupported) else title
        raise SchemaError(f"schema {title}: type {what} has no JSON form; use "
                          f"{SUPPORTED}") from None
    if not made:
        raise SchemaError(f"schema {title} accepts any value: use {SUPPORTED}")
    doc = schema.__doc__ if isinstance(schema, type) and _own_doc(schema) else None
    return _made(made, hint=schema, kind="hint", title=title, doc=doc)


def _made(schema: dict[str, Any], *, hint: Any, kind: str, title: str,
          doc: str | None) -> Answer:
    prose = parse_docstring(doc)[0] if doc else ""
    description = f"{_DESCRIPTION} {prose}".strip() if prose else _DESCRIPTION
    if _is_object(schema):
        return Answer(schema, hint=hint, kind=kind, title=title, description=description)
    inner = {k: v for k, v in schema.items() if k != "$defs"}
    wrapped = {"type": "object", "properties": {"value": inner}, "required": ["value"],
               "additionalProperties": False}
    if "$defs" in schema:  # references resolve from the root
        wrapped["$defs"] = schema["$defs"]
    return Answer(wrapped, hint=hint, kind=kind, wrapped=True, title=title,
                  description=description)


def _from_json_schema(schema: dict[str, Any], title: str) -> Answer:
    try:
        json.dumps(schema, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"schema {title or 'dict'} is not JSON ({exc}): use {SUPPORTED}"
                          ) from None
    if not schema:
        raise SchemaError(f"schema {title or '{}'} is empty: give a JSON schema with a type "
                          "or properties")
    validator = _json_validator(schema)
    if validator is not False:
        from jsonschema.exceptions import SchemaError as BadSchema

        try:
            type(validator).check_schema(schema)
        except BadSchema as exc:
            raise SchemaError(f"schema {title or 'dict'} is not a valid JSON schema: "
                              f"{exc.message}") from None
    answer = _made(schema, hint=None, kind="json", title=title or str(schema.get("title", "")),
                   doc=None)
    answer._validator = _json_validator(answer.schema)
    return answer


def _lookup(name: str, namespace: Mapping[str, Any] | None) -> Any:
    head, *rest = name.split(".")
    if namespace is None:
        raise SchemaError(f"schema {name!r} is a name: pass the type itself, or a namespace "
                          "to look it up in")
    if not name or head not in namespace:
        raise SchemaError(f"unknown schema {name!r}: nothing is named {head or name!r} in the "
                          "notebook; define the type (run its cell) first")
    value = namespace[head]
    for part in rest:
        if not hasattr(value, part):
            raise SchemaError(f"unknown schema {name!r}: {head} has no attribute {part!r}")
        value = getattr(value, part)
    return value


def _is_pydantic(obj: object) -> bool:
    return isinstance(obj, type) and callable(getattr(obj, "model_json_schema", None)) \
        and callable(getattr(obj, "model_validate", None))


def _is_hint(obj: object) -> bool:
    """A class or a typing construct (Literal[...], list[int], X | None), not a value."""
    import typing

    return isinstance(obj, type) or typing.get_origin(obj) is not None


def _own_doc(cls: type) -> bool:
    """Whether the docstring is the class's own, not one dataclass or TypedDict writes."""
    doc = cls.__doc__ or ""
    return bool(doc) and not doc.startswith(f"{cls.__name__}(")


def _is_object(schema: Mapping[str, Any]) -> bool:
    return schema.get("type") == "object" and isinstance(schema.get("properties"), Mapping)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _pydantic_problems(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc).splitlines()[0]
    found = [f"{_dotted('answer', e.get('loc', ()))}: {e.get('msg', 'invalid')}"
             for e in errors()]
    return "; ".join(found[:8]) or "invalid"


def _dotted(root: str, path: Any) -> str:
    out = root
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


# --- JSON-schema dicts ------------------------------------------------------------------

def _json_validator(schema: dict[str, Any]) -> Any:
    """A jsonschema validator for `schema` when jsonschema is installed, else False."""
    try:
        from jsonschema.validators import validator_for
    except ImportError:
        return False
    from jsonschema import Draft202012Validator

    return validator_for(schema, default=Draft202012Validator)(schema)


_TYPES: dict[str, Any] = {"string": str, "integer": int, "number": (int, float),
                          "boolean": bool, "array": list, "object": dict, "null": type(None)}


def _is(value: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    expected = _TYPES.get(kind)
    return expected is None or isinstance(value, expected)


def _check(value: Any, schema: Any, path: str, root: dict[str, Any]) -> list[str]:
    """Problems of `value` against the common keywords of a JSON schema (no jsonschema)."""
    if not isinstance(schema, Mapping):
        return []
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, Mapping) else {}
        return _check(value, target, path, root)
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if kinds and not any(_is(value, k) for k in kinds):
        return [f"{path}: expected {' or '.join(kinds)}, got {json.dumps(value)[:60]}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}: expected one of {', '.join(json.dumps(v) for v in schema['enum'])}"]
    if "const" in schema and value != schema["const"]:
        return [f"{path}: expected {json.dumps(schema['const'])}"]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and all(_check(value, o, path, root) for o in options):
            return [f"{path}: matches none of the allowed forms"]
    problems: list[str] = []
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        problems += [f"{path}: missing key {k!r}" for k in schema.get("required") or ()
                     if k not in value]
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                problems += _check(item, props[key], f"{path}.{key}", root)
            elif extra is False:
                problems.append(f"{path}: unexpected key {key!r}")
            else:
                problems += _check(item, extra, f"{path}.{key}", root)
    elif isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems",
                                                                              math.inf):
            problems.append(f"{path}: {len(value)} items is out of bounds")
        for i, item in enumerate(value):
            problems += _check(item, schema.get("items"), f"{path}[{i}]", root)
    elif isinstance(value, str):
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", math.inf):
            problems.append(f"{path}: {len(value)} characters is out of bounds")
    elif isinstance(value, (int, float)) and not isinstance(value, bool) \
            and not schema.get("minimum", -math.inf) <= value <= schema.get("maximum", math.inf):
        problems.append(f"{path}: {value} is out of bounds")
    return problems
