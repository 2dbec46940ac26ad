"""One request of a turn: found in the replay file or sent, streamed, and recorded.

`exchange` fills a step's reply; the session's tool loop calls it once per step.
Pure of front ends: progress goes to an `update(force)` callback.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._config import Settings
from ._errors import ConfigError, ReplayMissError, ReplayStaleError, StreamError
from ._stream import Reply, accumulate, reply_from_response

if TYPE_CHECKING:
    from ._client import CancelToken, Client
    from ._inputs import Provenance
    from ._options import Options
    from ._tools import ToolResult
    from ._turns import Step, Turn

__all__ = ["STAND_IN_HEADER", "Found", "Record", "exchange", "record_step", "join_note"]

# The stand-in server (nb_claude.testing) marks its responses with this header: its
# costs are made up, so no money was spent.
STAND_IN_HEADER = "x-nb-claude-stand-in"


@dataclass
class Record:
    """Where a fresh reply is to be recorded: the file, its request key and body, and the
    entry's extra fields (its inputs and cell)."""

    file: Any
    key: str
    body: dict[str, Any]
    extra: dict[str, Any] | None = None


@dataclass
class Found:
    """What `exchange` learned: recorded tool results, or a record still to write."""

    results: list[ToolResult] | None = None
    record: Record | None = None


def exchange(body: dict[str, Any], opts: Options, step: Step, *, cfg: Settings,
             client: Callable[[], Client], token: CancelToken,
             update: Callable[[bool], None], label: str | None = None,
             tools_run: bool = True, turn: Turn,
             provenance: Provenance | None = None) -> Found:
    """Fill `step.reply` from the replay file or the service.

    A reply that asks for tools is recorded by the tool loop once its results are
    known; `tools_run` says whether its tool calls would run in this turn.
    `update(force)` is called as the reply grows. `provenance` (the request's inputs
    and cell) is recorded with the reply, and on a miss names what made the cell's
    recorded reply stale: `step.changed` (auto) or `ReplayStaleError` (strict).
    """
    from ._replay import ReplayError, request_key

    key = request_key(body)
    replay_file = _replay_file(cfg.replay_path) if opts.replay != "off" else None
    where = f" for {label}" if label else ""
    if replay_file is not None and opts.replay in ("auto", "replay"):
        try:
            entry = _get_entry(replay_file, key)
        except ReplayError as exc:
            raise ConfigError(str(exc)) from None
        if entry is not None:
            recorded = Reply.from_dict(entry["reply"])
            results = _recorded_results(entry, recorded)
            if recorded.tool_calls and tools_run and results is None \
                    and opts.replay_tools == "replay":
                # Never run a recorded call silently: ask live (auto) or stop (strict).
                if opts.replay == "replay":
                    raise ReplayMissError(
                        f"the recorded reply{where} in {replay_file.path.name} asks for tools "
                        "but has no recorded tool results (strict replay mode): record it "
                        "again with --replay record, or pass --replay-tools run to run them")
            else:
                step.reply = recorded
                step.offline = entry.get("offline") is True
                recorded.replayed = True
                recorded.request_sha256 = key
                update(True)
                return Found(results=results)
        else:
            step.changed = _stale(replay_file, provenance)
            if opts.replay == "replay" and step.changed:
                raise ReplayStaleError(
                    f"the recorded reply{where} in {replay_file.path.name} is stale (strict "
                    f"replay mode): {'; '.join(step.changed)}; run it with a key and "
                    "--replay auto to ask again", changed=step.changed)
            if opts.replay == "replay":
                raise ReplayMissError(
                    f"no recorded reply{where} in {replay_file.path.name} (strict replay "
                    f"mode): {_what_changed(turn)} changed; run it with a key and --replay "
                    "auto to record it")
    reply = step.reply
    reply.request_sha256 = key
    sender = client()
    started = time.monotonic()

    def on_response(response: Any) -> None:
        reply.inference_id = response.headers.get("x-inference-id", "")
        step.offline = bool(response.headers.get(STAND_IN_HEADER))

    try:
        if opts.stream:
            limit = opts.max_reply_chars
            events = sender.stream(body, cancel=token, on_response=on_response)
            try:
                for event in events:
                    accumulate(event, reply)
                    if len(reply.text) + len(reply.thinking) > limit or (
                            reply.tool_calls and _reply_chars(reply) > limit):
                        size = _reply_chars(reply)
                        raise StreamError(
                            f"the reply passed {size:,} characters, more than "
                            f"max_tokens={opts.max_tokens} allows: stopped")
                    update(False)
            finally:
                close = getattr(events, "close", None)
                if close is not None:
                    close()  # a runaway stream stops being read here
        else:
            data = sender.create(body, cancel=token, on_response=on_response)
            fresh = reply_from_response(data)
            fresh.request_sha256, fresh.inference_id = key, reply.inference_id
            step.reply = reply = fresh
    finally:
        reply.elapsed = time.monotonic() - started
        if reply.model == "":
            reply.model = opts.model
        _estimate_cost(reply, cfg)
        if step.offline:
            reply.usage.estimated = True  # made up by the stand-in: never money spent
    if not reply.done and not reply.error:
        reply.warnings.append("the stream ended without saying why it stopped")
    if replay_file is None or opts.replay not in ("auto", "record") or not reply.done \
            or reply.partial:
        return Found()
    record = Record(replay_file, key, body,
                    provenance.extra() if provenance is not None else None)
    if reply.tool_calls and tools_run:
        return Found(record=record)  # written with its tool results, after they ran
    record_step(turn, step, record, None)
    return Found()


