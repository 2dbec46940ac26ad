"""A stand-in for the AI/ML API chat-completions endpoint, served on 127.0.0.1.

Tests, notebooks and the offline demo talk to it instead of the real service.
It speaks the service's dialect with every quirk of the recorded streams,
validates requests the way the service and Anthropic do, and can be scripted
to fail in each way a client has to survive. Standard library only.

    with StandInServer() as server:
        server.reply("Hi!").fault(429, headers={"retry-after": "1"})
        ...  # POST to server.url + "/chat/completions"

Run `python -m nb_claude.testing [--port N]` to serve it from a shell.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hmac
import itertools
import json
import math
import random
import re
import socket
import string
import struct
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

__all__ = [
    "StandInServer",
    "RecordedRequest",
    "MODEL_IDS",
    "MAX_REQUEST_BYTES",
    "MAX_IMAGE_BASE64_BYTES",
    "MAX_IMAGES",
    "MAX_OUTPUT_TOKENS",
    "DEFAULT_REPLY_LABEL",
    "FAULT_TEXT",
    "WEB_PAGE",
    "DEMO_KEY",
    "main",
]

MODEL_IDS = ("anthropic/claude-opus-4-8", "claude-opus-4-8")
MAX_REQUEST_BYTES = 32 * 1024 * 1024
MAX_IMAGE_BASE64_BYTES = 5_242_880
MAX_IMAGES = 100
MAX_IMAGE_PIXELS = 8000
MANY_IMAGES = 20  # above this many images a request, each side is limited to 2000 px
MANY_IMAGES_PIXELS = 2000
MAX_OUTPUT_TOKENS = 128_000
MIN_THINKING_BUDGET = 1024
CREDITS_PER_USD = 2_000_000  # the ratio seen in every recorded meta.usage
DEFAULT_REPLY_LABEL = "*Offline stand-in reply (no model was called).*"
DEFAULT_THINKING = ("The stand-in does not reason; this text only shows where the model's "
                    "thinking would appear.")
WEB_PAGE = ("<!DOCTYPE html>\n<html><head><title>Sign in</title></head>"
            "<body><h1>Welcome</h1><p>This is a web page, not an API.</p></body></html>\n")
# The key the offline demo and Binder give the client: it cannot be mistaken for a word
# in a conversation, so redacting it never blanks out prose.
DEMO_KEY = "nbc-offline-demo-0000000000000000"
FAULT_TEXT = ("This reply arrives in many small pieces, so that a scripted fault can land "
              "between any two of them without the reply being over yet.")
CHAT_PATH = "/v1/chat/completions"

_IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
_NATIVE_ONLY = {"image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking"}
_OPENAI_ONLY = {"image_url", "file", "input_audio"}
_SPLIT_PAUSE = 0.0005  # between split writes, so a client really sees separate reads
_ALNUM = string.ascii_letters + string.digits

_ERROR_TYPES = {
    400: ("invalid_request_error", "Bad request"),
    401: ("authentication_error", "Invalid API key"),
    403: ("permission_error", "Insufficient credits: top up your balance to continue"),
    404: ("not_found_error", "Not found"),
    408: ("timeout_error", "Request timeout"),
    409: ("conflict_error", "Conflict"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes"),
    429: ("rate_limit_error", "Too Many Requests"),
    500: ("api_error", "Internal server error"),
    502: ("api_error", "Bad gateway"),
    503: ("api_error", "Service unavailable"),
    504: ("timeout_error", "Generation timeout"),
    529: ("overloaded_error", "Overloaded"),
}


@dataclass
class RecordedRequest:
    """One request as the stand-in received it; header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any = None
    raw: bytes = field(default=b"", repr=False)

    def __repr__(self) -> str:
        # The key stays readable in `headers` for tests, but never in a repr or a log.
        headers = {k: ("<redacted>" if k in ("authorization", "x-api-key") else v)
                   for k, v in self.headers.items()}
        return (f"RecordedRequest(method={self.method!r}, path={self.path!r}, "
                f"headers={headers!r}, body={_short(self.body)})")


@dataclass
class _Script:
    """One scripted answer: a reply (maybe with a fault injected mid-stream) or a fault."""

    kind: str = "reply"  # "reply" | "fault" | "drop" | "raw"
    text: str = ""
    thinking: str | None = None
    thinking_field: str = "reasoning_content"
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    fragmented: bool = True
    finish_reason: str | None = None
    usage: tuple[int, int] | None = None
    usd_spent: float | None = 0.0012
    chunks: list[str] | None = None
    delay: float = 0.0
    first_byte_delay: float = 0.0
    split: bool | None = None
    line_ending: str | None = None
    done: bool = False
    keepalive: bool | None = None
    model: str | None = None
    inject: str | None = None  # "drop" | "stall" | "malformed" | "unknown" | "error" | "truncate"
    after: int = 0
    seconds: float = 0.0
    style: str = "data"
    message: str = ""
    status: int = 0
    envelope: str = "service"
    upstream_status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""  # a raw answer's body
    priced: bool = False  # cost computed from the token counts instead of usd_spent


class _Rejected(Exception):
    """A request the service would refuse, with the status and message it would use."""

    def __init__(self, status: int, message: str, error_type: str = "invalid_request_error"):
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type


# --------------------------------------------------------------------------- validation


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _validate(body: Any, model_ids: tuple[str, ...]) -> None:
    """Raise _Rejected for anything the service or Anthropic would refuse."""
    if not isinstance(body, dict):
        raise _Rejected(400, "The request body must be a JSON object")
    if "model" not in body:
        raise _Rejected(400, "model: Field required")
    if body["model"] not in model_ids:
        raise _Rejected(404, f"model not found: {_short(body['model'])}", "not_found_error")
    if "messages" not in body:
        raise _Rejected(400, "messages: Field required")
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        raise _Rejected(400, "messages: must be a non-empty list of messages")
    max_tokens = body.get("max_tokens", MAX_OUTPUT_TOKENS)
    if (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
            or not 1 <= max_tokens <= MAX_OUTPUT_TOKENS):
        raise _Rejected(400, f"max_tokens: must be an integer from 1 to {MAX_OUTPUT_TOKENS}, "
                             f"got {_short(max_tokens)}")
    _check_thinking(body.get("thinking"), max_tokens)
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list)
                              or not all(isinstance(s, str) and s for s in stops)):
        raise _Rejected(400, "stop_sequences: must be a list of non-empty strings")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise _Rejected(400, "stream: must be a boolean")
    system = body.get("system")
    if system is not None and not isinstance(system, str) and not (
            isinstance(system, list)
            and all(isinstance(b, dict) and b.get("type") == "text" for b in system)):
        raise _Rejected(400, "system: must be a string")
    _check_tools(body.get("tools"), body.get("tool_choice"))
    _check_messages(messages)


