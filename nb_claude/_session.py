"""The public Session: the core conversation plus the notebook's defaults.

The magics, the chat panel and Python code share one Session per name. The core
(`_engine.Engine`) chooses no display and asks no questions; this layer adds what
plain Python expects in a notebook: the reply displayed as it streams, a tool call
confirmed on the cell's stdin, and export to Markdown, JSON and .ipynb.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._capture import recorder_for as recorder_for
from ._engine import NO_STDIN, CannotAsk, Engine, View
from ._errors import ConfigError
from ._exchange import STAND_IN_HEADER as STAND_IN_HEADER
from ._turns import Step, Turn

if TYPE_CHECKING:
    from ._capture import ContextRecorder
    from ._client import CancelToken
    from ._config import Settings
    from ._context import Context
    from ._stream import Reply

__all__ = ["Session", "Turn", "Step", "get_session", "sessions", "recorder_for",
           "notebook_context", "prompt_references", "context_dict", "map", "batch_view"]

class _class_or_instance:
    """A method that receives the class and, when called on an instance, that instance."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        self.__doc__ = func.__doc__

    def __get__(self, obj: Any, cls: type) -> Callable[..., Any]:
        return functools.partial(self.func, cls, obj)


class Session(Engine):
    """One conversation shared by the magics, the chat panel and Python code."""

    def ask(self, prompt: str, *, attach: object = None, cell_id: str | None = None,
            new: bool = False, display: bool | None = None, source: str = "python",
            cancel: CancelToken | None = None, label: str | None = None,
            view: Any = None, context: object = None,
            on_sent: Callable[[], None] | None = None, **options: Any) -> Reply:
        """Send `prompt` (with attachments) and return the reply.

        Options: model, max_tokens, system, stop, stream, thinking, tools,
        tool_choice, max_steps, confirm, replay, replay_tools, namespace, schema.
        `schema` (a TypedDict, dataclass, Enum, Literal[...], pydantic model, JSON-schema
        dict, or the name of one in `namespace`) asks for a typed answer: the reply's
        `.data` is the validated value (None if the answer stayed invalid after one retry,
        with `.error` saying why). It offers only its answer tool, so it goes with
        neither tools nor thinking.
        `confirm` may be a confirmer `(name, arguments) -> bool`; the default one
        asks on the cell's stdin. In a notebook the reply is displayed as it
        streams unless display=False. `context` is the notebook context: None or
        False (none), a cell selection ("since-last" or True, N, "A-B", "all") read
        from the current shell, or a dict as `Turn.context` holds it. `on_sent` is
        called once the turn enters the history, that is once the prompt was sent
        (a request that failed before that leaves "since-last" where it was).
        """
        sent, marker = self._resolve_context(context)
        shown: View | None = view
        if shown is None and (display or (display is None and _in_notebook())):
            from ._render import InlineView

            shown = InlineView(self.settings.updates_per_second)
        outer = getattr(_recorded, "turn", False)
        _recorded.turn = False
        try:
            return self.send(prompt, attach=attach, cell_id=cell_id, new=new, source=source,
                             cancel=cancel, label=label, view=shown, confirmer=_ask_on_stdin,
                             context=sent, **options)
        finally:
            if _recorded.turn:
                for callback in (marker, on_sent):
                    if callback is not None:
                        callback()
            _recorded.turn = outer

    def resolve_context(self, context: object) -> dict[str, Any]:
        """`Turn.context` for what `ask(context=...)` takes; moves no "since-last"."""
        return self._resolve_context(context)[0]

    def _resolve_context(self, context: object
                         ) -> tuple[dict[str, Any], Callable[[], None] | None]:
        """(`Turn.context`, what moves this session's "since-last" once the prompt is sent)."""
        if context is None or context is False:
            return {}, None
        if isinstance(context, Mapping):
            return dict(context), None
        spec: object = "since-last" if context is True else context
        from ._context import Context

        if isinstance(spec, Context):
            return context_dict(spec), None
        if not isinstance(spec, (str, int)):
            raise ConfigError(f"context must be None, True, 'since-last', a number of cells, "
                              f"'A-B', 'all' or a dict, not {type(spec).__name__}")
        recorder = recorder_for()
        if recorder is None:
            raise ConfigError("notebook context needs the extension: run %load_ext nb_claude")
        try:
            made = notebook_context(spec, recorder=recorder, settings=self.settings,
                                    session=self.name)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return made, functools.partial(recorder.mark, self.name, recorder.newest)

    def _close_turn(self, turn: Turn, index: int | None, view: View | None,
                    event: str) -> None:
        super()._close_turn(turn, index, view, event)
        if any(t is turn for t in self.history):
            _recorded.turn = True

    # -- many items -------------------------------------------------------
    def map(self, template: str, items: object, *, schema: object = None,
            concurrency: int = 8, attach: object = None, confirm: bool = False,
            system: str | None = None, model: str | None = None,
            max_tokens: int | None = None, view: Any = None,
            cancel: CancelToken | None = None, replay: str | None = None) -> Any:
        """Ask `template`, filled from each item, as independent requests (see
        `nb_claude.map`); progress shows in the notebook or terminal unless `view` is given."""
        from ._batch import Batch

        batch = Batch(self, template, items, schema=schema, attach=attach,
                      concurrency=concurrency, system=system, model=model,
                      max_tokens=max_tokens, replay=replay, namespace=_user_namespace())
        return batch.run(view=view if view is not None else batch_view(), cancel=cancel,
                         confirm=confirm)

    # -- export -----------------------------------------------------------
    def to_markdown(self) -> str:
        """The conversation as Markdown."""
        from ._render import session_markdown

        return session_markdown(self)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the whole conversation, attachments included, as JSON."""
        from ._export import save_session

        with self._lock:
            return save_session(self, path)

    @_class_or_instance
    def load(cls: type[Session], self: Session | None, path: str | os.PathLike[str]) -> Session:
        """`Session.load(path)` makes a new session; `session.load(path)` replaces its history."""
        from ._export import load_turns

        name, turns = load_turns(path)
        session = self if self is not None else cls(name)
        with session._lock:
            session.history[:] = turns
        session._emit("reset", None)
        return session

    def to_notebook(self, path: str | os.PathLike[str]) -> Path:
        """Write an .ipynb with a Markdown cell per turn (images as cell attachments)."""
        from ._export import write_notebook

        with self._lock:
            return write_notebook(self, path)

    def to_report(self, path: str | os.PathLike[str], *, json: bool = False,
                  prompts: bool = False) -> Path:
        """Write a methods appendix (Markdown, or JSON with json=True); no key, no prompts."""
        from ._report import write_report

        with self._lock:
            return write_report(self, path, as_json=json, prompts=prompts)


def _ask_on_stdin(name: str, arguments: str) -> bool:
    """The default confirmer: ask on the cell's stdin, where there is one."""
    if threading.current_thread() is not threading.main_thread():
        raise CannotAsk("no way to ask outside the notebook's main thread (as in the chat "
                        "panel); run the prompt in a cell with --confirm")
    try:
        answer = input(f"Run tool {name}({arguments[:200]})? [y/N] ")
    except (EOFError, NotImplementedError):  # NotImplementedError: StdinNotImplementedError
        raise CannotAsk(NO_STDIN) from None
    return answer.strip().lower() in ("y", "yes")


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