def record_step(turn: Turn, step: Step, record: Record,
                results: list[ToolResult] | None) -> None:
    """Append a finished step to the replay file; a failure costs only the record."""
    from ._replay import ReplayError

    extra = {**(record.extra or {}), **({"offline": True} if step.offline else {})}
    try:
        record.file.put(record.key, reply=step.reply.to_dict(), request=record.body,
                        results=None if results is None else [r.to_dict() for r in results],
                        extra=extra or None)
    except ReplayError as exc:  # the reply is good; only its record failed
        turn.note = join_note(turn.note, f"not recorded: {exc}")
    else:
        step.recorded = Path(record.file.path).name


def _stale(replay_file: Any, provenance: Provenance | None) -> list[str]:
    """What changed since the cell's recorded reply to the same prompt; [] if it has none."""
    from ._inputs import previous_entry, what_changed
    from ._replay import ReplayError

    if provenance is None or provenance.cell.get("step"):
        return []  # a later step differs by its tool results, not by the cell's inputs
    try:
        previous = previous_entry(replay_file.entries(), provenance)
    except ReplayError:
        return []
    return [] if previous is None else what_changed(previous.get("inputs"), provenance.inputs)


def _what_changed(turn: Turn) -> str:
    """What may differ from a request with no earlier record for its cell and prompt:
    with notebook context, the cells run before the prompt too."""
    context = turn.context or {}
    if not context.get("text"):
        return "the prompt, an attachment or an option"
    labels = [str(item.get("label", "")) for item in context.get("items") or ()]
    cells = (f": cell {labels[0]}" if len(labels) == 1
             else f": cells {labels[0]}-{labels[-1]}" if labels else "")
    return (f"the prompt, an attachment, the cells run before it (its notebook context"
            f"{cells}) or an option")


def join_note(note: str, addition: str) -> str:
    if addition in note.split("; "):
        return note
    return f"{note}; {addition}" if note else addition


_replay_files: dict[str, Any] = {}


def _replay_file(path: str) -> Any:
    """One ReplayFile per absolute path, so its parsed entries are reused between requests."""
    from ._replay import ReplayFile

    resolved = os.path.abspath(path)
    replay_file = _replay_files.get(resolved)
    if replay_file is None:
        replay_file = _replay_files[resolved] = ReplayFile(resolved)
    return replay_file


def _get_entry(replay_file: Any, key: str) -> dict[str, Any] | None:
    entry = replay_file.get(key)
    if entry is None or not isinstance(entry.get("reply"), dict):
        return None
    return entry


def _recorded_results(entry: dict[str, Any], reply: Reply) -> list[ToolResult] | None:
    """The entry's tool results in call order, or None unless every call has a usable one."""
    from ._tools import ToolResult

    raw = entry.get("results")
    if not reply.tool_calls or not isinstance(raw, list):
        return None
    by_id: dict[str, ToolResult] = {}
    for item in raw:
        if not isinstance(item, dict):
            return None
        content = item.get("content")
        if not isinstance(content, str) and not (
                isinstance(content, list) and all(isinstance(b, dict) for b in content)):
            return None
        result = ToolResult.from_dict(item)
        by_id[result.tool_use_id] = result
    try:
        return [by_id[call.id] for call in reply.tool_calls]
    except KeyError:
        return None


def _estimate_cost(reply: Reply, cfg: Settings) -> None:
    if reply.usage.cost_usd is not None:
        return
    price = cfg.price_for(reply.model)
    if price is None:
        return
    reply.usage.cost_usd = (reply.usage.input_tokens * price[0]
                            + reply.usage.output_tokens * price[1]) / 1e6
    reply.usage.estimated = True


def _reply_chars(reply: Reply) -> int:
    return len(reply.text) + len(reply.thinking) + sum(len(c.arguments) for c in reply.tool_calls)
