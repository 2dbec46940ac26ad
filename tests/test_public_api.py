"""The public surface is what the README documents, and loading the extension stays cheap."""

from __future__ import annotations

import json
import subprocess
import sys

import nb_claude

DOCUMENTED = {"__version__", "ChatPanel", "Reply", "Session", "Turn", "get_session",
              "load_ipython_extension", "unload_ipython_extension", "set_api_key", "tool"}


def test_all_matches_the_documented_names():
    assert set(nb_claude.__all__) == DOCUMENTED
    for name in nb_claude.__all__:
        assert getattr(nb_claude, name) is not None


def test_load_ext_imports_nothing_heavy():
    code = (
        "import sys, json\n"
        "from IPython.testing.globalipapp import get_ipython\n"
        "ip = get_ipython()\n"
        "before = set(sys.modules)\n"
        "ip.run_line_magic('load_ext', 'nb_claude')\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    heavy = [m for m in loaded if m.split(".")[0] in
             {"httpx", "pandas", "matplotlib", "PIL", "nbformat", "ipywidgets", "numpy",
              "pypdf", "jupyterlab", "jsonschema"}]
    assert heavy == []
    assert "nb_claude._magics" in loaded and "nb_claude._session" not in loaded


def test_reprs_are_short_and_keyless(configured):
    session = nb_claude.get_session()
    assert repr(session) == "Session(name='default', turns=0)"
    client = session._client()
    assert "sk-" not in repr(client) and "SENTINEL" not in repr(vars(client).keys())


def test_reprs_of_history_objects_stay_short(configured, server):
    from PIL import Image

    from nb_claude._tools import ToolResult

    session = nb_claude.get_session()
    server.reply("x" * 5000)
    session.ask("look", attach=[("big", Image.effect_noise((1200, 900), 60))], display=False)
    turn = session.history[0]
    for obj in (turn, turn.steps, turn.attachments, turn.reply, session.history,
                ToolResult("id", "f", "y" * 10_000, summary="y" * 500)):
        assert len(repr(obj)) < 300, repr(obj)[:400]