def _check_thinking(thinking: Any, max_tokens: int) -> None:
    if thinking is None:
        return
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind in ("adaptive", "disabled"):
        return
    if kind != "enabled":
        raise _Rejected(400, "thinking.type: Input should be 'enabled', 'adaptive' or 'disabled'")
    budget = thinking.get("budget_tokens")
    if isinstance(budget, bool) or not isinstance(budget, int):
        raise _Rejected(400, "thinking.enabled.budget_tokens: Field required (an integer)")
    if budget < MIN_THINKING_BUDGET:
        raise _Rejected(400, f"thinking.enabled.budget_tokens: Input should be greater than or "
                             f"equal to {MIN_THINKING_BUDGET}")
    if budget >= max_tokens:
        raise _Rejected(400, "`max_tokens` must be greater than `thinking.budget_tokens`. "
                             "Please consult our documentation at "
                             "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
                             "#max-tokens-and-context-window-size")


def _check_tools(tools: Any, choice: Any) -> None:
    names: set[str] = set()
    if tools is not None:
        if not isinstance(tools, list):
            raise _Rejected(400, "tools: must be a list")
        for i, tool in enumerate(tools):
            spec = tool.get("function") if isinstance(tool, dict) and tool.get(
                "type") == "function" else tool
            schema_key = "parameters" if spec is not tool else "input_schema"
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) \
                    or not re.fullmatch(r"[a-zA-Z0-9_-]{1,128}", spec["name"]):
                raise _Rejected(400, f"tools.{i}.name: String should match pattern "
                                     f"'^[a-zA-Z0-9_-]{{1,128}}$'")
            schema = spec.get(schema_key)
            if schema_key == "input_schema" and not isinstance(schema, dict):
                raise _Rejected(400, f"tools.{i}.input_schema: Field required")
            if isinstance(schema, dict) and schema.get("type", "object") != "object":
                raise _Rejected(400, f"tools.{i}.input_schema.type: Input should be 'object'")
            if spec["name"] in names:
                raise _Rejected(400, f"tools: Tool names must be unique: {spec['name']}")
            names.add(spec["name"])
    if choice is None or choice in ("none", "auto", "required", "any"):
        return
    if isinstance(choice, dict):
        kind = choice.get("type")
        name = (choice.get("function") or {}).get("name") if kind == "function" else \
            choice.get("name") if kind == "tool" else None
        if kind in ("auto", "any", "none"):
            return
        if isinstance(name, str):
            if name not in names:
                raise _Rejected(400, f"tool_choice: no tool named {_short(name)} in tools")
            return
    raise _Rejected(400, "tool_choice: Input should be 'none', 'auto', 'required' or "
                         "{\"type\": \"function\", \"function\": {\"name\": ...}}")


def _check_messages(messages: list[Any]) -> None:
    openai_at = native_at = ""
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _Rejected(400, f"messages.{i}: Input should be an object")
        if not openai_at and (message.get("role") in ("system", "tool", "developer")
                              or "tool_calls" in message or "tool_call_id" in message):
            openai_at = f"messages.{i}"
        content = message.get("content")
        for j, block in enumerate(content if isinstance(content, list) else []):
            kind = block.get("type") if isinstance(block, dict) else None
            if kind in _OPENAI_ONLY and not openai_at:
                openai_at = f"messages.{i}.content.{j}"
            elif kind in _NATIVE_ONLY and not native_at:
                native_at = f"messages.{i}.content.{j}"
    if openai_at and native_at:
        raise _Rejected(400, f"messages: OpenAI-style content ({openai_at}) cannot be mixed with "
                             f"Anthropic content blocks ({native_at}); use one shape throughout")
    images: list[tuple[str, str, str]] = []
    if openai_at:
        _check_openai(messages, images)
    else:
        _check_native(messages, images)
    _check_images(images)


def _empty(content: Any) -> bool:
    return content == [] or (isinstance(content, str) and not content.strip())


