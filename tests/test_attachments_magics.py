"""Attachments through a real IPython shell to the stand-in: what the service receives."""

from __future__ import annotations

import base64
import io
import json

import pytest

import nb_claude

SETUP = """
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image
from IPython.display import display
"""


@pytest.fixture
def shell(run, ip):
    """Figures display as PNG, as with the inline backend."""
    from IPython.core.pylabtools import select_figure_formats
    from matplotlib.figure import Figure

    select_figure_formats(ip, {"png"})
    assert run(SETUP).error is None
    yield run
    ip.display_formatter.formatters["image/png"].pop(Figure, None)


def blocks(server):
    content = server.requests[-1].body["messages"][-1]["content"]
    assert isinstance(content, list)
    return content


def decode_image(block):
    from PIL import Image

    assert block["type"] == "image" and block["source"]["type"] == "base64"
    return Image.open(io.BytesIO(base64.b64decode(block["source"]["data"])))


def test_plot_and_dataframe_reach_the_service_with_a_sent_line(shell, server):
    shell("df = pd.DataFrame({'x': np.arange(200.0), 'y': np.arange(200.0) ** 1.5, "
          "'group': pd.Categorical(['a', 'b'] * 100)})")
    shell("fig = plt.figure(figsize=(6, 4)); plt.scatter(df.x, df.y); display(fig); "
          "plt.close(fig)")
    server.reply("It grows faster than linearly.")
    cell = shell("%%claude --plot --attach df\nWhat does this relationship suggest?")
    assert cell.error is None
    image, frame, text = blocks(server)
    picture = decode_image(image)
    assert picture.format == "PNG" and max(picture.size) <= 1568
    assert frame["type"] == "text" and frame["text"].startswith('<attachment name="df"')
    assert "200" in frame["text"] and "category" in frame["text"]
    assert text == {"type": "text", "text": "What does this relationship suggest?"}
    sent_line = cell.markdown.split("\n\n")[0]
    assert sent_line.startswith("Attached: <img src=\"data:image/png;base64,")
    assert "df: DataFrame 200 × 3" in sent_line
    assert cell.markdown.index("It grows faster") > cell.markdown.index("Attached: ")


def test_plot_n_attaches_the_images_of_that_cell(shell, server, ip):
    shell("f1 = plt.figure(figsize=(2, 2)); plt.plot([1, 2]); display(f1); plt.close(f1)")
    first_count = ip.execution_count - 1
    shell("f2 = plt.figure(figsize=(3, 1)); plt.plot([2, 1]); display(f2); plt.close(f2)")
    server.reply("ok").reply("ok")
    cell = shell(f"%%claude --plot {first_count}\nThe first one")
    assert cell.error is None, cell.error
    width, height = decode_image(blocks(server)[0]).size
    assert 0.8 < width / height < 1.25  # the square one
    shell("%%claude --plot\nThe last one")
    width, height = decode_image(blocks(server)[0]).size
    assert width > 2 * height  # the wide one
    cell = shell("%%claude --plot 99999\nNothing there")
    assert type(cell.error).__name__ == "UsageError" and "--plot" in str(cell.error)


def test_many_kinds_in_one_cell(shell, server, tmp_path):
    (tmp_path / "notes.md").write_text("# Notes\nrevenue rose 12%\n")
    shell("big = Image.new('RGB', (4000, 3000), 'teal')")
    shell("series = pd.Series([1, 2, None], name='s', dtype='Int64')")
    shell("arr = np.arange(12).reshape(3, 4)")
    shell("class Thing:\n    def _repr_llm_(self):\n        return 'a thing, described for models'\n"
          "thing = Thing()")
    server.reply("ok")
    cell = shell("%%claude -a big -a series,arr -a notes.md -a thing -a 'fig_ax'\nAll of it")
    assert "no variable named 'fig_ax'" in str(cell.error)
    assert server.requests == []
    cell = shell("%%claude -a big -a series,arr -a notes.md -a thing\nAll of it")
    assert cell.error is None
    sent = blocks(server)
    assert [b["type"] for b in sent] == ["image", "text", "text", "document", "text", "text"]
    assert decode_image(sent[0]).size == (1568, 1176)
    assert sent[3]["source"] == {"type": "text", "media_type": "text/plain",
                                 "data": "# Notes\nrevenue rose 12%\n"}
    assert "a thing, described for models" in sent[4]["text"]


def test_odd_dtypes_are_summarised_faithfully(shell, server):
    shell("odd = pd.DataFrame({\n"
          "  'when': pd.date_range('2024-01-01', periods=6, freq='h', tz='Europe/Paris'),\n"
          "  'n': pd.array([1, None, 3, 4, None, 6], dtype='Int64'),\n"
          "  'kind': pd.Categorical(list('aabbcc')),\n"
          "  'payload': [{'k': i} for i in range(6)],\n"
          "}, index=pd.MultiIndex.from_product([['x', 'y'], [1, 2, 3]], names=['g', 'i']))")
    server.reply("ok")
    assert shell("%%claude --attach odd\nDescribe").error is None
    summary = blocks(server)[0]["text"]
    for needle in ("Europe/Paris", "Int64", "category", "MultiIndex", "'k'"):
        assert needle in summary, needle


def test_attachments_stay_in_history_for_follow_ups(shell, server):
    shell("small = pd.DataFrame({'a': [1, 2]})")
    server.reply("first").reply("second")
    shell("%%claude --attach small\nLook at this")
    shell("%%claude\nAnd the column names?")
    messages = server.requests[-1].body["messages"]
    assert messages[0]["content"][0]["text"].startswith('<attachment name="small"')
    turn = nb_claude.get_session().history[0]
    assert len(turn.attachments[0].sha256) == 64


def test_files_are_read_once_when_the_cell_runs(shell, server, tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b\n1,2\n")
    server.reply("ok").reply("ok")
    shell(f"%%claude --attach {path}\nRead it")
    path.unlink()
    cell = shell("%%claude\nStill there?")
    assert cell.error is None
    assert "a,b" in json.dumps(server.requests[-1].body["messages"][0])


def test_dry_run_lists_attachments_and_token_estimates(shell, server):
    shell("img = Image.new('RGB', (750, 100))")
    cell = shell("%%claude --dry-run --attach img\nHow big?")
    md = cell.markdown
    assert "(100 tokens)" in md.replace("about ", "(").replace(" tokens):", " tokens)") or \
        "~100 tokens" in md
    assert "chars of base64" in md and server.requests == []
