"""The "Ask Claude" button and %claude_fix in a real kernel, driven as a front end drives it:
the failing cell still fails and shows one button; a click (a widget comm message) sends the
fix request once and streams the answer into the button's widgets; %claude_fix puts the fix
in the next cell; a notebook with a %claude_fix cell replays offline in strict mode."""

from __future__ import annotations

import html
import queue
import time
from collections.abc import Callable
from typing import Any

import nbformat
import pytest
from kernel_harness import KernelSession, reply_outputs, run_notebook

from nb_claude.testing import DEMO_KEY, StandInServer

pytestmark = pytest.mark.kernel
pytest.importorskip("pandas")
pytest.importorskip("ipywidgets")

KEY = "sk-kernel-fix-3c4d5e"
SETUP = "import pandas as pd\ndf = pd.DataFrame({'region': ['n', 's', 'n'], 'revenue': [1, 2, 3]})"
FAILING = 'df.groupby("regoin").revenue.mean()'
FIXED = 'df.groupby("region").revenue.mean()'
EXPLANATION = "The column is spelt `region`, not `regoin`, so the lookup raises a KeyError."
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def standin():
    with StandInServer(seed=13, api_key=KEY) as server:
        yield server


@pytest.fixture
def kernel(standin, tmp_path):
    env = {"NB_CLAUDE_BASE_URL": standin.url, "AIMLAPI_KEY": KEY, "NB_CLAUDE_REPLAY": "off"}
    with KernelSession(env=env, cwd=tmp_path) as k:
        assert k.execute("%load_ext nb_claude").error is None
        assert k.execute(SETUP).error is None
        standin.reset()
        yield k


class Widgets:
    """Widget models as a front end knows them: opened by comm_open, changed by updates."""

    def __init__(self) -> None:
        self.state: dict[str, dict[str, Any]] = {}

    def feed(self, msg: dict[str, Any]) -> None:
        kind, content = msg["header"]["msg_type"], msg["content"]
        if kind == "comm_open" and content.get("target_name") == "jupyter.widget":
            self.state[content["comm_id"]] = dict(content["data"]["state"])
        elif kind == "comm_msg" and content["comm_id"] in self.state:
            data = content["data"]
            if data.get("method") == "update":
                self.state[content["comm_id"]].update(data["state"])

    def children(self, model_id: str) -> list[str]:
        return [ref.removeprefix("IPY_MODEL_") for ref in self.state[model_id]["children"]]

    def of(self, model_id: str, css: str) -> dict[str, Any] | None:
        """The child of box `model_id` that carries CSS class `css`."""
        for child in self.children(model_id):
            if css in self.state.get(child, {}).get("_dom_classes", ()):
                return self.state[child]
        return None


def opened(result: Any) -> Widgets:
    found = Widgets()
    for msg in result.messages:
        found.feed(msg)
    return found


def click(kernel: KernelSession, model_id: str) -> None:
    content = {"comm_id": model_id, "data": {"method": "custom", "content": {"event": "click"}}}
    kernel.kc.shell_channel.send(kernel.kc.session.msg("comm_msg", content))