def _check_native(messages: list[dict[str, Any]], images: list[tuple[str, str, str]]) -> None:
    pending: dict[str, int] = {}  # tool_use ids of the previous assistant message
    pending_at = 0
    for i, message in enumerate(messages):
        role, content = message.get("role"), message.get("content")
        last = i == len(messages) - 1
        if role not in ("user", "assistant"):
            raise _Rejected(400, f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if i == 0 and role != "user":
            raise _Rejected(400, "messages.0.role: the first message must use the \"user\" role")
        if not isinstance(content, (str, list)):
            raise _Rejected(400, f"messages.{i}.content: Input should be a string or a list of "
                                 f"content blocks")
        if _empty(content) and not (last and role == "assistant"):
            raise _Rejected(400, f"messages.{i}: all messages must have non-empty content except "
                                 f"for the optional final assistant message")
        final_text = content if isinstance(content, str) else next(
            (b.get("text") for b in reversed(content) if isinstance(b, dict)), None)
        if last and role == "assistant" and isinstance(final_text, str) \
                and final_text != final_text.rstrip():
            raise _Rejected(400, "messages: final assistant content cannot end with trailing "
                                 "whitespace")
        blocks = content if isinstance(content, list) else []
        uses: dict[str, int] = {}
        answered: set[str] = set()
        seen_other = False
        for j, block in enumerate(blocks):
            where = f"messages.{i}.content.{j}"
            kind = _check_block(block, role, where, images)
            if kind == "tool_use":
                uses[block["id"]] = j
            elif kind == "tool_result":
                if seen_other:
                    raise _Rejected(400, f"{where}: `tool_result` blocks must come first in the "
                                         f"content, before any other block")
                if block["tool_use_id"] not in pending:
                    raise _Rejected(400, f"{where}: unexpected `tool_use_id` found in "
                                         f"`tool_result` blocks: {block['tool_use_id']}. Each "
                                         f"`tool_result` block must have a corresponding "
                                         f"`tool_use` block in the previous message.")
                answered.add(block["tool_use_id"])
            else:
                seen_other = True
        missing = [tid for tid in pending if tid not in answered]
        if missing:
            raise _Rejected(400, f"messages.{pending_at}: `tool_use` ids were found without "
                                 f"`tool_result` blocks immediately after: {', '.join(missing)}. "
                                 f"Each `tool_use` block must have a corresponding `tool_result` "
                                 f"block in the next message.")
        pending, pending_at = uses, i
    if pending:
        raise _Rejected(400, f"messages.{pending_at}: `tool_use` ids were found without "
                             f"`tool_result` blocks immediately after: {', '.join(pending)}. "
                             f"Each `tool_use` block must have a corresponding `tool_result` "
                             f"block in the next message.")


def _check_block(block: Any, role: str, where: str, images: list[tuple[str, str, str]],
                 allowed: tuple[str, ...] | None = None) -> str:
    """Validate one Anthropic content block and return its type."""
    kind = block.get("type") if isinstance(block, dict) else None
    known = allowed or ("text", "image", "document", "tool_use", "tool_result", "thinking",
                        "redacted_thinking")
    if kind not in known:
        raise _Rejected(400, f"{where}.type: Input tag {_short(kind)} does not match any of the "
                             f"expected tags: {', '.join(repr(k) for k in known)}")
    assert isinstance(block, dict)
    if kind == "text":
        if not isinstance(block.get("text"), str) or not block["text"]:
            raise _Rejected(400, f"{where}: text content blocks must be non-empty")
        if not block["text"].strip():
            raise _Rejected(400, f"{where}: text content blocks must contain non-whitespace text")
    elif kind == "image":
        source = block.get("source")
        if not isinstance(source, dict):
            raise _Rejected(400, f"{where}.source: Field required")
        if source.get("type") == "base64":
            if source.get("media_type") not in _IMAGE_TYPES:
                raise _Rejected(400, f"{where}.source.base64.media_type: Input should be "
                                     f"'image/jpeg', 'image/png', 'image/gif' or 'image/webp'")
            if not isinstance(source.get("data"), str):
                raise _Rejected(400, f"{where}.source.base64.data: Field required")
            images.append((where, source["media_type"], source["data"]))
        elif not (source.get("type") == "url" and isinstance(source.get("url"), str)):
            raise _Rejected(400, f"{where}.source.type: Input should be 'base64' or 'url'")
    elif kind == "document":
        _check_document(block, where)
    elif kind == "tool_use":
        if role != "assistant":
            raise _Rejected(400, f"{where}: `tool_use` blocks can only be in `assistant` messages")
        if not isinstance(block.get("id"), str) or not block["id"]:
            raise _Rejected(400, f"{where}.id: Field required")
        if not isinstance(block.get("name"), str) or not block["name"]:
            raise _Rejected(400, f"{where}.name: Field required")
        if not isinstance(block.get("input"), dict):
            raise _Rejected(400, f"{where}.input: Input should be a valid dictionary")
    elif kind == "tool_result":
        if role != "user":
            raise _Rejected(400, f"{where}: `tool_result` blocks can only be in `user` messages")
        if not isinstance(block.get("tool_use_id"), str) or not block["tool_use_id"]:
            raise _Rejected(400, f"{where}.tool_use_id: Field required")
        inner = block.get("content", "")
        if isinstance(inner, list):
            for k, part in enumerate(inner):
                _check_block(part, role, f"{where}.content.{k}", images,
                             ("text", "image", "document"))
        elif not isinstance(inner, str):
            raise _Rejected(400, f"{where}.content: Input should be a string or a list of blocks")
        if "is_error" in block and not isinstance(block["is_error"], bool):
            raise _Rejected(400, f"{where}.is_error: Input should be a valid boolean")
    elif kind == "thinking":
        if role != "assistant" or not isinstance(block.get("thinking"), str) \
                or not isinstance(block.get("signature"), str):
            raise _Rejected(400, f"{where}: `thinking` blocks need `thinking` and `signature` "
                                 f"and can only be in `assistant` messages")
    elif kind == "redacted_thinking" and not isinstance(block.get("data"), str):
        raise _Rejected(400, f"{where}.data: Field required")
    return kind


def _check_document(block: dict[str, Any], where: str) -> None:
    source: dict[str, Any] = block["source"] if isinstance(block.get("source"), dict) else {}
    kind = source.get("type")
    if kind == "base64":
        if source.get("media_type") != "application/pdf":
            raise _Rejected(400, f"{where}.source.base64.media_type: Input should be "
                                 f"'application/pdf'")
        _check_pdf(source.get("data"), f"{where}.source.base64.data")
    elif kind == "text":
        if source.get("media_type") != "text/plain" or not isinstance(source.get("data"), str):
            raise _Rejected(400, f"{where}.source.text: needs media_type 'text/plain' and a "
                                 f"string `data`")
    elif kind == "content":
        if not isinstance(source.get("content"), (str, list)):
            raise _Rejected(400, f"{where}.source.content.content: Field required")
    elif not (kind == "url" and isinstance(source.get("url"), str)):
        raise _Rejected(400, f"{where}.source.type: Input should be 'base64', 'text', "
                             f"'content' or 'url'")


def _decode(data: Any, where: str) -> bytes:
    if not isinstance(data, str):
        raise _Rejected(400, f"{where}: Field required")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _Rejected(400, f"{where}: the data is not valid base64") from None


def _check_pdf(data: Any, where: str) -> None:
    raw = _decode(data, where)
    if not raw.lstrip()[:5] == b"%PDF-":
        raise _Rejected(400, f"{where}: The PDF specified was not valid.")
    if re.search(rb"/Encrypt\s", raw[-4096:]) or re.search(rb"trailer[^>]*/Encrypt", raw):
        raise _Rejected(400, f"{where}: The PDF specified is password-protected.")


def _check_openai(messages: list[dict[str, Any]], images: list[tuple[str, str, str]]) -> None:
    call_ids: set[str] = set()
    for i, message in enumerate(messages):
        role, content = message.get("role"), message.get("content")
        if role not in ("system", "developer", "user", "assistant", "tool"):
            raise _Rejected(400, f"messages.{i}.role: Input should be 'system', 'user', "
                                 f"'assistant' or 'tool'")
        if role == "assistant":
            for k, call in enumerate(message.get("tool_calls") or []):
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(function, dict) or not isinstance(call.get("id"), str) \
                        or not isinstance(function.get("name"), str) \
                        or not isinstance(function.get("arguments"), str):
                    raise _Rejected(400, f"messages.{i}.tool_calls.{k}: needs id, "
                                         f"function.name and function.arguments (a JSON string)")
                call_ids.add(call["id"])
            if content is None and message.get("tool_calls"):
                continue
        if role == "tool" and message.get("tool_call_id") not in call_ids:
            raise _Rejected(400, f"messages.{i}.tool_call_id: no earlier assistant tool call "
                                 f"has this id")
        if not isinstance(content, (str, list)) or (_empty(content) and role != "assistant"):
            raise _Rejected(400, f"messages.{i}.content: must be a non-empty string or list")
        for j, part in enumerate(content if isinstance(content, list) else []):
            where = f"messages.{i}.content.{j}"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str) and part["text"]:
                continue
            if kind == "image_url":
                url = (part.get("image_url") or {}).get("url")
                match = re.match(r"data:([^;,]+);base64,", url) if isinstance(url, str) else None
                if match:
                    if match.group(1) not in _IMAGE_TYPES:
                        raise _Rejected(400, f"{where}.image_url: image media type must be "
                                             f"image/jpeg, image/png, image/gif or image/webp")
                    images.append((where, match.group(1), match.string[match.end():]))
                    continue
                if isinstance(url, str) and url.startswith(("http://", "https://")):
                    continue
                raise _Rejected(400, f"{where}.image_url.url: must be a data URL or an http URL")
            if kind == "file":
                data = (part.get("file") or {}).get("file_data")
                match = re.match(r"data:application/pdf;base64,", data) \
                    if isinstance(data, str) else None
                if not match:
                    raise _Rejected(400, f"{where}.file.file_data: must be a "
                                         f"data:application/pdf;base64 URL")
                _check_pdf(match.string[match.end():], f"{where}.file.file_data")
                continue
            raise _Rejected(400, f"{where}: unsupported or empty content part {_short(kind)}")


