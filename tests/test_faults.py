"""The fault suite: what the user sees, what the history holds, and that the next cell works."""

from __future__ import annotations

import socket
import time

import pytest
from conftest import SENTINEL_KEY

import nb_claude
from nb_claude import _config


def shows_one_line(cell, *needles: str) -> None:
    text = str(cell.error)
    assert "\n" not in text and "Traceback" not in cell.stdout + cell.stderr
    for needle in needles:
        assert needle in text, text
    assert SENTINEL_KEY not in text + cell.stdout + cell.stderr


def history(session=None):
    return [(t.prompt, t.reply.text, t.reply.error, t.interrupted)
            for t in (session or nb_claude.get_session()).history]


@pytest.fixture
def seeded(run, server):
    server.reply("Earlier answer.")
    run("%%claude\nEarlier question")
    server.reset()
    return history()


def next_cell_works(run, server, seeded_history) -> None:
    server.reply("Recovered.")
    cell = run("%%claude\nAnd now?")
    assert cell.error is None and "Recovered." in cell.markdown
    assert server.requests[-1].body["messages"][0]["content"] == "Earlier question"


def test_429_with_retry_after_is_honoured(run, server, seeded):
    server.fault(429, "Too Many Requests", headers={"retry-after": "0.4"}).reply("ok")
    started = time.monotonic()
    cell = run("%%claude\nq")
    assert cell.error is None and time.monotonic() - started >= 0.4
    assert len(server.requests) == 2


def test_retry_after_beyond_60_seconds_is_capped_to_the_backoff(run, server, seeded):
    server.fault(429, headers={"retry-after": "3600"}).reply("ok")
    started = time.monotonic()
    assert run("%%claude\nq").error is None
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 529])
def test_retryable_statuses_without_headers_then_success(run, server, seeded, status):
    server.fault(status).reply("ok after retry")
    cell = run("%%claude\nq")
    assert cell.error is None and "ok after retry" in cell.markdown
    assert len(server.requests) == 2


@pytest.mark.parametrize("status, meaning", [(429, "rate limited"), (503, "unavailable"),
                                             (504, "generation timeout"), (529, "overloaded")])
def test_failing_beyond_max_retries_says_retries_were_tried(run, server, seeded, status, meaning):
    _config.settings.update(max_retries=1)
    server.fault(status, headers={"retry-after-ms": "20"})
    server.fault(status, headers={"retry-after-ms": "20"})
    cell = run("%%claude\nq")
    shows_one_line(cell, meaning, "gave up after 2 attempts")
    assert len(server.requests) == 2 and history() == seeded
    next_cell_works(run, server, seeded)


def test_x_should_retry_false_is_not_retried(run, server, seeded):
    server.fault(500, "boom", headers={"x-should-retry": "false"})
    cell = run("%%claude\nq")
    shows_one_line(cell, "internal error", "boom")
    assert len(server.requests) == 1 and history() == seeded


def test_http_500_carrying_an_upstream_400_shows_the_400(run, server, seeded):
    server.fault(500, "messages: text content blocks must be non-empty", upstream_status=400)
    cell = run("%%claude\nq")
    shows_one_line(cell, "rejected the request", "upstream 400",
                   "text content blocks must be non-empty")
    assert len(server.requests) == 1  # a client error will fail the same way again
    next_cell_works(run, server, seeded)


@pytest.mark.parametrize("status, envelope, meaning", [
    (400, "service", "rejected the request"), (400, "openai", "rejected the request"),
    (401, "service", "API key was not accepted"), (401, "openai", "API key was not accepted"),
    (403, "service", "out of credits"), (404, "service", "check the model name"),
    (413, "openai", "too large"),
])
def test_client_errors(run, server, seeded, status, envelope, meaning):
    server.fault(status, "upstream detail", envelope=envelope)
    cell = run("%%claude\nq")
    shows_one_line(cell, meaning, f"HTTP {status}", "upstream detail")
    assert len(server.requests) == 1 and history() == seeded
    next_cell_works(run, server, seeded)


def test_real_validation_error_from_the_stand_in(run, server, seeded):
    cell = run("%%claude -m claude-opus-9\nq")  # passes our check, the service does not know it
    shows_one_line(cell, "HTTP 404")
    assert history() == seeded


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused(run, server, seeded):
    _config.settings.update(base_url=f"http://127.0.0.1:{_closed_port()}/v1", max_retries=1)
    cell = run("%%claude\nq")
    shows_one_line(cell, "could not reach http://127.0.0.1:", "gave up after 2 attempts")
    assert history() == seeded
    _config.settings.update(base_url=server.url)
    next_cell_works(run, server, seeded)


