"""%%claude driven in a real IPython shell against the stand-in server."""

from __future__ import annotations

import json
import re

import pytest
from conftest import SENTINEL_KEY

import nb_claude
from nb_claude import _config


def last_body(server):
    return server.requests[-1].body


def no_key_anywhere(cell) -> None:
    blob = json.dumps([o.data for o in cell.outputs]) + cell.stdout + cell.stderr
    assert SENTINEL_KEY not in blob


def test_reply_streams_and_settles_as_markdown_with_footer(run, server):
    server.reply("A **left join** keeps every row of the left frame.", usage=(31, 12),
                 usd_spent=0.0042)
    cell = run("%%claude\nExplain the difference between a left join and an inner join.")
    assert cell.error is None
    md = cell.markdown
    assert md.startswith("A **left join** keeps every row of the left frame.")
    footer = md.rsplit("\n\n", 1)[-1]
    # The stand-in marks its replies, so their cost shows as not spent.
    assert re.fullmatch(r"<sub>claude-opus-4-8 · 31 in / 12 out · \d+\.\d s · "
                        r"\$0\.0042 est\., offline · live</sub>", footer), footer
    assert "waiting" in cell.outputs[0].data["text/markdown"]  # the first state is the mark
    request = server.requests[-1]
    assert request.headers["authorization"] == f"Bearer {SENTINEL_KEY}"
    body = request.body
    assert body["model"] == "anthropic/claude-opus-4-8"
    assert body["max_tokens"] == 8192 and body["stream"] is True
    assert body["messages"] == [{"role": "user", "content":
                                 "Explain the difference between a left join and an inner join."}]
    meta = cell.metadata["nb_claude"]
    assert meta["finish_reason"] == "end_turn" and meta["replayed"] is False
    assert meta["state"] == "live" and "changed" not in meta
    assert meta["usage"]["input_tokens"] == 31 and len(meta["request_sha256"]) == 64
    no_key_anywhere(cell)


def test_next_cell_continues_the_conversation(run, server):
    server.reply("First answer.").reply("Second answer.")
    run("%%claude\nQuestion one")
    cell = run("%%claude\nQuestion two")
    assert cell.markdown.startswith("Second answer.")
    assert last_body(server)["messages"] == [
        {"role": "user", "content": "Question one"},
        {"role": "assistant", "content": "First answer."},
        {"role": "user", "content": "Question two"},
    ]
    session = nb_claude.get_session()
    assert [t.prompt for t in session.history] == ["Question one", "Question two"]
    assert session.messages[-1] == {"role": "assistant", "content": "Second answer."}


def test_updates_are_throttled_and_no_stream_gives_the_same_output(run, server):
    words = [f"w{i} " for i in range(80)]
    server.reply(chunks=words, delay=0.01, usage=(5, 80), split=False)
    streamed = run("%%claude\nCount")
    # ~0.8 s of streaming at <= 10 updates a second, plus the first and final states
    assert len(streamed.outputs) <= 0.8 * 10 + 4, len(streamed.outputs)
    server.reply(chunks=words, usage=(5, 80))
    whole = run("%%claude --no-stream --new\nCount")
    assert last_body(server)["stream"] is False
    strip = lambda md: re.sub(r" · \d+\.\d s", "", md)  # noqa: E731
    assert strip(whole.markdown) == strip(streamed.markdown)
    assert whole.metadata["nb_claude"]["usage"] == streamed.metadata["nb_claude"]["usage"]


def test_request_options_reach_the_body(run, server, ip):
    server.reply("ok")
    cell = run("%%claude -m claude-opus-4-8 -s 'Be terse.' --max-tokens 3000 --stop END "
               "--stop '###' --thinking 2048 --out answer\nHi")
    assert cell.error is None
    body = last_body(server)
    assert body["model"] == "claude-opus-4-8" and body["system"] == "Be terse."
    assert body["max_tokens"] == 3000 and body["stop_sequences"] == ["END", "###"]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert ip.user_ns["answer"] == "ok"
    server.reply("ok")
    run("%%claude --thinking\nAgain")
    assert last_body(server)["thinking"] == {"type": "adaptive"}


