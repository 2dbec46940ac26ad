"""Run one prompt template over many items: concurrent, resumable, typed, with a cost guard.

Items are independent requests, not turns: they share the session's system prompt,
model and options and never enter its history; their tokens and cost are added to
its usage. Each item's request is its own replay entry, looked up before sending and
written as soon as it completes, so a re-run sends only what is missing. Pure of
front ends: progress goes to a `view` the caller passes (or None).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ._batch_gate import Appender, Gate
from ._batch_items import (
    Estimate,
    Items,
    answer_for,
    make_items,
    merged,
    replay_file,
    request_tokens,
    table,
)
from ._config import redact
from ._errors import APIStatusError, Cancelled, ConfigError, NbClaudeError, ReplayMissError
from ._stream import Reply, Usage

if TYPE_CHECKING:
    from ._client import CancelToken, Client
    from ._engine import Engine
    from ._options import Options

__all__ = ["Batch", "Progress", "BatchView", "STOPPED", "DEFAULT_CONCURRENCY"]

DEFAULT_CONCURRENCY = 8
MAX_CONCURRENCY = 256
STOPPED = "stopped: {done:,} of {total:,} done; re-run the cell to finish (finished answers " \
          "are replayed)"
NOT_RUN = "not run: stopped"
_SAMPLE = 50  # items whose requests the cost estimate measures
_PLAIN_OUTPUT_GUESS = 300  # output tokens a plain-text item is assumed to use, at most
_THROTTLED = frozenset({429, 529})
REQUEUES = 3  # times an item still refused for a rate limit goes back in the queue
_UPDATE_EVERY = 0.1  # seconds between view updates


@dataclass
class Progress:
    """A snapshot of a run, for a progress view."""

    total: int
    done: int
    errors: int
    replayed: int
    in_flight: int
    concurrency: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    elapsed: float
    rate: float  # items per second over the run so far (sent items)
    eta: float | None  # seconds
    state: str  # "running" | "finished" | "stopped" | "failed"
    estimated: bool = False  # the cost is an estimate (a price table, or the stand-in)
    sent: int = 0  # requests sent to the service (not replayed)


class BatchView(Protocol):
    def start(self, progress: Progress) -> None: ...
    def update(self, progress: Progress) -> None: ...
    def finish(self, progress: Progress, note: str) -> None: ...


class Batch:
    """One template over many items of one session (`Engine`); `prepare()` reads the
    replay file and estimates the cost, `run()` sends what is missing."""

    def __init__(self, engine: Engine, template: str, items: object, *, schema: object = None,
                 attach: object = None, concurrency: int = DEFAULT_CONCURRENCY,
                 system: str | None = None, model: str | None = None,
                 max_tokens: int | None = None, replay: str | None = None,
                 namespace: Any = None, cell_id: str | None = None,
                 label: str | None = None) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) \
                or not 1 <= concurrency <= MAX_CONCURRENCY:
            raise ConfigError(f"concurrency must be a whole number from 1 to {MAX_CONCURRENCY}, "
                              f"not {concurrency!r}")
        self.engine = engine
        self.cfg = engine.settings
        self.concurrency = concurrency
        self.items: Items = make_items(template, items, attach)
        self.opts: Options = engine.options(model=model, max_tokens=max_tokens, system=system,
                                            stream=False, replay=replay)
        self.answer = answer_for(schema, namespace)
        self.cell = {"id": cell_id, "label": label, "session": engine.name, "position": None,
                     "step": None}
        n = len(self.items)
        self.names = ["reply"] if self.answer is None else list(self.answer.field_names())
        if "error" in self.names:
            raise ConfigError("the schema has a field named 'error', which the result keeps "
                              "for failures: rename the field")
        self.columns: dict[str, list[Any]] = {name: [None] * n for name in self.names}
        self.errors: list[str] = [""] * n
        self.finished = bytearray(n)  # 1 once an item has its value or its error
        # (position, replay key, whether the replay file was searched for it) still to send
        self.pending: list[tuple[int, str, bool]] = []
        self._todo: deque[tuple[int, str, bool]] = deque()
        self._requeued: dict[int, int] = {}  # position -> times put back after a rate limit
        self._converted: dict[int, list[Any]] = {}  # a pending item's attachments, converted
        self.notes: list[str] = []
        self.usage = Usage()
        self.sent = 0  # requests sent (not replayed)
        self.offline = False
        self.done = self.error_count = self.replayed = 0
        self._lock = threading.Lock()
        self._tokens: set[CancelToken] = set()
        self._estimate: Estimate | None = None
        self._file = replay_file(self.cfg.replay_path) if self.opts.replay != "off" else None
        self._client: Client | None = None
        self._appender: Appender | None = None
        self._started = 0.0
        self._gate = Gate(concurrency)
        self._halted = False
        self._settled = False
        self.state, self.last_note = "", ""

    def __repr__(self) -> str:
        return f"Batch(items={len(self.items)}, done={self.done}, pending={len(self.pending)})"

    # -- one item's request ---------------------------------------------------
    def request(self, position: int, attachments: list[Any] | None = None
                ) -> tuple[dict[str, Any], list[Any]]:
        """Item `position`'s request body and attachments (converted here unless given);
        ConfigError if it cannot be made."""
        from ._wire import user_content

        try:
            prompt = self.items.prompt(position)
        except (KeyError, IndexError, ValueError, TypeError, AttributeError) as exc:
            raise ConfigError(f"the template could not be filled: {type(exc).__name__}: "
                              f"{_line(exc)}") from None
        if attachments is None:
            attachments = self.engine.attachments(self.items.attach(position), alone=True) \
                if self.items.attaches else []
        body = self.opts.body([{"role": "user", "content": user_content(prompt, attachments)}])
        if self.answer is not None:
            body = self.answer.apply(body)  # the answer tool, forced; no thinking
        return body, attachments

    # -- before sending -------------------------------------------------------
    def prepare(self) -> Estimate:
        """Fill what the replay file already has, list the rest, and estimate their cost."""
        if self._estimate is not None:
            return self._estimate
        from ._replay import request_key

        lookup = self._file is not None and self.opts.replay in ("auto", "replay") \
            and self._file.path.exists()
        for position in range(len(self.items)):
            try:
                body, attachments = self.request(position)
            except ConfigError as exc:
                self._fail(position, str(exc))
                continue
            key = request_key(body) if self._file is not None else ""
            found = self._recorded(key) if lookup else None
            if found is not None and self._keep(position, found, replayed=True):
                continue
            # The file is read once, here: the worker looks again only for an entry it could
            # not use (an invalid typed answer, which leads to the recorded retry). One that
            # another kernel records meanwhile costs a request, not a lock per item.
            self.pending.append((position, key, found is None))
            if attachments:  # converted once: the estimate and the worker reuse them
                self._converted[position] = attachments
        self._estimate = self._measure()
        return self._estimate

    def _measure(self) -> Estimate:
        count = len(self.pending)
        step = max(1, count // _SAMPLE)
        sample = self.pending[::step][:_SAMPLE]
        tokens = []
        for position, _, _ in sample:
            body, attachments = self.request(position, self._converted.get(position, []))
            tokens.append(request_tokens(body, attachments))
        per_item = sum(tokens) / len(tokens) if tokens else 0.0
        out_each = min(self.opts.max_tokens, _PLAIN_OUTPUT_GUESS if self.answer is None
                       else 20 + 25 * len(self.names))
        in_all, out_all = math.ceil(per_item * count), out_each * count
        price = self.cfg.price_for(self.opts.model)
        cost = None if price is None else (in_all * price[0] + out_all * price[1]) / 1e6
        return Estimate(count, self.replayed, in_all, out_all, cost)

    def check_cost(self, confirm: bool, ask: str) -> None:
        """Refuse (ConfigError) a run estimated above `batch_confirm_usd` unless confirmed."""
        estimate = self.prepare()
        limit = self.cfg.batch_confirm_usd
        if confirm or estimate.cost_usd is None or estimate.cost_usd <= limit:
            return
        raise ConfigError(f"nothing sent: {estimate.line()}, over the ${limit:,.2f} limit "
                          f"(batch_confirm_usd); {ask} to send")

    # -- running --------------------------------------------------------------
    def run(self, *, view: BatchView | None = None, cancel: CancelToken | None = None,
            confirm: bool = False, ask: str = "pass confirm=True", out: str = "") -> Any:
        """Send the missing items and return the result (see `result`). A KeyboardInterrupt
        or `cancel` stops what is in flight; what finished is kept. A started view is always
        finished, also when the run fails; `out` names the result's variable for it."""
        self.check_cost(confirm, ask)
        if self.pending and self.opts.replay != "replay":
            from ._config import get_api_key
            from ._errors import MissingKeyError

            if not get_api_key():
                raise MissingKeyError()  # before any item: each would fail the same way
        self._started = time.monotonic()
        if view is not None:
            view.start(self.progress("running"))
        settled = False
        try:
            state = self._send_all(view, cancel) if self.pending else "finished"
            self._settle()
            note = self.note(state)
            result = self.result(state, note)
            self.state, self.last_note = state, note
            settled = True
            if view is not None:
                where = f"; result in {out} ({', '.join([*self.names, 'error'])})" if out \
                    else ""
                view.finish(self.progress(state), note + where)
            return result
        except BaseException as exc:
            if not settled:
                with contextlib.suppress(Exception):  # the first failure is the one to raise
                    self._settle()
                state = "stopped" if isinstance(exc, KeyboardInterrupt) else "failed"
                note = self.note(state) if state == "stopped" \
                    else f"failed: {type(exc).__name__}: {_line(exc)}"
                self.state, self.last_note = state, note
                if view is not None:
                    view.finish(self.progress(state), note)
            raise

    def _settle(self) -> None:
        """Once: every answer received written, the client closed, the usage counted, and
        the items never sent marked as not run."""
        if self._settled:
            return
        self._settled = True
        try:
            self._flush()
            if self._client is not None:
                self._client.close()
        finally:
            if self.sent:
                self.engine.count_side_usage(self.usage, self.sent, offline=self.offline)
            for position in range(len(self.items)):
                if not self.finished[position]:
                    self.errors[position] = NOT_RUN

    def _send_all(self, view: BatchView | None, cancel: CancelToken | None) -> str:
        self._todo.extend(self.pending)
        count = min(self.concurrency, len(self.pending))
        left = [count]
        over = threading.Event()

        def work() -> None:
            try:
                self._work()
            finally:
                with self._lock:
                    left[0] -= 1
                    if not left[0]:
                        over.set()

        workers = [threading.Thread(target=work, daemon=True, name=f"nb_claude-batch-{n}")
                   for n in range(count)]
        for worker in workers:
            worker.start()
        try:
            while not over.wait(_UPDATE_EVERY):
                if cancel is not None and cancel.cancelled:
                    self._stop(workers)
                    return "stopped"
                if view is not None:
                    view.update(self.progress("running"))
        except KeyboardInterrupt:
            self._stop(workers)
            return "stopped"
        except BaseException:
            self._stop(workers)
            raise
        return "finished"

    def _stop(self, workers: list[threading.Thread]) -> None:
        self._gate.stop()
        with self._lock:
            self._halted = True
            tokens = list(self._tokens)
        for token in tokens:
            token.cancel()
        deadline = time.monotonic() + 5
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))

    def _work(self) -> None:
        from ._client import CancelToken

        while self._gate.enter():
            with self._lock:
                job = self._todo.popleft() if self._todo else None
            if job is None:
                self._gate.leave(False)
                return
            token = CancelToken()
            with self._lock:
                self._tokens.add(token)
                if self._halted:  # stopped between taking the item and here
                    token.cancel()
            ok = False
            try:
                ok = self._item(*job, token)
            finally:
                with self._lock:
                    self._tokens.discard(token)
                self._gate.leave(ok)

    def _item(self, position: int, key: str, looked: bool, token: CancelToken) -> bool:
        """Answer one item; True when it got its value. Never raises but Cancelled's way out."""
        try:
            body, attachments = self.request(position, self._converted.get(position, []))
            reply, replayed = self._exchange(body, key, token, position, attachments,
                                             looked=looked)
            if self._keep(position, reply, replayed=replayed, body=body, token=token,
                          attachments=attachments):
                return True
        except Cancelled:
            return False
        except NbClaudeError as exc:
            if token.cancelled:
                return False
            if isinstance(exc, APIStatusError) and exc.status in _THROTTLED \
                    and self._requeue((position, key, looked)):
                return False
            self._fail(position, _line(exc))
        except Exception as exc:  # a bug must cost one item, not the batch
            if token.cancelled:
                return False
            self._fail(position, f"{type(exc).__name__}: {_line(exc)}")
        return False

    def _requeue(self, job: tuple[int, str, bool]) -> bool:
        """Put an item the service still refused for a rate limit (its retries spent) back at
        the end of the queue, behind a pause, at most REQUEUES times; False after that."""
        from ._client import retry_delay

        with self._lock:
            times = self._requeued.get(job[0], 0)
            if times >= REQUEUES or self._halted:
                return False
            self._requeued[job[0]] = times + 1
            self._todo.append(job)
        self._gate.throttle(self._gate.last_delay or retry_delay(times))
        return True

    def _keep(self, position: int, reply: Reply, *, replayed: bool,
              body: dict[str, Any] | None = None, token: CancelToken | None = None,
              attachments: list[Any] | None = None) -> bool:
        """Store the item's value from `reply` (asking once more for an invalid typed answer
        when `body` is given); False if it has none yet."""
        if self.answer is None:
            self._store(position, {"reply": reply.text}, replayed)
            return True
        from ._typed import AnswerError

        try:
            value = self.answer.parse(reply)
        except AnswerError as exc:
            if body is None or token is None:
                return False  # found in the replay file: the worker asks (or finds) again
            from ._replay import request_key

            retry = {**body, "messages": merged([*body["messages"],
                                                  *self.answer.retry_messages(reply, exc)])}
            again, was_replayed = self._exchange(retry, request_key(retry), token, position,
                                                 attachments or [])
            try:
                value = self.answer.parse(again)
            except AnswerError as second:
                self._fail(position, f"asked twice: {_line(second)}")
                return False
            replayed = replayed and was_replayed
        self._store(position, self.answer.columns(value), replayed)
        return True

    def _store(self, position: int, values: dict[str, Any], replayed: bool) -> None:
        with self._lock:
            for name, value in values.items():
                column = self.columns.get(name)
                if column is None:
                    column = self.columns[name] = [None] * len(self.items)
                    self.names.append(name)
                column[position] = value
            self.finished[position] = 1
            self.done += 1
            self.replayed += replayed
            self._converted.pop(position, None)

    def _fail(self, position: int, message: str) -> None:
        with self._lock:
            self.errors[position] = redact(message)
            self.finished[position] = 1
            self.done += 1
            self.error_count += 1
            self._converted.pop(position, None)

    def _recorded(self, key: str) -> Reply | None:
        from ._replay import ReplayError

        assert self._file is not None
        try:
            entry = self._file.get(key)
        except ReplayError as exc:
            raise ConfigError(str(exc)) from None
        if entry is None or not isinstance(entry.get("reply"), dict):
            return None
        reply = Reply.from_dict(entry["reply"])
        if reply.partial:
            return None
        reply.replayed, reply.request_sha256 = True, key
        return reply

    def _exchange(self, body: dict[str, Any], key: str, token: CancelToken, position: int,
                  attachments: list[Any], *, looked: bool = False) -> tuple[Reply, bool]:
        """(the reply to `body` from the replay file or the service, whether replayed);
        `looked`: the file was already searched for `key` in vain."""
        from ._exchange import STAND_IN_HEADER, _estimate_cost
        from ._stream import reply_from_response

        mode = self.opts.replay
        if self._file is not None and mode in ("auto", "replay"):
            found = None if looked else self._recorded(key)
            if found is not None:
                return found, True
            if mode == "replay":
                raise ReplayMissError(f"no recorded reply for this item in "
                                      f"{self._file.path.name} (strict replay mode): run it "
                                      "with a key and --replay auto to record it")
        offline = False

        def on_response(response: Any) -> None:
            nonlocal offline
            offline = bool(response.headers.get(STAND_IN_HEADER))

        def on_retry(status: int | None, delay: float) -> None:
            if status in _THROTTLED:
                self._gate.throttle(delay)

        started = time.monotonic()
        data = self._sender().create(body, cancel=token, on_response=on_response,
                                     on_retry=on_retry)
        reply = reply_from_response(data)
        reply.elapsed, reply.request_sha256 = time.monotonic() - started, key
        reply.model = reply.model or self.opts.model
        _estimate_cost(reply, self.cfg)
        if offline:
            reply.usage.estimated = True  # made up by the stand-in: never money spent
        with self._lock:
            self.usage = self.usage + reply.usage
            self.sent += 1
            self.offline = self.offline or offline
        if not reply.done:
            raise NbClaudeError("the reply ended without saying why it stopped")
        if self._file is not None and mode in ("auto", "record"):
            self._record(key, body, reply, position, attachments, offline)
        return reply, False

    def _record(self, key: str, body: dict[str, Any], reply: Reply, position: int,
                attachments: list[Any], offline: bool) -> None:
        from ._inputs import turn_inputs
        from ._turns import Turn

        turn = Turn(self.items.prompt(position), attachments)
        extra: dict[str, Any] = {"inputs": turn_inputs(turn, body, []),
                                 "cell": {**self.cell, "item": position}}
        if offline:
            extra["offline"] = True
        with self._lock:
            if self._appender is None:  # one thread appends: no request waits for the disk
                self._appender = Appender(self._file)
            appender = self._appender
        appender.put(key, reply.to_dict(), body, extra)

    def _flush(self) -> None:
        """Wait until every answer received is in the replay file."""
        if self._appender is not None:
            problem = self._appender.close()
            if problem:
                self.notes.append(problem)

    def _sender(self) -> Client:
        with self._lock:
            if self._client is None:
                from ._client import Client
                from ._config import get_api_key

                cfg = self.cfg
                self._client = Client(api_key=get_api_key(), base_url=cfg.base_url,
                                      timeout=cfg.timeout, connect_timeout=cfg.connect_timeout,
                                      first_byte_timeout=cfg.first_byte_timeout,
                                      max_retries=cfg.max_retries, transport=self.engine.transport,
                                      max_connections=self.concurrency)
            return self._client

    # -- what the caller sees -------------------------------------------------
    def progress(self, state: str) -> Progress:
        with self._lock:
            done, replayed, errors, usage = self.done, self.replayed, self.error_count, self.usage
        elapsed = time.monotonic() - self._started if self._started else 0.0
        rate = (done - replayed) / elapsed if elapsed > 0 else 0.0
        left = len(self.items) - done
        eta = left / rate if rate > 0 and state == "running" else (0.0 if not left else None)
        return Progress(total=len(self.items), done=done, errors=errors, replayed=replayed,
                        in_flight=self._gate.in_flight, concurrency=self._gate.limit,
                        input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                        cost_usd=usage.cost_usd or 0.0, elapsed=elapsed, rate=rate, eta=eta,
                        state=state, estimated=usage.estimated, sent=self.sent)

    def note(self, state: str) -> str:
        total = len(self.items)
        if state == "stopped":
            text = STOPPED.format(done=self.done, total=total)
        else:
            parts = [f"{total:,} item{'s' if total != 1 else ''}",
                     f"{self.error_count:,} error{'s' if self.error_count != 1 else ''}"]
            if self.replayed:
                parts.append(f"{self.replayed:,} replayed")
            text = ", ".join(parts)
        return "; ".join([text, *self.notes])

    def result(self, state: str = "finished", note: str = "") -> Any:
        """A DataFrame aligned with the input's index (one column per answer field, or
        `reply`, plus `error`), or a list of dicts where pandas is not installed."""
        columns = {**{name: self.columns[name] for name in self.names}, "error": self.errors}
        return table(columns, self.items.index, {"state": state, "note": note, "done": self.done,
                                                 "errors": self.error_count,
                                                 "replayed": self.replayed})


def _line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return redact(" ".join(text.split())[:300])

