"""What a reply was based on: one small digest per input, and what changed since.

A replay entry records `inputs` (the prompt, each attachment, each context cell, the
system prompt, the options and the conversation before the prompt, each as a sha256
prefix with a line a person can read) and `cell`, where the request came from. When a
request is not in the replay file but an earlier entry of the same cell and prompt is,
comparing the two inputs says what changed: the reply is stale. Entries come from an
untrusted file: every field read back is checked and cleaned, never trusted. Pure: no
IPython, no data kept.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._content import Attachment
    from ._turns import Turn

__all__ = ["DIGEST_CHARS", "Provenance", "digest", "attachment_detail", "turn_inputs",
           "cell_identity", "previous_entry", "what_changed", "clean_inputs", "shown_inputs"]

DIGEST_CHARS = 16
_TEXT = 80  # characters of a description
_SHOWN_CHANGES = 4
# Options that change the answer, as (body key, label) in the order a description shows them.
_OPTION_LABELS = (("model", "model"), ("max_tokens", "max_tokens"), ("thinking", "thinking"),
                  ("tools", "tools"), ("tool_choice", "tool_choice"), ("stop_sequences", "stop"))
_NOT_OPTIONS = frozenset({"messages", "system", "stream", "metadata"})
# Execution counts inside a cell's text as sent: a cell re-run under another number is the
# same cell, so its digest leaves the numbers out (the label keeps them).
_COUNTS = re.compile(r"^(In|Out) \[\d+\]:|(shown in )\[\d+\](; attach it with --plot )\d+",
                     re.MULTILINE)
_LABEL_COUNT = re.compile(r"\[(\d+)\]")
# A summary's kind and shape in its description: `df: DataFrame 10,204 × 7`.
_SHAPE = re.compile(r"\b(DataFrame|Series|ndarray) ([\d,]+(?: × [\d,]+)*(?: values)?)")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e]+")


@dataclass
class Provenance:
    """What one request is based on (`inputs`) and where it came from (`cell`)."""

    inputs: list[dict[str, Any]] = field(default_factory=list)
    cell: dict[str, Any] = field(default_factory=dict)

    def for_step(self, step: int) -> Provenance:
        return Provenance(self.inputs, {**self.cell, "step": step})

    def extra(self) -> dict[str, Any]:
        """The fields a replay entry adds for this request."""
        return {"inputs": self.inputs, "cell": self.cell}


def digest(value: Any) -> str:
    """sha256 prefix of a string's UTF-8, or of any other value's canonical JSON."""
    if isinstance(value, str):
        raw = value.encode("utf-8", "backslashreplace")
    else:
        raw = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                         default=str).encode("utf-8", "backslashreplace")
    return hashlib.sha256(raw).hexdigest()[:DIGEST_CHARS]


def _one_line(text: Any, limit: int = _TEXT) -> str:
    """Text as one clean line: no control or direction characters, at most `limit` long."""
    line = " ".join(_UNPRINTABLE.sub(" ", str(text)).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


# ---------------------------------------------------------------- describing inputs


def attachment_detail(attachment: Attachment) -> tuple[str, str]:
    """(description, size) of an attachment: a DataFrame's shape and columns, an array's
    shape, an image's pixels, a file's name and bytes. Read from what is sent, so an
    `@name` and an `--attach name` of the same value describe it the same way."""
    from ._summaries import size_text

    shape = _SHAPE.search(attachment.description) if attachment.object_type else None
    if shape is not None:
        kind, size = shape.group(1), shape.group(2)
        columns = _columns(attachment) if kind == "DataFrame" else []
        shown = ", ".join(columns[:12]) + (", …" if len(columns) > 12 else "")
        return _one_line(f"{kind} {size}" + (f": {shown}" if shown else ""), 160), size
    if attachment.kind == "image" and attachment.width and attachment.height:
        size = f"{attachment.width}×{attachment.height} px"
        return _one_line(f"image {size}"), size
    size = size_text(len(attachment.data))
    if attachment.object_type is None:  # a file, or bytes
        return _one_line(f"{attachment.title or attachment.name}: {attachment.kind} {size}"), size
    return _one_line(attachment.description), size


def _columns(attachment: Attachment) -> list[str]:
    """Column names from a DataFrame summary's `columns (name: dtype, nulls):` lines."""
    try:
        lines = attachment.text().split("\n")
    except UnicodeDecodeError:
        return []
    start = next((n for n, line in enumerate(lines) if line.startswith("columns (")), None)
    if start is None:
        return []
    names = []
    for line in lines[start + 1:]:
        if not line.startswith("  ") or ": " not in line:
            break
        names.append(_one_line(line[2:].rsplit(": ", 1)[0], 40))
    return names


def _cell_code(text: str) -> str:
    """The first line of code of a context item (`In [N]:` then a fenced block)."""
    lines = text.split("\n")
    for line in lines[2:] if len(lines) > 2 else lines:
        if line.strip() and not line.startswith("```"):
            return line
    return ""


