"""The chat panel driven in-process: real widgets, a real session, the stand-in server."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import SENTINEL_KEY

from nb_claude import _config
from nb_claude._panel import ChatPanel, attachable_names
from nb_claude._render import CURSOR
from nb_claude._session import get_session
from nb_claude.testing import StandInServer


def wait_for(condition: Callable[[], object], timeout: float = 10.0) -> float:
    """Poll until `condition()` is true; returns the seconds it took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.005)
    return time.monotonic() - start


def idle(panel: ChatPanel) -> bool:
    return panel._thread is None and panel._token is None


def send(panel: ChatPanel, text: str) -> None:
    panel.input.value = text
    panel.send_button.click()


@pytest.fixture
def panels(configured: _config.Settings) -> Iterator[Callable[..., ChatPanel]]:
    """Make panels that are closed (and unsubscribed) after the test."""
    made: list[ChatPanel] = []

    def make(session: Any = None, **kwargs: Any) -> ChatPanel:
        panel = ChatPanel(session, **kwargs)
        made.append(panel)
        return panel

    yield make
    for panel in made:
        if panel._token is not None:
            panel._token.cancel()
        if panel._thread is not None:
            panel._thread.join(5)
        panel.close()


class Renders:
    """Every Markdown state the transcript's slots took, with timestamps."""

    def __init__(self, panel: ChatPanel) -> None:
        self.seen: list[tuple[float, str]] = []
        self._watched: set[int] = set()
        panel.transcript.observe(self._children, names="children")
        self._children({"new": panel.transcript.children})

    def _children(self, change: dict[str, Any]) -> None:
        for child in change["new"]:
            if id(child) not in self._watched and hasattr(child, "outputs"):
                self._watched.add(id(child))
                child.observe(self._outputs, names="outputs")

    def _outputs(self, change: dict[str, Any]) -> None:
        for output in change["new"]:
            self.seen.append((time.monotonic(), output["data"]["text/markdown"]))

    def live(self) -> list[tuple[float, str]]:
        return [(t, md) for t, md in self.seen if CURSOR in md]


def test_send_streams_the_reply_into_the_transcript_and_the_session(
        panels: Callable[..., ChatPanel], server: StandInServer) -> None:
    # Slow enough that the busy state after Send is still there to see on a loaded machine.
    server.reply(chunks=["Hello ", "**panel**", "!\n\n| a | b |\n|---|---|\n| 1 | 2 |"],
                 delay=0.3)
    _config.settings.update(model="claude-sonnet-4-6")
    panel = panels("default")
    assert panel.markdown == []
    assert "No turns yet" in panel.transcript.children[0].value
    panel.model.value = "anthropic/claude-opus-4-8"
    send(panel, "Say hi")
    assert panel.send_button.disabled and not panel.stop_button.disabled
    wait_for(lambda: idle(panel))

    session = get_session("default")
    assert [t.prompt for t in session.history] == ["Say hi"]
    turn = session.history[0]
    assert turn.source == "panel"
    assert turn.text == "Hello **panel**!\n\n| a | b |\n|---|---|\n| 1 | 2 |"
    assert server.requests[-1].body["model"] == "anthropic/claude-opus-4-8"
    assert server.requests[-1].body["stream"] is True

    [markdown] = panel.markdown
    assert markdown.startswith("**You:** Say hi")
    assert "Hello **panel**!" in markdown and "| 1 | 2 |" in markdown
    assert CURSOR not in markdown and " in / " in markdown  # the usage footer
    [slot] = panel.transcript.children
    [output] = slot.outputs
    assert output["output_type"] == "display_data"
    assert output["data"]["text/markdown"] == markdown
    assert "nbc-turn" in slot._dom_classes
    assert panel.input.value == ""
    assert not panel.send_button.disabled and panel.stop_button.disabled
    assert panel.error.layout.display == "none"
    assert repr(panel) == "ChatPanel(session='default', turns=1)"


