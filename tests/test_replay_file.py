"""The replay file: request keys, summaries, and a JSON Lines store safe for many writers."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nb_claude._config import REPLAY_MODES, resolve_mode
from nb_claude._errors import ConfigError
from nb_claude._replay import (
    ReplayError,
    ReplayFile,
    ReplayWarning,
    request_key,
    request_summary,
)
from nb_claude._stream import Reply, ToolCall, Usage

ROOT = pathlib.Path(__file__).resolve().parents[1]
SECRET = "sk-aiml-THIS-IS-A-SECRET-0123456789"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
PDF = b"%PDF-1.4\n" + os.urandom(3000) + b"\n%%EOF\n"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def make_body(**changes) -> dict:
    body = {
        "model": "anthropic/claude-opus-4-8",
        "max_tokens": 4096,
        "stream": True,
        "system": "You are a careful data analyst. " * 20,
        "stop_sequences": ["\n\nHuman:"],
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "tools": [{"name": "run_python", "description": "Run code",
                   "input_schema": {"type": "object", "properties": {"code": {"type": "string"}}}}],
        "tool_choice": "auto",
        "metadata": {"user_id": "someone"},
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Explain this plot — größe, 数据, 😀 and the PDF. " * 5},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": b64(PNG)}},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                                "data": b64(PDF)}, "title": "report.pdf"},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                                "data": "a,b\n1,2\n"}, "title": "data.csv"},
            ]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me compute."},
                {"type": "tool_use", "id": "toolu_1", "name": "run_python",
                 "input": {"code": "df.describe()", "ratio": 0.1}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "count 3.0",
                 "is_error": False},
            ]},
        ],
    }
    body.update(changes)
    return body


def reorder(value):
    """The same JSON value with every dict's insertion order reversed."""
    if isinstance(value, dict):
        return {k: reorder(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reorder(v) for v in value]
    return value


def reply_dict(text: str = "The answer is 42.") -> dict:
    return Reply(text=text, finish_reason="end_turn", raw_finish_reason="end_turn",
                 model="claude-opus-4-8", id="msg_1", usage=Usage(10, 20, 0.001, 2.0),
                 tool_calls=[ToolCall("call_1", "run_python", '{"code": "1+1"}')]).to_dict()


# ---------------------------------------------------------------- request_key


def test_key_is_sha256_of_canonical_body_without_stream_and_metadata():
    body = make_body()
    canonical = {k: v for k, v in body.items() if k not in ("stream", "metadata")}
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert request_key(body) == hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_key_ignores_dict_order_stream_and_metadata():
    key = request_key(make_body())
    assert request_key(reorder(make_body())) == key
    assert request_key(make_body(stream=False)) == key
    body = make_body()
    del body["stream"], body["metadata"]
    assert request_key(body) == key
    assert request_key(make_body(metadata={"user_id": "someone else"})) == key


def test_key_changes_with_one_attachment_byte():
    key = request_key(make_body())
    body = make_body()
    changed = bytearray(PNG)
    changed[100] ^= 1
    body["messages"][0]["content"][1]["source"]["data"] = b64(bytes(changed))
    assert request_key(body) != key


@pytest.mark.parametrize("change", [
    {"max_tokens": 4097},
    {"model": "claude-opus-4-8"},
    {"system": "You are terse."},
    {"thinking": {"type": "disabled"}},
    {"tool_choice": "none"},
    {"stop_sequences": []},
    {"temperature": 0.5},
])
def test_key_changes_with_any_option(change):
    assert request_key(make_body(**change)) != request_key(make_body())


def test_key_changes_with_message_text_and_order():
    body = make_body()
    body["messages"][0]["content"][0]["text"] += "?"
    assert request_key(body) != request_key(make_body())
    body = make_body()
    body["messages"][0]["content"][1:3] = body["messages"][0]["content"][2:0:-1]
    assert request_key(body) != request_key(make_body())


def test_key_is_the_same_in_another_process():
    script = textwrap.dedent("""
        import json, sys
        from nb_claude._replay import request_key
        def rev(v):
            if isinstance(v, dict):
                return {k: rev(v[k]) for k in reversed(list(v))}
            return [rev(x) for x in v] if isinstance(v, list) else v
        body = rev(json.loads(sys.stdin.buffer.read().decode("utf-8")))
        sys.stdout.write(request_key(body))
    """)
    body = make_body()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "12345",
           "PYTHONIOENCODING": "latin-1"}
    result = subprocess.run([sys.executable, "-c", script], input=json.dumps(body).encode(),
                            capture_output=True, env=env, timeout=60, check=True)
    assert result.stdout.decode() == request_key(body)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_key_property_order_free_and_stream_free(body):
    key = request_key(body)
    assert len(key) == 64
    assert request_key(reorder(body)) == key
    assert request_key({**body, "stream": True}) == request_key({**body, "stream": False})
    roundtrip = json.loads(json.dumps(body))
    assert request_key(roundtrip) == key


