"""Attachments built from real objects and files: figures, images, frames, arrays, PDFs, text."""

from __future__ import annotations

import base64
import io
import json
import sys
import time
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")
PIL_Image = pytest.importorskip("PIL.Image")
matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402

from nb_claude._content import (  # noqa: E402
    MAX_IMAGE_BASE64,
    Attachment,
    AttachmentError,
    attachment_from,
    check_request_limits,
    describe_value,
    image_attachment,
    summarize_dataframe,
)


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _decoded(att: Attachment):
    return PIL_Image.open(io.BytesIO(att.data))


def _figure(w_in: float = 6.4, h_in: float = 4.8, dpi: float = 100) -> Figure:
    fig = Figure(figsize=(w_in, h_in), dpi=dpi)
    ax = fig.subplots()
    ax.scatter(np.arange(50), np.arange(50) ** 0.5)
    ax.set_title("sqrt")
    return fig


# ---------------------------------------------------------------- figures and images


def test_figure_renders_once_within_the_edge_and_leaves_pyplot_alone():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    fig = _figure(40, 30)  # 4000×3000 at its own dpi
    att = attachment_from(fig, name="fig")
    assert att.kind == "image" and att.media_type == "image/png"
    assert max(att.width, att.height) <= 1568 and max(att.width, att.height) >= 1500
    img = _decoded(att)
    assert img.format == "PNG" and img.size == (att.width, att.height)
    assert att.description == f"fig: PNG {att.width}×{att.height}"
    assert plt.get_fignums() == before


def test_small_figure_gets_a_legible_dpi_and_axes_resolve_to_their_figure():
    fig = _figure()
    att = attachment_from(fig.axes[0], name="ax")
    assert (att.width, att.height) == (960, 720)  # 6.4×4.8 in at 150 dpi
    assert attachment_from(np.array(fig.axes, dtype=object), name="axes").sha256 == att.sha256


def test_figure_respects_a_smaller_max_edge():
    att = attachment_from(_figure(10, 5), name="f", max_image_edge=500)
    assert att.width <= 500 and att.width >= 490 and att.height <= 250


def test_huge_image_is_downscaled_under_the_limits():
    rng = np.random.default_rng(1)
    small = rng.integers(0, 255, (60, 90, 3), dtype=np.uint8)
    image = PIL_Image.fromarray(small).resize((9000, 6000), PIL_Image.Resampling.BILINEAR)
    att = attachment_from(image, name="big")
    assert (att.width, att.height) == (1568, 1045)
    assert len(base64.b64encode(att.data)) <= MAX_IMAGE_BASE64
    assert _decoded(att).size == (1568, 1045)
    assert "downscaled from 9000×6000" in att.description


def test_noisy_image_is_reencoded_until_it_fits():
    noise = np.random.default_rng(2).integers(0, 255, (4000, 4000, 3), dtype=np.uint8)
    att = image_attachment(_png(PIL_Image.fromarray(noise)), name="noise.png")
    assert len(base64.b64encode(att.data)) <= MAX_IMAGE_BASE64
    assert (att.width, att.height) == (1568, 1568)
    assert att.media_type == "image/jpeg"  # random pixels cannot fit as PNG
    assert _decoded(att).format == "JPEG"
    assert "converted from PNG" in att.description


def test_alpha_image_flattened_for_jpeg_and_palette_kept_as_png():
    rgba = np.random.default_rng(3).integers(0, 255, (2500, 2500, 4), dtype=np.uint8)
    att = attachment_from(PIL_Image.fromarray(rgba, "RGBA"), name="rgba", max_image_edge=2500)
    assert _decoded(att).mode in ("RGB", "L") and att.media_type == "image/jpeg"
    pal = PIL_Image.new("P", (100, 50))
    att = attachment_from(pal, name="pal")
    assert att.media_type == "image/png" and (att.width, att.height) == (100, 50)


