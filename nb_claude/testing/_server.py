"""The server: the HTTP handler, the queue of scripted answers and faults, and the
record of every request received.

The handler reads and records a request, checks it with `_validate`, takes the next
`_Script` (or the default reply) and hands it to the JSON or SSE writer.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import random
import re
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ._replies import FAULT_TEXT, _default_reply, _pieces, _plan, _Script
from ._rules import Rules
from ._validate import MAX_REQUEST_BYTES, MODEL_IDS, _Rejected, _short, _validate
from ._writers import (
    _ERROR_TYPES,
    _SPLIT_PAUSE,
    STAND_IN_HEADER,
    _completion,
    _error_payload,
    _frames,
    _sse_steps,
    _stream_headers,
)

WEB_PAGE = ("<!DOCTYPE html>\n<html><head><title>Sign in</title></head>"
            "<body><h1>Welcome</h1><p>This is a web page, not an API.</p></body></html>\n")
# The key the offline demo and Binder give the client: it cannot be mistaken for a word
# in a conversation, so redacting it never blanks out prose.
DEMO_KEY = "nbc-offline-demo-0000000000000000"
CHAT_PATH = "/v1/chat/completions"


@dataclass
class RecordedRequest:
    """One request as the stand-in received it; header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any = None
    raw: bytes = field(default=b"", repr=False)

    def __repr__(self) -> str:
        # The key stays readable in `headers` for tests, but never in a repr or a log.
        headers = {k: ("<redacted>" if k in ("authorization", "x-api-key") else v)
                   for k, v in self.headers.items()}
        return (f"RecordedRequest(method={self.method!r}, path={self.path!r}, "
                f"headers={headers!r}, body={_short(self.body)})")



