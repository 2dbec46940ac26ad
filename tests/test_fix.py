"""Error help's pure core: the fix prompt built from real failing cells, the code block
taken from untrusted replies, the diffs (escaped, `patch`-compatible) and which errors
get help."""

from __future__ import annotations

import ast
import pathlib
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from typing import Any

import IPython
import pytest
from IPython.testing.globalipapp import get_ipython
from IPython.utils.capture import capture_output

from nb_claude._capture import ContextRecorder
from nb_claude._context import CellError, CellRecord
from nb_claude._fix import (
    FixRequest,
    diff_html,
    diff_markdown,
    fix_prompt,
    proposed_code,
    unified_diff,
    wants_help,
)

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def ip() -> Any:
    return get_ipython() or IPython.get_ipython()


def _recorder(ip: Any, **options: Any) -> Iterator[ContextRecorder]:
    rec = ContextRecorder(ip, **options)
    rec.register()
    yield rec
    rec.unregister()


@pytest.fixture
def recorder(ip: Any) -> Iterator[ContextRecorder]:
    """Keeps enough frames to reach from a deep library raise back to the cell."""
    yield from _recorder(ip, max_frames=20)


@pytest.fixture
def default_recorder(ip: Any) -> Iterator[ContextRecorder]:
    yield from _recorder(ip)


def run(ip: Any, recorder: ContextRecorder, code: str) -> CellRecord:
    """Run `code` as a cell; its record, which must hold an error."""
    with capture_output():
        result = ip.run_cell(code, store_history=True)
    record = recorder.records[-1]
    assert record.execution_count == result.execution_count
    assert record.error is not None, record
    return record


def fenced_after(prompt: str, heading: str) -> str:
    """The body of the first fence after `heading`."""
    rest = prompt.split(heading, 1)[1]
    return rest.split("```\n", 1)[1].split("\n```", 1)[0]


@pytest.fixture
def sales(ip: Any) -> Iterator[None]:
    pd = pytest.importorskip("pandas")
    ip.user_ns["df"] = pd.DataFrame({"region": ["north", "south", "north"],
                                     "revenue": [10.0, 20.0, 30.0]})
    ip.user_ns["pd"] = pd
    yield
    for name in ("df", "pd"):
        ip.user_ns.pop(name, None)


# -- the prompt, from real failing cells


def test_a_key_error_on_a_dataframe(ip: Any, recorder: ContextRecorder, sales: None) -> None:
    code = 'df.groupby("regoin").revenue.mean()'
    record = run(ip, recorder, code)
    request = fix_prompt(record, namespace=ip.user_ns)
    n = record.execution_count

    assert isinstance(request, FixRequest)
    assert request.code == code and request.execution_count == n
    assert request.variables == ("df",)
    assert request.error == "KeyError: 'regoin'"
    prompt = request.prompt
    assert f"```python\n{code}\n```" in prompt
    assert "KeyError: 'regoin'" in prompt
    frames = fenced_after(prompt, "The traceback").split("\n")
    assert frames[:2] == [f"  In [{n}], line 1, in <module>", f"    {code}"]
    library = frames[2:]
    assert library and all(line.startswith("  pandas/") and ", line " in line
                           for line in library)  # one line each: no source lines
    assert "raise KeyError" not in prompt
    assert "'region', 'revenue'" in prompt  # the columns the lookup could have meant
    assert "df (pandas.DataFrame):" in prompt
    assert "pd (" not in prompt  # a module is not summarised
    assert "ONE fenced ```python code block" in prompt


def test_the_default_recorder_keeps_the_user_frame_of_an_error_deep_in_pandas(
        ip: Any, default_recorder: ContextRecorder, sales: None) -> None:
    """The recorder keeps three frames by default: the cell's own among them, however deep
    in pandas the error was raised, so the failing line (and its names) is known."""
    record = run(ip, default_recorder, 'total = 1\ndf.groupby("regoin").revenue.mean()')
    assert record.error is not None
    frames = record.error.frames
    assert len(frames) == 3
    n = record.execution_count
    assert frames[0].startswith(f"  In [{n}], line 2, in <module>")
    assert all(frame.lstrip().startswith("pandas/") for frame in frames[1:])
    request = fix_prompt(record, namespace=ip.user_ns)
    assert request.variables == ("df",)
    assert "Variables named in the failing line" in request.prompt
    assert "KeyError: 'regoin'" in request.prompt


