"""One transcript: history, Markdown and notebook exports show a turn the same way.

Also what a footer owes the reader: labels chosen by the user, costs the offline
stand-in made up, and replies that were added to the replay file.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest

import nb_claude
from nb_claude import _config
from nb_claude._markdown import escape_text
from nb_claude._render import footer, usage_markdown
from nb_claude._session import STAND_IN_HEADER

SETUP = """
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from IPython.display import display
fig = plt.figure(figsize=(3, 2)); plt.plot([1, 3, 2]); display(fig); plt.close(fig)
"""


class LiveLike(httpx.BaseTransport):
    """The stand-in over real HTTP without its offline marker: it answers as the service does."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        del response.headers[STAND_IN_HEADER]
        return response

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def plot_shell(run: Any, ip: Any) -> Any:
    """Figures display as PNG (as with the inline backend), so --plot finds them."""
    from IPython.core.pylabtools import select_figure_formats
    from matplotlib.figure import Figure

    select_figure_formats(ip, {"png"})
    assert run(SETUP).error is None
    yield run
    ip.display_formatter.formatters["image/png"].pop(Figure, None)


def _sub(markdown: str) -> str:
    return markdown.rsplit("<sub>", 1)[1]


# ------------------------------------------------------------------ one transcript


def test_to_notebook_holds_a_plot_once_as_a_cell_attachment(plot_shell: Any, server: Any,
                                                             tmp_path: Path) -> None:
    server.reply("A bump in the middle.")
    cell = plot_shell("%%claude --plot\nWhat is the shape?")
    assert cell.error is None
    session = nb_claude.get_session()
    (image,) = session.history[0].attachments
    assert image.kind == "image"
    path = session.to_notebook(tmp_path / "out.ipynb")
    text = path.read_text(encoding="utf-8")
    encoded = base64.b64encode(image.data).decode("ascii")
    assert text.count(encoded[:200]) == 1  # the image bytes, once
    assert "data:image" not in text  # no second, inline copy
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    turn = notebook.cells[1]
    (name,) = turn.attachments
    assert turn.attachments[name] == {"image/png": encoded}
    attached = [line for line in turn.source.splitlines() if line.startswith("Attached:")]
    label = escape_text(image.description)
    assert attached == [f"Attached: ![{escape_text(image.name)}](attachment:{name}) {label}"]
    assert turn.metadata["nb_claude"]["attachments"] == [
        {"name": image.name, "media_type": "image/png", "sha256": image.sha256}]


def test_history_and_markdown_export_show_the_attached_line_once(plot_shell: Any,
                                                                 server: Any) -> None:
    server.reply("A bump.").reply("Still a bump.")
    plot_shell("%%claude --plot\nWhat is the shape?")
    plot_shell("%%claude\nAnd now?")
    history = plot_shell("%claude_history").markdown
    exported = nb_claude.get_session().to_markdown()
    for text in (history, exported):
        assert text.count("Attached: ") == 1
        assert text.count("data:image/png;base64,") == 1  # one thumbnail for one plot
        assert text.index("What is the shape?") < text.index("Attached: ") < text.index("A bump.")


def test_markdown_and_notebook_exports_share_one_formatter(run: Any, server: Any,
                                                            tmp_path: Path) -> None:
    Path("notes.txt").write_text("alpha\nbeta\n", encoding="utf-8")
    run("import pandas as pd\ndf = pd.DataFrame({'x': [1, 2, 3]})")
    server.reply("Three rows and some notes.").reply("Yes.")
    assert run("%%claude --attach df --attach notes.txt\nWhat is here?").error is None
    assert run("%%claude\nSure?").error is None
    session = nb_claude.get_session()
    markdown = session.to_markdown()
    notebook = nbformat.read(session.to_notebook(tmp_path / "t.ipynb"), as_version=4)
    for number, cell in enumerate(notebook.cells[1:], 1):
        as_markdown = re.sub(r"^### ", "## ", cell.source, flags=re.M)
        assert as_markdown.startswith(f"## {number}. You")
        assert as_markdown in markdown
    assert markdown.count("Attached: df: DataFrame") == 1 and "notes.txt" in markdown


# ------------------------------------------------------------------ labels


def test_a_labelled_file_shows_its_label(configured: Any, server: Any) -> None:
    Path("sales.csv").write_text("region,total\nnorth,10\nsouth,12\n", encoding="utf-8")
    session = nb_claude.get_session()
    server.reply("Two regions.")
    session.ask("What is in it?", attach=[("sales data", "sales.csv")], display=False)
    (attachment,) = session.history[0].attachments
    assert attachment.name == "sales data"
    assert attachment.description.startswith("sales data: ")
    assert "Attached: sales data: " in session.to_markdown()
    # The model still reads the file under its own name: the request is unchanged.
    (document, _) = server.requests[-1].body["messages"][-1]["content"]
    assert document["title"] == "sales.csv" and "north,10" in document["source"]["data"]


