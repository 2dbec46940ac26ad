"""Show turns: Markdown for notebooks and the panel, throttled live display.

A live reply is one display updated in place through its display_id, so the
saved notebook holds a single final output per reply.
"""

from __future__ import annotations

import html
import json
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ._config import DEFAULT_UPDATES_PER_SECOND, redact
from ._context import reference_notes
from ._inputs import shown_inputs
from ._markdown import code_span, escape_text, safe_markdown
from ._render_context import (
    _details,
    _fence,
    _is_reference,
    context_line,
    context_markdown,
    context_text,
)
from ._turns import total_usage

if TYPE_CHECKING:
    from ._content import Attachment
    from ._turns import Step, Transcript, Turn

__all__ = ["InlineView", "Throttle", "turn_markdown", "footer", "session_markdown",
           "session_text", "usage_markdown", "usage_text", "transcript_markdown",
           "output_metadata", "context_line", "context_markdown",
           "context_text", "state_text"]

ImageSource = Callable[[int, "Attachment"], "str | None"]
"""Where an attached image is shown from: `(position, attachment) -> URL` (None: no image)."""

WAITING = "<span class='nbc-waiting'>⋯ *waiting for Claude*</span>"
CURSOR = " ▍"

_FINISH_NOTES = {
    "max_tokens": "cut at max_tokens",
    "stop_sequence": "stopped at a stop sequence",
    "refusal": "refused",
    "tool_use": "asked for tools",
    "pause_turn": "paused",
}


def _short_model(model: str) -> str:
    return model.rsplit("/", 1)[-1]


def footer(turn: Turn, *, live: bool = False) -> str:
    """One line: model, tokens in/out, seconds, cost, and how the reply ended."""
    reply = turn.reply
    usage = turn.usage
    parts = [_short_model(reply.model or turn.options.get("model", ""))]
    counted = usage.input_tokens or usage.output_tokens
    parts.append(f"{usage.input_tokens:,} in / {usage.output_tokens:,} out" if counted
                 else "tokens not reported")
    elapsed = sum(s.reply.elapsed for s in turn.steps)
    if elapsed:
        parts.append(f"{elapsed:.1f} s")
    if usage.cost_usd is not None and (counted or not usage.estimated):
        cost = f"${usage.cost_usd:.4f}"
        if turn.offline:
            parts.append(f"{cost} est., offline")  # the stand-in's figure: nothing was spent
        else:
            parts.append(f"~{cost} (estimate)" if usage.estimated else cost)
    elif turn.offline:
        parts.append("offline")
    if len(turn.steps) > 1:
        parts.append(f"{len(turn.steps)} steps")
    note = _FINISH_NOTES.get(reply.finish_reason or "")
    if note and not (reply.finish_reason == "tool_use" and turn.steps[-1].results):
        parts.append(note)
    parts.append(state_text(turn))
    recorded = sorted({s.recorded for s in turn.steps if s.recorded})
    if recorded:
        parts.append(f"recorded in {', '.join(recorded)}")
    if turn.interrupted:
        parts.append("interrupted")
    if reply.error:
        parts.append(f"error: {reply.error}")
    if turn.note:
        parts.append(turn.note)
    for warning in reply.warnings:
        parts.append(warning)
    return " · ".join(p for p in parts if p)


def state_text(turn: Turn) -> str:
    """`replayed`, `live`, or `stale: df changed (…); cell [4] changed (asked again)`."""
    if turn.state != "stale":
        return turn.state
    return f"stale: {'; '.join(turn.changed)} (asked again)"


_THUMBNAILS: dict[str, str | None] = {}
THUMBNAIL_EDGE = 192  # pixels of the stored thumbnail: sharp at the shown height on HiDPI screens
# A plot is mostly white: a frame and the plot's own aspect keep it from reading as an empty box.
THUMBNAIL_STYLE = ("height:72px;width:auto;vertical-align:middle;border:1px solid #bbb;"
                   "border-radius:3px;background:#fff;padding:1px")


