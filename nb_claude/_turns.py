"""Turns and steps: what was asked, what came back, and the messages they make.

`wire_messages` is the one place where a conversation becomes the `messages`
of a request: the session's history, the next request of a tool loop and a dry
run all call it. Pure: no IPython, no widgets, no session.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ._stream import Reply, Usage
from ._wire import (
    as_blocks,
    assistant_blocks,
    simplify,
    tool_blocks_as_text,
    tool_result_block,
    user_content,
)

if TYPE_CHECKING:
    from ._content import Attachment
    from ._tools import ToolResult

__all__ = ["Turn", "Step", "Transcript", "wire_messages", "total_usage"]


@dataclass
class Step:
    """One request of a turn: the reply and the tool results sent back after it.

    `offline`: the reply came from the offline stand-in, so its cost was never spent.
    `recorded`: the replay file this live reply was appended to, if any.
    `changed`: what differs from the cell's recorded request when that is stale.
    """

    reply: Reply
    results: list[ToolResult] = field(default_factory=list)
    offline: bool = False
    recorded: str = ""
    changed: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"Step(reply={self.reply!r}, results={len(self.results)})"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"reply": self.reply.to_dict(),
                                "results": [r.to_dict() for r in self.results]}
        if self.offline:
            data["offline"] = True
        if self.recorded:
            data["recorded"] = self.recorded
        if self.changed:
            data["changed"] = list(self.changed)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Step:
        from ._tools import ToolResult

        return cls(Reply.from_dict(data["reply"]),
                   [ToolResult.from_dict(r) for r in data.get("results", [])],
                   offline=bool(data.get("offline", False)),
                   recorded=str(data.get("recorded") or ""),
                   changed=[str(c) for c in data.get("changed") or () if isinstance(c, str)])


@dataclass
class Turn:
    """A prompt (with attachments) and everything the model answered to it."""

    prompt: str
    attachments: list[Attachment] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    cell_id: str | None = None
    source: str = "python"
    options: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    note: str = ""
    # What the notebook contributed (cells run, @names): {"text": sent before the prompt,
    # "summary": one line, "items": [{"label", "tokens", "text"}], "missing": [names],
    # "not_attachable": {name: type}}.
    context: dict[str, Any] = field(default_factory=dict)
    # What the request was based on: [{"kind", "name", "digest", "description"}] (`_inputs`).
    inputs: list[dict[str, Any]] = field(default_factory=list)
    _wire: list[dict[str, Any]] | None = field(default=None, repr=False, compare=False)

    def __repr__(self) -> str:
        prompt = self.prompt if len(self.prompt) <= 40 else self.prompt[:37] + "..."
        return (f"Turn(prompt={prompt!r}, attachments={len(self.attachments)}, "
                f"steps={len(self.steps)}, source={self.source!r}, cell_id={self.cell_id!r})")

    @property
    def reply(self) -> Reply:
        """The last reply of the turn (the answer, after any tool calls)."""
        return self.steps[-1].reply if self.steps else Reply()

    @property
    def text(self) -> str:
        return "\n\n".join(s.reply.text for s in self.steps if s.reply.text)

    @property
    def usage(self) -> Usage:
        total = Usage()
        for step in self.steps:
            total = total + step.reply.usage
        return total

    @property
    def interrupted(self) -> bool:
        return any(s.reply.interrupted for s in self.steps)

    @property
    def changed(self) -> list[str]:
        """What made the cell's recorded reply stale (its first stale step), or []."""
        return next((s.changed for s in self.steps if s.changed), [])

    @property
    def state(self) -> str:
        """"stale" (the recorded reply's inputs changed), "replayed" or "live"."""
        if self.changed:
            return "stale"
        return "replayed" if any(s.reply.replayed for s in self.steps) else "live"

    @property
    def offline(self) -> bool:
        """Some reply of this turn came from the offline stand-in (no money was spent)."""
        return any(s.offline for s in self.steps)

    def user_content(self) -> str | list[dict[str, Any]]:
        return user_content(self.prompt, self.attachments, self.context.get("text", ""))

    def wire(self) -> list[dict[str, Any]]:
        """The messages this turn contributes to later requests (cached once complete)."""
        if self._wire is not None:
            return self._wire
        return _turn_messages(self, pending=False)

    def _freeze(self) -> None:
        self._wire = None
        self._wire = self.wire()

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "attachments": [a.to_dict() for a in self.attachments],
            "steps": [s.to_dict() for s in self.steps],
            "cell_id": self.cell_id,
            "source": self.source,
            "options": self.options,
            "created": self.created,
            "note": self.note,
            "context": self.context,
            "inputs": self.inputs,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Turn:
        from ._content import Attachment

        turn = cls(
            prompt=data.get("prompt", ""),
            attachments=[Attachment.from_dict(a) for a in data.get("attachments", [])],
            steps=[Step.from_dict(s) for s in data.get("steps", [])],
            cell_id=data.get("cell_id"),
            source=data.get("source", "python"),
            options=dict(data.get("options") or {}),
            created=float(data.get("created") or time.time()),
            note=data.get("note", ""),
            context=dict(data.get("context") or {}),
            inputs=[dict(i) for i in data.get("inputs") or () if isinstance(i, dict)],
        )
        turn._freeze()
        return turn