def test_an_unlabelled_file_keeps_its_file_name(configured: Any, server: Any) -> None:
    Path("sales.csv").write_text("region,total\nnorth,10\n", encoding="utf-8")
    session = nb_claude.get_session()
    server.reply("One region.")
    session.ask("What is in it?", attach=["sales.csv"], display=False)
    assert session.history[0].attachments[0].description.startswith("sales.csv: ")


# ------------------------------------------------------------------ offline costs


def test_an_offline_reply_says_its_cost_was_not_spent(configured: Any, server: Any) -> None:
    session = nb_claude.Session("offline")
    server.reply("Offline.", usd_spent=0.0227)
    reply = session.ask("q", display=False)
    turn = session.history[0]
    assert reply.usage.cost_usd == pytest.approx(0.0227) and turn.offline
    shown = footer(turn)
    assert "$0.0227 est., offline" in shown and "~$" not in shown
    assert session.usage.estimated  # nothing in the session's total was really spent
    assert "$0.0227 (est., offline stand-in replies)" in usage_markdown(session)


def test_a_live_reply_shows_its_cost_as_spent(configured: Any, server: Any) -> None:
    session = nb_claude.Session("live", transport=LiveLike())
    server.reply("Live.", usd_spent=0.0227)
    session.ask("q", display=False)
    shown = footer(session.history[0])
    assert "$0.0227" in shown and "offline" not in shown and "est." not in shown


def test_a_replayed_offline_reply_still_says_offline(run: Any, server: Any) -> None:
    _config.settings.update(replay_mode="auto")
    session = nb_claude.get_session()
    session.transport = None
    server.reply("Made up.", usd_spent=0.0227)
    first = run("%%claude\nq")
    assert "$0.0227 est., offline" in _sub(first.markdown)
    (entry,) = [json.loads(line) for line in Path("nb_claude_replay.jsonl").read_text(
        encoding="utf-8").splitlines()]
    assert entry["offline"] is True
    run("%claude_reset")
    session.transport = None
    server.reset()
    second = run("%%claude\nq")
    assert server.requests == []
    assert "$0.0227 est., offline" in _sub(second.markdown) and "replayed" in second.markdown
    assert second.metadata["nb_claude"]["offline"] is True


def test_the_stand_in_marks_its_own_replies(configured: Any, server: Any) -> None:
    session = nb_claude.get_session()
    server.reply("Offline.")
    session.ask("q", display=False)
    assert session.history[0].offline


# ------------------------------------------------------------------ growing the replay file


@pytest.mark.parametrize("mode", ["auto", "record"])
def test_a_recorded_reply_says_so(run: Any, server: Any, mode: str) -> None:
    _config.settings.update(replay_mode=mode)
    server.reply("Recorded.")
    cell = run("%%claude\nq")
    assert "recorded in nb_claude_replay.jsonl" in _sub(cell.markdown)
    assert Path("nb_claude_replay.jsonl").exists()


def test_replayed_and_unrecorded_replies_say_nothing_of_recording(run: Any,
                                                                 server: Any) -> None:
    server.reply("Not recorded.")
    assert "recorded in" not in run("%%claude\nq").markdown  # replay_mode off
    run("%claude_reset")
    _config.settings.update(replay_mode="auto")
    server.reply("Recorded once.")
    assert "recorded in" in run("%%claude\nonce").markdown
    run("%claude_reset")
    replayed = run("%%claude\nonce").markdown
    assert "replayed" in _sub(replayed) and "recorded in" not in replayed


def test_the_record_survives_save_and_load(configured: Any, server: Any,
                                           tmp_path: Path) -> None:
    _config.settings.update(replay_mode="record")
    session = nb_claude.Session("saved")
    server.reply("Kept.")
    session.ask("q", display=False)
    loaded = nb_claude.Session.load(session.save(tmp_path / "s.json"))
    shown = footer(loaded.history[0])
    assert "recorded in nb_claude_replay.jsonl" in shown and "est., offline" in shown


def test_the_plot_thumbnail_is_legible(plot_shell: Any, server: Any) -> None:
    """Large enough to see the plot, framed, and in the plot's own aspect (not a square box)."""
    from PIL import Image

    server.reply("A bump.")
    markdown = plot_shell("%%claude --plot\nWhat is the shape?").markdown
    tag = re.search(r'<img src="data:image/png;base64,([^"]+)" style="([^"]+)"', markdown)
    assert tag is not None
    import io

    thumb = Image.open(io.BytesIO(base64.b64decode(tag.group(1))))
    assert max(thumb.size) >= 144 and thumb.size[0] != thumb.size[1]
    style = tag.group(2)
    assert "border:" in style and "width:auto" in style
    assert int(re.search(r"height:(\d+)px", style).group(1)) >= 64
