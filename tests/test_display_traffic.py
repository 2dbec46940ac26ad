"""What a streamed reply costs the front end: the display messages of one reply add up to
at most 3x its final output, at most 10 updates a second, however slow rendering is.

The inline view is driven through IPython's real display machinery with its publisher
hooked; the panel's Output widgets are counted by the outputs state they would send.
A fake clock makes the stream and the slow renderer take seconds without waiting for them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from nb_claude import _render
from nb_claude._render import InlineView, Throttle
from nb_claude._session import Step, Turn, get_session
from nb_claude._stream import Reply

MB = 1_000_000


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def slow_render(monkeypatch: pytest.MonkeyPatch, clock: Clock) -> Iterator[list[float]]:
    """turn_markdown takes 0.3 s of the fake clock each time; the times it ran are noted."""
    real = _render.turn_markdown
    calls: list[float] = []

    def slow(turn: Turn, **kwargs: Any) -> str:
        calls.append(clock.now)
        clock.now += 0.3
        return real(turn, **kwargs)

    monkeypatch.setattr(_render, "turn_markdown", slow)
    yield calls


class Published:
    """Every display_data / update_display_data the shell publishes, with its JSON size."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.messages: list[tuple[float, int, bool, dict[str, Any]]] = []

    def __call__(self, data: dict[str, Any], metadata: Any = None, source: Any = None, *,
                 transient: Any = None, update: bool = False, **kwargs: Any) -> None:
        content = {"data": data, "metadata": metadata or {}, "transient": transient or {}}
        size = len(json.dumps(content, ensure_ascii=False).encode())
        self.messages.append((self.clock.now, size, update, data))

    @property
    def total(self) -> int:
        return sum(size for _, size, _, _ in self.messages)


@pytest.fixture
def published(_shell: Any, monkeypatch: pytest.MonkeyPatch, clock: Clock) -> Published:
    hook = Published(clock)
    monkeypatch.setattr(_shell.display_pub, "publish", hook)
    return hook


