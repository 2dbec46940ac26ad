"""Tools as the notebook defines them now, and tools stopped while they run."""

from __future__ import annotations

import _thread
import asyncio
import threading
import time

import pytest

from nb_claude import _tools
from nb_claude._stream import ToolCall
from nb_claude._tools import Tool, ToolInterrupted, run_tool_call, tool


@pytest.fixture(autouse=True)
def clean_registry():
    before = _tools.registered_tools()
    yield
    for name in _tools.registered_tools():
        _tools.unregister(name)
    _tools._REGISTRY.update(before)


@pytest.fixture
def fresh(ip):
    """The shared test shell without the tools earlier tests left in its namespace."""
    for name in [n for n, v in ip.user_ns.items() if isinstance(v, Tool)]:
        del ip.user_ns[name]
    return ip


def offered(server, index: int = 0) -> list[str]:
    return [t["name"] for t in server.requests[index].body.get("tools", [])]


def usage_error(cell) -> str:
    assert type(cell.error).__name__ == "UsageError", repr(cell.error)
    assert "Traceback" not in cell.stdout + cell.stderr
    return str(cell.error)


# --- --tools resolves against the namespace as it is now ---------------------------------------


def test_a_deleted_tool_is_neither_offered_nor_run(run, server, fresh):
    assert run("import nb_claude\n@nb_claude.tool\ndef gone(x: int) -> int:\n"
               "    '''Gone.'''\n    return x\n"
               "@nb_claude.tool\ndef kept(x: int) -> int:\n    '''Kept.'''\n    return x\n"
               ).error is None
    assert run("del gone").error is None
    server.reply("ok")
    assert run("%%claude --tools all\nGo").error is None
    assert offered(server) == ["kept"]
    server.reset()
    cell = run("%%claude --tools gone\nGo")
    assert "unknown tool 'gone': nothing is named gone in the notebook" in usage_error(cell)
    assert server.requests == []


def test_a_redefined_plain_function_replaces_the_decorated_one(run, server):
    assert run("import nb_claude\ncalls = []\n@nb_claude.tool\ndef lookup(x: int) -> str:\n"
               "    '''Old.'''\n    calls.append('old')\n    return 'old'\n").error is None
    assert run("def lookup(key: str) -> str:\n    '''New.'''\n    calls.append('new')\n"
               "    return 'new ' + key\n").error is None
    server.reply("Calling.", tool_calls=[{"name": "lookup", "arguments": {"key": "k"},
                                          "id": "call_1"}])
    server.reply("Done.")
    assert run("%%claude --tools lookup\nGo").error is None
    first = server.requests[0].body["tools"][0]
    assert first["description"] == "New." and list(first["input_schema"]["properties"]) == ["key"]
    assert run("print(calls)").stdout == "['new']\n"
    result = server.requests[1].body["messages"][2]["content"][0]
    assert result["content"] == "new k" and result["is_error"] is False


def test_all_offers_tools_by_their_current_names(run, server, fresh):
    assert run("import nb_claude\n@nb_claude.tool\ndef old_name(x: int) -> int:\n"
               "    '''Renamed.'''\n    return x\nnew_name = old_name\ndel old_name\n"
               "@nb_claude.tool(name='triple_it')\ndef triple(x: int) -> int:\n"
               "    '''Three times.'''\n    return 3 * x\n").error is None
    server.reply("Calling.", tool_calls=[{"name": "new_name", "arguments": {"x": 2},
                                          "id": "call_1"}])
    server.reply("Done.")
    assert run("%%claude --tools all\nGo").error is None
    assert sorted(offered(server)) == ["new_name", "triple_it"]
    result = server.requests[1].body["messages"][2]["content"][0]
    assert result["content"] == "2" and result["is_error"] is False


def test_all_with_no_tools_in_the_notebook_says_so(run, server, fresh):
    tool(lambda_free)  # registered, but not in the notebook's namespace
    cell = run("%%claude --tools all\nGo")
    assert "no tools in the notebook: decorate functions with @nb_claude.tool" in usage_error(cell)
    assert server.requests == []


