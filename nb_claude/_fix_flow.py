"""%claude_fix: ask Claude about a failing cell, then show the fix as a diff and put the
fixed code in a new cell below, not run.

The request is an ordinary turn of a session (`session.ask` with source "fix"): it is in
the history, recorded in the replay file and replayed offline like any prompt. The reply
is untrusted text: its code is only extracted (`_fix.proposed_code`), shown escaped
(`_fix.diff_html`) and offered as the next cell; nothing here runs it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from ._capture import ContextRecorder
from ._context import CellRecord

if TYPE_CHECKING:
    from ._fix import FixRequest

__all__ = ["failing_cell", "fix_context", "fix_request", "run_fix"]

NO_FAILING_CELL = "no failing cell to fix: run the cell that fails first"
NO_RECORDER = ("%claude_fix needs the cells this kernel ran: load the extension with "
               "%load_ext nb_claude")
NO_CODE = "No code block in the reply: nothing to put in a new cell."
UNCHANGED = "The proposed code is the failing cell unchanged: no new cell."


def failing_cell(recorder: ContextRecorder, number: int | None = None) -> CellRecord:
    """The recorded cell to fix: cell [number], or the last cell whose error wants help."""
    from ._fix import wants_help

    cells = [r for r in recorder.records if r.kind == "code"]
    if number is None:
        for record in reversed(cells):
            if record.error is not None and wants_help(record.error.type,
                                                       is_nb_claude_usage_error=False):
                return record
        raise UsageError(NO_FAILING_CELL)
    found = [r for r in cells if r.execution_count == number]
    if not found:
        raise UsageError(f"no cell [{number}] among the cells this kernel ran: give the number "
                         "shown in In [N], or no number for the last failing cell")
    if found[-1].error is None:
        raise UsageError(f"cell [{number}] raised no error: nothing to fix")
    return found[-1]


def fix_context(recorder: ContextRecorder, record: CellRecord, session: Any, *,
                no_context: bool = False) -> dict[str, Any]:
    """`Turn.context` for the fix: the cells run before the failing one that the session's
    context setting names (as %%claude would send them), not the failing cell itself, which
    the fix prompt already holds."""
    if no_context:
        return {}
    from ._capture import out_text
    from ._context import build, select
    from ._session import context_dict

    records = recorder.records
    before = next((records[:i] for i in range(len(records) - 1, -1, -1)
                   if records[i] is record), [r for r in records
                                              if r.execution_count < record.execution_count])
    spec = session.settings.context
    spec = "since-last" if spec is True else spec
    try:
        chosen = select(before, spec, recorder.since(session.name))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    shell = recorder.shell
    built = build(chosen, budget_tokens=session.settings.context_budget,
                  out_text=lambda n: out_text(shell, n))
    return context_dict(built)


def fix_request(shell: Any, recorder: ContextRecorder | None, session: Any, *,
                number: int | None = None, explain: bool = False, no_context: bool = False,
                extra: str = "") -> tuple[CellRecord, FixRequest, dict[str, Any]]:
    """(the failing cell, the fix prompt, `Turn.context`): what %claude_fix and the "Ask
    Claude" button send for cell [number] (default: the last failing cell)."""
    if recorder is None:
        raise UsageError(NO_RECORDER)
    from ._fix import fix_prompt

    record = failing_cell(recorder, number)
    request = fix_prompt(record, namespace=shell.user_ns, explain_only=explain, extra=extra)
    return record, request, fix_context(recorder, record, session, no_context=no_context)


def run_fix(shell: Any, recorder: ContextRecorder | None, session: Any, *,
            number: int | None = None, explain: bool = False, no_context: bool = False,
            extra: str = "", cell_id: str | None = None, inserts_cells: bool = True,
            fix_cell: int | None = None) -> Any:
    """Ask for the fix of a failing cell and offer the code of the reply; returns the reply.

    `fix_cell` is the execution count of the cell running %claude_fix (for the label and
    "since-last"); `inserts_cells` whether the front end can put a new cell below.
    """
    from . import _config
    from ._errors import ConfigError
    from ._render import InlineView

    record, request, context = fix_request(shell, recorder, session, number=number,
                                           explain=explain, no_context=no_context, extra=extra)
    assert recorder is not None  # fix_request refuses a missing one
    what = "explain" if explain else "fix"
    label = f"{what} [{record.execution_count}]"
    if fix_cell is not None:
        label = f"cell [{fix_cell}] ({label})"
    # Sent, the request moves its session's "since-last" to its own cell, as %%claude does.
    on_sent = functools.partial(recorder.mark, session.name,
                                fix_cell if fix_cell is not None else recorder.newest)
    view = InlineView(_config.settings.updates_per_second, fmt="markdown")
    try:
        reply = session.ask(request.prompt, cell_id=cell_id, source="fix", view=view,
                            label=label, context=context, on_sent=on_sent,
                            namespace=shell.user_ns)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if not explain and not reply.interrupted and not reply.error:
        offer_fix(shell, record.code, reply.text, inserts_cells=inserts_cells)
    return reply


def offer_fix(shell: Any, old: str, reply_text: str, *, inserts_cells: bool = True) -> None:
    """Show the reply's code as a diff against the failing cell and put it in a new cell
    below (not run); a one-line note when there is no code or no way to insert a cell."""
    from IPython.display import display

    from ._fix import diff_html, proposed_code, unified_diff

    new = proposed_code(reply_text)
    if new is None:
        note(NO_CODE)
        return
    if new.strip() == old.strip():
        note(UNCHANGED)
        return
    display({"text/html": diff_html(old, new), "text/plain": unified_diff(old, new)}, raw=True)
    offer_code(shell, new, inserts_cells=inserts_cells)


def offer_code(shell: Any, code: str, *, inserts_cells: bool) -> None:
    """Put code from a reply in a new cell below, not run; where the front end cannot insert
    cells, show it (fenced, so it stays text) with a one-line note."""
    from IPython.display import display

    from ._render import _fence

    if inserts_cells:
        shell.set_next_input(code, replace=False)
        return
    message = "This front end cannot insert cells: copy the code below."
    display({"text/markdown": f"*{message}*\n\n{_fence(code, 'python')}",
             "text/plain": f"{message}\n\n{code}"}, raw=True)


def note(text: str) -> None:
    from IPython.display import display

    display({"text/markdown": f"*{text}*", "text/plain": text}, raw=True)
