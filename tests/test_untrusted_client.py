"""The transport treats what comes back as untrusted: wrong base URLs, odd streams,
huge lines, slow first bytes, bad settings and a key that must not blank out prose."""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import SENTINEL_KEY

import nb_claude
from nb_claude import _config
from nb_claude._client import Client
from nb_claude._errors import APIStatusError, APITimeoutError, ConfigError, StreamError
from nb_claude._sse import LineTooLong, ServerSentEvent, SSEDecoder, iter_events
from nb_claude.testing import DEMO_KEY

BODY = {"model": "anthropic/claude-opus-4-8", "max_tokens": 64,
        "messages": [{"role": "user", "content": "Hi"}]}


def one_line(error: BaseException | None, *needles: str) -> str:
    text = str(error)
    assert error is not None and "\n" not in text and SENTINEL_KEY not in text
    for needle in needles:
        assert needle in text, text
    return text


def history() -> list[tuple[str, str]]:
    return [(t.prompt, t.reply.text) for t in nb_claude.get_session().history]


# --------------------------------------------------------------------------- redaction


def test_prose_with_the_old_demo_key_survives_save_and_a_real_key_does_not(run, server,
                                                                           tmp_path):
    prose = "Replies come from the offline stand-in server, not from Claude."
    session = nb_claude.get_session()
    for key in ("stand-in", DEMO_KEY):  # the old demo key, then the new one
        _config.set_api_key(key)
        server.reply(prose)
        assert run("%%claude\nWhere do replies come from?").error is None
        saved = session.save(tmp_path / "s.json").read_text()
        assert "offline stand-in server" in saved and "***" not in saved
    _config.set_api_key(SENTINEL_KEY)
    server.reply(f"Your key is {SENTINEL_KEY}, said the page.")
    assert run("%%claude\nEcho my key").error is None
    saved = session.save(tmp_path / "s.json").read_text()
    assert SENTINEL_KEY not in saved and "Your key is ***, said the page." in saved
    assert "offline stand-in server" in saved


def test_only_key_like_values_are_redacted(monkeypatch):
    monkeypatch.delenv("AIMLAPI_KEY", raising=False)
    for key, text in (("stand-in", "the stand-in server"), ("short-key-123", "a short-key-123"),
                      ("a key with spaces in it", "a key with spaces in it!")):
        _config.set_api_key(key)
        assert _config.redact(text) == text
    _config.set_api_key(DEMO_KEY)
    assert _config.redact(f"Bearer {DEMO_KEY}.") == "Bearer ***."
    monkeypatch.setenv("AIMLAPI_KEY", SENTINEL_KEY)  # both sources are redacted
    assert _config.redact(f"{SENTINEL_KEY} {DEMO_KEY}") == "*** ***"
    _config.set_api_key(None)


# --------------------------------------------------------------------------- SSE decoder

# Every kind of line end, a CR ending one line right before the next line's bytes,
# an empty data field, a BOM, a comment and an event without a blank line at EOF.
MIXED = (b"\xef\xbb\xbfdata: a\rdata: b\ndata: c\r\n\r"
         b": note\r\ndata:\r\n\n"
         b"event: error\rdata: {\"x\":1}\n\r"
         b"data: caf\xc3\xa9\r\rdata: \xe2\x80\xa8\r\n\r\n"
         b"id: 7\ndata: last")
EXPECTED = [ServerSentEvent("message", "a\nb\nc"), ServerSentEvent("message", ""),
            ServerSentEvent("error", '{"x":1}'), ServerSentEvent("message", "café"),
            ServerSentEvent("message", "\u2028"), ServerSentEvent("message", "last", "7")]


def test_mixed_line_ends_at_every_split_point():
    assert list(iter_events([MIXED])) == EXPECTED
    for a, b in itertools.combinations(range(len(MIXED) + 1), 2):
        pieces = [MIXED[:a], MIXED[a:b], MIXED[b:]]
        assert list(iter_events(pieces)) == EXPECTED, (a, b)


def test_a_cr_inside_a_read_ends_its_line_and_a_later_lf_is_not_swallowed():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\rdata: b") == []
    assert decoder.feed(b"\ndata: c\n\n") == [ServerSentEvent("message", "a\nb\nc")]
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\n") == []  # the second half of a CRLF, not an empty line
    assert decoder.feed(b"\n") == [ServerSentEvent("message", "a")]