def _thumbnail(attachment: Any) -> str | None:
    """Thumbnails are made once per image, not on every streaming update."""
    key = attachment.sha256
    if key not in _THUMBNAILS:
        if len(_THUMBNAILS) > 256:
            _THUMBNAILS.clear()
        _THUMBNAILS[key] = attachment.thumbnail_data_uri(THUMBNAIL_EDGE)
    return _THUMBNAILS[key]


def attachments_line(turn: Turn, *, image_src: ImageSource | None = None) -> str:
    """What was sent besides the prompt: thumbnails, frame shapes, file names.

    Each attachment appears exactly once. Images show as inline thumbnails, or, given
    `image_src` (a notebook cell's `attachment:NAME`), as a Markdown image from there, the
    form every notebook front end and nbconvert resolve.
    """
    items = []
    for position, attachment in enumerate(turn.attachments, 1):
        if _is_reference(attachment):
            continue  # an `@name` of the prompt: on the Context line
        label = escape_text(" ".join(attachment.description.split()))
        if attachment.kind != "image":
            items.append(label)
        elif image_src is not None:
            src = image_src(position, attachment)
            items.append(f"![{escape_text(attachment.name)}]({src}) {label}" if src else label)
        else:
            thumb = _thumbnail(attachment)
            items.append(f"<img src=\"{thumb}\" style=\"{THUMBNAIL_STYLE}\" "
                         f"alt=\"{html.escape(attachment.name)}\"/> {label}" if thumb else label)
    return "Attached: " + " · ".join(items) if items else ""


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split()) if limit <= 200 else text
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _call_arguments(call: Any) -> str:
    """Arguments as a Python call reads: column="revenue", n=3."""
    try:
        values = call.input
    except ValueError:
        return _clip(call.arguments, 60)
    shown = ", ".join(f"{key}={json.dumps(value, ensure_ascii=False)}"
                      for key, value in values.items())
    return _clip(shown, 60)


_SUMMARY_ENTITIES = {ord(c): f"&#{ord(c)};" for c in "$\\[]`"}


def _summary_text(text: str) -> str:
    """Text for a <summary> line: one line of escaped HTML that never opens math, links or code."""
    return html.escape(" ".join(text.split()), quote=False).translate(_SUMMARY_ENTITIES)


def _step_markdown(step: Step, *, live: bool, last: bool) -> list[str]:
    reply = step.reply
    parts: list[str] = []
    if reply.thinking:
        label = "Thinking…" if live and last and not reply.text else "Thinking"
        parts.append(_details(label, escape_text(redact(reply.thinking)).replace("\n", "<br>\n")))
    if reply.text:
        cursor = CURSOR if live and last and not reply.tool_calls else ""
        parts.append(safe_markdown(redact(reply.text) + cursor))
    results = {r.tool_use_id: r for r in step.results}
    for call in reply.tool_calls:
        result = results.get(call.id)
        try:
            arguments = json.dumps(call.input, ensure_ascii=False, indent=1)
        except ValueError:
            arguments = call.arguments
        if result is None:
            status = "running…" if live else "not run"
        elif result.is_error:
            status = f"failed: {_summary_text(_clip(redact(result.summary), 70))}"
        else:
            status = f"→ {_summary_text(_clip(redact(result.summary), 70))}"
        body = "Arguments\n\n" + _fence(_clip(redact(arguments), 2000), "json")
        if result is not None:
            content = result.content if isinstance(result.content, str) else \
                "\n".join(b.get("text", f"[{b.get('type')}]") for b in result.content)
            label = "Error" if result.is_error else "Result"
            body += f"\n\n{label}\n\n" + _fence(_clip(redact(content), 2000))
        call_text = _summary_text(redact(f"{_clip(call.name, 80)}({_call_arguments(call)})"))
        parts.append(_details(f"Tool <code>{call_text}</code> {status}", body))
    return parts


