"""`python -m nb_claude verify`: the shipped notebooks replay offline, an edited prompt
does not, and no request leaves even with a key and a base URL in the environment."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import SENTINEL_KEY
from kernel_harness import isolated_kernel_env

from nb_claude import _verify
from nb_claude.testing import StandInServer

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


@pytest.fixture
def workdir(tmp_path):
    target = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, target)
    return target


def run_verify(args, cwd, env_extra, tmp_path):
    env = isolated_kernel_env(tmp_path / "state", env_extra)
    return subprocess.run([sys.executable, "-m", "nb_claude", "verify", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.kernel
def test_shipped_notebooks_verify_offline_with_a_key_and_base_url_set(workdir, tmp_path):
    with StandInServer() as watcher:  # any request reaching it is a network attempt
        done = run_verify(["quickstart.ipynb", "reproducible-analysis.ipynb"], workdir,
                          {"AIMLAPI_KEY": SENTINEL_KEY, "NB_CLAUDE_BASE_URL": watcher.url},
                          tmp_path)
        assert watcher.requests == []
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    cells, summary = lines[:-1], lines[-1]
    assert len(cells) >= 8
    assert all(": ok " in line for line in cells), done.stdout
    assert "0 stale, 0 missing, 0 error(s)" in summary
    assert SENTINEL_KEY not in done.stdout + done.stderr


@pytest.mark.kernel
def test_an_edited_prompt_is_missing_and_named(workdir, tmp_path):
    path = workdir / "quickstart.ipynb"
    nb = nbformat.read(path, as_version=4)
    last = max(i for i, c in enumerate(nb.cells) if c.source.startswith("%%claude -s"))
    nb.cells[last].source = nb.cells[last].source.replace("What should", "What else should")
    nbformat.write(nb, path)
    done = run_verify(["quickstart.ipynb"], workdir, {"AIMLAPI_KEY": ""}, tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    bad = [line for line in done.stdout.splitlines() if ": ok" not in line][:-1]
    # With per-cell digests an edited prompt of a recorded cell may read STALE instead.
    assert len(bad) == 1 and ("MISSING: not in the replay file" in bad[0] or "STALE" in bad[0])
    assert re.match(r"quickstart\.ipynb cell \[\d+\] 'What else should I check", bad[0])


@pytest.mark.kernel
def test_json_output_shape(workdir, tmp_path):
    done = run_verify(["--json", "reproducible-analysis.ipynb"], workdir, {}, tmp_path)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["exit_code"] == 0
    assert data["summary"]["ai_cells"] == data["summary"]["ok"] == 4
    (notebook,) = data["notebooks"]
    assert notebook["path"] == "reproducible-analysis.ipynb" and notebook["ok"]
    *prompts, batch = notebook["cells"]
    for cell in notebook["cells"]:
        assert cell.keys() >= {"index", "execution_count", "cell_id", "snippet", "status",
                               "state", "detail", "replies"}
    for cell in prompts:
        assert cell["status"] == "ok" and cell["state"] == "replayed"
        (reply,) = cell["replies"]
        assert reply["model"] and len(reply["request_sha256"]) == 64
    # the --each cell: every item replayed
    assert batch["status"] == "ok" and batch["state"] == "replayed 4 items"
    assert batch["replies"] == [{"batch": {"total": 4, "done": 4, "errors": 0, "replayed": 4,
                                           "sent": 0, "not_run": 0, "state": "finished"}}]


def test_a_missing_file_is_bad_usage(tmp_path):
    done = subprocess.run([sys.executable, "-m", "nb_claude", "verify",
                           str(tmp_path / "nope.ipynb")], capture_output=True, text=True)
    assert done.returncode == 2 and "no such notebook" in done.stderr


def test_usage_and_help():
    bare = subprocess.run([sys.executable, "-m", "nb_claude"], capture_output=True, text=True)
    helped = subprocess.run([sys.executable, "-m", "nb_claude", "--help"], capture_output=True,
                            text=True)
    assert bare.returncode == 2 and helped.returncode == 0
    assert "verify" in bare.stdout and "verify" in helped.stdout


def test_record_without_a_key_is_refused(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("AIMLAPI_KEY", raising=False)
    path = tmp_path / "a.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), path)
    assert _verify.main(["--record", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "AIMLAPI_KEY" in err


def test_the_kernel_env_has_no_key_and_a_dead_base_url():
    environ = {"AIMLAPI_KEY": SENTINEL_KEY, "OTHER": SENTINEL_KEY, "PATH": os.environ["PATH"],
               "NB_CLAUDE_BASE_URL": "https://example.com/v1", "NB_CLAUDE_REPLAY": "auto"}
    env = _verify.kernel_env(environ, record=False, dead_url="http://127.0.0.1:9/v1")
    assert SENTINEL_KEY not in env.values()
    assert env["NB_CLAUDE_REPLAY"] == "replay"
    assert env["NB_CLAUDE_BASE_URL"] == "http://127.0.0.1:9/v1"


def test_cells_are_classified_from_outputs_and_error_names():
    def cell(source, outputs):
        return nbformat.v4.new_code_cell(source, outputs=outputs, execution_count=4)

    def err(name, value):
        return nbformat.v4.new_output("error", ename=name, evalue=value, traceback=[])

    def shown(meta):
        return nbformat.v4.new_output("display_data", data={"text/markdown": "x"},
                                      metadata={"nb_claude": meta})

    stale = _verify.classify(cell("%%claude\nWhy?", [err("ReplayStaleError",
                                                        "cell [4]: the prompt changed")]), 0)
    assert stale is not None and stale.status == "stale"
    assert stale.line("n.ipynb") == "n.ipynb cell [4] 'Why?': STALE: cell [4]: the prompt changed"
    missing = _verify.classify(cell("%claude Why?", [err("ReplayMissError", "no")]), 0)
    assert missing is not None and missing.line("n.ipynb").endswith(
        "MISSING: not in the replay file")
    python = _verify.classify(cell("s.ask('x')", [shown({"state": "replayed"})]), 0)
    assert python is not None and python.status == "ok" and python.state == "replayed"
    old = _verify.classify(cell("s.ask('x')", [shown({"replayed": True})]), 0)
    assert old is not None and old.state == "replayed"
    marked = _verify.classify(cell("%%claude\nx", [shown({"state": "stale",
                                                          "changed": ["the prompt"]})]), 0)
    assert marked is not None and marked.status == "stale" and marked.detail == "the prompt"
    broken = _verify.classify(cell("%%claude\nx", [err("NameError", "\x1b[31mboom\nmore")]), 0)
    assert broken is not None and broken.line("n").endswith("ERROR: NameError: [31mboom more")
    assert _verify.classify(cell("%claude_usage", []), 0) is None
    assert _verify.classify(cell("x = 1", []), 0) is None


def _batch_cell(**batch):
    meta = {"nb_claude": {"batch": batch}}
    return {"cell_type": "code", "execution_count": 7, "id": "b1",
            "source": "%%claude --each reviews --out labels\nLabel: {text}",
            "outputs": [{"output_type": "display_data", "metadata": meta,
                         "data": {"text/plain": "Finished: 3/3 done"}}]}


def test_a_batch_cell_is_ok_only_when_every_item_replayed():
    ok = _verify.classify(_batch_cell(total=3, done=3, errors=0, replayed=3, sent=0,
                                      not_run=0, state="finished"), 0)
    assert ok is not None and ok.status == "ok" and ok.state == "replayed 3 items"
    live = _verify.classify(_batch_cell(total=3, done=3, errors=0, replayed=1, sent=2,
                                        not_run=0, state="finished"), 0)
    assert live.status == "error" and live.detail == "2 of 3 items asked the service live, " \
                                                      "not replayed"
    recorded = _verify.classify(_batch_cell(total=3, replayed=1, sent=2), 0, record=True)
    assert recorded.status == "ok" and recorded.state == "recorded 3 items"
    stopped = _verify.classify(_batch_cell(total=3, replayed=1, not_run=2, state="stopped"), 0)
    assert stopped.status == "missing" and stopped.detail == "2 of 3 items not run"
    odd = _verify.classify(_batch_cell(total="3", replayed=True, sent=None), 0)
    assert odd.status == "ok"  # untrusted metadata: non-numbers count as nothing
