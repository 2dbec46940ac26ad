"""Claude sees the notebook, end to end in a real kernel: the cells run before a prompt
reach the request as one stable text block, re-runs replay from the file, and a huge
output costs the kernel only its kept tail."""

from __future__ import annotations

import base64
import html
import json
import re
import struct

import nbformat
import pytest
from kernel_harness import KernelSession, run_notebook
from kernel_harness import reply_outputs as _reply_outputs

from nb_claude.testing import DEMO_KEY, StandInServer

pytestmark = pytest.mark.kernel
KEY = "sk-kernel-context-5e6f7a"
HEADER = "Notebook cells run before this prompt, oldest first:"


@pytest.fixture(scope="module")
def standin():
    with StandInServer(seed=7, api_key=KEY) as server:
        yield server


@pytest.fixture
def kernel(standin, tmp_path):
    """A fresh kernel per test: the context is 'cells since the last prompt', so tests
    sharing a kernel would see each other's cells."""
    env = {"NB_CLAUDE_BASE_URL": standin.url, "AIMLAPI_KEY": KEY, "NB_CLAUDE_REPLAY": "off"}
    with KernelSession(env=env, cwd=tmp_path) as k:
        assert k.execute("%load_ext nb_claude").error is None
        yield k


def ok(kernel, code):
    result = kernel.execute(code)
    assert result.error is None, result.error
    return result


def last_user_content(standin):
    return standin.requests[-1].body["messages"][-1]["content"]


def context_block(standin) -> str:
    content = last_user_content(standin)
    assert isinstance(content, list), f"no context block was sent: {content!r}"
    text = content[0]["text"]
    assert text.startswith(HEADER), text[:200]
    return text


def fenced(text: str, info: str = "") -> str:
    return f"```{info}\n{text}\n```"


def code_part(n: int, code: str) -> str:
    return f"In [{n}]:\n{fenced(code, 'python')}"


def png_size(b64: str) -> tuple[int, int]:
    head = base64.b64decode(b64[:32])
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def markdown_of(result) -> str:
    found = result.data("text/markdown")
    assert found, f"no Markdown output: {result.outputs!r}"
    return found[-1]


# ---------------------------------------------------------------------------- 1


PRINT = 'print("hello from a cell")'
VALUE = "21 * 2"
MARKDOWN = 'from IPython.display import Markdown, display\ndisplay(Markdown("**bold** note"))'
RAISE = 'def boom():\n    raise ValueError("bad value 42")\n\nboom()'
PLOT = ("%matplotlib inline\nimport matplotlib.pyplot as plt\n"
        "plt.plot([1, 3, 2])\nplt.show()")
FRAME = ("import pandas as pd\n"
         "df = pd.DataFrame({'city': ['Oslo', 'Lima', 'Pune'], 'temp': [4.5, 19.0, 31.2]})")