def test_config_traitlets_change_the_defaults(run, server):
    run("%config ClaudeMagics.model = 'claude-opus-4-8'")
    run("%config ClaudeMagics.max_tokens = 1234")
    run("%config ClaudeMagics.system = 'You are a data scientist.'")
    server.reply("ok")
    run("%%claude\nHi")
    body = last_body(server)
    assert (body["model"], body["max_tokens"], body["system"]) == (
        "claude-opus-4-8", 1234, "You are a data scientist.")
    cell = run("%config ClaudeMagics")
    assert "max_tokens" in cell.stdout and SENTINEL_KEY not in cell.stdout


def test_new_and_named_sessions(run, server):
    server.reply("a").reply("b").reply("c")
    run("%%claude\nOne")
    run("%%claude --session other\nTwo")
    assert last_body(server)["messages"] == [{"role": "user", "content": "Two"}]
    run("%%claude --new\nThree")
    assert last_body(server)["messages"] == [{"role": "user", "content": "Three"}]
    assert len(nb_claude.get_session().history) == 1
    assert len(nb_claude.get_session("other").history) == 1


def test_line_magic_takes_free_text_with_quotes(run, server):
    server.reply("fine")
    cell = run("%claude --max-tokens 100 what's the mean of [1, 2]? don't round")
    assert cell.error is None
    body = last_body(server)
    assert body["max_tokens"] == 100
    assert body["messages"][-1]["content"] == "what's the mean of [1, 2]? don't round"


def test_dry_run_shows_the_body_and_sends_nothing(run, server):
    cell = run("%%claude --dry-run -s sys --stop X\nWhat would you send?")
    assert cell.error is None and server.requests == []
    md = cell.markdown
    assert "Dry run: nothing was sent" in md
    shown = json.loads(md.split("```json\n", 1)[1].rsplit("\n```", 1)[0])
    assert shown == {"model": "anthropic/claude-opus-4-8", "max_tokens": 8192,
                     "messages": [{"role": "user", "content": "What would you send?"}],
                     "system": "sys", "stop_sequences": ["X"], "stream": True}
    assert nb_claude.get_session().history == []
    no_key_anywhere(cell)


@pytest.mark.parametrize("source, message", [
    ("%%claude --bogus\nhi", "unrecognized arguments: --bogus"),
    ("%%claude --max-tokens 0\nhi", "--max-tokens must be between 1 and 128,000"),
    ("%%claude --thinking 10\nhi", "--thinking budget must be at least 1024"),
    ("%%claude --thinking 9000 --max-tokens 8000\nhi", "below --max-tokens (8000)"),
    ("%%claude -m gpt-4o\nhi", "unknown model 'gpt-4o'"),
    ("%%claude\n   \n", "the prompt is empty"),
    ("%%claude --tools nosuch\nhi", "unknown tool 'nosuch'"),
    ("%%claude --replay sometimes\nhi", "sometimes"),
    ("%%claude -f html\nhi", "invalid choice: 'html'"),
    ("%%claude stray words\nhi", "put the prompt in the cell body"),
])
def test_bad_input_is_a_usage_error_and_sends_nothing(run, server, source, message):
    server.reply("never")
    cell = run(source)
    assert type(cell.error).__name__ == "UsageError", cell.error
    assert message in str(cell.error)
    assert "Traceback" not in cell.stdout + cell.stderr
    assert server.requests == [] and nb_claude.get_session().history == []


def test_help_is_printed_by_the_question_mark(run, ip):
    from IPython.utils.capture import capture_output

    with capture_output() as captured:
        ip.run_line_magic("pinfo", "%%claude")
    text = captured.stdout + "".join(str(o.data) for o in captured.outputs)
    assert "--max-tokens" in text and "--attach" in text and "--dry-run" in text


def test_missing_key_says_how_to_set_one_and_sends_nothing(run, server, monkeypatch):
    monkeypatch.delenv("AIMLAPI_KEY")
    server.reply("never")
    cell = run("%%claude\nhello")
    assert type(cell.error).__name__ == "UsageError"
    assert "%claude_login" in str(cell.error) and "AIMLAPI_KEY" in str(cell.error)
    assert server.requests == [] and nb_claude.get_session().history == []
    assert "Traceback" not in cell.stdout


