"""Save, load and export a session: JSON with attachments, Markdown, and .ipynb."""

from __future__ import annotations

import base64
import json
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._config import redact
from ._errors import ConfigError

if TYPE_CHECKING:
    from ._content import Attachment
    from ._turns import Transcript, Turn

__all__ = ["save_session", "load_turns", "write_notebook"]

FORMAT = "nb_claude.session"
VERSION = 1


def _atomic_write(path: Path, text: str) -> None:
    """Write beside the target and rename, so an interrupted save never leaves half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_session(session: Transcript, path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"cannot save to {target}: it is a directory; give a file name")
    document = {"format": FORMAT, "version": VERSION, "name": session.name,
                "turns": [turn.to_dict() for turn in session.history]}
    _atomic_write(target, redact(json.dumps(document, ensure_ascii=False, indent=1)))
    return target


def load_turns(path: str | os.PathLike[str]) -> tuple[str, list[Turn]]:
    from ._turns import Turn

    source = Path(path)
    try:
        document = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no saved session at {source}") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the session file {source}: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ConfigError(f"{source} is not a saved nb_claude session")
    if document.get("version", 0) > VERSION:
        raise ConfigError(f"{source} was saved by a newer nb_claude; upgrade to load it")
    try:
        turns = [Turn.from_dict(item) for item in document.get("turns", [])]
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"the session file {source} is damaged: {exc}") from None
    return str(document.get("name") or "default"), turns


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:40] or "image"


def _turn_cell(number: int, turn: Turn) -> Any:
    """A Markdown cell for one turn; each image is stored once, as a cell attachment."""
    import nbformat

    from ._render import transcript_markdown

    attachments: dict[str, dict[str, str]] = {}

    def cell_attachment(index: int, attachment: Attachment) -> str:
        extension = _slug(attachment.media_type.split("/")[-1])
        name = f"{number}-{index}-{_slug(attachment.name)}.{extension}"
        attachments[name] = {attachment.media_type:
                             base64.b64encode(attachment.data).decode("ascii")}
        return f"attachment:{name}"

    cell = nbformat.v4.new_markdown_cell(
        transcript_markdown(turn, number, level=3, image_src=cell_attachment))
    if attachments:
        cell["attachments"] = attachments
    cell["metadata"]["nb_claude"] = {
        "source": turn.source,
        "request_sha256": turn.reply.request_sha256,
        "model": turn.reply.model,
        "attachments": [{"name": a.name, "media_type": a.media_type, "sha256": a.sha256}
                        for a in turn.attachments],
    }
    return cell


def write_notebook(session: Transcript, path: str | os.PathLike[str]) -> Path:
    """An .ipynb with a Markdown cell per turn; images travel as cell attachments."""
    import nbformat

    from ._markdown import code_span

    notebook = nbformat.v4.new_notebook()
    notebook.cells.append(nbformat.v4.new_markdown_cell(
        f"# Conversation {code_span(session.name)}\n\nExported by nb_claude: {len(session.history)} turns."))
    notebook.cells.extend(_turn_cell(n, t) for n, t in enumerate(session.history, 1))
    nbformat.validate(notebook)
    target = Path(path)
    _atomic_write(target, redact(nbformat.writes(notebook)))
    return target
