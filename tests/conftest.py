"""Shared fixtures: the stand-in server and a real IPython shell with nb_claude loaded."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from nb_claude import _config, _session
from nb_claude.testing import StandInServer

SENTINEL_KEY = "sk-nbc-SENTINEL-7f3a9c2e41"


@pytest.fixture(scope="session")
def _server() -> Iterator[StandInServer]:
    with StandInServer(seed=1) as server:
        yield server


@pytest.fixture
def server(_server: StandInServer) -> Iterator[StandInServer]:
    """The stand-in API on 127.0.0.1, emptied for each test."""
    _server.reset()
    yield _server
    _server.reset()


@pytest.fixture
def configured(server: StandInServer, monkeypatch: pytest.MonkeyPatch,
               tmp_path: Any) -> Iterator[_config.Settings]:
    """Process settings pointing at the stand-in, a sentinel key, a fresh cwd."""
    saved = dataclasses.replace(_config.settings)
    monkeypatch.setenv("AIMLAPI_KEY", SENTINEL_KEY)
    monkeypatch.chdir(tmp_path)
    _config.set_api_key(None)
    # context="none": a prompt carries no notebook cells unless a test asks for them.
    _config.settings.update(base_url=server.url, replay_mode="off", max_retries=2,
                            timeout=10.0, connect_timeout=2.0, context="none")
    _session._sessions.clear()
    yield _config.settings
    for field in dataclasses.fields(saved):
        setattr(_config.settings, field.name, getattr(saved, field.name))
    _config.set_api_key(None)
    for session in _session._sessions.values():
        for client in session._clients.values():
            client.close()
    _session._sessions.clear()


@pytest.fixture(scope="session")
def _shell() -> Any:
    from IPython.testing.globalipapp import get_ipython

    ip = get_ipython()
    ip.display_formatter.active_types = ip.display_formatter.format_types
    ip.extension_manager.load_extension("nb_claude")
    return ip


@pytest.fixture
def ip(_shell: Any, configured: _config.Settings, server: StandInServer) -> Iterator[Any]:
    """A real IPython shell with `%load_ext nb_claude` done, talking to the stand-in."""
    magics = _shell.magics_manager.registry["ClaudeMagics"]
    saved = {name: getattr(magics, name) for name in magics._SETTINGS}
    magics._push_all()
    _config.settings.update(base_url=server.url, replay_mode="off", timeout=10.0,
                            connect_timeout=2.0, max_retries=2, context="none")
    for name in ("base_url", "replay_mode", "timeout", "connect_timeout", "max_retries",
                 "context"):
        magics.set_trait(name, getattr(_config.settings, name))
    yield _shell
    for name, value in saved.items():
        magics.set_trait(name, value)


@pytest.fixture
def recorder(ip: Any) -> Iterator[Any]:
    """The recorder `%load_ext` registered, emptied, with prompts carrying "since-last"."""
    magics = ip.magics_manager.registry["ClaudeMagics"]
    magics.context = "since-last"  # the ip fixture restores the trait afterwards
    rec = magics.recorder
    rec.clear()
    yield rec


class Cell:
    """What a user sees after running one cell."""

    def __init__(self, result: Any, captured: Any) -> None:
        self.result = result
        self.outputs = captured.outputs
        self.stdout = captured.stdout
        self.stderr = captured.stderr

    @property
    def error(self) -> BaseException | None:
        return self.result.error_in_exec or self.result.error_before_exec

    @property
    def markdown(self) -> str:
        """The final state of the last Markdown output."""
        for output in reversed(self.outputs):
            if "text/markdown" in output.data:
                return output.data["text/markdown"]
        return ""

    @property
    def metadata(self) -> dict[str, Any]:
        for output in reversed(self.outputs):
            if output.metadata:
                return output.metadata
        return {}


@pytest.fixture
def run(ip: Any):
    """run(source) -> Cell: run a cell as a user would and capture what it shows."""
    from IPython.utils.capture import capture_output

    def run_cell(source: str) -> Cell:
        with capture_output() as captured:
            result = ip.run_cell(source, store_history=True)
        return Cell(result, captured)

    return run_cell


@pytest.fixture(autouse=True)
def _quiet_logs() -> None:
    logging.getLogger("nb_claude").setLevel(logging.DEBUG)
