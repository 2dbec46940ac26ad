"""The "Ask Claude" button under a traceback, in a real IPython shell against the stand-in:
one button and nothing else, no request until it is clicked, then the same request as
%claude_fix streamed below it as an ordinary turn, the diff, Insert below and Copy."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

import nb_claude
from nb_claude import _config, _error_button
from nb_claude._capture import ContextRecorder
from nb_claude._error_button import HINT

pd = pytest.importorskip("pandas")
widgets = pytest.importorskip("ipywidgets")

from ipywidgets.widgets.widget import _instances  # noqa: E402
from test_terminal import terminal_ipython  # noqa: E402

from nb_claude._fix_button import CANNOT_INSERT, INSERT_COMMANDS, RUN_ALL, FixButton  # noqa: E402

SETUP = "import pandas as pd\ndf = pd.DataFrame({'region': ['n', 's', 'n'], 'revenue': [1, 2, 3]})"
FAILING = 'df.groupby("regoin").revenue.mean()'
FIXED = 'df.groupby("region").revenue.mean()'
EXPLANATION = "The column is spelt `region`, not `regoin`, so the lookup raises a KeyError."
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture
def notebook(ip: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The shell as a notebook front end with widgets sees it."""
    monkeypatch.setattr(_error_button, "front_end", lambda shell: "widgets")
    yield ip


def buttons(cell: Any) -> list[FixButton]:
    """The FixButton widgets a cell displayed."""
    found = []
    for output in cell.outputs:
        view = output.data.get(WIDGET_VIEW)
        if view is not None:
            found.append(_instances[view["model_id"]])
    return found


def fail(run: Any) -> tuple[Any, FixButton]:
    """Run the setup and the failing cell; the failing cell and its one button."""
    assert run(SETUP).error is None
    cell = run(FAILING)
    assert isinstance(cell.error, KeyError), cell.error
    (button,) = buttons(cell)
    return cell, button


def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.01)


def finished(button: FixButton) -> None:
    wait_until(lambda: button._thread is not None and not button._thread.is_alive())


def shown_markdown(button: FixButton) -> str:
    assert button.explanation is not None
    outputs = button.explanation.outputs
    return outputs[-1]["data"]["text/markdown"] if outputs else ""


def prompt_text(server: Any) -> str:
    blocks = server.requests[-1].body["messages"][-1]["content"]
    return blocks if isinstance(blocks, str) else blocks[-1]["text"]


def test_a_failing_cell_gets_one_button_and_nothing_is_sent(
        notebook: Any, run: Any, server: Any, recorder: ContextRecorder) -> None:
    cell, button = fail(run)
    assert [o.data.keys() & {WIDGET_VIEW} for o in cell.outputs] == [{WIDGET_VIEW}]
    assert cell.outputs[0].data["text/plain"] == HINT  # where widgets cannot show
    assert button.children == (button.ask_button,)
    assert button.ask_button.description == "Ask Claude" and not button.ask_button.disabled
    assert "nbc-ask" in button.ask_button._dom_classes
    assert server.requests == []
    # the cell still failed, and the button is not part of its recorded output
    assert recorder.records[-1].error is not None and recorder.records[-1].displays == ()
    # a cell that works gets nothing
    assert buttons(run("1 + 1")) == []


def test_click_streams_the_fix_as_a_turn_and_offers_the_diff(
        notebook: Any, run: Any, server: Any, recorder: ContextRecorder) -> None:
    cell, button = fail(run)
    n = cell.result.execution_count
    server.fix_reply(EXPLANATION, FIXED)
    button.ask_button.click()
    finished(button)
    assert len(server.requests) == 1
    prompt = prompt_text(server)
    assert prompt.startswith(f"Cell In [{n}] failed.")
    assert FAILING in prompt and "KeyError: 'regoin'" in prompt
    assert f"In [{n}], line 1, in <module>" in prompt  # the cell's own frame, kept
    assert "all columns: 'region', 'revenue'" in prompt
    # an ordinary turn of the default session, in the history
    turn = nb_claude.get_session().history[-1]
    assert turn.source == "fix" and turn.reply.text.startswith("The column is spelt")
    assert [i["label"] for i in turn.context["items"]] == [f"[{n - 1}]"]
    history = run("%claude_history").markdown
    assert "spelt `region`" in history
    # what the button shows: the explanation, the diff, Insert below and Copy
    assert button.state == "done" and button.ask_button.disabled
    assert button.children == (button.ask_button, button.explanation, button.diff,
                               button.actions)
    assert "spelt `region`" in shown_markdown(button)
    assert button.explanation.outputs[-1]["metadata"]["nb_claude"]["steps"] == 1
    diff = button.diff.value
    assert "- " + html.escape(FAILING, quote=True) in diff
    assert "+ " + html.escape(FIXED, quote=True) in diff
    actions = button.actions.value
    args = re.search(r'data-commandlinker-args="([^"]*)"', actions)
    assert args is not None and f'data-commandlinker-command="{RUN_ALL}"' in actions
    assert json.loads(html.unescape(args.group(1))) == {"commands": list(INSERT_COMMANDS),
                                                        "args": {"text": FIXED}}
    code = re.search(r'data-nbc-code="([^"]*)"', actions)
    assert code is not None and html.unescape(code.group(1)) == FIXED
    assert "navigator.clipboard.writeText(this.dataset.nbcCode)" in html.unescape(actions)
    # the fix was never run
    assert "FIXED_RAN" not in notebook.user_ns


