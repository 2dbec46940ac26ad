"""Fixtures for end-to-end tests: a real Jupyter server and headless Chromium.

Without Chromium or Playwright the browser tests skip, unless
NB_CLAUDE_REQUIRE_BROWSER=1 (set in CI), where they fail instead.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .lab import CHROMIUM, CHROMIUM_ARGS, JupyterServer, browser_problem, screenshot, start_server


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture(scope="session")
def _browser_available() -> None:
    problem = browser_problem()
    if problem is None:
        return
    if os.environ.get("NB_CLAUDE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"NB_CLAUDE_REQUIRE_BROWSER=1 but {problem}", pytrace=False)
    pytest.skip(problem)


@pytest.fixture
def jupyter_app() -> str:
    """Which front end `lab_server` runs: "lab" or "notebook" (parametrize to change)."""
    return "lab"


@pytest.fixture
def lab_env() -> dict[str, str]:
    """Extra environment for the server and its kernels; override in a test module."""
    return {}


@pytest.fixture(scope="session")
def lab_factory(tmp_path_factory: pytest.TempPathFactory,
                _browser_available: None) -> Iterator[Callable[..., JupyterServer]]:
    """Start servers on demand, one per (app, env), all stopped at the end of the session."""
    servers: dict[tuple[str, tuple[tuple[str, str], ...]], JupyterServer] = {}

    def get(app: str = "lab", env: dict[str, str] | None = None) -> JupyterServer:
        key = (app, tuple(sorted((env or {}).items())))
        server = servers.get(key)
        if server is None or server.proc.poll() is not None:
            server = start_server(app, tmp_path_factory.mktemp(f"jupyter-{app}"), env)
            servers[key] = server
        return server

    yield get
    for server in servers.values():
        server.stop()


@pytest.fixture
def lab_server(lab_factory: Callable[..., JupyterServer], jupyter_app: str,
               lab_env: dict[str, str]) -> JupyterServer:
    return lab_factory(jupyter_app, lab_env)


@pytest.fixture(scope="session")
def browser(_browser_available: None) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context and page; a failing test leaves a screenshot in artifacts/."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    pg = context.new_page()
    yield pg
    if request.node.stash.get(_FAILED, False):
        # A broken page must not hide the real failure.
        with contextlib.suppress(Exception):
            screenshot(pg, f"failed-{request.node.name}")
    context.close()
