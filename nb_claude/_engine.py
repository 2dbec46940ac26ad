"""The core of a conversation: history, requests, the tool loop, listeners, recording.

It chooses no display and asks no questions: the caller passes a `view` (or
None) and a `confirmer` (or None, which declines a call that needs the user's
say). A turn enters the history only when its reply is complete or explicitly
marked partial; a failed request leaves the history as it was. No IPython, no
widgets, no renderer: `_session.Session` adds those defaults.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ._config import CONTEXT_TOKENS, Settings, get_api_key, settings
from ._errors import Cancelled, ConfigError, NbClaudeError, StreamError
from ._exchange import exchange, join_note, record_step
from ._options import Confirmer, Options, check_text, resolve_options
from ._stream import Reply, Usage
from ._turns import Step, Turn, total_usage, wire_messages

if TYPE_CHECKING:
    import httpx

    from ._client import CancelToken, Client
    from ._content import Attachment
    from ._tools import Tool
    from ._typed import Answer

__all__ = ["Engine", "View", "Listener", "CannotAsk", "NO_STDIN"]

Listener = Callable[[str, "Turn | None"], None]

NO_STDIN = ("no way to ask: this front end has no input box; pass --confirm only in "
            "interactive notebooks")
_NOBODY = ("no way to ask: nothing was given to confirm tool calls; pass "
           "confirm=a function (name, arguments) -> bool")
_NOT_RUN = "not run: interrupted"


class View(Protocol):
    """Shows one turn as it grows (the front end's business, e.g. `_render.InlineView`)."""

    def start(self, turn: Turn) -> None: ...
    def update(self, turn: Turn, *, force: bool = False) -> None: ...
    def finish(self, turn: Turn) -> None: ...
    def fail(self, turn: Turn, exc: BaseException) -> None: ...


class CannotAsk(Exception):
    """A confirmer has no way to ask; the call is declined with this reason."""


class Engine:
    """One conversation: its turns, the requests they make, and what they cost."""

    def __init__(self, name: str = "default", *, config: Settings | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.name = name
        self.settings = config if config is not None else settings
        self.history: list[Turn] = []
        self.transport = transport
        self._lock = threading.RLock()
        self._listeners: list[Listener] = []
        self._clients: dict[tuple[Any, ...], Client] = {}
        self._active: CancelToken | None = None
        self.busy = False
        # Requests outside the conversation (a batch's items): counted, never turns.
        self.side_usage = Usage()
        self.side_replies = 0
        self.side_offline = False
        self._side_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, turns={len(self.history)})"

    # -- observing --------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(event, turn)` on "start", "update", "end", "error" and "reset"."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _emit(self, event: str, turn: Turn | None) -> None:
        for listener in list(self._listeners):
            try:
                listener(event, turn)
            except Exception:  # a broken view must never break a request
                import logging

                logging.getLogger("nb_claude").exception("session listener failed")

    # -- state ------------------------------------------------------------
    @property
    def messages(self) -> list[dict[str, Any]]:
        """The wire messages the next request would carry before its new prompt."""
        return wire_messages(self.history)

    @property
    def usage(self) -> Usage:
        """What the conversation and the requests outside it (batches) cost together."""
        return total_usage(self.history) + self.side_usage

    def count_side_usage(self, usage: Usage, replies: int, *, offline: bool = False) -> None:
        """Add what requests outside the conversation cost (from any thread); the
        history does not change."""
        with self._side_lock:
            self.side_usage = self.side_usage + usage
            self.side_replies += replies
            self.side_offline = self.side_offline or offline

    def reset(self) -> None:
        """Forget the conversation, stopping a reply in flight first (from any thread)."""
        # The reply's thread holds the lock until its turn is closed; stop it (and
        # any request that takes the lock next) rather than wait for it to end.
        while not self._lock.acquire(timeout=0.05):
            self.stop()
        try:
            self.history.clear()
            with self._side_lock:
                self.side_usage, self.side_replies, self.side_offline = Usage(), 0, False
        finally:
            self._lock.release()
        self._emit("reset", None)

    def stop(self) -> None:
        """Stop the request in flight, if any (from any thread)."""
        token = self._active
        if token is not None:
            token.cancel()

    # -- requests ---------------------------------------------------------
    def options(self, *, model: str | None = None, max_tokens: int | None = None,
                system: str | None = None, stop: str | Sequence[str] | None = None,
                stream: bool | None = None, thinking: bool | int | str | None = None,
                tools: object = None, tool_choice: str | None = None,
                max_steps: int | None = None, confirm: bool | Confirmer | None = None,
                replay: str | None = None, replay_tools: str | None = None,
                namespace: Mapping[str, object] | None = None) -> Options:
        """Validate options against the service's limits, before anything is sent.

        `confirm` is True/False, or a confirmer `(name, arguments) -> bool` that
        asks in the caller's own way (and turns confirmation on).
        """
        return resolve_options(self.settings, model=model, max_tokens=max_tokens,
                               system=system, stop=stop, stream=stream, thinking=thinking,
                               tools=tools, tool_choice=tool_choice, max_steps=max_steps,
                               confirm=confirm, replay=replay, replay_tools=replay_tools,
                               namespace=namespace)

    def attachments(self, attach: object, *, alone: bool = False) -> list[Attachment]:
        """Turn objects, paths and (name, object) pairs into attachments, checking limits
        (with the history's attachments, unless the request goes `alone`, without them)."""
        if attach is None:
            return []
        items = attach if isinstance(attach, (list, tuple)) else [attach]
        if not items:
            return []
        from ._content import Attachment, AttachmentError, attachment_from, check_request_limits

        result: list[Attachment] = []
        for position, item in enumerate(items, 1):
            if isinstance(item, Attachment):
                result.append(item)
                continue
            labelled = isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
            if labelled:
                name, obj = item
            else:
                name, obj = _default_name(item, position), item
            try:
                made = attachment_from(obj, name=name,
                                       max_image_edge=self.settings.max_image_edge,
                                       dataframe_budget=self.settings.dataframe_budget)
            except AttachmentError as exc:
                raise ConfigError(str(exc)) from None
            result.append(_labelled(made, name) if labelled else made)
        everything = result if alone else [*self._history_attachments(), *result]
        try:
            check_request_limits(everything)
        except AttachmentError as exc:
            raise ConfigError(str(exc)) from None
        tokens = sum(a.estimate_tokens() for a in everything)
        if tokens > CONTEXT_TOKENS:
            raise ConfigError(f"the attachments come to about {tokens:,} tokens, over Claude's "
                              f"{CONTEXT_TOKENS:,}-token context: attach a smaller file or a slice")
        return result

    def _history_attachments(self) -> list[Attachment]:
        return [a for turn in self.history for a in turn.attachments]

    def _base(self, cell_id: str | None) -> tuple[int | None, list[Turn]]:
        if cell_id is not None:
            for index, turn in enumerate(self.history):
                if turn.cell_id == cell_id:
                    return index, self.history[:index]
        return None, list(self.history)

    def request_body(self, prompt: str, *, attach: object = None, cell_id: str | None = None,
                     context: dict[str, Any] | None = None, schema: object = None,
                     **options: Any) -> dict[str, Any]:
        """The exact JSON body `ask` would send first (for --dry-run); sends nothing."""
        check_text(prompt, "prompt")
        opts = self.options(**options)
        answer = _answer_for(schema, opts, options.get("namespace"))
        turn = Turn(_clean(prompt), self.attachments(attach), context=dict(context or {}))
        _, base = self._base(cell_id)
        body = _body(opts, answer, base, turn)
        body["stream"] = opts.stream
        return body

    def send(self, prompt: str, *, attach: object = None, cell_id: str | None = None,
             new: bool = False, source: str = "python", cancel: CancelToken | None = None,
             label: str | None = None, view: View | None = None,
             confirmer: Confirmer | None = None, context: dict[str, Any] | None = None,
             schema: object = None, **options: Any) -> Reply:
        """Send `prompt` (with attachments), run the tool loop, and return the reply.

        `view` (if any) shows the turn as it grows. A tool call that needs the user's
        say asks `confirm=` when that is a function, else `confirmer`; with neither,
        it is declined and the model is told why. With `schema` (see `_typed.answer_for`)
        the request offers only the answer tool, forced; `reply.data` is the validated
        answer, and an invalid one is asked again once with the error.
        """
        if not isinstance(prompt, str) or not prompt.strip():
            raise ConfigError("the prompt is empty: write a question in the cell")
        check_text(prompt, "prompt")
        opts = self.options(**options)
        answer = _answer_for(schema, opts, options.get("namespace"))
        if opts.confirmer is None:
            opts.confirmer = confirmer
        attachments = self.attachments(attach)
        from ._client import CancelToken

        token = cancel or CancelToken()
        turn = Turn(_clean(prompt), attachments, cell_id=cell_id, source=source,
                    options=opts.summary(), context=dict(context or {}))
        if answer is not None:
            turn.options["schema"] = answer.title or answer.kind
        if view is not None:
            view.start(turn)  # the waiting mark shows even while another turn holds the lock
        try:
            self._lock.acquire()
        except KeyboardInterrupt:
            if view is not None:
                view.fail(turn, KeyboardInterrupt())
            raise
        try:
            if new:
                self.history.clear()
                self._emit("reset", None)
            index, base = self._base(cell_id)
            self._active = token
            self.busy = True
            self._emit("start", turn)
            try:
                self._run(turn, base, opts, token, view, label, answer)
            except (KeyboardInterrupt, Cancelled):
                if not turn.steps:
                    turn.steps.append(Step(Reply(model=opts.model)))
                turn.reply.interrupted = True
                self._close_turn(turn, index, view, "interrupted")
                return turn.reply
            except NbClaudeError as exc:
                kept = bool(turn.reply.text or turn.reply.thinking
                            or any(s.results for s in turn.steps))
                if isinstance(exc, StreamError):
                    turn.reply.error = _say_what_was_kept(exc, kept)
                if isinstance(exc, StreamError) and kept:
                    self._close_turn(turn, index, view, "error")
                else:
                    if view is not None:
                        view.fail(turn, exc)
                    self._emit("error", turn)
                raise
            except Exception as exc:  # a bug must not leave a waiting mark or a half turn
                if view is not None:
                    view.fail(turn, exc)
                self._emit("error", turn)
                raise
            finally:
                self._active = None
                self.busy = False
            self._close_turn(turn, index, view, "end")
        finally:
            self._lock.release()
        return turn.reply

    def _close_turn(self, turn: Turn, index: int | None, view: View | None, event: str) -> None:
        """Record the turn (complete or marked partial) and show its final state."""
        turn._freeze()
        if turn.wire() or turn.reply.text or turn.reply.thinking:
            if index is not None and index < len(self.history) and \
                    self.history[index].cell_id == turn.cell_id:
                self.history[index] = turn
            else:
                self.history.append(turn)
        if view is not None:
            view.finish(turn)
        self._emit("end" if event != "error" else "error", turn)

    def _run(self, turn: Turn, base: list[Turn], opts: Options, token: CancelToken,
             view: View | None, label: str | None, answer: Answer | None = None) -> None:
        from ._inputs import Provenance, cell_identity, turn_inputs

        tool_map = {t.name: t for t in opts.tools}
        prior = _body(opts, answer, base)["messages"]
        turn.inputs = turn_inputs(turn, opts.body(prior), prior)
        provenance = Provenance(turn.inputs, cell_identity(
            cell_id=turn.cell_id, label=label, session=self.name, position=len(base)))

        def update(force: bool) -> None:
            if view is not None:
                view.update(turn, force=force)
            if self._listeners:
                self._emit("update", turn)

        steps = opts.max_steps if answer is None else 2  # a typed answer: one retry
        for step_number in range(steps):
            body = _body(opts, answer, base, turn)
            step = Step(Reply(model=opts.model))
            turn.steps.append(step)
            last = step_number == steps - 1
            # The answer tool never runs: its call is recorded at once, like a text reply.
            found = exchange(body, opts, step, cfg=self.settings, client=self._client,
                             token=token, update=update, label=label,
                             tools_run=not last and answer is None,
                             turn=turn, provenance=provenance.for_step(step_number))
            reply = step.reply
            if answer is not None:
                if _settle(answer, step, last=last):
                    return
                update(True)
                continue
            if not reply.tool_calls or reply.partial:
                return
            if last:
                turn.note = join_note(turn.note, f"stopped after {opts.max_steps} tool steps "
                                                  "(--max-steps); the last tool calls were not run")
                return
            if found.results is not None and opts.replay_tools == "replay":
                step.results = found.results  # recorded: nothing runs again
                turn.note = join_note(turn.note, "tool results replayed")
            else:
                if reply.replayed:
                    turn.note = join_note(turn.note, "replayed tool calls were run again")
                self._call_tools(step, tool_map, opts, turn)
                if found.record is not None:
                    record_step(turn, step, found.record, step.results)
            update(True)

    def _call_tools(self, step: Step, tool_map: dict[str, Tool], opts: Options,
                    turn: Turn) -> None:
        """Run the step's tool calls into `step.results`; every call gets a result.

        A replayed call always asks first unless the caller passed confirm=False.
        """
        from ._tools import ToolInterrupted, ToolResult, run_tool_call

        reply = step.reply
        ask = opts.confirm or (reply.replayed and not opts.confirm_explicit)
        confirmer = opts.confirmer
        results: list[ToolResult] = []
        for position, call in enumerate(reply.tool_calls):
            if ask:
                reason = None  # why nobody could be asked
                try:
                    if confirmer is None:
                        raise CannotAsk(_NOBODY)
                    allowed = confirmer(call.name, call.arguments)
                except CannotAsk as exc:
                    allowed, reason = False, str(exc)
                except (EOFError, NotImplementedError):  # IPython's StdinNotImplementedError
                    allowed, reason = False, NO_STDIN
                if not allowed:
                    content = f"not run: {reason}" if reason else "the user declined this call"
                    results.append(ToolResult(call.id, call.name, content, is_error=True,
                                              summary=reason or "declined",
                                              arguments=call.arguments))
                    continue
            try:
                results.append(run_tool_call(call, tool_map))
            except ToolInterrupted as exc:
                # Answer every call, so no tool_use is left without its result.
                results.append(exc.result)
                results += [ToolResult(c.id, c.name, _NOT_RUN, is_error=True, summary=_NOT_RUN,
                                       arguments=c.arguments)
                            for c in reply.tool_calls[position + 1:]]
                step.results = results
                raise
        step.results = results

    def _client(self) -> Client:
        from ._client import Client

        cfg = self.settings
        key = get_api_key()
        # The key's digest, never the key: this dict shows in vars(session).
        identity = (cfg.base_url, key.digest if key else None, cfg.timeout,
                    cfg.connect_timeout, cfg.first_byte_timeout, cfg.max_retries,
                    id(self.transport))
        client = self._clients.get(identity)
        if client is None:
            for old in self._clients.values():
                old.close()
            self._clients = {identity: Client(api_key=key, base_url=cfg.base_url,
                                              timeout=cfg.timeout,
                                              connect_timeout=cfg.connect_timeout,
                                              first_byte_timeout=cfg.first_byte_timeout,
                                              max_retries=cfg.max_retries,
                                              transport=self.transport)}
            client = self._clients[identity]
        return client


def _body(opts: Options, answer: Answer | None, base: list[Turn], turn: Turn | None = None
          ) -> dict[str, Any]:
    """One request's body (`base`'s messages alone without `turn`). Its history carries
    tool blocks natively only when the body defines tools (Claude refuses them
    otherwise): a plain prompt after a turn that called tools, or after a typed answer's
    retry, sends those calls and results as text."""
    body = opts.body([])
    if answer is not None:
        body = answer.apply(body)
    body["messages"] = wire_messages(base, turn, tools=bool(body.get("tools")))
    return body


def _answer_for(schema: object, opts: Options, namespace: Mapping[str, object] | None
                ) -> Answer | None:
    """The typed answer `schema` asks for, or None; refuses what cannot go with it."""
    if schema is None:
        return None
    from ._typed import SchemaError, answer_for

    if opts.tools or opts.tool_choice not in (None, "auto"):
        raise ConfigError("--schema offers only its answer tool: drop --tools and "
                          "--tool-choice, or ask in two cells")
    if opts.thinking not in (None, "disabled"):
        raise ConfigError("--schema cannot go with --thinking: Claude refuses a forced tool "
                          "with thinking on; drop one of them")
    try:
        return answer_for(schema, namespace)
    except SchemaError as exc:
        raise ConfigError(str(exc)) from None


def _settle(answer: Answer, step: Step, *, last: bool) -> bool:
    """Read a typed answer into `step.reply.data`; False when it is to be asked again.

    A valid call is the answer: it shows as a JSON fence in the reply's text and is
    consumed, so no unanswered tool call stays in the turn. An invalid one gets the
    error as its tool result for the retry, or, on the last try, as `reply.error`.
    """
    from ._typed import AnswerError

    reply = step.reply
    try:
        value = answer.parse(reply)
    except AnswerError as exc:
        if reply.tool_calls:  # every call is answered, so the turn stays well formed
            from ._tools import ToolResult

            step.results = [ToolResult(call_id, call.name, message, is_error=True,
                                       summary=message, arguments=call.arguments)
                            for (call_id, message), call in
                            zip(answer.error_results(reply, exc), reply.tool_calls,
                                strict=True)]
        if last or reply.partial or not reply.tool_calls:
            again = " (also when asked again with the error)" if last and reply.tool_calls \
                else ""
            reply.error = reply.error or f"no valid answer: {exc}{again}"
            return True
        return False
    reply.data = value
    shown = answer.show(value)
    reply.text = f"{reply.text.rstrip()}\n\n{shown}" if reply.text.strip() else shown
    reply.tool_calls = []
    if reply.finish_reason == "tool_use":
        reply.finish_reason = "end_turn"  # answered; `raw_finish_reason` keeps the service's
    return True


def _clean(prompt: str) -> str:
    return prompt.strip("\n").rstrip()


def _labelled(attachment: Attachment, label: str) -> Attachment:
    """The attachment shown under the caller's label: `("sales data", "sales.csv")`.

    Only what the user sees changes; a file keeps its name as the document title
    the model reads, so the request (and its replay key) stays the same.
    """
    if attachment.name == label:
        return attachment
    import dataclasses

    prefix = f"{attachment.name}: "
    rest = attachment.description[len(prefix):] if attachment.description.startswith(prefix) \
        else attachment.description
    return dataclasses.replace(attachment, name=label, description=f"{label}: {rest}")


def _default_name(obj: object, position: int) -> str:
    from pathlib import PurePath

    if isinstance(obj, (str, PurePath)):
        return PurePath(obj).name or str(obj)
    return f"attachment {position}"


def _say_what_was_kept(exc: StreamError, kept: bool) -> str:
    """End the error's one line with whether the partial reply was kept; return the cause."""
    # The client's own wording said "kept" whether or not anything was: drop it.
    message = str(exc).replace("the partial reply was kept", "").rstrip("; ")
    exc.args = (message + ("; the partial reply was kept" if kept else "; nothing was kept"),)
    return message
