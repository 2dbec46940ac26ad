"""No object a user can reach holds the key in clear text.

Requests that succeed, are refused, drop, time out or are stopped, from magics
and from a Session; then the object graph is walked from the session, every
reply and every exception (with its context, cause and the locals of
nb_claude's own frames in its traceback), looking for the key as str or bytes.
"""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from conftest import SENTINEL_KEY

import nb_claude
from nb_claude import _config
from nb_claude._client import CancelToken, Client
from nb_claude._errors import NbClaudeError

PACKAGE = str(Path(nb_claude.__file__).resolve().parent)


def _ours(frame: types.FrameType) -> bool:
    return str(Path(frame.f_code.co_filename).resolve()).startswith(PACKAGE)


def _children(obj: Any) -> Iterable[Any]:
    if isinstance(obj, types.FunctionType):  # not __globals__: module state is not "reachable"
        return [obj.__closure__, obj.__defaults__, obj.__kwdefaults__]
    if isinstance(obj, types.FrameType):
        return [obj.f_locals] if _ours(obj) else []
    if isinstance(obj, types.TracebackType):
        return [obj.tb_frame, obj.tb_next]
    if isinstance(obj, BaseException):
        return [*gc.get_referents(obj), obj.__context__, obj.__cause__, obj.__traceback__]
    return gc.get_referents(obj)


def find_key(roots: dict[str, Any], needle: str = SENTINEL_KEY) -> tuple[list[str], int]:
    """Paths (root name + type chain) from the roots to any str or bytes holding `needle`,
    and how many objects were looked at."""
    raw = needle.encode()
    seen: set[int] = set()
    found: list[str] = []
    stack: list[tuple[Any, str]] = [(obj, name) for name, obj in roots.items()]
    while stack:
        obj, path = stack.pop()
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, str):
            if needle in obj:
                found.append(path)
            continue
        if isinstance(obj, (bytes, bytearray, memoryview)):
            if raw in bytes(obj):
                found.append(path)
            continue
        # Modules, classes and code are program state; os.environ is where the user put the key.
        if isinstance(obj, (types.ModuleType, type, types.CodeType, type(os.environ))):
            continue
        step = path if len(path) > 300 else f"{path} > {type(obj).__name__}"
        stack.extend((child, step) for child in _children(obj))
    return found, len(seen)


def test_walker_finds_a_key_held_the_old_ways():
    """The walk reaches what the old code leaked: a clear attribute, a context's request."""
    import httpx

    class OldClient:
        def __init__(self) -> None:
            self._api_key = SENTINEL_KEY

    request = httpx.Request("POST", "http://127.0.0.1:9/v1",
                            headers={"Authorization": f"Bearer {SENTINEL_KEY}"})
    try:
        try:
            raise httpx.ReadTimeout("timed out", request=request)
        except httpx.ReadTimeout:
            raise NbClaudeError("stalled") from None  # `from None` still sets __context__
    except NbClaudeError as exc:
        error = exc
    del request
    assert find_key({"client": [OldClient()]})[0]
    assert find_key({"error": error})[0]
    assert find_key({"clean": [{"Authorization": "Bearer ***"}, error.args]})[0] == []


def _ask(session: Any, exceptions: list[BaseException], prompt: str, **options: Any) -> Any:
    try:
        return session.ask(prompt, display=False, **options)
    except NbClaudeError as exc:
        exceptions.append(exc)
        return None