def _options_description(body: Mapping[str, Any]) -> str:
    parts = []
    for key, label in _OPTION_LABELS:
        value = body.get(key)
        if key == "tools":
            names = [_tool_name(t) for t in value] if isinstance(value, list) else []
            parts.append(f"tools {', '.join(names) if names else 'none'}")
        elif key == "thinking":
            parts.append(f"thinking {_thinking(value)}")
        elif value is not None:
            parts.append(f"{label} {value}")
    return " · ".join(parts)


def _thinking(value: Any) -> str:
    if isinstance(value, dict):
        budget = value.get("budget_tokens")
        return f"{budget} tokens" if budget else str(value.get("type", "on"))
    return "off" if not value else str(value)


def _tool_name(tool: Any) -> str:
    if isinstance(tool, dict):
        function = tool.get("function")
        name = tool.get("name") or (function.get("name") if isinstance(function, dict) else "")
        return str(name or "?")
    return "?"


def _system_text(system: Any) -> str:
    if isinstance(system, list):
        return " ".join(str(b.get("text", "")) if isinstance(b, dict) else str(b) for b in system)
    return "" if system is None else str(system)


def turn_inputs(turn: Turn, body: Mapping[str, Any], prior: Sequence[Any]) -> list[dict[str, Any]]:
    """The inputs of `turn`'s request `body`: digests of what the replay key hashes, with
    `prior`, the wire messages before the prompt."""
    inputs: list[dict[str, Any]] = [
        {"kind": "prompt", "name": "prompt", "digest": digest(turn.prompt),
         "description": _one_line(turn.prompt)}]
    for attachment in turn.attachments:
        description, size = attachment_detail(attachment)
        entry: dict[str, Any] = {"kind": "attachment", "name": _one_line(attachment.name, 60),
                "digest": attachment.sha256[:DIGEST_CHARS], "description": description}
        if size:
            entry["size"] = size
        inputs.append(entry)
    for raw in (turn.context or {}).get("items") or ():
        if not isinstance(raw, Mapping):
            continue
        label, text = str(raw.get("label", "")), str(raw.get("text", ""))
        item: dict[str, Any] = {"kind": "cell", "name": _one_line(label, 20),
                "digest": digest(_COUNTS.sub(_no_count, text)),
                "description": _one_line(f"cell {label}: {_cell_code(text)}")}
        count = _LABEL_COUNT.search(label)
        if count:
            item["count"] = int(count.group(1))
        inputs.append(item)
    system = body.get("system")
    inputs.append({"kind": "system", "name": "system", "digest": digest(system),
                   "description": _one_line(_system_text(system)) or "none"})
    options = {k: v for k, v in body.items() if k not in _NOT_OPTIONS}
    inputs.append({"kind": "options", "name": "options", "digest": digest(options),
                   "description": _one_line(_options_description(body), 200)})
    earlier = sum(1 for m in prior if isinstance(m, dict) and m.get("role") == "user")
    inputs.append({"kind": "history", "name": "conversation", "digest": digest(list(prior)),
                   "description": f"{earlier} earlier prompt{'s' if earlier != 1 else ''}"
                   if earlier else "no earlier prompt"})
    return inputs


def _no_count(match: re.Match[str]) -> str:
    if match.group(1):
        return f"{match.group(1)} [#]:"
    return f"{match.group(2)}[#]{match.group(3)}#"


def cell_identity(*, cell_id: str | None, label: str | None, session: str,
                  position: int) -> dict[str, Any]:
    """Where a request came from: the cell (its id or label), the session, the turn's
    place in the history and (added per request) its step of the tool loop."""
    return {"id": cell_id, "label": _one_line(label or "", 120) or None, "session": session,
            "position": position, "step": 0}


# ---------------------------------------------------------------- reading entries back


def clean_inputs(raw: Any) -> list[dict[str, Any]] | None:
    """The usable inputs of an entry read from the replay file, cleaned; None if none."""
    if not isinstance(raw, list):
        return None
    out: list[dict[str, Any]] = []
    for item in raw:
        if not isinstance(item, dict):
            continue
        kind, name, value = item.get("kind"), item.get("name"), item.get("digest")
        if not (isinstance(kind, str) and isinstance(name, str) and isinstance(value, str)):
            continue
        clean: dict[str, Any] = {"kind": _one_line(kind, 20), "name": _one_line(name, 60),
                                 "digest": _one_line(value, 64),
                                 "description": _one_line(item.get("description", ""), 200)}
        if isinstance(item.get("size"), str):
            clean["size"] = _one_line(item["size"], 40)
        if isinstance(item.get("count"), int) and not isinstance(item.get("count"), bool):
            clean["count"] = item["count"]
        out.append(clean)
    return out or None