def test_a_bom_split_across_reads_is_skipped_once():
    assert list(iter_events([b"\xef", b"\xbb", b"\xbfdata: x\n\n"])) == [
        ServerSentEvent("message", "x")]
    # Only at the very start: a second BOM is part of the field name.
    assert list(iter_events([b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\n"])) == []
    assert list(iter_events([b"\xef\xbb"])) == []


def test_an_empty_data_event_is_dispatched():
    assert list(iter_events([b"data:\n\n", b"data\n\n"])) == [ServerSentEvent("message", ""),
                                                              ServerSentEvent("message", "")]
    assert list(iter_events([b"id: 3\n\n", b": only a comment\n\n"])) == []


def test_a_line_over_the_limit_raises():
    decoder = SSEDecoder(max_line=1000)
    decoder.feed(b"data: " + b"x" * 900)
    with pytest.raises(LineTooLong):
        decoder.feed(b"x" * 200)
    with pytest.raises(LineTooLong):  # a whole over-long line in one read
        SSEDecoder(max_line=1000).feed(b"data: ok\n" + b"y" * 1001 + b"\n")
    assert SSEDecoder(max_line=1000).feed(b"data: " + b"z" * 990 + b"\n\n")[0].data == "z" * 990


def test_a_long_line_costs_linear_time():
    decoder = SSEDecoder(max_line=64 << 20)
    piece = b"x" * 65536
    started = time.perf_counter()
    decoder.feed(b"data: ")
    for _ in range(512):  # 32 MB in 64 KB reads: the old decoder took over 5 s
        decoder.feed(piece)
    (event,) = decoder.feed(b"\n\n")
    assert time.perf_counter() - started < 2.0
    assert len(event.data) == 32 << 20


def _endless_line(request: httpx.Request) -> httpx.Response:
    piece = b"x" * (1 << 20)

    def body() -> Iterator[bytes]:
        yield b"data: "
        for _ in range(20):  # 20 MB with no line end
            yield piece

    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())


def test_a_huge_line_from_the_service_is_a_one_line_error(configured):
    session = nb_claude.Session("huge", transport=httpx.MockTransport(_endless_line))
    with pytest.raises(StreamError) as info:
        session.ask("q", display=False)
    one_line(info.value, "line over 16 MB")


# --------------------------------------------------------------------------- not the API


def test_a_redirect_is_an_error_and_is_never_followed(run, server):
    before = history()
    server.redirect("https://elsewhere.example/v1/chat/completions")
    cell = run("%%claude\nq")
    one_line(cell.error, "HTTP 307", "elsewhere.example", "check NB_CLAUDE_BASE_URL")
    server.redirect(server.url + "/chat/completions", status=301)  # even to the same host
    server.reply("must not be fetched")
    cell = run("%%claude --no-stream\nq")
    one_line(cell.error, "HTTP 301", "127.0.0.1", "base URL")
    assert len(server.requests) == 2 and server.pending() == 1
    assert history() == before


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("script, needle", [
    (lambda s: s.web_page(), "answered with a web page, not the API: check NB_CLAUDE_BASE_URL"),
    (lambda s: s.raw(200, "<!doctype html><p>hi</p>", headers={"content-type": "text/plain"}),
     "answered with a web page"),
    (lambda s: s.raw(204), "answered with no content (HTTP 204)"),
    (lambda s: s.raw(200, b"", headers={"content-type": "text/event-stream"}),
     "answered with no content"),
], ids=["html page", "page labelled text", "204", "empty 200"])
def test_an_answer_that_is_not_the_api_is_a_one_line_error(run, server, stream, script, needle):
    before = history()
    script(server)
    cell = run("%%claude\nq" if stream else "%%claude --no-stream\nq")
    one_line(cell.error, needle)
    assert len(server.requests) == 1 and history() == before
    server.reply("fine again")
    assert run("%%claude\nq").error is None


# --------------------------------------------------------------------------- first byte


def test_stalled_headers_are_bounded_by_the_first_byte_timeout(configured, server):
    client = Client(base_url=server.url, timeout=30, first_byte_timeout=0.5, max_retries=2)
    for _ in range(3):
        server.reply("too late", first_byte_delay=2)
    started = time.monotonic()
    with pytest.raises(APITimeoutError) as info:
        list(client.stream(BODY))
    elapsed = time.monotonic() - started
    client.close()
    one_line(info.value, "first-byte wait of 0.5 s", "first_byte_timeout",
             "gave up after 3 attempts")
    assert 1.5 <= elapsed < 4.5  # 3 waits of 0.5 s and two back-offs, not 3 x 30 s
    assert len(server.requests) == 3


def test_slow_events_after_prompt_headers_wait_for_the_read_timeout(configured, server):
    client = Client(base_url=server.url, timeout=5, first_byte_timeout=0.3, max_retries=0)
    server.reply(chunks=["one ", "two ", "three"], delay=1.0, split=False, keepalive=False)
    text = "".join(choice.get("delta", {}).get("content") or ""
                   for event in client.stream(BODY) for choice in event.get("choices", []))
    assert text == "one two three"
    # A whole reply is written before its headers: those wait for the read timeout.
    server.reply("whole", first_byte_delay=1.0)
    data = client.create(BODY)
    assert data["choices"][0]["message"]["content"] == "whole"
    client.close()


# --------------------------------------------------------------------------- stream errors


def test_the_client_does_not_claim_a_partial_reply_was_kept(configured, server):
    client = Client(base_url=server.url, max_retries=0)
    server.drop(after_chunks=0)
    with pytest.raises(StreamError) as info:
        list(client.stream(BODY))
    assert "kept" not in one_line(info.value, "connection dropped mid-reply")
    client.close()
    server.stall(3, after_chunks=0)
    client = Client(base_url=server.url, max_retries=0, timeout=0.4, first_byte_timeout=2)
    with pytest.raises(StreamError) as info:
        list(client.stream(BODY))
    assert "kept" not in one_line(info.value, "stalled longer than the read timeout (0.4 s)")
    client.close()


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize("name, value", [
    ("timeout", 0), ("timeout", -1), ("timeout", float("nan")), ("timeout", "10"),
    ("connect_timeout", 0), ("first_byte_timeout", -0.5), ("first_byte_timeout", True),
    ("base_url", "api.aimlapi.com/v1"), ("base_url", "ftp://api.aimlapi.com/v1"),
    ("base_url", "https://"), ("prices", [("claude-opus-4-8", 5, 25)]),
    ("prices", {"claude-opus-4-8": (5.0,)}), ("prices", {"claude-opus-4-8": (-1, 25)}),
    ("prices", {"claude-opus-4-8": ("5", "25")}), ("replay_tools", "always"),
    ("updates_per_second", 0), ("max_retries", -1), ("max_retries", 1.5),
    ("max_tokens", 0), ("max_tokens", 200_000), ("replay_mode", "sometimes"),
    ("model", ""), ("stream", "yes"),
])
def test_invalid_settings_are_one_line_config_errors(name, value):
    before = getattr(_config.settings, name)
    with pytest.raises(ConfigError) as info:
        _config.settings.update(**{name: value, "max_steps": 99})
    one_line(info.value, name)
    assert getattr(_config.settings, name) == before and _config.settings.max_steps != 99


def test_valid_settings_pass(configured):
    _config.settings.update(timeout=0.5, connect_timeout=1, first_byte_timeout=30.0,
                            base_url="http://localhost:8000/v1", replay_tools="run",
                            prices={"m": (0, 1.5)}, updates_per_second=0.5, max_retries=0,
                            replay_mode="on")
    for name in ("timeout", "base_url", "prices"):
        _config.Settings.validate(name, getattr(_config.settings, name))


def test_a_base_url_without_scheme_from_the_environment_fails_in_one_line(configured, run):
    _config.settings.base_url = "api.aimlapi.com/v1"  # as NB_CLAUDE_BASE_URL would set it
    cell = run("%%claude\nq")
    one_line(cell.error, "base_url must be an http(s) URL", "api.aimlapi.com/v1")


def test_a_socks_proxy_without_socksio_is_a_one_line_config_error(configured, monkeypatch):
    monkeypatch.setitem(sys.modules, "socksio", None)  # as if httpx[socks] were not installed
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:1080")
    _config.settings.update(base_url="https://api.example.invalid/v1")
    with pytest.raises(ConfigError) as info:
        nb_claude.get_session().ask("q", display=False)
    one_line(info.value, "install httpx[socks] or unset ALL_PROXY")


def test_a_key_that_cannot_go_in_a_header_is_a_config_error(configured, server):
    _config.set_api_key("sk-ключ-0123456789abcdef")
    with pytest.raises(ConfigError) as info:
        nb_claude.get_session().ask("q", display=False)
    one_line(info.value, "run %claude_login again")
    assert "ключ" not in str(info.value) and not server.requests


def test_the_client_reads_the_key_at_request_time(configured, server):
    client = Client(base_url=server.url, max_retries=0)
    _config.set_api_key(DEMO_KEY)
    server.reply("one")
    list(client.stream(BODY))
    assert server.requests[-1].headers["authorization"] == f"Bearer {DEMO_KEY}"
    _config.set_api_key(None)  # back to $AIMLAPI_KEY
    server.reply("two")
    list(client.stream(BODY))
    assert server.requests[-1].headers["authorization"] == f"Bearer {SENTINEL_KEY}"
    client.close()


class _CutBody(httpx.SyncByteStream):
    def __iter__(self) -> Iterator[bytes]:
        yield b'{"error": {"mess'
        raise httpx.ReadError("connection reset")


def test_an_error_whose_body_is_cut_still_reports_its_status(configured):
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503, stream=_CutBody())

    client = Client(base_url="http://127.0.0.1:9/v1", max_retries=1,
                    transport=httpx.MockTransport(handler))
    with pytest.raises(APIStatusError) as info:
        client.create(BODY)
    one_line(info.value, "unavailable (HTTP 503)", "gave up after 2 attempts")
    assert len(calls) == 2 and all(r.headers["authorization"] == "Bearer ***" for r in calls)
