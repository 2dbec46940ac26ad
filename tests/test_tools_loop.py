"""Tools, tool_choice, thinking and stop reasons through %%claude, asserting on every request."""

from __future__ import annotations

import pytest

import nb_claude
from nb_claude import _tools

TOOL_CELL = '''
import nb_claude, pandas as pd
sales = pd.DataFrame({"region": ["n", "s", "n", "e"], "revenue": [1.0, 2.0, 10.0, 3.0]})

@nb_claude.tool
def column_stats(column: str) -> dict:
    """Summary statistics for one column of the sales DataFrame.

    Args:
        column: Name of the column.
    """
    return sales[column].describe().round(3).to_dict()

@nb_claude.tool
def broken(x: int) -> int:
    """Always fails."""
    raise ValueError(f"cannot handle {x}")
'''


@pytest.fixture
def tools_ready(run):
    assert run(TOOL_CELL).error is None
    yield
    for name in ("column_stats", "broken"):
        _tools.unregister(name)


def test_tool_loop_runs_the_function_and_sends_results_back(run, server, tools_ready):
    server.reply("Let me check.", tool_calls=[{"name": "column_stats",
                                                "arguments": {"column": "revenue"},
                                                "id": "call_a1"}])
    server.reply("Revenue is right-skewed: the mean exceeds the median.")
    cell = run("%%claude --tools column_stats\nWhich column is skewed?")
    assert cell.error is None
    first, second = (r.body for r in server.requests)
    wire_tool = {"name": "column_stats",
                 "description": "Summary statistics for one column of the sales DataFrame.",
                 "input_schema": {"type": "object",
                                  "properties": {"column": {"type": "string",
                                                            "description": "Name of the column."}},
                                  "required": ["column"], "additionalProperties": False}}
    assert first["tools"] == [wire_tool] and second["tools"] == [wire_tool]
    assert second["messages"][0] == {"role": "user", "content": "Which column is skewed?"}
    assistant = second["messages"][1]
    assert assistant["role"] == "assistant"
    assert assistant["content"] == [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "call_a1", "name": "column_stats",
         "input": {"column": "revenue"}}]
    result = second["messages"][2]["content"][0]
    assert result["type"] == "tool_result" and result["tool_use_id"] == "call_a1"
    assert result["is_error"] is False and '"mean": 4.0' in result["content"]
    md = cell.markdown
    assert 'Tool <code>column_stats(column="revenue")</code> →' in md and "Revenue is right-skewed" in md
    assert "2 steps" in md
    # The next cell carries the whole loop in its context.
    server.reply("ok")
    run("%%claude\nThanks")
    messages = server.requests[-1].body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]


def test_errors_in_tools_and_unknown_tools_go_back_as_error_results(run, server, tools_ready):
    server.reply(tool_calls=[{"name": "broken", "arguments": {"x": 3}, "id": "call_b"},
                             {"name": "nosuch", "arguments": {}, "id": "call_c"}])
    server.reply("Both failed.")
    cell = run("%%claude --tools broken\nTry")
    assert cell.error is None
    results = server.requests[1].body["messages"][2]["content"]
    assert [r["tool_use_id"] for r in results] == ["call_b", "call_c"]
    assert all(r["is_error"] for r in results)
    assert "ValueError: cannot handle 3" in results[0]["content"]
    assert "unknown tool 'nosuch'" in results[1]["content"]
    assert "failed: ValueError: cannot handle 3" in cell.markdown


def test_max_steps_stops_the_loop_and_says_so(run, server, tools_ready):
    for n in range(2):
        server.reply(tool_calls=[{"name": "column_stats", "arguments": {"column": "revenue"},
                                  "id": f"call_{n}"}])
    cell = run("%%claude --tools all --max-steps 2\nLoop")
    assert len(server.requests) == 2
    assert "stopped after 2 tool steps" in cell.markdown and "not run" in cell.markdown
    server.reply("fine")
    run("%%claude --tools all\nnext")  # with tools, so the history keeps its tool blocks
    messages = server.requests[-1].body["messages"]
    # the unanswered calls of the last step are never sent back
    sent_ids = [b["id"] for m in messages if isinstance(m["content"], list)
                for b in m["content"] if b.get("type") == "tool_use"]
    answered = [b["tool_use_id"] for m in messages if isinstance(m["content"], list)
                for b in m["content"] if b.get("type") == "tool_result"]
    assert sent_ids == answered == ["call_0"]


