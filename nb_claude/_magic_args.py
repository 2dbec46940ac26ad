"""The options of %%claude and its friends, parsed the IPython way but built lazily.

`%load_ext nb_claude` must stay cheap: the option table is a list of IPython's
`argument` decorators, and the argparse parsers are built at first use.
"""

from __future__ import annotations

import argparse
import re
import shlex
import types
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, construct_parser

__all__ = ["REQUEST_OPTIONS", "CONTEXT_OPTIONS", "magic_arguments", "request_options",
           "context_options", "parse", "split_line", "split_attach", "protect_questions"]

# Which cells a prompt carries: shared by %%claude and %claude_context.
CONTEXT_OPTIONS = [
    argument("--cells", metavar="N|A-B|all",
             help="notebook context: the last N cells run, cells A to B by number, or all "
                  "(default: ClaudeMagics.context, the cells run since the last prompt)"),
    argument("--no-context", action="store_true", help="send no notebook cells"),
]

REQUEST_OPTIONS = [
    argument("-m", "--model", help="model id (default: ClaudeMagics.model)"),
    argument("-s", "--system", help="system prompt for this request"),
    argument("--max-tokens", type=int, metavar="N", help="most tokens the reply may use"),
    argument("--stop", action="append", metavar="SEQ", help="stop sequence (repeatable)"),
    argument("--no-stream", action="store_true", help="wait for the whole reply"),
    argument("--new", action="store_true", help="start a fresh conversation"),
    argument("--session", default="default", metavar="NAME", help="named session"),
    argument("--out", metavar="VAR",
             help="store the reply text in this variable (with --schema: the parsed answer, "
                  "or None when it stayed invalid)"),
    argument("--schema", metavar="NAME",
             help="answer as this type, defined in the notebook: a TypedDict, dataclass, "
                  "Enum, Literal[...] alias, pydantic model or JSON-schema dict; Claude must "
                  "call one forced tool whose input schema it is, and the answer is checked "
                  "(asked again once with the error if invalid)"),
    argument("-f", "--format", choices=("markdown", "text", "code"), default="markdown",
             help="markdown (default), text, or code: put the first code block in a new cell"),
    argument("--dry-run", action="store_true",
             help="show the JSON body that would be sent, and send nothing"),
    argument("-a", "--attach", action="append", metavar="EXPR",
             help="attach a variable, expression or file path (repeatable, or a,b); "
                  "a variable of exactly that name comes first, then an existing file "
                  "(any name: data.csv, Dockerfile), then a Python expression"),
    argument("--plot", nargs="?", const=-1, type=int, metavar="N",
             help="attach the last displayed plot, or those of cell [N]"),
    argument("--tools", metavar="NAMES",
             help="functions the model may call: name,name (as the notebook defines them now) "
                  "or all (every @nb_claude.tool function defined in the notebook)"),
    argument("--tool-choice", metavar="CHOICE", help="auto, none, required or a tool name"),
    argument("--max-steps", type=int, metavar="N", help="most tool-call rounds (default 10)"),
    argument("--confirm", action="store_true", help="ask before each tool call"),
    argument("--thinking", nargs="?", const="adaptive", metavar="N",
             help="extended thinking: adaptive, or a token budget N >= 1024"),
    argument("--replay", metavar="MODE", help="auto, replay, record or off for this cell"),
    argument("--replay-tools", choices=("replay", "run"), metavar="MODE",
             help="replayed tool calls: replay (the recorded results, default) or run (call the "
                  "functions again)"),
    argument("--refresh", action="store_true", help="ask again and re-record this cell"),
    argument("--each", metavar="NAME",
             help="run the prompt over every item of NAME (a DataFrame's rows, a Series, a list "
                  "or a list of dicts), filling {column} / {} from each, as independent "
                  "requests; the result (one row per item: the reply or the --schema fields, "
                  "plus error) goes to --out, default _claude_batch. --attach COLUMN attaches "
                  "a column per item; a kernel interrupt keeps what finished"),
    argument("--concurrency", type=int, metavar="N",
             help="with --each: most requests at once (default 8)"),
    argument("--yes", action="store_true",
             help="with --each: send even when the estimate is over "
                  "ClaudeMagics.batch_confirm_usd"),
]


class _ArgumentMagic:
    """A magic method whose argparse parser, and the help text made from it, are built on
    first use (`%%claude?`, `.parser`, `.__doc__`): IPython's `@magic_arguments()` builds
    them at import, which was most of the cost of `%load_ext nb_claude`.
    """

    def __init__(self, func: Any) -> None:
        vars(self).update(vars(func))  # @argument's decorators, @no_var_expand's flag
        self._func = func
        self._parser: Any = None
        self.__name__ = func.__name__
        self.__qualname__ = func.__qualname__
        self.__module__ = func.__module__
        self.__wrapped__ = func

    @property
    def parser(self) -> Any:
        return self._build()

    @property
    def __doc__(self) -> str | None:  # type: ignore[override]
        self._build()
        return self._func.__doc__

    def _build(self) -> Any:
        if self._parser is None:
            self._parser = construct_parser(self._func)  # also sets the help as its __doc__
        return self._parser

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        return self if instance is None else types.MethodType(self, instance)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._func(*args, **kwargs)


