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
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx

from ._config import redact
from ._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    Cancelled,
    MissingKeyError,
    StreamError,
)
from ._sse import SSEDecoder

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


class Client:
    """Sends chat-completion requests; never logs or shows the key."""

    def __init__(self, *, api_key: str | None, base_url: str, timeout: float = 600.0,
                 connect_timeout: float = 5.0, max_retries: int = 2,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.max_retries = max(0, int(max_retries))
        self._http = httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=connect_timeout, pool=connect_timeout),
            trust_env=not _is_loopback(self.base_url),
        )
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

    def _headers(self) -> dict[str, str]:
        if not self._api_key:
            raise MissingKeyError()
        return {"Authorization": f"Bearer {self._api_key}", "Content-Type": "application/json",
                "Accept": "text/event-stream, application/json"}

    def _sleep(self, seconds: float, cancel: CancelToken | None) -> None:
        if cancel is None:
            time.sleep(seconds)
        elif cancel.wait(seconds):
            raise Cancelled("stopped")

    def _open(self, body: dict[str, Any], *, stream: bool,
              cancel: CancelToken | None) -> httpx.Response:
        """Send, retrying failures that happen before any byte of the reply."""
        headers = self._headers()
        content = json.dumps(body, ensure_ascii=False).encode("utf-8")
        attempt = 0
        while True:
            if cancel is not None and cancel.cancelled:
                raise Cancelled("stopped")
            retry_headers: httpx.Headers | None = None
            if cancel is not None:
                cancel._attach_client(self)
            try:
                request = self._http.build_request("POST", self.url, content=content,
                                                   headers=headers,
                                                   extensions={"trace": self._trace})
                response = self._http.send(request, stream=True)
            except httpx.TransportError as exc:
                if cancel is not None and cancel.cancelled:
                    raise Cancelled("stopped") from None
                failure: Exception = _transport_failure(exc, self.base_url)
            else:
                if cancel is not None:
                    cancel._attach(response)  # from here Stop shuts this response's socket
                    cancel._attach_client(None)
                if response.status_code < 400:
                    return response
                try:
                    response.read()
                finally:
                    response.close()
                failure = error_from_response(response.status_code, response.content,
                                              attempts=attempt + 1)
                if not _should_retry(response.status_code, response.headers,
                                     failure.upstream_status) or attempt >= self.max_retries:
                    raise failure
                retry_headers = response.headers
            if attempt >= self.max_retries:
                if attempt and not isinstance(failure, APIStatusError):
                    failure.args = (f"{failure.args[0]}; gave up after {attempt + 1} attempts",)
                raise failure
            delay = retry_delay(attempt, retry_headers)
            log.info("retrying in %.2f s after: %s", delay, failure)
            self._sleep(delay, cancel)
            attempt += 1

    def create(self, body: dict[str, Any], *, cancel: CancelToken | None = None,
               on_response: Callable[[httpx.Response], None] | None = None) -> dict[str, Any]:
        """A non-streaming request: the parsed chat.completion body."""
        response = self._open({**body, "stream": False}, stream=False, cancel=cancel)
        try:
            if on_response is not None:
                on_response(response)
            try:
                response.read()
            except httpx.TimeoutException as exc:
                raise APITimeoutError(f"the reply did not arrive in time ({type(exc).__name__})") \
                    from None
            except httpx.TransportError as exc:
                if cancel is not None and cancel.cancelled:
                    raise Cancelled("stopped") from None
                raise APIConnectionError(f"the connection dropped: {_short(exc)}") from None
        finally:
            response.close()
            if cancel is not None:
                cancel._attach(None)
        try:
            data = json.loads(response.content)
        except ValueError:
            raise StreamError("the service answered with something that is not JSON") from None
        if not isinstance(data, dict):
            raise StreamError("the service answered with something that is not a JSON object")
        return data

    def stream(self, body: dict[str, Any], *, cancel: CancelToken | None = None,
               on_response: Callable[[httpx.Response], None] | None = None,
               ) -> Iterator[dict[str, Any]]:
        """Yield the decoded JSON events of a streaming request.

        Failures before the first event are retried; after it they raise
        StreamError (the caller keeps what it has shown).
        """
        response = self._open({**body, "stream": True}, stream=True, cancel=cancel)
        try:
            if on_response is not None:
                on_response(response)
            if "json" in response.headers.get("content-type", ""):
                # Some routes ignore "stream" and answer with one JSON body.
                response.read()
                yield _json_or_warning(response.text)
                return
            decoder = SSEDecoder()
            try:
                for chunk in response.iter_raw():
                    for event in decoder.feed(chunk):
                        parsed = _parse_event(event.event, event.data)
                        if parsed is _DONE:
                            return
                        if parsed is not None:
                            yield parsed
                    if cancel is not None and cancel.cancelled:
                        raise Cancelled("stopped")
                for event in decoder.flush():
                    parsed = _parse_event(event.event, event.data)
                    if parsed is _DONE:
                        return
                    if parsed is not None:
                        yield parsed
            except httpx.TimeoutException:
                raise StreamError("the stream stalled longer than the read timeout; the partial "
                                  "reply was kept") from None
            except (httpx.TransportError, httpx.StreamError) as exc:
                if cancel is not None and cancel.cancelled:
                    raise Cancelled("stopped") from None
                raise StreamError(f"the connection dropped mid-reply ({_short(exc)}); the partial "
                                  "reply was kept") from None
        finally:
            if cancel is not None:
                cancel._attach(None)
            response.close()


def _transport_failure(exc: httpx.TransportError, base_url: str) -> Exception:
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"the service did not answer in time ({type(exc).__name__}); "
                               "raise the timeout with %config ClaudeMagics.timeout = SECONDS")
    return APIConnectionError(f"could not reach {redact(base_url)}: {_short(exc)}")


_DONE: dict[str, Any] = {}


def _json_or_warning(data: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        return {"nb_claude_warning": f"skipped a malformed event: {data[:60]!r}"}
    if not isinstance(value, dict):
        return {"nb_claude_warning": f"skipped an event of unknown shape: {data[:60]!r}"}
    return value


def _parse_event(name: str, data: str) -> dict[str, Any] | None:
    if data.strip() == "[DONE]":
        return _DONE
    if name == "error":
        value = _json_or_warning(data) if data else {}
        error = value.get("error", value) if value else {"message": "the service sent an error"}
        return {"error": error or {"message": data or "the service sent an error"}}
    if not data:
        return None
    return _json_or_warning(data)


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return redact(text.splitlines()[0][:160])
