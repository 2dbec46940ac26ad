"""The public surface is what the README documents, and loading the extension stays cheap."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

from conftest import SENTINEL_KEY

import nb_claude

README = Path(__file__).resolve().parent.parent / "README.md"

# Names a Python package has by convention, documented by the protocol that uses them:
# IPython's `%load_ext` calls the extension hooks, and every package has a version.
CONVENTIONAL = {"__version__", "load_ipython_extension", "unload_ipython_extension"}


def readme_api_names(text: str) -> set[str]:
    """The `nb_claude.NAME` names used in README.md's *Python API* section."""
    section = re.search(r"^## Python API\n(.*?)(?=^## )", text, re.S | re.M)
    assert section is not None, "README.md has no '## Python API' section"
    return set(re.findall(r"\bnb_claude\.([A-Za-z_]\w*)", section.group(1)))


def exported_names() -> set[str]:
    """The public names the module really provides: its own and its lazy ones, resolved."""
    for name in nb_claude._LAZY:
        getattr(nb_claude, name)
    return {name for name, value in vars(nb_claude).items()
            if (not name.startswith("_") or name == "__version__")
            and not inspect.ismodule(value)
            and (isinstance(value, str) or getattr(value, "__module__", "").startswith("nb_claude"))}


def test_all_is_what_the_module_exports():
    assert sorted(nb_claude.__all__) == sorted(exported_names())
    assert len(set(nb_claude.__all__)) == len(nb_claude.__all__)
    assert dir(nb_claude) == sorted(nb_claude.__all__)
    for name in nb_claude.__all__:
        assert getattr(nb_claude, name) is not None


def test_every_documented_name_is_exported():
    documented = readme_api_names(README.read_text(encoding="utf-8"))
    assert {"get_session", "Session", "tool"} <= documented  # the parser found the section
    assert documented - set(nb_claude.__all__) == set()


def test_every_exported_name_is_documented():
    documented = readme_api_names(README.read_text(encoding="utf-8"))
    assert set(nb_claude.__all__) - CONVENTIONAL - documented == set()


def test_the_readme_parser_reads_only_the_python_api_section():
    text = ("## Set up\n\nnb_claude.elsewhere\n\n## Python API\n\n```python\n"
            "s = nb_claude.get_session()\nnb_claude.Session.load('x')\n```\n\n## Next\n"
            "nb_claude.later\n")
    assert readme_api_names(text) == {"get_session", "Session"}


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
    assert client._api_key.reveal() == SENTINEL_KEY  # the key is there, only masked
    held = [client, session, *vars(client).values(), *vars(session).values(),
            *vars(client._http).values()]
    for value in held:
        for shown in (repr(value), str(value)):
            assert "sk-" not in shown and "SENTINEL" not in shown, shown[:300]


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
