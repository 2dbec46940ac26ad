"""A hostile reply in a real JupyterLab: no script runs, no image is fetched, the HTML shows
as text, in a %%claude cell and in the chat panel."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from nb_claude.testing import StandInServer

from .lab import CELL, JupyterServer, open_notebook, run_cell, screenshot


class Listener:
    """A local HTTP server that counts every request: the leak must stay at zero."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        hits = self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def standin() -> Iterator[StandInServer]:
    with StandInServer(seed=5) as server:
        yield server


@pytest.fixture
def leak() -> Iterator[Listener]:
    listener = Listener()
    yield listener
    listener.close()


@pytest.fixture
def lab_env(standin: StandInServer) -> dict[str, str]:
    return {"NB_CLAUDE_BASE_URL": standin.url, "AIMLAPI_KEY": "sk-nbc-browser-untrusted",
            "NB_CLAUDE_REPLAY": "off"}


def hostile(port: int) -> str:
    return ("Before.\n\n<script>window.__pwned=1; document.title='pwned'</script>\n\n"
            "<img src=x onerror=\"window.__pwned=2\">\n\n"
            f"![](http://127.0.0.1:{port}/leak) and [a link](http://127.0.0.1:{port}/leak-link)"
            "\n\nAfter.")


def assert_untouched(page: Any, title: str, leak: Listener) -> None:
    page.wait_for_timeout(1_000)  # time for a fetch or an onerror to happen, if any could
    assert page.evaluate("() => window.__pwned") is None
    assert page.title() == title
    assert leak.hits == []


def test_hostile_reply_in_a_cell_and_the_panel_is_inert(
        page: Any, lab_server: JupyterServer, standin: StandInServer, leak: Listener) -> None:
    standin.reset()
    open_notebook(page, lab_server, "untrusted.ipynb", ["%load_ext nb_claude", ""])
    title = page.title()
    run_cell(page, 0)
    standin.reply(chunks=[hostile(leak.port)[i:i + 20]
                          for i in range(0, len(hostile(leak.port)), 20)], delay=0.02)
    index = run_cell(page, "%%claude\nShow me some HTML")
    output = page.locator(CELL).nth(index).locator(".jp-OutputArea-output").first
    output.get_by_text("After.").wait_for(timeout=15_000)
    text = output.inner_text()
    assert "<script>window.__pwned=1; document.title='pwned'</script>" in text
    assert '<img src=x onerror="window.__pwned=2">' in text
    assert output.locator("img, script").count() == 0
    links = output.locator("a")
    assert {links.nth(i).get_attribute("href") for i in range(links.count())} == {
        f"http://127.0.0.1:{leak.port}/leak", f"http://127.0.0.1:{leak.port}/leak-link"}
    assert "image:" in text
    assert_untouched(page, title, leak)

    page.keyboard.press("Escape")
    page.keyboard.press("b")
    run_cell(page, "%claude_chat")
    panel = page.locator(".nbc-panel")
    panel.wait_for()
    standin.reply(hostile(leak.port), delay=0.02)
    panel.locator(".nbc-input textarea").fill("<img src=y onerror=\"window.__pwned=3\"> again")
    panel.locator("button.nbc-send").click()
    turn = panel.locator(".nbc-turn").last
    page.wait_for_function(
        "() => [...document.querySelectorAll('.nbc-panel .nbc-turn')].some("
        "t => t.innerText.includes(' again') && t.innerText.includes('After.')"
        " && t.innerText.includes(' in / '))",
        timeout=15_000)
    shown = turn.inner_text()
    assert "<script>window.__pwned=1; document.title='pwned'</script>" in shown
    assert '<img src=y onerror="window.__pwned=3"> again' in shown
    assert turn.locator("img, script").count() == 0
    screenshot(page, "untrusted")
    assert_untouched(page, title, leak)
