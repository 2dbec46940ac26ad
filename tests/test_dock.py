"""`%claude_chat --dock` driven in-process: a real shell, real widgets, the real `sidecar`
package, and the stand-in server; JupyterLab itself is in tests/browser/test_dock_browser.py."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from typing import Any

import ipywidgets as widgets
import pytest
from IPython.core.error import UsageError

from nb_claude import _dock
from nb_claude._dock import NO_SIDE_AREA, NO_SIDECAR, close_docked, docked_panel
from nb_claude._panel import ChatPanel
from nb_claude._session import get_session

sidecar = pytest.importorskip("sidecar")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture
def notebook(ip: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The shell as a notebook kernel sees it (it has a kernel, and no VS Code around)."""
    monkeypatch.setattr(ip, "kernel", types.SimpleNamespace(), raising=False)
    monkeypatch.delenv("VSCODE_PID", raising=False)
    yield ip
    for name in list(_dock._docks):
        close_docked(name)


def open_sidecars() -> list[Any]:
    return [w for w in widgets.widget._instances.values() if isinstance(w, sidecar.Sidecar)]


def report_views(panel: ChatPanel, count: int) -> None:
    """What the front end sends when a view of the panel appears or goes."""
    panel._handle_msg({"content": {"data": {"method": "update",
                                            "state": {"_view_count": count}}},
                       "buffers": []})


def shown_models(outputs: Any) -> list[str]:
    """The model ids of the widgets displayed in a list of outputs."""
    found = []
    for output in outputs:
        data = output.data if hasattr(output, "data") else output["data"]
        if WIDGET_VIEW in data:
            found.append(data[WIDGET_VIEW]["model_id"])
    return found


def test_dock_opens_one_panel_in_the_right_side_area(notebook: Any, run: Any) -> None:
    cell = run("%claude_chat --dock")
    assert cell.error is None
    panel = docked_panel()
    assert isinstance(panel, ChatPanel)
    assert panel.session is get_session("default")
    assert "nbc-docked" in panel._dom_classes
    (side,) = open_sidecars()
    assert (side.title, side.anchor) == ("Claude", "right")
    assert shown_models(side.outputs) == [panel.model_id]
    # The cell shows a one-line note, and a copy of the chat hidden by CSS except on
    # Notebook 7's page, where sidecar cannot show the side view.
    (fallback,) = [widgets.widget._instances[m] for m in shown_models(cell.outputs)]
    assert fallback._dom_classes == ("nbc-dock-fallback",)
    style, inline = fallback.children
    assert "display: none" in style.value and 'body[data-notebook="notebooks"]' in style.value
    assert isinstance(inline, ChatPanel) and inline is not panel
    assert inline.session is panel.session
    assert cell.result.result is None
    assert "docked in JupyterLab's right side area" in cell.markdown
    assert len(cell.markdown.splitlines()) == 1


def test_docking_again_reuses_the_panel_in_a_fresh_side_tab(notebook: Any, run: Any) -> None:
    run("%claude_chat --dock")
    panel = docked_panel()
    assert panel is not None
    (first,) = open_sidecars()
    panel.input.value = "a draft the user typed"
    pd = pytest.importorskip("pandas")
    notebook.user_ns["new_frame"] = pd.DataFrame({"region": ["north"], "revenue": [1.0]})
    run("%claude_chat --dock")
    assert docked_panel() is panel
    (second,) = open_sidecars()
    assert second is not first and first.comm is None  # the old side tab is closed
    assert shown_models(second.outputs) == [panel.model_id]
    assert panel.input.value == "a draft the user typed"
    assert "new_frame" in [name for _, name in panel.attach.options]  # picker refreshed


def test_each_session_has_its_own_dock(notebook: Any, run: Any) -> None:
    run("%claude_chat --dock")
    run("%claude_chat --dock --session review")
    default, review = docked_panel(), docked_panel("review")
    assert default is not None and review is not None and default is not review
    assert review.session is get_session("review")
    assert sorted(side.title for side in open_sidecars()) == ["Claude", "Claude · review"]
    assert docked_panel("never-docked") is None


