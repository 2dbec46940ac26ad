"""The wire dialect: every block, tool definition and request body nb_claude sends.

The service takes Anthropic-native content blocks inside an OpenAI-style
`/v1/chat/completions` body. This module alone decides how attachments, tool
definitions, `tool_choice`, thinking, assistant turns and tool results are
written. Pure: it imports no other nb_claude module but the reply type.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ._stream import Reply

__all__ = ["attachment_block", "user_content", "assistant_blocks", "simplify", "as_blocks",
           "tool_definition", "tool_choice", "tool_result_block", "thinking_option",
           "request_body", "tool_blocks_as_text"]

Block = dict[str, Any]
Content = str | list[Block]


class _Attachment(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def media_type(self) -> str: ...
    @property
    def data(self) -> bytes: ...
    @property
    def name(self) -> str: ...
    @property
    def title(self) -> str | None: ...
    @property
    def object_type(self) -> str | None: ...
    def text(self) -> str: ...


class _Tool(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def input_schema(self) -> dict[str, Any]: ...


class _ToolResult(Protocol):
    @property
    def tool_use_id(self) -> str: ...
    @property
    def content(self) -> Content: ...
    @property
    def is_error(self) -> bool: ...


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _attr(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


# --- the user's side ------------------------------------------------------------------

def attachment_block(attachment: _Attachment) -> Block:
    """The Anthropic-native content block for one attachment."""
    if attachment.kind == "image":
        return {"type": "image", "source": {"type": "base64", "media_type": attachment.media_type,
                                            "data": _b64(attachment.data)}}
    if attachment.kind == "pdf":
        block: Block = {"type": "document",
                        "source": {"type": "base64", "media_type": "application/pdf",
                                   "data": _b64(attachment.data)}}
    elif attachment.object_type is not None:
        return {"type": "text",
                "text": f'<attachment name="{_attr(attachment.name)}" '
                        f'kind="{_attr(attachment.object_type)}">\n'
                        f"{attachment.text()}\n</attachment>"}
    else:
        block = {"type": "document",
                 "source": {"type": "text", "media_type": "text/plain",
                            "data": attachment.text()}}
    if attachment.title:
        block["title"] = attachment.title
    return block


def user_content(prompt: str, attachments: Sequence[_Attachment], context: str = "") -> Content:
    """A prompt's user message content: plain text, or the notebook context, the
    attachments, then the text."""
    if not attachments and not context:
        return prompt
    blocks = [{"type": "text", "text": context}] if context else []
    blocks += [attachment_block(a) for a in attachments]
    if prompt:
        blocks.append({"type": "text", "text": prompt})
    return blocks


def tool_result_block(result: _ToolResult) -> Block:
    """The native `tool_result` block for the next user message."""
    return {"type": "tool_result", "tool_use_id": result.tool_use_id,
            "content": result.content, "is_error": result.is_error}


# --- the assistant's side -------------------------------------------------------------

def assistant_blocks(reply: Reply, *, include_tools: bool) -> list[Block]:
    """A reply as the assistant message sent back: signed thinking, text, tool calls."""
    blocks: list[Block] = []
    if reply.thinking and reply.thinking_signature:
        blocks.append({"type": "thinking", "thinking": reply.thinking,
                       "signature": reply.thinking_signature})
    text = reply.text.rstrip()
    if text:
        blocks.append({"type": "text", "text": text})
    if include_tools:
        for call in reply.tool_calls:
            try:
                arguments = call.input
            except ValueError:
                arguments = {}
            blocks.append({"type": "tool_use", "id": call.id, "name": call.name,
                           "input": arguments})
    return blocks


def simplify(blocks: list[Block]) -> Content:
    """A single text block as plain text, the shorter form the service also takes."""
    if len(blocks) == 1 and blocks[0]["type"] == "text":
        return str(blocks[0]["text"])
    return blocks


def as_blocks(content: Content) -> list[Block]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


# --- tool blocks in a request that defines no tools -----------------------------------

_TOOL_BLOCKS = ("tool_use", "tool_result")


def tool_blocks_as_text(messages: list[Block], cut: Callable[[str], str]) -> list[Block]:
    """`messages` with every `tool_use` and `tool_result` block written as a text block.

    Claude refuses tool blocks in a request that defines no tools, so such a request
    tells the model what was called and what came back in words: `[called tool `f`
    with {json}]`, `[tool result for `f`: "json string"]`. The result is a JSON string
    (cut by `cut` first), so no result can end the bracket early and pose as a call;
    images and documents a tool returned are named, not sent again.
    """
    if not any(isinstance(b, dict) and b.get("type") in _TOOL_BLOCKS
               for m in messages if isinstance(m["content"], list) for b in m["content"]):
        return messages
    names: dict[str, str] = {}
    converted: list[Block] = []
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            content = [_tool_block_text(b, names, cut) for b in content]
        converted.append({**message, "content": content})
    return converted


def _tool_block_text(block: Block, names: dict[str, str], cut: Callable[[str], str]) -> Block:
    kind = block.get("type")
    if kind == "tool_use":
        name = _tool_name(block.get("name"))
        names[str(block.get("id"))] = name
        arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
        return {"type": "text", "text": f"[called tool `{name}` with {arguments}]"}
    if kind != "tool_result":
        return block
    name = names.get(str(block.get("tool_use_id")), "tool")
    inner = block.get("content", "")
    text = inner if isinstance(inner, str) else "\n".join(_part_text(p) for p in inner)
    error = " (error)" if block.get("is_error") else ""
    return {"type": "text", "text": f"[tool result for `{name}`{error}: "
                                    f"{json.dumps(cut(text), ensure_ascii=False)}]"}


def _tool_name(name: object) -> str:
    """A tool name as the marker shows it: no backtick, bracket or newline can slip in."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(name or "tool"))[:128] or "tool"