def _check_images(images: list[tuple[str, str, str]]) -> None:
    if len(images) > MAX_IMAGES:
        raise _Rejected(400, f"messages: A maximum of {MAX_IMAGES} images may be provided in one "
                             f"request, got {len(images)}")
    limit = MANY_IMAGES_PIXELS if len(images) > MANY_IMAGES else MAX_IMAGE_PIXELS
    for where, media_type, data in images:
        if len(data) > MAX_IMAGE_BASE64_BYTES:
            raise _Rejected(400, f"{where}.source.base64: image exceeds 5 MB maximum: "
                                 f"{len(data)} bytes > {MAX_IMAGE_BASE64_BYTES} bytes")
        sniffed = _image_size(_decode(data, f"{where}.source.base64.data"))
        if sniffed is None:
            raise _Rejected(400, f"{where}.source.base64.data: Could not process image")
        actual, width, height = sniffed
        if actual != media_type:
            raise _Rejected(400, f"{where}.source.base64.data: Image does not match the provided "
                                 f"media type {media_type}")
        if max(width, height) > limit:
            many = f" when more than {MANY_IMAGES} images are sent" if limit < MAX_IMAGE_PIXELS \
                else ""
            raise _Rejected(400, f"{where}.source.base64.data: At least one of the image "
                                 f"dimensions exceed max allowed size{many}: {limit} pixels")


def _image_size(raw: bytes) -> tuple[str, int, int] | None:
    """(media type, width, height) read from the image header, or None if not an image."""
    if raw.startswith(b"\x89PNG\r\n\x1a\n") and len(raw) >= 24:
        width, height = struct.unpack(">II", raw[16:24])
        return "image/png", width, height
    if raw[:6] in (b"GIF87a", b"GIF89a") and len(raw) >= 10:
        width, height = struct.unpack("<HH", raw[6:10])
        return "image/gif", width, height
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP" and len(raw) >= 30:
        chunk = raw[12:16]
        if chunk == b"VP8 ":
            width, height = struct.unpack("<HH", raw[26:30])
            return "image/webp", width & 0x3FFF, height & 0x3FFF
        if chunk == b"VP8L":
            bits = int.from_bytes(raw[21:25], "little")
            return "image/webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8X":
            return ("image/webp", int.from_bytes(raw[24:27], "little") + 1,
                    int.from_bytes(raw[27:30], "little") + 1)
        return None
    if raw[:2] == b"\xff\xd8":
        i = 2
        while i + 9 <= len(raw):
            if raw[i] != 0xFF:
                i += 1
                continue
            marker = raw[i + 1]
            if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD8:
                i += 1 if marker == 0xFF else 2
                continue
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height, width = struct.unpack(">HH", raw[i + 5:i + 9])
                return "image/jpeg", width, height
            i += 2 + struct.unpack(">H", raw[i + 2:i + 4])[0]
    return None


# --------------------------------------------------------------------------- default reply


def _size(data: str) -> str:
    n = len(data) * 3 // 4 - data[-2:].count("=")
    return f"{n} bytes" if n < 1024 else f"{round(n / 1024)} KB"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _describe_content(content: Any) -> str:
    """One clause saying what a message carries, without quoting it."""
    if isinstance(content, str):
        return f"{len(content)} characters of text"
    chars, images, documents, results = 0, [], [], []
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        source: dict[str, Any] = block["source"] if isinstance(block.get("source"), dict) else {}
        if kind == "text":
            chars += len(block.get("text", ""))
        elif kind == "image":
            data = source.get("data", "")
            images.append(f"{source.get('media_type', 'url')}, {_size(data)}" if data else "url")
        elif kind == "image_url":
            match = re.match(r"data:([^;,]+);base64,(.*)", block["image_url"]["url"], re.S)
            images.append(f"{match.group(1)}, {_size(match.group(2))}" if match else "url")
        elif kind == "document":
            data = source.get("data") or ""
            title = f", \"{block['title']}\"" if isinstance(block.get("title"), str) else ""
            size = _size(data) if source.get("type") == "base64" else f"{len(data)} characters"
            documents.append(f"{source.get('media_type', source.get('type'))}, {size}{title}")
        elif kind == "file":
            data = block["file"]["file_data"]
            documents.append(f"application/pdf, {_size(data[data.find(',') + 1:])}")
        elif kind == "tool_result":
            results.append(block.get("tool_use_id", "?") + (" (error)" if block.get("is_error")
                                                            else ""))
    parts = [f"{chars} characters of text"]
    if images:
        parts.append(f"{_plural(len(images), 'image')} ({'; '.join(images)})")
    if documents:
        parts.append(f"{_plural(len(documents), 'document')} ({'; '.join(documents)})")
    if results:
        parts.append(f"{_plural(len(results), 'tool result')} ({', '.join(results)})")
    return ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]