def test_the_prompt_carries_the_cells_run_before_it(kernel, standin):
    standin.reset()
    standin.reply("Warmed up.")
    warm = ok(kernel, "%%claude --new --no-context\nwarm up")
    assert last_user_content(standin) == "warm up"  # --no-context: the prompt alone
    assert "Context:" not in markdown_of(warm)

    n = {}
    n["print"] = ok(kernel, PRINT).execution_count
    n["value"] = ok(kernel, VALUE).execution_count
    n["markdown"] = ok(kernel, MARKDOWN).execution_count
    raised = kernel.execute(RAISE)  # allow_errors: the error is part of the context
    assert raised.error["ename"] == "ValueError"
    n["raise"] = raised.execution_count
    plot = ok(kernel, PLOT)
    n["plot"] = plot.execution_count
    pngs = plot.data("image/png")
    assert len(pngs) == 1
    width, height = png_size(pngs[0])
    n["frame"] = ok(kernel, FRAME).execution_count
    # The harness's own cells (none here) and nb_claude's magics are not context.
    standin.reply("Three cities; Pune is warmest.")
    asked = ok(kernel, "%%claude\nSummarise @df in one line.")

    cells = [
        f'{code_part(n["print"], PRINT)}\nstdout:\n{fenced("hello from a cell")}',
        f'{code_part(n["value"], VALUE)}\nOut [{n["value"]}]:\n{fenced("42")}',
        f'{code_part(n["markdown"], MARKDOWN)}\ndisplay (text/markdown):\n'
        f'{fenced("**bold** note")}',
        f'{code_part(n["raise"], RAISE)}\n'
        f"error: ValueError: bad value 42\n"
        f"traceback (last 2 frames):\n"
        f'  In [{n["raise"]}], line 4, in <module>\n    boom()\n'
        f'  In [{n["raise"]}], line 2, in boom\n    raise ValueError("bad value 42")',
        f'{code_part(n["plot"], PLOT)}\n'
        f'figure {width}×{height} shown in [{n["plot"]}]; attach it with --plot {n["plot"]}',
        code_part(n["frame"], FRAME),
    ]
    expected = "\n\n".join([HEADER, *cells])
    context = context_block(standin)
    assert context == expected

    content = last_user_content(standin)
    assert len(content) == 3  # context, @df, prompt
    attached = content[1]["text"]
    # Named as the prompt refers to it.
    assert attached.startswith('<attachment name="@df" kind="DataFrame">')
    assert "DataFrame @df: 3 rows × 2 columns" in attached and "Pune" in attached
    assert content[2] == {"type": "text", "text": "Summarise @df in one line."}

    md = markdown_of(asked)
    assert md.startswith("Context: ")  # above the reply
    assert "Three cities; Pune is warmest." in md.split("</details>", 1)[1]
    md = html.unescape(md)
    line = re.search(r"Context: cells \[(\d+)\]-\[(\d+)\] · ([\d.]+k?) tokens · "
                     r"@df DataFrame[^·\n]*· ([\d.]+k?) tokens", md)
    assert line, md
    assert (int(line[1]), int(line[2])) == (n["print"], n["frame"])
    details = re.search(r"<details>\s*<summary>[^<]*what Claude saw[^<]*</summary>(.*?)</details>",
                        md, re.DOTALL)
    assert details, md  # collapsed: no `open`
    shown = details[1]
    for cell in cells:  # each cell's text exactly as sent
        assert cell in shown, cell

    # A follow-up prompt carries only what ran since this one.
    n_after = ok(kernel, "y = 1").execution_count
    standin.reply("ok")
    ok(kernel, "%%claude\nAnd y?")
    assert context_block(standin) == "\n\n".join([HEADER, code_part(n_after, "y = 1")])
    # The earlier context stays in the history exactly once.
    sent = json.dumps(standin.requests[-1].body["messages"])
    assert sent.count(f'In [{n["print"]}]:') == 1 and sent.count(HEADER) == 2


# ---------------------------------------------------------------------------- 2


NOISY = [
    "%load_ext nb_claude",
    "print(object())",
    "%time total = sum(range(10_000))",
    "import sys\nfor i in range(5):\n    sys.stdout.write(f'\\rprogress {i * 25}%')\n"
    "    sys.stdout.flush()\nprint()",
    "import tempfile\nprint(tempfile.mkdtemp())",
    "%%claude\nWhat did these cells print?",
    "x = 1 + 1\nprint(x)",
    "%%claude\nAnd what is x?",
]
CHANGED = 6  # the cell edited before run 3, above the last prompt


def write_nb(path, sources):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nbformat.write(nb, path)
    return path


def reply_outputs(nb) -> list[tuple[str, dict]]:
    """As the notebook tests compare replies, but `inputs` and `changed` must match too."""
    return _reply_outputs(nb, ignore=frozenset({"replayed", "state"}))


def errors(nb) -> list[str]:
    return [f"{o.get('ename')}: {o.get('evalue')}" for cell in nb.cells
            for o in cell.get("outputs", []) if o.get("output_type") == "error"]


