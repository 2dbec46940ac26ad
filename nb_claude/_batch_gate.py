"""A batch's background machinery: how many requests are in flight (fewer after a rate
limit, more again after successes: additive increase, multiplicative decrease) and the
one thread that appends answers to the replay file. Pure: threads only."""

from __future__ import annotations

import math
import queue
import threading
import time
from typing import Any

__all__ = ["Gate", "Appender"]


class Gate:
    """At most `limit` requests in flight. A 429/529 halves the limit and pauses new
    requests for its Retry-After; each `limit` successes in a row add one back (AIMD)."""

    def __init__(self, most: int) -> None:
        self.most = self.limit = most
        self.in_flight = 0
        self._resume = 0.0
        self._last_cut = -math.inf
        self._streak = 0
        self._stopped = False
        self.last_delay = 0.0  # the last pause a rate limit asked for
        self._cond = threading.Condition()

    def enter(self) -> bool:
        with self._cond:
            while not self._stopped:
                wait = self._resume - time.monotonic()
                if wait <= 0 and self.in_flight < self.limit:
                    self.in_flight += 1
                    return True
                self._cond.wait(wait if wait > 0 else None)
            return False

    def leave(self, ok: bool) -> None:
        with self._cond:
            self.in_flight -= 1
            if ok:
                self._streak += 1
                if self._streak >= self.limit and self.limit < self.most:
                    self.limit, self._streak = self.limit + 1, 0
            self._cond.notify_all()

    def throttle(self, delay: float) -> None:
        now = time.monotonic()
        with self._cond:
            self.last_delay = delay
            self._resume = max(self._resume, now + delay)
            if now - self._last_cut > delay:  # one cut per wave of refusals
                self.limit, self._last_cut, self._streak = max(1, self.limit // 2), now, 0

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()


class Appender:
    """Appends entries to a replay file from one thread, so no request waits for the disk;
    the answers that arrived meanwhile go in one locked write (`ReplayFile.put_many`).
    `close()` returns once all are written (with the first failure's message, if any)."""

    BURST = 256  # entries at most in one write
    # Seconds the writer would wait after a burst's first answer so that more share its
    # write. 0: an answer is written as soon as it is in (a killed kernel loses none that
    # arrived); answers arriving during a write still share the next one.
    LINGER = 0.0

    def __init__(self, replay_file: Any) -> None:
        self._file = replay_file
        self._queue: queue.SimpleQueue[tuple[str, dict[str, Any], dict[str, Any],
                                             dict[str, Any]] | None] = queue.SimpleQueue()
        self._problem = ""
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="nb_claude-batch-record")
        self._thread.start()

    def put(self, key: str, reply: dict[str, Any], body: dict[str, Any],
            extra: dict[str, Any]) -> None:
        self._queue.put((key, reply, body, extra))

    def _run(self) -> None:
        from ._replay import ReplayError

        closing = False
        while not closing:
            entry = self._queue.get()
            if entry is not None and self.LINGER:
                time.sleep(self.LINGER)  # let the answers arriving meanwhile join this write
            burst = []
            while entry is not None:
                burst.append(entry)
                if len(burst) >= self.BURST:
                    break
                try:
                    entry = self._queue.get_nowait()
                except queue.Empty:
                    break
            closing = entry is None
            if not burst:
                continue
            try:
                self._file.put_many(burst)
            except (ReplayError, ValueError) as exc:  # the answers are good; their record failed
                self._problem = self._problem or f"not recorded: {exc}"

    def close(self) -> str:
        self._queue.put(None)
        self._thread.join()
        return self._problem