def _part_text(part: object) -> str:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text" and isinstance(part, dict):
        return str(part.get("text", ""))
    return f"[{kind if kind in ('image', 'document') else 'content'}]"


# --- the request's options ------------------------------------------------------------

def tool_definition(tool: _Tool) -> Block:
    """A tool as the request's `tools` list carries it."""
    return {"name": tool.name, "description": tool.description,
            "input_schema": tool.input_schema}


_CHOICES = {"auto": "auto", "none": "none", "required": "required", "any": "required"}


def tool_choice(choice: object, names: Sequence[str]) -> str | Block | None:
    """The request's `tool_choice` value, or None when nothing should be sent.

    `choice` is a word (auto, none, required, any), a tool name or a tool; raises
    ValueError (one line) when it names no tool of `names` or there are no tools.
    """
    if choice is None:
        return None
    name = str(getattr(choice, "name", choice)).strip()
    if not names:
        raise ValueError(f"tool_choice {name!r} needs tools: pass some with --tools")
    if name.lower() in _CHOICES:
        return _CHOICES[name.lower()]
    if name not in names:
        raise ValueError(f"tool_choice {name!r} is not one of the tools ({', '.join(names)}): "
                         "use auto, none, required or one of them")
    return {"type": "function", "function": {"name": name}}


def thinking_option(thinking: str | int | None) -> Block | None:
    """The request's `thinking` value: adaptive, disabled, a token budget, or none."""
    if thinking == "adaptive":
        return {"type": "adaptive"}
    if thinking == "disabled":
        return {"type": "disabled"}
    if isinstance(thinking, int):
        return {"type": "enabled", "budget_tokens": thinking}
    return None


def request_body(messages: list[Block], *, model: str, max_tokens: int, system: str = "",
                 stop: Iterable[str] = (), tools: Sequence[_Tool] = (),
                 choice: object = None, thinking: str | int | None = None) -> Block:
    """The JSON body of one request (without `stream`, which the transport sets)."""
    body: Block = {"model": model, "max_tokens": max_tokens, "messages": messages}
    if system:
        body["system"] = system
    stops = list(stop)
    if stops:
        body["stop_sequences"] = stops
    if tools:
        body["tools"] = [tool_definition(t) for t in tools]
        chosen = tool_choice(choice, [t.name for t in tools])
        if chosen is not None:
            body["tool_choice"] = chosen
    option = thinking_option(thinking)
    if option is not None:
        body["thinking"] = option
    return body
