"""Claude over every row: `%%claude --each`, `nb_claude.map`, against the stand-in."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Literal, TypedDict

import pandas as pd
import pytest
from conftest import SENTINEL_KEY

import nb_claude
from nb_claude import _config
from nb_claude._batch import Batch, Progress
from nb_claude._batch_gate import Gate
from nb_claude._client import CancelToken
from nb_claude._errors import ConfigError


class Sentiment(TypedDict):
    label: Literal["positive", "neutral", "negative"]
    reason: str


class Recording:
    """A progress view that keeps every snapshot it is given."""

    def __init__(self) -> None:
        self.started: list[Progress] = []
        self.updates: list[Progress] = []
        self.finished: list[tuple[Progress, str]] = []

    def start(self, progress: Progress) -> None:
        self.started.append(progress)

    def update(self, progress: Progress) -> None:
        self.updates.append(progress)

    def finish(self, progress: Progress, note: str) -> None:
        self.finished.append((progress, note))


def reviews(n: int = 50) -> pd.DataFrame:
    return pd.DataFrame({"text": [f"review number {i}" for i in range(n)],
                         "stars": [i % 5 + 1 for i in range(n)]},
                        index=pd.Index([f"r{i}" for i in range(n)], name="id"))


def prompts(server: Any) -> list[str]:
    """The first user message's text of every chat request the stand-in received."""
    return [prompts_of(request) for request in server.requests]


def prompts_of(request: Any) -> str:
    content = request.body["messages"][0]["content"]
    return content if isinstance(content, str) else \
        " ".join(b.get("text", "") for b in content if b.get("type") == "text")


@pytest.fixture
def replaying(configured: _config.Settings, tmp_path: Path) -> Path:
    path = tmp_path / "replay.jsonl"
    configured.update(replay_mode="auto", replay_path=str(path))
    return path


# -- the magic --------------------------------------------------------------------------

def test_each_row_with_a_schema_gives_one_row_per_item_on_the_input_index(ip, run, server):
    ip.user_ns.update(reviews=reviews(), Sentiment=Sentiment)
    cell = run("%%claude --each reviews --schema Sentiment --out labels --concurrency 16\n"
               "Classify the sentiment of this review: {text} ({stars} stars)")
    assert cell.error is None, cell.error
    labels = ip.user_ns["labels"]
    assert list(labels.columns) == ["label", "reason", "error"]
    assert labels.index.equals(ip.user_ns["reviews"].index)
    assert set(labels["label"]) <= {"positive", "neutral", "negative"}
    assert (labels["error"] == "").all()
    assert len(server.requests) == 50
    sent = sorted(prompts(server))
    assert sent == sorted(f"Classify the sentiment of this review: review number {i} "
                          f"({i % 5 + 1} stars)" for i in range(50))
    body = server.requests[0].body
    assert body["tool_choice"] == {"type": "function", "function": {"name": "answer"}}
    assert body["stream"] is False and "thinking" not in body
    assert "labels" in cell.markdown and "50 rows" in cell.markdown  # a summary, not the table
    assert "review number" not in cell.markdown


def test_one_failing_item_is_its_rows_error_and_the_rest_succeed(ip, run, server):
    ip.user_ns["reviews"] = reviews(20)
    server.fail_when("review number 7", 400, "this one is refused")
    cell = run("%%claude --each reviews --out labels\nSummarise: {text}")
    assert cell.error is None
    labels = ip.user_ns["labels"]
    assert list(labels.columns) == ["reply", "error"]
    failed = labels.loc["r7", "error"]
    assert "this one is refused" in failed and "\n" not in failed
    ok = labels.drop("r7")
    assert (ok["error"] == "").all()
    assert ok["reply"].str.startswith("*Offline stand-in reply").all()
    assert "20 rows · 1 error · 0 replayed" in cell.markdown


def test_unknown_template_field_is_named_before_anything_is_sent(ip, run, server):
    ip.user_ns["reviews"] = reviews(5)
    cell = run("%%claude --each reviews\nClassify {txt} with {{literal}} braces")
    assert type(cell.error).__name__ == "UsageError"
    message = str(cell.error)
    assert "{txt}" in message and "text, stars" in message
    assert server.requests == []


