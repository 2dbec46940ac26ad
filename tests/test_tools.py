"""Tools from Python functions: schemas, docstrings, registry, validation and results."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import functools
import io
import json
import pathlib
import typing
from typing import (  # noqa: UP035
    Annotated,
    Any,
    Dict,
    List,
    Literal,
    NotRequired,
    Optional,
    Required,
    TypedDict,
    Union,
)

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nb_claude._tools as tools_module
from nb_claude._stream import ToolCall
from nb_claude._tools import (
    Tool,
    ToolError,
    ToolResult,
    as_tool,
    registered_tools,
    resolve_tools,
    result_content,
    run_tool_call,
    tool,
    tool_choice_wire,
    unregister,
)


@pytest.fixture(autouse=True)
def clean_registry():
    before = registered_tools()
    yield
    for name in registered_tools():
        unregister(name)
    for t in before.values():
        tools_module._REGISTRY[t.name] = t


def schema_of(hint: Any) -> dict[str, Any]:
    """The property schema of a one-parameter function annotated with `hint`."""

    def f(x):
        return x

    f.__annotations__ = {"x": hint}
    return Tool(f).input_schema["properties"]["x"]


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclasses.dataclass
class Point:
    x: float
    y: float = 0.0


class Crew(TypedDict, total=False):
    director: Required[str]
    writers: list[str]
    budget: NotRequired[float]


class Movie(TypedDict):
    """A film.

    Args:
        title: Its title.
    """

    title: str
    year: int


# --- schemas from hints ---------------------------------------------------------------

@pytest.mark.parametrize(("hint", "expected"), [
    (str, {"type": "string"}),
    (int, {"type": "integer"}),
    (float, {"type": "number"}),
    (bool, {"type": "boolean"}),
    (None, {"type": "null"}),
    (Any, {}),
    (list, {"type": "array"}),
    (list[int], {"type": "array", "items": {"type": "integer"}}),
    (List[str], {"type": "array", "items": {"type": "string"}}),  # noqa: UP006
    (set[str], {"type": "array", "uniqueItems": True, "items": {"type": "string"}}),
    (typing.Sequence[float], {"type": "array", "items": {"type": "number"}}),  # noqa: UP006
    (typing.Mapping[str, int], {"type": "object",  # noqa: UP006
                                "additionalProperties": {"type": "integer"}}),
    (tuple[int, ...], {"type": "array", "items": {"type": "integer"}}),
    (tuple[int, str], {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}],
                       "minItems": 2, "maxItems": 2}),
    (dict, {"type": "object"}),
    (dict[str, float], {"type": "object", "additionalProperties": {"type": "number"}}),
    (Dict[str, Any], {"type": "object"}),  # noqa: UP006
    (Literal["mean", "median"], {"type": "string", "enum": ["mean", "median"]}),
    (Literal[1, "a"], {"enum": [1, "a"]}),
    (Optional[int], {"type": ["integer", "null"]}),  # noqa: UP045
    (int | None, {"type": ["integer", "null"]}),
    (Union[int, str], {"anyOf": [{"type": "integer"}, {"type": "string"}]}),  # noqa: UP007
    (list[int] | None, {"anyOf": [{"type": "array", "items": {"type": "integer"}},
                                  {"type": "null"}]}),
    (Color, {"type": "string", "enum": ["red", "blue"]}),
    (Level, {"type": "integer", "enum": [1, 2]}),
    (Annotated[int, "How many rows."], {"type": "integer", "description": "How many rows."}),
    (Annotated[int, {"minimum": 0}], {"type": "integer", "minimum": 0}),
    (list[Annotated[str, "A name."]], {"type": "array",
                                       "items": {"type": "string", "description": "A name."}}),
    (dt.date, {"type": "string", "format": "date"}),
    (dt.datetime, {"type": "string", "format": "date-time"}),
    (pathlib.Path, {"type": "string"}),
    (Point, {"type": "object",
             "properties": {"x": {"type": "number"}, "y": {"type": "number", "default": 0.0}},
             "required": ["x"], "additionalProperties": False}),
    (Movie, {"type": "object",
             "properties": {"title": {"type": "string", "description": "Its title."},
                            "year": {"type": "integer"}},
             "required": ["title", "year"], "additionalProperties": False}),
    (Crew, {"type": "object",
            "properties": {"director": {"type": "string"},
                           "writers": {"type": "array", "items": {"type": "string"}},
                           "budget": {"type": "number"}},
            "required": ["director"], "additionalProperties": False}),
])
def test_schema_for_each_hint_kind(hint: Any, expected: dict[str, Any]) -> None:
    assert schema_of(hint) == expected


def test_whole_schema_defaults_and_required() -> None:
    def f(a: str, b: int = 3, c: Optional[str] = None, d: Color = Color.BLUE,  # noqa: UP045
          e: float | None = None, g=None, *args: int, **kwargs: str) -> None:
        """Do f."""

    assert Tool(f).to_wire() == {
        "name": "f",
        "description": "Do f.",
        "input_schema": {
            "type": "object",
            "properties": {
                "a": {"type": "string"},
                "b": {"type": "integer", "default": 3},
                "c": {"type": ["string", "null"], "default": None},
                "d": {"type": "string", "enum": ["red", "blue"], "default": "blue"},
                "e": {"type": ["number", "null"], "default": None},
                "g": {"default": None},
            },
            "required": ["a"],
            "additionalProperties": False,
        },
    }


def test_optional_without_default_is_required() -> None:
    def f(x: int | None) -> None: ...

    assert Tool(f).input_schema["required"] == ["x"]


def test_unannotated_parameter_accepts_anything() -> None:
    def f(x, y=2): ...

    assert Tool(f).input_schema["properties"] == {"x": {}, "y": {"default": 2}}


class Frame:
    """A type the model cannot send as JSON."""


def test_parameter_without_json_form() -> None:
    def required(df: Frame) -> None: ...

    def optional(col: str, df: Frame | None = None) -> None: ...

    with pytest.raises(ToolError, match="parameter 'df' of 'required' has type Frame"):
        Tool(required)
    made = Tool(optional)
    assert list(made.input_schema["properties"]) == ["col"]
    assert run_tool_call(ToolCall("t", "optional", '{"df": 1, "col": "a"}'),
                         {"optional": made}).is_error


def test_non_json_default_is_left_out_of_schema() -> None:
    def f(when: dt.date = dt.date(2024, 1, 2), rows: tuple[int, int] = (1, 2)) -> None: ...

    assert Tool(f).input_schema["properties"] == {
        "when": {"type": "string", "format": "date"},
        "rows": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "integer"}],
                 "minItems": 2, "maxItems": 2, "default": [1, 2]},
    }


def test_unresolvable_hint_is_a_tool_error() -> None:
    def f(x: NotDefinedYet) -> None: ...  # noqa: F821

    with pytest.raises(ToolError, match="define the types before the function"):
        Tool(f)


# --- descriptions from docstrings -------------------------------------------------------

def test_google_docstring() -> None:
    def column_stats(column: str, ddof: int = 1, *, sort: bool = False) -> dict:
        """Summary statistics for one column
        of the sales DataFrame.

        Use it before plotting.

        Args:
            column (str): Name of the column.
            ddof: Delta degrees of freedom,
                as in pandas.
            sort (bool, optional): Sort the output.

        Returns:
            column: not a parameter.
        """
        return {}

    made = Tool(column_stats)
    assert made.description == ("Summary statistics for one column of the sales DataFrame."
                                "\n\nUse it before plotting.")
    assert made.input_schema["properties"] == {
        "column": {"type": "string", "description": "Name of the column."},
        "ddof": {"type": "integer", "description": "Delta degrees of freedom, as in pandas.",
                 "default": 1},
        "sort": {"type": "boolean", "description": "Sort the output.", "default": False},
    }


def test_numpy_docstring() -> None:
    def scale(values: list[float], low: float, high: float, clip: bool = True) -> list[float]:
        """Scale values into a range.

        Parameters
        ----------
        values : list of float
            The numbers to scale.
        low, high : float
            The bounds of the
            target range.
        clip : bool, optional

        Returns
        -------
        list of float
            The scaled values.
        """
        return values

    made = Tool(scale)
    assert made.description == "Scale values into a range."
    props = made.input_schema["properties"]
    assert props["values"] == {"type": "array", "items": {"type": "number"},
                               "description": "The numbers to scale."}
    assert props["low"] == {"type": "number", "description": "The bounds of the target range."}
    assert props["high"] == props["low"]
    assert props["clip"] == {"type": "boolean", "default": True}


def test_rest_docstring() -> None:
    def fetch(url: str, retries: int = 2) -> str:
        """Fetch a page.

        :param url: The address,
            with scheme.
        :param int retries: How often to retry.
        :returns: the body
        """
        return url

    made = Tool(fetch)
    assert made.description == "Fetch a page."
    assert made.input_schema["properties"] == {
        "url": {"type": "string", "description": "The address, with scheme."},
        "retries": {"type": "integer", "description": "How often to retry.", "default": 2},
    }


def test_annotated_description_beats_docstring() -> None:
    def f(x: Annotated[int, "From the hint."]) -> None:
        """F.

        Args:
            x: From the docstring.
        """

    assert Tool(f).input_schema["properties"]["x"]["description"] == "From the hint."


def test_partial_keeps_the_function_docstring_and_hides_bound_parameters() -> None:
    def power(base: float, exp: int) -> float:
        """Raise base to a power.

        Args:
            base: The number.
            exp: The exponent.
        """
        return base**exp

    square = Tool(functools.partial(power, exp=2), name="square")
    assert square.description == "Raise base to a power."
    assert square.input_schema["required"] == ["base"]
    assert run_tool_call(ToolCall("t", "square", '{"base": 3}'), {"square": square}).content == "9.0"


def test_typeddict_argument_is_validated() -> None:
    def hire(crew: Crew) -> dict:
        return dict(crew)

    ok = run_tool_call(ToolCall("t", "hire", '{"crew": {"director": "Varda", "budget": "2"}}'),
                       table(hire))
    assert json.loads(ok.content) == {"director": "Varda", "budget": 2.0}
    bad = run_tool_call(ToolCall("t", "hire", '{"crew": {"writers": []}}'), table(hire))
    assert bad.is_error and "crew: missing key 'director'" in bad.content


def test_no_docstring_and_explicit_description() -> None:
    def f(x: int) -> None: ...

    assert Tool(f).description == ""
    assert Tool(f, description="Adds things.").description == "Adds things."


# --- decorator, registry, lookup --------------------------------------------------------

def test_decorator_bare_and_with_arguments() -> None:
    @tool
    def double(x: int) -> int:
        """Double x."""
        return 2 * x

    @tool(name="triple_it", description="Three times x.")
    def triple(x: int) -> int:
        return 3 * x

    assert isinstance(double, Tool) and double(4) == 8 and double.__name__ == "double"
    assert double.__doc__ == "Double x."
    assert triple(x=2) == 6
    assert triple.to_wire()["name"] == "triple_it"
    assert triple.description == "Three times x."
    assert registered_tools() == {"double": double, "triple_it": triple}
    assert repr(double) == "Tool('double', params=['x'])"


def test_registering_again_replaces_and_unregister_forgets() -> None:
    @tool
    def f(x: int) -> int:
        return 1

    first = f

    @tool
    def f(x: str) -> int:  # noqa: F811 - a re-run cell
        return 2

    assert registered_tools()["f"] is f is not first
    assert registered_tools()["f"].input_schema["properties"]["x"] == {"type": "string"}
    unregister("f")
    unregister("f")
    assert "f" not in registered_tools()


def test_bad_tool_names_and_non_callables() -> None:
    with pytest.raises(ToolError, match=r"tool name '<lambda>' is not valid"):
        tool(lambda: 1)
    with pytest.raises(ToolError, match="is not valid"):
        tool(name="has space")(lambda: 1)
    with pytest.raises(ToolError, match="is not a function"):
        as_tool(42)


def test_as_tool_wraps_without_registering() -> None:
    class Counter:
        """Count things."""

        def __call__(self, step: int = 1) -> int:
            return step

    def plain(a: str) -> str:
        return a

    made = as_tool(plain)
    assert made.name == "plain" and made("z") == "z"
    assert as_tool(made) is made
    assert as_tool(Counter()).input_schema["properties"] == {
        "step": {"type": "integer", "default": 1}}
    assert registered_tools() == {}


def test_resolve_tools() -> None:
    @tool
    def a(x: int) -> int:
        return x

    @tool
    def b(y: str) -> str:
        return y

    def c(z: float) -> float:
        return z

    assert resolve_tools(None) == []
    for name in ("a", "b"):
        unregister(name)
    with pytest.raises(ToolError, match="no tools are registered"):
        resolve_tools("all")
    tool(a)
    tool(b)
    a, b = registered_tools()["a"], registered_tools()["b"]
    # Without a namespace (the Python API), names and "all" use the registry.
    assert resolve_tools("all") == [a, b]
    assert resolve_tools("a, b") == [a, b]
    assert resolve_tools("b a") == [b, a]
    assert resolve_tools("a,a") == [a]
    assert [t.name for t in resolve_tools(["a", c, b])] == ["a", "c", "b"]
    with pytest.raises(ToolError) as info:
        resolve_tools("a,missing")
    assert str(info.value) == ("unknown tool 'missing': decorate it with @nb_claude.tool "
                               "or pass the function")
    # With one (the notebook's), a name means what it is bound to now.
    namespace = {"a": a, "c": c, "n": 5}
    found = resolve_tools(["a", c, b], namespace)
    assert [t.name for t in found] == ["a", "c", "b"]
    assert resolve_tools("c,a", namespace)[0].fn is c
    with pytest.raises(ToolError, match="unknown tool 'b': nothing is named b"):
        resolve_tools("a,b", namespace)
    with pytest.raises(ToolError, match="unknown tool 'n': n is not a function but 5"):
        resolve_tools("n", namespace)

    def other(x: int) -> int:
        return x

    with pytest.raises(ToolError, match="two tools are named 'a'"):
        resolve_tools([a, Tool(other, name="a")])


def test_tool_choice_wire() -> None:
    def f(x: int) -> int:
        return x

    tools = [Tool(f)]
    assert tool_choice_wire(None, tools) is None
    assert tool_choice_wire(None, []) is None
    assert tool_choice_wire("auto", tools) == "auto"
    assert tool_choice_wire("none", tools) == "none"
    assert tool_choice_wire("required", tools) == "required"
    assert tool_choice_wire("any", tools) == "required"
    assert tool_choice_wire("f", tools) == {"type": "function", "function": {"name": "f"}}
    assert tool_choice_wire(tools[0], tools) == {"type": "function", "function": {"name": "f"}}
    with pytest.raises(ToolError, match="tool_choice 'g' is not one of the tools"):
        tool_choice_wire("g", tools)
    with pytest.raises(ToolError, match="needs tools"):
        tool_choice_wire("auto", [])


# --- running calls ----------------------------------------------------------------------

def table(*fns: Any) -> dict[str, Tool]:
    return {t.name: t for t in map(as_tool, fns)}


def column_stats(column: str, ddof: int = 1) -> dict:
    """Summary statistics for a column."""
    if column != "price":
        raise KeyError(f"no column {column!r}")
    return {"column": column, "ddof": ddof, "mean": 2.5}


def test_happy_path() -> None:
    call = ToolCall("toolu_1", "column_stats", '{"column": "price"}')
    result = run_tool_call(call, table(column_stats))
    assert result == ToolResult(
        "toolu_1", "column_stats", '{"column": "price", "ddof": 1, "mean": 2.5}', False,
        '{"column": "price", "ddof": 1, "mean": 2.5}', '{"column": "price"}')


def test_safe_coercions() -> None:
    def f(n: int, x: float, flag: bool, label: str, rows: list[int], mode: Color,
          where: Point, when: dt.date) -> list:
        return [n, x, flag, label, rows, mode.name, dataclasses.asdict(where), when.isoformat()]

    args = {"n": "3", "x": "2.5", "flag": "true", "label": 7, "rows": "[1, \"2\"]",
            "mode": "RED", "where": {"x": 1}, "when": "2024-02-29"}
    result = run_tool_call(ToolCall("t", "f", json.dumps(args)), table(f))
    assert not result.is_error, result.content
    assert json.loads(result.content) == [3, 2.5, True, "7", [1, 2], "RED",
                                          {"x": 1.0, "y": 0.0}, "2024-02-29"]


@pytest.mark.parametrize(("arguments", "problem"), [
    ('{"n": "3.5"}', 'n: expected an integer, got "3.5"'),
    ('{"n": true}', "n: expected an integer, got true"),
    ('{"n": 1, "mode": "green"}', 'mode: expected one of "red", "blue", got "green"'),
    ('{"n": 1, "tags": ["a", true]}', "tags[1]: expected a string, got true"),
    ('{"n": 1, "where": {"y": 1}}', "where: missing key 'x'"),
    ('{"n": 1, "when": "yesterday"}', 'when: expected a string (date, ISO 8601), got "yesterday"'),
    ('{"n": 1, "extra": 0}', "unexpected argument 'extra'"),
    ("{}", "missing required argument 'n'"),
])
def test_invalid_arguments_are_errors_the_model_can_fix(arguments: str, problem: str) -> None:
    def f(n: int, mode: Color = Color.RED, tags: list[str] | None = None,
          where: Point | None = None, when: dt.date | None = None) -> int:
        raise AssertionError("must not run")

    result = run_tool_call(ToolCall("t", "f", arguments), table(f))
    assert result.is_error
    assert result.content.startswith("invalid arguments for f: ")
    assert problem in result.content
    assert result.content.endswith("(parameters: n, mode, tags, where, when). "
                                   "Fix them and call the tool again.")


def test_exception_in_tool() -> None:
    result = run_tool_call(ToolCall("t", "column_stats", '{"column": "cost"}'),
                           table(column_stats))
    assert result.is_error
    line = column_stats.__code__.co_firstlineno + 3
    assert result.content == f"KeyError: \"no column 'cost'\" (in column_stats, line {line})"
    assert "Traceback" not in result.content and "_tools.py" not in result.content


def test_exception_inside_a_library_points_at_user_code() -> None:
    def parse(text: str) -> Any:
        return json.loads(text)

    result = run_tool_call(ToolCall("t", "parse", '{"text": "{oops"}'), table(parse))
    line = parse.__code__.co_firstlineno + 1
    assert result.is_error
    assert result.content.startswith("JSONDecodeError: Expecting property name")
    assert result.content.endswith(f"(in parse, line {line})")


def test_keyboard_interrupt_propagates() -> None:
    def slow() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_tool_call(ToolCall("t", "slow", ""), table(slow))


def test_unknown_tool() -> None:
    def other() -> int:
        return 1

    result = run_tool_call(ToolCall("t", "nope", "{}"), table(column_stats, other))
    assert result.is_error
    assert result.content == "unknown tool 'nope'; available: column_stats, other"
    assert result.to_block() == {"type": "tool_result", "tool_use_id": "t",
                                 "content": result.content, "is_error": True}


@pytest.mark.parametrize("arguments", ['{"column": "pri', "[1, 2]", "null"])
def test_arguments_not_a_json_object(arguments: str) -> None:
    result = run_tool_call(ToolCall("t", "column_stats", arguments), table(column_stats))
    assert result.is_error
    assert result.content.startswith("the arguments for column_stats are not a JSON object")
    assert result.arguments == arguments


def test_positional_only_and_keyword_only_parameters() -> None:
    def f(a: int, /, b: int, *, c: int = 0) -> list[int]:
        return [a, b, c]

    result = run_tool_call(ToolCall("t", "f", '{"a": 1, "b": 2, "c": 3}'), table(f))
    assert result.content == "[1, 2, 3]"


def test_async_tool_runs_to_completion() -> None:
    import asyncio

    async def later(x: int) -> int:
        await asyncio.sleep(0.01)
        return x + 1

    assert run_tool_call(ToolCall("t", "later", '{"x": 1}'), table(later)).content == "2"


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(max_size=8),
                       st.recursive(st.none() | st.booleans() | st.integers() | st.floats()
                                    | st.text(max_size=10),
                                    lambda inner: st.lists(inner, max_size=3)
                                    | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                                    max_leaves=8),
                       max_size=4))
def test_any_json_object_gives_a_result_never_an_exception(arguments: dict[str, Any]) -> None:
    def f(a: int, b: list[float] | None = None, c: Color = Color.RED,
          d: dict[str, int] | None = None, e: Point | None = None) -> str:
        return "ran"

    result = run_tool_call(ToolCall("t", "f", json.dumps(arguments)), table(f))
    assert isinstance(result, ToolResult)
    assert result.is_error == (result.content != "ran")


# --- result content ---------------------------------------------------------------------

def test_plain_values() -> None:
    assert result_content("hello") == "hello"
    assert result_content(None) == "null"
    assert result_content(3.5) == "3.5"
    assert result_content(True) == "true"
    assert result_content({"a": [1, (2, 3)], "when": dt.date(2024, 1, 2)}) == (
        '{"a": [1, [2, 3]], "when": "2024-01-02"}')
    assert result_content(Point(1, 2)) == '{"x": 1, "y": 2}'
    assert result_content({1, 2}) == "[1, 2]"


def test_huge_string_is_truncated_with_a_note() -> None:
    text = "x" * 50_000
    out = result_content(text, budget=1_000)
    assert len(out) <= 1_000
    assert out.startswith("x" * 900)
    assert "truncated: 50000 characters in all" in out
    big = {"rows": list(range(20_000))}
    assert "truncated" in result_content(big, budget=500)

    def long() -> str:
        return "word " * 10_000

    result = run_tool_call(ToolCall("t", "long", ""), table(long), result_budget=300)
    assert len(result.content) <= 300 and len(result.summary) <= 200


def test_bytes_and_other_objects_are_described_not_dumped() -> None:
    png = result_content(b"\x89PNG\r\n\x1a\n" + bytes(100))
    assert png.startswith("<108 bytes") and "PNG" in png
    assert result_content(bytes(range(256)) * 100).startswith("<25,600 bytes")

    class Thing:
        def __repr__(self) -> str:
            return "Thing(" + "z" * 5_000 + ")"

    out = result_content(Thing(), budget=300)
    assert out.startswith("Thing(zzz") and len(out) <= 300


def test_numpy_values_become_json() -> None:
    np = pytest.importorskip("numpy")
    assert result_content({"mean": np.float64(2.5), "n": np.int64(3)}) == (
        '{"mean": 2.5, "n": 3}')
    assert result_content(np.float32(0.5)) == "0.5"
    summary = result_content(np.arange(100_000), budget=1_000)
    assert "100,000" in summary and "99999" in summary and len(summary) <= 1_000


def test_dataframe_result_is_summarised() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"region": ["north", "south"] * 5_000,
                          "price": [float(i) for i in range(10_000)]})
    out = result_content(frame, budget=2_000)
    assert isinstance(out, str) and len(out) <= 2_000
    assert "region" in out and "price" in out
    assert "10000" in out.replace(",", "").replace("_", "")

    def sales() -> Any:
        return frame

    result = run_tool_call(ToolCall("t", "sales", "{}"), table(sales), result_budget=3_000)
    assert not result.is_error and "price" in result.content


def _png_block(blocks: Any) -> dict[str, Any]:
    assert isinstance(blocks, list)
    images = [b for b in blocks if b["type"] == "image"]
    assert len(images) == 1
    source = images[0]["source"]
    assert source["type"] == "base64" and source["media_type"] in ("image/png", "image/jpeg")
    data = base64.b64decode(source["data"])
    assert data[:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xe1",
                        b"\xff\xd8\xff\xdb")
    assert any(b["type"] == "text" and b["text"] for b in blocks)
    return images[0]


def test_pil_image_result_becomes_an_image_block() -> None:
    image_module = pytest.importorskip("PIL.Image")

    def picture(size: int) -> Any:
        return image_module.new("RGB", (size, size), (200, 30, 30))

    result = run_tool_call(ToolCall("t", "picture", '{"size": 40}'), table(picture))
    assert not result.is_error
    block = _png_block(result.content)
    decoded = image_module.open(io.BytesIO(base64.b64decode(block["source"]["data"])))
    assert decoded.size == (40, 40)
    assert result.to_block()["content"] is result.content
    assert "[image]" in result.summary


def test_matplotlib_figure_and_mixed_list() -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([1, 2, 3])
    try:
        _png_block(result_content(fig))
        blocks = result_content(["the plot:", ax])
        assert blocks[0] == {"type": "text", "text": "the plot:"}
        _png_block(blocks)
    finally:
        plt.close(fig)


# --- ToolResult ---------------------------------------------------------------------------

def test_tool_result_round_trips() -> None:
    blocks = [{"type": "text", "text": "chart"},
              {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                           "data": "iVBORw0KGgo="}}]
    for result in (ToolResult("toolu_9", "plot", blocks, False, "chart [image]", '{"k": 1}'),
                   ToolResult("toolu_8", "f", "ValueError: bad", True, "ValueError: bad", "{}")):
        assert ToolResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
        assert result.to_block() == {"type": "tool_result", "tool_use_id": result.tool_use_id,
                                     "content": result.content, "is_error": result.is_error}
    assert ToolResult.from_dict({"tool_use_id": "x", "name": "f", "content": "ok"}) == \
        ToolResult("x", "f", "ok")


def test_module_imports_no_heavy_libraries() -> None:
    import subprocess
    import sys

    code = ("import sys, nb_claude._tools; "
            "print(sorted(m for m in ('pandas', 'matplotlib', 'PIL', 'numpy', 'IPython', "
            "'ipywidgets', 'nbformat') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


# --- _schema on bare types (what typed answers reuse) -----------------------------------

class _Point(TypedDict):
    """A point.

    Args:
        x: Across.
        y: Up.
    """

    x: int
    y: int


def test_json_schema_and_convert_work_on_a_bare_type() -> None:
    from nb_claude._schema import Invalid, Unsupported, convert, json_schema

    assert json_schema(_Point) == {
        "type": "object", "additionalProperties": False, "required": ["x", "y"],
        "properties": {"x": {"type": "integer", "description": "Across."},
                       "y": {"type": "integer", "description": "Up."}}}
    assert json_schema(list[_Point])["items"]["required"] == ["x", "y"]
    assert convert([{"x": 1, "y": "2"}], list[_Point]) == [{"x": 1, "y": 2}]
    with pytest.raises(Invalid, match=r"answer\[0\]: missing key 'y'") as info:
        convert([{"x": 1}], list[_Point], path="answer")
    assert isinstance(info.value, ValueError)
    with pytest.raises(Invalid, match="expected an integer"):
        convert("2", int, coerce=False)
    with pytest.raises(Unsupported) as bad:
        json_schema(io.BytesIO)
    assert bad.value.what == "BytesIO" and isinstance(bad.value, ValueError)


def test_schema_for_and_validate_are_what_tools_use() -> None:
    from nb_claude._schema import Invalid, SchemaError, schema_for, validate

    def f(a: int, /, b: str = "x", *rest: int, **extra: int) -> None:
        """Do f.

        Args:
            a: The first.
        """

    description, schema, params = schema_for(f)
    assert description == "Do f." and schema == Tool(f).input_schema
    assert [p.name for p in params] == ["a", "b"]
    assert validate(params, {"a": "3", "b": "y"}) == ([3], {"b": "y"})
    with pytest.raises(Invalid, match="unexpected argument 'c'; missing required argument 'a'"):
        validate(params, {"c": 1})

    def g(df: io.BytesIO) -> None: ...

    with pytest.raises(SchemaError, match="parameter 'df' of 'g' has type BytesIO"):
        schema_for(g)


def test_schema_module_imports_nothing_from_the_package() -> None:
    import ast

    import nb_claude._schema as schema_module

    tree = ast.parse(pathlib.Path(schema_module.__file__).read_text())
    relative = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level]
    absolute = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert relative == [] and not any(a.startswith("nb_claude") for a in absolute)