def reply_text(size: int) -> str:
    line = "The *mean* of `revenue` is 4.2 & the median 1.0 <- skewed; see [docs](https://e.com).\n"
    paragraph = line * 8 + "\n"
    return (paragraph * (size // len(paragraph) + 1))[:size]


def stream(view: Any, clock: Clock, text: str, events: int, seconds: float) -> Turn:
    """The reply arrives in `events` chunks over `seconds`, as Session.ask feeds a view."""
    turn = Turn("Explain the data", [])
    reply = Reply(model="anthropic/claude-opus-4-8")
    turn.steps.append(Step(reply))
    view.start(turn)
    for event in range(1, events + 1):
        clock.now += seconds / events
        reply.text = text[:len(text) * event // events]
        view.update(turn)
    reply.finish_reason = "end_turn"
    turn._freeze()
    view.finish(turn)
    return turn


def assert_rate(times: list[float], interval: float = 0.1) -> None:
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(gap >= interval - 1e-9 for gap in gaps), min(gaps)


@pytest.mark.parametrize("size, events", [(MB, 1_000), (10 * MB, 150)])
def test_inline_traffic_stays_within_three_times_the_final_output(
        published: Published, clock: Clock, slow_render: list[float], size: int,
        events: int) -> None:
    view = InlineView(10.0, clock=clock)
    stream(view, clock, reply_text(size), events, seconds=5.0)
    *live, final = published.messages
    assert final[2] and final[3]["text/plain"].startswith("The *mean*")
    assert len(final[3]["text/markdown"]) >= size
    ratio = published.total / final[1]
    assert ratio <= 3.0, (ratio, len(published.messages))
    assert_rate([t for t, *_ in live[1:]])
    assert_rate(slow_render[:-1])  # renders too are spaced from the end of the last one
    assert len(live) >= 4  # still live: it did update while streaming


def test_an_ordinary_reply_updates_ten_times_a_second(published: Published,
                                                      clock: Clock) -> None:
    """3,000 characters over 15 s, as the service streams a long answer: it never backs off."""
    view = InlineView(10.0, clock=clock)
    stream(view, clock, reply_text(3_000), 600, seconds=15.0)
    updates = [t for t, _, update, _ in published.messages[1:-1] if update]
    assert 110 <= len(updates) <= 120, len(updates)  # an event every 25 ms: 8 a second at most
    assert_rate(updates)
    assert updates[-1] - updates[0] > 14.0  # still updating at the end


def test_a_slow_large_reply_stays_within_three_times_its_final_output(
        published: Published, clock: Clock) -> None:
    """100 KB over 5 minutes, the real service's pace: traffic stays bounded by size, not time."""
    view = InlineView(10.0, clock=clock)
    stream(view, clock, reply_text(100_000), 3_000, seconds=300.0)
    *live, final = published.messages
    assert published.total / final[1] <= 3.0, (published.total / final[1], len(live))


def test_live_states_do_not_carry_the_text_twice(published: Published, clock: Clock) -> None:
    view = InlineView(10.0, clock=clock)
    stream(view, clock, reply_text(200_000), 50, seconds=5.0)
    for _, _, _, data in published.messages[1:-1]:
        assert len(data["text/plain"]) < 100
    assert len(published.messages[-1][3]["text/plain"]) >= 200_000


def test_forced_updates_and_the_final_state_always_go(clock: Clock) -> None:
    throttle = Throttle(10.0, clock=clock)
    throttle.record(10 * MB)
    assert not throttle.ready(10 * MB)
    clock.now += 1
    assert not throttle.ready(10 * MB) and throttle.ready(30 * MB)
    throttle.skip()
    assert throttle.wait() == pytest.approx(0.1) and not throttle.ready(30 * MB)


def test_panel_traffic_stays_within_three_times_the_final_output(
        configured: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch,
        slow_render: list[float]) -> None:
    from nb_claude import _panel

    monkeypatch.setattr(_panel, "Throttle", lambda rate: Throttle(rate, clock=clock))

    class NoTimer:  # trailing renders are real-time; the fake clock drives this test
        def __init__(self, *args: Any) -> None:
            self.daemon = True

        def start(self) -> None:
            pass

        def cancel(self) -> None:
            pass

    monkeypatch.setattr(_panel.threading, "Timer", NoTimer)
    session = get_session("traffic")
    panel = _panel.ChatPanel(session, shell=None, plots=None)
    sent: list[tuple[float, int]] = []

    def count(change: dict[str, Any]) -> None:
        sent.append((clock.now, len(json.dumps(list(change["new"]), ensure_ascii=False).encode())))

    class View:
        def start(self, turn: Turn) -> None:
            panel._on_event("start", turn)
            slot = panel._live_slot
            assert slot is not None
            slot.observe(count, names="outputs")
            sent.append((clock.now, len(json.dumps(list(slot.outputs)).encode())))

        def update(self, turn: Turn) -> None:
            panel._on_event("update", turn)

        def finish(self, turn: Turn) -> None:
            session.history.append(turn)
            panel._on_event("end", turn)

    try:
        stream(View(), clock, reply_text(MB), 1_000, seconds=5.0)
        final = sent[-1][1]
        assert final >= 2 * MB  # Markdown and plain text of the finished turn
        ratio = sum(size for _, size in sent) / final
        assert ratio <= 3.0, (ratio, len(sent))
        assert len(sent) >= 4
        assert_rate([t for t, _ in sent[1:-1]])
    finally:
        panel.close()


def test_display_benchmarks_run(_shell: Any) -> None:
    import importlib
    import math
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    rows = importlib.import_module("bench_display").run(quick=True)
    assert len(rows) == 4
    for found in rows:
        assert math.isfinite(found["value"]) and found["baseline"] > 0 and found["ok"] in (True,
                                                                                          False)
    assert all(r["ok"] for r in rows if r["name"].startswith("display traffic"))
    assert "bench_display" in importlib.import_module("run_all").MODULES
