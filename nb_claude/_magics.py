"""%%claude and friends: argument parsing only; the work is the Session's."""

from __future__ import annotations

import argparse
import functools
import keyword
import os
import re
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import (
    Magics,
    line_cell_magic,
    line_magic,
    magics_class,
    no_var_expand,
)
from IPython.core.magic_arguments import argument
from traitlets import (
    Bool,
    CaselessStrEnum,
    Dict,
    Float,
    Int,
    TraitError,
    Unicode,
    Union,
    observe,
    validate,
)

from . import _config
from ._errors import ConfigError
from ._magic_args import (
    context_options,
    magic_arguments,
    parse,
    protect_questions,
    request_options,
    split_attach,
    split_line,
)
from ._plots import running_cell_number

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

@magics_class
class ClaudeMagics(Magics):
    """Talk to Claude from notebook cells. Defaults are configurable traitlets."""

    model = Unicode(help="Model id for requests.").tag(config=True)
    base_url = Unicode(help="Base URL of the OpenAI-compatible API.").tag(config=True)
    max_tokens = Int(help="max_tokens sent with every request.").tag(config=True)
    system = Unicode(help="Default system prompt.").tag(config=True)
    stream = Bool(help="Stream replies as they are written.").tag(config=True)
    timeout = Float(help="Read timeout in seconds.").tag(config=True)
    first_byte_timeout = Float(help="Seconds to wait for the first byte of a reply.").tag(
        config=True)
    connect_timeout = Float(help="Connect timeout in seconds.").tag(config=True)
    max_retries = Int(help="Retries for failures before any reply arrived.").tag(config=True)
    replay_mode = Unicode(help="auto, replay, record or off.").tag(config=True)
    replay_path = Unicode(help="The replay file (JSON Lines).").tag(config=True)
    replay_tools = CaselessStrEnum(
        ("replay", "run"), default_value="replay",
        help="Tool calls in replayed replies: replay the recorded results, or run them again.",
    ).tag(config=True)
    max_image_edge = Int(help="Longest image edge sent, in pixels.").tag(config=True)
    dataframe_budget = Int(help="Characters for a DataFrame summary.").tag(config=True)
    max_steps = Int(help="Most tool-call rounds per prompt.").tag(config=True)
    confirm_tools = Bool(help="Ask before running each tool call.").tag(config=True)
    updates_per_second = Float(help="Most display updates a second while streaming.").tag(
        config=True)
    prices = Dict(help="USD per million input/output tokens by model, for estimates.").tag(
        config=True)
    context = Union([Int(), Unicode()], default_value=_config.DEFAULT_CONTEXT,
                    help="Cells a prompt carries: since-last, none, all or a number.").tag(
        config=True)
    context_budget = Int(help="Most tokens of notebook context a prompt carries.").tag(
        config=True)
    batch_confirm_usd = Float(help="--each asks for --yes above this estimate, USD.").tag(config=True)
    error_button = Bool(True, help='An "Ask Claude" button under each traceback in a notebook '
                        "(a %claude_fix hint in terminal IPython).").tag(config=True)

    _SETTINGS = ("model", "base_url", "max_tokens", "system", "stream", "timeout",
                 "first_byte_timeout", "connect_timeout", "max_retries", "replay_mode",
                 "replay_path", "replay_tools", "max_image_edge", "dataframe_budget",
                 "max_steps", "confirm_tools", "updates_per_second", "prices", "context",
                 "context_budget", "batch_confirm_usd")
    _ready = False  # set once __init__ has checked the values from config files

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        # Defaults come from the process settings (which read the environment), except
        # where a config file sets them: keyword arguments would override the config.
        config = kwargs["config"] if "config" in kwargs else getattr(shell, "config", None)
        section = config.get("ClaudeMagics") if config is not None else None
        configured = set(section) if isinstance(section, dict) else set()
        for name in self._SETTINGS:
            if name not in configured:
                kwargs.setdefault(name, getattr(_config.settings, name))
        super().__init__(shell=shell, **kwargs)
        for name in self._SETTINGS:
            problem = _setting_problem(name, getattr(self, name))
            if problem is not None:  # from a config file: keep the default so loading works
                import logging

                logging.getLogger("nb_claude").warning(problem)
                self.set_trait(name, getattr(_config.settings, name))
        self._ready = True
        self._push_all()
        self.plots: Any = None
        self.recorder: Any = None  # the shell's ContextRecorder, set by load_ipython_extension
        self.errors: Any = None  # the shell's _error_button.ErrorHook, set there too

    def _push_all(self) -> None:
        for name in self._SETTINGS:
            setattr(_config.settings, name, _setting_value(name, getattr(self, name)))

    @validate(*_SETTINGS)
    def _check_setting(self, proposal: Any) -> Any:
        """Refuse a bad value before it is set: `%config` then prints this one line."""
        name, value = proposal["trait"].name, proposal["value"]
        problem = _setting_problem(name, value) if self._ready else None
        if problem is not None:
            raise TraitError(problem)
        return value

    @observe(*_SETTINGS)
    def _setting_changed(self, change: dict[str, Any]) -> None:
        name = change["name"]
        setattr(_config.settings, name, _setting_value(name, change["new"]))

    # -- helpers ----------------------------------------------------------
    @property
    def _shell(self) -> InteractiveShell:
        """The shell the magics are registered with; magics only run inside one."""
        assert self.shell is not None
        return self.shell

    def _session(self, name: str) -> Any:
        from ._session import get_session

        try:
            return get_session(name)
        except ConfigError as exc:
            raise UsageError(str(exc)) from None

    def _cell_id(self) -> str | None:
        kernel = getattr(self.shell, "kernel", None)
        if kernel is None:
            return None
        try:
            parent = kernel.get_parent("shell")
        except TypeError:
            parent = kernel.get_parent()
        except Exception:
            return None
        metadata = (parent or {}).get("metadata") or {}
        cell_id = metadata.get("cellId")
        return cell_id if isinstance(cell_id, str) and cell_id else None

    def _attachments(self, args: argparse.Namespace) -> list[Any]:
        items: list[Any] = []
        if args.plot is not None:
            if self.plots is None:
                raise UsageError("--plot needs the extension loaded with %load_ext nb_claude")
            from ._content import AttachmentError

            try:
                count = None if args.plot == -1 else args.plot
                items.extend(self.plots.attachments(count,
                                                    max_image_edge=_config.settings.max_image_edge))
            except AttachmentError as exc:
                raise UsageError(f"--plot: {exc}") from None
        for spec in args.attach or []:
            for expr in split_attach(spec):
                items.append((_label(expr), self._evaluate(expr)))
        return items

    def _evaluate(self, expr: str) -> Any:
        """A variable of exactly that name, else an existing file path, else an expression."""
        namespace = self._shell.user_ns
        if expr in namespace:
            return namespace[expr]
        path = _existing_path(expr)
        if path is not None:
            return path
        from ._content import error_line

        try:
            return eval(expr, namespace)  # noqa: S307 - the user's own expression
        except NameError:
            if _path_shaped(expr):
                raise UsageError(f"--attach {expr}: no such file or variable "
                                 f"(files are found relative to {os.getcwd()})") from None
            raise UsageError(f"--attach {expr}: no variable named {expr!r} "
                             "(run the cell that defines it first)") from None
        except Exception as exc:
            if _path_shaped(expr):
                raise UsageError(f"--attach {expr}: no such file (relative to {os.getcwd()}), "
                                 f"and as Python it fails with {error_line(exc)}") from None
            raise UsageError(f"--attach {expr}: {error_line(exc)}") from None

    def _notebook_context(self, args: argparse.Namespace, session: Any) -> dict[str, Any]:
        """`Turn.context` for the cells the options (or `ClaudeMagics.context`) name."""
        from ._session import notebook_context

        if args.no_context and args.cells is not None:
            raise UsageError("--cells and --no-context contradict each other: use one")
        spec = "none" if args.no_context else args.cells if args.cells is not None \
            else session.settings.context
        if args.cells is not None and self.recorder is None:
            raise UsageError("--cells needs the extension loaded with %load_ext nb_claude")
        try:
            return notebook_context(spec, recorder=self.recorder, settings=session.settings,
                                    session=session.name)
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    def _references(self, prompt: str, args: argparse.Namespace, session: Any
                    ) -> tuple[str, list[Any], list[str], dict[str, str]]:
        """(the prompt as sent, its `@name` attachments, the names not defined, the values
        that cannot be attached); a name also given to --attach is attached once, by it."""
        from ._session import prompt_references

        sent, found, missing, refused = prompt_references(prompt, self._shell.user_ns,
                                                          session.settings)
        attached = {expr for spec in args.attach or [] for expr in split_attach(spec)}
        return sent, [(label, value) for label, value in found if label[1:] not in attached], \
            missing, {name: why for name, why in refused.items() if name not in attached}

    # -- magics -----------------------------------------------------------
    @magic_arguments
    @request_options
    @argument("prompt", nargs="*", help="the prompt (line magic only)")
    @no_var_expand  # the prompt goes as typed: code is full of {braces} and $signs
    @line_cell_magic
    def claude(self, line: str, cell: str | None = None) -> Any:
        """Ask Claude. In a cell magic the cell body is the prompt.

        Examples::

            %%claude --plot --attach df
            What does this relationship suggest?

            %claude -m claude-opus-4-8 Summarise the last answer in one line.

            %%claude --schema Sentiment --out label
            Classify the sentiment of this review: "Great value, slow delivery."

        With --schema NAME (a TypedDict, dataclass, Enum, Literal alias, pydantic
        model or JSON-schema dict defined in the notebook) Claude answers by calling
        one forced tool; --out stores the checked value (a dict, instance or member).

        In the line magic only the options above are options; the first other word
        starts the prompt (`%claude -40 C in Fahrenheit?`), and `--` ends the
        options explicitly (`%claude -- --verbose means what?`).
        """
        if cell is None:
            words, prompt = split_line(self.claude.parser, line)
            args = self.claude.parser.parse_args(words)
        else:
            args = parse(self.claude, line)
            if args.prompt:
                raise UsageError("put the prompt in the cell body, not after %%claude "
                                 f"(unexpected: {' '.join(args.prompt)!r})")
            prompt = cell
        return self._ask(args, prompt)

    def _ask(self, args: argparse.Namespace, prompt: str) -> Any:
        if args.each is not None or args.concurrency is not None or args.yes:
            from ._batch_magic import run_each

            return run_each(self, args, prompt)
        session = self._session(args.session)
        if not prompt.strip():
            raise UsageError("the prompt is empty: write a question in the cell")
        if args.out is not None and (not args.out.isidentifier() or keyword.iskeyword(args.out)):
            raise UsageError(f"--out needs a variable name such as answer, not {args.out!r}")
        replay = "record" if args.refresh else args.replay
        options: dict[str, Any] = {
            "model": args.model, "system": args.system, "max_tokens": args.max_tokens,
            "stop": args.stop, "stream": False if args.no_stream else None,
            "thinking": args.thinking, "tools": args.tools, "tool_choice": args.tool_choice,
            "max_steps": args.max_steps, "confirm": True if args.confirm else None,
            "replay": replay, "namespace": self._shell.user_ns,
        }
        if args.replay_tools is not None:
            options["replay_tools"] = args.replay_tools
        if args.schema is not None:
            if args.format == "code":
                raise UsageError("--schema answers with data, not code: drop --format code")
            options["schema"] = args.schema  # looked up in the notebook's namespace
        from ._session import with_missing

        prompt, references, missing, refused = self._references(prompt, args, session)
        attach = self._attachments(args) + references
        context = with_missing(self._notebook_context(args, session), missing, refused)
        cell_id = self._cell_id()
        if args.dry_run:
            try:
                body = session.request_body(prompt, attach=attach, cell_id=cell_id,
                                            context=context, **options)
            except ConfigError as exc:
                raise UsageError(str(exc)) from None
            from IPython.display import display

            from ._render import dry_run_bundle

            display(dry_run_bundle(body, session.attachments(attach), context), raw=True)
            return None
        from ._render import InlineView

        view = InlineView(_config.settings.updates_per_second,
                          fmt="text" if args.format == "text" else "markdown")
        count = running_cell_number(self.shell)
        label = f"cell [{count}] ({_first_words(prompt)})" if count else _first_words(prompt)
        recorder = self.recorder
        # Sent, the prompt moves its session's "since-last" to its own cell.
        on_sent = None if recorder is None else functools.partial(
            recorder.mark, session.name, count if count is not None else recorder.newest)
        try:
            reply = session.ask(prompt, attach=attach, cell_id=cell_id, new=args.new,
                                source="cell", view=view, label=label, context=context,
                                on_sent=on_sent, **options)
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        if args.out is not None:
            self._shell.user_ns[args.out] = reply.data if args.schema else reply.text
        if args.format == "code":
            self._next_cell(reply.text)
        return None

    def _next_cell(self, text: str) -> None:
        from ._fix import first_code_block
        from ._fix_flow import note, offer_code

        code = first_code_block(text)
        if code is None:
            note("No code block in the reply to put in a new cell.")
            return
        offer_code(self._shell, code, inserts_cells=_front_end_inserts_cells(self.shell))

    @magic_arguments
    @context_options
    @argument("--session", default="default", metavar="NAME")
    @line_magic
    def claude_context(self, line: str) -> None:
        """Show the notebook context the next prompt would carry; sends nothing and leaves
        "since-last" where it is."""
        from ._render import context_markdown, context_text
        from ._turns import Turn

        args = parse(self.claude_context, line)
        session = self._session(args.session)
        turn = Turn("", context=self._notebook_context(args, session))
        _show(context_markdown(turn) or "Context: no cells", context_text(turn) or "Context: no cells")

    @magic_arguments
    @argument("--explain", action="store_true", help="explain the error only: no fixed code")
    @argument("--no-context", action="store_true", help="send no notebook cells")
    @argument("--session", default="default", metavar="NAME")
    @argument("cell", nargs="?", type=int, help="the failing cell's number (default: the last)")
    @line_cell_magic
    def claude_fix(self, line: str, cell: str | None = None) -> None:
        """Ask Claude to fix the last failing cell (or cell [N]); the body of %%claude_fix
        adds instructions. The fix is shown as a diff and put in a new cell below, not run."""
        from ._fix_flow import run_fix

        args = parse(self.claude_fix, line)
        run_fix(self._shell, self.recorder, self._session(args.session), number=args.cell,
                explain=args.explain, no_context=args.no_context, extra=cell or "",
                cell_id=self._cell_id(), inserts_cells=_front_end_inserts_cells(self.shell),
                fix_cell=running_cell_number(self.shell))

    @magic_arguments
    @argument("--session", default="default", metavar="NAME", help="session to reset")
    @line_magic
    def claude_reset(self, line: str) -> None:
        """Forget the conversation of a session."""
        args = parse(self.claude_reset, line)
        self._session(args.session).reset()

    @magic_arguments
    @argument("--session", default="default", metavar="NAME")
    @line_magic
    def claude_history(self, line: str) -> None:
        """Show the session's turns as Markdown (plain text in a terminal)."""
        from ._render import session_markdown, session_text

        args = parse(self.claude_history, line)
        session = self._session(args.session)
        _show(session_markdown(session), session_text(session))

    @magic_arguments
    @argument("--session", default="default", metavar="NAME")
    @line_magic
    def claude_usage(self, line: str) -> None:
        """Tokens, replies and cost of a session."""
        from ._render import usage_markdown, usage_text

        args = parse(self.claude_usage, line)
        session = self._session(args.session)
        _show(usage_markdown(session), usage_text(session))

    @magic_arguments
    @argument("--json", action="store_true", help="JSON instead of Markdown")
    @argument("--prompts", action="store_true", help="include the prompts' text")
    @argument("--session", default="default", metavar="NAME")
    @argument("path", nargs="?", help="write the report here (.md, or JSON with --json)")
    @line_magic
    def claude_report(self, line: str) -> None:
        """A methods appendix: per reply its model, date, options, tokens, cost and inputs."""
        from IPython.display import display

        from ._markdown import code_span
        from ._report import report_bundle

        args = parse(self.claude_report, line)
        session = self._session(args.session)
        if args.path:
            written = session.to_report(args.path, json=args.json, prompts=args.prompts)
            _show(f"Report written to {code_span(str(written))}", f"Report written to {written}")
        else:
            display(report_bundle(session, as_json=args.json, prompts=args.prompts), raw=True)

    @line_magic
    def claude_login(self, line: str) -> None:
        """Ask for the API key; it stays in this kernel's memory only."""
        import getpass

        from IPython.core.error import StdinNotImplementedError

        try:
            key = getpass.getpass("AI/ML API key: ")
        except (StdinNotImplementedError, EOFError):
            raise UsageError("this front end cannot ask for input: set AIMLAPI_KEY in the "
                             "environment before starting the kernel") from None
        if not key.strip():
            raise UsageError("no key entered; nothing changed")
        _config.set_api_key(key)
        where = "kernel" if getattr(self.shell, "kernel", None) is not None else "session"
        message = f"Key set for this {where} (kept in memory only)."
        _show(message, message)

    @magic_arguments
    @argument("--dock", action="store_true",
              help="open it beside the notebook, in JupyterLab's right-hand side area "
                   "(needs the sidecar package; elsewhere it opens here, with a note). "
                   "Again: the same panel comes back in a fresh side tab")
    @argument("--session", default="default", metavar="NAME")
    @line_magic
    def claude_chat(self, line: str) -> Any:
        """Open the chat panel on a session, in the cell's output or (--dock) docked on the
        right of JupyterLab, where it stays in view while the notebook scrolls."""
        args = parse(self.claude_chat, line)
        if getattr(self.shell, "kernel", None) is None:
            raise UsageError("%claude_chat needs a notebook front end with widgets (JupyterLab, "
                             "Notebook or VS Code); here use %claude")
        session = self._session(args.session)
        if args.dock:
            from ._dock import dock

            return dock(session, shell=self.shell, plots=self.plots, recorder=self.recorder,
                        side_area=_front_end_inserts_cells(self.shell))
        from ._panel import ChatPanel

        return ChatPanel(session, shell=self.shell, plots=self.plots, recorder=self.recorder)