class Transcript(Protocol):
    """What renderers and exporters read of a session: its name and its turns."""

    @property
    def name(self) -> str: ...
    @property
    def history(self) -> list[Turn]: ...


def _turn_messages(turn: Turn, *, pending: bool) -> list[dict[str, Any]]:
    """A turn's messages: the prompt, then each answered step and its tool results.

    A finished turn ends at its first unanswered reply and sends nothing if nothing
    was answered. A `pending` turn (the one being asked) sends only the steps whose
    tool calls were answered, and its prompt even when there are none.
    """
    messages: list[dict[str, Any]] = [{"role": "user", "content": turn.user_content()}]
    for step in turn.steps:
        answered = bool(step.results)
        if pending and not answered:
            continue
        blocks = assistant_blocks(step.reply, include_tools=answered)
        if not blocks:
            break
        messages.append({"role": "assistant", "content": simplify(blocks)})
        if not answered:
            break
        messages.append({"role": "user", "content": [tool_result_block(r) for r in step.results]})
    if len(messages) == 1 and not pending:
        return []  # nothing was answered: the prompt alone is not sent again
    return messages


def wire_messages(history: Iterable[Turn], pending: Turn | None = None, *,
                  tools: bool = True) -> list[dict[str, Any]]:
    """The `messages` of a request: the history, then the turn being asked, if any.

    One alternating user/assistant list (same-role neighbours merged), so a turn
    interrupted in its tools, which ends on a user message, still alternates.
    `tools`: whether the request defines tools. Claude refuses `tool_use` and
    `tool_result` blocks in a request that defines none, so without tools earlier
    calls and results go as text that says what happened (results cut as a tool's
    own result is); with tools they go as the native blocks.
    """
    merged: list[dict[str, Any]] = []
    every = [m for turn in history for m in turn.wire()]
    if pending is not None:
        every += _turn_messages(pending, pending=True)
    for message in every:
        if merged and merged[-1]["role"] == message["role"]:
            merged[-1] = {"role": message["role"],
                          "content": as_blocks(merged[-1]["content"])
                          + as_blocks(message["content"])}
        else:
            merged.append(message)
    if tools:
        return merged
    from ._tool_results import TOOL_RESULT_BUDGET, _truncate

    return tool_blocks_as_text(merged, lambda text: _truncate(text, TOOL_RESULT_BUDGET))


def total_usage(turns: Sequence[Turn]) -> Usage:
    """What the turns cost together."""
    total = Usage()
    for turn in turns:
        total = total + turn.usage
    return total