def test_small_images_pass_through_unchanged():
    img = PIL_Image.new("RGB", (300, 200), (10, 200, 30))
    for fmt, mime in [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("GIF", "image/gif"), ("WEBP", "image/webp")]:
        buf = io.BytesIO()
        img.save(buf, format=fmt)
        att = attachment_from(buf.getvalue(), name=f"x.{fmt.lower()}")
        assert att.media_type == mime
        assert att.data == buf.getvalue()
        assert att.to_block() == {
            "type": "image",
            "source": {"type": "base64", "media_type": mime, "data": base64.b64encode(buf.getvalue()).decode()},
        }


def test_bmp_and_tiff_files_become_png(tmp_path):
    img = PIL_Image.new("RGB", (40, 30), (1, 2, 3))
    for ext in ("bmp", "tiff"):
        path = tmp_path / f"pic.{ext}"
        img.save(path)
        att = attachment_from(path, name="ignored")
        assert att.media_type == "image/png" and att.name == f"pic.{ext}"
        assert _decoded(att).getpixel((0, 0)) == (1, 2, 3)


def test_ipython_image_and_image_like_array():
    from IPython.display import Image

    png = _png(PIL_Image.new("RGB", (20, 10), "red"))
    att = attachment_from(Image(data=png), name="img")
    assert att.data == png
    arr = np.zeros((64, 32, 3), dtype=np.uint8)
    att = attachment_from(arr, name="arr")
    assert att.kind == "image" and (att.width, att.height) == (32, 64)


def test_modes_jpeg_and_png_cannot_hold_are_converted():
    deep = np.random.default_rng(4).integers(0, 65535, (3000, 2000), dtype=np.uint16)
    att = attachment_from(PIL_Image.fromarray(deep), name="i16")
    assert (att.width, att.height) == (1045, 1568) and _decoded(att).mode in ("L", "RGB")
    att = attachment_from(PIL_Image.new("CMYK", (2000, 100)), name="cmyk")
    assert _decoded(att).mode in ("RGB", "RGBA") and att.width == 1568


def test_corrupt_image_bytes_are_refused(tmp_path):
    bad = b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20
    with pytest.raises(AttachmentError, match="not a readable image"):
        attachment_from(bad, name="bad")
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0broken")
    with pytest.raises(AttachmentError, match="photo.jpg"):
        attachment_from(path, name="p")


