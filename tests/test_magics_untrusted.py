"""%claude / %%claude with input a user did not mean as code: paths, dashes, bad names, no stdin."""

from __future__ import annotations

import logging
import os
import threading

import pytest

import nb_claude
from nb_claude import _config


def sent(server) -> list:
    return server.requests[-1].body["messages"][-1]["content"]


def usage_error(cell) -> str:
    assert type(cell.error).__name__ == "UsageError", repr(cell.error)
    message = str(cell.error)
    assert "\n" not in message and len(message) < 300, message
    assert "Traceback" not in cell.stdout + cell.stderr
    return message


# --- --attach: a path, a variable or an expression ---------------------------------------------


def test_an_existing_file_wins_over_an_expression_on_a_variable(run, server, tmp_path):
    (tmp_path / "sales.csv").write_text("region,revenue\nn,1\ns,2\n")
    assert run("sales = {'region': ['n', 's']}").error is None
    server.reply("ok")
    cell = run("%%claude --attach sales.csv\nWhat is in the file?")
    assert cell.error is None, cell.error
    document = sent(server)[0]
    assert document["type"] == "document" and document["title"] == "sales.csv"
    assert document["source"]["data"] == "region,revenue\nn,1\ns,2\n"


def test_files_without_an_extension_can_be_attached(run, server, tmp_path):
    for name in ("Dockerfile", "LICENSE", "Makefile"):
        (tmp_path / name).write_text(f"contents of {name}\n")
    server.reply("ok")
    cell = run("%%claude --attach Dockerfile,LICENSE --attach Makefile\nReview these")
    assert cell.error is None, cell.error
    blocks = sent(server)
    assert [b["title"] for b in blocks[:3]] == ["Dockerfile", "LICENSE", "Makefile"]
    assert blocks[1]["source"]["data"] == "contents of LICENSE\n"


def test_a_variable_of_exactly_that_name_wins_over_a_file(run, server, tmp_path):
    (tmp_path / "notes").write_text("the file\n")
    assert run("notes = 'the variable\\nsecond line'").error is None
    server.reply("ok")
    assert run("%%claude --attach notes\nRead").error is None
    assert "the variable\nsecond line" in sent(server)[0]["text"]


def test_a_missing_path_says_no_such_file(run, server):
    assert run("data = 1").error is None
    cell = run("%%claude --attach data/report_q3.csv\nq")
    assert "--attach data/report_q3.csv: no such file or variable" in usage_error(cell)
    assert server.requests == []


def test_the_help_says_which_comes_first(run, ip):
    from IPython.utils.capture import capture_output

    with capture_output() as captured:
        ip.run_line_magic("pinfo", "%%claude")
    text = " ".join((captured.stdout + "".join(str(o.data) for o in captured.outputs)).split())
    assert "a variable of exactly that name comes first, then an existing file" in text


HOSTILE = '''
class ReprLLM:
    def _repr_llm_(self):
        raise RuntimeError("repr_llm exploded")

class ReprPNG:
    def _repr_png_(self):
        raise ValueError("no png today")

class Getattr:
    def __getattr__(self, name):
        raise KeyError(name)

llm_obj, png_obj, getattr_obj = ReprLLM(), ReprPNG(), Getattr()
'''


@pytest.mark.parametrize("name, error", [
    ("llm_obj", "RuntimeError: repr_llm exploded"),
    ("png_obj", "ValueError: no png today"),
    ("getattr_obj", "KeyError: '_repr_llm_'"),
])
def test_an_object_whose_hooks_raise_is_one_line(run, server, name, error):
    assert run(HOSTILE).error is None
    cell = run(f"%%claude --attach {name}\nq")
    message = usage_error(cell)
    assert message.startswith(f"{name}: ") and error in message, message
    assert server.requests == [] and nb_claude.get_session().history == []


