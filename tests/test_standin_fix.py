"""The stand-in answers a fix request it can answer from the request alone (a missing column
with a close match), so the offline demo shows a fix, a diff and a new cell."""

from __future__ import annotations

from typing import Any

import pytest

from nb_claude._capture import ContextRecorder
from nb_claude.testing._fix_guess import fix_guess
from nb_claude.testing._replies import DEFAULT_REPLY_LABEL

pd = pytest.importorskip("pandas")

SETUP = "import pandas as pd\ndf = pd.DataFrame({'region': ['n', 's'], 'revenue': [1, 2]})"


@pytest.fixture
def inserted(ip: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr(ip, "set_next_input", lambda text, replace=False: calls.append(text))
    return calls


@pytest.mark.parametrize(("failing", "fixed"), [
    ('df.groupby("regoin").revenue.mean()', 'df.groupby("region").revenue.mean()'),
    ("df['revenu'].sum()", "df['revenue'].sum()"),
    ("df.revenu.sum()", "df.revenue.sum()"),
])
def test_unscripted_fix_of_a_misspelt_column(run: Any, server: Any, recorder: ContextRecorder,
                                             inserted: list[str], failing: str,
                                             fixed: str) -> None:
    assert run(SETUP).error is None
    assert run(failing).error is not None
    cell = run("%claude_fix --no-context")
    assert cell.error is None, cell.error
    assert inserted == [fixed]
    reply = server.requests[-1]  # answered by the stand-in's guess, not a script
    assert reply is not None and server.pending() == 0
    text = "".join(o.data.get("text/plain", "") for o in cell.outputs)
    assert f"-{failing}" in text and f"+{fixed}" in text


def test_explain_only_gets_no_code(run: Any, server: Any, recorder: ContextRecorder,
                                   inserted: list[str]) -> None:
    assert run(SETUP).error is None
    assert run('df["regoin"]').error is not None
    cell = run("%claude_fix --explain --no-context")
    assert cell.error is None and inserted == []
    from nb_claude import get_session
    reply = get_session().history[-1].reply.text
    assert reply.startswith(DEFAULT_REPLY_LABEL) and "`region`" in reply and "```" not in reply


def _body(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def test_no_guess_without_a_close_name_or_a_fix_request() -> None:
    prompt = ("Cell In [3] failed. Help me fix it.\n\nThe failing cell, In [3]:\n```python\n"
              "df['zzz']\n```\n\nThe error:\n```\nKeyError: 'zzz'\n```\n\n"
              "all columns: 'region', 'revenue'\n")
    assert fix_guess(_body(prompt)) is None  # nothing close to 'zzz'
    assert fix_guess(_body(prompt.replace("zzz", "regin"))) is not None
    assert fix_guess(_body("Why does df['regin'] fail? all columns: 'region'")) is None
    hostile = prompt.replace("zzz", "regin").replace("'region', 'revenue'", "'reg```n'")
    guess = fix_guess(_body(hostile))
    assert guess is not None and "````python\ndf['reg```n']\n````" in guess  # a longer fence