# ---------------------------------------------------------------- request_summary


def test_summary_is_small_and_has_no_data_or_credentials():
    body = make_body(api_key=SECRET, headers={"Authorization": f"Bearer {SECRET}"})
    body["messages"].append({"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64(PNG)}}]})
    summary = request_summary(body)
    text = json.dumps(summary, ensure_ascii=False)
    assert SECRET not in text and "Bearer" not in text and "Authorization" not in text
    assert "someone" not in text  # metadata is not part of the summary
    for data in (b64(PNG), b64(PDF)):
        assert data[:40] not in text and data[-40:] not in text
    assert len(text) < 3000, len(text)

    assert summary["model"] == "anthropic/claude-opus-4-8"
    assert summary["max_tokens"] == 4096
    assert summary["system"]["chars"] == len(body["system"])
    assert summary["system"]["text"] == body["system"][:200]
    assert summary["stop_sequences"] == ["\n\nHuman:"]
    assert summary["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert summary["tools"] == ["run_python"]
    assert summary["tool_choice"] == "auto"

    first = summary["messages"][0]
    assert first["role"] == "user"
    text_block, image, pdf, csv = first["content"]
    original = body["messages"][0]["content"][0]["text"]
    assert text_block == {"type": "text", "chars": len(original), "text": original[:80]}
    assert image == {"type": "image", "media_type": "image/png",
                     "sha256": hashlib.sha256(PNG).hexdigest(), "bytes": len(PNG)}
    assert pdf == {"type": "document", "media_type": "application/pdf",
                   "sha256": hashlib.sha256(PDF).hexdigest(), "bytes": len(PDF),
                   "title": "report.pdf"}
    assert csv["sha256"] == hashlib.sha256(b"a,b\n1,2\n").hexdigest() and csv["bytes"] == 8
    assert summary["messages"][1]["content"][1] == {"type": "tool_use", "id": "toolu_1",
                                                    "name": "run_python"}
    assert summary["messages"][2]["content"][0]["tool_use_id"] == "toolu_1"
    assert summary["messages"][3]["content"][0] == {
        "type": "image_url", "media_type": "image/png",
        "sha256": hashlib.sha256(PNG).hexdigest(), "bytes": len(PNG)}


def test_summary_of_plain_string_messages():
    summary = request_summary({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert summary["messages"] == [{"role": "user", "content": [
        {"type": "text", "chars": 2, "text": "hi"}]}]
    assert "system" not in summary and "tools" not in summary


# ---------------------------------------------------------------- ReplayFile


def test_put_get_round_trip(tmp_path):
    path = tmp_path / "nb_claude_replay.jsonl"
    body = make_body(api_key=SECRET)
    key = request_key(body)
    replay = ReplayFile(str(path))
    assert replay.path == path
    assert replay.get(key) is None and len(replay) == 0 and not path.exists()

    entry = replay.put(key, reply=reply_dict(), request=body, extra={"cell": "abc"})
    assert entry["v"] == 1 and entry["key"] == key and entry["cell"] == "abc"
    assert entry["request"] == request_summary(body)
    assert datetime.fromisoformat(entry["created"].replace("Z", "+00:00")).utcoffset().seconds == 0

    raw = path.read_bytes()
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    assert SECRET.encode() not in raw and b64(PNG)[:40].encode() not in raw
    assert json.loads(raw) == entry

    again = ReplayFile(path).get(key)
    assert again == entry
    restored = Reply.from_dict(again["reply"])
    assert restored.text == "The answer is 42." and restored.tool_calls[0].input == {"code": "1+1"}
    assert replay.get(key) == entry and len(replay) == 1 and replay.keys() == {key}
    assert key in replay and "nope" not in replay


def test_extra_cannot_replace_entry_fields(tmp_path):
    with pytest.raises(ValueError):
        ReplayFile(tmp_path / "r.jsonl").put("k", reply={}, request={}, extra={"reply": {}})


def test_last_entry_wins(tmp_path):
    replay = ReplayFile(tmp_path / "r.jsonl")
    replay.put("k", reply=reply_dict("first"), request=make_body())
    replay.put("other", reply=reply_dict("other"), request=make_body())
    assert replay.get("k")["reply"]["text"] == "first"
    replay.put("k", reply=reply_dict("second"), request=make_body())
    assert replay.get("k")["reply"]["text"] == "second"
    assert ReplayFile(tmp_path / "r.jsonl").get("k")["reply"]["text"] == "second"
    assert len(replay) == 3 and replay.keys() == {"k", "other"}


def test_reload_when_another_instance_appends(tmp_path):
    path = tmp_path / "r.jsonl"
    reader, writer = ReplayFile(path), ReplayFile(path)
    assert reader.get("a") is None
    writer.put("a", reply=reply_dict("A"), request={})
    assert reader.get("a")["reply"]["text"] == "A"
    writer.put("b", reply=reply_dict("B"), request={})
    assert reader.get("b")["reply"]["text"] == "B"
    assert len(reader) == 2


def test_unchanged_file_is_not_read_again(tmp_path):
    path = tmp_path / "r.jsonl"
    ReplayFile(path).put("a", reply=reply_dict("A"), request={})
    replay = ReplayFile(path)
    assert replay.get("a")["reply"]["text"] == "A"
    st_before = os.stat(path)
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b'"A"', b'"Z"'))  # same size, same inode
    os.utime(path, ns=(st_before.st_atime_ns, st_before.st_mtime_ns))
    assert replay.get("a")["reply"]["text"] == "A"  # nothing changed as far as stat can tell
    os.utime(path, ns=(st_before.st_atime_ns, st_before.st_mtime_ns + 10**9))
    assert replay.get("a")["reply"]["text"] == "Z"  # rewritten in place: read again


def test_growth_reads_only_the_tail(tmp_path):
    path = tmp_path / "r.jsonl"
    ReplayFile(path).put("a", reply=reply_dict("A"), request={})
    ReplayFile(path).put("z", reply=reply_dict("Z"), request={})
    replay = ReplayFile(path)
    assert replay.get("a")["reply"]["text"] == "A"
    # Garble the first line in place, keeping its line end: only a full read would notice.
    first, rest = path.read_bytes().split(b"\n", 1)
    path.write_bytes(b"#" * len(first) + b"\n" + rest)
    ReplayFile(path).put("b", reply=reply_dict("B"), request={})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert replay.get("b")["reply"]["text"] == "B"
        assert replay.get("a")["reply"]["text"] == "A"


def test_replaced_file_is_read_from_scratch(tmp_path):
    path = tmp_path / "r.jsonl"
    replay = ReplayFile(path)
    replay.put("a", reply=reply_dict("A"), request={})
    assert replay.get("a") is not None
    other = tmp_path / "other.jsonl"
    ReplayFile(other).put("b", reply=reply_dict("B"), request={})
    os.replace(other, path)  # what `git checkout` does
    assert replay.get("a") is None and replay.get("b")["reply"]["text"] == "B"
    path.unlink()
    assert replay.get("b") is None and len(replay) == 0


def write_lines(path, *lines: bytes) -> None:
    path.write_bytes(b"".join(lines))


def good_line(key: str, text: str) -> bytes:
    return json.dumps({"v": 1, "key": key, "reply": {"text": text}}).encode() + b"\n"


def test_corrupt_and_truncated_lines_are_skipped_with_one_warning_each(tmp_path):
    path = tmp_path / "r.jsonl"
    torn = good_line("torn", "never finished")[:-20]
    write_lines(path, good_line("a", "A"), b"{not json\n", b"[1, 2]\n", b"\n",
                b'{"key": "no-reply"}\n', b"\xff\xfe\n", good_line("b", "B"), torn)
    replay = ReplayFile(path)
    with pytest.warns(ReplayWarning) as caught:
        assert replay.get("a")["reply"]["text"] == "A"
    messages = [str(w.message) for w in caught]
    assert len(messages) == 5, messages
    for lineno, message in zip((2, 3, 5, 6, 8), messages, strict=True):
        assert f"{path}:{lineno}:" in message
    assert "truncated" in messages[-1]
    assert replay.get("b")["reply"]["text"] == "B" and replay.get("torn") is None
    assert len(replay) == 2

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no new warnings for lines already reported
        replay.get("a")
        ReplayFile(path).put("c", reply=reply_dict("C"), request={})
        assert replay.get("c")["reply"]["text"] == "C"
        ReplayFile(path).put("d", reply=reply_dict("D"), request={})
        assert replay.get("d")["reply"]["text"] == "D"
    assert len(replay) == 4

    # The new entry was not glued onto the torn line.
    assert path.read_bytes().split(b"\n")[7] == torn
    with pytest.warns(ReplayWarning) as caught:
        assert ReplayFile(path).keys() == {"a", "b", "c", "d"}
    assert len(caught) == 5 and "corrupt" in str(caught[-1].message)


def test_valid_last_line_without_newline_is_used_once(tmp_path):
    path = tmp_path / "r.jsonl"
    write_lines(path, good_line("a", "A"), good_line("b", "B")[:-1])
    replay = ReplayFile(path)
    assert replay.get("b")["reply"]["text"] == "B" and len(replay) == 2
    replay.put("c", reply=reply_dict("C"), request={})
    assert len(replay) == 3 and replay.keys() == {"a", "b", "c"}
    assert path.read_bytes().count(b"\n") == 3


def test_unwritable_path_is_a_one_line_replay_error(tmp_path):
    with pytest.raises(ReplayError, match="does not exist") as info:
        ReplayFile(tmp_path / "missing" / "r.jsonl").put("k", reply={}, request={})
    assert "\n" not in str(info.value) and info.value.__cause__ is None
    assert not (tmp_path / "missing").exists()
    with pytest.raises(ReplayError, match="cannot write") as info:
        ReplayFile(tmp_path).put("k", reply={}, request={})
    assert "\n" not in str(info.value)
    with pytest.raises(ReplayError, match="cannot read"):
        ReplayFile(tmp_path).get("k")


def test_works_without_fcntl(tmp_path, monkeypatch):
    import nb_claude._replay as cache

    monkeypatch.setattr(cache, "fcntl", None)
    replay = ReplayFile(tmp_path / "r.jsonl")
    replay.put("k", reply=reply_dict(), request=make_body())
    assert ReplayFile(tmp_path / "r.jsonl").get("k")["reply"]["text"] == "The answer is 42."


WRITER = textwrap.dedent("""
    import sys, threading
    from nb_claude._replay import ReplayFile
    path, proc = sys.argv[1], int(sys.argv[2])

    def payload(key):
        return (key + " — ünïcode\\n") * (50_000 // (len(key) + 12))

    def work(thread):
        replay = ReplayFile(path) if thread % 2 else shared
        for i in range(50):
            key = f"p{proc}-t{thread}-i{i}"
            replay.put(key, reply={"text": payload(key)}, request={"model": "m"})

    shared = ReplayFile(path)
    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
""")


def payload(key: str) -> str:
    return (key + " — ünïcode\n") * (50_000 // (len(key) + 12))


def test_concurrent_writers_never_tear_or_lose_lines(tmp_path):
    path = tmp_path / "r.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(p)], env=env,
                              stderr=subprocess.PIPE) for p in range(4)]

    # Read while they write: a reader must never see a half-written line.
    reader, seen, stop = ReplayFile(path), [], threading.Event()

    def poll():
        while not stop.is_set():
            seen.append(len(reader))
            time.sleep(0.01)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        poller = threading.Thread(target=poll)
        poller.start()
        try:
            for proc in procs:
                _, err = proc.communicate(timeout=300)
                assert proc.returncode == 0, err.decode()
        finally:
            stop.set()
            poller.join()
    assert not [w for w in caught if issubclass(w.category, ReplayWarning)]
    assert seen == sorted(seen)

    expected = {f"p{p}-t{t}-i{i}" for p in range(4) for t in range(8) for i in range(50)}
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    lines = raw[:-1].split(b"\n")
    assert len(lines) == 1600
    keys = set()
    for line in lines:
        entry = json.loads(line)
        assert entry["reply"]["text"] == payload(entry["key"])
        keys.add(entry["key"])
    assert keys == expected

    assert len(reader) == 1600 and reader.keys() == expected
    fresh = ReplayFile(path)
    assert len(fresh) == 1600 and fresh.keys() == expected
    assert all(fresh.get(k)["reply"]["text"] == payload(k) for k in sorted(expected)[::97])


# ---------------------------------------------------------------- resolve_mode


@pytest.mark.parametrize(("value", "default", "expected"), [
    (None, "auto", "auto"),
    ("", "auto", "auto"),
    ("  ", "record", "record"),
    (None, "OFF", "off"),
    ("REPLAY", "auto", "replay"),
    (" Record ", "auto", "record"),
    ("Auto", "off", "auto"),
    ("off", "auto", "off"),
    ("0", "auto", "off"),
    ("false", "auto", "off"),
    ("No", "auto", "off"),
    ("1", "off", "auto"),
    ("true", "off", "auto"),
    ("yes", "off", "auto"),
])
def test_resolve_mode(value, default, expected):
    assert resolve_mode(value, default=default) == expected
    assert expected in REPLAY_MODES


@pytest.mark.parametrize(("value", "default"), [("replays", "auto"), ("rec ord", "auto"),
                                                 (None, "sometimes")])
def test_resolve_mode_rejects_unknown(value, default):
    with pytest.raises(ConfigError) as info:
        resolve_mode(value, default=default)
    message = str(info.value)
    assert "\n" not in message and all(mode in message for mode in REPLAY_MODES)