def test_literal_braces_and_format_specs(ip, run, server):
    ip.user_ns["rows"] = pd.DataFrame({"x": [1.5, 2.25]})
    assert run("%%claude --each rows\nValue {x:.1f} in {{braces}}").error is None
    assert sorted(prompts(server)) == ["Value 1.5 in {braces}", "Value 2.2 in {braces}"]


def test_missing_variable_and_options_that_do_not_go_with_each(ip, run, server):
    assert "no variable named 'nothing_here'" in str(run("%%claude --each nothing_here\nx {}").error)
    ip.user_ns["items"] = ["a"]
    assert "--tools does not go with --each" in str(
        run("%%claude --each items --tools f\nx {}").error)
    assert "concurrency must be" in str(run("%%claude --each items --concurrency 0\nx {}").error)
    assert "go with --each" in str(run("%%claude --concurrency 4\nx").error)
    unknown = run("%%claude --each items --schema NoSuchType\nx {}").error
    assert type(unknown).__name__ == "UsageError" and "NoSuchType" in str(unknown)
    assert server.requests == []


def test_cost_guard_sends_nothing_without_yes(ip, run, server):
    magics = ip.magics_manager.registry["ClaudeMagics"]
    saved = magics.batch_confirm_usd
    magics.batch_confirm_usd = 0.001
    try:
        ip.user_ns["reviews"] = reviews(30)
        ip.user_ns.pop("labels", None)
        cell = run("%%claude --each reviews --out labels\nSummarise: {text}")
        assert type(cell.error).__name__ == "UsageError"
        message = str(cell.error)
        assert "nothing sent" in message and "add --yes" in message
        assert "30 items to send" in message and "$" in message
        assert server.requests == [] and "labels" not in ip.user_ns
        with pytest.raises(ConfigError, match="confirm=True"):
            nb_claude.map("Summarise: {text}", reviews(30), view=Recording())
        assert server.requests == []
        cell = run("%%claude --each reviews --out labels --yes\nSummarise: {text}")
        assert cell.error is None and len(server.requests) == 30
        server.reset()
        done = nb_claude.map("Summarise: {text}", reviews(30), confirm=True, view=Recording())
        assert len(done) == 30 and len(server.requests) == 30
    finally:
        magics.batch_confirm_usd = saved


def test_dry_run_shows_the_first_request_and_the_estimate_for_all(ip, run, server):
    ip.user_ns["reviews"] = reviews(12)
    cell = run("%%claude --each reviews --dry-run\nSummarise: {text}")
    assert cell.error is None and server.requests == []
    assert "Dry run: nothing was sent" in cell.markdown
    assert "Summarise: review number 0" in cell.markdown
    assert "review number 1\"" not in cell.markdown
    assert "12 items to send" in cell.markdown and "input tokens" in cell.markdown


def test_history_is_unchanged_and_usage_counts_the_items(ip, run, server):
    session = nb_claude.get_session()
    run("%%claude\nHello first")
    turns = len(session.history)
    before = session.usage
    ip.user_ns["reviews"] = reviews(10)
    assert run("%%claude --each reviews\nSummarise: {text}").error is None
    assert len(session.history) == turns == 1
    after = session.usage
    assert after.input_tokens > before.input_tokens and after.output_tokens > before.output_tokens
    usage = run("%claude_usage")
    assert "| 11 |" in usage.markdown  # one turn plus ten items
    assert f"{after.input_tokens:,}" in usage.markdown
    server.reply("next")
    run("%%claude\nAnd then?")
    assert [m["role"] for m in server.requests[-1].body["messages"]] == ["user", "assistant",
                                                                         "user"]


# -- Python: items of every shape --------------------------------------------------------

def test_series_list_and_list_of_dicts(configured, server):
    series = pd.Series(["a", "b", "c"], index=[10, 20, 30])
    by_series = nb_claude.map("Say {}", series, view=Recording())
    assert list(by_series.index) == [10, 20, 30] and list(by_series.columns) == ["reply", "error"]
    by_list = nb_claude.map("Say {item}!", ["x", "y"], view=Recording())
    assert list(by_list.index) == [0, 1]
    by_dicts = nb_claude.map("{name} is {age}", [{"name": "Ann", "age": 3},
                                                 {"name": "Bo", "age": 4}], view=Recording())
    assert len(by_dicts) == 2 and (by_dicts["error"] == "").all()
    assert sorted(prompts(server)) == ["Ann is 3", "Bo is 4", "Say a", "Say b", "Say c",
                                       "Say x!", "Say y!"]
    with pytest.raises(ConfigError, match=r"\{name\}.*item 1"):
        nb_claude.map("{name}", [{"name": "a"}, {"nome": "b"}], view=Recording())
    with pytest.raises(ConfigError, match=r"write \{\} or \{item\}"):
        nb_claude.map("{text}", ["a"], view=Recording())