def test_every_control_has_its_css_class(panels: Callable[..., ChatPanel]) -> None:
    panel = panels()
    classes = set()
    stack: list[Any] = [panel]
    while stack:
        widget = stack.pop()
        classes.update(widget._dom_classes)
        stack.extend(getattr(widget, "children", ()))
    assert {"nbc-panel", "nbc-input", "nbc-send", "nbc-stop", "nbc-new", "nbc-model",
            "nbc-attach", "nbc-transcript", "nbc-error", "nbc-status"} <= classes
    assert panel.model.options == (("claude-opus-4-8", "anthropic/claude-opus-4-8"),)


def test_streaming_updates_are_throttled(panels: Callable[..., ChatPanel],
                                         server: StandInServer,
                                         configured: _config.Settings) -> None:
    configured.updates_per_second = 5
    words = [f"w{i} " for i in range(40)]
    server.reply(chunks=words, delay=0.02, split=False, keepalive=False)
    panel = panels()
    renders = Renders(panel)
    updates: list[float] = []
    unsubscribe = get_session().subscribe(
        lambda event, turn: updates.append(time.monotonic()) if event == "update" else None)
    send(panel, "count")
    wait_for(lambda: idle(panel))
    unsubscribe()

    streamed = updates[-1] - updates[0]
    assert len(updates) >= 30
    live = renders.live()
    assert 2 <= len(live) <= streamed * 5 + 3, (len(live), streamed)
    gaps = [b[0] - a[0] for a, b in zip(live, live[1:], strict=False)]
    assert min(gaps) >= 0.2 - 0.03, gaps
    assert any("w3 " in md and "w39" not in md for _, md in live)  # a partial reply was shown
    assert "w39" in panel.markdown[-1] and CURSOR not in panel.markdown[-1]


@pytest.mark.parametrize("script", ["slow", "stall"])
def test_stop_ends_the_reply_at_once_and_keeps_the_partial_turn(
        panels: Callable[..., ChatPanel], server: StandInServer, script: str) -> None:
    full = "".join(f"word{i} " for i in range(30))
    if script == "slow":
        server.reply(chunks=[f"word{i} " for i in range(30)], delay=0.3)
    else:
        server.stall(5, after_chunks=1)
    panel = panels()
    send(panel, "tell me a long story")
    wait_for(lambda: panel.markdown and CURSOR in panel.markdown[-1]
             and len(panel.session.history) == 0 and panel.session.busy)
    wait_for(lambda: "word1" in panel.markdown[-1] or "This" in panel.markdown[-1])

    started = time.monotonic()
    panel.stop_button.click()
    assert "interrupted" in panel.markdown[-1]  # shown before the request thread has ended
    assert CURSOR not in panel.markdown[-1]
    wait_for(lambda: idle(panel) and len(panel.session.history) == 1, timeout=1.0)
    assert time.monotonic() - started < 1.0

    turn = panel.session.history[0]
    assert turn.interrupted and turn.text and turn.text != full
    assert "interrupted" in panel.markdown[-1]
    assert panel.status.value == "Stopped."
    assert panel.input.value == ""

    server.reply("Carrying on.")
    send(panel, "go on")
    wait_for(lambda: idle(panel))
    assert [t.prompt for t in panel.session.history] == ["tell me a long story", "go on"]
    messages = server.requests[-1].body["messages"]
    assert messages[1] == {"role": "assistant", "content": turn.text.rstrip()}
    assert "Carrying on." in panel.markdown[-1]


def test_an_error_shows_in_the_panel_and_keeps_the_input_and_history(
        panels: Callable[..., ChatPanel], server: StandInServer) -> None:
    server.reply("First answer.")
    panel = panels()
    send(panel, "first")
    wait_for(lambda: idle(panel))
    before = list(panel.markdown)

    server.fault(401)
    send(panel, "second question")
    wait_for(lambda: idle(panel))
    assert panel.error.layout.display != "none"
    assert "API key" in panel.error.value and "\n" not in panel.error.value
    assert SENTINEL_KEY not in panel.error.value
    assert panel.input.value == "second question"
    assert [t.prompt for t in panel.session.history] == ["first"]
    assert panel.markdown == before
    assert not panel.send_button.disabled

    server.reply("Second answer.")
    panel.send_button.click()  # resend the kept text
    wait_for(lambda: idle(panel))
    assert panel.error.layout.display == "none"
    assert [t.prompt for t in panel.session.history] == ["first", "second question"]