def test_clicking_twice_sends_once(notebook: Any, run: Any, server: Any,
                                   recorder: ContextRecorder) -> None:
    _, button = fail(run)
    server.fix_reply(EXPLANATION, FIXED, chunks=None, delay=0.05)
    button.ask_button.click()
    button.ask_button.click()
    finished(button)
    button.ask_button.click()  # done: a third click does nothing either
    time.sleep(0.2)
    assert len(server.requests) == 1
    assert len([t for t in nb_claude.get_session().history if t.source == "fix"]) == 1


def test_stop_keeps_the_partial_explanation_marked(
        notebook: Any, run: Any, server: Any, recorder: ContextRecorder) -> None:
    _, button = fail(run)
    words = [f"word{i} " for i in range(60)]
    server.reply(chunks=words, delay=0.1)
    button.ask_button.click()
    wait_until(lambda: "word2" in shown_markdown(button))
    assert button.stop_button in button.children
    button.stop_button.click()
    finished(button)
    shown = shown_markdown(button)
    assert "interrupted" in shown and "word2" in shown and "word59" not in shown
    turn = nb_claude.get_session().history[-1]
    assert turn.source == "fix" and turn.reply.interrupted
    assert button.stop_button not in button.children
    assert button.diff is None  # no diff of a partial reply