def test_attach_a_column_of_images(configured, server):
    from PIL import Image

    frame = pd.DataFrame({"name": ["red", "blue"],
                          "picture": [Image.new("RGB", (40, 30), "red"), None]})
    result = nb_claude.map("What colour is {name}?", frame, attach="picture", view=Recording())
    assert (result["error"] == "").all()
    by_prompt = {prompts_of(r): r.body["messages"][0]["content"] for r in server.requests}
    red = by_prompt["What colour is red?"]
    assert isinstance(red, list) and red[0]["type"] == "image"
    assert by_prompt["What colour is blue?"] == "What colour is blue?"
    with pytest.raises(ConfigError, match="not a column"):
        nb_claude.map("{name}", frame, attach="photo", view=Recording())


def test_without_pandas_a_list_gives_a_list_of_dicts(configured, server, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_pandas(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("no pandas here")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    result = nb_claude.map("Say {}", ["a", "b"], view=Recording())
    assert isinstance(result, list) and [sorted(r) for r in result] == [["error", "reply"]] * 2


# -- resuming, replay and stopping ------------------------------------------------------

def test_each_item_is_its_own_replay_entry_and_a_rerun_sends_nothing(configured, server,
                                                                     replaying):
    first = nb_claude.map("Summarise: {text}", reviews(15), schema=Sentiment, view=Recording())
    assert len(server.requests) == 15
    entries = [json.loads(line) for line in replaying.read_text().splitlines()]
    assert len(entries) == 15 and len({e["key"] for e in entries}) == 15
    assert sorted(e["cell"]["item"] for e in entries) == list(range(15))
    assert all(e["cell"]["step"] is None and e["inputs"][0]["kind"] == "prompt"
               for e in entries)
    assert SENTINEL_KEY not in replaying.read_text()
    server.reset()
    view = Recording()
    again = nb_claude.map("Summarise: {text}", reviews(15), schema=Sentiment, view=view)
    assert server.requests == []
    assert again.drop(columns="error").equals(first.drop(columns="error"))
    assert view.finished[0][0].replayed == 15 and view.finished[0][0].cost_usd == 0


def test_strict_offline_replay_of_a_finished_batch_needs_no_key(configured, server, replaying,
                                                                monkeypatch):
    first = nb_claude.map("Summarise: {text}", reviews(8), view=Recording())
    server.reset()
    monkeypatch.delenv("AIMLAPI_KEY")
    configured.update(replay_mode="replay")
    again = nb_claude.map("Summarise: {text}", reviews(8), view=Recording())
    assert server.requests == [] and again.equals(first)
    missing = nb_claude.map("Summarise: {text}", reviews(9), view=Recording())
    assert server.requests == []
    assert "strict replay mode" in missing.loc["r8", "error"]
    assert (missing.drop("r8")["error"] == "").all()
    configured.update(replay_mode="auto")
    with pytest.raises(ConfigError, match="no API key"):  # said once, not once per item
        nb_claude.map("Summarise: {text}", reviews(9), view=Recording())


def test_a_stopped_run_keeps_what_finished_and_a_rerun_sends_only_the_rest(configured, server,
                                                                          replaying):
    server.latency = 0.05
    token, view = CancelToken(), Recording()

    def stop_at_twenty() -> None:
        while len(server.requests) < 20:
            time.sleep(0.005)
        token.cancel()

    stopper = threading.Thread(target=stop_at_twenty)
    stopper.start()
    session = nb_claude.get_session()
    partial = session.map("Summarise: {text}", reviews(50), concurrency=4, view=view,
                          cancel=token)
    stopper.join()
    progress, note = view.finished[0]
    finished = int((partial["error"] == "").sum())
    assert progress.state == "stopped" and 15 <= finished < 50
    assert note == (f"stopped: {finished} of 50 done; re-run the cell to finish (finished "
                    "answers are replayed)")
    assert (partial.loc[partial["error"] != "", "error"] == "not run: stopped").all()
    assert len(replaying.read_text().splitlines()) == finished
    server.reset()
    whole = nb_claude.map("Summarise: {text}", reviews(50), view=Recording())
    assert len(server.requests) == 50 - finished
    assert (whole["error"] == "").all()
    assert whole.loc[partial["error"] == "", "reply"].equals(
        partial.loc[partial["error"] == "", "reply"])


def test_a_rate_limit_window_slows_the_run_and_every_item_finishes(configured, server):
    server.latency = 0.02
    server.rate_limit(0.6, retry_after=0.5)
    view = Recording()
    started = time.monotonic()
    result = nb_claude.map("Summarise: {text}", reviews(40), concurrency=8, view=view)
    assert (result["error"] == "").all(), result["error"].tolist()
    assert server.max_in_flight <= 8
    assert time.monotonic() - started >= 0.5  # Retry-After was honoured
    assert min(p.concurrency for p in view.updates) < 8  # it slowed down...
    assert view.finished[0][0].concurrency > min(p.concurrency for p in view.updates)  # ...and up


def test_concurrency_is_what_the_server_sees(configured, server):
    server.latency = 0.1
    started = time.monotonic()
    nb_claude.map("Summarise: {text}", reviews(24), concurrency=6, view=Recording())
    elapsed = time.monotonic() - started
    assert server.max_in_flight == 6
    assert elapsed < 24 * 0.1 * 0.75  # concurrent: one by one takes 2.4 s (ideal: 0.4 s)


def test_progress_reaches_the_view(configured, server):
    server.latency = 0.05
    view = Recording()
    nb_claude.map("Summarise: {text}", reviews(16), concurrency=2, view=view)
    assert view.started[0].total == 16 and view.started[0].done == 0
    dones = [p.done for p in view.updates]
    assert dones == sorted(dones) and 0 < max(dones) <= 16
    final, note = view.finished[0]
    assert (final.done, final.errors, final.state) == (16, 0, "finished")
    assert final.input_tokens > 0 and final.cost_usd > 0 and final.rate > 0
    assert note == "16 items, 0 errors"


# -- typed answers: the one retry -------------------------------------------------------

def test_an_invalid_typed_answer_is_asked_again_once(configured, server):
    server.reply(tool_calls=[{"name": "answer", "arguments": {"label": "great", "reason": "x"}}])
    server.reply(tool_calls=[{"name": "answer",
                              "arguments": {"label": "positive", "reason": "fixed"}}])
    server.reply(tool_calls=[{"name": "answer", "arguments": {"label": "bad"}}])
    server.reply(tool_calls=[{"name": "answer", "arguments": {"label": "worse"}}])
    result = nb_claude.map("Classify: {}", ["one", "two"], schema=Sentiment, concurrency=1,
                           view=Recording())
    assert result.loc[0, "label"] == "positive" and result.loc[0, "reason"] == "fixed"
    assert result.loc[0, "error"] == ""
    assert result.loc[1, "error"].startswith("asked twice:")
    assert len(server.requests) == 4
    retry = server.requests[1].body["messages"]
    assert [m["role"] for m in retry] == ["user", "assistant", "user"]
    assert retry[2]["content"][0]["type"] == "tool_result"


# -- pieces -------------------------------------------------------------------------------

def test_the_gate_halves_on_a_rate_limit_and_grows_back():
    gate = Gate(8)
    assert all(gate.enter() for _ in range(8))
    gate.throttle(0.2)
    assert gate.limit == 4
    gate.throttle(0.2)  # the same wave of refusals: one cut
    assert gate.limit == 4
    for _ in range(8):
        gate.leave(True)
    started = time.monotonic()
    assert gate.enter()
    assert time.monotonic() - started >= 0.15  # paused for Retry-After
    assert gate.limit >= 5  # successes added one back
    gate.stop()
    assert gate.enter() is False


def test_bad_inputs_are_one_line_errors(configured, server):
    with pytest.raises(ConfigError, match="cannot run over a int"):
        nb_claude.map("x {}", 5, view=Recording())
    with pytest.raises(ConfigError, match="template is empty"):
        nb_claude.map("  ", ["a"], view=Recording())
    with pytest.raises(ConfigError, match="attach= has 1 values for 2 items"):
        nb_claude.map("x {}", ["a", "b"], attach=["p.png"], view=Recording())
    with pytest.raises(ConfigError, match="concurrency"):
        Batch(nb_claude.get_session(), "x {}", ["a"], concurrency=1000)
    assert server.requests == []


def test_the_stand_ins_rules_apply_to_any_request_in_any_order():
    import httpx

    from nb_claude.testing import StandInServer

    def ask(server: StandInServer, text: str) -> httpx.Response:
        return httpx.post(server.url + "/chat/completions", headers={"authorization": "Bearer k"},
                          json={"model": "claude-opus-4-8", "max_tokens": 50,
                                "messages": [{"role": "user", "content": text}]},
                          trust_env=False)

    with StandInServer(latency=0.15) as server:
        server.fail_when("bad item", 503, "scripted outage")
        started = time.monotonic()
        assert ask(server, "a good item").status_code == 200
        assert time.monotonic() - started >= 0.15  # latency on every request
        failed = ask(server, "this bad item fails")
        assert failed.status_code == 503 and "scripted outage" in failed.text
        assert ask(server, "still good").status_code == 200  # the rule is not used up
        server.rate_limit(0.4, retry_after=2)
        limited = ask(server, "a good item")
        assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
        time.sleep(0.4)
        assert ask(server, "a good item").status_code == 200
        threads = [threading.Thread(target=ask, args=(server, f"q{i}")) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert server.max_in_flight == 4
        server.latency = 0.0
        server.reset()
        assert server.latency == 0.15 and server.max_in_flight == 0
        assert ask(server, "bad item again").status_code == 200  # reset forgets the rules


def test_each_with_attach_names_a_column(ip, run, server):
    from PIL import Image

    ip.user_ns["shots"] = pd.DataFrame({"name": ["a", "b"],
                                        "picture": [Image.new("RGB", (20, 20), "red"),
                                                    Image.new("RGB", (20, 20), "blue")]})
    cell = run("%%claude --each shots --attach picture --out seen\nDescribe {name}")
    assert cell.error is None, cell.error
    assert all(r.body["messages"][0]["content"][0]["type"] == "image" for r in server.requests)
    assert len(server.requests) == 2 and (ip.user_ns["seen"]["error"] == "").all()
    two = run("%%claude --each shots --attach picture,name\nDescribe {name}")
    assert "one column" in str(two.error)


# -- the replay file: read once, written in bursts ---------------------------------------

def test_the_replay_file_is_read_once_and_written_in_bursts_without_syncing(
        configured, server, replaying, monkeypatch):
    from nb_claude import _batch_gate, _replay

    calls = {"get": 0, "fsync": 0, "writes": 0}
    real_get, real_fsync, real_append = (_replay.ReplayFile.get, _replay.os.fsync,
                                         _replay.ReplayFile._append)

    def get(self: Any, key: str) -> Any:
        calls["get"] += 1
        return real_get(self, key)

    def fsync(fd: int) -> None:
        calls["fsync"] += 1
        real_fsync(fd)

    def append(self: Any, line: bytes, *, sync: bool) -> None:
        calls["writes"] += 1
        assert line.endswith(b"\n")  # whole lines only
        real_append(self, line, sync=sync)

    monkeypatch.setattr(_replay.ReplayFile, "get", get)
    monkeypatch.setattr(_replay.os, "fsync", fsync)
    monkeypatch.setattr(_replay.ReplayFile, "_append", append)
    monkeypatch.setattr(_batch_gate.Appender, "LINGER", 0.05)
    server.reply(f"quoting the key {SENTINEL_KEY} back")  # the first answer holds the key
    nb_claude.map("Summarise: {text}", reviews(40), concurrency=8, view=Recording())
    assert calls["get"] == 0  # no file yet: nothing to look up, before or during the run
    assert calls["fsync"] == 0 and 1 <= calls["writes"] < 40  # bursts, not one per answer
    text = replaying.read_text()
    entries = [json.loads(line) for line in text.splitlines()]
    assert len(entries) == 40 and sorted(e["cell"]["item"] for e in entries) == list(range(40))
    assert SENTINEL_KEY not in text and "quoting the key *** back" in text

    calls.update(get=0)
    server.reset()
    again = nb_claude.map("Summarise: {text}", reviews(60), concurrency=8, view=Recording())
    assert calls["get"] == 60  # each item looked up once, while preparing; none per send
    assert len(server.requests) == 20 and (again["error"] == "").all()
    assert len(replaying.read_text().splitlines()) == 60


def test_a_burst_keeps_the_files_rules(tmp_path):
    from nb_claude._replay import ReplayError, ReplayFile, ReplayWarning

    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    reply = {"text": "ok", "finish_reason": "end_turn"}
    path = tmp_path / "notes.jsonl"
    path.write_text("just some notes\nmore notes\n")
    with pytest.raises(ReplayError, match="not a replay file"):
        ReplayFile(path).put_many([("k1", reply, body, None)])
    assert path.read_text() == "just some notes\nmore notes\n"
    good = tmp_path / "replay.jsonl"
    ReplayFile(good).put(key="k0", reply=reply, request=body)
    with good.open("ab") as handle:
        handle.write(b'{"v":1,"key":"cut')  # a writer killed mid-line
    assert ReplayFile(good).put_many([("k1", reply, body, {"cell": {"item": 1}}),
                                      ("k2", reply, body, None)]) == 2
    fresh = ReplayFile(good)
    with pytest.warns(ReplayWarning, match="skipped corrupt line"):  # the cut line, only
        assert fresh.keys() == {"k0", "k1", "k2"}
    assert fresh.get("k1")["cell"] == {"item": 1}
    with pytest.raises(ValueError, match="extra may not set key"):
        fresh.put_many([("k3", reply, body, {"key": "other"})])


# -- throttled items go back in the queue --------------------------------------------------

def test_an_item_still_rate_limited_after_its_retries_goes_back_in_the_queue(configured,
                                                                            server):
    configured.update(max_retries=1)
    server.rate_limit(0.8, retry_after=0.3)
    result = nb_claude.map("Summarise: {text}", reviews(6), concurrency=3, view=Recording())
    assert (result["error"] == "").all(), result["error"].tolist()
    # Two attempts each (max_retries=1) were not enough: some items were sent again later.
    assert len(server.requests) > 2 * 6


def test_a_rate_limit_that_does_not_end_makes_errors_after_a_few_requeues(configured, server):
    from nb_claude._batch import REQUEUES

    configured.update(max_retries=0)
    server.rate_limit(60, retry_after=0.05)
    result = nb_claude.map("Summarise: {text}", reviews(3), concurrency=3, view=Recording())
    assert result["error"].str.contains("rate limited").all()
    assert len(server.requests) == 3 * (1 + REQUEUES)


# -- attachments are converted once ---------------------------------------------------------

def test_each_items_attachments_are_converted_once(configured, server, monkeypatch):
    from PIL import Image

    from nb_claude._engine import Engine

    converted: list[int] = []
    real = Engine.attachments

    def counting(self: Any, values: Any, **kwargs: Any) -> Any:
        converted.append(len(values))
        return real(self, values, **kwargs)

    monkeypatch.setattr(Engine, "attachments", counting)
    shots = pd.DataFrame({"name": ["a", "b", "c"],
                          "picture": [Image.new("RGB", (20, 20), c) for c in ("red", "blue",
                                                                              "green")]})
    result = nb_claude.map("Describe {name}", shots, attach="picture", view=Recording())
    assert (result["error"] == "").all() and len(server.requests) == 3
    assert converted == [1, 1, 1]  # once each: the key, the estimate and the request share it
    assert all(r.body["messages"][0]["content"][0]["type"] == "image" for r in server.requests)


# -- the view is always settled; one truthful summary --------------------------------------

def test_a_failing_run_still_finishes_its_view_with_a_one_line_note(configured, server,
                                                                   monkeypatch):
    from nb_claude._engine import Engine

    def broken(self: Any, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("usage ledger\nunavailable")

    monkeypatch.setattr(Engine, "count_side_usage", broken)
    view = Recording()
    with pytest.raises(RuntimeError, match="usage ledger"):
        nb_claude.map("Summarise: {text}", reviews(5), view=view)
    ((progress, note),) = view.finished
    assert progress.state == "failed" and progress.done == 5
    assert note == "failed: RuntimeError: usage ledger unavailable"


def test_a_stopped_runs_summary_counts_the_rows_not_run(ip, configured, server):
    from IPython.utils.capture import capture_output

    from nb_claude._batch_magic import _summary

    server.latency = 0.05
    token = CancelToken()
    threading.Timer(0.12, token.cancel).start()
    batch = Batch(nb_claude.get_session(), "Summarise: {text}", reviews(40), concurrency=2)
    result = batch.run(view=Recording(), cancel=token)
    done = int((result["error"] == "").sum())
    assert 0 < done < 40 and batch.state == "stopped"
    with capture_output() as captured:
        _summary(batch, "labels", result)
    (shown,) = [o.data["text/plain"] for o in captured.outputs]
    assert f"labels <- 40 rows · 0 errors · {40 - done} not run · " in shown
    assert f"stopped: {done} of 40 done" in shown and "(estimate)" in shown


def test_the_magic_shows_one_summary(ip, run, server):
    ip.user_ns["reviews"] = reviews(6)
    cell = run("%%claude --each reviews --out labels\nSummarise: {text}")
    assert cell.error is None
    summaries = [o.data["text/plain"] for o in cell.outputs
                 if "rows ·" in o.data.get("text/plain", "") or "done ·" in
                 o.data.get("text/plain", "")]
    assert summaries == [summaries[0]] and summaries[0].startswith("labels <- 6 rows · ")
    assert "~$" in summaries[0] and "(estimate)" in summaries[0]
    (meta,) = [o.metadata for o in cell.outputs if "rows ·" in o.data.get("text/plain", "")]
    assert meta == {"nb_claude": {"batch": {"total": 6, "done": 6, "errors": 0, "replayed": 0,
                                            "sent": 6, "not_run": 0, "state": "finished"}}}


def test_progress_says_the_stand_ins_cost_is_an_estimate(configured, server):
    view = Recording()
    nb_claude.map("Summarise: {text}", reviews(4), view=view)
    final, _ = view.finished[0]
    assert final.estimated is True and final.cost_usd > 0
    from nb_claude._batch_view import summary_text

    assert f"~${final.cost_usd:,.4f} (estimate)" in summary_text(final)


def test_the_stand_in_queues_a_burst_of_new_connections():
    """64 connections opened at once (a batch starting) are all queued and answered at
    once; with a listen backlog of 5 the kernel drops the rest, which wait a second for
    their retransmission (or, under load, are reset)."""
    import socket

    from nb_claude.testing import StandInServer

    with StandInServer() as standin:
        host, port = standin.url.split("//")[1].split("/")[0].split(":")
        started = time.monotonic()
        sockets = []
        for _ in range(64):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex((host, int(port)))
            sockets.append(sock)
        try:
            answers = []
            for sock in sockets:
                sock.settimeout(5)
                sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
                             b"Connection: close\r\n\r\n")
                answers.append(sock.recv(12))
            elapsed = time.monotonic() - started
        finally:
            for sock in sockets:
                sock.close()
    assert answers == [b"HTTP/1.1 200"] * 64
    assert elapsed < 0.8, elapsed  # no SYN waited for a retransmission


def test_strict_replay_fails_the_cell_for_unrecorded_items_and_keeps_the_rest(
        ip: Any, run: Any, server: Any, replaying: Path, configured: _config.Settings) -> None:
    from nb_claude._errors import ReplayMissError

    assert run("items = ['apple', 'pear']").error is None
    assert run("%%claude --each items --out answers\nName a colour of {}").error is None
    sent = len(server.requests)
    configured.update(replay_mode="replay")
    assert run("%%claude --each items --out answers\nName a colour of {}").error is None
    assert run("items.append('plum')").error is None
    cell = run("%%claude --each items --out answers\nName a colour of {}")
    assert isinstance(cell.error, ReplayMissError)
    assert "1 of 3 items are not in the replay file" in str(cell.error)
    assert len(server.requests) == sent == 2  # strict: nothing sent
    answers = ip.user_ns["answers"]
    assert list(answers["error"] == "") == [True, True, False]
