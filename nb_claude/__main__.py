"""`python -m nb_claude COMMAND`: commands for notebooks outside Jupyter.

    python -m nb_claude verify [--json] [--record] NOTEBOOK.ipynb [...]
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

__all__ = ["main"]


def _verify(argv: Sequence[str]) -> int:
    from ._verify import main as verify

    return verify(argv)


# One entry per command: its one-line description and its runner.
COMMANDS: dict[str, tuple[str, Callable[[Sequence[str]], int]]] = {
    "verify": ("re-run notebooks offline (strict replay) and check every AI cell replays",
               _verify),
}


def usage() -> str:
    lines = ["usage: python -m nb_claude COMMAND [ARGS]", "", "commands:"]
    lines += [f"  {name:<8} {about}" for name, (about, _) in COMMANDS.items()]
    lines += ["", "python -m nb_claude COMMAND --help shows a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help", "help"):
        sys.stdout.write(usage() + "\n")
        return 0
    command = COMMANDS.get(args[0]) if args else None
    if command is None:
        if args:
            sys.stderr.write(f"nb_claude: unknown command {args[0]!r}\n")
        sys.stdout.write(usage() + "\n")
        return 2
    return command[1](args[1:])


if __name__ == "__main__":
    sys.exit(main())
