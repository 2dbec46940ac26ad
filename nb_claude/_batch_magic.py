"""`%%claude --each NAME`: the cell body as a template over NAME's items.

Argument handling and display only; `_batch.Batch` does the work. The result goes to
`--out` (default `_claude_batch`) and the cell shows one summary line, not the table: the
progress bar's last line in a notebook, else the magic's own line.
"""

from __future__ import annotations

import argparse
import keyword
from typing import Any

from IPython.core.error import UsageError

from ._errors import ConfigError

__all__ = ["run_each", "DEFAULT_OUT"]

DEFAULT_OUT = "_claude_batch"
# Options of a single prompt that have no meaning for independent items.
_NOT_WITH_EACH = (("new", "--new"), ("tools", "--tools"), ("tool_choice", "--tool-choice"),
                  ("thinking", "--thinking"), ("confirm", "--confirm"), ("plot", "--plot"),
                  ("cells", "--cells"), ("stop", "--stop"), ("replay_tools", "--replay-tools"))


def run_each(magics: Any, args: argparse.Namespace, template: str) -> None:
    """Run `template` over the items `--each` names; store and summarise the result."""
    from ._batch import DEFAULT_CONCURRENCY, Batch
    from ._plots import running_cell_number

    if args.each is None:
        raise UsageError("--concurrency and --yes go with --each NAME (running the prompt over "
                         "NAME's items)")
    for name, flag in _NOT_WITH_EACH:
        if getattr(args, name, None) not in (None, False):
            raise UsageError(f"{flag} does not go with --each (each item is one independent "
                             "request): leave it out")
    if args.format == "code":
        raise UsageError("-f code does not go with --each: the replies go to a table")
    shell = magics._shell
    namespace = shell.user_ns
    if args.each not in namespace:
        raise UsageError(f"--each {args.each}: no variable named {args.each!r} (run the cell "
                         "that defines it first)")
    items = namespace[args.each]
    out = args.out or DEFAULT_OUT
    if not out.isidentifier() or keyword.iskeyword(out):
        raise UsageError(f"--out needs a variable name such as labels, not {out!r}")
    session = magics._session(args.session)
    count = running_cell_number(shell)
    label = f"cell [{count}] (--each {args.each})" if count else f"--each {args.each}"
    try:
        batch = Batch(session, template.strip("\n"), items,
                      schema=getattr(args, "schema", None),
                      attach=_attach(magics, args, items),
                      concurrency=DEFAULT_CONCURRENCY if args.concurrency is None
                      else args.concurrency, system=args.system,
                      model=args.model, max_tokens=args.max_tokens,
                      replay="record" if args.refresh else args.replay, namespace=namespace,
                      cell_id=magics._cell_id(), label=label)
        if args.dry_run:
            _dry_run(batch)
            return
        from ._batch_view import TerminalView, WidgetView
        from ._session import batch_view

        view = batch_view(shell)
        if isinstance(view, TerminalView):
            view.last_line = False  # the magic's line below says it all, with the variable
        result = batch.run(view=view, confirm=args.yes, ask="add --yes", out=out)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    namespace[out] = result
    if not isinstance(view, WidgetView):  # a bar ends as the summary line itself
        _summary(batch, out, result)
    missed = len(batch.pending) if batch.opts.replay == "replay" else 0
    if missed:  # strict replay: a cell with unrecorded items fails, as a single prompt does
        from ._errors import ReplayMissError

        raise ReplayMissError(
            f"{label}: {missed:,} of {len(batch.items):,} items are not in "
            "the replay file (strict replay mode): run the cell with a key and --replay auto "
            f"to record them; {out} holds the others")


def _attach(magics: Any, args: argparse.Namespace, items: object) -> object:
    """`--attach COLUMN` (a column or key of the items), or an expression giving one
    attachment value per item."""
    from ._magic_args import split_attach

    exprs = [expr for spec in args.attach or [] for expr in split_attach(spec)]
    if not exprs:
        return None
    if len(exprs) > 1:
        raise UsageError("with --each, --attach takes one column (or one list with a value "
                         "per item)")
    expr = exprs[0]
    columns = getattr(items, "columns", None)
    if columns is not None and expr in {str(c) for c in columns}:
        return expr
    if isinstance(items, list) and items and isinstance(items[0], dict) and expr in items[0]:
        return expr
    return magics._evaluate(expr)


def _dry_run(batch: Any) -> None:
    """The first item's request as it would be sent, and the estimate for all."""
    from IPython.display import display

    from ._markdown import escape_text
    from ._render import dry_run_bundle

    estimate = batch.prepare()
    first = batch.pending[0][0] if batch.pending else None
    line = f"--each: {estimate.line()}."
    if first is None:
        display({"text/markdown": escape_text(line + " Nothing to send."),
                 "text/plain": line + " Nothing to send."}, raw=True)
        return
    body, attachments = batch.request(first)
    bundle = dry_run_bundle(body, attachments)
    display({"text/markdown": bundle["text/markdown"] + "\n\n"
             + escape_text(f"{line} Shown: item {first}."),
             "text/plain": bundle["text/plain"] + f"\n{line}"}, raw=True)


def _summary(batch: Any, out: str, result: Any) -> None:
    """One line: rows, errors, replayed, tokens, cost, where the result is, and the note."""
    from IPython.display import display

    from ._batch_view import batch_metadata
    from ._markdown import code_span, escape_text

    progress = batch.progress(batch.state or "finished")
    usage = batch.usage
    cost = "" if usage.cost_usd is None else (
        f" · ~${usage.cost_usd:.4f} (estimate)" if usage.estimated else f" · ${usage.cost_usd:.4f}")
    columns = ", ".join(str(c) for c in getattr(result, "columns", ())) or "reply, error"
    errors = f"{progress.errors:,} error{'' if progress.errors == 1 else 's'}"
    not_run = progress.total - progress.done
    facts = (f"{progress.total:,} rows · {errors} · "
             + (f"{not_run:,} not run · " if not_run else "")
             + f"{progress.replayed:,} replayed · {usage.input_tokens:,} tokens in, "
             f"{usage.output_tokens:,} out{cost}")
    note = batch.last_note if batch.state == "stopped" or batch.notes else ""
    display({"text/markdown": f"{code_span(out)} ← {escape_text(facts)} · columns "
                              f"{escape_text(columns)}" + (f"  \n{escape_text(note)}" if note
                                                             else ""),
             "text/plain": f"{out} <- {facts}; columns {columns}" + (f"\n{note}" if note
                                                                     else "")}, raw=True,
            metadata=batch_metadata(progress))
