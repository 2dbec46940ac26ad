"""The Context line: what the notebook added to a prompt (cells run, `@name`s), as one
line and as a collapsed "what Claude saw"; and the small Markdown pieces both
renderers use (`_details`, `_fence`)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ._config import redact
from ._context import format_tokens, reference_notes
from ._markdown import escape_text

if TYPE_CHECKING:
    from ._content import Attachment
    from ._turns import Turn

__all__ = ["context_line", "context_markdown", "context_text"]


def _is_reference(attachment: Attachment) -> bool:
    """An attachment made from an `@name` in the prompt (labelled `@name`)."""
    return attachment.name.startswith("@")


def context_line(turn: Turn) -> str:
    """What the notebook added to the prompt, as one line of plain text: the cells, each
    `@name` attached and each one not found; "" when there is none."""
    context = turn.context or {}
    parts = []
    if context.get("text"):
        parts.append(str(context.get("summary") or "notebook context"))
    for attachment in turn.attachments:
        if _is_reference(attachment):
            what = attachment.description.removeprefix(f"{attachment.name}: ")
            parts.append(f"{attachment.name} {what} · {format_tokens(attachment.estimate_tokens())}")
    parts += reference_notes(context)
    return " ".join(("Context: " + " · ".join(parts)).split()) if parts else ""


def _seen(turn: Turn) -> list[tuple[str, str]]:
    """(heading, text) of each item Claude saw: the cells, then each `@name`'s text."""
    seen = [(f"{item.get('label', '')} · {format_tokens(int(item.get('tokens') or 0))}",
             str(item.get("text", ""))) for item in (turn.context or {}).get("items") or ()]
    for attachment in turn.attachments:
        if _is_reference(attachment):
            text = attachment.text() if attachment.kind == "text" else \
                f"[{attachment.kind}: {attachment.description}]"
            seen.append((f"{attachment.name} · {format_tokens(attachment.estimate_tokens())}", text))
    return seen


def context_markdown(turn: Turn) -> str:
    """The Context line, and under it a collapsed "what Claude saw" with each item's text."""
    line, seen = context_line(turn), _seen(turn)
    body = "\n\n".join(f"{escape_text(heading)}\n\n{_fence(redact(text))}"
                        for heading, text in seen)
    return escape_text(line) + ("\n\n" + _details("what Claude saw", body) if seen else "")


def context_text(turn: Turn) -> str:
    """The Context line and each item's text, for terminal IPython."""
    line = context_line(turn)
    return "\n\n".join([line, *(f"{h}\n{redact(t)}" for h, t in _seen(turn))]) if line else ""


def _details(summary: str, body: str, *, open_: bool = False) -> str:
    flag = " open" if open_ else ""
    return f"<details{flag}><summary>{summary}</summary>\n\n{body}\n\n</details>"


def _fence(text: str, lang: str = "") -> str:
    longest = max((len(m) for m in re.findall(r"`{3,}", text)), default=2)
    ticks = "`" * (longest + 1)
    return f"{ticks}{lang}\n{text}\n{ticks}"