def test_restart_and_run_all_twice_replays_despite_noisy_output(tmp_path):
    path = write_nb(tmp_path / "noisy.ipynb", NOISY)
    with StandInServer(seed=11) as server:
        env = {"NB_CLAUDE_REPLAY": "auto", "NB_CLAUDE_BASE_URL": server.url,
               "AIMLAPI_KEY": DEMO_KEY}
        first = run_notebook(path, env=env, cwd=tmp_path)
        made = len(server.requests)
        assert made == 2 and errors(first) == []
        # What varies between runs is normalised in what was sent.
        context = server.requests[0].body["messages"][-1]["content"][0]["text"]
        assert context.startswith(HEADER)
        assert re.search(r"<object object at 0x…>", context), context
        assert "Wall time: <time>" in context and "CPU times: <time>" in context
        assert "progress 100%" in context and "progress 0%" not in context
        assert "\r" not in context
        assert "<tmp>" in context and "/tmp/" not in context
        # The second prompt sees only the cell run since the first: no %%claude cell.
        assert server.requests[1].body["messages"][-1]["content"][0]["text"] == "\n\n".join(
            [HEADER, f"{code_part(7, NOISY[6])}\nstdout:\n{fenced('2')}"])

        second = run_notebook(path, env=env, cwd=tmp_path)  # a fresh kernel
        assert len(server.requests) == made, "the second Restart & Run All asked again"
        assert errors(second) == []
        assert reply_outputs(first) == reply_outputs(second)
        assert len(reply_outputs(second)) == 2
        assert all(meta.get("replayed") for cell in second.cells
                   for o in cell.get("outputs", [])
                   if (meta := o.get("metadata", {}).get("nb_claude")))

        edited = list(NOISY)
        edited[CHANGED] = "x = 2 + 2\nprint(x)"
        write_nb(path, edited)
        third = run_notebook(path, env=env, cwd=tmp_path)
        assert len(server.requests) == made + 1, "one changed cell, one new request"
        assert errors(third) == []
        assert "x = 2 + 2" in server.requests[-1].body["messages"][-1]["content"][0]["text"]
        assert reply_outputs(third)[0] == reply_outputs(first)[0]

        edited[CHANGED] = "x = 3 + 3\nprint(x)"
        write_nb(path, edited)
        strict = run_notebook(path, env={**env, "NB_CLAUDE_REPLAY": "replay"}, cwd=tmp_path,
                              allow_errors=True)
        assert len(server.requests) == made + 1  # strict replay never asks
        missed = [o for o in strict.cells[-1].outputs if o.get("output_type") == "error"]
        assert len(missed) == 1 and errors(strict) == [
            f"{missed[0]['ename']}: {missed[0]['evalue']}"]
        miss = missed[0]["evalue"]
        assert "strict replay mode" in miss and "cell [8]" in miss  # the prompt cell
        # The cause here is cell [7] above the prompt: the message must not send the user
        # looking only at the prompt, its attachments and options.
        assert re.search(r"context|notebook|cells? (above|run)|\[7\]", miss, re.IGNORECASE), miss
        # The cell's earlier record names the cell that changed (ReplayStaleError).
        assert missed[0]["ename"] == "ReplayStaleError" and "cell [7] changed" in miss, miss


# ---------------------------------------------------------------------------- 3


RSS = "int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])"
KEPT = """
import gc
from nb_claude._capture import ContextRecorder
recorders = [o for o in gc.get_objects() if isinstance(o, ContextRecorder)]
kept = sum(len(r.stdout) + len(r.stderr) + sum(len(t) for _, t in r.displays)
           for rec in recorders for r in rec.records)
print(len(recorders), kept)
"""


