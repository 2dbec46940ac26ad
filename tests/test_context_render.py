"""The Context line and "what Claude saw": one line above the reply, the exact items in
fences, the same in every transcript form, and untrusted cell text kept as data."""

from __future__ import annotations

import html
from typing import Any

import pytest

from nb_claude._content import attachment_from
from nb_claude._engine import _labelled
from nb_claude._render import (
    context_line,
    context_markdown,
    dry_run_bundle,
    session_markdown,
    session_text,
    transcript_markdown,
    turn_markdown,
    turn_text,
)
from nb_claude._stream import Reply
from nb_claude._turns import Step, Turn

HOSTILE = ("<script>window.pwned = 1</script>\n<img src=x onerror=alert(1)>\n"
           "![leak](http://127.0.0.1:9/leak)\n```\nclosed early?\n````")

CONTEXT = {
    "text": "Notebook cells run before this prompt, oldest first:\n\nIn [3]: ...",
    "summary": "cells [3]-[4] · 1.1k tokens",
    "items": [{"label": "[3]", "tokens": 700, "text": "In [3]:\n```python\nx = 1\n```"},
              {"label": "[4]", "tokens": 400, "text": HOSTILE}],
    "missing": ["nope"],
}


def frame_attachment(label: str = "@df") -> Any:
    pd = pytest.importorskip("pandas")
    made = attachment_from(pd.DataFrame({"a": range(3), "b": list("xyz")}), name=label)
    return _labelled(made, label)


def turn(context: dict[str, Any] | None = None, attachments: list[Any] | None = None,
         reply: str = "The answer.") -> Turn:
    made = Turn("What about @df?", attachments or [], context=dict(context or {}))
    made.steps.append(Step(Reply(text=reply, model="anthropic/claude-opus-4-8")))
    return made


def test_the_line_names_cells_at_names_and_missing_names() -> None:
    df = frame_attachment()
    line = context_line(turn(CONTEXT, [df]))
    tokens = df.estimate_tokens()
    assert line == (f"Context: cells [3]-[4] · 1.1k tokens · @df DataFrame 3 × 2 · "
                    f"{tokens} tokens · @nope not found")
    assert context_line(turn()) == ""
    assert context_line(turn({"text": "", "summary": "", "items": [], "missing": ["x"]})) == \
        "Context: @x not found"
    refused = {"text": "", "summary": "", "items": [], "missing": ["x"],
               "not_attachable": {"pd": "module", "n": "int"}}
    assert context_line(turn(refused)) == \
        "Context: @x not found · @pd not attachable (module) · @n not attachable (int)"
    only = dry_run_bundle({"messages": []}, [], {**refused, "missing": []})["text/markdown"]
    assert "- @pd not attachable (module)\n- @n not attachable (int)" in only


def test_markdown_shows_one_line_then_the_items_in_fences_and_no_attached_line() -> None:
    df = frame_attachment()
    plain = frame_attachment("frame")
    md = turn_markdown(turn(CONTEXT, [df, plain]))
    line, rest = md.split("\n\n", 1)
    assert html.unescape(line) == context_line(turn(CONTEXT, [df]))
    assert rest.startswith("<details><summary>what Claude saw</summary>")
    assert "Attached: frame: DataFrame 3 × 2" in md and "Attached: @df" not in md
    assert md.count("@df DataFrame") == 1
    footer = md.rsplit("\n\n", 1)[-1]
    assert footer.startswith("<sub>") and "\n" not in footer
    body = context_markdown(turn(CONTEXT, [df]))
    for item in CONTEXT["items"]:
        assert item["text"] in body  # exactly as sent, inside a fence
    assert df.text() in body


def test_untrusted_cell_text_stays_inside_its_fence() -> None:
    from test_untrusted_render import RENDER, audit

    md = turn_markdown(turn(CONTEXT), prompt=True)
    assert audit(md) == []
    rendered = RENDER(md)
    assert "&lt;script&gt;" in rendered and "closed early?" in rendered
    assert rendered.count("<details>") == 1 and rendered.count("</details>") == 1


def test_untrusted_labels_and_names_are_escaped() -> None:
    hostile = {"text": "x", "summary": "<b>cells</b> [1]", "missing": [],
               "items": [{"label": "<i>[1]</i>", "tokens": 1, "text": "x"}]}
    md = context_markdown(turn(hostile))
    assert "<b>" not in md and "<i>" not in md


def test_plain_text_starts_with_the_context_line() -> None:
    df = frame_attachment()
    made = turn(CONTEXT, [df])
    assert turn_text(made).splitlines()[0] == context_line(made)
    assert turn_text(turn()).startswith("The answer.")


class History:
    name = "default"

    def __init__(self, *turns: Turn) -> None:
        self.history = list(turns)


def test_history_and_exports_show_the_same_line_once(tmp_path: Any) -> None:
    df = frame_attachment()
    made = turn(CONTEXT, [df])
    line = context_line(made)
    for md in (transcript_markdown(made, 1), session_markdown(History(made))):
        assert [html.unescape(p) for p in md.split("\n\n")].count(line) == 1
    text = session_text(History(made))
    assert text.count(line) == 1 and "(attached: @df)" not in text
    pytest.importorskip("nbformat")
    import nbformat

    from nb_claude._export import write_notebook

    notebook = nbformat.read(write_notebook(History(made), tmp_path / "t.ipynb"), as_version=4)
    assert html.unescape(notebook.cells[1].source).count(line) == 1


def test_dry_run_lists_context_items_with_their_tokens() -> None:
    bundle = dry_run_bundle({"messages": []}, [], CONTEXT)
    md = html.unescape(bundle["text/markdown"])
    assert "Context: cells [3]-[4] · 1.1k tokens" in md
    assert "- [3] · ~700 tokens" in md and "- [4] · ~400 tokens" in md
    assert "- @nope not found" in md
