"""Rules: answers that apply to any request, whatever order requests arrive in, and the
count of requests in flight. The queue of scripted answers cannot fail one item of a
concurrent batch; a rule can."""

from __future__ import annotations

import threading
import time
from typing import Any

__all__ = ["Rules"]


class Rules:
    """`fail_when` and `rate_limit` rules, and the most requests seen in flight at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fail: list[tuple[str, int, str]] = []
        self._limited_until = 0.0
        self._retry_after = 1.0
        self._in_flight = 0
        self._generation = 0  # requests that began before the last reset are not counted
        self.max_in_flight = 0

    def reset(self) -> None:
        with self._lock:
            self._fail.clear()
            self._limited_until = 0.0
            self._generation += 1
            self._in_flight = self.max_in_flight = 0

    def fail_when(self, text: str, status: int, message: str) -> None:
        if not isinstance(text, str) or not text:
            raise ValueError("fail_when needs the text to look for")
        with self._lock:
            self._fail.append((text, int(status), message))

    def rate_limit(self, seconds: float, retry_after: float) -> None:
        with self._lock:
            self._limited_until = time.monotonic() + float(seconds)
            self._retry_after = float(retry_after)

    def enter(self) -> int:
        """Count a request in; returns the token `leave` takes."""
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            return self._generation

    def leave(self, generation: int) -> None:
        with self._lock:
            if generation == self._generation:
                self._in_flight -= 1

    def answer_for(self, body: dict[str, Any]) -> tuple[int, str, dict[str, str]] | None:
        """(status, message, headers) of the rule this request falls under, or None."""
        with self._lock:
            if time.monotonic() < self._limited_until:
                return 429, "Too Many Requests", {"retry-after": f"{self._retry_after:g}"}
            rules = list(self._fail)
        text = _last_user_text(body) if rules else ""
        for needle, status, message in rules:
            if needle in text:
                return status, message or f"scripted failure for requests containing {needle!r}", {}
        return None


def _last_user_text(body: dict[str, Any]) -> str:
    """The text of the request's last user message (its text blocks joined)."""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "\n".join(str(b.get("text", "")) for b in content
                                 if isinstance(b, dict) and b.get("type") == "text")
            return ""
    return ""