def _default_reply(body: dict[str, Any]) -> tuple[str, str | None, str]:
    """The deterministic echo answer: (text, thinking, finish reason)."""
    messages = body["messages"]
    roles = [m.get("role", "?") for m in messages]
    last = next((m for m in reversed(messages) if m.get("role") in ("user", "tool")), messages[-1])
    # _validate has checked that every tool has a string name.
    tools = [cast(str, t.get("name") or (t.get("function") or {}).get("name"))
             for t in body.get("tools") or []]
    system = isinstance(body.get("system"), (str, list)) or "system" in roles
    clauses = [
        f"I received {_plural(len(messages), 'message')} ({', '.join(roles)}); "
        f"the last {last.get('role')} message has {_describe_content(last.get('content'))}",
        f"system prompt: {'yes' if system else 'no'}",
        f"tools: {', '.join(tools) if tools else 'none'}",
    ]
    thinking_cfg = body.get("thinking") or {}
    thinking = None
    if thinking_cfg.get("type") in ("enabled", "adaptive"):
        budget = thinking_cfg.get("budget_tokens")
        clauses.append(f"thinking: {thinking_cfg['type']}"
                       + (f" (budget {budget} tokens)" if budget else ""))
        thinking = DEFAULT_THINKING
    stops = body.get("stop_sequences") or []
    if stops:
        clauses.append(f"stop sequences: {len(stops)}")  # not quoted: they would stop the echo
    clauses.append(f"max_tokens: {body.get('max_tokens', MAX_OUTPUT_TOKENS)}")
    text = f"{DEFAULT_REPLY_LABEL} " + "; ".join(clauses) + "."
    finish = "stop"
    for stop in stops:
        if stop in text:
            text, finish = text[:text.index(stop)], "stop_sequence"
    room = body.get("max_tokens", MAX_OUTPUT_TOKENS) * 4 - len(thinking or "")
    if len(text) > room:
        text, finish = text[:max(room, 0)], "max_tokens"
    return text, thinking, finish


def _prompt_tokens(value: Any) -> int:
    """A rough token count: 4 characters a token, about 1600 for each image or file."""
    if isinstance(value, str):
        return 1600 if len(value) > 20_000 else math.ceil(len(value) / 4)
    if isinstance(value, dict):
        return sum(_prompt_tokens(v) for v in value.values())
    if isinstance(value, list):
        return sum(_prompt_tokens(v) for v in value)
    return 0


# --------------------------------------------------------------------------- responses


def _pieces(text: str) -> list[str]:
    """Word-ish pieces, as a model streams them."""
    return re.findall(r"\S+\s*|\s+", text)


def _fragments(text: str, rng: random.Random, quirks: bool) -> list[str]:
    out, i = [], 0
    while i < len(text):
        step = rng.randint(3, 12) if quirks else 8
        out.append(text[i:i + step])
        i += step
    return out or [""]


