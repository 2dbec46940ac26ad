"""Reply synthesis: what the stand-in answers, decided before any byte is written.

A `_Script` is one scripted answer (text, thinking, tool calls, or a fault); with none
queued, `_default_reply` describes the request instead. `_plan` fixes the ids, usage and
cost that the JSON and SSE writers share.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import string
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

from ._fix_guess import fix_guess
from ._validate import MAX_OUTPUT_TOKENS

CREDITS_PER_USD = 2_000_000  # the ratio seen in every recorded meta.usage
DEFAULT_REPLY_LABEL = "*Offline stand-in reply (no model was called).*"
DEFAULT_THINKING = ("The stand-in does not reason; this text only shows where the model's "
                    "thinking would appear.")
FAULT_TEXT = ("This reply arrives in many small pieces, so that a scripted fault can land "
              "between any two of them without the reply being over yet.")
_ALNUM = string.ascii_letters + string.digits


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
    """The deterministic echo answer: (text, thinking, finish reason).

    A request that forces a tool is answered with a call of it instead: no text, and
    `_plan` makes the call's arguments from the tool's input schema.
    """
    if _forced_tool(body) is not None:
        return "", None, "tool_calls"
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
    guess = fix_guess(body)  # a fix request it can answer from the request alone
    if guess is not None:
        text, thinking = f"{DEFAULT_REPLY_LABEL} {guess}", None
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


# --- a forced tool's call -----------------------------------------------------------------

def _tool_name(tool: dict[str, Any]) -> str:
    return str(tool.get("name") or (tool.get("function") or {}).get("name") or "")


def _forced_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    """The tool the request forces: a named `tool_choice`, or the first tool for
    "required"/"any". None without one, or with thinking on (Claude then forces nothing)."""
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    thinking = body.get("thinking")
    if not tools or (isinstance(thinking, dict)
                     and thinking.get("type") in ("enabled", "adaptive")):
        return None
    choice = body.get("tool_choice")
    if choice in ("required", "any") or (isinstance(choice, dict)
                                         and choice.get("type") == "any"):
        return tools[0]
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") or choice.get("name")
        return next((t for t in tools if _tool_name(t) == name), None)
    return None


def forced_call(body: dict[str, Any]) -> dict[str, Any] | None:
    """The stand-in's call of the forced tool: arguments that fit its input schema, made
    deterministically from the schema and the request (an enum's member by a hash of it)."""
    tool = _forced_tool(body)
    if tool is None:
        return None
    schema = tool.get("input_schema") or (tool.get("function") or {}).get("parameters") or {}
    digest = hashlib.sha256(json.dumps(body.get("messages"), sort_keys=True,
                                       default=str).encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    arguments = example_value(schema, rng, schema) if isinstance(schema, dict) else {}
    return {"name": _tool_name(tool), "arguments": arguments if isinstance(arguments, dict)
            else {}}


_WORDS = ("clear", "short", "answer", "made", "offline", "by", "the", "stand-in", "for",
          "this", "request", "value")
_FORMATS = {"date": "2024-05-17", "date-time": "2024-05-17T12:30:00+00:00", "time": "12:30:00",
            "email": "someone@example.com", "uri": "https://example.com/item",
            "uuid": "12345678-1234-5678-1234-567812345678"}


def _resolve(schema: Any, root: dict[str, Any]) -> dict[str, Any]:
    """`schema` with a local `$ref` and `allOf` folded in."""
    if not isinstance(schema, dict):
        return {}
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        schema = {**_resolve(target, root), **{k: v for k, v in schema.items() if k != "$ref"}}
    for part in schema.get("allOf") or ():
        schema = {**_resolve(part, root), **{k: v for k, v in schema.items() if k != "allOf"}}
    return schema


def _number(schema: dict[str, Any], rng: random.Random, integer: bool) -> int | float:
    low = schema.get("minimum", schema.get("exclusiveMinimum", -math.inf))
    high = schema.get("maximum", schema.get("exclusiveMaximum", math.inf))
    if "exclusiveMinimum" in schema and "minimum" not in schema:
        low += 1 if integer else 1e-6
    if "exclusiveMaximum" in schema and "maximum" not in schema:
        high -= 1 if integer else 1e-6
    low = low if math.isfinite(low) else min(0, high - 100 if math.isfinite(high) else 0)
    high = high if math.isfinite(high) else max(low + 100, 100)
    if integer:
        return rng.randint(math.ceil(low), max(math.ceil(low), math.floor(high)))
    value = round(rng.uniform(low, high), 2)
    return value if low <= value <= high else low


def _text(schema: dict[str, Any], rng: random.Random) -> str:
    if schema.get("format") in _FORMATS:
        return _FORMATS[schema["format"]]
    text = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 5)))
    low, high = schema.get("minLength", 0), schema.get("maxLength", len(text))
    while len(text) < low:
        text += " " + rng.choice(_WORDS)
    return text[:max(high, low)]


def example_value(schema: Any, rng: random.Random, root: dict[str, Any], depth: int = 0
                  ) -> Any:
    """A value that fits `schema`: enums, text, numbers, booleans, arrays, nested objects."""
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return rng.choice(schema["enum"])
    options = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(options, list) and options:
        filled = [o for o in options if _resolve(o, root).get("type") != "null"] or options
        return example_value(rng.choice(filled), rng, root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema \
            else "string"
    if kind == "object":
        props = schema.get("properties") or {}
        required = set(schema.get("required") or ())
        value = {key: example_value(sub, rng, root, depth + 1) for key, sub in props.items()
                 if key in required or depth < 4}
        extra = schema.get("additionalProperties")
        if not props and isinstance(extra, dict) and depth < 4:
            value["example"] = example_value(extra, rng, root, depth + 1)
        return value
    if kind == "array":
        prefix = schema.get("prefixItems") or []
        low = max(schema.get("minItems", 0), len(prefix))
        high = min(schema.get("maxItems", low + 3), low + 3)
        items = [example_value(p, rng, root, depth + 1) for p in prefix]
        for _ in range(40):
            if len(items) >= (rng.randint(low, max(low, high)) if depth < 4 else low):
                break
            item = example_value(schema.get("items", {}), rng, root, depth + 1)
            if not schema.get("uniqueItems") or item not in items:
                items.append(item)
        return items
    if kind in ("integer", "number"):
        return _number(schema, rng, kind == "integer")
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return _text(schema, rng)


def _plan(body: dict[str, Any], script: _Script, rng: random.Random) -> dict[str, Any]:
    """Everything both reply shapes need, decided once (ids, usage, cost)."""
    calls = []
    if not script.tool_calls and script.priced and not script.text \
            and script.finish_reason == "tool_calls":
        forced = forced_call(body)  # the default reply to a forced tool (`_default_reply`)
        if forced is not None:
            script = _Script(**{**vars(script), "tool_calls": [forced]})
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
