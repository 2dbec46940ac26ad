"""Remember the images a kernel displayed, so `--plot` can attach a figure already closed.

The inline matplotlib backend closes each figure once it has been shown, so the only
copy left is the PNG it published. `PlotRecorder` wraps the shell's display publisher
and keeps those images, keyed by the cell (execution count) that displayed them.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from ._config import DEFAULT_MAX_IMAGE_EDGE

if TYPE_CHECKING:
    from ._content import Attachment

__all__ = ["PlotRecorder", "running_cell_number"]

# SVG is not recorded: Claude accepts only raster images.
_RECORDED_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")


class PlotRecorder:
    """Remembers the images the kernel displayed, by execution count, so `--plot` can attach a figure the inline backend already closed."""

    def __init__(self, shell: Any, keep_cells: int = 20, max_images_per_cell: int = 20) -> None:
        self.shell = shell
        self.keep_cells = max(1, keep_cells)
        self.max_images_per_cell = max(1, max_images_per_cell)
        self._cells: OrderedDict[int, list[tuple[bytes, str]]] = OrderedDict()
        self._current: int | None = None
        self._publisher: Any = None
        self._wrapper: Any = None
        self._had_own_publish = False
        self._active = False

    def __repr__(self) -> str:
        state = "installed" if self._active else "not installed"
        return f"<PlotRecorder {state}, {len(self._cells)} cells with images>"

    # -- installation

    def install(self) -> None:
        """Start recording: wrap `shell.display_pub.publish`; calling it again does nothing."""
        publisher = self.shell.display_pub
        if self._active and self._publisher is publisher and publisher.publish is self._wrapper:
            return
        if self._active:
            self.uninstall()
        original = publisher.publish
        recorder = self

        def publish(data: Any, *args: Any, **kwargs: Any) -> Any:
            if recorder._active:
                with contextlib.suppress(Exception):  # recording must never break display
                    recorder._record(data)
            return original(data, *args, **kwargs)

        publish.__wrapped__ = original  # type: ignore[attr-defined]
        self._had_own_publish = "publish" in vars(publisher)
        self._publisher, self._wrapper, self._original = publisher, publish, original
        publisher.publish = publish
        self.shell.events.register("pre_run_cell", self._pre_run_cell)
        self.shell.events.register("post_run_cell", self._post_run_cell)
        self._active = True

    def uninstall(self) -> None:
        """Stop recording and restore the publisher's own `publish`."""
        if not self._active:
            return
        self._active = False
        unwrap_publish(self._publisher, self._wrapper, self._original, self._had_own_publish)
        # If something wrapped publish after us, our wrapper stays in its chain but is inert.
        for event, callback in (("pre_run_cell", self._pre_run_cell), ("post_run_cell", self._post_run_cell)):
            with contextlib.suppress(ValueError):
                self.shell.events.unregister(event, callback)
        self._publisher = self._wrapper = None

    def _pre_run_cell(self, info: Any = None) -> None:
        if self._active and self.shell.display_pub is not self._publisher:
            # Something (capture_output, another extension) swapped the publisher in.
            self.install()
        # A provisional key: IPython versions differ on whether execution_count is
        # bumped before or after the cell runs; post_run_cell knows the real number.
        self._current = self.shell.execution_count

    def _post_run_cell(self, result: Any = None) -> None:
        n = getattr(result, "execution_count", None)
        if not isinstance(n, int) or self._current is None:
            return
        if n != self._current and self._current in self._cells:
            images = self._cells.pop(self._current)
            merged = self._cells.pop(n, [])
            merged.extend(i for i in images if i not in merged)
            self._cells[n] = merged[-self.max_images_per_cell :]
        self._current = n

    # -- recording

    def _cell_number(self) -> int:
        running = running_cell_number(self.shell)
        if running is not None:
            return running
        if self._current is not None:
            return self._current
        return int(getattr(self.shell, "execution_count", 0) or 0)

    def _record(self, data: Any) -> None:
        if not isinstance(data, dict):
            return
        images = []
        for mime in _RECORDED_TYPES:
            value = data.get(mime)
            raw = _to_bytes(value)
            if raw:
                images.append((raw, mime))
                break  # one rendering per display: png is preferred
        if not images:
            return
        n = self._cell_number()
        cell = self._cells.pop(n, [])
        for image in images:
            if image not in cell:
                cell.append(image)
        del cell[: -self.max_images_per_cell]
        self._cells[n] = cell  # most recent last
        while len(self._cells) > self.keep_cells:
            self._cells.popitem(last=False)

    # -- queries

    def last(self) -> list[tuple[bytes, str]]:
        """Images (bytes, mime) of the most recent cell that displayed any; [] if none."""
        if not self._cells:
            return []
        return list(next(reversed(self._cells.values())))

    def last_cell(self) -> int | None:
        """Execution count of the most recent cell that displayed an image."""
        return next(reversed(self._cells), None) if self._cells else None

    def for_cell(self, execution_count: int) -> list[tuple[bytes, str]]:
        """Images displayed by cell [execution_count]; [] if none are remembered."""
        return list(self._cells.get(execution_count, []))

    def attachments(self, execution_count: int | None = None, *, max_image_edge: int = DEFAULT_MAX_IMAGE_EDGE) -> list[Attachment]:
        """The images of one cell (default: the latest) as attachments named "plot [N]"."""
        from ._content import AttachmentError, image_attachment

        if execution_count is None:
            n = self.last_cell()
            if n is None:
                raise AttachmentError("no plot has been displayed yet; draw one in a cell, then use --plot")
        else:
            n = execution_count
            if n not in self._cells:
                raise AttachmentError(
                    f"cell [{n}] displayed no image (the last {self.keep_cells} cells with images are kept); "
                    "pick a cell that shows a plot"
                )
        images = self._cells[n]
        out = []
        for i, (data, _mime) in enumerate(images, start=1):
            name = f"plot [{n}]" if len(images) == 1 else f"plot [{n}] #{i}"
            out.append(image_attachment(data, name=name, max_image_edge=max_image_edge))
        return out


def running_cell_number(shell: Any) -> int | None:
    """The In [N] of the cell running now, or None outside a cell that enters the history.

    IPython 9 adds one to `shell.execution_count` before a cell runs, earlier versions
    after it; the running cell's own result holds its number in both.
    """
    result = getattr(getattr(shell, "displayhook", None), "exec_result", None)
    count = getattr(result, "execution_count", None)
    if not isinstance(count, int) or not getattr(getattr(result, "info", None), "store_history",
                                                 True):
        return None
    return count


def _to_bytes(value: Any) -> bytes | None:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        try:
            return base64.b64decode(value)
        except (binascii.Error, ValueError):
            return None
    return None


def unwrap_publish(publisher: Any, wrapper: Any, original: Any, had_own: bool) -> None:
    """Give a display publisher back its own `publish`, if ours is still the one installed."""
    if publisher is not None and vars(publisher).get("publish") is wrapper:
        if had_own:
            publisher.publish = original
        else:
            del publisher.publish