def test_thumbnail_and_token_estimate():
    att = attachment_from(_figure(), name="fig")
    uri = att.thumbnail_data_uri(48)
    assert uri.startswith("data:image/png;base64,")
    thumb = PIL_Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert max(thumb.size) == 48
    assert att.estimate_tokens() == -(-960 * 720 // 750)
    assert attachment_from(pd.DataFrame({"a": [1]}), name="df").thumbnail_data_uri() is None


# ---------------------------------------------------------------- DataFrames


def _odd_frame() -> pd.DataFrame:
    n = 50
    return pd.DataFrame({
        "cat": pd.Categorical(["red", "green", "blue", "red", "red"] * 10),
        "when": pd.date_range("2024-03-01", periods=n, freq="h", tz="Europe/Paris"),
        "count": pd.array([1, None, 3, 4, 5] * 10, dtype="Int64"),
        "flag": pd.array([True, False, None, True, True] * 10, dtype="boolean"),
        "label": pd.array(["a", "b", None, "d", "e"] * 10, dtype="string"),
        "meta": [{"k": i, "tags": [i, i + 1]} for i in range(n)],
        "x": np.linspace(0, 1, n),
        "long": ["word " * 200] * n,
    })


def test_summary_of_odd_dtypes_is_faithful_and_bounded():
    text = summarize_dataframe(_odd_frame(), name="df")
    assert len(text) <= 6000
    assert "50 rows × 8 columns" in text
    assert "cat: category, 0 null, 3 categories" in text
    assert "datetime64[" in text and "Europe/Paris" in text
    assert "count: Int64, 10 null" in text
    assert "flag: boolean, 10 null" in text
    assert "label: string, 10 null" in text
    assert "meta: object" in text
    assert "red 60.0%" in text
    assert "word " * 20 not in text  # long cells are truncated
    assert "x " in text and "0.5" in text  # describe of the numeric column


def test_multiindex_rows_and_columns():
    idx = pd.MultiIndex.from_product([["a", "b"], range(3)], names=["grp", "i"])
    cols = pd.MultiIndex.from_product([["m", "n"], ["lo", "hi"]])
    df = pd.DataFrame(np.arange(24).reshape(6, 4), index=idx, columns=cols)
    text = summarize_dataframe(df)
    assert "MultiIndex 2 levels" in text and "'grp'" in text
    assert "columns: MultiIndex with 2 levels" in text
    assert "m/lo: int64" in text


def test_wide_frame_is_summarised_not_dumped():
    df = pd.DataFrame(np.zeros((3, 10_000)), columns=[f"c{i}" for i in range(10_000)])
    df["c5"] = df["c5"].astype("int64")
    start = time.perf_counter()
    text = summarize_dataframe(df, name="wide")
    assert time.perf_counter() - start < 2
    assert len(text) <= 6000
    assert "3 rows × 10,000 columns" in text
    assert "float64 ×9,999" in text and "int64 ×1" in text
    assert "c9999" in text and "c5000" not in text


def test_empty_frames_and_series():
    assert "0 rows × 0 columns" in summarize_dataframe(pd.DataFrame())
    text = summarize_dataframe(pd.DataFrame({"a": pd.Series([], dtype="float64")}))
    assert "0 rows × 1 columns" in text and "(no rows)" in text
    att = attachment_from(pd.Series([3, 1, 2], name="s"), name="s")
    assert att.object_type == "Series" and att.description == "s: Series 3 values, int64"
    assert "Series s" in att.text() and "mean" in att.text()


def test_dataframe_block_is_a_wrapped_text_block():
    att = attachment_from(pd.DataFrame({"a": [1, 2]}), name="df")
    block = att.to_block()
    assert block["type"] == "text"
    assert block["text"].startswith('<attachment name="df" kind="DataFrame">\n')
    assert block["text"].endswith("\n</attachment>")
    assert att.description == "df: DataFrame 2 × 1"


def test_budget_is_honoured():
    df = pd.DataFrame({f"col_{i}": [f"value {j} " * 5 for j in range(100)] for i in range(30)})
    for budget in (6000, 2000, 800):
        assert len(summarize_dataframe(df, budget=budget)) <= budget


def _big_frame(n: int = 1_000_000) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    data = {f"f{i}": rng.normal(size=n) for i in range(14)}
    data["i"] = rng.integers(0, 100, n)
    data["s"] = rng.choice(["a", "b", "c"], n)
    data["c"] = pd.Categorical(rng.choice(["x", "y"], n))
    data["t"] = pd.date_range("2020", periods=n, freq="min", tz="UTC")
    data["n"] = pd.array(rng.integers(0, 5, n), dtype="Int64")
    data["u"] = [f"row {i}" for i in range(n)]
    return pd.DataFrame(data)


def test_million_row_frame_is_fast_and_small():
    df = _big_frame()
    summarize_dataframe(df.iloc[:100])  # warm up imports
    start = time.perf_counter()
    text = summarize_dataframe(df, name="df")
    elapsed = time.perf_counter() - start
    assert elapsed < 0.5, elapsed
    assert len(text) <= 6000
    assert "1,000,000 rows × 20 columns" in text
    assert "random sample" in text
    assert f"{df['f0'].max():.4g}" in text  # min/max are exact, not sampled
    assert "a ~3" in text  # top values of a low-cardinality string column


def test_nulls_in_float_columns_are_counted_exactly():
    x = np.arange(300_000, dtype="float64")
    x[::7] = np.nan
    text = summarize_dataframe(pd.DataFrame({"x": x}))
    assert f"x: float64, {np.isnan(x).sum():,} null" in text


# ---------------------------------------------------------------- arrays, values, _repr_llm_


def test_ndarray_summary():
    arr = np.arange(1_000_000, dtype="float32").reshape(1000, 1000)
    att = attachment_from(arr, name="a")
    assert att.object_type == "ndarray" and att.description == "a: ndarray 1,000 × 1,000 float32"
    text = att.text()
    assert "stats: min=0 max=999999 " in text  # exact extremes, both of them
    assert "..." in text and len(text) < 3000
    text = attachment_from(np.array([{"k": "v" * 500}] * 100, dtype=object), name="o").text()
    assert "{'k': 'vvv" in text and len(text) < 1500


def test_repr_llm_objects_and_unknown_types():
    class Model:
        def _repr_llm_(self):
            return "linear model, 3 coefficients"

    att = attachment_from(Model(), name="m")
    assert att.to_block()["text"] == '<attachment name="m" kind="Model">\nlinear model, 3 coefficients\n</attachment>'

    class Thing:
        pass

    with pytest.raises(AttachmentError, match="cannot attach a .*Thing"):
        attachment_from(Thing(), name="t")


def test_describe_value_is_bounded_and_text_safe():
    assert describe_value(None) == "None"
    assert describe_value({"a": [1, 2], "b": "x"}) == '{"a": [1, 2], "b": "x"}'
    big = {i: list(range(100)) for i in range(10_000)}
    out = describe_value(big, budget=500)
    assert len(out) <= 500
    assert len(describe_value("x" * 10_000, budget=100)) <= 100
    assert "DataFrame" in describe_value(pd.DataFrame({"a": [1]}))
    assert "ndarray shape=(3,)" in describe_value(np.array([1, 2, 3]))
    assert describe_value(np.float64(2.5)) == "2.5"
    assert describe_value(b"\x89PNG\r\n\x1a\nxxxx") == "<12 bytes, PNG>"
    json.dumps(describe_value({"s": {1, 2}, "t": (1, "a")}))


# ---------------------------------------------------------------- files


def test_text_files_in_several_encodings(tmp_path):
    text = "naïve café – résumé\n" * 3
    (tmp_path / "u8.md").write_text(text, encoding="utf-8")
    (tmp_path / "l1.txt").write_bytes("café crème\n".encode("latin-1"))
    (tmp_path / "u16.csv").write_text("a,b\nπ,2\n", encoding="utf-16")
    (tmp_path / "u16le.log").write_bytes("plain ascii log line\n".encode("utf-16-le"))

    att = attachment_from(tmp_path / "u8.md", name="x")
    assert att.kind == "text" and att.text() == text and att.title == "u8.md"
    assert att.to_block() == {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": text},
        "title": "u8.md",
    }
    att = attachment_from(str(tmp_path / "l1.txt"), name="x")
    assert att.text() == "café crème\n" and "decoded as cp1252" in att.description
    att = attachment_from(tmp_path / "u16.csv", name="x")
    assert att.text() == "a,b\nπ,2\n" and "UTF-16" in att.description
    assert attachment_from(tmp_path / "u16le.log", name="x").text() == "plain ascii log line\n"


def test_binary_junk_is_refused(tmp_path):
    path = tmp_path / "blob.dat"
    path.write_bytes(bytes(np.random.default_rng(5).integers(0, 256, 4096, dtype=np.uint8)))
    with pytest.raises(AttachmentError, match="blob.dat is a binary file"):
        attachment_from(path, name="b")
    with pytest.raises(AttachmentError, match="unrecognised binary"):
        attachment_from(path.read_bytes(), name="b")


def test_missing_file_directory_and_oversize(tmp_path):
    with pytest.raises(AttachmentError, match="file not found: .*nope.csv"):
        attachment_from(tmp_path / "nope.csv", name="x")
    with pytest.raises(AttachmentError, match="is a directory"):
        attachment_from(tmp_path, name="x")
    huge = tmp_path / "huge.csv"
    with open(huge, "wb") as fh:
        fh.truncate(64 * 1024**3)  # sparse: 64 GB that take no disk and could never be read in time
    start = time.perf_counter()
    with pytest.raises(AttachmentError, match=r"huge.csv is 64 GB, over the 32 MB limit"):
        attachment_from(huge, name="x")
    assert time.perf_counter() - start < 0.5
    small = tmp_path / "small.txt"
    small.write_text("x" * 2000)
    with pytest.raises(AttachmentError, match="over the 1,000 bytes limit"):
        attachment_from(small, name="x", max_file_bytes=1000)


def test_audio_and_video_are_refused(tmp_path):
    for name in ("song.mp3", "clip.mp4", "voice.wav", "movie.mov"):
        (tmp_path / name).write_bytes(b"\x00" * 10)
        with pytest.raises(AttachmentError, match="not supported by Claude models"):
            attachment_from(tmp_path / name, name=name)
    wav = b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 40
    with pytest.raises(AttachmentError, match="not supported by Claude models"):
        attachment_from(wav, name="w")
    renamed = tmp_path / "data.bin"
    renamed.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100)
    with pytest.raises(AttachmentError, match="not supported by Claude models"):
        attachment_from(renamed, name="x")
    from IPython.display import Audio

    with pytest.raises(AttachmentError, match="Audio is not supported by Claude models"):
        attachment_from(Audio(data=np.sin(np.arange(800) / 5), rate=8000), name="a")