def test_without_sidecar_the_panel_opens_inline_with_a_note(
        notebook: Any, run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sidecar", None)  # `import sidecar` raises ImportError
    cell = run("%claude_chat --dock")
    assert cell.error is None
    assert isinstance(cell.result.result, ChatPanel)  # the cell's result: shown inline
    notes = [o.data["text/plain"] for o in cell.outputs if WIDGET_VIEW not in o.data]
    assert notes == [NO_SIDECAR]
    assert "pip install sidecar" in NO_SIDECAR
    assert docked_panel() is None
    cell.result.result.close()


def test_in_vs_code_the_panel_opens_inline_with_a_note(
        notebook: Any, run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VSCODE_PID", "4242")
    cell = run("%claude_chat --dock")
    assert isinstance(cell.result.result, ChatPanel)
    assert [o.data["text/plain"] for o in cell.outputs if WIDGET_VIEW not in o.data] == \
        [NO_SIDE_AREA]
    assert open_sidecars() == [] and docked_panel() is None
    cell.result.result.close()


def test_turns_from_cells_and_fixes_show_in_the_docked_panel(
        notebook: Any, run: Any, server: Any) -> None:
    run("%claude_chat --dock")
    panel = docked_panel()
    assert panel is not None
    server.reply(chunks=["Use ", "**groupby**."])
    assert run("%%claude\nHow do I average by group?").error is None
    server.reply(chunks=["The column is spelt `region`: ", "```python\ndf.region\n```"])
    reply = get_session().ask("KeyError: 'regoin' in df.regoin", source="fix", display=False)
    assert reply.text.startswith("The column is spelt")
    shown = panel.markdown
    assert len(shown) == 2
    assert "How do I average by group?" in shown[0] and "**groupby**" in shown[0]
    assert "KeyError: 'regoin'" in shown[1] and "df.region" in shown[1]
    assert [turn.source for turn in get_session().history] == ["cell", "fix"]


def test_closing_the_side_tab_closes_the_dock(notebook: Any, run: Any, server: Any) -> None:
    run("%claude_chat --dock")
    panel = docked_panel()
    assert panel is not None and panel._view_count == 0  # the front end counts its views
    (side,) = open_sidecars()
    report_views(panel, 1)  # the side tab shows the panel
    report_views(panel, 0)  # the user closed the tab
    assert docked_panel() is None
    assert panel.comm is None and side.comm is None
    server.reply(chunks=["still recorded"])
    get_session().ask("after closing", display=False)  # a closed panel no longer listens
    assert len(panel.markdown) == 0 or "after closing" not in panel.markdown[-1]
    run("%claude_chat --dock")
    reopened = docked_panel()
    assert reopened is not None and reopened is not panel
    assert "still recorded" in reopened.markdown[-1]


def test_a_re_dock_does_not_count_the_old_tab_going_as_a_close(
        notebook: Any, run: Any) -> None:
    run("%claude_chat --dock")
    panel = docked_panel()
    assert panel is not None
    report_views(panel, 1)
    run("%claude_chat --dock")
    report_views(panel, 0)  # the old tab's view went before the new one was shown
    assert docked_panel() is panel
    report_views(panel, 1)
    report_views(panel, 0)
    assert docked_panel() is None


def test_close_docked_and_a_closed_panel(notebook: Any, run: Any) -> None:
    assert close_docked() is False
    run("%claude_chat --dock")
    panel = docked_panel()
    assert panel is not None
    assert close_docked() is True
    assert docked_panel() is None and open_sidecars() == []
    run("%claude_chat --dock")
    again = docked_panel()
    assert again is not None
    again.close()  # closed from Python: no longer "the open docked panel"
    assert docked_panel() is None
    run("%claude_chat --dock")
    assert docked_panel() not in (None, again)
    assert len(open_sidecars()) == 1


def test_help_and_bad_input(notebook: Any, run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = notebook.magics_manager.magics["line"]["claude_chat"].__doc__
    assert "--dock" in doc and "sidecar" in doc
    cell = run("%claude_chat --dok")
    assert isinstance(cell.error, UsageError)
    monkeypatch.delattr(notebook, "kernel")
    cell = run("%claude_chat --dock")
    assert isinstance(cell.error, UsageError) and "%claude" in str(cell.error)
    assert open_sidecars() == []