def test_tool_choice_forms(run, server, tools_ready):
    for choice, wire in [("auto", "auto"), ("none", "none"), ("required", "required"),
                         ("column_stats", {"type": "function",
                                           "function": {"name": "column_stats"}})]:
        server.reply("ok")
        assert run(f"%%claude --new --tools column_stats --tool-choice {choice}\nGo").error is None
        assert server.requests[-1].body["tool_choice"] == wire
    cell = run("%%claude --tools column_stats --tool-choice other\nGo")
    assert type(cell.error).__name__ == "UsageError"


def test_interrupt_inside_a_tool_leaves_a_consistent_history(run, server, tools_ready):
    run("@nb_claude.tool\ndef slow(n: int) -> int:\n    '''Interrupted.'''\n"
        "    raise KeyboardInterrupt\n")
    server.reply("Calling.", tool_calls=[{"name": "slow", "arguments": {"n": 1}, "id": "call_s"}])
    cell = run("%%claude --tools slow\nGo")
    assert "interrupted" in cell.markdown
    turn = nb_claude.get_session().history[-1]
    assert turn.interrupted
    server.reply("after")
    run("%%claude --tools slow\nAfter")  # with tools, so the history keeps its tool blocks
    messages = server.requests[-1].body["messages"]
    # The interrupted call is answered truthfully, so no tool_use is left unanswered.
    assert messages[1]["content"][1]["id"] == "call_s"
    result, prompt = messages[2]["content"]
    assert result["tool_use_id"] == "call_s" and result["is_error"] is True
    assert "interrupted while running" in result["content"]
    assert prompt == {"type": "text", "text": "After"}
    _tools.unregister("slow")


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning", "reasoning_details"])
def test_thinking_is_shown_collapsed_and_not_resent_without_signature(run, server, field):
    server.reply("The answer.", thinking="First I consider the data.", thinking_field=field)
    cell = run("%%claude --thinking 2048\nThink")
    md = cell.markdown
    assert "<details><summary>Thinking</summary>" in md and "First I consider the data." in md
    assert md.index("Thinking") < md.index("The answer.")
    turn = nb_claude.get_session().history[-1]
    assert turn.reply.thinking == "First I consider the data."
    server.reply("ok")
    run("%%claude\nMore")
    sent = server.requests[-1].body["messages"][1]
    if turn.reply.thinking_signature:  # reasoning_details carry one: thinking goes back signed
        assert sent["content"] == [{"type": "thinking", "thinking": "First I consider the data.",
                                    "signature": turn.reply.thinking_signature},
                                   {"type": "text", "text": "The answer."}]
    else:
        assert sent == {"role": "assistant", "content": "The answer."}
    assert field != "reasoning_details" or turn.reply.thinking_signature


@pytest.mark.parametrize("finish, note", [("max_tokens", "cut at max_tokens"),
                                          ("length", "cut at max_tokens"),
                                          ("stop_sequence", "stopped at a stop sequence")])
def test_cut_replies_say_so_in_the_footer(run, server, finish, note):
    server.reply("Partial", finish_reason=finish)
    cell = run("%%claude --stop END\nGo")
    assert note in cell.markdown.rsplit("<sub>", 1)[1]


def test_usage_magic_reports_tokens_and_cost(run, server):
    server.reply("a", usage=(100, 10), usd_spent=0.01)
    server.reply("b", usage=(200, 20), usd_spent=None)
    run("%%claude\none")
    run("%%claude\ntwo")
    cell = run("%claude_usage")
    md = cell.markdown
    assert "| `default` | 2 | 300 | 30 |" in md
    # 0.01 reported + (200 * 5 + 20 * 25) / 1e6 estimated
    assert "$0.0115" in md and "est., offline" in md


def test_confirm_asks_before_each_call_and_a_no_goes_back_as_an_error(run, server, tools_ready,
                                                                    monkeypatch):
    answers = iter(["y", "n"])
    asked = []
    monkeypatch.setattr("builtins.input", lambda prompt="": asked.append(prompt) or next(answers))
    server.reply(tool_calls=[{"name": "column_stats", "arguments": {"column": "revenue"},
                              "id": "call_y"},
                             {"name": "column_stats", "arguments": {"column": "region"},
                              "id": "call_n"}])
    server.reply("Done.")
    cell = run("%%claude --tools column_stats --confirm\nCheck both")
    assert cell.error is None and len(asked) == 2
    assert 'column_stats({"column": "revenue"})' in asked[0]
    yes, no = server.requests[1].body["messages"][2]["content"]
    assert yes["is_error"] is False and no["is_error"] is True
    assert "declined" in no["content"]