def magic_arguments(func: Any) -> Any:
    """`@magic_arguments()` with the parser built on first use."""
    if not getattr(func, "has_arguments", False):
        func.has_arguments = True
        func.decorators = []
    return _ArgumentMagic(func)


def request_options(func: Any) -> Any:
    for decorator in reversed(REQUEST_OPTIONS + CONTEXT_OPTIONS):
        func = decorator(func)
    return func


def context_options(func: Any) -> Any:
    for decorator in reversed(CONTEXT_OPTIONS):
        func = decorator(func)
    return func


def parse(magic: Any, line: str) -> argparse.Namespace:
    try:
        # IPython's own splitter keeps quotes (-s "Be terse." would send the quotes).
        words = shlex.split(line)
    except ValueError as exc:  # shlex: unbalanced quotes
        raise UsageError(f"could not read the options: {exc}; quote values with spaces") from None
    return magic.parser.parse_args(words)


def _token_end(line: str, start: int) -> int:
    """Where the shell-style word starting at `start` ends (quotes may hold spaces)."""
    i, quote = start, ""
    while i < len(line):
        char = line[i]
        if quote:
            if char == quote:
                quote = ""
            elif char == "\\" and quote == '"':
                i += 1
        elif char in "'\"":
            quote = char
        elif char == "\\":
            i += 1
        elif char.isspace():
            break
        i += 1
    return min(i, len(line))


def _option(parser: argparse.ArgumentParser, name: str) -> argparse.Action | None:
    """The parser's action for an option word, allowing unambiguous --prefixes as argparse does."""
    actions = parser._option_string_actions
    if name in actions:
        return actions[name]
    if not name.startswith("--") or len(name) < 3 or not parser.allow_abbrev:
        return None
    matches = {option: action for option, action in actions.items() if option.startswith(name)}
    if len(set(matches.values())) > 1:
        raise UsageError(f"ambiguous option {name}: could be {', '.join(sorted(matches))}")
    return next(iter(matches.values()), None)


def _unquote(text: str) -> str:
    try:
        return " ".join(shlex.split(text))
    except ValueError as exc:
        raise UsageError(f"could not read the options: {exc}; quote values with spaces") from None


def split_line(parser: argparse.ArgumentParser, line: str) -> tuple[list[str], str]:
    """Split `%claude [options] TEXT` into option words for argparse and the prompt as typed.

    Only the parser's own options are options: the first other word starts the prompt,
    so `%claude -40 C in Fahrenheit?` keeps "-40". `--` ends the options explicitly. A
    misspelt `--long-option` is refused rather than sent (and paid for) as the prompt.
    """
    words: list[str] = []
    position = 0
    while True:
        start = len(line) - len(line[position:].lstrip())
        if start >= len(line):
            return words, ""
        end = _token_end(line, start)
        word = line[start:end]
        if word == "--":
            return words, line[end:].strip()
        if word in ("-h", "--help"):
            raise UsageError("%claude? shows the options (write -- first to send a prompt "
                             "that starts with a dash)")
        name, has_value, attached = word.partition("=")
        action = _option(parser, name) if word.startswith("-") else None
        if action is None:
            if re.match(r"--[A-Za-z]", word):
                raise UsageError(f"unknown option {name}: check the spelling, or put -- before "
                                 "a prompt that starts with a dash")
            return words, line[start:].strip()
        option = max(action.option_strings, key=len)
        position = end
        if has_value:
            words.append(f"{option}={_unquote(attached)}")
        elif action.nargs == 0:
            words.append(option)
        else:
            value_start = len(line) - len(line[position:].lstrip())
            value_end = _token_end(line, value_start)
            value = line[value_start:value_end]
            if value and (action.nargs != "?" or value.isdigit()):
                words.append(f"{option}={_unquote(value)}")
                position = value_end
            else:
                words.append(option)


def split_attach(spec: str) -> list[str]:
    """Comma-separated values, keeping commas inside brackets or quotes."""
    parts, depth, current, quote = [], 0, "", ""
    for char in spec:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        current += char
    parts.append(current.strip())
    return [p for p in parts if p]


_LINE_MAGIC = re.compile(r"^(\s*)%claude\s+(\S.*?)\s*$")


def protect_questions(lines: list[str]) -> list[str]:
    """Input transformer: `%claude What is x?` is a prompt, not a request for help.

    IPython reads a trailing `?` as "show help"; a %claude line is rewritten
    into an explicit call first, so the question mark stays in the prompt.
    """
    if lines and lines[0].lstrip().startswith("%%"):
        return lines
    out = []
    for line in lines:
        match = _LINE_MAGIC.match(line)
        if match and match.group(2).endswith("?") and not line.rstrip().endswith("\\"):
            indent, rest = match.groups()
            line = f"{indent}get_ipython().run_line_magic('claude', {rest!r})\n"
        out.append(line)
    return out
