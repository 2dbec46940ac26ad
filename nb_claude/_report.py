"""A methods appendix for a session: per reply, the model, date, options, tokens, cost,
request hash and inputs (described, never their data); totals at the end.

`report_json` gathers the facts once; `report_markdown` only formats them. No key and
no prompt text appear unless `prompts=True` (and the key never: everything is redacted).
Model ids, hashes and descriptions come from replies and replay files, so they are
untrusted: the Markdown escapes every one of them.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._config import redact
from ._markdown import code_span, escape_text

if TYPE_CHECKING:
    from ._turns import Transcript, Turn

__all__ = ["report_json", "report_markdown", "report_bundle", "write_report"]

FORMAT = "nb_claude.report"
VERSION = 1
_HEX = re.compile(r"[0-9a-f]{16,64}")
_STATES = ("live", "replayed", "stale")


def _date(created: float) -> str | None:
    if not created or created <= 0:
        return None
    try:
        return datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return None


def _state(turn: Turn) -> str:
    state = getattr(turn, "state", None)
    if state in _STATES:
        return str(state)
    replayed = bool(turn.steps) and all(s.reply.replayed for s in turn.steps)
    return "replayed" if replayed else "live"


# Declared inputs whose description is the prompt's own text, or a cell's code.
_PRIVATE = {"prompt": "the prompt", "system": "the system prompt"}


def _declared(item: dict[str, Any], prompts: bool) -> dict[str, Any]:
    kind = str(item.get("kind", "input"))
    name = str(item.get("name", ""))
    description = str(item.get("description", ""))
    if not prompts and kind in _PRIVATE:
        description = _PRIVATE[kind]
    elif not prompts and kind == "cell":
        description = f"cell {name}"  # the label, not the cell's code
    digest = item.get("digest")
    return {"kind": kind, "name": name, "description": description,
            "digest": digest if isinstance(digest, str) else None}


def _inputs(turn: Turn, prompts: bool) -> list[dict[str, Any]]:
    """What went with the prompt, described: the turn's declared inputs when it has them,
    else its attachments and context cells."""
    declared = getattr(turn, "inputs", None)
    if isinstance(declared, list) and declared:
        return [_declared(item, prompts) for item in declared if isinstance(item, dict)]
    found: list[dict[str, Any]] = []
    for attachment in turn.attachments:
        found.append({"kind": "attachment", "name": attachment.name,
                      "description": " ".join(attachment.description.split()),
                      "digest": attachment.sha256})
    context = turn.context or {}
    for item in context.get("items") or ():
        if isinstance(item, dict):
            label = str(item.get("label", ""))
            found.append({"kind": "cell", "name": label, "description": f"cell {label}",
                          "digest": None})
    for name in context.get("missing") or ():
        found.append({"kind": "missing", "name": f"@{name}", "description": "not defined",
                      "digest": None})
    return found


def _reply(number: int, turn: Turn, prompts: bool) -> dict[str, Any]:
    options = turn.options or {}
    reply = turn.reply
    usage = turn.usage
    entry: dict[str, Any] = {
        "number": number,
        "model": reply.model or options.get("model") or None,
        "date": _date(reply.created),
        "state": _state(turn),
        "source": turn.source,
        "cell_id": turn.cell_id,
        "options": {"max_tokens": options.get("max_tokens"),
                    "thinking": options.get("thinking"),
                    "tools_offered": list(options.get("tools") or []),
                    "tools_called": [c.name for s in turn.steps for c in s.reply.tool_calls]},
        "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                  "cost_usd": usage.cost_usd, "estimated": usage.estimated,
                  "offline": turn.offline},
        "steps": len(turn.steps),
        "finish_reason": reply.finish_reason,
        "request_sha256": [s.reply.request_sha256 for s in turn.steps],
        "inputs": _inputs(turn, prompts),
    }
    changed = getattr(turn, "changed", None)
    if entry["state"] == "stale" and isinstance(changed, list):
        entry["changed"] = [str(c) for c in changed]
    if prompts:
        entry["prompt"] = turn.prompt
        if options.get("system"):
            entry["system"] = options["system"]
    return entry


def report_json(session: Transcript, *, prompts: bool = False) -> dict[str, Any]:
    """The report as data: {"format", "version", "session", "replies", "totals"}."""
    replies = [_reply(n, turn, prompts) for n, turn in enumerate(session.history, 1)]
    costs = [r["usage"]["cost_usd"] for r in replies if r["usage"]["cost_usd"] is not None]
    dates = sorted(r["date"] for r in replies if r["date"])
    totals = {
        "replies": len(replies),
        "requests": sum(r["steps"] for r in replies),
        "models": sorted({r["model"] for r in replies if r["model"]}),
        "first": dates[0] if dates else None,
        "last": dates[-1] if dates else None,
        "states": {s: sum(r["state"] == s for r in replies) for s in _STATES},
        "input_tokens": sum(r["usage"]["input_tokens"] for r in replies),
        "output_tokens": sum(r["usage"]["output_tokens"] for r in replies),
        "cost_usd": sum(costs) if costs else None,
        "estimated": any(r["usage"]["estimated"] for r in replies),
        "offline": any(r["usage"]["offline"] for r in replies),
    }
    document = {"format": FORMAT, "version": VERSION, "session": session.name,
                "replies": replies, "totals": totals}
    # One pass over the whole document: a key quoted anywhere (a description) goes.
    return json.loads(redact(json.dumps(document, ensure_ascii=False)))


# -- Markdown ------------------------------------------------------------------


def _e(value: object) -> str:
    return escape_text(" ".join(str(value).split()))


def _hash(value: object) -> str:
    text = str(value or "")
    return code_span(text) if _HEX.fullmatch(text) else _e(text or "none")


def _cost(usage: dict[str, Any]) -> str:
    cost = usage.get("cost_usd")
    if cost is None:
        return "cost not reported"
    if usage.get("offline"):
        return f"${cost:.4f} (made up by the offline stand-in: nothing was spent)"
    return f"~${cost:.4f} (estimate)" if usage.get("estimated") else f"${cost:.4f}"


def _thinking(value: object) -> str:
    if value in (None, False, "", 0, "off"):
        return "off"
    return f"budget {_e(value)} tokens" if isinstance(value, int) else _e(value)


def _names(names: list[Any]) -> str:
    return ", ".join(code_span(str(n)) for n in names) if names else "none"


def _input_line(item: dict[str, Any]) -> str:
    digest = item.get("digest")
    tail = f" (sha256 {_hash(digest)})" if isinstance(digest, str) and digest else ""
    name = f"{code_span(str(item.get('name', '')))}: " if item.get("name") else ""
    return f"  - {_e(item.get('kind', 'input'))} {name}{_e(item.get('description', ''))}{tail}"


def _quoted(text: str) -> list[str]:
    return [f"  > {escape_text(line)}" if line.strip() else "  >" for line in text.splitlines()]


def _reply_markdown(entry: dict[str, Any]) -> list[str]:
    opts, usage = entry["options"], entry["usage"]
    where = f" · cell {code_span(entry['cell_id'])}" if entry.get("cell_id") else ""
    lines = [f"### Reply {entry['number']}: {_e(entry['model'] or 'unknown model')} · "
             f"{_e(entry['date'] or 'date unknown')} · {_e(entry['state'])}{where}", "",
             f"- Options: max tokens {_e(opts['max_tokens'])}; thinking "
             f"{_thinking(opts['thinking'])}; tools offered {_names(opts['tools_offered'])}; "
             f"tools called {_names(opts['tools_called'])}",
             f"- Tokens: {usage['input_tokens']:,} in, {usage['output_tokens']:,} out; "
             f"{_cost(usage)}; {entry['steps']} request(s)",
             f"- Request sha256: {', '.join(_hash(h) for h in entry['request_sha256']) or 'none'}"]
    if entry.get("changed"):
        lines.append(f"- Stale: {_e('; '.join(entry['changed']))}")
    if entry["inputs"]:
        lines.append("- Inputs:")
        lines.extend(_input_line(item) for item in entry["inputs"])
    else:
        lines.append("- Inputs: the prompt only")
    if "prompt" in entry:
        lines.append("- Prompt:")
        lines.extend(_quoted(entry["prompt"]))
    if entry.get("system"):
        lines.append("- System prompt:")
        lines.extend(_quoted(entry["system"]))
    return lines + [""]


def report_markdown(session: Transcript, *, prompts: bool = False) -> str:
    """The report as Markdown: a summary sentence, one section per reply, totals."""
    data = report_json(session, prompts=prompts)
    totals = data["totals"]
    states = totals["states"]
    models = _names(totals["models"])
    span = (f" between {_e(totals['first'])} and {_e(totals['last'])}"
            if totals["first"] else "")
    lines = [f"## Methods: AI assistance (session {code_span(data['session'])})", "",
             f"This notebook used {totals['replies']} replies from {models}{span}, through an "
             f"OpenAI-compatible endpoint with nb_claude; {states['replayed']} were replayed "
             f"from the replay file, {states['live']} asked live"
             + (f", {states['stale']} stale" if states["stale"] else "") + ".", ""]
    for entry in data["replies"]:
        lines.extend(_reply_markdown(entry))
    cost = _cost({"cost_usd": totals["cost_usd"], "estimated": totals["estimated"],
                  "offline": totals["offline"]})
    lines += ["### Totals", "",
              "| replies | requests | input tokens | output tokens | cost |",
              "|---:|---:|---:|---:|---|",
              f"| {totals['replies']} | {totals['requests']} | {totals['input_tokens']:,} | "
              f"{totals['output_tokens']:,} | {cost} |"]
    return redact("\n".join(lines)) + "\n"


def report_bundle(session: Transcript, *, as_json: bool = False,
                  prompts: bool = False) -> dict[str, Any]:
    """A display bundle: the Markdown (readable as text too), or the JSON."""
    if as_json:
        data = report_json(session, prompts=prompts)
        return {"application/json": data, "text/plain": json.dumps(data, indent=1)}
    markdown = report_markdown(session, prompts=prompts)
    return {"text/markdown": markdown, "text/plain": markdown}


def write_report(session: Transcript, path: str | os.PathLike[str], *, as_json: bool = False,
                 prompts: bool = False) -> Path:
    """Write the report to `path`: JSON when asked or when the name ends in .json."""
    from ._errors import ConfigError
    from ._export import _atomic_write

    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"cannot write the report to {target}: it is a directory; "
                          "give a file name")
    if as_json or target.suffix.lower() == ".json":
        text = json.dumps(report_json(session, prompts=prompts), indent=1,
                          ensure_ascii=False) + "\n"
    else:
        text = report_markdown(session, prompts=prompts)
    _atomic_write(target, text)
    return target
