"""`python -m nb_claude.testing`: serve the stand-in from a shell."""

from __future__ import annotations

import argparse
import sys
import time

from ._server import DEMO_KEY, StandInServer


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 600:
        raise argparse.ArgumentTypeError(f"expected seconds between 0 and 600, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    """Serve the stand-in until interrupted.

    The first line of stdout is the base URL alone (scripts read it); then the two
    settings to paste into the environment of Jupyter or IPython.
    """
    parser = argparse.ArgumentParser(
        prog="python -m nb_claude.testing",
        description="Serve an offline stand-in for the AI/ML API chat-completions endpoint.")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: any free)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the stream quirks")
    parser.add_argument("--no-quirks", action="store_true",
                        help="plain streams: no split writes, keepalives or odd line endings")
    parser.add_argument("--latency", type=_seconds, default=0.0, metavar="SECONDS",
                        help="seconds added to every chat request before it is answered, as a "
                             "distant service would (default: 0)")
    args = parser.parse_args(argv)
    server = StandInServer(seed=args.seed, quirks=not args.no_quirks, host=args.host,
                           port=args.port, latency=args.latency).start()
    sys.stdout.write(f"{server.url}\n"
                     "# Offline stand-in serving; Ctrl-C stops it. Set these where Jupyter or "
                     f"IPython starts (any key works, e.g. offline or {DEMO_KEY}):\n"
                     f"NB_CLAUDE_BASE_URL={server.url}\n"
                     "AIMLAPI_KEY=offline\n")
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