def test_login_keeps_the_key_in_memory(run, server, monkeypatch):
    monkeypatch.delenv("AIMLAPI_KEY")
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "sk-typed-in-1234")
    cell = run("%claude_login")
    assert "sk-typed-in-1234" not in json.dumps([o.data for o in cell.outputs]) + cell.stdout
    server.reply("ok")
    run("%%claude\nhello")
    assert server.requests[-1].headers["authorization"] == "Bearer sk-typed-in-1234"


@pytest.mark.parametrize("status, envelope, upstream, expected", [
    (401, "service", None, "API key was not accepted"),
    (403, "service", None, "out of credits"),
    (404, "openai", None, "not found"),
    (413, "service", None, "too large"),
    (500, "service", 400, "the service rejected the request (HTTP 500, upstream 400)"),
])
def test_api_errors_are_one_short_line_and_leave_history_alone(run, server, status, envelope,
                                                              upstream, expected):
    server.reply("first")
    run("%%claude\nfirst")
    before = nb_claude.get_session().messages
    server.fault(status, "the upstream says no", envelope=envelope, upstream_status=upstream)
    cell = run("%%claude\nsecond")
    assert expected in str(cell.error), str(cell.error)
    assert "the upstream says no" in str(cell.error)
    assert "Traceback" not in cell.stdout and SENTINEL_KEY not in cell.stdout
    assert nb_claude.get_session().messages == before
    server.reply("third")
    assert run("%%claude\nthird").error is None


def test_retry_after_is_honoured_then_success(run, server):
    import time

    server.fault(429, "slow down", headers={"retry-after": "0.3"}).reply("made it")
    started = time.monotonic()
    cell = run("%%claude\nhi")
    assert cell.error is None and cell.markdown.startswith("made it")
    assert time.monotonic() - started >= 0.3
    assert len(server.requests) == 2


def test_gives_up_after_max_retries(run, server):
    _config.settings.update(max_retries=1)
    server.fault(503, headers={"retry-after-ms": "10"}).fault(503, headers={"retry-after-ms": "10"})
    cell = run("%%claude\nhi")
    assert "gave up after 2 attempts" in str(cell.error)
    assert len(server.requests) == 2


def test_code_format_puts_the_first_block_in_the_next_cell(run, server, ip):
    server.reply("Here:\n\n```python\ndf.merge(other, how='left')\n```\n\nDone.")
    cell = run("%%claude -f code\nWrite the merge")
    assert cell.error is None
    assert ip.rl_next_input == "df.merge(other, how='left')"


def test_history_and_reset_magics(run, server):
    server.reply("The answer.")
    run("%%claude\nThe question")
    cell = run("%claude_history")
    assert "The question" in cell.markdown and "The answer." in cell.markdown
    run("%claude_reset")
    assert nb_claude.get_session().history == []


def test_cell_id_rerun_replaces_the_turn(configured, server):
    session = nb_claude.get_session()
    server.reply("one").reply("two").reply("one again")
    session.ask("first", cell_id="cell-a", display=False)
    session.ask("second", cell_id="cell-b", display=False)
    session.ask("first, edited", cell_id="cell-a", display=False)
    assert server.requests[-1].body["messages"] == [{"role": "user", "content": "first, edited"}]
    assert [t.prompt for t in session.history] == ["first, edited", "second"]
    assert [t.reply.text for t in session.history] == ["one again", "two"]
    server.reply("four")
    session.ask("no cell id", display=False)
    assert len(session.history) == 3


def test_a_line_prompt_ending_in_a_question_mark_is_a_prompt_not_help(run, server):
    server.reply("Because.").reply("Yes.")
    cell = run("%claude Why is the sky blue?")
    assert cell.error is None and "Because." in cell.markdown
    assert last_body(server)["messages"][-1]["content"] == "Why is the sky blue?"
    cell = run("x = 1\nif x:\n    %claude --max-tokens 50 Is x set?")
    assert cell.error is None and last_body(server)["max_tokens"] == 50
    assert last_body(server)["messages"][-1]["content"] == "Is x set?"


def test_text_format_shows_plain_text(run, server):
    server.reply("Some *markdown* here.")
    cell = run("%%claude -f text\nPlain please")
    final = cell.outputs[-1].data
    assert "text/markdown" not in final
    assert final["text/plain"].startswith("Some *markdown* here.")
