"""Typed answers from Python: `session.ask(prompt, schema=...)` against the stand-in, the one
retry, replay, the `Answer` pieces the batch runner uses, and the stand-in's forced calls."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import random
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any, Literal, NotRequired, TypedDict

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nb_claude import _config
from nb_claude._client import CancelToken
from nb_claude._errors import ConfigError
from nb_claude._session import Session
from nb_claude._stream import Reply, ToolCall
from nb_claude._typed import Answer, AnswerError, answer_for, plain
from nb_claude.testing._replies import example_value, forced_call


class Sentiment(TypedDict):
    """A review's sentiment.

    Args:
        label: the overall tone
    """

    label: Literal["positive", "neutral", "negative"]
    reason: str


@dataclasses.dataclass
class Invoice:
    number: int
    total: float
    issued: dt.date
    paid: bool = False


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Contract(pydantic.BaseModel):
    party: str
    years: int = pydantic.Field(ge=1, le=10)
    tags: list[str]


class Party(pydantic.BaseModel):
    name: str
    role: Literal["buyer", "seller"]


class Deal(pydantic.BaseModel):
    parties: list[Party]
    value: float | None = None


Parties = pydantic.RootModel[list[Party]]

CONTRACT_JSON = {"type": "object",
                 "properties": {"party": {"type": "string"},
                                "kind": {"enum": ["lease", "sale"]},
                                "amount": {"type": "number", "minimum": 0}},
                 "required": ["party", "kind"], "additionalProperties": False}

Level = Literal["low", "high"]


@pytest.fixture
def session(configured: Any) -> Session:
    return Session("typed")


def ask(session: Session, prompt: str, schema: object, **options: Any) -> Reply:
    return session.ask(prompt, schema=schema, display=False, **options)


def sent_tools(server: Any) -> tuple[list[dict[str, Any]], Any]:
    body = server.requests[-1].body
    return body["tools"], body["tool_choice"]


# --- each kind end to end --------------------------------------------------------------

@pytest.mark.parametrize("schema, check", [
    (Sentiment, lambda v: isinstance(v, dict) and v["label"] in ("positive", "neutral",
                                                                  "negative")
     and isinstance(v["reason"], str)),
    (Invoice, lambda v: isinstance(v, Invoice) and isinstance(v.issued, dt.date)
     and isinstance(v.number, int)),
    (Color, lambda v: isinstance(v, Color)),
    (Level, lambda v: v in ("low", "high")),
    (Contract, lambda v: isinstance(v, Contract) and 1 <= v.years <= 10),
    (CONTRACT_JSON, lambda v: v["kind"] in ("lease", "sale") and isinstance(v["party"], str)),
    (list[int], lambda v: isinstance(v, list) and all(isinstance(i, int) for i in v)),
    (Deal, lambda v: isinstance(v, Deal) and all(isinstance(p, Party) for p in v.parties)),
    (Parties, lambda v: isinstance(v, Parties) and all(isinstance(p, Party) for p in v.root)),
], ids=["typeddict", "dataclass", "enum", "literal", "pydantic", "json-schema", "list",
        "pydantic-nested", "pydantic-root"])
def test_each_kind_is_one_forced_tool_and_a_parsed_value(session, server, schema, check):
    reply = ask(session, "Classify this.", schema)
    assert reply.error is None and check(reply.data), reply.data
    assert len(server.requests) == 1  # valid: the turn ends without another request
    tools, choice = sent_tools(server)
    answer = answer_for(schema)
    assert tools == [answer.tool_block()] and tools[0]["name"] == "answer"
    assert tools[0]["input_schema"]["type"] == "object"
    assert choice == {"type": "function", "function": {"name": "answer"}}
    assert "thinking" not in server.requests[-1].body
    # The answer shows as a JSON fence and is consumed: no unanswered call stays.
    shown = json.loads(reply.text.split("```json\n", 1)[1].rsplit("\n```", 1)[0])
    assert shown == plain(reply.data)
    assert reply.tool_calls == [] and reply.finish_reason == "end_turn"
    assert reply.raw_finish_reason in ("tool_calls", "tool_use")
    assert session.history[-1].options["schema"]


def test_a_whole_reply_answers_the_same_way(session, server):
    reply = ask(session, "Classify.", Sentiment, stream=False)
    assert server.requests[-1].body["stream"] is False
    assert reply.error is None and reply.data["label"] in ("positive", "neutral", "negative")


def test_the_shown_json_is_the_parsed_value(session, server):
    server.reply("", tool_calls=[{"name": "answer", "arguments": {
        "number": "7", "total": 3, "issued": "2024-02-29"}}])
    reply = ask(session, "Read the invoice.", Invoice)
    assert reply.data == Invoice(7, 3.0, dt.date(2024, 2, 29))
    fenced = reply.text.split("```json\n", 1)[1].rsplit("\n```", 1)[0]
    assert json.loads(fenced) == {"number": 7, "total": 3.0, "issued": "2024-02-29",
                                  "paid": False}


def test_the_next_request_carries_the_answer_as_text_and_no_tool_blocks(session, server):
    ask(session, "Classify: fine.", Sentiment)
    server.reply("ok")
    plain = session.ask("Why?", display=False)
    assert plain.data is None  # untyped replies have no data
    body = server.requests[-1].body
    assert "tools" not in body and "tool_choice" not in body
    assistant = body["messages"][1]
    assert assistant["role"] == "assistant" and assistant["content"].startswith("```json\n")
    assert "tool_use" not in json.dumps(body["messages"])


def test_untrusted_answer_text_stays_inside_its_fence(session, server):
    nasty = "```\n<script>alert(1)</script>\n````"
    server.reply("", tool_calls=[{"name": "answer",
                                  "arguments": {"label": "neutral", "reason": nasty}}])
    reply = ask(session, "Classify.", Sentiment)
    fence = reply.text.split("json\n", 1)[0]
    assert set(fence) == {"`"} and len(fence) > 4  # longer than any backtick run inside
    assert reply.text.endswith("\n" + fence)
    assert reply.data["reason"] == nasty


# --- the one retry ---------------------------------------------------------------------

def test_an_invalid_answer_is_asked_again_once_with_the_error(session, server):
    server.reply("", tool_calls=[{"name": "answer", "id": "call_bad",
                                  "arguments": {"label": "great", "reason": "x"}}])
    server.reply("", tool_calls=[{"name": "answer",
                                  "arguments": {"label": "positive", "reason": "fixed"}}])
    reply = ask(session, "Classify: great!", Sentiment)
    assert reply.error is None and reply.data == {"label": "positive", "reason": "fixed"}
    assert len(server.requests) == 2
    retry = server.requests[1].body
    assert retry["tool_choice"] == {"type": "function", "function": {"name": "answer"}}
    call, result = retry["messages"][-2:]
    assert call["content"][0] == {"type": "tool_use", "id": "call_bad", "name": "answer",
                                  "input": {"label": "great", "reason": "x"}}
    block = result["content"][0]
    assert block["tool_use_id"] == "call_bad" and block["is_error"] is True
    assert 'answer.label: expected one of "positive", "neutral", "negative", got "great"' \
        in block["content"]
    turn = session.history[-1]
    assert len(turn.steps) == 2 and turn.steps[0].results[0].is_error
    assert turn.usage.input_tokens == sum(s.reply.usage.input_tokens for s in turn.steps)


def test_an_interrupted_retry_keeps_history_and_replay_consistent(configured, server,
                                                                  tmp_path):
    _config.settings.update(replay_mode="auto", replay_path=str(tmp_path / "r.jsonl"))
    session = Session("stopped")
    server.reply("", tool_calls=[{"name": "answer", "arguments": {"label": "great"}}])
    server.reply("", tool_calls=[{"name": "answer", "arguments": {"label": "neutral",
                                                                  "reason": "ok"}}],
                 first_byte_delay=5)
    token = CancelToken()
    box: dict[str, Reply] = {}
    worker = threading.Thread(target=lambda: box.update(
        reply=session.ask("Classify.", schema=Sentiment, display=False, cancel=token)))
    worker.start()
    deadline = time.monotonic() + 5
    while len(server.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    token.cancel()
    worker.join(timeout=5)
    reply = box["reply"]
    assert reply.interrupted and reply.data is None
    # The finished first attempt is kept with its error result; nothing half-written.
    turn = session.history[-1]
    assert [bool(s.results) for s in turn.steps] == [True, False]
    entries = (tmp_path / "r.jsonl").read_text().splitlines()
    assert len(entries) == 1
    # Run again: the first attempt replays, only the retry is asked.
    server.reset()
    again = Session("again").ask("Classify.", schema=Sentiment, display=False)
    assert len(server.requests) == 1 and again.data["label"] in ("positive", "neutral",
                                                                 "negative")
    assert server.requests[0].body["messages"][-1]["content"][0]["is_error"] is True


def test_twice_invalid_is_an_error_on_the_reply(session, server):
    server.reply("", tool_calls=[{"name": "answer", "arguments": {"label": "great"}}])
    server.reply("", tool_calls=[{"name": "answer", "arguments": {"label": "bad"}}])
    reply = ask(session, "Classify.", Sentiment)
    assert len(server.requests) == 2
    assert reply.data is None
    assert reply.error.startswith("no valid answer: ")
    assert "missing key 'reason'" in reply.error and "asked again" in reply.error
    assert "\n" not in reply.error
    # Every call of the turn has a result, so later requests stay well formed.
    assert all(s.results for s in session.history[-1].steps)


def test_a_reply_without_the_call_is_an_error_without_a_retry(session, server):
    server.reply("I would rather not.", finish_reason="refusal")
    reply = ask(session, "Classify.", Sentiment)
    assert len(server.requests) == 1
    assert reply.data is None and "did not call answer (it refused)" in reply.error


# --- what cannot go with a schema ------------------------------------------------------

@pytest.mark.parametrize("options, message", [
    ({"thinking": True}, "--schema cannot go with --thinking"),
    ({"tools": [len]}, "--schema offers only its answer tool"),
    ({"tool_choice": "required"}, "--tool-choice needs --tools"),
])
def test_schema_refuses_thinking_and_tools(session, server, options, message):
    with pytest.raises(ConfigError, match=message):
        ask(session, "Classify.", Sentiment, **options)
    assert server.requests == []


@pytest.mark.parametrize("schema, message", [
    (3, "schema 3 is a value of type int, not a type: use a TypedDict, a dataclass"),
    ("Missing", "schema 'Missing' is a name: pass the type itself"),
    (object, "schema object accepts any value"),
    ({"type": "strin"}, "is not a valid JSON schema"),
    (dict[int, str], "has no JSON form"),
])
def test_unsupported_schemas_say_what_is_supported(session, server, schema, message):
    with pytest.raises(ConfigError, match=message):
        ask(session, "Classify.", schema)
    assert server.requests == []


def test_a_name_is_looked_up_in_the_namespace(session, server):
    namespace = {"models": type("M", (), {"Level": Level}), "Sentiment": Sentiment}
    assert ask(session, "Level?", "models.Level", namespace=namespace).data in ("low", "high")
    assert ask(session, "Tone?", "Sentiment", namespace=namespace).data["label"]
    with pytest.raises(ConfigError, match="models has no attribute 'Nope'"):
        ask(session, "Tone?", "models.Nope", namespace=namespace)
    with pytest.raises(ConfigError, match="unknown schema 'Tone': nothing is named 'Tone'"):
        ask(session, "Tone?", "Tone", namespace=namespace)
    assert len(server.requests) == 2


# --- replay ----------------------------------------------------------------------------

def test_replay_offline_in_strict_mode_gives_the_same_data(configured, server, tmp_path):
    _config.settings.update(replay_mode="auto", replay_path=str(tmp_path / "replay.jsonl"))
    server.reply("", tool_calls=[{"name": "answer", "arguments": {"label": "great"}}])
    first = Session("one").ask("Classify: ok.", schema=Sentiment, display=False)
    second = Session("two").ask("Classify: meh.", schema=Contract, display=False)
    assert len(server.requests) == 3  # the first asked twice
    entries = Path(tmp_path / "replay.jsonl").read_text().splitlines()
    assert len(entries) == 3
    server.reset()
    _config.settings.update(replay_mode="replay")
    again = Session("one").ask("Classify: ok.", schema=Sentiment, display=False)
    again2 = Session("two").ask("Classify: meh.", schema=Contract, display=False)
    assert server.requests == []
    assert again.data == first.data and again2.data == second.data
    assert again.replayed and again.text == first.text


# --- the Answer pieces the batch runner uses -------------------------------------------

def test_answer_interface_for_an_object(server):
    answer = answer_for(Sentiment)
    assert answer.name == "answer" and answer.field_names() == ["label", "reason"]
    assert answer.schema["properties"]["label"]["description"] == "the overall tone"
    assert "A review's sentiment." in answer.tool_block()["description"]
    reply = Reply(tool_calls=[ToolCall("c1", "answer", '{"label": "neutral", "reason": "r"}')],
                  finish_reason="tool_use")
    value = answer.parse(reply)
    assert answer.columns(value) == {"label": "neutral", "reason": "r"}
    bad = Reply(tool_calls=[ToolCall("c1", "answer", '{"label": "meh"}')])
    with pytest.raises(AnswerError) as caught:
        answer.parse(bad)
    messages = answer.retry_messages(bad, caught.value)
    assert [m["role"] for m in messages] == ["assistant", "user"]
    assert messages[0]["content"][0]["type"] == "tool_use"
    result = messages[1]["content"][0]
    assert result["tool_use_id"] == "c1" and result["is_error"] is True
    assert "missing key 'reason'" in result["content"]


def test_answer_interface_for_instances_and_wrapped_values():
    invoice = answer_for(Invoice)
    value = invoice.validate({"number": 1, "total": 2.5, "issued": "2024-01-02"})
    assert invoice.columns(value) == {"number": 1, "total": 2.5,
                                      "issued": dt.date(2024, 1, 2), "paid": False}
    contract = answer_for(Contract)
    model = contract.validate({"party": "A", "years": 2, "tags": []})
    assert contract.field_names() == ["party", "years", "tags"]
    assert contract.columns(model) == {"party": "A", "years": 2, "tags": []}
    aliased = pydantic.create_model("Aliased", kind=(str, pydantic.Field(alias="type")))
    answer = answer_for(aliased)
    assert answer.field_names() == ["type"]
    assert answer.columns(answer.validate({"type": "lease"})) == {"type": "lease"}
    color = answer_for(Color)
    assert color.schema == {"type": "object", "properties": {"value": {
        "type": "string", "enum": ["red", "green"]}}, "required": ["value"],
        "additionalProperties": False}
    assert color.field_names() == ["value"]
    assert color.columns(color.validate({"value": "green"})) == {"value": Color.GREEN}
    with pytest.raises(AnswerError, match="unexpected key 'extra'"):
        color.validate({"value": "red", "extra": 1})
    loose = answer_for({"type": "object", "properties": {"a": {"type": "integer"}}})
    assert loose.columns(loose.validate({})) == {"a": None}


def test_a_reply_without_a_call_retries_with_a_note():
    answer = answer_for(Sentiment)
    reply = Reply(text="It is positive.", finish_reason="end_turn")
    with pytest.raises(AnswerError, match="did not call answer") as caught:
        answer.parse(reply)
    messages = answer.retry_messages(reply, caught.value)
    assert messages[0] == {"role": "assistant",
                           "content": [{"type": "text", "text": "It is positive."}]}
    assert "Answer by calling answer" in messages[1]["content"][0]["text"]
    with pytest.raises(AnswerError, match="not a JSON object"):
        answer.parse(Reply(tool_calls=[ToolCall("c", "answer", "[1, 2]")]))


def test_apply_forces_the_answer_tool_and_drops_thinking():
    answer = answer_for(Color)
    body = answer.apply({"model": "m", "messages": [], "thinking": {"type": "adaptive"},
                         "tools": [{"name": "other"}], "tool_choice": "auto"})
    assert body == {"model": "m", "messages": [], "tools": [answer.tool_block()],
                    "tool_choice": answer.tool_choice_block()}
    assert isinstance(answer, Answer) and answer_for(answer) is answer


# --- JSON-schema dicts without jsonschema ----------------------------------------------

def test_json_schema_dicts_validate_without_jsonschema(monkeypatch):
    monkeypatch.setitem(sys.modules, "jsonschema.validators", None)  # import fails
    answer = answer_for({**CONTRACT_JSON, "$defs": {"tag": {"type": "string", "maxLength": 3}},
                         "properties": {**CONTRACT_JSON["properties"],
                                        "tags": {"type": "array",
                                                 "items": {"$ref": "#/$defs/tag"}}}})
    assert answer._validator is False
    assert answer.validate({"party": "A", "kind": "sale", "tags": ["ab"]})["kind"] == "sale"
    with pytest.raises(AnswerError) as caught:
        answer.validate({"party": 3, "kind": "gift", "amount": -1, "tags": ["long"], "x": 1})
    text = str(caught.value)
    for problem in ("answer.party: expected string", "answer.kind: expected one of",
                    "answer.amount: -1 is out of bounds", "answer.tags[0]: 4 characters",
                    "unexpected key 'x'"):
        assert problem in text, problem
    with pytest.raises(AnswerError, match="missing key 'kind'"):
        answer.validate({"party": "A"})


# --- the stand-in's forced calls -------------------------------------------------------

def _forced_body(answer: Answer, prompt: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": prompt}], "tools": [answer.tool_block()],
            "tool_choice": answer.tool_choice_block()}


class Bounds(dict):
    """JSON-schema keywords for Annotated[...] that can sit in a Union (hashable)."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items())))