def _cuts(data: bytes, ends: list[int], rng: random.Random) -> list[int]:
    """Offsets where one run of SSE bytes is split into separate writes.

    Every run with such places is cut inside some UTF-8 characters and between
    some \\r\\n pairs; some event boundaries are not cut, so that one read can
    hold several events.
    """
    cuts: set[int] = set()
    start = 0
    for end in ends:
        for _ in range(rng.choice((0, 1, 1, 2))):
            if end - start > 1:
                cuts.add(rng.randrange(start + 1, end))
        if rng.random() < 0.75:
            cuts.add(end)
        start = end
    for pattern in (rb"[\x80-\xbf]", rb"(?<=\r)\n"):
        tricky = [m.start() for m in re.finditer(pattern, data)]
        if tricky:
            cuts.update(rng.sample(tricky, k=max(1, len(tricky) // 8)))
    return sorted(c for c in cuts if 0 < c < len(data))


class _Stop(Exception):
    """The response ends here: the client went away or the server is stopping."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nb_claude-standin/1"
    sys_version = ""
    server: _HTTPServer
    rng: random.Random
    _started: bool = False  # whether a status line went out for the current request

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.standin._track(self.connection, True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.standin._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: tests and notebooks should not see access logs."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    do_PUT = do_DELETE = do_PATCH = do_GET

    # -- request -----------------------------------------------------------

    def _read_body(self) -> tuple[bytes, int]:
        """The body (empty if over the limit, then drained) and its size."""
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            parts, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                total += size
                part = self.rfile.read(size)
                if total <= MAX_REQUEST_BYTES:
                    parts.append(part)
                self.rfile.readline()
            return (b"".join(parts) if total <= MAX_REQUEST_BYTES else b""), total
        length = int(self.headers.get("content-length") or 0)
        if length <= MAX_REQUEST_BYTES:
            return self.rfile.read(length), length
        left = length
        while left > 0:
            got = self.rfile.read(min(left, 1 << 20))
            if not got:
                break
            left -= len(got)
        return b"", length

    def _serve(self) -> None:
        owner = self.server.standin
        raw, size = self._read_body()
        try:
            body = json.loads(raw) if raw else None
            bad_json = None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            body, bad_json = None, exc
        owner._record(RecordedRequest(self.command, self.path,
                                      {k.lower(): v for k, v in self.headers.items()}, body, raw))
        self.rng = owner._next_rng()
        self._started = False
        try:
            self._answer(owner, body, size, bad_json)
        except _Stop:
            self._abort()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # a stand-in bug must reach the client as an error, not a hang
            if self._started:
                self._abort()
                raise
            self._error(500, f"stand-in server error: {type(exc).__name__}: {exc}", "api_error")
            raise

    def _answer(self, owner: StandInServer, body: Any, size: int, bad_json: Any) -> None:
        path = self.path.split("?")[0].rstrip("/")
        if not owner._authorised(self.headers.get("authorization", "")):
            missing = not self.headers.get("authorization", "").strip()
            return self._error(401, "Missing Authorization header: send \"Authorization: Bearer "
                                    "<key>\"" if missing else "Invalid API key",
                               "authentication_error")
        if self.command == "GET" and path == "/v1/models":
            data = [{"id": m, "object": "model", "type": "chat-completion"} for m in owner.model_ids]
            return self._json(200, {"object": "list", "data": data})
        if path != CHAT_PATH or self.command != "POST":
            return self._error(404, f"Cannot {self.command} {self.path}", "not_found_error")
        if size > MAX_REQUEST_BYTES:
            return self._error(413, f"Request exceeds the maximum allowed number of bytes: "
                                    f"{size} > {MAX_REQUEST_BYTES}", "request_too_large")
        if bad_json is not None or body is None:
            return self._error(400, f"The request body is not valid JSON: {bad_json or 'empty'}")
        try:
            _validate(body, owner.model_ids)
        except _Rejected as exc:
            return self._error(exc.status, exc.message, exc.error_type)
        script = owner._take()
        if script is None:
            text, thinking, finish = _default_reply(body)
            script = _Script(text=text, thinking=thinking, finish_reason=finish, priced=True)
        if script.kind == "drop":
            raise _Stop
        if script.kind == "fault":
            return self._fault(script)
        if script.kind == "raw":
            return self._raw(script)
        if body.get("stream") is True:
            self._stream(owner, body, script)
        else:
            self._complete(body, script)

    # -- plain responses ---------------------------------------------------

    def send_response(self, code: int, message: str | None = None) -> None:
        self._started = True
        super().send_response(code, message)

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None,
              raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json; charset=utf-8")
        self.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, error_type: str = "invalid_request_error",
               *, envelope: str = "service", upstream: int | None = None,
               headers: dict[str, str] | None = None) -> None:
        if envelope == "openai":
            payload: dict[str, Any] = {"error": {"message": message, "type": error_type}}
        else:
            inner = json.dumps({"type": "error", "error": {"type": error_type, "message": message}},
                               ensure_ascii=False, separators=(",", ":"))
            payload = {
                "requestId": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
                "statusCode": status,
                "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds")
                .replace("+00:00", "Z"),
                "path": self.path.split("?")[0],
                "message": f"{upstream or status} {inner}",
            }
        self._json(status, payload, headers)

    def _fault(self, script: _Script) -> None:
        code = script.upstream_status or script.status
        error_type, default = _ERROR_TYPES.get(code, ("api_error", "Error"))
        self._error(script.status, script.message or default, error_type,
                    envelope=script.envelope, upstream=script.upstream_status,
                    headers=script.headers)

    def _raw(self, script: _Script) -> None:
        self.send_response(script.status)
        for name, value in script.headers.items():
            self.send_header(name, value)
        if script.status >= 200 and script.status not in (204, 304):
            self.send_header("content-length", str(len(script.body)))
            self.end_headers()
            self.wfile.write(script.body)
        else:
            self.end_headers()

    def _abort(self) -> None:
        """Close the connection at once, mid-message if need be."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _wait(self, seconds: float) -> None:
        if seconds > 0 and self.server.standin._stopping.wait(seconds):
            raise _Stop

    # -- replies -----------------------------------------------------------

    def _plan(self, body: dict[str, Any], script: _Script) -> dict[str, Any]:
        """Everything both reply shapes need, decided once (ids, usage, cost)."""
        rng = self.rng
        calls = []
        for call in script.tool_calls:
            arguments = call.get("arguments", {})
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments, ensure_ascii=False)
            calls.append({"id": call.get("id") or "call_" + "".join(rng.choices(_ALNUM, k=24)),
                          "name": call["name"], "arguments": arguments})
        out_chars = len(script.text) + len(script.thinking or "") + sum(
            len(c["arguments"]) + len(c["name"]) for c in calls)
        prompt, completion = script.usage or (max(1, _prompt_tokens(body)),
                                              max(1, math.ceil(out_chars / 4)))
        estimate = round(prompt * 5e-6 + completion * 25e-6, 6)
        usd = estimate if script.priced else script.usd_spent
        model = script.model or str(body["model"]).removeprefix("anthropic/")
        return {
            "id": "msg_01" + "".join(rng.choices(_ALNUM, k=22)),
            "created": int(time.time()),
            "model": model,
            "calls": calls,
            "finish": script.finish_reason or ("tool_calls" if calls else "stop"),
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion},
            "meta": {"usage": {"credits_used": round((estimate if usd is None else usd)
                                                     * CREDITS_PER_USD),
                               **({"usd_spent": usd} if usd is not None else {})}},
            "inference_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "signature": "sig_" + "".join(rng.choices(_ALNUM, k=32)),
        }

    def _complete(self, body: dict[str, Any], script: _Script) -> None:
        """A non-streaming chat.completion, with the same faults mapped onto one body."""
        self._wait(script.first_byte_delay)
        plan = self._plan(body, script)
        message: dict[str, Any] = {"role": "assistant", "content": script.text}
        thinking = script.thinking or ""
        if script.thinking_field == "reasoning_details":
            message["reasoning_details"] = [{"type": "reasoning.text", "text": thinking,
                                             "signature": plan["signature"]}] if thinking else []
        else:
            message[script.thinking_field] = thinking
        if plan["calls"]:
            message["content"] = script.text or None
            message["tool_calls"] = [
                {"id": c["id"], "type": "function",
                 "function": {"name": c["name"], "arguments": c["arguments"]}}
                for c in plan["calls"]]
        finish: str | None = plan["finish"]
        if script.inject == "truncate":
            finish = None
        elif script.inject == "error" and script.style == "finish":
            finish = "error"
        payload: dict[str, Any] = {
            "id": plan["id"], "object": "chat.completion", "model": plan["model"],
            "created": plan["created"],
            "choices": [{"index": 0, "message": message, "finish_reason": finish,
                         "logprobs": None}],
            "usage": plan["usage"], "meta": plan["meta"]}
        if script.inject == "unknown":
            payload["x_notice"] = {"kind": "queue_position", "value": 0}
        if script.inject == "error" and script.style != "finish":
            payload = {"error": {"message": script.message, "type": "overloaded_error"}}
        headers = {"x-inference-id": plan["inference_id"],
                   "x-aimlapi-credits-used": str(plan["meta"]["usage"]["credits_used"])}
        if "usd_spent" in plan["meta"]["usage"]:
            headers["x-aimlapi-usd-spent"] = str(plan["meta"]["usage"]["usd_spent"])
        data = json.dumps(payload, ensure_ascii=False).encode()
        self._wait(script.delay * len(script.chunks or _pieces(script.text)))
        if script.inject == "stall":
            self._wait(script.seconds)
        if script.inject == "malformed":
            data = data[:len(data) // 2]
        if script.inject == "drop":
            self.send_response(200)
            self.send_header("content-type", "application/json; charset=utf-8")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[:len(data) // 2])
            raise _Stop
        self._json(200, None, headers, raw=data)

    def _events(self, script: _Script, plan: dict[str, Any], eol: bytes, keepalive: bool,
                quirks: bool) -> list[tuple[str, Any]]:
        """The response as steps: ("data", bytes), ("sleep", s), ("drop", None), ("end", None)."""
        rng = self.rng
        steps: list[tuple[str, Any]] = []
        count = 0
        fired = False
        base = {"id": "", "choices": [], "created": plan["created"], "model": plan["model"],
                "object": "chat.completion.chunk", "usage": None}

        def emit(event: dict[str, Any] | bytes, name: bytes = b"") -> None:
            if keepalive and rng.random() < 0.12:
                steps.append(("data", b": keepalive" + eol + eol))
            data = event if isinstance(event, bytes) else b"data: " + json.dumps(
                event, ensure_ascii=False, separators=(",", ":")).encode()
            steps.append(("data", (b"event: " + name + eol if name else b"") + data + eol + eol))

        def delta(**fields: Any) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": {
                **fields, "role": "assistant", "refusal": None}}]}

        def injected(force: bool = False) -> bool:
            """Apply the scripted fault if it is due; True when the stream ends here."""
            nonlocal fired
            if script.inject is None or fired or (count != script.after and not force):
                return False
            fired = True
            kind = script.inject
            if kind == "drop":
                steps.append(("drop", None))
                return True
            if kind == "stall":
                steps.append(("sleep", script.seconds))
            elif kind == "malformed":
                emit(b'data: {not json, "choices":[{"delta":{"content":"')
            elif kind == "unknown":
                emit({"id": "", "object": "service.notice",
                      "notice": {"kind": "queue_position", "value": 0}})
            elif kind == "error":
                if script.style == "event":
                    emit({"type": "error", "error": {"type": "overloaded_error",
                                                     "message": script.message}}, b"error")
                elif script.style == "finish":
                    emit({**base, "choices": [{"index": 0, "delta": {
                        "content": "", "role": "assistant", "refusal": None},
                        "finish_reason": "error"}],
                        "error": {"message": script.message, "type": "overloaded_error"}})
                else:
                    emit({"error": {"message": script.message, "type": "overloaded_error"}})
                steps.append(("end", None))
                return True
            elif kind == "truncate":
                steps.append(("end", None))
                return True
            return False

        def content(event: dict[str, Any]) -> bool:
            nonlocal count
            emit(event)
            count += 1
            if script.delay:
                steps.append(("sleep", script.delay))
            return injected()

        if keepalive:
            steps.append(("data", b": keepalive" + eol + eol))
        if injected():
            return steps
        emit({**delta(content=""), "id": plan["id"]})
        if script.thinking:
            pieces = _pieces(script.thinking)
            for k, piece in enumerate(pieces):
                if script.thinking_field == "reasoning_details":
                    item: dict[str, Any] = {"type": "reasoning.text", "text": piece}
                    if k == len(pieces) - 1:
                        item["signature"] = plan["signature"]
                    event = delta(content="", reasoning_details=[item])
                else:
                    event = delta(content="", **{script.thinking_field: piece})
                if content(event):
                    return steps
        for piece in script.chunks if script.chunks is not None else _pieces(script.text):
            if content(delta(content=piece)):
                return steps
        for i, call in enumerate(plan["calls"]):
            head = {"index": i, "id": call["id"], "type": "function",
                    "function": {"name": call["name"], "arguments": ""}}
            fragments = _fragments(call["arguments"], rng, quirks) if script.fragmented else []
            if not script.fragmented:
                head["function"]["arguments"] = call["arguments"]
            if content(delta(content=None, tool_calls=[head])):
                return steps
            for k, fragment in enumerate(fragments):
                part: dict[str, Any] = {"index": i, "function": {"arguments": fragment}}
                if quirks and k == 1:  # a repeated id and name must not be appended
                    part = {**head, "function": {"name": call["name"], "arguments": fragment}}
                elif quirks and k == 2:
                    part = {"index": i, "id": "", "function": {"name": "", "arguments": fragment}}
                if content(delta(content=None, tool_calls=[part])):
                    return steps
        if injected(force=True):  # asked for a fault after more chunks than there were
            return steps
        finish = plan["finish"]
        emit({**base, "choices": [{"index": 0, "delta": {"content": "", "role": "assistant",
                                                         "refusal": None},
                                   "finish_reason": finish}], "usage": plan["usage"]})
        emit({**base, "choices": [{"index": 0, "finish_reason": finish}], "meta": plan["meta"]})
        if script.done:
            emit(b"data: [DONE]")
        steps.append(("end", None))
        return steps

    def _stream(self, owner: StandInServer, body: dict[str, Any], script: _Script) -> None:
        """An SSE stream shaped like the service's, with its quirks when they are on."""
        rng = self.rng
        quirks = owner.quirks
        eol = (script.line_ending or (rng.choice(("\n", "\r\n", "\r")) if quirks else "\n")
               ).encode()
        split = quirks if script.split is None else script.split
        keepalive = quirks if script.keepalive is None else script.keepalive
        plan = self._plan(body, script)
        steps = self._events(script, plan, eol, keepalive, quirks)
        self._wait(script.first_byte_delay)
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("x-inference-id", plan["inference_id"])
        self.end_headers()
        run: list[bytes] = []

        def flush() -> None:
            data = b"".join(run)
            if not data:
                return
            ends = list(itertools.accumulate(len(r) for r in run))
            offsets = [0, *(_cuts(data, ends, rng) if split else ends), len(data)]
            for a, b in zip(offsets, offsets[1:], strict=False):
                if b > a:
                    self.wfile.write(b"%x\r\n%s\r\n" % (b - a, data[a:b]))
                    if split:
                        time.sleep(_SPLIT_PAUSE)
            run.clear()

        for kind, value in steps:
            if kind == "data":
                run.append(value)
                continue
            flush()
            if kind == "sleep":
                self._wait(value)
            elif kind == "drop":
                raise _Stop
            elif kind == "end":
                self.wfile.write(b"0\r\n\r\n")
        flush()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a stalled or kept-alive handler must not hold up stop()
    standin: StandInServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Client disconnects are normal here; anything else goes to stderr once."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