def _label(expr: str) -> str:
    return expr if len(expr) <= 40 else expr[:37] + "..."


def _setting_value(name: str, value: Any) -> Any:
    """A traitlet's value as `Settings` holds it (prices as tuples)."""
    if name == "prices":
        return {k: tuple(v) for k, v in value.items()}
    return value


def _setting_problem(name: str, value: Any) -> str | None:
    """One line saying why `value` is not valid for setting `name`, or None."""
    check = getattr(_config.settings, "validate", None)  # absent in older _config versions
    if not callable(check):
        return None
    try:
        check(name, _setting_value(name, value))
    except ConfigError as exc:
        return f"ClaudeMagics.{name} not changed: {exc}"
    return None


def _existing_path(expr: str) -> Any:
    """`expr` as a Path when something exists there (a file of any name, a folder, a FIFO)."""
    from pathlib import Path

    try:
        candidate = Path(expr).expanduser()
    except RuntimeError:  # ~name of no known user
        return None
    return candidate if os.path.lexists(candidate) else None


def _path_shaped(expr: str) -> bool:
    from pathlib import Path

    extension = re.fullmatch(r"\.[A-Za-z0-9]{1,10}", Path(expr).suffix)
    return bool(extension) or "/" in expr or os.sep in expr or expr.startswith("~")


def _first_words(text: str, limit: int = 40) -> str:
    line = " ".join(text.split())
    return repr(line if len(line) <= limit else line[: limit - 1] + "…")


def _show(markdown: str, text: str) -> None:
    """Markdown for notebooks, readable text for terminal IPython."""
    from IPython.display import display

    display({"text/markdown": markdown, "text/plain": text}, raw=True)


def _front_end_inserts_cells(shell: Any) -> bool:
    """set_next_input works in Jupyter front ends, not in VS Code or Colab."""
    import os
    import sys

    if not hasattr(shell, "kernel"):
        return True  # terminal IPython pre-fills the next prompt
    return not ("VSCODE_PID" in os.environ or "google.colab" in sys.modules)


__all__ = ["ClaudeMagics", "protect_questions", "running_cell_number"]