_LEAVES = st.sampled_from([str, int, float, bool, dt.date, dt.datetime, Color, Level,
                           Literal[1, 2, 3], Annotated[int, Bounds(minimum=5, maximum=9)],
                           Annotated[str, Bounds(minLength=30)],
                           Annotated[float, Bounds(exclusiveMinimum=0, maximum=1)]])


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(inner.map(lambda t: list[t]), inner.map(lambda t: t | None),
                     inner.map(lambda t: tuple[t, int]), inner.map(lambda t: dict[str, t]))


_HINTS = st.recursive(_LEAVES, _containers, max_leaves=4)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fields=st.lists(_HINTS, min_size=1, max_size=4), optional=st.booleans(),
       prompt=st.text(max_size=20))
def test_the_stand_ins_arguments_fit_typed_dicts(fields, optional, prompt):
    hints = {f"f{i}": (NotRequired[h] if optional and i else h) for i, h in enumerate(fields)}
    schema = TypedDict("Generated", hints)  # type: ignore[operator]
    answer = answer_for(schema)
    call = forced_call(_forced_body(answer, prompt))
    assert call is not None and call["name"] == "answer"
    assert call == forced_call(_forced_body(answer, prompt))  # deterministic
    answer.validate(call["arguments"])


@settings(max_examples=40, deadline=None)
@given(hint=_HINTS, seed=st.integers(0, 2**32))
def test_the_stand_ins_values_fit_wrapped_types_and_agree_with_jsonschema(hint, seed):
    answer = answer_for(hint)
    value = example_value(answer.schema, random.Random(seed), answer.schema)
    answer.validate(value)  # the project's validation of the type
    as_json = answer_for(json.loads(json.dumps(answer.schema)))
    as_json.validate(value)  # jsonschema on the same schema


def test_enum_members_are_chosen_by_the_prompt():
    answer = answer_for(Sentiment)
    labels = {forced_call(_forced_body(answer, f"review {i}"))["arguments"]["label"]
              for i in range(40)}
    assert labels == {"positive", "neutral", "negative"}


def test_forced_calls_only_when_a_tool_is_forced_without_thinking():
    answer = answer_for(Color)
    body = _forced_body(answer, "hi")
    assert forced_call({**body, "tool_choice": "auto"}) is None
    assert forced_call({**body, "tool_choice": "required"})["name"] == "answer"
    assert forced_call({**body, "thinking": {"type": "adaptive"}}) is None
    assert forced_call({**body, "tools": []}) is None