class _Stop(Exception):
    """The response ends here: the client went away or the server is stopping."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nb_claude-standin/1"
    sys_version = ""
    server: _HTTPServer
    rng: random.Random
    _started: bool = False  # whether a status line went out for the current request

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.standin._track(self.connection, True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.standin._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: tests and notebooks should not see access logs."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    do_PUT = do_DELETE = do_PATCH = do_GET

    # -- request -----------------------------------------------------------

    def _read_body(self) -> tuple[bytes, int]:
        """The body (empty if over the limit, then drained) and its size."""
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            parts, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                total += size
                part = self.rfile.read(size)
                if total <= MAX_REQUEST_BYTES:
                    parts.append(part)
                self.rfile.readline()
            return (b"".join(parts) if total <= MAX_REQUEST_BYTES else b""), total
        length = int(self.headers.get("content-length") or 0)
        if length <= MAX_REQUEST_BYTES:
            return self.rfile.read(length), length
        left = length
        while left > 0:
            got = self.rfile.read(min(left, 1 << 20))
            if not got:
                break
            left -= len(got)
        return b"", length

    def _serve(self) -> None:
        owner = self.server.standin
        raw, size = self._read_body()
        try:
            body = json.loads(raw) if raw else None
            bad_json = None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            body, bad_json = None, exc
        owner._record(RecordedRequest(self.command, self.path,
                                      {k.lower(): v for k, v in self.headers.items()}, body, raw))
        self.rng = owner._next_rng()
        self._started = False
        counted = owner._rules.enter()
        try:
            self._answer(owner, body, size, bad_json)
        except _Stop:
            self._abort()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # a stand-in bug must reach the client as an error, not a hang
            if self._started:
                self._abort()
                raise
            self._error(500, f"stand-in server error: {type(exc).__name__}: {exc}", "api_error")
            raise
        finally:
            owner._rules.leave(counted)

    def _answer(self, owner: StandInServer, body: Any, size: int, bad_json: Any) -> None:
        path = self.path.split("?")[0].rstrip("/")
        if not owner._authorised(self.headers.get("authorization", "")):
            missing = not self.headers.get("authorization", "").strip()
            return self._error(401, "Missing Authorization header: send \"Authorization: Bearer "
                                    "<key>\"" if missing else "Invalid API key",
                               "authentication_error")
        if self.command == "GET" and path == "/v1/models":
            data = [{"id": m, "object": "model", "type": "chat-completion"} for m in owner.model_ids]
            return self._json(200, {"object": "list", "data": data})
        if path != CHAT_PATH or self.command != "POST":
            return self._error(404, f"Cannot {self.command} {self.path}", "not_found_error")
        if size > MAX_REQUEST_BYTES:
            return self._error(413, f"Request exceeds the maximum allowed number of bytes: "
                                    f"{size} > {MAX_REQUEST_BYTES}", "request_too_large")
        if bad_json is not None or body is None:
            return self._error(400, f"The request body is not valid JSON: {bad_json or 'empty'}")
        try:
            _validate(body, owner.model_ids)
        except _Rejected as exc:
            return self._error(exc.status, exc.message, exc.error_type)
        self._wait(owner.latency)
        rule = owner._rules.answer_for(body)
        if rule is not None:
            status, message, headers = rule
            error_type, _ = _ERROR_TYPES.get(status, ("api_error", "Error"))
            return self._error(status, message, error_type, headers=headers)
        script = owner._take()
        if script is None:
            text, thinking, finish = _default_reply(body)
            script = _Script(text=text, thinking=thinking, finish_reason=finish, priced=True)
        if script.kind == "drop":
            raise _Stop
        if script.kind == "fault":
            return self._fault(script)
        if script.kind == "raw":
            return self._raw(script)
        if body.get("stream") is True:
            self._stream(owner, body, script)
        else:
            self._complete(body, script)

    # -- plain responses ---------------------------------------------------

    def send_response(self, code: int, message: str | None = None) -> None:
        self._started = True
        super().send_response(code, message)

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None,
              raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json; charset=utf-8")
        self.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, error_type: str = "invalid_request_error",
               *, envelope: str = "service", upstream: int | None = None,
               headers: dict[str, str] | None = None) -> None:
        self._json(status, _error_payload(status, message, error_type, envelope=envelope,
                                          upstream=upstream, path=self.path.split("?")[0],
                                          rng=self.rng), headers)

    def _fault(self, script: _Script) -> None:
        code = script.upstream_status or script.status
        error_type, default = _ERROR_TYPES.get(code, ("api_error", "Error"))
        self._error(script.status, script.message or default, error_type,
                    envelope=script.envelope, upstream=script.upstream_status,
                    headers=script.headers)

    def _raw(self, script: _Script) -> None:
        self.send_response(script.status)
        for name, value in script.headers.items():
            self.send_header(name, value)
        if script.status >= 200 and script.status not in (204, 304):
            self.send_header("content-length", str(len(script.body)))
            self.end_headers()
            self.wfile.write(script.body)
        else:
            self.end_headers()

    def _abort(self) -> None:
        """Close the connection at once, mid-message if need be."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _wait(self, seconds: float) -> None:
        if seconds > 0 and self.server.standin._stopping.wait(seconds):
            raise _Stop

    # -- replies -----------------------------------------------------------

    def _complete(self, body: dict[str, Any], script: _Script) -> None:
        """A non-streaming chat.completion, with the same faults mapped onto one body."""
        self._wait(script.first_byte_delay)
        data, headers = _completion(script, _plan(body, script, self.rng))
        self._wait(script.delay * len(script.chunks or _pieces(script.text)))
        if script.inject == "stall":
            self._wait(script.seconds)
        if script.inject == "drop":
            self.send_response(200)
            self.send_header("content-type", "application/json; charset=utf-8")
            self.send_header("content-length", str(len(data)))
            self.send_header(STAND_IN_HEADER, "1")
            self.end_headers()
            self.wfile.write(data[:len(data) // 2])
            raise _Stop
        self._json(200, None, headers, raw=data)

    def _stream(self, owner: StandInServer, body: dict[str, Any], script: _Script) -> None:
        """An SSE stream shaped like the service's, with its quirks when they are on."""
        rng = self.rng
        quirks = owner.quirks
        eol = (script.line_ending or (rng.choice(("\n", "\r\n", "\r")) if quirks else "\n")
               ).encode()
        split = quirks if script.split is None else script.split
        keepalive = quirks if script.keepalive is None else script.keepalive
        plan = _plan(body, script, rng)
        steps = _sse_steps(script, plan, eol, keepalive, quirks, rng)
        self._wait(script.first_byte_delay)
        self.send_response(200)
        for name, value in _stream_headers(plan).items():
            self.send_header(name, value)
        self.end_headers()
        run: list[bytes] = []

        def flush() -> None:
            for frame in _frames(run, split, rng):
                self.wfile.write(frame)
                if split:
                    time.sleep(_SPLIT_PAUSE)
            run.clear()

        for kind, value in steps:
            if kind == "data":
                run.append(value)
                continue
            flush()
            if kind == "sleep":
                self._wait(value)
            elif kind == "drop":
                raise _Stop
            elif kind == "end":
                self.wfile.write(b"0\r\n\r\n")
        flush()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a stalled or kept-alive handler must not hold up stop()
    request_queue_size = 128  # listen backlog: a burst of new connections is queued, not reset
    standin: StandInServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Client disconnects are normal here; anything else goes to stderr once."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)



class StandInServer:
    """A scriptable stand-in for the AI/ML API on 127.0.0.1.

    Each scripting call queues one answer for the next POST /chat/completions
    that passes validation (invalid or unauthorised requests are refused
    without using the queue); with the queue empty it answers with a
    deterministic, clearly labelled echo of the request. Unknown models get
    404 (`not_found_error`), like the service's own model check.

    For concurrent clients: `latency` (seconds added to every valid chat request; a
    settable attribute), rules for any request (`fail_when`, `rate_limit`), `max_in_flight`.
    """

    def __init__(self, *, seed: int = 0, quirks: bool = True, api_key: str | None = None,
                 model_ids: tuple[str, ...] = MODEL_IDS, host: str = "127.0.0.1",
                 port: int = 0, latency: float = 0.0) -> None:
        self.seed = seed
        self.latency = float(latency)
        self._latency = self.latency
        self._rules = Rules()
        self.quirks = quirks
        self.model_ids = tuple(model_ids)
        self.host = host
        self.port = port
        self.url = ""
        self.requests: list[RecordedRequest] = []
        self._api_key = api_key
        self._queue: deque[_Script] = deque()
        self._lock = threading.Lock()
        self._count = 0
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return (f"StandInServer(url={self.url!r}, pending={self.pending()}, "
                f"requests={len(self.requests)})")

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> StandInServer:
        """Listen on a free port (or the one given) and serve in a daemon thread."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _HTTPServer((self.host, self.port), _Handler)
        httpd.standin = self
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self.url = f"http://{self.host}:{self.port}/v1"
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"standin-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut every open connection, stalled ones included."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def __enter__(self) -> StandInServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget scripted answers, rules and recorded requests; `max_in_flight` starts
        again from 0, counting only requests that begin from now, and `latency` goes back to the value given to the constructor."""
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.latency = self._latency
        self._rules.reset()

    def pending(self) -> int:
        """How many scripted answers are still queued."""
        with self._lock:
            return len(self._queue)

    # -- scripting ---------------------------------------------------------

    def _push(self, script: _Script) -> StandInServer:
        with self._lock:
            self._queue.append(script)
        return self

    def reply(self, text: str = "Hello from the stand-in.", *, thinking: str | None = None,
              thinking_field: str = "reasoning_content",
              tool_calls: list[dict[str, Any]] | None = None, fragmented: bool = True,
              finish_reason: str | None = None, usage: tuple[int, int] | None = None,
              usd_spent: float | None = 0.0012, chunks: list[str] | None = None,
              delay: float = 0.0, first_byte_delay: float = 0.0, split: bool | None = None,
              line_ending: str | None = None, done: bool = False,
              keepalive: bool | None = None, model: str | None = None) -> StandInServer:
        """Queue a successful reply; streamed or not, as the request asks."""
        if thinking_field not in ("reasoning_content", "reasoning", "reasoning_details"):
            raise ValueError("thinking_field must be reasoning_content, reasoning or "
                             "reasoning_details")
        if line_ending not in (None, "\n", "\r\n", "\r"):
            raise ValueError("line_ending must be '\\n', '\\r\\n' or '\\r'")
        for call in tool_calls or []:
            if not isinstance(call.get("name"), str):
                raise ValueError("each tool call needs a name")
        return self._push(_Script(
            text=text if chunks is None else "".join(chunks), thinking=thinking,
            thinking_field=thinking_field, tool_calls=list(tool_calls or []),
            fragmented=fragmented, finish_reason=finish_reason, usage=usage, usd_spent=usd_spent,
            chunks=chunks, delay=delay, first_byte_delay=first_byte_delay, split=split,
            line_ending=line_ending, done=done, keepalive=keepalive, model=model))

    def fix_reply(self, explanation: str, code: str, **options: Any) -> StandInServer:
        """Queue what a fix request asks for: an explanation and one ```python block holding
        the fixed cell (`reply`'s options apply)."""
        return self.reply(f"{explanation.strip()}\n\n```python\n{code.strip(chr(10))}\n```\n",
                          **options)

    def fault(self, status: int, message: str | None = None, *, envelope: str = "service",
              upstream_status: int | None = None,
              headers: dict[str, str] | None = None) -> StandInServer:
        """Queue an HTTP error in the service's envelope (or OpenAI's)."""
        if envelope not in ("service", "openai"):
            raise ValueError("envelope must be 'service' or 'openai'")
        return self._push(_Script(kind="fault", status=status, message=message or "",
                                  envelope=envelope, upstream_status=upstream_status,
                                  headers=dict(headers or {})))

    def raw(self, status: int, body: str | bytes = b"", *,
            headers: dict[str, str] | None = None) -> StandInServer:
        """Queue an answer that is not the API's, as a wrong base URL gives: any status,
        headers and body (content-length is added unless the status has no body)."""
        data = body.encode() if isinstance(body, str) else bytes(body)
        return self._push(_Script(kind="raw", status=status, body=data,
                                  headers=dict(headers or {})))

    def redirect(self, location: str, status: int = 307) -> StandInServer:
        """Queue a redirect, as a base URL without /v1 or with http:// for https:// gets."""
        return self.raw(status, headers={"location": location})

    def web_page(self, status: int = 200) -> StandInServer:
        """Queue an HTML page with status 200, as a base URL pointing at a website gets."""
        return self.raw(status, WEB_PAGE, headers={"content-type": "text/html; charset=utf-8"})

    def drop(self, after_chunks: int | None = None) -> StandInServer:
        """Queue a dropped connection: before any byte, or after N content chunks."""
        if after_chunks is None:
            return self._push(_Script(kind="drop"))
        return self._push(_Script(text=FAULT_TEXT, inject="drop", after=after_chunks))

    def stall(self, seconds: float, after_chunks: int = 1, text: str = FAULT_TEXT
              ) -> StandInServer:
        """Queue a reply that goes silent for `seconds` after N chunks, then carries on."""
        return self._push(_Script(text=text, inject="stall", after=after_chunks, seconds=seconds))

    def malformed(self, after_chunks: int = 1, text: str = FAULT_TEXT) -> StandInServer:
        """Queue a reply with one event that is not JSON after N chunks."""
        return self._push(_Script(text=text, inject="malformed", after=after_chunks))

    def unknown_chunk(self, after_chunks: int = 1, text: str = FAULT_TEXT) -> StandInServer:
        """Queue a reply with one valid JSON event of an unknown shape after N chunks."""
        return self._push(_Script(text=text, inject="unknown", after=after_chunks))

    def stream_error(self, style: str = "data", after_chunks: int = 1,
                     message: str = "Overloaded") -> StandInServer:
        """Queue a reply that reports an error mid-stream and then ends."""
        if style not in ("data", "event", "finish"):
            raise ValueError("style must be 'data', 'event' or 'finish'")
        return self._push(_Script(text=FAULT_TEXT, inject="error", after=after_chunks,
                                  style=style, message=message))

    def truncate(self, after_chunks: int = 2, text: str = FAULT_TEXT) -> StandInServer:
        """Queue a reply whose stream ends cleanly after N chunks, with no finish chunk."""
        return self._push(_Script(text=text, inject="truncate", after=after_chunks))

    # -- rules: they apply to any request, in any order ---------------------

    def fail_when(self, text: str, status: int = 500, message: str | None = None
                  ) -> StandInServer:
        """Answer HTTP `status` (in the service's envelope, with `message`) to every valid
        chat request whose last user message contains `text`, until `reset()`.

        Unlike the queue, a rule does not depend on the order requests arrive in, so it
        can fail one item of a concurrent batch. Rules are checked before the queue.
        """
        self._rules.fail_when(text, status, message or "")
        return self

    def rate_limit(self, seconds: float, retry_after: float = 1) -> StandInServer:
        """Answer 429 with a `Retry-After: retry_after` header to every valid chat request
        that arrives during the next `seconds`, as a rate-limited service does."""
        self._rules.rate_limit(seconds, retry_after)
        return self

    @property
    def max_in_flight(self) -> int:
        """The most requests handled at once since the last `reset()`."""
        return self._rules.max_in_flight

    # -- used by the handler -----------------------------------------------

    def _take(self) -> _Script | None:
        with self._lock:
            return self._queue.popleft() if self._queue else None

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _next_rng(self) -> random.Random:
        with self._lock:
            self._count += 1
            return random.Random(self.seed * 1_000_003 + self._count)

    def _track(self, conn: socket.socket, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _authorised(self, header: str) -> bool:
        match = re.fullmatch(r"\s*[Bb]earer\s+(\S+)\s*", header)
        if not match:
            return False
        if self._api_key is None:
            return True
        return hmac.compare_digest(match.group(1).encode(), self._api_key.encode())
