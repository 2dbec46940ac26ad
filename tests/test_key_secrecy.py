"""A whole session with a sentinel key: the key must appear nowhere a user or a file can see."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

from conftest import SENTINEL_KEY

import nb_claude
from nb_claude import _config


def test_the_key_appears_zero_times(run, server, ip, tmp_path, monkeypatch):
    log_stream = io.StringIO()
    handler = logging.StreamHandler(log_stream)
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    seen: list[str] = []

    def cell(source: str):
        result = run(source)
        seen.append(json.dumps([(o.data, o.metadata) for o in result.outputs], default=str))
        seen.extend([result.stdout, result.stderr, str(result.error), repr(result.error)])
        return result

    try:
        _config.settings.update(replay_mode="auto")
        cell("import nb_claude, pandas as pd\nfrom PIL import Image\n"
             "df = pd.DataFrame({'a': [1, 2, 3]})\nimg = Image.new('RGB', (40, 30), 'red')\n"
             "@nb_claude.tool\ndef peek(n: int) -> str:\n    '''Peek.'''\n    return 'x' * n\n")
        server.reply("Plain answer.")
        cell("%%claude\nHello")
        server.reply(tool_calls=[{"name": "peek", "arguments": {"n": 3}}]).reply("Tool done.")
        cell("%%claude --tools peek --attach df --attach img --thinking\nUse the tool")
        cell("%%claude --dry-run --attach img\nWhat would be sent?")
        for status in (401, 403, 404, 413, 500):
            server.fault(status, "denied")
            cell("%%claude\nFail please")
        server.fault(400, "bad", envelope="openai")
        cell("%%claude\nFail please")
        server.drop(after_chunks=2)
        cell("%%claude\nDrop please")
        server.stream_error(style="event")
        cell("%%claude\nError event please")
        _config.settings.update(base_url="http://127.0.0.1:9/v1", max_retries=0)
        cell("%%claude\nRefused please")
        _config.settings.update(base_url=server.url)
        cell("%config ClaudeMagics")
        cell("%claude_history")
        cell("%claude_usage")
        monkeypatch.setattr("getpass.getpass", lambda prompt="": SENTINEL_KEY)
        cell("%claude_login")
        panel = nb_claude.ChatPanel(nb_claude.get_session(), shell=ip)
        seen.append(repr(panel))
        session = nb_claude.get_session()
        files = [session.save(tmp_path / "s.json"), session.to_notebook(tmp_path / "s.ipynb"),
                 Path("nb_claude_replay.jsonl")]
        seen.append(session.to_markdown())
        seen.extend(repr(x) for x in (session, session.history, session.usage,
                                      session.messages, session._client(),
                                      nb_claude._tools.registered_tools(), _config.settings))
        seen.extend(repr(t.reply) for t in session.history)
        for path in files:
            seen.append(path.read_text())
        seen.append(log_stream.getvalue())
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        nb_claude._tools.unregister("peek")
    blob = "\n".join(seen)
    assert len(blob) > 10_000  # the scan really covered the session
    assert "Tool done." in blob and "denied" in blob
    assert blob.count(SENTINEL_KEY) == 0
    # the requests did carry it: the test would notice a key that never left
    assert any(r.headers.get("authorization") == f"Bearer {SENTINEL_KEY}"
               for r in server.requests)