def test_notebook_images_are_stripped(tmp_path):
    nb = {"cells": [{"cell_type": "code", "source": "plot()", "outputs": [
        {"output_type": "display_data", "data": {"image/png": "A" * 50_000, "text/plain": "<Figure>"}}]}]}
    path = tmp_path / "analysis.ipynb"
    path.write_text(json.dumps(nb))
    att = attachment_from(path, name="nb")
    assert "<image omitted>" in att.text() and "A" * 100 not in att.text()
    assert "plot()" in att.text()


def test_multiline_string_is_sent_as_text():
    att = attachment_from("line one\nline two", name="notes")
    assert att.kind == "text" and att.object_type == "str"
    assert att.to_block()["type"] == "text"


# ---------------------------------------------------------------- PDFs


def _pdf_pages(n: int) -> bytes:
    from matplotlib.backends.backend_pdf import PdfPages

    buf = io.BytesIO()
    with PdfPages(buf) as pdf:
        for i in range(n):
            fig = Figure(figsize=(3, 2))
            fig.text(0.5, 0.5, f"page {i + 1}")
            pdf.savefig(fig)
    return buf.getvalue()


def test_pdf_document_block(tmp_path):
    path = tmp_path / "report.pdf"
    path.write_bytes(_pdf_pages(3))
    att = attachment_from(path, name="ignored")
    assert att.kind == "pdf" and att.pages == 3 and att.title == "report.pdf"
    assert att.description.startswith("report.pdf: PDF, 3 pages")
    block = att.to_block()
    assert block["type"] == "document" and block["title"] == "report.pdf"
    assert block["source"]["media_type"] == "application/pdf"
    assert base64.b64decode(block["source"]["data"]) == path.read_bytes()
    assert att.estimate_tokens() == 3 * 1500


