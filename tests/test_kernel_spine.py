"""The spine as a notebook front end sees it: a real kernel, cell ids, interrupts."""

from __future__ import annotations

import json
import threading
import time

import nbformat
import pytest
from kernel_harness import KernelSession, run_notebook

from nb_claude.testing import StandInServer

pytestmark = pytest.mark.kernel
KEY = "sk-kernel-test-0c1d2e"


@pytest.fixture(scope="module")
def standin():
    with StandInServer(seed=3, api_key=KEY) as server:
        yield server


@pytest.fixture(scope="module")
def kernel(standin, tmp_path_factory):
    env = {"NB_CLAUDE_BASE_URL": standin.url, "AIMLAPI_KEY": KEY, "NB_CLAUDE_REPLAY": "off"}
    with KernelSession(env=env, cwd=tmp_path_factory.mktemp("kernel-cwd")) as k:
        assert k.execute("%load_ext nb_claude").error is None
        yield k


def markdown_outputs(result):
    return [o for o in result.outputs if "text/markdown" in o.get("data", {})]


def test_one_final_output_per_reply_with_provenance(kernel, standin):
    standin.reset()
    standin.reply(chunks=[f"part {i}. " for i in range(30)], delay=0.02, usage=(9, 30))
    result = kernel.execute("%%claude --new\nTell me in parts.", cell_id="cell-one")
    assert result.error is None
    assert result.count_of("update_display_data") >= 2  # it streamed
    outputs = markdown_outputs(result)
    assert len(outputs) == 1 and len(result.outputs) == 1
    md = outputs[0]["data"]["text/markdown"]
    assert md.startswith("part 0. part 1.") and "part 29." in md and "9 in / 30 out" in md
    meta = outputs[0]["metadata"]["nb_claude"]
    assert meta["model"].endswith("claude-opus-4-8") and meta["finish_reason"] == "end_turn"
    assert KEY not in json.dumps(result.messages, default=str)


def test_rerunning_a_cell_replaces_its_turn(kernel, standin):
    standin.reset()
    standin.reply("first").reply("second").reply("first, again")
    kernel.execute("%%claude --new\nQ1", cell_id="c-a")
    kernel.execute("%%claude\nQ2", cell_id="c-b")
    kernel.execute("%%claude\nQ1 edited", cell_id="c-a")
    assert standin.requests[-1].body["messages"] == [{"role": "user", "content": "Q1 edited"}]
    probe = kernel.execute("import nb_claude\n"
                           "print([(t.prompt, t.reply.text) for t in "
                           "nb_claude.get_session().history])")
    assert probe.stream() == "[('Q1 edited', 'first, again'), ('Q2', 'second')]\n"


def test_interrupt_stops_within_a_second_and_keeps_the_partial_reply(kernel, standin):
    standin.reset()
    standin.reply(chunks=[f"w{i} " for i in range(100)], delay=0.1, split=False)
    box = {}
    runner = threading.Thread(target=lambda: box.update(
        result=kernel.execute("%%claude --new --no-context\nA long answer please",
                              cell_id="c-long")))
    runner.start()
    deadline = time.monotonic() + 10
    while not standin.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.6)
    interrupted_at = time.monotonic()
    kernel.interrupt()
    runner.join(timeout=10)
    assert not runner.is_alive()
    assert time.monotonic() - interrupted_at < 1.0
    result = box["result"]
    md = markdown_outputs(result)[-1]["data"]["text/markdown"]
    assert md.startswith("w0 w1 ") and "interrupted" in md
    assert "w99" not in md
    probe = kernel.execute("import nb_claude\nt = nb_claude.get_session().history[-1]\n"
                           "print(t.interrupted, len(t.reply.text) > 0, t.prompt)")
    assert probe.stream() == "True True A long answer please\n"
    standin.reply("still works")
    after = kernel.execute("%%claude\nNext")
    assert after.error is None
    sent = standin.requests[-1].body["messages"]
    assert sent[0]["content"] == "A long answer please"
    assert sent[1]["role"] == "assistant" and sent[1]["content"].startswith("w0 w1")


def test_saved_notebook_holds_one_output_per_reply(standin, tmp_path):
    standin.reset()
    standin.reply(chunks=[f"c{i} " for i in range(40)], delay=0.01).reply("Second reply.")
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("%load_ext nb_claude"),
        nbformat.v4.new_code_cell("%%claude\nFirst"),
        nbformat.v4.new_code_cell("%%claude --no-stream\nSecond"),
    ])
    path = tmp_path / "spine.ipynb"
    nbformat.write(nb, path)
    env = {"NB_CLAUDE_BASE_URL": standin.url, "AIMLAPI_KEY": KEY, "NB_CLAUDE_REPLAY": "off"}
    done = run_notebook(path, env=env, cwd=tmp_path)
    first, second = done.cells[1].outputs, done.cells[2].outputs
    assert len(first) == 1 and len(second) == 1
    assert first[0]["data"]["text/markdown"].startswith("c0 c1 c2")
    assert second[0]["data"]["text/markdown"].startswith("Second reply.")
    assert KEY not in nbformat.writes(done)


def test_errors_are_one_line_in_the_notebook(kernel, standin):
    standin.reset()
    standin.fault(401, "Invalid API key")
    result = kernel.execute("%%claude\nhello", cell_id="c-err")
    error = result.error
    assert error["ename"] == "APIStatusError"
    assert len(error["traceback"]) == 1
    assert "API key was not accepted" in error["traceback"][0]
    assert "Invalid API key" in error["evalue"]
    assert KEY not in json.dumps(result.messages, default=str)
    bad = kernel.execute("%%claude --max-tokens 0\nhello")
    assert bad.error["ename"] == "UsageError"


def test_python_api_renders_in_a_notebook_and_returns_the_reply(kernel, standin):
    standin.reset()
    standin.reply("From Python.")
    result = kernel.execute("import nb_claude\nr = nb_claude.get_session().ask('Hi from code')\n"
                            "print(r.text, r.finish_reason)")
    assert result.error is None
    assert markdown_outputs(result)[0]["data"]["text/markdown"].startswith("From Python.")
    assert result.stream() == "From Python. end_turn\n"