def shown_inputs(inputs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The inputs as output metadata carries them: digests and descriptions, no data."""
    keep = ("kind", "name", "digest", "description", "size", "count")
    return [{k: item[k] for k in keep if k in item} for item in inputs]


def _prompt_digest(inputs: Iterable[Mapping[str, Any]]) -> str | None:
    return next((i["digest"] for i in inputs if i.get("kind") == "prompt"), None)


def _same_cell(old: Any, new: Mapping[str, Any]) -> bool:
    if not isinstance(old, dict) or old.get("session") != new.get("session") \
            or old.get("step") != new.get("step"):
        return False
    if isinstance(old.get("id"), str) and new.get("id"):
        return bool(old["id"] == new["id"])
    label = new.get("label")
    return old.get("position") == new.get("position") or (
        isinstance(label, str) and old.get("label") == label)


def previous_entry(entries: Iterable[Any], provenance: Provenance) -> dict[str, Any] | None:
    """The latest entry recorded for the same cell and prompt, or None (a plain miss).

    Entries without `inputs` (recorded before digests existed) never match.
    """
    prompt = _prompt_digest(provenance.inputs)
    found: dict[str, Any] | None = None
    for entry in entries:
        if not isinstance(entry, dict) or not _same_cell(entry.get("cell"), provenance.cell):
            continue
        inputs = clean_inputs(entry.get("inputs"))
        if inputs is None or _prompt_digest(inputs) != prompt:
            continue
        created = entry.get("created")
        if found is None or (isinstance(created, str)
                             and created >= str(found.get("created") or "")):
            found = entry
    return found


# ---------------------------------------------------------------- saying what changed


def _named(name: str) -> str:
    return name[1:] if name.startswith("@") else name


def _attachment_changes(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[str]:
    before = {i["name"]: i for i in old}
    after = {i["name"]: i for i in new}
    out = []
    for name, item in after.items():
        was = before.get(name)
        if was is None:
            out.append(f"{_named(name)} newly attached")
        elif was["digest"] != item["digest"]:
            old_size, new_size = was.get("size", ""), item.get("size", "")
            if old_size and new_size and old_size != new_size:
                out.append(f"{_named(name)} changed ({old_size} -> {new_size})")
            elif new_size:
                out.append(f"{_named(name)} changed (same size, {new_size})")
            else:
                out.append(f"{_named(name)} changed")
    out += [f"{_named(name)} no longer attached" for name in before if name not in after]
    return out


def _cell_changes(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[str]:
    """Cells matched by content; the rest by number, then in order (a cell re-run in the
    same kernel gets a new number)."""
    old_digests = {i["digest"] for i in old}
    new_digests = {i["digest"] for i in new}
    gone = [i for i in old if i["digest"] not in new_digests]
    came = [i for i in new if i["digest"] not in old_digests]
    out = []
    for item in came:
        same = next((i for i in gone if i["name"] == item["name"]), None) or (
            gone[0] if gone else None)
        if same is None:
            out.append(f"cell {item['name']} is new")
            continue
        gone.remove(same)
        out.append(f"cell {item['name']} changed")
    out += [f"cell {i['name']} no longer before it" for i in gone]
    if not out and [i["name"] for i in old] != [i["name"] for i in new]:
        out.append("the cells before it were renumbered")
    return out


def _option_changes(old: str, new: str) -> str:
    def parts(text: str) -> dict[str, str]:
        return {p.split(" ", 1)[0]: p for p in text.split(" · ") if p}

    before, after = parts(old), parts(new)
    diffs = [f"{before.get(k, k + ' unset')} -> {after.get(k, k + ' unset')}"
             for k in dict.fromkeys([*before, *after]) if before.get(k) != after.get(k)]
    return f"options changed ({'; '.join(diffs)})" if diffs else "options changed"


def what_changed(old_inputs: Any, new_inputs: list[dict[str, Any]]) -> list[str]:
    """Short lines naming each input that differs, e.g. `df changed (10 × 2 -> 12 × 2)`."""
    old = clean_inputs(old_inputs) or []

    def of(items: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
        return [i for i in items if i["kind"] == kind]

    out: list[str] = []
    if _prompt_digest(old) != _prompt_digest(new_inputs):
        out.append("the prompt changed")
    out += _attachment_changes(of(old, "attachment"), of(new_inputs, "attachment"))
    out += _cell_changes(of(old, "cell"), of(new_inputs, "cell"))
    for kind, what in (("system", "the system prompt changed"),
                       ("history", "the conversation before it changed")):
        was, now = of(old, kind), of(new_inputs, kind)
        if was and now and was[0]["digest"] != now[0]["digest"]:
            out.append(what)
    was, now = of(old, "options"), of(new_inputs, "options")
    if was and now and was[0]["digest"] != now[0]["digest"]:
        out.append(_option_changes(was[0]["description"], now[0]["description"]))
    if not out:
        out.append("the request changed")
    if len(out) > _SHOWN_CHANGES:
        out = [*out[: _SHOWN_CHANGES - 1], f"{len(out) - _SHOWN_CHANGES + 1} more changes"]
    return out