def turn_markdown(turn: Turn, *, live: bool = False, prompt: bool = False,
                  with_footer: bool = True, attachments: bool = True) -> str:
    """The turn as notebook Markdown; `prompt` adds the user's text (for the panel)."""
    parts: list[str] = []
    if prompt:
        parts.append(_labelled("**You:**", safe_markdown(redact(turn.prompt))))
    for line in (context_markdown(turn), attachments_line(turn)) if attachments else ():
        if line:
            parts.append(line)
    body: list[str] = []
    for position, step in enumerate(turn.steps):
        body.extend(_step_markdown(step, live=live, last=position == len(turn.steps) - 1))
    if not body and live:
        body.append(WAITING)
    parts.extend(body)
    if with_footer and not live and turn.steps:
        parts.append(f"<sub>{_footer_markdown(turn)}</sub>")
    return "\n\n".join(parts)


def _footer_markdown(turn: Turn) -> str:
    """The footer as literal text; a lone dollar sign cannot open math, so it stays readable."""
    text = escape_text(" ".join(redact(footer(turn)).split()))
    return text.replace("&#36;", "$") if text.count("&#36;") == 1 else text


def _labelled(label: str, markdown: str) -> str:
    """A label before Markdown, on its own line when the Markdown opens with a code fence."""
    if markdown.lstrip(" ").startswith(("```", "~~~")) or not markdown.strip():
        return f"{label}\n\n{markdown}"
    return f"{label} {markdown}"


def turn_text(turn: Turn, *, context: bool = True) -> str:
    """Plain-text rendering for front ends without Markdown, after the Context line."""
    text = redact(turn.text) or "(no text)"
    text = f"{text}\n\n[{redact(footer(turn))}]" if turn.steps else text
    line = context_line(turn) if context else ""
    return f"{line}\n\n{text}" if line else text


def output_metadata(turn: Turn) -> dict[str, Any]:
    """Provenance carried by every reply output."""
    reply = turn.reply
    meta: dict[str, Any] = {
        "model": reply.model or turn.options.get("model"),
        "request_sha256": reply.request_sha256,
        "usage": turn.usage.to_dict(),
        "finish_reason": reply.finish_reason,
        "replayed": all(s.reply.replayed for s in turn.steps) if turn.steps else False,
        "created": datetime.fromtimestamp(reply.created, timezone.utc).isoformat(
            timespec="seconds"),
        "steps": len(turn.steps),
        "interrupted": turn.interrupted,
    }
    if turn.offline:
        meta["offline"] = True  # costs made up by the stand-in
    meta["state"] = turn.state
    meta["inputs"] = shown_inputs(turn.inputs)
    if turn.changed:
        meta["changed"] = list(turn.changed)
    return {"nb_claude": meta}


def _is_terminal() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return True
    shell = get_ipython()
    return shell is None or (not hasattr(shell, "kernel") and sys.stdout.isatty())