def test_an_empty_prompt_sends_nothing(panels: Callable[..., ChatPanel],
                                       server: StandInServer) -> None:
    panel = panels()
    send(panel, "   \n")
    assert "write a question" in panel.error.value
    assert panel._thread is None and server.requests == []


def test_a_cell_turn_streams_into_an_open_panel_and_the_next_cell_continues(
        panels: Callable[..., ChatPanel], server: StandInServer, ip: Any, run: Any) -> None:
    panel = panels(shell=ip)
    renders = Renders(panel)
    server.reply("From the panel.")
    send(panel, "panel question")
    wait_for(lambda: idle(panel))

    server.reply(chunks=[f"c{i} " for i in range(12)], delay=0.05)
    cell = run("%%claude\ncell question")
    assert cell.error is None
    assert "c11" in cell.markdown
    turns = get_session().history
    assert [(t.prompt, t.source) for t in turns] == [("panel question", "panel"),
                                                    ("cell question", "cell")]
    # The next %%claude cell sent the panel's turn as context.
    assert server.requests[-1].body["messages"][:2] == [
        {"role": "user", "content": "panel question"},
        {"role": "assistant", "content": "From the panel."}]
    assert any("cell question" in md and "c3" in md and "c11" not in md
               for _, md in renders.live())  # seen while the cell streamed
    assert "c11" in panel.markdown[-1] and len(panel.markdown) == 2


def test_two_panels_on_one_session_stay_in_sync(panels: Callable[..., ChatPanel],
                                                server: StandInServer) -> None:
    first, second = panels("shared"), panels(get_session("shared"))
    server.reply(chunks=["One ", "two."], delay=0.05)
    send(first, "count")
    wait_for(lambda: idle(first))
    assert first.markdown == second.markdown and len(second.markdown) == 1
    assert "One two." in second.markdown[0]
    assert second.input.value == ""  # each panel keeps its own input

    server.reply("Three.")
    send(second, "more")
    wait_for(lambda: idle(second))
    assert first.markdown == second.markdown and len(first.markdown) == 2

    second.new_button.click()
    assert get_session("shared").history == []
    assert first.markdown == [] == second.markdown
    assert "No turns yet" in first.transcript.children[0].value


def test_a_panel_send_and_a_cell_at_the_same_moment_never_interleave(
        panels: Callable[..., ChatPanel], server: StandInServer) -> None:
    session = get_session()
    events: list[tuple[str, str]] = []
    session.subscribe(lambda event, turn: events.append((event, turn.prompt if turn else "")))
    server.reply(chunks=[f"p{i} " for i in range(10)], delay=0.05)
    server.reply(chunks=[f"m{i} " for i in range(5)], delay=0.01)
    panel = panels(session)
    send(panel, "from the panel")
    wait_for(lambda: session.busy)

    held: list[bool] = []
    probe = threading.Thread(target=lambda: held.append(not session._lock.acquire(blocking=False)))
    probe.start()
    probe.join()
    assert held == [True]  # the panel's turn holds the session lock while it streams

    reply = session.ask("from the main thread", display=False)  # blocks until the panel is done
    wait_for(lambda: idle(panel))
    assert reply.text == "".join(f"m{i} " for i in range(5))
    assert [t.prompt for t in session.history] == ["from the panel", "from the main thread"]
    assert session.history[0].text == "".join(f"p{i} " for i in range(10))
    assert not any(t.interrupted for t in session.history)

    order = [prompt for event, prompt in events if event in ("start", "end")]
    assert order == ["from the panel", "from the panel", "from the main thread",
                     "from the main thread"]
    updates = [prompt for event, prompt in events if event == "update"]
    switch = updates.index("from the main thread")
    assert set(updates[:switch]) == {"from the panel"}
    assert set(updates[switch:]) == {"from the main thread"}

    first, second = (r.body["messages"] for r in server.requests[-2:])
    assert first == [{"role": "user", "content": "from the panel"}]
    assert second[:2] == [{"role": "user", "content": "from the panel"},
                          {"role": "assistant", "content": session.history[0].text.rstrip()}]
    assert len(panel.markdown) == 2


