"""Claude sees the notebook: ContextRecorder in a real IPython shell, and the pure context
functions (selection, normalisation, budget, `@name` references)."""

from __future__ import annotations

import base64
import contextlib
import inspect
import io
import re
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from typing import Any

import IPython
import pytest
from IPython.testing.globalipapp import get_ipython
from IPython.utils.capture import capture_output

from nb_claude._capture import ContextRecorder, out_text, png_size
from nb_claude._context import (
    CellError,
    CellRecord,
    Context,
    build,
    cell_kind,
    find_references,
    html_to_text,
    normalise,
    select,
    unescape_references,
)

SETUP = ("import sys, threading, io, contextlib\n"
         "from IPython.display import display, Markdown, HTML")


@pytest.fixture
def ip() -> Iterator[Any]:
    """The global test shell with every display type active (PNG for figures)."""
    shell = get_ipython() or IPython.get_ipython()
    formatter = shell.display_formatter
    saved_types = formatter.active_types
    formatter.active_types = formatter.format_types
    shell.run_cell(SETUP, store_history=True).raise_error()
    yield shell
    formatter.active_types = saved_types


@pytest.fixture
def png_figures(ip: Any) -> Iterator[None]:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from IPython.core.pylabtools import select_figure_formats
    from matplotlib.figure import Figure

    select_figure_formats(ip, {"png"})
    yield
    ip.display_formatter.formatters["image/png"].pop(Figure, None)


@pytest.fixture
def recorder(ip: Any) -> Iterator[ContextRecorder]:
    rec = ContextRecorder(ip)
    rec.register()
    yield rec
    rec.unregister()


class Shown:
    """What a cell showed: its streams and display outputs."""

    def __init__(self, result: Any, captured: Any) -> None:
        self.result = result
        self.n: int = result.execution_count
        self.stdout: str = captured.stdout
        self.stderr: str = captured.stderr
        self.outputs = [(o.data, o.metadata) for o in captured.outputs]


def run(ip: Any, source: str) -> Shown:
    with capture_output() as captured:
        result = ip.run_cell(source, store_history=True)
    return Shown(result, captured)


def context_for(rec: ContextRecorder, first: int, **kwargs: Any) -> Context:
    return rec.build(f"{first}-{10**9}", **kwargs)


# -- the recorded context, exactly


