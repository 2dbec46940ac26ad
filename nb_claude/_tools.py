"""Python functions the model may call: the registry, the request's tools, the calls.

A `Tool` wraps a function; its JSON schema and descriptions come from `_schema`
(type hints and docstring). `run_tool_call` validates a call's arguments, runs the
function and turns whatever it returned into `tool_result` content
(`_tool_results`). This module is pure: no IPython, no widgets.
"""

from __future__ import annotations

import functools
import inspect
import pathlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._schema import Invalid, SchemaError, schema_for, underlying, validate
from ._stream import ToolCall
from ._tool_results import TOOL_RESULT_BUDGET, result_content
from ._wire import tool_choice, tool_definition, tool_result_block

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


# --- tools --------------------------------------------------------------------------

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
        try:
            prose, self.input_schema, self._params = schema_for(fn, self.name)
        except SchemaError as exc:
            raise ToolError(str(exc)) from None
        self.description = prose if description is None else description

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def to_wire(self) -> dict[str, Any]:
        """The tool as the request's `tools` list carries it."""
        return tool_definition(self)

    def __repr__(self) -> str:
        return f"Tool({self.name!r}, params={[p.name for p in self._params]})"

    def bind(self, arguments: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """Positional and keyword arguments for `fn` from the model's JSON object.

        Raises ValueError with every problem, worded for the model to fix.
        """
        try:
            return validate(self._params, arguments)
        except Invalid as exc:
            names = ", ".join(p.name for p in self._params) or "none"
            raise Invalid(f"invalid arguments for {self.name}: {exc} (parameters: {names}). "
                          "Fix them and call the tool again.") from None


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


def tool_choice_wire(choice: str | Tool | None, tools: Sequence[Tool]
                     ) -> str | dict[str, Any] | None:
    """The request's `tool_choice` value, or None when nothing should be sent."""
    try:
        return tool_choice(choice, [t.name for t in tools])
    except ValueError as exc:
        raise ToolError(str(exc)) from None


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
        return tool_result_block(self)

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
                  result_budget: int = TOOL_RESULT_BUDGET) -> ToolResult:
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
    if not inspect.iscoroutinefunction(underlying(fn)):
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