def test_the_cell_frame_is_found_without_it_when_only_library_frames_were_kept(
        ip: Any, sales: None) -> None:
    """With one frame kept, it is where the error was raised (pandas'): the names then come
    from the whole cell."""
    one = ContextRecorder(ip, max_frames=1)
    one.register()
    try:
        record = run(ip, one, 'total = 1\ndf.groupby("regoin").revenue.mean()')
    finally:
        one.unregister()
    assert record.error is not None and len(record.error.frames) == 1
    assert record.error.frames[0].lstrip().startswith("pandas/")
    request = fix_prompt(record, namespace=ip.user_ns)
    assert request.variables == ("total", "df")
    assert "Variables named in the failing cell" in request.prompt


def test_a_name_error(ip: Any, recorder: ContextRecorder) -> None:
    ip.user_ns["prices"] = [3, 4]
    try:
        record = run(ip, recorder, "shown = 1\nprint(sum(prices) + undefined_total)")
    finally:
        ip.user_ns.pop("prices")
    request = fix_prompt(record, namespace={**ip.user_ns, "prices": [3, 4]})
    assert "NameError: name 'undefined_total' is not defined" in request.prompt
    assert f"In [{record.execution_count}], line 2, in <module>" in request.prompt
    assert request.variables == ("prices",)  # `shown` is not on the failing line
    assert "prices (list):\n```\n[3, 4]\n```" in request.prompt


def test_a_zero_division_inside_a_user_function(ip: Any, recorder: ContextRecorder) -> None:
    code = "scale = 0\ndef ratio(a, b):\n    return a / b\n\nratio(10, scale)"
    record = run(ip, recorder, code)
    ip.user_ns["a"] = "a global the function's `a` is not"
    try:
        request = fix_prompt(record, namespace=ip.user_ns)
    finally:
        ip.user_ns.pop("a")
    n = record.execution_count
    frames = fenced_after(request.prompt, "The traceback").split("\n")
    assert frames == [f"  In [{n}], line 5, in <module>", "    ratio(10, scale)",
                      f"  In [{n}], line 3, in ratio", "    return a / b"]
    assert "ZeroDivisionError: division by zero" in request.prompt
    assert request.variables == ("scale",)  # not the function, not the global `a`


def test_a_syntax_error(ip: Any, recorder: ContextRecorder) -> None:
    ip.user_ns["x"] = 5
    try:
        record = run(ip, recorder, "x = (1,\nprint(x")
        request = fix_prompt(record, namespace=ip.user_ns)
    finally:
        ip.user_ns.pop("x")
    assert "SyntaxError: " in request.prompt
    assert f"In [{record.execution_count}], line" in request.prompt
    assert "```python\nx = (1,\nprint(x\n```" in request.prompt
    assert request.variables == ()  # the cell never ran: its names hold old values


def test_a_standard_library_frame_is_one_line(ip: Any, recorder: ContextRecorder) -> None:
    record = run(ip, recorder, 'import json\nbroken = "{bad"\njson.loads(broken)')
    request = fix_prompt(record, namespace=ip.user_ns)
    frames = fenced_after(request.prompt, "The traceback").split("\n")
    assert frames[1] == "    json.loads(broken)"
    assert all(line.endswith(("in loads", "in decode", "in raw_decode")) for line in frames[2:])
    assert request.variables == ("broken",)


# -- the prompt, from records built by hand


def record_of(code: str, *frames: str, type_: str = "ValueError", n: int = 7) -> CellRecord:
    return CellRecord(n, code, error=CellError(type_, "bad value", tuple(frames)))


def test_a_statement_over_several_lines_gives_all_its_names() -> None:
    code = "a = 1\nresult = compute(\n    frame,\n    other)\nb = 2"
    record = record_of(code, "  In [7], line 3, in <module>\n    frame,")
    namespace = {"a": 1, "b": 2, "frame": [1], "other": "x", "compute": len, "result": 0}
    assert fix_prompt(record, namespace=namespace).variables == ("result", "frame", "other")


def test_a_compound_statement_gives_its_header_line_only() -> None:
    code = "for row in rows:\n    print(row / count)"
    record = record_of(code, "  In [7], line 1, in <module>\n    for row in rows:")
    namespace = {"rows": 1, "count": 0, "row": 0}
    assert fix_prompt(record, namespace=namespace).variables == ("row", "rows")


def test_a_cell_with_a_magic_is_read_by_tokens() -> None:
    record = record_of("%time y = data[column].sum()\n!ls other")
    namespace = {"data": {}, "column": "c", "y": 0, "time": "not this", "ls": 1, "other": 2}
    assert fix_prompt(record, namespace=namespace).variables == ("y", "data", "column")
    record = record_of("value = table['a'].b + (", type_="KeyError")
    assert fix_prompt(record, namespace={"table": 1, "b": 2}).variables == ("table",)


def test_names_that_are_not_data_are_left_out() -> None:
    import math

    class Thing:
        pass

    record = record_of("out = f(math, Thing, _, In, values, print)")
    namespace = {"f": len, "math": math, "Thing": Thing, "_": 1, "In": [], "values": [1],
                 "print": print, "out": None}
    assert fix_prompt(record, namespace=namespace).variables == ("out", "values")


