"""`%%claude --each` in a real kernel: typed rows, a failing item, a kernel interrupt and
the re-run that sends only what is missing."""

from __future__ import annotations

import json
import threading
import time

import pytest
from kernel_harness import KernelSession

from nb_claude.testing import StandInServer

pytestmark = pytest.mark.kernel
KEY = "sk-batch-kernel-5e6f7a8b9c"

SETUP = """
import pandas as pd
from typing import Literal, TypedDict

class Sentiment(TypedDict):
    label: Literal["positive", "neutral", "negative"]
    reason: str

reviews = pd.DataFrame({"text": [f"review {i:02d}" for i in range(50)]},
                       index=pd.RangeIndex(100, 150, name="ticket"))
"""
CELL = ("%%claude --each reviews --schema Sentiment --out labels --concurrency 4\n"
        "Classify the sentiment of this review: {text}")


@pytest.fixture(scope="module")
def standin():
    with StandInServer(seed=5, api_key=KEY) as server:
        yield server


@pytest.fixture(scope="module")
def kernel(standin, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("batch-kernel")
    env = {"NB_CLAUDE_BASE_URL": standin.url, "AIMLAPI_KEY": KEY, "NB_CLAUDE_REPLAY": "auto"}
    with KernelSession(env=env, cwd=cwd) as k:
        assert k.execute("%load_ext nb_claude").error is None
        assert k.execute(SETUP).error is None
        yield k


def probe(kernel: KernelSession, code: str) -> str:
    result = kernel.execute(code)
    assert result.error is None, result.error
    return result.stream()


def summary(result) -> str:
    """The cell's one summary line: the progress bar's last state (never a second one)."""
    texts = [out["data"].get("text/plain", "") for out in result.outputs
             if out["output_type"] in ("display_data", "execute_result")]
    found = [t for t in texts if "done ·" in t or "rows ·" in t]
    assert len(found) == 1, texts
    return found[0]


def test_fifty_typed_rows_an_error_an_interrupt_and_a_resume(kernel, standin):
    standin.reset()
    standin.latency = 0.1
    standin.fail_when("review 13", 400, "refused for the test")
    box = {}
    runner = threading.Thread(target=lambda: box.update(result=kernel.execute(CELL,
                                                                             timeout=60)))
    runner.start()
    deadline = time.monotonic() + 30
    while len(standin.requests) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    kernel.interrupt()
    runner.join(timeout=30)
    assert not runner.is_alive()
    first = box["result"]
    assert first.error is None, first.error  # stopped, not failed: what finished is kept
    shown = summary(first)
    assert shown.startswith("Stopped: ") and "of 50 done; re-run the cell to finish" in shown
    assert " not run · " in shown and "(estimate)" in shown  # the stand-in's cost is made up
    assert shown.endswith("result in labels (label, reason, error)")
    (meta,) = [out.get("metadata", {}).get("nb_claude") for out in first.outputs
               if "done ·" in out.get("data", {}).get("text/plain", "")]
    facts_shown = meta["batch"]
    assert facts_shown["state"] == "stopped" and facts_shown["total"] == 50
    assert facts_shown["not_run"] == 50 - facts_shown["done"] > 0
    sent_first = len(standin.requests)
    assert 20 <= sent_first < 50

    facts = json.loads(probe(kernel, "import json\nprint(json.dumps({'rows': len(labels), "
                                     "'columns': list(labels.columns), "
                                     "'index': labels.index.equals(reviews.index), "
                                     "'good': int((labels.error == '').sum()), "
                                     "'not_run': int((labels.error == 'not run: stopped')"
                                     ".sum())}))"))
    assert facts["rows"] == 50 and facts["index"] is True
    assert facts["columns"] == ["label", "reason", "error"]
    good, not_run = facts["good"], facts["not_run"]
    assert not_run > 0 and good + not_run <= 50

    standin.reset()
    standin.latency = 0.02
    standin.fail_when("review 13", 400, "refused for the test")
    second = kernel.execute(CELL, timeout=60)
    assert second.error is None, second.error
    assert len(standin.requests) == 50 - good  # only the missing (and the failed) items
    sent = {r.body["messages"][0]["content"] for r in standin.requests}
    assert len(sent) == len(standin.requests)
    final = json.loads(probe(kernel, "print(json.dumps({'rows': len(labels), "
                                     "'good': int((labels.error == '').sum()), "
                                     "'failed': labels.loc[113, 'error'], "
                                     "'labels': sorted(set(labels.label.dropna()))}))"))
    assert final["rows"] == 50 and final["good"] == 49
    assert "refused for the test" in final["failed"]
    assert set(final["labels"]) <= {"positive", "neutral", "negative"}
    assert summary(second).startswith(f"Finished: 50/50 done · 1 error · {good} replayed")
    usage = probe(kernel, "import nb_claude\ns = nb_claude.get_session()\n"
                          "print(len(s.history), s.side_replies)")
    assert usage.split() == ["0", "49"]  # no turn; every answer received counted once
    assert KEY not in "".join(str(m) for m in first.messages + second.messages)