def test_connect_timeout(run, server, seeded):
    # A listening socket that never accepts, with its backlog already full, never
    # completes a handshake: the connect times out.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.1)
    try:
        _config.settings.update(base_url=f"http://127.0.0.1:{port}/v1", connect_timeout=0.3,
                                max_retries=0)
        started = time.monotonic()
        cell = run("%%claude\nq")
        assert time.monotonic() - started < 3
        shows_one_line(cell, "did not answer in time")
        assert history() == seeded
    finally:
        for sock in [*fillers, listener]:
            sock.close()


def test_drop_before_the_first_byte_is_retried(run, server, seeded):
    server.drop().reply("second try")
    cell = run("%%claude\nq")
    assert cell.error is None and "second try" in cell.markdown
    assert len(server.requests) == 2


def test_drop_mid_stream_keeps_the_partial_reply_marked(run, server, seeded):
    server.drop(after_chunks=3)
    cell = run("%%claude\nq")
    shows_one_line(cell, "connection dropped mid-reply", "partial reply was kept")
    assert len(server.requests) == 1
    turn = nb_claude.get_session().history[-1]
    assert turn.reply.text and turn.reply.error and turn.reply.partial
    assert "error: " in cell.markdown.rsplit("<sub>", 1)[1]
    server.reply("next")
    run("%%claude\nnext")
    sent = server.requests[-1].body["messages"]
    assert sent[3] == {"role": "assistant", "content": turn.reply.text.rstrip()}


def test_stall_longer_than_the_read_timeout(run, server, seeded):
    _config.settings.update(timeout=0.5)
    server.stall(3, after_chunks=2)
    started = time.monotonic()
    cell = run("%%claude\nq")
    assert time.monotonic() - started < 2.5
    shows_one_line(cell, "stalled longer than the read timeout")
    assert nb_claude.get_session().history[-1].reply.partial


@pytest.mark.parametrize("script, warning", [("malformed", "malformed event"),
                                             ("unknown_chunk", None)])
def test_bad_chunks_are_skipped_safely(run, server, seeded, script, warning):
    getattr(server, script)(after_chunks=1, text="alpha beta gamma delta")
    cell = run("%%claude\nq")
    assert cell.error is None
    footer = cell.markdown.rsplit("<sub>", 1)[1]
    assert (warning in footer) if warning else ("·" in footer and "malformed" not in footer)
    assert nb_claude.get_session().history[-1].reply.done


@pytest.mark.parametrize("style, message", [("data", "Overloaded"), ("event", "Overloaded"),
                                            ("finish", "Overloaded")])
def test_mid_stream_error_events(run, server, seeded, style, message):
    server.stream_error(style=style, after_chunks=2, message="Overloaded")
    cell = run("%%claude\nq")
    shows_one_line(cell, message)
    turn = nb_claude.get_session().history[-1]
    assert turn.reply.text and turn.reply.error
    next_cell_works(run, server, seeded)


def test_stream_without_finish_chunk_or_done(run, server, seeded):
    server.truncate(after_chunks=2, text="one two three four")
    cell = run("%%claude\nq")
    assert cell.error is None
    assert "the stream ended without saying why it stopped" in cell.markdown
    next_cell_works(run, server, seeded)


def test_interrupt_before_the_first_token_leaves_history_alone(run, server, seeded):
    import os
    import signal
    import threading

    server.reply("too late", first_byte_delay=3)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    started = time.monotonic()
    cell = run("%%claude\nq")
    timer.join()
    assert time.monotonic() - started < 2
    assert cell.error is None
    assert "interrupted" in cell.markdown and "too late" not in cell.markdown
    assert history() == seeded
    next_cell_works(run, server, seeded)


@pytest.mark.parametrize("reuse", [False, True], ids=["new connection", "pooled connection"])
def test_stop_while_waiting_for_the_first_byte_is_immediate(configured, server, reuse):
    import threading

    from nb_claude._client import CancelToken

    session = nb_claude.get_session()
    if reuse:
        server.reply("warm-up")
        session.ask("warm up the connection pool", display=False)
    server.reply("far too late", first_byte_delay=5)
    token = CancelToken()
    box = {}
    worker = threading.Thread(target=lambda: box.update(
        reply=session.ask("q", display=False, cancel=token)))
    worker.start()
    deadline = time.monotonic() + 5
    while len(server.requests) < (2 if reuse else 1) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    stopped = time.monotonic()
    token.cancel()
    worker.join(timeout=5)
    assert time.monotonic() - stopped < 0.5
    assert box["reply"].interrupted and box["reply"].text == ""
    assert [t.prompt for t in session.history] == (["warm up the connection pool"] if reuse else [])
    server.reply("next one")
    assert session.ask("again", display=False).text == "next one"