def watch(kernel: KernelSession, models: Widgets, done: Callable[[], bool],
          timeout: float = 20) -> None:
    """Apply the kernel's widget messages until `done()`."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError("the widgets never reached the expected state")
        try:
            models.feed(kernel.kc.get_iopub_msg(timeout=0.2))
        except queue.Empty:
            continue


def fail(kernel: KernelSession) -> tuple[Any, Widgets, str, str]:
    """The failing cell, its widget models, the box's model id and the button's."""
    result = kernel.execute(FAILING)
    assert result.error is not None and result.error["ename"] == "KeyError"
    assert result.reply["status"] == "error"
    views = [o["data"][WIDGET_VIEW]["model_id"] for o in result.outputs
             if WIDGET_VIEW in o.get("data", {})]
    assert len(views) == 1, result.outputs
    models = opened(result)
    (button,) = models.children(views[0])
    return result, models, views[0], button


def test_a_failing_cell_shows_exactly_one_button_and_still_fails(kernel, standin):
    result, models, box, button = fail(kernel)
    assert [o["output_type"] for o in result.outputs] == ["error", "display_data"]
    assert models.state[box]["_model_name"] == "VBoxModel"
    assert models.state[button]["_model_name"] == "ButtonModel"
    assert models.state[button]["description"] == "Ask Claude"
    buttons = [s for s in models.state.values() if s["_model_name"] == "ButtonModel"]
    assert len(buttons) == 1
    assert standin.requests == []  # nothing is sent before a click
    # a working cell gets nothing, and an interrupt gets no button
    assert not any(WIDGET_VIEW in o.get("data", {}) for o in kernel.execute("1 + 1").outputs)
    stopped = kernel.execute("raise KeyboardInterrupt")
    assert stopped.error is not None and not any(WIDGET_VIEW in o.get("data", {})
                                                 for o in stopped.outputs)
    # the second failing cell costs two widget models: the box and its button
    again = kernel.execute("1 / 0")
    assert len(opened(again).state) == 2


def test_a_click_streams_the_fix_once_without_blocking_the_kernel(kernel, standin,
                                                                   monkeypatch):
    result, models, box, button = fail(kernel)
    route = kernel._route  # a cell run meanwhile must not swallow the widgets' messages

    def also_widgets(msg: dict[str, Any]) -> None:
        models.feed(msg)
        route(msg)

    monkeypatch.setattr(kernel, "_route", also_widgets)
    n = result.execution_count
    standin.fix_reply(EXPLANATION, FIXED, delay=0.05)
    click(kernel, button)
    click(kernel, button)  # a double click sends once
    # the kernel is free while the reply streams
    assert kernel.execute("6 * 7").data("text/plain") == ["42"]
    watch(kernel, models, lambda: models.of(box, "nbc-fix-actions-box") is not None)
    assert len(standin.requests) == 1
    prompt = standin.requests[0].body["messages"][-1]["content"][-1]["text"]
    assert prompt.startswith(f"Cell In [{n}] failed.") and FAILING in prompt
    assert f"In [{n}], line 1, in <module>" in prompt and "KeyError: 'regoin'" in prompt
    assert "'region', 'revenue'" in prompt
    reply = models.of(box, "nbc-fix-reply")
    assert reply is not None and "spelt `region`" in reply["outputs"][-1]["data"]["text/markdown"]
    diff = models.of(box, "nbc-fix-diff")
    assert diff is not None and html.escape(FIXED, quote=True) in diff["value"]
    assert models.state[button]["disabled"] is True
    time.sleep(0.3)
    assert len(standin.requests) == 1
    history = kernel.execute("%claude_history")
    assert "spelt `region`" in history.data("text/markdown")[-1]


def test_claude_fix_sends_code_traceback_columns_and_inserts_the_fix(kernel, standin):
    result, *_ = fail(kernel)
    n = result.execution_count
    standin.fix_reply(EXPLANATION, FIXED)
    fixed = kernel.execute("%claude_fix")
    assert fixed.error is None, fixed.error
    prompt = standin.requests[-1].body["messages"][-1]["content"][-1]["text"]
    assert f"The failing cell, In [{n}]:\n```python\n{FAILING}\n```" in prompt
    assert "The traceback, oldest frame first" in prompt
    assert f"In [{n}], line 1, in <module>" in prompt
    assert "all columns: 'region', 'revenue'" in prompt
    inserted = [p for p in fixed.payloads if p.get("source") == "set_next_input"]
    assert [(p["text"], p.get("replace")) for p in inserted] == [(FIXED, False)]
    assert "FIXED" not in kernel.execute("print(sorted(k for k in globals() if k.isupper()))"
                                         ).stream()


def test_a_claude_fix_cell_replays_offline_in_strict_mode(tmp_path):
    sources = ["%load_ext nb_claude", SETUP, FAILING, "%claude_fix"]
    path = tmp_path / "fix.ipynb"
    nbformat.write(nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(s) for s in sources]), path)
    with StandInServer(seed=17) as server:
        server.fix_reply(EXPLANATION, FIXED)
        env = {"NB_CLAUDE_REPLAY": "auto", "NB_CLAUDE_BASE_URL": server.url,
               "AIMLAPI_KEY": DEMO_KEY}
        first = run_notebook(path, env=env, cwd=tmp_path, allow_errors=True)
        assert len(server.requests) == 1
    offline = {**env, "NB_CLAUDE_REPLAY": "replay", "NB_CLAUDE_BASE_URL": "http://127.0.0.1:9/v1"}
    second = run_notebook(path, env=offline, cwd=tmp_path, allow_errors=True)
    for nb in (first, second):
        errors = [o["ename"] for cell in nb.cells for o in cell.outputs
                  if o["output_type"] == "error"]
        assert errors == ["KeyError"]  # the failing cell only
    assert reply_outputs(first) == reply_outputs(second) and len(reply_outputs(second)) == 1
    assert "spelt `region`" in reply_outputs(second)[0][0]
    fix_cell = second.cells[3].outputs
    assert any("replayed" in o.get("data", {}).get("text/markdown", "") for o in fix_cell)
    assert any(FIXED in o.get("data", {}).get("text/plain", "") for o in fix_cell)  # the diff


def test_the_kernels_interrupt_button_stops_a_streaming_fix(kernel, standin, monkeypatch):
    """Between cells ipykernel ignores SIGINT; a reply streaming in a thread still hears it."""
    result, models, box, button = fail(kernel)
    route = kernel._route

    def also_widgets(msg: dict[str, Any]) -> None:
        models.feed(msg)
        route(msg)

    monkeypatch.setattr(kernel, "_route", also_widgets)
    standin.reply(chunks=[f"word{i} " for i in range(100)], delay=0.1)

    def shown() -> str:
        outputs = (models.of(box, "nbc-fix-reply") or {}).get("outputs") or [{}]
        return outputs[-1].get("data", {}).get("text/markdown", "")

    click(kernel, button)
    watch(kernel, models, lambda: "word2" in shown())
    kernel.interrupt()  # the kernel is idle: its main thread runs no cell
    watch(kernel, models, lambda: models.of(box, "nbc-fix-stop") is None, timeout=10)
    assert "interrupted" in shown() and "word99" not in shown()
    turn = kernel.execute("import nb_claude; t = nb_claude.get_session().history[-1]; "
                          "print(t.source, t.reply.interrupted)")
    assert turn.error is None and turn.stream() == "fix True\n"
    assert kernel.execute("6 * 7").data("text/plain") == ["42"]  # the kernel lives on