def test_no_object_reachable_from_magics_sessions_replies_or_errors_holds_the_key(
        run, server, ip, monkeypatch):
    _config.settings.update(max_retries=1)
    replies: list[Any] = []
    exceptions: list[BaseException] = []

    def cell(source: str) -> None:
        result = run(source)
        if result.error is not None:
            exceptions.append(result.error)

    # Magics: the key from $AIMLAPI_KEY (set by the `configured` fixture).
    server.reply("Streamed fine.")
    cell("%%claude\nHello")
    server.reply("Whole reply fine.")
    cell("%%claude --no-stream\nHello again")
    server.fault(401, "bad key")
    cell("%%claude\nRefused")
    server.fault(500, "boom", headers={"retry-after-ms": "10"})
    server.fault(500, "boom", headers={"retry-after-ms": "10"})
    cell("%%claude\nServer error twice")
    server.drop(after_chunks=2)
    cell("%%claude\nDropped mid-stream")
    server.drop().drop()
    cell("%%claude\nDropped before the first byte")
    _config.settings.update(timeout=0.4)
    ip.run_line_magic("config", "ClaudeMagics.timeout = 0.4")
    server.stall(2, after_chunks=1)
    cell("%%claude\nStalls")
    server.reply("never", first_byte_delay=2).reply("never", first_byte_delay=2)
    cell("%%claude --no-stream\nHeaders too late")
    ip.run_line_magic("config", "ClaudeMagics.timeout = 10.0")
    server.reply("too late", first_byte_delay=3)
    timer = threading.Timer(0.4, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    cell("%%claude\nInterrupted")
    timer.join()
    assert len(exceptions) >= 6, [str(e) for e in exceptions]
    assert any("API key was not accepted" in str(e) for e in exceptions)
    assert any("dropped mid-reply" in str(e) for e in exceptions)
    assert any("did not answer in time" in str(e) for e in exceptions)

    # A Session: the key from %claude_login (kept by set_api_key).
    monkeypatch.delenv("AIMLAPI_KEY")
    _config.set_api_key(SENTINEL_KEY)
    session = nb_claude.get_session("reachability")
    server.reply("Session reply.")
    replies.append(_ask(session, exceptions, "q1"))
    server.reply("Whole.")
    replies.append(_ask(session, exceptions, "q2", stream=False))
    server.fault(401)
    _ask(session, exceptions, "q3")
    server.drop(after_chunks=1)
    _ask(session, exceptions, "q4")
    for first_byte in (False, True):  # Stop while waiting for headers, then mid-stream
        if first_byte:
            server.reply("far too late", first_byte_delay=5)
        else:
            server.stall(5, after_chunks=2)
        token = CancelToken()
        threading.Timer(0.5, token.cancel).start()
        replies.append(_ask(session, exceptions, "stop me", cancel=token))
    assert replies[-1] is not None and replies[-1].interrupted
    # A Client used directly, with a key given to it.
    direct = Client(api_key=SENTINEL_KEY, base_url=server.url, max_retries=0, timeout=5)
    server.fault(403)
    try:
        direct.create({"model": "claude-opus-4-8", "max_tokens": 10,
                       "messages": [{"role": "user", "content": "hi"}]})
    except NbClaudeError as exc:
        exceptions.append(exc)

    # Every request carried the key: the test would notice one that never left.
    assert sum(r.headers.get("authorization") == f"Bearer {SENTINEL_KEY}"
               for r in server.requests) >= 15
    time.sleep(0.2)  # let the stop timers finish
    roots = {"default session": nb_claude.get_session(), "session": session,
             "replies": replies, "history": [t.reply for t in session.history],
             "direct client": direct, "key": _config.get_api_key(),
             **{f"error {i}: {e}": e for i, e in enumerate(exceptions)}}
    leaks, walked = find_key(roots)
    assert leaks == [] and walked > 2_000
    assert repr(_config.get_api_key()) == "Secret('***')"
    direct.close()


def test_a_secret_does_not_show_or_pickle():
    import copy
    import pickle

    secret = _config.Secret(SENTINEL_KEY)
    assert SENTINEL_KEY not in f"{secret} {secret!r}"
    assert secret.reveal() == SENTINEL_KEY
    assert secret == _config.Secret(SENTINEL_KEY) and secret != _config.Secret(SENTINEL_KEY + "x")
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    with pytest.raises(TypeError):
        copy.copy(secret)
