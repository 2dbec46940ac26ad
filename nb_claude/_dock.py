"""The chat panel docked beside the notebook, in JupyterLab's right-hand side area.

The optional `sidecar` package puts an Output widget in the side area; the panel shown
in it is an ordinary `ChatPanel`, so every turn of its session appears there, whoever
started it (a cell, `%claude_fix`, the error button, another panel). One dock per
session: docking again shows the same panel in a fresh side tab, so a closed or hidden
tab comes back and side tabs never pile up. The front end counts the panel's views
(`_view_count`); when the user closes the side tab the last view goes, and the kernel
closes the dock too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._panel import ChatPanel
    from ._session import Session

__all__ = ["dock", "docked_panel", "close_docked", "NO_SIDE_AREA", "NO_SIDECAR"]

NO_SIDE_AREA = ("the chat opens here: this front end (VS Code or Colab) has no side area "
                "for widgets; open the notebook in JupyterLab to dock it")
NO_SIDECAR = ("the chat opens here: docking it beside the notebook needs the sidecar "
              "package (pip install sidecar, then restart the kernel and reload the page)")
DOCKED = ("Claude chat (session {name}) is docked in JupyterLab's right side area (Notebook 7 "
          "has none for it: there the panel opens here). Not there? Docking needs sidecar "
          "where JupyterLab runs (pip install sidecar, reload the page); or use %claude_chat.")
# The same chat in the cell's output, shown only on Notebook 7's notebook page (its <body>
# says data-notebook="notebooks"), where sidecar cannot make a side view: the kernel cannot
# tell the two front ends apart, the page can, with CSS alone.
_FALLBACK_STYLE = """<style>
.nbc-dock-fallback { display: none !important; }
body[data-notebook="notebooks"] .nbc-dock-fallback { display: flex !important; }
</style>"""
SIDE_HEIGHT = "calc(100vh - 300px)"  # the transcript fills the side area, not 460 px of it
# The side area is narrow: no frame, rows wrap and the fixed-width dropdowns shrink.
_STYLE = """<style>
.nbc-panel.nbc-docked { max-width: none; border: 0; border-radius: 0; padding: 4px 8px 8px;
  box-sizing: border-box; width: 100%; }
.nbc-docked .nbc-header, .nbc-docked .nbc-controls { flex-wrap: wrap; gap: 4px; }
.nbc-docked .nbc-title { flex: 1 0 100%; }
.nbc-docked .nbc-model { flex: 1 1 120px; width: auto !important; min-width: 0; }
.nbc-docked .nbc-attach { flex: 1 1 100%; width: auto !important; min-width: 0; }
</style>"""


class _Dock:
    """A session's docked panel and the side-area widget showing it."""

    def __init__(self, panel: ChatPanel, side: Any) -> None:
        self.panel = panel
        self.side = side
        # Whether a front end has shown the panel since it was (re)docked: only then does
        # a view count of 0 mean the user closed the tab (re-docking removes the old
        # tab's view before or after the new one appears).
        self.seen = False
        panel.observe(self._views, names="_view_count")
        _fill(side, panel)

    @property
    def open(self) -> bool:
        return self.panel.comm is not None and self.side.comm is not None

    def show(self, side: Any) -> None:
        """Put the panel in a new side widget, then close the old one."""
        old, self.side, self.seen = self.side, side, False
        _fill(side, self.panel)
        old.close()

    def close(self) -> None:
        self.panel.unobserve(self._views, names="_view_count")
        self.side.close()
        self.panel.close()

    def _views(self, change: dict[str, Any]) -> None:
        count = change["new"]
        if not isinstance(count, int):
            return
        if count > 0:
            self.seen = True
        elif self.seen and _docks.get(self.panel.session.name) is self:
            close_docked(self.panel.session.name)


_docks: dict[str, _Dock] = {}


def docked_panel(session_name: str = "default") -> ChatPanel | None:
    """The open docked chat panel of the session, or None (never docked, or closed)."""
    found = _docks.get(session_name)
    return found.panel if found is not None and found.open else None


def close_docked(session_name: str = "default") -> bool:
    """Close the session's docked panel and its side tab; False if none was open."""
    found = _docks.pop(session_name, None)
    if found is None:
        return False
    found.close()
    return True


def dock(session: Session, *, shell: Any = None, plots: Any = None, recorder: Any = None,
         side_area: bool = True) -> ChatPanel | None:
    """Show the session's chat panel in the right side area (a note says so, and a copy in
    the cell shows only on Notebook 7's page) and return None; where it cannot be docked,
    return a panel to show inline after a note saying why and what to do."""
    import ipywidgets as widgets

    from ._fix_flow import note
    from ._markdown import code_span
    from ._panel import ChatPanel

    side_class = _sidecar() if side_area else None
    if side_class is None:
        note(NO_SIDECAR if side_area else NO_SIDE_AREA)
        return ChatPanel(session, shell=shell, plots=plots, recorder=recorder)
    title = "Claude" if session.name == "default" else f"Claude · {session.name}"
    side = side_class(title=title, anchor="right")
    found = _docks.get(session.name)
    if found is not None and (not found.open or found.panel.session is not session):
        close_docked(session.name)
        found = None
    if found is None:
        # A view count of 0 (not None) asks the front end to report the panel's views.
        panel = ChatPanel(session, shell=shell, plots=plots, recorder=recorder, _view_count=0)
        panel.add_class("nbc-docked")
        panel.children = (widgets.HTML(_STYLE), *panel.children)  # closed with the panel
        panel.view.layout.max_height = SIDE_HEIGHT
        _docks[session.name] = _Dock(panel, side)
    else:
        found.panel.refresh_attachables()
        found.show(side)
    note(DOCKED.format(name=code_span(session.name)))
    from IPython.display import display

    inline = ChatPanel(session, shell=shell, plots=plots, recorder=recorder)
    display(widgets.VBox([widgets.HTML(_FALLBACK_STYLE), inline],
                         _dom_classes=("nbc-dock-fallback",)))
    return None


def _fill(side: Any, panel: ChatPanel) -> None:
    """Show `panel` as the only output of the side widget (an ipywidgets Output)."""
    side.outputs = ({"output_type": "display_data", "metadata": {},
                     "data": panel._repr_mimebundle_()},)


def _sidecar() -> Any:
    """sidecar's `Sidecar` class, or None when the package is not installed."""
    try:
        from sidecar import Sidecar
    except ImportError:
        return None
    return Sidecar
