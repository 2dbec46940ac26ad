"""Request validation: the body checks the service and Anthropic make before answering.

`_validate` raises `_Rejected` with the status and message the service would send.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
from typing import Any

MODEL_IDS = ("anthropic/claude-opus-4-8", "claude-opus-4-8")
MAX_REQUEST_BYTES = 32 * 1024 * 1024
MAX_IMAGE_BASE64_BYTES = 5_242_880
MAX_IMAGES = 100
MAX_IMAGE_PIXELS = 8000
MANY_IMAGES = 20  # above this many images a request, each side is limited to 2000 px
MANY_IMAGES_PIXELS = 2000
MAX_OUTPUT_TOKENS = 128_000
MIN_THINKING_BUDGET = 1024
# Claude's own wording, passed on by the service, for tool blocks in a request without tools.
NO_TOOLS_DEFINED = "Requests which include tool_use or tool_result blocks must define tools."

_IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
_NATIVE_ONLY = {"image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking"}
_OPENAI_ONLY = {"image_url", "file", "input_audio"}


class _Rejected(Exception):
    """A request the service would refuse, with the status and message it would use."""

    def __init__(self, status: int, message: str, error_type: str = "invalid_request_error"):
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type


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
    if not body.get("tools") and _has_tool_blocks(messages):
        raise _Rejected(400, NO_TOOLS_DEFINED)


def _has_tool_blocks(messages: list[Any]) -> bool:
    """Whether the messages carry tool calls or results: native blocks, or the OpenAI
    shape's `tool_calls` and `tool` messages, which the service turns into those blocks."""
    for message in messages:
        if message.get("role") == "tool" or message.get("tool_calls"):
            return True
        content = message.get("content")
        if isinstance(content, list) and any(
                isinstance(b, dict) and b.get("type") in ("tool_use", "tool_result")
                for b in content):
            return True
    return False


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
