"""A stand-in for the AI/ML API chat-completions endpoint, served on 127.0.0.1.

Tests, notebooks and the offline demo talk to it instead of the real service.
It speaks the service's dialect with every quirk of the recorded streams,
validates requests the way the service and Anthropic do, and can be scripted
to fail in each way a client has to survive. Standard library only: nothing
here imports the rest of nb_claude.

    with StandInServer() as server:
        server.reply("Hi!").fault(429, headers={"retry-after": "1"})
        ...  # POST to server.url + "/chat/completions"

Run `python -m nb_claude.testing [--port N]` to serve it from a shell.

    _validate   request validation: the body checks the service makes
    _replies    reply synthesis: scripts, the default reply, ids, usage and cost
    _writers    the JSON and SSE writers, with the service's quirks
    _server     the handler, scripted answers and faults, recorded requests
    _cli        `python -m nb_claude.testing`
"""

from __future__ import annotations

from ._cli import main
from ._replies import DEFAULT_REPLY_LABEL, FAULT_TEXT
from ._replies import _Script as _Script  # tests queue shapes no public method offers
from ._server import DEMO_KEY, WEB_PAGE, RecordedRequest, StandInServer
from ._validate import (
    MAX_IMAGE_BASE64_BYTES,
    MAX_IMAGES,
    MAX_OUTPUT_TOKENS,
    MAX_REQUEST_BYTES,
    MODEL_IDS,
)

__all__ = [
    "StandInServer",
    "RecordedRequest",
    "MODEL_IDS",
    "MAX_REQUEST_BYTES",
    "MAX_IMAGE_BASE64_BYTES",
    "MAX_IMAGES",
    "MAX_OUTPUT_TOKENS",
    "DEFAULT_REPLY_LABEL",
    "FAULT_TEXT",
    "WEB_PAGE",
    "DEMO_KEY",
    "main",
]