def test_pdf_over_100_pages_and_encrypted_are_refused(tmp_path):
    pypdf = pytest.importorskip("pypdf")
    writer = pypdf.PdfWriter()
    for _ in range(150):
        writer.add_blank_page(width=200, height=200)
    long_pdf = tmp_path / "long.pdf"
    with open(long_pdf, "wb") as fh:
        writer.write(fh)
    with pytest.raises(AttachmentError, match="long.pdf has 150 pages; Claude reads at most 100"):
        attachment_from(long_pdf, name="x")

    writer = pypdf.PdfWriter(clone_from=io.BytesIO(_pdf_pages(2)))
    writer.encrypt("secret", algorithm="RC4-128")
    locked = tmp_path / "locked.pdf"
    with open(locked, "wb") as fh:
        writer.write(fh)
    with pytest.raises(AttachmentError, match="locked.pdf is encrypted"):
        attachment_from(locked, name="x")


def test_pdf_fallback_without_pypdf(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pypdf", None)  # import pypdf now raises ImportError
    att = attachment_from(_pdf_pages(4), name="raw")
    assert att.pages == 4 and att.kind == "pdf"


def test_non_pdf_named_pdf_is_refused(tmp_path):
    path = tmp_path / "fake.pdf"
    path.write_text("just text")
    with pytest.raises(AttachmentError, match="fake.pdf is not a PDF"):
        attachment_from(path, name="x")


# ---------------------------------------------------------------- limits, hashing, persistence


def _image(edge: int, name: str = "i") -> Attachment:
    return Attachment("image", "image/png", b"x", name, name, width=edge, height=edge)


def test_check_request_limits_counts():
    check_request_limits([_image(1568)] * 20)
    check_request_limits([_image(2000)] * 100)
    with pytest.raises(AttachmentError, match="101 images in one request"):
        check_request_limits([_image(100)] * 101)
    with pytest.raises(AttachmentError, match="at most 2000×2000"):
        check_request_limits([_image(1568)] * 20 + [_image(2001, "big")])
    with pytest.raises(AttachmentError, match="over 5 MB"):
        check_request_limits([Attachment("image", "image/png", b"x" * 4_000_000, "n", "n", width=9, height=9)])
    with pytest.raises(AttachmentError, match="32 MB request limit"):
        check_request_limits([Attachment("pdf", "application/pdf", b"x" * 13_000_000, "p", "p", pages=1)] * 2)


def test_sha256_is_stable_and_round_trip_is_exact():
    fig = _figure()
    a = attachment_from(fig, name="fig")
    b = attachment_from(fig, name="fig")
    assert a.sha256 == b.sha256 and len(a.sha256) == 64
    for att in (a, attachment_from(pd.DataFrame({"x": [1.5]}), name="df"), attachment_from(_pdf_pages(1), name="p")):
        d = json.loads(json.dumps(att.to_dict()))
        again = Attachment.from_dict(d)
        assert again == att and again.sha256 == att.sha256 and again.to_block() == att.to_block()
        summary = att.summary()
        assert summary["sha256"] == att.sha256 and summary["bytes"] == len(att.data)
        assert "data" not in summary
    d = a.to_dict()
    d["data"] = base64.b64encode(b"tampered").decode()
    with pytest.raises(AttachmentError, match="corrupt"):
        Attachment.from_dict(d)


def test_content_module_imports_no_heavy_libraries():
    import subprocess

    code = (
        "import sys, nb_claude._content as c; "
        "c.attachment_from('a\\nb', name='t'); "
        "heavy = [m for m in ('pandas', 'numpy', 'matplotlib', 'PIL', 'pypdf', 'IPython', 'ipywidgets') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"


def test_png_text_chunks_are_stripped_so_hashes_do_not_depend_on_library_versions():
    from PIL import PngImagePlugin

    def png(software: str) -> bytes:
        info = PngImagePlugin.PngInfo()
        info.add_text("Software", software)
        buf = io.BytesIO()
        PIL_Image.new("RGB", (20, 10), "green").save(buf, format="PNG", pnginfo=info)
        return buf.getvalue()

    a = attachment_from(png("Matplotlib version3.10.0"), name="a")
    b = attachment_from(png("Matplotlib version3.11.2"), name="b")
    assert a.sha256 == b.sha256 and b"Matplotlib" not in a.data
    assert PIL_Image.open(io.BytesIO(a.data)).size == (20, 10)


def test_one_classifier_names_every_kind_by_type_and_subclass():
    from nb_claude._kinds import IMAGE_KINDS, kind_of

    class Frame(pd.DataFrame):
        pass

    class Hostile:
        def __getattr__(self, name):
            raise KeyError(name)

    fig = _figure()
    cases = {
        "dataframe": Frame({"a": [1]}), "series": pd.Series([1]), "array": np.ma.array([1, 2]),
        "scalar": np.float64(1.5), "figure": fig, "axes": fig.axes[0] if fig.axes else fig.add_subplot(),
        "pil_image": PIL_Image.new("RGB", (2, 2)), "bytes": b"x", "path": Path("a.txt"),
        "text": "a\nb",
    }
    for kind, value in cases.items():
        assert kind_of(value) == kind, kind
    assert kind_of(pd.DataFrame) is None and kind_of(3) is None
    assert kind_of(Hostile(), probe=False) is None  # a namespace scan never runs __getattr__
    with pytest.raises(KeyError):
        kind_of(Hostile())
    assert {"figure", "axes", "pil_image", "ipython_image"} == IMAGE_KINDS