def test_a_session_is_recorded_exactly_in_execution_order(ip: Any, recorder: ContextRecorder,
                                                          png_figures: None) -> None:
    pytest.importorskip("pandas")
    PIL_Image = pytest.importorskip("PIL.Image")
    cells = [
        "print('hello')\nprint('careful', file=sys.stderr)",
        "6 * 7",
        "display(Markdown('**bold** text'))",
        "def check(x):\n    raise ValueError(f'bad value {x}')\ncheck(3)",
        "import matplotlib.pyplot as plt\nfig, ax = plt.subplots(figsize=(4, 3), dpi=50)\n"
        "ax.plot([1, 2, 3])\ndisplay(fig)\nplt.close(fig)",
        "import pandas as pd\ndf = pd.DataFrame({'a': [1, 2], 'b': [3.5, 4.5]})\ndf",
        "display(HTML('<p>Rows: <b>2</b> &amp; more</p>'))",
    ]
    shown = [run(ip, cell) for cell in cells]
    n = [s.n for s in shown]
    assert n == list(range(n[0], n[0] + len(cells)))
    png = next(d["image/png"] for d, _ in shown[4].outputs if "image/png" in d)
    raw = base64.b64decode(png) if isinstance(png, str) else png
    width, height = PIL_Image.open(io.BytesIO(raw)).size
    assert png_size(png) == (width, height)

    context = context_for(recorder, n[0])
    header = "Notebook cells run before this prompt, oldest first:"
    expected = [
        f"In [{n[0]}]:\n```python\n{cells[0]}\n```\nstdout:\n```\nhello\n```\n"
        "stderr:\n```\ncareful\n```",
        f"In [{n[1]}]:\n```python\n6 * 7\n```\nOut [{n[1]}]:\n```\n42\n```",
        f"In [{n[2]}]:\n```python\n{cells[2]}\n```\ndisplay (text/markdown):\n```\n"
        "**bold** text\n```",
        f"In [{n[3]}]:\n```python\n{cells[3]}\n```\nerror: ValueError: bad value 3\n"
        "traceback (last 2 frames):\n"
        f"  In [{n[3]}], line 3, in <module>\n    check(3)\n"
        f"  In [{n[3]}], line 2, in check\n    raise ValueError(f'bad value {{x}}')",
        f"In [{n[4]}]:\n```python\n{cells[4]}\n```\n"
        f"figure {width}×{height} shown in [{n[4]}]; attach it with --plot {n[4]}",
        f"In [{n[5]}]:\n```python\n{cells[5]}\n```\nOut [{n[5]}]:\n```\n"
        "   a    b\n0  1  3.5\n1  2  4.5\n```",
        f"In [{n[6]}]:\n```python\n{cells[6]}\n```\ndisplay (text/html):\n```\n"
        "Rows: 2 & more\n```",
    ]
    assert context.text == "\n\n".join([header, *expected])
    assert [item.label for item in context.items] == [f"[{i}]" for i in n]
    assert [item.text for item in context.items] == expected
    assert context.dropped == 0
    assert context.tokens == -(-len(context.text) // 4)
    assert context.summary == f"cells [{n[0]}]-[{n[-1]}] · {context.tokens} tokens"

    records = {r.execution_count: r for r in recorder.records}
    assert records[n[1]].has_out and not records[n[0]].has_out
    assert records[n[4]].figures == ((width, height),)
    assert records[n[3]].error == CellError(
        "ValueError", "bad value 3",
        (f"  In [{n[3]}], line 3, in <module>\n    check(3)",
         f"  In [{n[3]}], line 2, in check\n    raise ValueError(f'bad value {{x}}')"))
    # the shell's own traceback print and `Out[n]:` line are not taken for cell output
    assert records[n[3]].stdout == "" and records[n[1]].stdout == ""


def test_syntax_errors_and_out_values_read_late(ip: Any, recorder: ContextRecorder) -> None:
    bad = run(ip, "x = (1 +")
    value = run(ip, "list(range(3))")
    text = context_for(recorder, bad.n).text
    assert (f"error: SyntaxError: incomplete input\ntraceback (last frame):\n"
            f"  In [{bad.n}], line 1\n    x = (1 +\n") in text
    assert f"Out [{value.n}]:\n```\n[0, 1, 2]\n```" in text
    assert out_text(ip, value.n) == "[0, 1, 2]"
    assert out_text(ip, bad.n) is None
    rich = run(ip, "Markdown('**rich** value')")
    assert out_text(ip, rich.n) == "**rich** value"
    broken = run(ip, "class Broken:\n    def __repr__(self): raise RuntimeError\nBroken()")
    with capture_output():  # the formatter prints the failure
        assert out_text(ip, broken.n) == "<Broken object; its repr failed>"
    long = run(ip, "'x' * 5000")
    assert out_text(ip, long.n, limit=100) == "'" + "x" * 99 + "\n[… 4,902 more characters …]"


def test_prompt_cells_are_not_context_and_since_last_is_per_session(
        ip: Any, recorder: ContextRecorder) -> None:
    magics = ip.magics_manager.magics
    saved = {kind: magics[kind].get("claude") for kind in ("line", "cell")}
    ip.register_magic_function(lambda line, cell=None: None, "line_cell", "claude")
    try:
        before = run(ip, "print('before')")
        prompt = run(ip, "%%claude explain\nsomething")
        after = run(ip, "print('after')")
        preview = run(ip, "%claude_context")
        last = run(ip, "print('last')")
    finally:
        for kind, fn in saved.items():
            if fn is None:
                magics[kind].pop("claude", None)
            else:
                magics[kind]["claude"] = fn
    kinds = {r.execution_count: r.kind for r in recorder.records}
    assert kinds[prompt.n] == "prompt" and kinds[preview.n] == "command"
    numbers = lambda records: [r.execution_count for r in records]  # noqa: E731
    # A prompt cell alone moves nothing: its session marks it once the prompt is sent.
    assert recorder.since() is None and recorder.newest == last.n
    assert numbers(recorder.select("since-last")) == [before.n, after.n, last.n]
    assert numbers(recorder.select("since-last", since=prompt.n)) == [after.n, last.n]
    assert numbers(recorder.select(f"{before.n}-{last.n}")) == [before.n, after.n, last.n]

    recorder.mark("default", prompt.n)
    recorder.mark("other")  # the panel and Python: the newest recorded cell
    assert (recorder.since("default"), recorder.since("other")) == (prompt.n, last.n)
    assert recorder.since("never") is None
    recorder.clear()  # cell numbers may restart (a new session): no mark survives
    assert recorder.records == [] and recorder.since("default") is None
    recorder.mark("default")  # nothing recorded: no mark
    assert recorder.since("default") is None


# -- the capture does not change what a cell shows


SHOWN_CELLS = [
    "print('out'); print('err', file=sys.stderr)",
    "41 + 1",
    "display(Markdown('# Title')); display(HTML('<i>x</i>'))",
    "raise KeyError('missing')",
    "with contextlib.redirect_stdout(io.StringIO()):\n    print('hidden')\nprint('visible')",
    "t = threading.Thread(target=lambda: print('from a thread'))\nt.start(); t.join()",
    "import time\nfor i in range(3):\n    print(f'\\r{i}/3', end='')\nprint()",
]


def _comparable(shown: Shown) -> tuple[str, str, list[Any]]:
    """What a cell showed, its cell number written out (two runs differ only there)."""
    number = re.compile(rf"\[\s*{shown.n}\s*\]")
    return (number.sub("[n]", shown.stdout), number.sub("[n]", shown.stderr), shown.outputs)


def test_capture_does_not_change_what_a_cell_shows(ip: Any) -> None:
    plain = [_comparable(run(ip, cell)) for cell in SHOWN_CELLS]
    rec = ContextRecorder(ip)
    rec.register()
    try:
        captured = [_comparable(run(ip, cell)) for cell in SHOWN_CELLS]
    finally:
        rec.unregister()
    assert captured == plain
    assert plain[0][:2] == ("out\n", "err\n") and "KeyError" in plain[3][0]
    by_code = {r.code: r for r in rec.records}
    assert by_code[SHOWN_CELLS[4]].stdout == "visible\n"
    assert by_code[SHOWN_CELLS[5]].stdout == "from a thread\n"
    assert by_code[SHOWN_CELLS[3]].stdout == ""  # the printed traceback is the shell's


def test_a_terminal_shows_the_same_and_its_own_prints_are_not_cell_output(ip: Any) -> None:
    """Without capture_output the terminal shell prints displays, `Out[n]:` and tracebacks
    to stdout itself; the recorder changes none of it and takes none of it as output."""
    cells = ["display(Markdown('# T'))", "40 + 2", "1 / 0", "print('mine')"]

    def shown(rec: ContextRecorder | None) -> list[str]:
        texts = []
        for cell in cells:
            with contextlib.redirect_stdout(io.StringIO()) as out:
                result = ip.run_cell(cell, store_history=True)
            texts.append(re.sub(rf"\[\s*{result.execution_count}\s*\]", "[n]",
                                out.getvalue()))
        return texts

    plain = shown(None)
    rec = ContextRecorder(ip)
    rec.register()
    try:
        recorded = shown(rec)
    finally:
        rec.unregister()
    assert recorded == plain
    assert "Out[n]: 42" in plain[1] and "ZeroDivisionError" in plain[2]
    records = rec.records
    assert [r.stdout for r in records] == ["", "", "", "mine\n"]
    assert records[0].displays == (("text/markdown", "# T"),)
    assert records[1].has_out and records[2].error is not None


def test_a_cell_that_replaces_sys_stdout_keeps_its_stream(ip: Any,
                                                          recorder: ContextRecorder) -> None:
    with capture_output() as captured:
        ip.run_cell("class Upper:\n    def __init__(self, s): self.s = s\n"
                    "    def write(self, t): return self.s.write(t.upper())\n"
                    "    def flush(self): self.s.flush()\n"
                    "sys.stdout = Upper(sys.stdout)", store_history=True)
        replaced = ip.run_cell("print('shout')", store_history=True)
        assert type(sys.stdout).__name__ == "Upper"  # left as the cell set it
        sys.stdout = sys.stdout.s  # the user puts it back
        after = ip.run_cell("print('again')", store_history=True)
    # shown once, in capitals; recorded once, as the cell wrote it
    assert captured.stdout == "SHOUT\nagain\n"
    records = {r.execution_count: r for r in recorder.records}
    assert records[replaced.execution_count].stdout == "shout\n"
    assert records[after.execution_count].stdout == "again\n"


def test_a_stream_held_after_the_cell_is_recorded_once(ip: Any,
                                                       recorder: ContextRecorder) -> None:
    with capture_output() as captured:
        ip.run_cell("held = sys.stdout", store_history=True)
        later = ip.run_cell("written = held.write('late\\n')", store_history=True)
        both = ip.run_cell("print('new'); written = held.write('old\\n')", store_history=True)
    ip.user_ns.pop("held")
    assert captured.stdout == "late\nnew\nold\n"
    records = {r.execution_count: r for r in recorder.records}
    assert records[later.execution_count].stdout == "late\n"
    assert records[both.execution_count].stdout == "new\nold\n"


@pytest.mark.parametrize("plots_first", [True, False])
@pytest.mark.parametrize("plots_leave_first", [True, False])
def test_chains_with_plot_recorder_in_any_order(ip: Any, png_figures: None, plots_first: bool,
                                                plots_leave_first: bool) -> None:
    from nb_claude._plots import PlotRecorder

    publisher = ip.display_pub
    before = vars(publisher).get("publish")
    plots, context = PlotRecorder(ip), ContextRecorder(ip)
    starts = [plots.install, context.register]
    stops = [plots.uninstall, context.unregister]
    for start in starts if plots_first else starts[::-1]:
        start()
    cell = ("import matplotlib.pyplot as plt\nfig = plt.figure(figsize=(2, 2), dpi=40)\n"
            "plt.plot([1, 2])\ndisplay(fig)\nplt.close(fig)")
    result = ip.run_cell(cell, store_history=True)
    n = result.execution_count
    for stop in stops if plots_leave_first else stops[::-1]:
        stop()
    assert len(plots.for_cell(n)) == 1
    assert len(context.records[-1].figures) == 1
    ip.run_cell(cell, store_history=True)  # neither records once unregistered
    assert len(context.records) == 1 and plots.last_cell() == n
    remaining = vars(publisher).get("publish")
    try:
        if plots_first != plots_leave_first:  # left in the reverse order: all undone
            assert remaining is before
        else:  # the first to leave stays in the other's chain, inert
            assert inspect.unwrap(publisher.publish) == inspect.unwrap(
                before or type(publisher).publish.__get__(publisher))
    finally:
        if before is None:
            vars(publisher).pop("publish", None)
        else:
            publisher.publish = before


# -- bounded memory and budget


class _Sink:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def test_a_cell_printing_50_mb_keeps_only_the_tail(ip: Any, recorder: ContextRecorder,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    code = "_chunk = 'x' * 999 + '\\n'\nfor _k in range(50_000):\n    _w = sys.stdout.write(_chunk)"
    saved = sys.stdout
    sys.stdout = _Sink()
    # IPython 9 keeps every stream write of a cell in history_manager.outputs itself;
    # leave that out to measure what the recorder holds.
    monkeypatch.setattr(ip, "_tee", lambda channel: contextlib.nullcontext())
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        ip.run_cell(code, store_history=True)
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        sys.stdout = saved
    record = recorder.records[-1]
    assert record.stdout == ("x" * 999 + "\n")[-192:] + ("x" * 999 + "\n") * 8
    assert len(record.stdout) == recorder.stream_limit == 8_192
    assert record.stdout_cut == 50_000_000 - 8_192
    assert peak - before < 1_000_000, peak - before  # 50 MB went through, < 1 MB held at once
    assert after - before < 200_000, after - before
    text = build([record]).text
    assert "[… 49,991,808 earlier characters not kept …]" in text


def test_at_most_max_cells_are_remembered(ip: Any) -> None:
    rec = ContextRecorder(ip, max_cells=5)
    rec.register()
    try:
        numbers = [run(ip, f"x = {i}").n for i in range(8)]
    finally:
        rec.unregister()
    assert [r.execution_count for r in rec.records] == numbers[-5:]


def test_300_cells_stay_within_the_budget(ip: Any) -> None:
    rec = ContextRecorder(ip, max_cells=300)
    rec.register()
    try:
        numbers = [run(ip, f"print('row {i}: ' + 'data ' * 80)").n for i in range(300)]
    finally:
        rec.unregister()
    assert len(rec.records) == 300
    context = rec.build("all", budget_tokens=6_000)
    assert context.tokens <= 6_000
    assert 0 < context.dropped < 300
    assert len(context.items) + context.dropped == 300
    assert [item.execution_count for item in context.items] == numbers[-len(context.items):]
    assert f"[{context.dropped} earlier cells left out to fit the 6,000-token context budget]" \
        in context.text
    assert context.summary == (f"cells [{context.items[0].execution_count}]-[{numbers[-1]}] · "
                               f"{context.tokens / 1000:.1f}k tokens · {context.dropped} left out")


def test_a_newest_cell_over_the_budget_is_cut_to_fit() -> None:
    record = CellRecord(9, "print(big)", stdout="line\n" * 5_000)
    older = CellRecord(8, "x = 1")
    context = build([older, record], budget_tokens=500)
    assert context.tokens <= 500 and context.dropped == 1
    assert [item.label for item in context.items] == ["[9]"]
    assert "characters cut to fit the context budget" in context.text
    assert context.text.count("In [9]:") == 1
    nothing = build([older, record], budget_tokens=10)
    assert nothing.items == () and nothing.dropped == 2 and nothing.tokens <= 10
    assert nothing.text == ""  # not even the note fits
    # Too small for any cell, yet room for the note: the header still says what it is.
    tiny = build([older, record], budget_tokens=60)
    assert tiny.items == () and tiny.tokens <= 60
    assert tiny.text == ("Notebook cells run before this prompt, oldest first:\n\n"
                         "[2 earlier cells left out to fit the 60-token context budget]")
    assert build([], budget_tokens=100) == Context(budget_tokens=100)


# -- normalisation


@pytest.mark.parametrize(("raw", "stable"), [
    ("<Model object at 0x7f3a2b1c4d50>", "<Model object at 0x…>"),
    ("<Model at 0x10a2b3c4d>", "<Model at 0x…>"),
    ("mask 0xff stays", "mask 0xff stays"),
    ("CPU times: user 1.2 ms, sys: 35 µs, total: 1.23 ms\nWall time: 2.07 ms\n",
     "CPU times: <time>\nWall time: <time>\n"),
    ("123 ns ± 4.56 ns per loop (mean ± std. dev. of 7 runs, 10,000,000 loops each)",
     "<timeit result>"),
    ("1.2 ms ± 7.3 µs per loop (mean ± std. dev. of 3 runs, 100 loops each)\nnext",
     "<timeit result>\nnext"),
    ("The slowest run took 5.12 times longer than the fastest. This could mean that an "
     "intermediate result is being cached.\n", "<timeit result>\n"),
    ("  0%|     | 0/3\r 33%|#    | 1/3\r100%|#####| 3/3\ndone\n", "100%|#####| 3/3\ndone\n"),
    ("step 1\rstep 2\r\n", "step 2\n"),
    ("a\r\nb\r\n", "a\nb\n"),
    ("saved to /tmp/tmpa1b2c3/out.csv.", "saved to <tmp>."),
    ("in /tmp. and /tmpfoo", "in <tmp>. and /tmpfoo"),
    ("File \"/tmp/ipykernel_4711/2231.py\", line 3", "File \"<tmp>\", line 3"),
    ("'/var/folders/zz/zyxvpxvq6csfxvn_n0000000000000/T/tmpq/x.png'", "'<tmp>'"),
    ("'/private/var/folders/zz/zy/T/tmpq'", "'<tmp>'"),
    ("C:\\Users\\ada\\AppData\\Local\\Temp\\tmpx1\\a.csv done", "<tmp> done"),
    ("'C:\\\\Users\\\\ada\\\\AppData\\\\Local\\\\Temp\\\\tmpx1'", "'<tmp>'"),
    ("/home/ada/tmp/keep.csv", "/home/ada/tmp/keep.csv"),
    ("\x1b[0;31mValueError\x1b[0m: \x1b[1mbad\x1b[22m", "ValueError: bad"),
    ("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link"),
    ("plain text stays\n", "plain text stays\n"),
    ("", ""),
])
def test_normalise(raw: str, stable: str) -> None:
    assert normalise(raw) == stable
    assert normalise(stable) == stable


NOISY_CELLS = [
    "class Model: pass\nprint(Model())",
    "%time sum(range(1000))",
    "%timeit -n 20 -r 2 sum(range(100))",
    "import tempfile\nprint(tempfile.mkdtemp())",
    "for i in range(4):\n    print(f'\\rprogress {i}/3', end='')\nprint()",
    "print('\\x1b[31mred\\x1b[0m')",
    "def fail():\n    raise RuntimeError(object())\nfail()",
    "object()",
]


def test_running_the_same_cells_twice_gives_the_same_context(
        ip: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = []
    start = ip.execution_count
    for again in (False, True):
        if again:  # as after a restart: the same cell numbers, kept out of the history
            ip.execution_count = start
            monkeypatch.setattr(ip.history_manager, "store_inputs", lambda *a, **k: None)
            monkeypatch.setattr(ip.history_manager, "store_output", lambda *a, **k: None)
        rec = ContextRecorder(ip)
        rec.register()
        try:
            for cell in NOISY_CELLS:
                run(ip, cell)
        finally:
            rec.unregister()
        texts.append(rec.build("all").text)
    assert texts[0] == texts[1]
    text = texts[0]
    assert "<__main__.Model object at 0x…>" in text
    assert "CPU times: <time>\nWall time: <time>" in text
    assert "<timeit result>" in text and "\x1b" not in text
    assert "stdout:\n```\n<tmp>\n```" in text
    assert "stdout:\n```\nprogress 3/3\n```" in text
    assert "error: RuntimeError: <object object at 0x…>" in text


def test_html_is_reduced_to_text() -> None:
    markup = ("<style>td {color: red}</style><table><thead><tr><th>a</th><th>b</th></tr>"
              "</thead><tr><td>1</td><td>&lt;2&gt;</td></tr></table><p>one<br/>two</p>"
              "<script>alert(1)</script><!-- hidden -->")
    assert html_to_text(markup) == "a | b\n1 | <2>\none\ntwo"


# -- selection


def _records(*numbers: int) -> list[CellRecord]:
    return [CellRecord(n, f"x = {n}") for n in numbers]


def test_select() -> None:
    records = [*_records(1, 2), CellRecord(3, "%%claude hi", kind="prompt"),
               *_records(4, 5), CellRecord(6, "%claude_context", kind="command"),
               *_records(7)]

    def numbers(spec: Any, last: int | None = 3) -> list[int]:
        return [r.execution_count for r in select(records, spec, last)]

    assert numbers("since-last") == [4, 5, 7]
    assert numbers(None) == [4, 5, 7]
    assert numbers("since-last", None) == [1, 2, 4, 5, 7]
    assert numbers("none") == []
    assert numbers("all") == [1, 2, 4, 5, 7]
    assert numbers(2) == [5, 7] and numbers("2") == [5, 7] and numbers(0) == []
    assert numbers(99) == [1, 2, 4, 5, 7]
    assert numbers("2-5") == [2, 4, 5] and numbers(" 4 - 4 ") == [4]
    for bad in ("5-2", "last", "-1", -1, True, "1-2-3"):
        with pytest.raises(ValueError):
            select(records, bad, 3)


def test_cell_kind() -> None:
    assert cell_kind("%%claude\nexplain") == "prompt"
    assert cell_kind("  %claude why?") == "prompt"
    assert cell_kind("%claude_fix") == "prompt"
    assert cell_kind("%claude_context --cells 3") == "command"
    assert cell_kind("%claude_chat") == "command"
    assert cell_kind("%claudette hi") == "code"
    assert cell_kind("x = 1  # %claude") == "code"
    assert cell_kind("print('%claude')") == "code"


def test_reprs_are_small() -> None:
    record = CellRecord(3, "x" * 10_000, stdout="y" * 10_000, has_out=True,
                        error=CellError("ValueError", "m" * 1_000, ("f",)))
    assert repr(record) == "<CellRecord [3], code, 10000 chars of output, Out, ValueError>"
    context = build([record], budget_tokens=100_000)
    assert repr(context) == f"<Context {context.summary}>"
    assert len(repr(context.items[0])) < 60 and len(repr(record.error)) < 60


def test_code_fences_inside_cells_stay_closed() -> None:
    record = CellRecord(1, "s = '''\n```\nnot the end\n```\n'''", stdout="````\n")
    text = build([record]).text
    assert "````python\ns = '''" in text and "\n`````\n````\n`````" in text


# -- @name references


@pytest.mark.parametrize(("prompt", "found", "missing"), [
    ("describe @df", ["df"], []),
    ("compare @df and @sales, then @df again.", ["df", "sales"], []),
    ("(@df), @df. @df: '@df'", ["df"], []),
    ("what is in @nope?", [], ["nope"]),
    ("write to user@example.com or a.b@df.org", [], []),
    ("a literal \\@df here", [], []),
    ("code `@df` and ``x @df`` stay", [], []),
    ("```python\n@df\ndef f(): pass\n```\nbut @sales counts", ["sales"], []),
    ("~~~\n@df\n~~~", [], []),
    ("```\n@df never closed", [], []),
    ("inline ``` is no fence: @df", ["df"], []),
    ("@données and @_private", ["données", "_private"], []),
    ("@1st is no name", [], []),
    ("no references at all", [], []),
])
def test_find_references(prompt: str, found: list[str], missing: list[str]) -> None:
    namespace = {"df": 1, "sales": 2, "données": 3, "_private": 4}
    assert find_references(prompt, namespace) == (found, missing)


def test_unescape_references() -> None:
    assert unescape_references("mail \\@df, not @df") == "mail @df, not @df"
    assert unescape_references("`\\@df` and \\@x") == "`\\@df` and @x"
    assert unescape_references("```\n\\@x\n```\n\\@y") == "```\n\\@x\n```\n@y"
    assert unescape_references("nothing") == "nothing"


# -- import hygiene


def test_context_imports_no_ipython_and_capture_no_heavy_libraries() -> None:
    code = ("import sys, nb_claude._context\n"
            "assert 'IPython' not in sys.modules, 'IPython'\n"
            "import nb_claude._capture\n"
            "heavy = {'pandas', 'matplotlib', 'ipywidgets', 'IPython'} & set(sys.modules)\n"
            "assert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_benchmark_runs_quick() -> None:
    """Smoke test of benchmarks/bench_context.py at a tiny size; no timing is asserted."""
    from pathlib import Path

    bench = Path(__file__).resolve().parent.parent / "benchmarks"
    sys.path.insert(0, str(bench))
    try:
        import bench_context
    finally:
        sys.path.remove(str(bench))
    rows = bench_context.run(quick=True)
    assert len(rows) == 4
    for row in rows:
        assert row.keys() >= {"name", "value", "baseline", "ratio", "target", "ok", "note"}
        assert isinstance(row["value"], float) and row["value"] >= 0 and row["baseline"] > 0