def test_summaries_are_small_and_few() -> None:
    names = [f"v{i}" for i in range(10)]
    record = record_of(" + ".join(names))
    namespace: dict[str, object] = {name: "x" * 5000 for name in names}
    request = fix_prompt(record, namespace=namespace, variable_budget=300, max_variables=3)
    assert request.variables == ("v0", "v1", "v2")
    assert len(request.prompt) < 2000


def test_frames_are_classified_and_limited() -> None:
    stdlib = sysconfig.get_paths()["stdlib"]
    frames = ["  In [7], line 1, in <module>\n    run()",
              "  /home/me/project/helpers.py, line 4, in run\n    go()",
              *[f"  {stdlib}/json/decoder.py, line {i}, in decode\n    secret_source_{i}"
                for i in range(20)],
              "  <frozen importlib._bootstrap>, line 1, in _load\n    frozen_source",
              "  numpy/core/x.py, line 9, in f\n    numpy_source"]
    request = fix_prompt(record_of("run()", *frames), namespace={}, frames_limit=100)
    assert "    go()" in request.prompt  # a file of the user's is user code
    assert "secret_source" not in request.prompt and "numpy_source" not in request.prompt
    assert "frozen_source" not in request.prompt
    short = fix_prompt(record_of("run()", *frames), namespace={}, frames_limit=4).prompt
    trace = fenced_after(short, "The traceback").split("\n")
    assert trace[:3] == ["  In [7], line 1, in <module>", "    run()",
                         "  [… 20 frames not shown …]"]
    assert trace[-1] == "  numpy/core/x.py, line 9, in f"


def test_explain_only_and_a_note() -> None:
    record = record_of("x = int('a')", "  In [7], line 1, in <module>\n    x = int('a')")
    request = fix_prompt(record, namespace={}, explain_only=True,
                         extra="  I expected {braces} to survive  ")
    assert "Do not write the fixed cell." in request.prompt
    assert "```python code block" not in request.prompt
    assert "My note:\nI expected {braces} to survive" in request.prompt
    assert "\n\nMy note" in request.prompt


def test_a_cell_without_an_error_is_refused() -> None:
    with pytest.raises(ValueError, match="raised no error"):
        fix_prompt(CellRecord(3, "1 + 1"), namespace={})


def test_code_with_backticks_stays_fenced() -> None:
    code = 's = """\n```\n"""\nundefined'
    request = fix_prompt(record_of(code), namespace={})
    assert f"````python\n{code}\n````" in request.prompt


def test_the_module_imports_no_ipython_and_no_widgets() -> None:
    tree = ast.parse((ROOT / "nb_claude" / "_fix.py").read_text(encoding="utf-8"))
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    names |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {n for n in names if n.split(".")[0] in ("IPython", "ipywidgets")}
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, nb_claude._fix; "
         "print(sorted(m for m in ('IPython', 'ipywidgets', 'pandas') if m in sys.modules))"],
        capture_output=True, text=True, cwd=ROOT, check=True)
    assert loaded.stdout.strip() == "[]"


# -- the proposed code


@pytest.mark.parametrize(("reply", "expected"), [
    ("The key is misspelt.\n\n```python\ndf.groupby('region').revenue.mean()\n```\n",
     "df.groupby('region').revenue.mean()"),
    ("No code here, only `inline` code and ```inline fences```.", None),
    ("```\nx = 1\n```", "x = 1"),
    ("~~~py\nx = 1\n\ny = 2\n~~~\nDone.", "x = 1\n\ny = 2"),
    ("```IPython\n%time f()\n```", "%time f()"),
    ("Run this:\n```bash\npip install pandas --upgrade\n```\nThen:\n```python\nimport pandas\n"
     "```\nor the longer:\n```python\nimport pandas as pd\nprint(pd)\n```\n```text\n"
     "a much longer block that is not python at all\n```",
     "import pandas as pd\nprint(pd)"),
    ("````python\ns = '''\n```python\nnot the end\n```\n'''\n````", "s = '''\n```python\n"
     "not the end\n```\n'''"),
    ("~~~python\nx = '```'\n```\ny = 2\n~~~", "x = '```'\n```\ny = 2"),
    ("1. Fix it:\n   ```python\n   if x:\n       y()\n   ```", "if x:\n    y()"),
    ("Cut off mid-reply:\n```python\nx = 1\n", None),
    ("```diff\n-a\n+b\n```", None),
    ("```python\n\n\n```", None),
    ("```python\r\nx = 1\r\n```\r\n", "x = 1"),
])
def test_proposed_code(reply: str, expected: str | None) -> None:
    assert proposed_code(reply) == expected


