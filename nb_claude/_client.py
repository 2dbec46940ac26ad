"""HTTP transport for the chat-completions endpoint: requests, retries, errors.

Every call goes through an httpx client whose transport can be swapped
(`transport=httpx.MockTransport(handler)` in tests, or a stand-in server URL).
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import re
import socket
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from ._config import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_FIRST_BYTE_TIMEOUT,
    DEFAULT_TIMEOUT,
    Secret,
    Settings,
    check_base_url,
    get_api_key,
    redact,
)
from ._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    Cancelled,
    ConfigError,
    MissingKeyError,
    StreamError,
)
from ._sse import MAX_LINE_BYTES, LineTooLong, ServerSentEvent, SSEDecoder
from ._stream import events_from_sse

__all__ = ["Client", "CancelToken", "error_from_response", "retry_delay"]

log = logging.getLogger("nb_claude")

RETRY_STATUSES = frozenset({408, 409, 429})
_UPSTREAM = re.compile(r"^\s*(\d{3})\s+(.*)$", re.S)

_MEANINGS = {
    400: "the service rejected the request",
    401: "the API key was not accepted: check it, or run %claude_login again",
    402: "payment required: check your AI/ML API account",
    403: "access denied (out of credits?): check your AI/ML API account",
    404: "not found: check the model name and the base URL",
    408: "the request timed out",
    409: "conflict",
    413: "the request is too large (over 32 MB): attach fewer or smaller files",
    422: "the service could not process the request",
    429: "rate limited: too many requests",
    500: "the service had an internal error",
    502: "bad gateway",
    503: "the service is unavailable",
    504: "generation timeout",
    529: "the model is overloaded",
}


class CancelToken:
    """Lets another thread stop a request: sets a flag and closes the response."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._response: httpx.Response | None = None
        self._client: Client | None = None
        self._lock = threading.Lock()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        self._event.set()
        with self._lock:
            response, client = self._response, self._client
        if response is None:
            if client is not None:
                client._abort_waiting()  # still waiting for the response headers
            return
        if _shutdown_socket(response):
            return  # the reading thread wakes up with EOF and closes the response itself
        try:
            response.close()
        except Exception:  # closing from another thread is best effort
            log.debug("closing a cancelled response failed", exc_info=True)

    def wait(self, seconds: float) -> bool:
        return self._event.wait(seconds)

    def _attach(self, response: httpx.Response | None) -> None:
        with self._lock:
            self._response = response

    def _attach_client(self, client: Client | None) -> None:
        with self._lock:
            self._client = client


def _shutdown_socket(response: httpx.Response) -> bool:
    """Wake a read blocked in another thread; True if the response had a socket.

    Closing an httpx response from another thread does not interrupt a blocked
    recv(): a stalled stream would hold the read until the server sent more.
    shutdown() does. The base-class method leaves an SSL socket's state alone.
    """
    return _shutdown_stream(response.extensions.get("network_stream"))


def _shutdown_stream(stream: Any) -> bool:
    get_info = getattr(stream, "get_extra_info", None)
    sock = get_info("socket") if callable(get_info) else None
    if not isinstance(sock, socket.socket):
        return False
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:  # already closed: nothing is blocked on it
        log.debug("shutting down a cancelled response's socket failed", exc_info=True)
    return True


def _describe(status: int) -> str:
    if status in _MEANINGS:
        return _MEANINGS[status]
    return "the service failed" if status >= 500 else f"HTTP {status}"


def _message_from(data: Any) -> tuple[str | None, int | None, str | None]:
    """(message, upstream status, error type) from either error envelope."""
    if not isinstance(data, dict):
        return None, None, None
    error = data.get("error")
    if isinstance(error, dict):
        inner, upstream, kind = _message_from(error) if "error" in error else (None, None, None)
        message = error.get("message")
        if isinstance(message, str):
            nested, up2, kind2 = _unwrap(message)
            return nested or inner or message, up2 or upstream, kind2 or error.get("type") or kind
        return inner, upstream, error.get("type") or kind
    if isinstance(error, str):
        return error, None, None
    message = data.get("message")
    if isinstance(message, list):
        message = "; ".join(str(m) for m in message)
    if isinstance(message, str):
        nested, upstream, kind = _unwrap(message)
        return nested or message, upstream, kind
    return None, None, None