# -- the notebook's context -------------------------------------------------

# Whether the turn `ask` is sending in this thread entered the history: only then has its
# prompt been sent, and only then does "since-last" move.
_recorded = threading.local()


def context_dict(context: Context, missing: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """A built `Context` as `Turn.context` holds it; {} when there is nothing to say."""
    if not context.text and not missing:
        return {}
    return {"text": context.text, "summary": context.summary if context.text else "",
            "items": [{"label": i.label, "tokens": i.tokens, "text": i.text}
                      for i in context.items],
            "missing": list(missing)}


def notebook_context(spec: object = "since-last", *, recorder: ContextRecorder | None = None,
                     shell: Any = None, settings: Settings | None = None,
                     session: str = "default") -> dict[str, Any]:
    """`Turn.context` for the cells `spec` names ("since-last" for `session`, "none", N,
    "A-B", "all"), within `settings.context_budget`; a bad spec raises ValueError. Moves no
    "since-last": the session does once the prompt is sent."""
    from ._capture import out_text
    from ._context import build, select

    if spec is True:
        spec = "since-last"
    if not isinstance(spec, (str, int)) or isinstance(spec, bool):
        raise ValueError(f"not a cell selection: {spec!r}")
    recorder = recorder if recorder is not None else recorder_for(shell)
    if recorder is None:
        select([], spec, None)  # still refuses a bad spec
        return {}
    from ._config import settings as defaults

    chosen = select(recorder.records, spec, recorder.since(session))
    source = recorder.shell
    built = build(chosen, budget_tokens=(settings or defaults).context_budget,
                  out_text=lambda n: out_text(source, n))
    return context_dict(built)


def prompt_references(prompt: str, namespace: Mapping[str, Any],
                      settings: Settings | None = None
                      ) -> tuple[str, list[tuple[str, Any]], list[str], dict[str, str]]:
    """(the prompt as sent, `("@name", attachment)` pairs, names not defined, {name: why not}
    for defined values `--attach` refuses) for the `@name` references in `prompt`.

    `@pd` in prose is often just a word: a value that cannot be attached stays text.
    `\\@name` is sent as `@name`.
    """
    from ._config import settings as defaults
    from ._content import AttachmentError, attachment_from
    from ._context import find_references, unescape_references
    from ._kinds import type_name

    cfg = settings or defaults
    found, missing = find_references(prompt, namespace)
    attached: list[tuple[str, Any]] = []
    refused: dict[str, str] = {}
    for name in found:
        value = namespace[name]
        try:
            made = attachment_from(value, name=f"@{name}",
                                   max_image_edge=cfg.max_image_edge,
                                   dataframe_budget=cfg.dataframe_budget)
        except AttachmentError:
            refused[name] = type_name(value)
        else:
            attached.append((f"@{name}", made))
    return unescape_references(prompt), attached, missing, refused


def with_missing(context: dict[str, Any], missing: list[str],
                 refused: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`context` noting the `@names` that were not defined, and those defined but not
    attachable (name: its type)."""
    if not missing and not refused:
        return context
    noted = {"text": "", "summary": "", "items": [], **context, "missing": list(missing)}
    if refused:
        noted["not_attachable"] = dict(refused)
    return noted


_sessions: dict[str, Session] = {}
_sessions_lock = threading.Lock()


def map(template: str, items: object, *, schema: object = None, concurrency: int = 8,
        attach: object = None, session: Session | str | None = None, confirm: bool = False,
        system: str | None = None, model: str | None = None, max_tokens: int | None = None,
        view: Any = None) -> Any:
    """Run Claude over every item: `template` filled from each DataFrame row (`{column}`),
    Series or list value (`{}` or `{item}`) or dict (`{key}`), as concurrent, independent
    requests sharing the session's system prompt, model and options.

    Returns a DataFrame aligned with the input's index: one column per `schema` field (or
    `reply` for plain text) plus `error`, empty when the item succeeded (a list of dicts
    where pandas is not installed). Every answer is recorded in the replay file as it
    arrives, so a re-run sends only what is missing. An estimate above
    `ClaudeMagics.batch_confirm_usd` raises unless `confirm=True`. A kernel interrupt
    stops what is in flight and returns what finished.
    """
    chosen = session if isinstance(session, Session) else get_session(session or "default")
    return chosen.map(template, items, schema=schema, concurrency=concurrency, attach=attach,
                      confirm=confirm, system=system, model=model, max_tokens=max_tokens,
                      view=view)


def batch_view(shell: Any = None) -> Any:
    """The progress view for a batch: a widget bar in a notebook, a text line in a
    terminal, nothing elsewhere."""
    from ._batch_view import view_for

    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return view_for(None)
        shell = get_ipython()
    return view_for(shell)


def _user_namespace() -> Mapping[str, Any] | None:
    """The notebook's variables (a schema may be given by name), if running in IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return None if shell is None else shell.user_ns


def get_session(name: str = "default") -> Session:
    """The named session shared by magics, panels and Python code in this kernel."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("a session name must be non-empty text")
    with _sessions_lock:
        session = _sessions.get(name)
        if session is None:
            session = _sessions[name] = Session(name)
        return session


def sessions() -> dict[str, Session]:
    return dict(_sessions)
