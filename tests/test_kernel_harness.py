"""The kernel harness sees what a front end sees."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from kernel_harness import KernelSession, run_notebook

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory):
    cwd = tmp_path_factory.mktemp("cwd")
    with KernelSession(env={"NBC_HARNESS_PROBE": "probe-value"}, cwd=cwd) as k:
        yield k


def test_outputs_streams_and_result(kernel: KernelSession) -> None:
    r = kernel.execute("print('a'); print('b')\n6 * 7")
    assert r.error is None
    assert r.stream() == "a\nb\n"
    assert r.outputs[0]["output_type"] == "stream"
    assert r.outputs[-1]["output_type"] == "execute_result"
    assert r.data() == ["42"]
    assert r.execution_count == r.outputs[-1]["execution_count"]


def test_display_updates_collapse_to_one_output(kernel: KernelSession) -> None:
    code = (
        "from IPython.display import display\n"
        "h = display('v0', display_id=True)\n"
        "for i in range(1, 5):\n"
        "    h.update(f'v{i}')\n"
    )
    r = kernel.execute(code)
    assert r.count_of("update_display_data") == 4
    assert r.count_of("display_data") == 1
    assert [o["output_type"] for o in r.outputs] == ["display_data"]
    assert r.data() == ["'v4'"]


def test_update_reaches_display_of_an_earlier_cell(kernel: KernelSession) -> None:
    first = kernel.execute("from IPython.display import display\nh2 = display('old', display_id='keep')")
    second = kernel.execute("h2.update('new')")
    assert second.outputs == []
    assert first.data() == ["'new'"]


def test_clear_output_wait(kernel: KernelSession) -> None:
    r = kernel.execute(
        "from IPython.display import clear_output\n"
        "print('gone')\nclear_output(wait=True)\nprint('kept')"
    )
    assert r.stream() == "kept\n"


def test_cell_id_reaches_the_kernel(kernel: KernelSession) -> None:
    r = kernel.execute("get_ipython().kernel.get_parent()['metadata']['cellId']", cell_id="cell-abc")
    assert r.data() == ["'cell-abc'"]
    r = kernel.execute("get_ipython().kernel.get_parent()['metadata'].get('cellId')")
    assert r.data() == []


def test_env_cwd_and_isolation(kernel: KernelSession) -> None:
    r = kernel.execute(
        "import os, IPython\n"
        "print(os.environ['NBC_HARNESS_PROBE']); print(os.getcwd())\n"
        "print(IPython.paths.get_ipython_dir())"
    )
    probe, cwd, ipython_dir = r.stream().splitlines()
    assert probe == "probe-value"
    assert cwd == kernel.cwd
    assert not ipython_dir.startswith(str(Path.home()))


def test_error_and_payload(kernel: KernelSession) -> None:
    r = kernel.execute("1/0")
    assert r.error is not None and r.error["ename"] == "ZeroDivisionError"
    r = kernel.execute("get_ipython().set_next_input('next cell text')")
    assert any(p.get("source") == "set_next_input" and p.get("text") == "next cell text"
               for p in r.payloads)


def test_interrupt_stops_sleep(kernel: KernelSession) -> None:
    threading.Timer(1.0, kernel.interrupt).start()
    start = time.monotonic()
    r = kernel.execute("import time; time.sleep(30)", timeout=20)
    assert time.monotonic() - start < 10
    assert r.error is not None and r.error["ename"] == "KeyboardInterrupt"
    assert kernel.execute("'alive'").data() == ["'alive'"]


def test_run_notebook(tmp_path: Path) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import os; print(os.environ['NBC_NB_PROBE'])"),
        nbformat.v4.new_code_cell(
            "from IPython.display import display\nh = display('a', display_id=True)\nh.update('z')"),
        nbformat.v4.new_code_cell("open('here.txt').read()"),
    ]
    (tmp_path / "here.txt").write_text("from cwd")
    path = tmp_path / "t.ipynb"
    nbformat.write(nb, path)
    out = run_notebook(path, env={"NBC_NB_PROBE": "nb-probe"}, cwd=tmp_path, timeout=60)
    assert out.cells[0].outputs[0]["text"] == "nb-probe\n"
    assert [o["data"]["text/plain"] for o in out.cells[1].outputs] == ["'z'"]
    assert out.cells[2].outputs[0]["data"]["text/plain"] == "'from cwd'"