def _unwrap(message: str) -> tuple[str | None, int | None, str | None]:
    """The service wraps upstream errors as '400 {"type":"error","error":{...}}'."""
    match = _UPSTREAM.match(message)
    if not match:
        return None, None, None
    upstream = int(match.group(1))
    rest = match.group(2).strip()
    try:
        inner = json.loads(rest)
    except ValueError:
        return rest or None, upstream, None
    nested, _, kind = _message_from(inner)
    return nested or rest, upstream, kind


def error_from_response(status: int, content: bytes, *, attempts: int = 1) -> APIStatusError:
    """One short message from the service's envelope or OpenAI's."""
    try:
        data = json.loads(content.decode("utf-8", errors="replace")) if content else None
    except ValueError:
        data = None
    message, upstream, kind = _message_from(data)
    if message is None and content:
        text = content.decode("utf-8", errors="replace").strip()
        message = text[:200] if text and not text.lstrip().startswith("<") else None
    meaning_status = upstream if upstream and upstream != status else status
    text = _describe(meaning_status)
    if upstream and upstream != status:
        text += f" (HTTP {status}, upstream {upstream})"
    else:
        text += f" (HTTP {status})"
    if message and message.strip().lower() not in text.lower():
        text += f": {message.strip()}"
    if attempts > 1:
        text += f"; gave up after {attempts} attempts"
    return APIStatusError(redact(text), status=status, upstream_status=upstream,
                          error_type=kind, attempts=attempts)


def _should_retry(status: int, headers: httpx.Headers, upstream: int | None = None) -> bool:
    flag = headers.get("x-should-retry")
    if flag == "true":
        return True
    if flag == "false":
        return False
    if upstream is not None and 400 <= upstream < 500 and upstream not in RETRY_STATUSES:
        return False  # an HTTP 500 wrapping a client error will fail the same way again
    return status in RETRY_STATUSES or status >= 500


def retry_delay(attempt: int, headers: httpx.Headers | None = None) -> float:
    """Seconds to wait before retry number `attempt` (0-based), as the official SDKs do."""
    if headers is not None:
        delay: float | None = None
        ms = headers.get("retry-after-ms")
        if ms:
            try:
                delay = float(ms) / 1000
            except ValueError:
                delay = None
        if delay is None and headers.get("retry-after"):
            value = headers["retry-after"]
            try:
                delay = float(value)
            except ValueError:
                parsed = email.utils.parsedate_to_datetime(value) if value else None
                if parsed is not None:
                    delay = parsed.timestamp() - time.time()
        if delay is not None and 0 < delay <= 60:
            return delay
    return min(0.5 * 2**attempt, 8.0) * (1 - 0.25 * random.random())


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


_HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream, application/json"}
_SCRUBBED = "Bearer ***"
_KEY_CHARS = re.compile(r"[\x21-\x7e]+")  # what can go in a header: printable ASCII, no spaces
_WEB_PAGE = ("the base URL answered with a web page, not the API: check NB_CLAUDE_BASE_URL / "
             "ClaudeMagics.base_url")
_NO_CONTENT = ("the base URL answered with no content{}: check NB_CLAUDE_BASE_URL / "
               "ClaudeMagics.base_url")


class _BearerAuth(httpx.Auth):
    """Puts the key on the request only while it is sent; the caller scrubs it afterwards."""

    def __init__(self, secret: Secret) -> None:
        self._secret = secret

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = "Bearer " + self._secret.reveal()
        yield request


class _Empty(httpx.SyncByteStream):
    def __iter__(self) -> Iterator[bytes]:
        return iter(())


_EMPTY_STREAM = _Empty()


def _release(response: httpx.Response) -> None:
    """Close a response and drop its transport stream, which still holds the sent
    request (its key header included) in httpcore's own objects."""
    try:
        response.close()
    finally:
        response.stream = _EMPTY_STREAM