class Throttle:
    """When a live display may show a new state.

    At most `rate` updates a second, counted from the end of the previous update, and
    only while everything sent so far plus this update stays within `factor` times this
    update plus `slack` bytes. An ordinary reply (a few KB) updates at the full rate for
    its whole life; a huge one backs off geometrically, so the display traffic of any
    reply stays within (factor + 2) / 2 times its final output plus `slack`, however
    slowly it streams.
    """

    def __init__(self, rate: float = DEFAULT_UPDATES_PER_SECOND, *, factor: float = 1.5, slack: int = 196_608,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.factor = factor
        self.slack = slack
        self.clock = clock
        self.sent = 0
        self.updates = 0
        self._next = 0.0

    def __repr__(self) -> str:
        return f"Throttle(interval={self.interval}, sent={self.sent}, updates={self.updates})"

    def wait(self) -> float:
        """Seconds until the next update may go."""
        return max(0.0, self._next - self.clock())

    def fits(self, size: int) -> bool:
        """An update of `size` bytes stays within the traffic budget."""
        return self.sent + size <= self.factor * size + self.slack

    def ready(self, size: int) -> bool:
        """An update of at least `size` bytes may go now."""
        return self.wait() <= 0 and self.fits(size)

    def record(self, size: int) -> None:
        """An update of `size` bytes has just been sent."""
        self.sent += size
        self.updates += 1
        self._next = self.clock() + self.interval

    def skip(self) -> None:
        """A state was rendered but not sent: wait a full interval before rendering again."""
        self._next = self.clock() + self.interval


_KEY_HOLD = 256  # longer than any API key


def live_size(turn: Turn) -> int:
    """A cheap lower bound of a live update's size: the text it shows."""
    return sum(len(s.reply.text) + len(s.reply.thinking) for s in turn.steps)


def bundle_size(bundle: dict[str, str]) -> int:
    return sum(len(value) for value in bundle.values())


def live_placeholder(turn: Turn) -> str:
    """The text/plain of a live state: short, the full text comes with the final output."""
    size = live_size(turn)
    return f"⋯ Claude is replying ({size:,} characters so far)" if size else "⋯"


class InlineView:
    """A live reply under the running cell, updated at most `rate` times a second."""

    def __init__(self, rate: float = DEFAULT_UPDATES_PER_SECOND, *, fmt: str = "markdown",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.throttle = Throttle(rate, clock=clock)
        self.fmt = fmt
        self.handle: Any = None
        self._terminal = _is_terminal()
        self._written = 0

    @property
    def updates(self) -> int:
        return self.throttle.updates

    def _bundle(self, turn: Turn, *, live: bool) -> dict[str, str]:
        if self.fmt == "text":
            return {"text/plain": turn_text(turn) if not live else turn.text or "⋯"}
        return {"text/markdown": turn_markdown(turn, live=live),
                "text/plain": turn_text(turn) if not live else live_placeholder(turn)}

    def start(self, turn: Turn) -> None:
        if self._terminal:
            line = context_line(turn)
            if line:
                sys.stdout.write(f"{line}\n\n")
                sys.stdout.flush()
            return
        from IPython.display import display

        bundle = self._bundle(turn, live=True)
        self.handle = display(bundle, raw=True, display_id=True)
        self.throttle.record(bundle_size(bundle))

    def update(self, turn: Turn, *, force: bool = False) -> None:
        if self._terminal:
            self._write_terminal(turn)
            return
        if self.handle is None or (not force and not self.throttle.ready(live_size(turn))):
            return
        bundle = self._bundle(turn, live=True)
        size = bundle_size(bundle)
        if not force and not self.throttle.fits(size):
            self.throttle.skip()
            return
        self.handle.update(bundle, raw=True)
        self.throttle.record(size)

    def finish(self, turn: Turn) -> None:
        if self._terminal:
            self._write_terminal(turn, final=True)
            sys.stdout.write(f"\n[{redact(footer(turn))}]\n")
            sys.stdout.flush()
            return
        if self.handle is None:
            return
        bundle = self._bundle(turn, live=False)
        self.handle.update(bundle, raw=True, metadata=output_metadata(turn))
        self.throttle.record(bundle_size(bundle))

    def fail(self, turn: Turn, exc: BaseException) -> None:
        """Failed before any content: the waiting mark goes away, the error shows."""
        if self.handle is not None:
            self.handle.update({"text/plain": ""}, raw=True)

    def _write_terminal(self, turn: Turn, *, final: bool = False) -> None:
        """New text as it streams, minus a tail held back so that a key is whole before it shows."""
        text = turn.text
        end = len(text) if final else len(text) - _KEY_HOLD
        if end <= self._written:
            return
        window = text[self._written:end + _KEY_HOLD]
        if redact(window) != window:
            end = len(text)  # a key overlaps this piece: write through its end, redacted
        sys.stdout.write(redact(text[self._written:end]))
        sys.stdout.flush()
        self._written = end


def session_markdown(session: Transcript) -> str:
    """The whole conversation as Markdown (for %claude_history and export)."""
    if not session.history:
        return f"*Session {code_span(session.name)} has no turns yet.*"
    parts = [f"# Conversation {code_span(session.name)}"]
    parts += [transcript_markdown(turn, number) for number, turn in enumerate(session.history, 1)]
    return "\n\n".join(parts)


def session_text(session: Transcript) -> str:
    """The whole conversation as plain text, for terminal IPython's %claude_history."""
    if not session.history:
        return f"Session {session.name!r} has no turns yet."
    parts = [f"Conversation {session.name!r}"]
    for number, turn in enumerate(session.history, 1):
        names = ", ".join(a.name for a in turn.attachments if not _is_reference(a))
        line = context_line(turn)
        parts.append(f"{number}. You: {turn.prompt}" + (f"\n{line}" if line else "")
                     + (f"\n(attached: {names})" if names else ""))
        parts.append(f"Claude: {turn_text(turn, context=False)}")
    return "\n\n".join(parts)


def transcript_markdown(turn: Turn, number: int, *, level: int = 2,
                        image_src: ImageSource | None = None) -> str:
    """One finished turn as the history magic and both exports show it."""
    heading = "#" * level
    parts = [f"{heading} {number}. You", safe_markdown(redact(turn.prompt))]
    for line in (context_markdown(turn), attachments_line(turn, image_src=image_src)):
        if line:
            parts.append(line)
    parts += [f"{heading} Claude", turn_markdown(turn, attachments=False)]
    return "\n\n".join(parts)


def _shorten_data(value: Any) -> Any:
    """Base64 payloads shortened, so a dry run stays readable."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "data" and isinstance(item, str) and len(item) > 80 and \
                    value.get("type") == "base64":
                out[key] = f"{item[:40]}…({len(item):,} chars of base64)"
            else:
                out[key] = _shorten_data(item)
        return out
    if isinstance(value, list):
        return [_shorten_data(item) for item in value]
    return value


def dry_run_bundle(body: dict[str, Any], attachments: list[Any],
                   context: dict[str, Any] | None = None) -> dict[str, str]:
    """The request as it would be sent (data shortened), the notebook context and what the
    attachments cost."""
    shown = json.dumps(_shorten_data(body), indent=2, ensure_ascii=False)
    lines = ["**Dry run: nothing was sent.** `POST /chat/completions` with this body:", "",
             _fence(shown, "json")]
    context = context or {}
    if context.get("text") or context.get("missing") or context.get("not_attachable"):
        lines += ["", f"Context: {escape_text(str(context.get('summary') or 'no cells'))}", ""]
        lines += [f"- {escape_text(str(item.get('label')))} · "
                  f"~{int(item.get('tokens') or 0):,} tokens" for item in context.get("items", ())]
        lines += [f"- {escape_text(note)}" for note in reference_notes(context)]
    if attachments:
        total = sum(a.estimate_tokens() for a in attachments)
        lines += ["", f"Attachments (about {total:,} tokens):", ""]
        lines += [f"- {escape_text(a.description)} · {escape_text(a.media_type)} · {len(a.data):,} bytes · "
                  f"~{a.estimate_tokens():,} tokens · sha256 {a.sha256[:12]}" for a in attachments]
    return {"text/markdown": "\n".join(lines), "text/plain": shown}


_USAGE_HEAD = ("session", "replies", "tokens in", "tokens out", "cost")


def _usage_values(session: Transcript) -> tuple[str, ...]:
    """The usage row after the session's name: replies, tokens in and out, cost."""
    usage = total_usage(session.history)
    replies = sum(len(turn.steps) for turn in session.history)
    offline = any(turn.offline for turn in session.history)
    side = getattr(session, "side_usage", None)  # a batch's items: counted, never turns
    if side is not None:
        usage = usage + side
        replies += int(getattr(session, "side_replies", 0))
        offline = offline or bool(getattr(session, "side_offline", False))
    cost = "n/a" if usage.cost_usd is None else f"${usage.cost_usd:.4f}" + (
        " (est., offline stand-in replies)" if offline
        else " (estimate from the price table)" if usage.estimated else "")
    return str(replies), f"{usage.input_tokens:,}", f"{usage.output_tokens:,}", cost


def usage_markdown(session: Transcript) -> str:
    """Replies, tokens and cost of a session as a one-row Markdown table."""
    values = (code_span(session.name), *_usage_values(session))
    return (f"| {' | '.join(_USAGE_HEAD)} |\n|{'---|' * len(_USAGE_HEAD)}\n"
            f"| {' | '.join(values)} |")


def usage_text(session: Transcript) -> str:
    """The same figures as `name: value` pairs on one line, for terminal IPython."""
    values = (session.name, *_usage_values(session))
    return ", ".join(f"{name}: {value}" for name, value in zip(_USAGE_HEAD, values, strict=True))