# --------------------------------------------------------------------------- public server


class StandInServer:
    """A scriptable stand-in for the AI/ML API on 127.0.0.1.

    Each scripting call queues one answer for the next POST /chat/completions
    that passes validation (invalid or unauthorised requests are refused
    without using the queue); with the queue empty it answers with a
    deterministic, clearly labelled echo of the request. Unknown models get
    404 (`not_found_error`), like the service's own model check.
    """

    def __init__(self, *, seed: int = 0, quirks: bool = True, api_key: str | None = None,
                 model_ids: tuple[str, ...] = MODEL_IDS, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.seed = seed
        self.quirks = quirks
        self.model_ids = tuple(model_ids)
        self.host = host
        self.port = port
        self.url = ""
        self.requests: list[RecordedRequest] = []
        self._api_key = api_key
        self._queue: deque[_Script] = deque()
        self._lock = threading.Lock()
        self._count = 0
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return (f"StandInServer(url={self.url!r}, pending={self.pending()}, "
                f"requests={len(self.requests)})")

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> StandInServer:
        """Listen on a free port (or the one given) and serve in a daemon thread."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _HTTPServer((self.host, self.port), _Handler)
        httpd.standin = self
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self.url = f"http://{self.host}:{self.port}/v1"
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"standin-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut every open connection, stalled ones included."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def __enter__(self) -> StandInServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget scripted answers and recorded requests."""
        with self._lock:
            self._queue.clear()
            self.requests.clear()

    def pending(self) -> int:
        """How many scripted answers are still queued."""
        with self._lock:
            return len(self._queue)

    # -- scripting ---------------------------------------------------------

    def _push(self, script: _Script) -> StandInServer:
        with self._lock:
            self._queue.append(script)
        return self

    def reply(self, text: str = "Hello from the stand-in.", *, thinking: str | None = None,
              thinking_field: str = "reasoning_content",
              tool_calls: list[dict[str, Any]] | None = None, fragmented: bool = True,
              finish_reason: str | None = None, usage: tuple[int, int] | None = None,
              usd_spent: float | None = 0.0012, chunks: list[str] | None = None,
              delay: float = 0.0, first_byte_delay: float = 0.0, split: bool | None = None,
              line_ending: str | None = None, done: bool = False,
              keepalive: bool | None = None, model: str | None = None) -> StandInServer:
        """Queue a successful reply; streamed or not, as the request asks."""
        if thinking_field not in ("reasoning_content", "reasoning", "reasoning_details"):
            raise ValueError("thinking_field must be reasoning_content, reasoning or "
                             "reasoning_details")
        if line_ending not in (None, "\n", "\r\n", "\r"):
            raise ValueError("line_ending must be '\\n', '\\r\\n' or '\\r'")
        for call in tool_calls or []:
            if not isinstance(call.get("name"), str):
                raise ValueError("each tool call needs a name")
        return self._push(_Script(
            text=text if chunks is None else "".join(chunks), thinking=thinking,
            thinking_field=thinking_field, tool_calls=list(tool_calls or []),
            fragmented=fragmented, finish_reason=finish_reason, usage=usage, usd_spent=usd_spent,
            chunks=chunks, delay=delay, first_byte_delay=first_byte_delay, split=split,
            line_ending=line_ending, done=done, keepalive=keepalive, model=model))

    def fault(self, status: int, message: str | None = None, *, envelope: str = "service",
              upstream_status: int | None = None,
              headers: dict[str, str] | None = None) -> StandInServer:
        """Queue an HTTP error in the service's envelope (or OpenAI's)."""
        if envelope not in ("service", "openai"):
            raise ValueError("envelope must be 'service' or 'openai'")
        return self._push(_Script(kind="fault", status=status, message=message or "",
                                  envelope=envelope, upstream_status=upstream_status,
                                  headers=dict(headers or {})))

    def raw(self, status: int, body: str | bytes = b"", *,
            headers: dict[str, str] | None = None) -> StandInServer:
        """Queue an answer that is not the API's, as a wrong base URL gives: any status,
        headers and body (content-length is added unless the status has no body)."""
        data = body.encode() if isinstance(body, str) else bytes(body)
        return self._push(_Script(kind="raw", status=status, body=data,
                                  headers=dict(headers or {})))

    def redirect(self, location: str, status: int = 307) -> StandInServer:
        """Queue a redirect, as a base URL without /v1 or with http:// for https:// gets."""
        return self.raw(status, headers={"location": location})

    def web_page(self, status: int = 200) -> StandInServer:
        """Queue an HTML page with status 200, as a base URL pointing at a website gets."""
        return self.raw(status, WEB_PAGE, headers={"content-type": "text/html; charset=utf-8"})

    def drop(self, after_chunks: int | None = None) -> StandInServer:
        """Queue a dropped connection: before any byte, or after N content chunks."""
        if after_chunks is None:
            return self._push(_Script(kind="drop"))
        return self._push(_Script(text=FAULT_TEXT, inject="drop", after=after_chunks))

    def stall(self, seconds: float, after_chunks: int = 1, text: str = FAULT_TEXT
              ) -> StandInServer:
        """Queue a reply that goes silent for `seconds` after N chunks, then carries on."""
        return self._push(_Script(text=text, inject="stall", after=after_chunks, seconds=seconds))

    def malformed(self, after_chunks: int = 1, text: str = FAULT_TEXT) -> StandInServer:
        """Queue a reply with one event that is not JSON after N chunks."""
        return self._push(_Script(text=text, inject="malformed", after=after_chunks))

    def unknown_chunk(self, after_chunks: int = 1, text: str = FAULT_TEXT) -> StandInServer:
        """Queue a reply with one valid JSON event of an unknown shape after N chunks."""
        return self._push(_Script(text=text, inject="unknown", after=after_chunks))

    def stream_error(self, style: str = "data", after_chunks: int = 1,
                     message: str = "Overloaded") -> StandInServer:
        """Queue a reply that reports an error mid-stream and then ends."""
        if style not in ("data", "event", "finish"):
            raise ValueError("style must be 'data', 'event' or 'finish'")
        return self._push(_Script(text=FAULT_TEXT, inject="error", after=after_chunks,
                                  style=style, message=message))

    def truncate(self, after_chunks: int = 2, text: str = FAULT_TEXT) -> StandInServer:
        """Queue a reply whose stream ends cleanly after N chunks, with no finish chunk."""
        return self._push(_Script(text=text, inject="truncate", after=after_chunks))

    # -- used by the handler -----------------------------------------------

    def _take(self) -> _Script | None:
        with self._lock:
            return self._queue.popleft() if self._queue else None

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _next_rng(self) -> random.Random:
        with self._lock:
            self._count += 1
            return random.Random(self.seed * 1_000_003 + self._count)

    def _track(self, conn: socket.socket, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _authorised(self, header: str) -> bool:
        match = re.fullmatch(r"\s*[Bb]earer\s+(\S+)\s*", header)
        if not match:
            return False
        if self._api_key is None:
            return True
        return hmac.compare_digest(match.group(1).encode(), self._api_key.encode())


def main(argv: list[str] | None = None) -> int:
    """Serve the stand-in until interrupted.

    The first line of stdout is the base URL alone (scripts read it); then the two
    settings to paste into the environment of Jupyter or IPython.
    """
    parser = argparse.ArgumentParser(
        prog="python -m nb_claude.testing",
        description="Serve an offline stand-in for the AI/ML API chat-completions endpoint.")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: any free)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the stream quirks")
    parser.add_argument("--no-quirks", action="store_true",
                        help="plain streams: no split writes, keepalives or odd line endings")
    args = parser.parse_args(argv)
    server = StandInServer(seed=args.seed, quirks=not args.no_quirks, host=args.host,
                           port=args.port).start()
    sys.stdout.write(f"{server.url}\n"
                     "# Offline stand-in serving; Ctrl-C stops it. Set these where Jupyter or "
                     f"IPython starts (any key works, e.g. offline or {DEMO_KEY}):\n"
                     f"NB_CLAUDE_BASE_URL={server.url}\n"
                     "AIMLAPI_KEY=offline\n")
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
