"""Bad input, table-driven: one line naming the problem, nothing sent, history unchanged."""

from __future__ import annotations

import io
import os

import pytest

import nb_claude

SETUP = r'''
import io, numpy as np, pandas as pd, pypdf
from PIL import Image

class Opaque:
    pass

opaque = Opaque()
wide = pd.DataFrame(np.zeros((3, 10_000)), columns=[f"c{i}" for i in range(10_000)])
'''


def _pdf(path, pages: int, password: str | None = None) -> None:
    import pypdf

    writer = pypdf.PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=100, height=100)
    if password:
        writer.encrypt(password, algorithm="RC4-128")
    with open(path, "wb") as handle:
        writer.write(handle)


@pytest.fixture
def files(tmp_path):
    (tmp_path / "folder").mkdir()
    huge = tmp_path / "huge.csv"
    with open(huge, "wb") as handle:  # 200 MB, sparse: refused before it is read
        handle.truncate(200 * 1024 * 1024)
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    (tmp_path / "junk.txt").write_bytes(bytes(range(256)) * 40)
    (tmp_path / "song.mp3").write_bytes(b"ID3" + b"\0" * 100)
    _pdf(tmp_path / "locked.pdf", 2, password="secret")
    _pdf(tmp_path / "long.pdf", 500)
    (tmp_path / "long.txt").write_text("word " * 1_000_000)  # 5 MB: about 1.25M tokens
    return tmp_path


CASES = [
    ("%%claude --attach nosuch\nq", "--attach nosuch: no variable named 'nosuch'"),
    ("%%claude --attach opaque\nq", "Opaque"),
    ("%%claude --attach {d}/missing.csv\nq", "missing.csv"),
    ("%%claude --attach {d}/folder\nq", "folder"),
    ("%%claude --attach {d}/huge.csv\nq", "huge.csv"),
    ("%%claude --attach {d}/corrupt.png\nq", "corrupt.png"),
    ("%%claude --attach {d}/junk.txt\nq", "junk.txt"),
    ("%%claude --attach {d}/song.mp3\nq", "not supported by Claude models"),
    ("%%claude --attach {d}/locked.pdf\nq", "encrypted"),
    ("%%claude --attach {d}/long.pdf\nq", "500 pages"),
    ("%%claude\n\n", "the prompt is empty"),
    ("%%claude --temperature 1\nq", "unrecognized arguments: --temperature"),
    ("%%claude --thinking 10\nq", "at least 1024"),
    ("%%claude --max-tokens 0\nq", "between 1 and 128,000"),
    ("%%claude -m gpt-5\nq", "unknown model 'gpt-5'"),
    ("%%claude --tools nosuch_tool\nq", "unknown tool 'nosuch_tool'"),
    ("%%claude --plot 424242\nq", "cell [424242]"),
    ("%%claude --attach {d}/long.txt\nq", "over Claude's 1,000,000-token context"),
]


@pytest.mark.parametrize("source, problem", CASES, ids=[c[1][:30] for c in CASES])
def test_bad_input(run, server, files, source, problem):
    assert run(SETUP).error is None
    server.reply("Before.")
    run("%%claude\nbefore")
    before = nb_claude.get_session().messages
    server.reset()
    cell = run(source.format(d=files))
    message = str(cell.error)
    assert type(cell.error).__name__ == "UsageError", repr(cell.error)
    assert problem in message and "\n" not in message and len(message) < 300, message
    assert "Traceback" not in cell.stdout + cell.stderr
    assert server.requests == []
    assert nb_claude.get_session().messages == before


def test_a_ten_thousand_column_frame_is_summarised_not_dumped(run, server):
    assert run(SETUP).error is None
    server.reply("ok")
    cell = run("%%claude --attach wide\nWhat is this?")
    assert cell.error is None
    text = server.requests[-1].body["messages"][0]["content"][0]["text"]
    assert "10,000" in text or "10000" in text
    assert len(text) < 8000


def test_non_utf8_text_is_decoded_with_a_stated_fallback(run, server, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes("café crème, déjà vu".encode("latin-1"))
    server.reply("ok")
    cell = run(f"%%claude --attach {path}\nRead")
    assert cell.error is None
    document = server.requests[-1].body["messages"][0]["content"][0]
    assert document["source"]["data"] == "café crème, déjà vu"
    assert "latin-1" in cell.markdown or "cp1252" in cell.markdown


def test_an_oversized_image_is_downscaled_not_refused(run, server):
    assert run(SETUP).error is None
    server.reply("ok")
    cell = run("big = Image.effect_noise((9000, 6000), 80).convert('RGB')\n"
               "%claude --attach big How noisy?")
    assert cell.error is None, cell.error
    assert server.requests, (cell.stdout, cell.stderr, [o.data for o in cell.outputs])
    block = server.requests[-1].body["messages"][0]["content"][0]
    import base64

    from PIL import Image

    assert len(block["source"]["data"]) <= 5_242_880
    assert max(Image.open(io.BytesIO(base64.b64decode(block["source"]["data"]))).size) <= 1568