def test_without_a_key_the_button_says_what_to_do(
        notebook: Any, run: Any, server: Any, recorder: ContextRecorder,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIMLAPI_KEY", raising=False)
    monkeypatch.delenv("AIML_API_KEY", raising=False)
    _config.set_api_key(None)
    _, button = fail(run)
    button.ask_button.click()
    finished(button)
    assert server.requests == []
    assert button.message is not None and button.message in button.children
    message = html.unescape(re.sub(r"<[^>]+>", "", button.message.value))
    assert message.startswith("⚠ no API key:") and "%claude_login" in message
    assert "\n" not in message
    assert button.state == "ready" and not button.ask_button.disabled  # try again after login
    _config.set_api_key("sk-nbc-after-login")
    server.fix_reply(EXPLANATION, FIXED)
    button.ask_button.click()
    finished(button)
    assert len(server.requests) == 1 and button.state == "done"
    assert button.message not in button.children


def test_a_reply_without_code_gets_a_note_and_no_diff(
        notebook: Any, run: Any, server: Any, recorder: ContextRecorder) -> None:
    _, button = fail(run)
    server.reply("Check the spelling of the column name.")
    button.ask_button.click()
    finished(button)
    assert button.diff is None and button.message is not None
    assert "No code block in the reply" in button.message.value


def test_where_cells_cannot_be_inserted_copy_remains(
        notebook: Any, run: Any, server: Any, recorder: ContextRecorder,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from nb_claude import _magics

    monkeypatch.setattr(_magics, "_front_end_inserts_cells", lambda shell: False)
    _, button = fail(run)
    server.fix_reply(EXPLANATION, FIXED)
    button.ask_button.click()
    finished(button)
    actions = button.actions.value
    assert "data-commandlinker-command" not in actions and "nbc-fix-copy" in actions
    assert html.escape(CANNOT_INSERT) in actions


def test_hostile_code_in_the_reply_stays_data(
        notebook: Any, run: Any, server: Any, recorder: ContextRecorder) -> None:
    _, button = fail(run)
    hostile = 'x = "</button><img src=x onerror=alert(1)>"\nprint(\'"&<>\')'
    server.fix_reply("Here.", hostile)
    button.ask_button.click()
    finished(button)
    for value in (button.diff.value, button.actions.value):
        assert "<img" not in value and "</button><img" not in value
    code = re.search(r'data-nbc-code="([^"]*)"', button.actions.value)
    assert code is not None and html.unescape(code.group(1)) == hostile
    assert "x" not in notebook.user_ns or notebook.user_ns.get("x") != hostile


def test_error_button_off_shows_nothing(notebook: Any, run: Any, server: Any,
                                        recorder: ContextRecorder) -> None:
    run("%config ClaudeMagics.error_button = False")
    try:
        assert run(SETUP).error is None
        cell = run(FAILING)
        assert isinstance(cell.error, KeyError) and cell.outputs == []
    finally:
        run("%config ClaudeMagics.error_button = True")
    assert buttons(run(FAILING))


@pytest.mark.parametrize("source", [
    "raise KeyboardInterrupt",
    "raise SystemExit(3)",
    "%claude_fix 99999",  # nb_claude's own UsageError: its line says what to do
    "%claude --no-such-flag hi",
])
def test_no_button_for_interrupts_exits_and_nb_claude_usage_errors(
        notebook: Any, run: Any, server: Any, recorder: ContextRecorder, source: str) -> None:
    cell = run(source)
    assert cell.error is not None or source.startswith("raise SystemExit")
    assert buttons(cell) == [] and not [o for o in cell.outputs if HINT in
                                        o.data.get("text/plain", "")]


def test_other_usage_errors_still_get_a_button(notebook: Any, run: Any,
                                               recorder: ContextRecorder) -> None:
    cell = run("%timeit -q --bogus 1")
    assert cell.error is not None
    assert len(buttons(cell)) == 1


def test_terminal_ipython_gets_a_one_line_hint(ip: Any, run: Any, server: Any,
                                               recorder: ContextRecorder) -> None:
    late = ContextRecorder(ip)  # hooked after the hint: it still sees the cell running
    late.register()
    try:
        cell = run("1 / 0")
    finally:
        late.unregister()
    assert isinstance(cell.error, ZeroDivisionError)
    assert [o.data for o in cell.outputs] == [{"text/plain": HINT}]
    assert "%claude_fix" in HINT and "\n" not in HINT
    for rec in (recorder, late):  # not the cell's output
        assert rec.records[-1].displays == () and rec.records[-1].stdout == ""
    run("%config ClaudeMagics.error_button = False")
    try:
        assert run("1 / 0").outputs == []
    finally:
        run("%config ClaudeMagics.error_button = True")
    assert server.requests == []


def test_terminal_ipython_hint_on_a_real_terminal_once_per_error(tmp_path: Any) -> None:
    """A real terminal IPython: one hint line after each failing cell, one after a reload
    too, none after an unload, none after a KeyboardInterrupt."""
    typed = ("%load_ext nb_claude\n"
             "1 / 0\n"
             "raise KeyboardInterrupt\n"
             "%reload_ext nb_claude\n"
             "{}['missing']\n"
             "%unload_ext nb_claude\n"
             "None.attribute\n"
             "exit\n")
    screen = terminal_ipython(tmp_path, "http://127.0.0.1:9/v1", typed=typed)
    assert "ZeroDivisionError" in screen and "AttributeError" in screen, screen
    assert "KeyError" in screen and "KeyboardInterrupt" in screen, screen
    # 1 / 0 and {}['missing']: not the interrupt, not twice after the reload, none unloaded
    assert screen.count(HINT) == 2, screen


def test_the_fix_turn_shows_in_an_open_chat_panel(
        notebook: Any, run: Any, server: Any, recorder: ContextRecorder) -> None:
    from nb_claude import ChatPanel

    panel = ChatPanel(nb_claude.get_session(), shell=notebook, recorder=recorder)
    try:
        _, button = fail(run)
        server.fix_reply(EXPLANATION, FIXED)
        button.ask_button.click()
        finished(button)
        wait_until(lambda: any("spelt `region`" in md for md in panel.markdown))
    finally:
        panel.close()


def test_frames_kept_are_the_raising_one_and_the_users_own() -> None:
    from nb_claude._fix import chosen_frames

    cell, mine = "/tmp/ipykernel_1/123.py", "/home/me/project/helpers.py"
    lib = [f"/venv/lib/python3.11/site-packages/pandas/m{i}.py" for i in range(4)]
    names = {cell: 7}
    assert chosen_frames([cell, *lib], names, 3) == [0, 3, 4]
    assert chosen_frames([cell, lib[0], mine, lib[1], lib[2], lib[3]], names, 3) == [0, 2, 5]
    assert chosen_frames([cell, mine, lib[0]], names, 3) == [0, 1, 2]
    assert chosen_frames([cell, *lib], names, 1) == [4]
    assert chosen_frames([], names, 3) == []