class Client:
    """Sends chat-completion requests; never logs, shows or keeps the key in clear text.

    `api_key` is optional: without it the key comes from `%claude_login` or
    $AIMLAPI_KEY at each request. A streaming request waits `first_byte_timeout`
    seconds for the response headers, then up to `timeout` seconds for each read;
    a whole (non-streaming) reply is generated before its headers, so it waits
    `timeout` for them.
    """

    def __init__(self, *, api_key: str | Secret | None = None, base_url: str,
                 timeout: float = DEFAULT_TIMEOUT, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
                 first_byte_timeout: float = DEFAULT_FIRST_BYTE_TIMEOUT, max_retries: int = 2,
                 transport: httpx.BaseTransport | None = None,
                 max_connections: int | None = None) -> None:
        check_base_url(base_url)
        for name, value in (("timeout", timeout), ("connect_timeout", connect_timeout),
                            ("first_byte_timeout", first_byte_timeout)):
            Settings.validate(name, value)
        self._api_key = Secret(api_key) if isinstance(api_key, str) else api_key
        self.base_url = base_url.rstrip("/")
        self.max_retries = max(0, int(max_retries))
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.first_byte_timeout = float(first_byte_timeout)
        problem = None
        try:
            self._http = httpx.Client(
                transport=transport,
                timeout=httpx.Timeout(timeout, connect=connect_timeout, pool=connect_timeout),
                limits=httpx.Limits() if max_connections is None else httpx.Limits(
                    max_connections=max_connections, max_keepalive_connections=max_connections),
                trust_env=not _is_loopback(self.base_url),
                follow_redirects=False,
            )
        except ImportError:  # httpx wants socksio when ALL_PROXY is a socks5:// URL
            problem = ("a SOCKS proxy is set (ALL_PROXY) but the socksio package is missing: "
                       "install httpx[socks] or unset ALL_PROXY")
        if problem is not None:
            raise ConfigError(problem)
        # Made once, not per request: the URL, the headers (httpx's defaults and ours), the
        # transport that serves the URL (a proxy's, if one is set), the key last checked.
        self._url = httpx.URL(self.url)
        self._headers = httpx.Headers(self._http.headers)
        self._headers.update(_HEADERS)
        try:
            self._transport: httpx.BaseTransport | None = self._http._transport_for_url(self._url)
        except AttributeError:  # another httpx: its send() does the same, a little slower
            self._transport = None
        self._checked_key = ""
        # The connections this client opened, so Stop can wake a request that is
        # still waiting for its response headers (a session sends one at a time).
        self._streams: weakref.WeakSet[Any] = weakref.WeakSet()

    def _trace(self, event: str, info: dict[str, Any]) -> None:
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            stream = info.get("return_value")
            if stream is not None:
                self._streams.add(stream)

    def _abort_waiting(self) -> None:
        for stream in list(self._streams):
            _shutdown_stream(stream)

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r}, max_retries={self.max_retries})"

    def close(self) -> None:
        self._http.close()

    @property
    def url(self) -> str:
        return self.base_url + "/chat/completions"

    def _key(self) -> Secret:
        secret = self._api_key if self._api_key is not None else get_api_key()
        if not secret:
            raise MissingKeyError()
        if secret.digest != self._checked_key:
            if _KEY_CHARS.fullmatch(secret.reveal()) is None:
                raise ConfigError("the API key has spaces or characters a key cannot have: "
                                  "run %claude_login again")
            self._checked_key = secret.digest
        return secret

    def _sleep(self, seconds: float, cancel: CancelToken | None) -> None:
        if cancel is None:
            time.sleep(seconds)
        elif cancel.wait(seconds):
            raise Cancelled("stopped")

    def _send(self, content: bytes, secret: Secret, *, stream: bool,
              cancel: CancelToken | None) -> httpx.Response | Exception:
        """One attempt: the response with its headers read, or the failure to raise or retry.

        httpx's exception becomes ours here and is not raised from its except
        block, so no exception chain leads back to the request that held the key.
        """
        first_byte = self.first_byte_timeout if stream else self.timeout
        timeout = httpx.Timeout(connect=self.connect_timeout, read=first_byte, write=self.timeout,
                                pool=self.connect_timeout)
        request = httpx.Request("POST", self._url, content=content, headers=self._headers,
                                extensions={"timeout": timeout.as_dict(), "trace": self._trace})
        failure: Exception | None = None
        try:
            response = self._deliver(request, secret)
        except httpx.TransportError as exc:
            failure = Cancelled("stopped") if cancel is not None and cancel.cancelled else \
                self._transport_failure(exc, stream)
        finally:
            request.headers["Authorization"] = _SCRUBBED
        if failure is not None:
            return failure
        if stream:
            # From here the read timeout bounds each wait between reads: httpcore
            # takes it from this dict (shared with its request) at the first body read.
            timeouts = request.extensions.get("timeout")
            if isinstance(timeouts, dict):
                timeouts["read"] = self.timeout
        return response

    def _deliver(self, request: httpx.Request, secret: Secret) -> httpx.Response:
        """Send `request` with the key, its headers read. Straight to the transport: nothing
        here needs what `httpx.Client.send` adds per request (auth and redirect flows, a
        cookie jar: the API sets no cookies), and skipping it costs less CPU per request."""
        transport, auth = self._transport, _BearerAuth(secret)
        if transport is None or self._http.is_closed:
            return self._http.send(request, auth=auth, stream=True, follow_redirects=False)
        request = next(auth.auth_flow(request))  # one place puts the key on a request
        response = transport.handle_request(request)
        response.request = request
        return response

    def _transport_failure(self, exc: httpx.TransportError, stream: bool) -> Exception:
        if isinstance(exc, httpx.ConnectTimeout):
            return APITimeoutError(
                f"the service did not answer in time: no connection within "
                f"{self.connect_timeout:g} s; check the base URL, or raise "
                "%config ClaudeMagics.connect_timeout = SECONDS")
        if isinstance(exc, httpx.ReadTimeout) and stream:
            return APITimeoutError(
                f"the service did not answer in time: no response within the first-byte wait "
                f"of {self.first_byte_timeout:g} s; raise it with "
                "%config ClaudeMagics.first_byte_timeout = SECONDS")
        if isinstance(exc, httpx.TimeoutException):
            return APITimeoutError(
                f"the service did not answer in time: no reply within the read timeout of "
                f"{self.timeout:g} s; raise it with %config ClaudeMagics.timeout = SECONDS")
        return APIConnectionError(f"could not reach {redact(self.base_url)}: {_short(exc)}")

    def _open(self, body: dict[str, Any], *, stream: bool, cancel: CancelToken | None,
              on_retry: Callable[[int | None, float], None] | None = None) -> httpx.Response:
        """Send, retrying failures that happen before any byte of the reply.

        `on_retry(status, delay)` hears of each retry before its wait (status None for a
        connection failure), so a caller running many requests can slow down.
        """
        secret = self._key()
        content = json.dumps(body, ensure_ascii=False).encode("utf-8")
        attempt = 0
        while True:
            if cancel is not None and cancel.cancelled:
                raise Cancelled("stopped")
            if cancel is not None:
                cancel._attach_client(self)
            outcome = self._send(content, secret, stream=stream, cancel=cancel)
            if cancel is not None:
                cancel._attach_client(None)
            if isinstance(outcome, Cancelled):
                raise outcome
            retry_headers: httpx.Headers | None = None
            if isinstance(outcome, Exception):
                failure: Exception = outcome
            else:
                status, problem = outcome.status_code, _not_the_api(outcome)
                if problem is None and status < 400:
                    if cancel is not None:
                        cancel._attach(outcome)  # from here Stop shuts this response's socket
                    return outcome
                content_read = False
                try:
                    if problem is None:
                        outcome.read()
                        content_read = True
                except httpx.TransportError:  # the error's body was cut: its status still says
                    pass
                finally:
                    _release(outcome)
                if problem is not None:
                    raise problem
                retry_headers = outcome.headers
                status_failure = error_from_response(
                    status, outcome.content if content_read else b"", attempts=attempt + 1)
                if not _should_retry(status, retry_headers, status_failure.upstream_status) \
                        or attempt >= self.max_retries:
                    raise status_failure
                failure = status_failure
            if attempt >= self.max_retries:
                if attempt:
                    failure.args = (f"{failure.args[0]}; gave up after {attempt + 1} attempts",)
                raise failure
            delay = retry_delay(attempt, retry_headers)
            log.info("retrying in %.2f s after: %s", delay, failure)
            if on_retry is not None:
                on_retry(getattr(failure, "status", None), delay)
            self._sleep(delay, cancel)
            attempt += 1

    def create(self, body: dict[str, Any], *, cancel: CancelToken | None = None,
               on_response: Callable[[httpx.Response], None] | None = None,
               on_retry: Callable[[int | None, float], None] | None = None) -> dict[str, Any]:
        """A non-streaming request: the parsed chat.completion body."""
        response = self._open({**body, "stream": False}, stream=False, cancel=cancel,
                              on_retry=on_retry)
        failure: Exception | None = None
        try:
            if on_response is not None:
                on_response(response)
            try:
                response.read()
            except httpx.TimeoutException:
                failure = APITimeoutError(
                    f"the reply did not arrive in time: nothing for {self.timeout:g} s; raise "
                    "the read timeout with %config ClaudeMagics.timeout = SECONDS")
            except httpx.TransportError as exc:
                failure = Cancelled("stopped") if cancel is not None and cancel.cancelled else \
                    APIConnectionError(f"the connection dropped: {_short(exc)}")
        finally:
            _release(response)
            if cancel is not None:
                cancel._attach(None)
        if failure is not None:
            raise failure
        content, kind, status = (response.content, response.headers.get("content-type", ""),
                                 response.status_code)
        if not content.strip():
            raise APIStatusError(_NO_CONTENT.format(f" (HTTP {status})"), status=status)
        if "html" in kind or content.lstrip()[:1] == b"<":
            raise APIStatusError(_WEB_PAGE, status=status)
        data = _json_value(content)
        if data is _NOT_JSON:
            raise StreamError("the service answered with something that is not JSON")
        if not isinstance(data, dict):
            raise StreamError("the service answered with something that is not a JSON object")
        return data

    def stream(self, body: dict[str, Any], *, cancel: CancelToken | None = None,
               on_response: Callable[[httpx.Response], None] | None = None,
               ) -> Iterator[dict[str, Any]]:
        """Yield the decoded JSON events of a streaming request (see `events_from_sse`).

        Failures before the first event are retried; after it they raise
        StreamError (the caller decides what to keep of what it has shown).
        """
        return events_from_sse(self.sse(body, cancel=cancel, on_response=on_response))

    def sse(self, body: dict[str, Any], *, cancel: CancelToken | None = None,
            on_response: Callable[[httpx.Response], None] | None = None,
            ) -> Generator[ServerSentEvent, None, None]:
        """Yield the Server-Sent Events of a streaming request, as they arrive."""
        response = self._open({**body, "stream": True}, stream=True, cancel=cancel)
        failure: Exception | None = None
        try:
            if on_response is not None:
                on_response(response)
            if "json" in response.headers.get("content-type", ""):
                # Some routes ignore "stream" and answer with one JSON body: one event.
                response.read()
                yield ServerSentEvent(data=response.text)
                return
            decoder = SSEDecoder()
            started = False
            try:
                for chunk in response.iter_raw():
                    if not started and chunk.strip():
                        started = True
                        if chunk.lstrip()[:1] == b"<":  # no event stream starts with "<"
                            failure = APIStatusError(_WEB_PAGE, status=response.status_code)
                            return
                    yield from decoder.feed(chunk)
                    if cancel is not None and cancel.cancelled:
                        failure = Cancelled("stopped")
                        return
                yield from decoder.flush()
            except httpx.TimeoutException:
                failure = StreamError(f"the stream stalled longer than the read timeout "
                                      f"({self.timeout:g} s)")
            except (httpx.TransportError, httpx.StreamError) as exc:
                failure = Cancelled("stopped") if cancel is not None and cancel.cancelled else \
                    StreamError(f"the connection dropped mid-reply ({_short(exc)})")
            except LineTooLong:
                failure = StreamError(f"the service sent a line over {MAX_LINE_BYTES >> 20} MB "
                                      "and the stream was stopped: check the base URL")
        finally:
            if cancel is not None:
                cancel._attach(None)
            _release(response)
            if failure is not None:  # set only where no exception is in flight
                raise failure


def _not_the_api(response: httpx.Response) -> APIStatusError | None:
    """A redirect, an empty answer or a web page: the base URL is not the API's."""
    status = response.status_code
    if 300 <= status < 400:
        location = response.headers.get("location", "")
        host = urlsplit(urljoin(str(response.url), location)).hostname if location else None
        where = f" to {_printable(host)}" if host else ""
        return APIStatusError(f"the base URL redirected (HTTP {status}){where} and the request "
                              "was not sent there: check NB_CLAUDE_BASE_URL / "
                              "ClaudeMagics.base_url", status=status)
    if status in (204, 205) or (status < 300 and response.headers.get("content-length") == "0"):
        return APIStatusError(_NO_CONTENT.format(f" (HTTP {status})"), status=status)
    if status < 300 and "html" in response.headers.get("content-type", ""):
        return APIStatusError(_WEB_PAGE, status=status)
    return None


def _printable(text: str) -> str:
    return "".join(c for c in text if c.isprintable() and not c.isspace())[:100]


_NOT_JSON = object()


def _json_value(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return _NOT_JSON


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return redact(text.splitlines()[0][:160])
