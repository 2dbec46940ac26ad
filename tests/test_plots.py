"""PlotRecorder in a real IPython shell: images displayed by cells are remembered by cell."""

from __future__ import annotations

import base64
import io

import pytest

pytest.importorskip("matplotlib")
PIL_Image = pytest.importorskip("PIL.Image")

import IPython  # noqa: E402
from IPython.testing.globalipapp import get_ipython  # noqa: E402

from nb_claude._content import AttachmentError, strip_png_metadata  # noqa: E402
from nb_claude._plots import PlotRecorder  # noqa: E402

SETUP = (
    "import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt; "
    "from IPython.display import display, Image, SVG"
)


def _plot_cell(size=(4, 3)) -> str:
    return (
        f"fig = plt.figure(figsize={size}); plt.plot([1, 2]); display(fig); plt.close(fig)"
    )


@pytest.fixture
def ip():
    """The global test shell, rendering matplotlib figures as PNG like the inline backend."""
    from IPython.core.pylabtools import select_figure_formats
    from matplotlib.figure import Figure

    shell = get_ipython() or IPython.get_ipython()  # the first call starts it, later ones return None
    formatter = shell.display_formatter
    saved_types = formatter.active_types
    formatter.active_types = formatter.format_types
    select_figure_formats(shell, {"png"})
    shell.run_cell(SETUP, store_history=True)
    yield shell
    formatter.active_types = saved_types
    formatter.formatters["image/png"].pop(Figure, None)


@pytest.fixture
def recorder(ip):
    rec = PlotRecorder(ip)
    rec.install()
    yield rec
    rec.uninstall()


def _run(ip, code: str) -> int:
    result = ip.run_cell(code, store_history=True)
    result.raise_error()
    return result.execution_count


def test_last_and_for_cell_return_the_displayed_png(ip, recorder):
    assert recorder.last() == []
    n = _run(ip, _plot_cell((4, 3)))
    images = recorder.last()
    assert len(images) == 1
    data, mime = images[0]
    assert mime == "image/png" and data.startswith(b"\x89PNG")
    assert PIL_Image.open(io.BytesIO(data)).size[0] > 100
    assert recorder.for_cell(n) == images
    _run(ip, "x = 1")  # a cell without images does not change last()
    assert recorder.last() == images
    atts = recorder.attachments()
    assert [a.name for a in atts] == [f"plot [{n}]"]
    assert atts[0].kind == "image" and atts[0].data == strip_png_metadata(data)


def test_cells_are_told_apart_and_errors_say_what_to_do(ip, recorder):
    with pytest.raises(AttachmentError, match="no plot has been displayed yet"):
        recorder.attachments()
    first = _run(ip, _plot_cell((4, 3)))
    second = _run(ip, _plot_cell((2, 2)) + "; " + _plot_cell((3, 2)))
    assert second == first + 1
    assert len(recorder.for_cell(first)) == 1 and len(recorder.for_cell(second)) == 2
    assert recorder.last() == recorder.for_cell(second)
    names = [a.name for a in recorder.attachments(second)]
    assert names == [f"plot [{second}] #1", f"plot [{second}] #2"]
    plain = _run(ip, "y = 2")
    with pytest.raises(AttachmentError, match=rf"cell \[{plain}\] displayed no image"):
        recorder.attachments(plain)
    assert recorder.attachments(first, max_image_edge=100)[0].width <= 100


def test_jpeg_raw_bytes_recorded_and_svg_skipped(ip, recorder):
    buf = io.BytesIO()
    PIL_Image.new("RGB", (30, 20), "blue").save(buf, format="JPEG")
    ip.user_ns["jpeg_bytes"] = buf.getvalue()
    n = _run(ip, "display(Image(data=jpeg_bytes, format='jpeg'))")
    assert recorder.for_cell(n) == [(buf.getvalue(), "image/jpeg")]
    m = _run(ip, "display(SVG('<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"4\" height=\"4\"/>'))")
    assert recorder.for_cell(m) == []
    assert recorder.last_cell() == n


def test_inline_backend_figures_closed_at_cell_end_are_recorded(ip, recorder):
    pytest.importorskip("matplotlib_inline")
    _run(ip, "%matplotlib inline")
    try:
        n = _run(ip, "plt.plot([3, 1, 2])")
        images = recorder.for_cell(n)
        assert len(images) == 1 and images[0][1] == "image/png"
        assert _run(ip, "len(plt.get_fignums())") == n + 1
        assert ip.user_ns["_"] == 0  # the inline backend closed the figure; the recorder kept it
    finally:
        _run(ip, "matplotlib.use('Agg')")


def test_memory_is_bounded(ip):
    rec = PlotRecorder(ip, keep_cells=3, max_images_per_cell=2)
    rec.install()
    try:
        counts = [_run(ip, _plot_cell((1, 1))) for _ in range(5)]
        assert [n for n in counts if rec.for_cell(n)] == counts[-3:]
        n = _run(ip, "; ".join(_plot_cell((1 + i / 10, 1)) for i in range(4)))
        assert len(rec.for_cell(n)) == 2
    finally:
        rec.uninstall()


def test_install_is_idempotent_and_uninstall_restores_publish(ip):
    pub = ip.display_pub
    before = pub.publish
    rec = PlotRecorder(ip)
    rec.install()
    wrapped = pub.publish
    rec.install()
    assert pub.publish is wrapped and wrapped is not before
    n = _run(ip, _plot_cell())
    assert len(rec.for_cell(n)) == 1  # recorded once, not twice
    rec.uninstall()
    assert pub.publish == before  # (the extension loaded by other tests may have its own wrapper)
    m = _run(ip, _plot_cell())
    assert rec.for_cell(m) == []
    rec.uninstall()  # a second uninstall is harmless


def test_a_failing_recorder_never_breaks_display(ip):
    from IPython.core.displaypub import CapturingDisplayPublisher

    saved = ip.display_pub
    ip.display_pub = capturing = CapturingDisplayPublisher()
    rec = PlotRecorder(ip)
    rec.install()
    try:
        rec._cells = None  # recording now raises inside the hook
        bundle = {"text/plain": "still shown", "image/png": base64.b64encode(b"x").decode()}
        ip.display_pub.publish(bundle, metadata={"k": 1})
        assert capturing.outputs[0]["data"] == bundle and capturing.outputs[0]["metadata"] == {"k": 1}
    finally:
        rec._cells = {}
        rec.uninstall()
        ip.display_pub = saved