def test_proposed_code_is_only_extracted() -> None:
    reply = "```python\nimport os; os._exit(3)\n```"
    assert proposed_code(reply) == "import os; os._exit(3)"  # and the tests still run


# -- diffs

OLD = 'import pandas as pd\ndf.groupby("regoin").revenue.mean()\nprint("done")'
NEW = 'import pandas as pd\ndf.groupby("region").revenue.mean()\nprint("done")'


def test_unified_diff_is_difflib_format() -> None:
    assert unified_diff(OLD, NEW) == (
        "--- failing\n+++ fixed\n@@ -1,3 +1,3 @@\n import pandas as pd\n"
        '-df.groupby("regoin").revenue.mean()\n+df.groupby("region").revenue.mean()\n'
        ' print("done")\n')
    assert unified_diff(OLD, OLD) == ""
    assert unified_diff(OLD, OLD + "\n") == ""  # a final newline is not a change


@pytest.mark.skipif(shutil.which("patch") is None, reason="no patch program")
@pytest.mark.parametrize(("old", "new"), [
    (OLD, NEW),
    ("a\nb\nc", "a\nc\nd\ne"),
    ("", "x = 1"),
    ("x = 1\n" * 30 + "y = 2", "x = 1\n" * 30 + "y = 3\n" + "x = 1\n" * 10),
])
def test_patch_accepts_the_unified_diff(tmp_path: pathlib.Path, old: str, new: str) -> None:
    target = tmp_path / "cell.py"
    target.write_text(old + "\n" if old else "", encoding="utf-8")
    (tmp_path / "fix.diff").write_text(unified_diff(old, new), encoding="utf-8")
    result = subprocess.run(["patch", "--batch", "--silent", str(target),
                             str(tmp_path / "fix.diff")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert target.read_text(encoding="utf-8") == new.rstrip("\n") + "\n"


def test_diff_html_escapes_a_hostile_line() -> None:
    hostile = '</pre><script>alert("x")</script><img src=x onerror=alert(1)> & co'
    shown = diff_html("x = 1\n" + hostile, "x = 2\n" + hostile + "\n'" + hostile + "'")
    assert shown.startswith("<pre ") and shown.endswith("</pre>")
    assert shown.count("<pre") == 1 and shown.count("</pre>") == 1
    assert "<script" not in shown and "<img" not in shown
    assert ("&lt;/pre&gt;&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img src=x "
            "onerror=alert(1)&gt; &amp; co") in shown
    assert "+ &#x27;&lt;/pre&gt;" in shown
    tags = {tag.split()[0] for tag in shown.replace(">", " ").split("<")[1:]}
    assert tags == {"pre", "span", "/span", "/pre"}


def test_diff_html_colours_added_and_removed_lines() -> None:
    shown = diff_html(OLD, NEW)
    removed = 'background:#ffebe9;color:#6e1a1a">- df.groupby(&quot;regoin&quot;)'
    added = 'background:#e6ffec;color:#1a4d26">+ df.groupby(&quot;region&quot;)'
    assert removed in shown and added in shown
    assert shown.index(removed) < shown.index(added)
    assert '">  import pandas as pd</span>' in shown
    assert "class=" not in shown


def test_diff_html_folds_long_unchanged_stretches() -> None:
    old = "\n".join(f"line{i}" for i in range(40))
    new = old.replace("line20", "LINE20")
    shown = diff_html(old, new)
    assert shown.count("⋯ 17 unchanged lines") == 1 and shown.count("⋯ 16 unchanged lines") == 1
    assert "line16<" not in shown and "line17<" in shown and "line23<" in shown
    assert "line24<" not in shown
    assert "⋯ no changes" in diff_html(old, old + "\n")


def test_diff_markdown_is_a_diff_fence() -> None:
    assert diff_markdown(OLD, NEW) == "```diff\n" + unified_diff(OLD, NEW) + "```"
    fenced = diff_markdown("s = '```'", "s = '````'")
    assert fenced.startswith("`````diff\n") and fenced.endswith("\n`````")
    assert diff_markdown("x", "x") == "```diff\n(no changes)\n```"


# -- which errors get help


@pytest.mark.parametrize(("name", "usage", "expected"), [
    ("KeyError", False, True),
    ("ZeroDivisionError", False, True),
    ("UsageError", False, True),  # another extension's: the user may want help
    ("UsageError", True, False),
    ("ConfigError", True, False),
    ("KeyboardInterrupt", False, False),
    ("SystemExit", False, False),
    ("builtins.KeyboardInterrupt", False, False),
])
def test_wants_help(name: str, usage: bool, expected: bool) -> None:
    assert wants_help(name, is_nb_claude_usage_error=usage) is expected