def lambda_free(x: int) -> int:
    """Registered from a module, not defined in the notebook."""
    return x


def test_the_python_api_without_a_namespace_still_uses_the_registry():
    made = tool(lambda_free)
    assert _tools.resolve_tools("all") == [made]
    assert _tools.resolve_tools("lambda_free") == [made]


# --- interrupts while a tool runs ---------------------------------------------------------------


def _interrupt_soon(delay: float = 0.2) -> threading.Timer:
    timer = threading.Timer(delay, _thread.interrupt_main)
    timer.start()
    return timer


def test_an_interrupted_sync_tool_says_it_was_interrupted_while_running():
    state: list[str] = []

    def slow(n: int) -> int:
        """Slow."""
        state.append("started")
        _interrupt_soon()
        for _ in range(500):  # 5 s at most: the interrupt lands in the first 0.2 s
            time.sleep(0.01)
        state.append("finished")
        return n

    call = ToolCall(id="call_1", name="slow", arguments='{"n": 1}')
    with pytest.raises(ToolInterrupted) as info:
        run_tool_call(call, {"slow": Tool(slow)})
    assert state == ["started"]
    result = info.value.result
    assert isinstance(info.value, KeyboardInterrupt)
    assert (result.tool_use_id, result.name, result.is_error, result.summary) == (
        "call_1", "slow", True, "interrupted")
    assert "interrupted while running" in result.content
    assert result.arguments == '{"n": 1}'


def test_an_interrupted_async_tool_is_cancelled_and_never_completes():
    state: list[str] = []

    async def fetch(n: int) -> int:
        """Fetch."""
        state.append("started")
        _interrupt_soon()
        try:
            await asyncio.sleep(3)
            state.append("completed")
        except asyncio.CancelledError:
            state.append("cancelled")
            raise
        finally:
            state.append("finally")
        return n

    call = ToolCall(id="call_2", name="fetch", arguments='{"n": 1}')
    began = time.monotonic()
    with pytest.raises(ToolInterrupted) as info:
        run_tool_call(call, {"fetch": Tool(fetch)})
    assert time.monotonic() - began < 2
    assert state == ["started", "cancelled", "finally"]  # stopped before the call returned
    time.sleep(0.2)
    assert state == ["started", "cancelled", "finally"]
    assert info.value.result.summary == "interrupted" and info.value.result.is_error


def test_an_async_tool_that_finishes_still_returns_its_value():
    async def quick(n: int) -> int:
        """Quick."""
        await asyncio.sleep(0.01)
        return n * 2

    call = ToolCall(id="call_3", name="quick", arguments='{"n": 21}')
    result = run_tool_call(call, {"quick": Tool(quick)})
    assert result.content == "42" and not result.is_error


def test_an_async_tool_that_cancels_itself_is_an_error_result_not_a_crash():
    async def gives_up(n: int) -> int:
        """Gives up."""
        raise asyncio.CancelledError

    call = ToolCall(id="call_4", name="gives_up", arguments='{"n": 1}')
    result = run_tool_call(call, {"gives_up": Tool(gives_up)})
    assert result.is_error
    assert result.content == "RuntimeError: the tool's task was cancelled before it returned"


def test_an_interrupted_async_tool_in_a_cell_leaves_an_interrupted_turn(run, server):
    assert run("import asyncio, threading, _thread, nb_claude\nstate = []\n"
               "@nb_claude.tool\nasync def wait(n: int) -> int:\n    '''Wait.'''\n"
               "    state.append('started')\n"
               "    threading.Timer(0.2, _thread.interrupt_main).start()\n"
               "    try:\n        await asyncio.sleep(3)\n        state.append('completed')\n"
               "    finally:\n        state.append('finally')\n    return n\n").error is None
    server.reply("Waiting.", tool_calls=[{"name": "wait", "arguments": {"n": 1}, "id": "call_w"}])
    began = time.monotonic()
    cell = run("%%claude --tools wait\nGo")
    assert time.monotonic() - began < 2.5
    assert "interrupted" in cell.markdown
    assert run("print(state)").stdout == "['started', 'finally']\n"