def test_a_50_mb_output_keeps_only_its_tail(kernel, standin):
    standin.reset()
    standin.reply("reset")
    ok(kernel, "%%claude --new --no-context\nreset")
    before = int(ok(kernel, f"print({RSS})").stream())
    big = ok(kernel, "import sys\nchunk = 'x' * 999_999 + '\\n'\n"
                     "for _ in range(50):\n    sys.stdout.write(chunk)\n"
                     "del chunk\nprint('TAIL-MARKER-END')")
    assert len(big.stream()) > 50_000_000  # the front end did get it all
    n_big = big.execution_count
    del big
    kernel.results.clear()
    after = int(ok(kernel, f"print({RSS})").stream())
    recorders, kept = map(int, ok(kernel, KEPT).stream().split())
    assert recorders >= 1
    assert kept < 100_000, f"the recorder keeps {kept:,} characters"
    grew_mb = (after - before) / 1024
    assert grew_mb < 30, f"the kernel's RSS grew by {grew_mb:.0f} MB"

    standin.reply("It printed a lot of x.")
    asked = ok(kernel, "%%claude\nWhat did the big cell print?")
    context = context_block(standin)
    assert len(context) < 40_000
    assert f"In [{n_big}]:" in context
    cut = re.search(r"\[… ([\d,]+) earlier characters not kept …\]", context)
    assert cut, context[:500]
    kept_chars = 50_000_000 + len("TAIL-MARKER-END\n") - int(cut[1].replace(",", ""))
    assert 0 < kept_chars <= 10_000
    assert "TAIL-MARKER-END" in context
    assert len(json.dumps(standin.requests[-1].body)) < 60_000
    assert "Context: cell" in markdown_of(asked)


# ---------------------------------------------------------------------------- options


def test_preview_cells_option_and_budget(kernel, standin):
    standin.reset()
    standin.reply("reset")
    ok(kernel, "%%claude --new --no-context\nreset")
    a = ok(kernel, "a = 'alpha'\nprint(a)").execution_count
    b = ok(kernel, "b = 'beta'\nprint(b)").execution_count
    preview = ok(kernel, "%claude_context")
    shown = "\n".join(preview.data("text/markdown") + preview.data("text/plain"))
    assert f"cells [{a}]-[{b}]" in html.unescape(shown) and "alpha" in shown
    assert standin.requests[-1].body["messages"][-1]["content"] == "reset"  # sent nothing

    standin.reply("only b")
    ok(kernel, f"%%claude --cells {b}-{b}\nWhat is b?")
    assert context_block(standin) == "\n\n".join(
        [HEADER, f"{code_part(b, chr(10).join(['b = ' + repr('beta'), 'print(b)']))}\n"
                 f"stdout:\n{fenced('beta')}"])
    # The preview did not consume the cells, and "all" still reaches back past the prompt.
    standin.reply("all")
    ok(kernel, "%%claude --cells all\nAnd everything?")
    every = context_block(standin)
    assert f"In [{a}]:" in every and f"In [{b}]:" in every and "%%claude" not in every

    ok(kernel, "%config ClaudeMagics.context_budget = 150")
    ok(kernel, "print('z' * 2000)")
    ok(kernel, "c = 'gamma'\nprint(c)")
    standin.reply("tight")
    asked = ok(kernel, "%%claude --cells all\nWithin budget?")
    tight = context_block(standin)
    assert len(tight) <= 150 * 4 and "gamma" in tight and "zzzz" not in tight
    assert re.search(r"\[\d+ earlier cells? left out to fit the 150-token context budget\]",
                     tight), tight
    assert "left out" in html.unescape(markdown_of(asked)).split("\n", 1)[0]

    # A budget too small for any cell still sends a block that says what it is.
    ok(kernel, "%config ClaudeMagics.context_budget = 60")
    standin.reply("tiny")
    ok(kernel, "%%claude --cells all\nAnything?")
    first = last_user_content(standin)[0]["text"]
    assert "left out to fit the 60-token context budget" in first
    assert first.startswith(HEADER + "\n\n["), first


def test_since_last_is_per_session(kernel, standin):
    standin.reset()
    standin.reply("reset")
    ok(kernel, "%%claude --new --no-context\nreset")
    a = ok(kernel, "a = 'alpha'").execution_count
    standin.reply("other")
    ok(kernel, "%%claude --session other\nWhat is a?")
    assert f"In [{a}]:" in context_block(standin)
    b = ok(kernel, "b = 'beta'").execution_count
    standin.reply("default")
    ok(kernel, "%%claude\nAnd now?")
    default = context_block(standin)
    assert f"In [{b}]:" in default
    assert f"In [{a}]:" in default, default