def test_the_attach_picker_lists_frames_figures_and_the_last_plot(
        panels: Callable[..., ChatPanel], server: StandInServer, ip: Any) -> None:
    import pandas as pd
    from matplotlib.figure import Figure
    from PIL import Image

    ip.user_ns.update(df=pd.DataFrame({"a": [1, 2, 3], "b": [4, 5, 6]}), fig=Figure(),
                      count=3, text="not attachable", _hidden=pd.DataFrame())
    panel = panels(shell=ip)
    labels = dict((value, label) for label, value in panel.attach.options)
    assert labels["df"] == "df · DataFrame 3×2"
    assert labels["fig"] == "fig · figure"
    assert "count" not in labels and "text" not in labels and "_hidden" not in labels

    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), "red").save(buffer, format="PNG")
    ip.user_ns["png"] = buffer.getvalue()
    # Not captured: the plot recorder listens to the shell's own display publisher.
    result = ip.run_cell("from IPython.display import Image as _I, display as _d\n"
                         "_d(_I(data=png))\ns = df['a']", store_history=True)
    assert result.success
    labels = dict((value, label) for label, value in panel.attach.options)
    assert labels["s"] == "s · Series 3"  # refreshed after the cell ran
    assert "last plot" in labels.values()

    panel.attach.value = "df"
    panel.attach.value = next(v for label, v in panel.attach.options if label == "last plot")
    assert panel.attached == ["df", "last plot"]
    assert panel.attach.value == ""
    assert [c.description for c in panel.chips.children] == ["df ✕", "last plot ✕"]

    server.reply("I see a frame and a red picture.")
    send(panel, "what are these?")
    wait_for(lambda: idle(panel))
    assert panel.error.value == ""
    content = server.requests[-1].body["messages"][0]["content"]
    kinds = [block["type"] for block in content]
    assert "image" in kinds and kinds[-1] == "text"
    assert any("df" in str(block) and "DataFrame" in str(block) for block in content
               if block["type"] != "image")
    assert [a.name for a in panel.session.history[0].attachments][0] == "df"
    assert panel.attached == [] and panel.chips.children == ()
    assert "Attached: " in panel.markdown[-1]


def test_attachable_names_do_not_import_heavy_libraries() -> None:
    class Figure:  # same class name, wrong module: not offered
        pass

    assert attachable_names({"f": Figure(), "n": 1, "In": [], "DataFrame": type}) == []


def test_a_removed_variable_is_reported_not_dropped(panels: Callable[..., ChatPanel],
                                                   server: StandInServer, ip: Any) -> None:
    import pandas as pd

    ip.user_ns["gone"] = pd.DataFrame({"x": [1]})
    panel = panels(shell=ip)
    panel.attach.value = "gone"
    del ip.user_ns["gone"]
    send(panel, "look at this")
    assert "gone is no longer defined" in panel.error.value
    assert panel.input.value == "look at this" and panel.attached == ["gone"]
    assert panel._thread is None and server.requests == []


def test_new_conversation_clears_and_a_closed_panel_stops_listening(
        panels: Callable[..., ChatPanel], server: StandInServer) -> None:
    server.reply("Hi.")
    panel = panels()
    send(panel, "hello")
    wait_for(lambda: idle(panel))
    session = panel.session
    assert len(panel.markdown) == 1

    panel.new_button.click()
    assert session.history == [] and panel.markdown == []

    listeners = len(session._listeners)
    panel.close()
    assert len(session._listeners) == listeners - 1
    server.reply("Still works.")
    assert session.ask("after close", display=False).text == "Still works."