def test_a_fifo_is_refused_not_read(run, server, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    def unblock() -> None:  # if the fifo were opened for reading, stop it hanging forever
        if not done.wait(5):
            with open(fifo, "wb"):
                pass

    done = threading.Event()
    threading.Thread(target=unblock, daemon=True).start()
    try:
        cell = run("%%claude --attach pipe\nq")
    finally:
        done.set()
    message = usage_error(cell)
    assert "FIFO" in message and "not a regular file" in message
    assert server.requests == []


def test_a_device_is_refused(run, server):
    cell = run("%%claude --attach /dev/null\nq")
    assert "/dev/null is a device, not a regular file" in usage_error(cell)
    assert server.requests == []


# --- the line magic: only known options are options --------------------------------------------


@pytest.mark.parametrize("line, prompt, body", [
    ("-40 C in Fahrenheit?", "-40 C in Fahrenheit?", {}),
    ("-40 C in Fahrenheit", "-40 C in Fahrenheit", {}),
    ("--max-tokens 100 -40 C in Fahrenheit?", "-40 C in Fahrenheit?", {"max_tokens": 100}),
    ("-v is a flag?", "-v is a flag?", {}),
    ("-- -v is a flag?", "-v is a flag?", {}),
    ("-m claude-opus-4-8 -- --max-tokens is an option?", "--max-tokens is an option?",
     {"model": "claude-opus-4-8"}),
    ("-s 'Be terse.' --stop '###' what's 2+2?", "what's 2+2?",
     {"system": "Be terse.", "stop_sequences": ["###"]}),
    ("--system='Be terse.' --max-tok=50 hi", "hi", {"system": "Be terse.", "max_tokens": 50}),
    ("--stop -x -1 is negative", "-1 is negative", {"stop_sequences": ["-x"]}),
    ("costs $5 and {x} today", "costs $5 and {x} today", {}),
    ("- is a dash", "- is a dash", {}),
    ("-- -h is help?", "-h is help?", {}),
])
def test_line_magic_prompts_are_kept_as_typed(run, server, line, prompt, body):
    assert run("x = 3").error is None
    server.reply("ok")
    cell = run(f"%claude {line}")
    assert cell.error is None, cell.error
    request = server.requests[-1].body
    assert request["messages"][-1]["content"] == prompt
    for key, value in body.items():
        assert request[key] == value


@pytest.mark.parametrize("line, message", [
    ("--bogus hi", "unknown option --bogus: check the spelling, or put -- before"),
    ("--t all hi", "ambiguous option --t"),
    ("-s 'unclosed hi", "could not read the options"),
    ("--", "the prompt is empty"),
    ("--help", "%claude? shows the options"),
    ("-h", "%claude? shows the options"),
])
def test_line_magic_bad_options_are_one_line(run, server, line, message):
    server.reply("never")
    cell = run(f"%claude {line}")
    assert message in usage_error(cell)
    assert server.requests == []


# --- --out is checked before anything is sent ---------------------------------------------------


@pytest.mark.parametrize("name", ["1x", "class", "a.b", "my-var"])
def test_a_bad_out_name_is_refused_before_the_request(run, server, name):
    server.reply("paid for")
    cell = run(f"%%claude --out {name}\nq")
    assert f"--out needs a variable name such as answer, not {name!r}" in usage_error(cell)
    assert server.requests == [] and nb_claude.get_session().history == []


def test_a_good_out_name_still_works(run, server, ip):
    server.reply("stored")
    assert run("%%claude --out reply_text\nq").error is None
    assert ip.user_ns["reply_text"] == "stored"


# --- %claude_login where the front end has no stdin ---------------------------------------------


@pytest.mark.parametrize("error", ["stdin", "eof"])
def test_login_without_stdin_says_to_use_the_environment(run, monkeypatch, error):
    from IPython.core.error import StdinNotImplementedError

    def getpass(prompt: str = "") -> str:
        if error == "stdin":  # what ipykernel raises when the front end sends allow_stdin=False
            raise StdinNotImplementedError("getpass was called, but this frontend does not "
                                           "support input requests.")
        raise EOFError

    monkeypatch.setattr("getpass.getpass", getpass)
    cell = run("%claude_login")
    assert usage_error(cell) == ("this front end cannot ask for input: set AIMLAPI_KEY in the "
                                 "environment before starting the kernel")


# --- text the client cannot encode --------------------------------------------------------------


def test_a_lone_surrogate_in_the_prompt_is_a_usage_error(ip, server):
    from conftest import Cell
    from IPython.utils.capture import capture_output

    server.reply("never")
    with capture_output() as captured:  # not stored: IPython's history cannot encode it either
        result = ip.run_cell("%%claude\nhi \ud800 there", store_history=False)
    cell = Cell(result, captured)
    assert "surrogate" in usage_error(cell).lower()
    assert server.requests == [] and nb_claude.get_session().history == []


# --- settings: new traitlets, validation through %config, --replay-tools ------------------------


def test_new_traitlets_reach_the_settings(run, ip):
    run("%config ClaudeMagics.first_byte_timeout = 7.5")
    run("%config ClaudeMagics.replay_tools = 'RUN'")
    assert _config.settings.first_byte_timeout == 7.5
    assert _config.settings.replay_tools == "run"
    run("%config ClaudeMagics.replay_tools = 'replay'")
    assert _config.settings.replay_tools == "replay"


@pytest.mark.parametrize("assignment, name, shown", [
    ("timeout = 0", "timeout", "timeout"),
    ("base_url = 'api.example.com/v1'", "base_url", "base"),
    ("replay_tools = 'sometimes'", "replay_tools", "replay_tools"),
])
def test_config_refuses_bad_values_in_one_line(run, ip, caplog, assignment, name, shown):
    magics = ip.magics_manager.registry["ClaudeMagics"]
    before = (getattr(magics, name), getattr(_config.settings, name))
    with caplog.at_level(logging.ERROR):
        cell = run(f"%config ClaudeMagics.{assignment}")
    assert cell.error is None and "Traceback" not in cell.stdout + cell.stderr
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0] and shown in errors[0], errors
    assert (getattr(magics, name), getattr(_config.settings, name)) == before


def test_a_bad_value_in_a_config_file_keeps_the_default(configured, caplog):
    from traitlets.config import Config

    from nb_claude._magics import ClaudeMagics

    config = Config()
    config.ClaudeMagics.timeout = 0
    config.ClaudeMagics.max_tokens = 1000
    with caplog.at_level(logging.WARNING, logger="nb_claude"):
        magics = ClaudeMagics(shell=None, config=config)
    assert magics.timeout == configured.timeout > 0 and magics.max_tokens == 1000
    assert any("ClaudeMagics.timeout not changed" in r.getMessage() for r in caplog.records)


def test_replay_tools_option_is_passed_only_when_given(run, server, monkeypatch):
    from nb_claude._session import Session

    seen: list[dict] = []
    original = Session.ask

    def ask(self, prompt, **kwargs):
        seen.append(dict(kwargs))
        kwargs.pop("replay_tools", None)  # the session's own handling is tested elsewhere
        return original(self, prompt, **kwargs)

    monkeypatch.setattr(Session, "ask", ask)
    server.reply("a").reply("b")
    assert run("%%claude --replay-tools run\nq").error is None
    assert run("%%claude\nq2").error is None
    assert seen[0]["replay_tools"] == "run" and "replay_tools" not in seen[1]
    cell = run("%%claude --replay-tools sometimes\nq")
    assert "invalid choice: 'sometimes'" in usage_error(cell)
