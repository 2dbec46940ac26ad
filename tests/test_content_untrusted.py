"""Attachments from objects and files that misbehave: one line each, never a hang or a warning."""

from __future__ import annotations

import base64
import io
import os
import threading
import warnings
from pathlib import Path

import pytest

import nb_claude
from nb_claude._content import AttachmentError, attachment_from


def _png(path: Path, size: tuple[int, int], mode: str) -> None:
    from PIL import Image

    Image.new(mode, size, 1 if mode == "1" else 128).save(path, format="PNG", compress_level=1)


def test_a_large_but_legitimate_image_is_downscaled_without_a_warning(run, server, tmp_path):
    from PIL import Image

    _png(tmp_path / "scan.png", (12000, 10000), "L")  # 120 MP: over Pillow's warning line
    server.reply("ok")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cell = run("%%claude --attach scan.png\nWhat is this?")
    assert cell.error is None, cell.error
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert "DecompressionBomb" not in cell.stdout + cell.stderr
    block = server.requests[-1].body["messages"][0]["content"][0]
    sent = Image.open(io.BytesIO(base64.b64decode(block["source"]["data"])))
    assert sent.size == (1568, 1307)
    assert "downscaled from 12000×10000" in cell.markdown


def test_a_decompression_bomb_is_refused_in_one_line(run, server, tmp_path):
    _png(tmp_path / "bomb.png", (20000, 10000), "1")  # 200 MP: over Pillow's refusal line
    server.reply("never")
    cell = run("%%claude --attach bomb.png\nq")
    assert type(cell.error).__name__ == "UsageError", repr(cell.error)
    message = str(cell.error)
    assert message.startswith("bomb.png: image is too large to decode safely (over 179 megapixels)")
    assert "\n" not in message and "Traceback" not in cell.stdout + cell.stderr
    assert server.requests == [] and nb_claude.get_session().history == []


class ReprLLM:
    def _repr_llm_(self) -> str:
        raise RuntimeError("repr_llm exploded\nwith a second line")


class ReprPNG:
    def _repr_png_(self) -> bytes:
        raise ValueError("no png today")


class Getattr:
    def __getattr__(self, name: str) -> object:
        raise KeyError(name)


@pytest.mark.parametrize("obj, error", [
    (ReprLLM(), "RuntimeError: repr_llm exploded with a second line"),
    (ReprPNG(), "ValueError: no png today"),
    (Getattr(), "KeyError: '_repr_llm_'"),
], ids=["repr_llm", "repr_png", "getattr"])
def test_objects_whose_own_hooks_raise_give_an_attachment_error(obj, error):
    with pytest.raises(AttachmentError) as info:
        attachment_from(obj, name="thing")
    message = str(info.value)
    assert message.startswith(f"thing: reading this test_content_untrusted.{type(obj).__name__} "
                              f"failed with {error}")
    assert "\n" not in message


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    done = threading.Event()

    def unblock() -> None:  # if the fifo were opened for reading, stop it hanging forever
        if not done.wait(5):
            with open(fifo, "wb"):
                pass

    threading.Thread(target=unblock, daemon=True).start()
    try:
        with pytest.raises(AttachmentError, match=r"is a FIFO \(named pipe\), not a regular file"):
            attachment_from(fifo, name="pipe.txt")
    finally:
        done.set()


def test_a_socket_is_refused(tmp_path):
    import socket

    path = tmp_path / "s.sock"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
        with pytest.raises(AttachmentError, match="is a socket, not a regular file"):
            attachment_from(path, name="s.sock")
    finally:
        server.close()
