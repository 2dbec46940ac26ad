"""Short, faithful text summaries of values: DataFrames, Series, arrays and anything else.

Attachments send these summaries for DataFrames and arrays; tools use `describe_value` for
results that are not plain JSON. Costs are bounded for any size. pandas and numpy are
imported only when such a value is summarised.
"""

from __future__ import annotations

import json
import reprlib
import warnings
from typing import Any

from ._config import DEFAULT_DATAFRAME_BUDGET
from ._kinds import kind_of, sniff, type_name

__all__ = ["clip", "describe_value", "error_line", "size_text", "summarize_array",
           "summarize_dataframe"]


def size_text(n: int) -> str:
    """A byte count for people: `512 bytes`, `1.5 KB`, `32 MB`."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:.1f} {unit}".replace(".0 ", " ")
        n /= 1024  # type: ignore[assignment]
    return f"{n} bytes"  # pragma: no cover


def error_line(exc: BaseException, limit: int = 160) -> str:
    """`Type: message` on one short line, for an error raised by the user's own object."""
    text = " ".join(str(exc).split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def clip(text: str, budget: int) -> str:
    """`text` cut to at most `budget` characters, saying how much was left off."""
    if len(text) <= budget:
        return text
    marker = f"\n… [{len(text) - budget:,} more chars]"
    return text[: max(0, budget - len(marker))] + marker


# ---------------------------------------------------------------------------- values


def describe_value(obj: Any, *, budget: int = DEFAULT_DATAFRAME_BUDGET) -> str:
    """A short, text-safe rendering of any value, for tool results and previews."""
    if kind_of(obj, probe=False) == "scalar":
        obj = obj.item()  # numpy scalars, some of which subclass float and int
    if obj is None or isinstance(obj, (bool, int, float, complex)):
        return repr(obj)
    if isinstance(obj, str):
        return clip(obj, budget)
    kind = kind_of(obj)
    if kind == "bytes":
        data = bytes(obj)
        fmt = sniff(data[:1024])
        return f"<{len(data):,} bytes" + (f", {fmt}" if fmt else "") + ">"
    if kind == "llm_repr":
        try:
            text = obj._repr_llm_()
            if isinstance(text, str):
                return clip(text, budget)
        except Exception:
            pass
        kind = kind_of(obj, probe=False)  # a failed hook: fall back to the type
    if kind in ("dataframe", "series"):
        return summarize_dataframe(obj, budget=budget)
    if kind == "array":
        return summarize_array(obj, budget=budget)
    if isinstance(obj, (dict, list, tuple, set, frozenset)):
        if _small(obj):
            try:
                return clip(json.dumps(obj, ensure_ascii=False, default=_json_default), budget)
            except (TypeError, ValueError):
                pass
        limited = reprlib.Repr()
        limited.maxlevel, limited.maxdict, limited.maxlist, limited.maxtuple = 4, 30, 30, 30
        limited.maxset, limited.maxstring, limited.maxother = 30, 200, 200
        return clip(limited.repr(obj), budget)
    try:
        text = repr(obj)
    except Exception as exc:
        text = f"<{type_name(obj)}: repr failed: {type(exc).__name__}>"
    return clip(text, budget)


def _small(obj: Any, limit: int = 2000) -> bool:
    """True when a container holds at most `limit` items in all (stops counting early)."""
    stack, seen = [obj], 0
    while stack:
        item = stack.pop()
        if isinstance(item, (dict, list, tuple, set, frozenset)):
            seen += len(item)
            if seen > limit:
                return False
            stack.extend(item.values() if isinstance(item, dict) else item)
    return True


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return list(value)
    return describe_value(value, budget=500)


# ---------------------------------------------------------------------------- arrays


def summarize_array(arr: Any, *, budget: int = DEFAULT_DATAFRAME_BUDGET) -> str:
    """Shape, dtype, statistics (exact, or from a strided sample) and a clipped rendering."""
    import numpy as np

    lines = [f"ndarray shape={arr.shape} dtype={arr.dtype} size={arr.size:,} ({size_text(arr.nbytes)})"]
    flat = arr.reshape(-1) if arr.flags.c_contiguous or arr.size < 1_000_000 else arr.ravel()
    if arr.size and arr.dtype.kind in "biuf":
        sample = flat if flat.size <= 1_000_000 else flat[:: flat.size // 1_000_000 + 1]
        exact = sample is flat
        values = sample.astype(np.float64, copy=False)
        finite = np.isfinite(values)
        n_nan = int(np.isnan(values).sum()) if arr.dtype.kind == "f" else 0
        stats = []
        if finite.any():
            vals = values[finite] if not finite.all() else values
            stats = [f"min={vals.min():.6g}", f"max={vals.max():.6g}", f"mean={vals.mean():.6g}",
                     f"std={vals.std():.6g}"]
        if n_nan:
            stats.append(f"nan={n_nan:,}")
        lines.append(("stats: " if exact else f"stats (strided sample of {sample.size:,}): ") + " ".join(stats))
    elif arr.size and arr.dtype.kind in "Mm":
        lines.append(f"range: {flat.min()} .. {flat.max()}")
    with np.printoptions(threshold=60, edgeitems=3, linewidth=100, precision=5):
        rendering = np.array2string(arr, max_line_width=100,
                                    formatter={"object": lambda v: _cell(repr(v), 60)})
    lines.append("values:\n" + rendering)
    return clip("\n".join(lines), budget)


# ---------------------------------------------------------------------------- DataFrames


_SAMPLE_ROWS = 10_000  # rows used for describe() and value estimates on large frames
_DETAIL_COLS = 40  # columns listed one per line; wider frames are summarised
_EXACT_OBJECT_CELLS = 1_000_000  # object/string cells scanned for exact null counts


def summarize_dataframe(df: Any, *, budget: int = DEFAULT_DATAFRAME_BUDGET, name: str | None = None) -> str:
    """A compact, faithful text summary of a DataFrame or Series, within `budget` characters.

    Costs are bounded for any size: statistics on wide or long frames come from a
    row sample and a column subset (and say so); the frame is never rendered whole.
    """
    import pandas as pd

    kind = "Series" if isinstance(df, pd.Series) else "DataFrame"
    if kind == "Series":
        df = df.to_frame(name=df.name if df.name is not None else (name or 0))
    # Most detailed first; the first rendering that fits the budget wins.
    cache: dict[Any, Any] = {}
    for level in range(4):
        text = _render_frame(df, kind=kind, name=name, level=level, cache=cache)
        if len(text) <= budget:
            return text
    return clip(text, budget)


def _render_frame(df: Any, *, kind: str, name: str | None, level: int, cache: dict[Any, Any]) -> str:
    """One rendering at a level of detail (0 = most); `cache` keeps per-column work across levels."""
    import numpy as np

    n_rows, n_cols = df.shape
    head_rows, tail_rows = [(5, 3), (4, 2), (3, 2), (2, 1)][level]
    show_cols = [16, 12, 8, 6][level]
    detail_cols = [_DETAIL_COLS, 30, 20, 12][level]
    colwidth = [40, 30, 24, 16][level]

    out: list[str] = []
    title = f"{kind} {name}" if name else kind
    mem = cache["memory"] if "memory" in cache else cache.setdefault("memory", _memory(df))
    if kind == "Series":
        out.append(f"{title}: {n_rows:,} values, dtype {df.dtypes.iloc[0]}, memory ~{size_text(mem)}")
    else:
        out.append(f"{title}: {n_rows:,} rows × {n_cols:,} columns, memory ~{size_text(mem)}")
    out.append("index: " + _index_info(df.index))
    if n_cols and hasattr(df.columns, "nlevels") and df.columns.nlevels > 1:
        out.append(f"columns: MultiIndex with {df.columns.nlevels} levels {list(df.columns.names)}")

    sample_pos = None
    if n_rows > _SAMPLE_ROWS:
        sample_pos = np.sort(np.random.default_rng(0).integers(0, n_rows, _SAMPLE_ROWS))
    positions = list(range(min(n_cols, detail_cols)))
    wide = n_cols > detail_cols
    if wide:
        dtype_counts = df.dtypes.astype(str).value_counts()
        out.append("dtypes: " + ", ".join(f"{k} ×{v:,}" for k, v in dtype_counts.items()))
        first = ", ".join(_col_name(c) for c in df.columns[:8])
        last = ", ".join(_col_name(c) for c in df.columns[-4:])
        out.append(f"columns: {first}, …, {last}")
        out.append(f"details for the first {len(positions)} of {n_cols:,} columns:")
    else:
        out.append("columns (name: dtype, nulls):")

    object_cols = sum(1 for j in positions if df.dtypes.iloc[j].kind == "O" or str(df.dtypes.iloc[j]) in ("str", "string"))
    exact_objects = n_rows * object_cols <= _EXACT_OBJECT_CELLS
    top_lines: list[str] = []
    sample_df = None if sample_pos is None else df.iloc[sample_pos, : len(positions)]
    for j in positions:
        col = df.iloc[:, j]
        sample = col if sample_df is None else sample_df.iloc[:, j]
        if ("col", j) not in cache:
            cache["col", j] = _column_info(col, sample, n_rows, exact_objects, sampled=sample_pos is not None)
        line, top = cache["col", j]
        out.append(f"  {_col_name(df.columns[j])}: {line}")
        if top:
            top_lines.append(f"  {_col_name(df.columns[j])}: {top}")

    if n_rows == 0:
        out.append("(no rows)")
    elif n_cols:
        cols = list(range(n_cols)) if n_cols <= show_cols else (
            list(range(show_cols - 2)) + [n_cols - 2, n_cols - 1])
        note = "" if n_cols <= show_cols else f" (columns {show_cols - 2} of {n_cols:,} shown, plus the last 2)"
        if n_rows <= head_rows + tail_rows:
            out.append(f"rows{note}:")
            out.append(_table(df.iloc[:, cols], colwidth))  # few rows here
        else:
            out.append(f"head{note}:")
            # Rows first, then columns: iloc[rows, list] would copy whole columns.
            out.append(_table(df.iloc[:head_rows].iloc[:, cols], colwidth))
            out.append("tail:")
            out.append(_table(df.iloc[n_rows - tail_rows:].iloc[:, cols], colwidth))

    n_desc = [12, 10, 6, 4][level]
    if ("describe", n_desc) not in cache:
        cache["describe", n_desc] = _describe(df, positions[:n_desc], sample_df)
    desc = cache["describe", n_desc]
    if desc:
        label = "numeric summary" + (
            f" (min/max exact; other statistics from a random sample of {_SAMPLE_ROWS:,} rows)"
            if sample_pos is not None else "")
        out.append(label + ":")
        out.append(desc)
    if top_lines:
        src = " (from a sample)" if sample_pos is not None else ""
        out.append(f"top values{src}:")
        out.extend(top_lines[: [20, 12, 8, 4][level]])
    return "\n".join(out)


def _col_name(c: Any) -> str:
    if isinstance(c, tuple):
        return "/".join(str(x) for x in c)
    return str(c)


def _memory(df: Any) -> int:
    """Shallow memory plus an object-column estimate from up to 1,000 rows (deep is O(n))."""
    try:
        shallow = int(df.memory_usage(index=True, deep=False).sum())
    except Exception:
        return 0
    obj = [j for j, dt in enumerate(df.dtypes.iloc[:200]) if dt.kind == "O" or str(dt) in ("str", "string")]
    if not obj or not len(df):
        return shallow
    head = df.iloc[: min(1000, len(df)), obj]
    try:
        per_row = (head.memory_usage(index=False, deep=True).sum()
                   - head.memory_usage(index=False, deep=False).sum()) / len(head)
    except Exception:
        return shallow
    return shallow + int(per_row * len(df))


def _index_info(index: Any) -> str:
    import pandas as pd

    n = len(index)
    label = f" name={index.name!r}" if getattr(index, "name", None) is not None else ""
    if isinstance(index, pd.RangeIndex):
        return f"RangeIndex {index.start:,}..{index.stop - index.step:,} step {index.step}{label}" if n else "RangeIndex (empty)"
    if isinstance(index, pd.MultiIndex):
        levels = ", ".join(
            f"{lvl_name!r}: {lvl.dtype} ({len(lvl):,} values)" for lvl_name, lvl in zip(index.names, index.levels, strict=True)
        )
        return f"MultiIndex {index.nlevels} levels [{levels}]"
    parts = [f"{type(index).__name__} dtype={index.dtype}{label}"]
    if n:
        parts.append(f"from {_cell(index[0])} to {_cell(index[-1])}")
        if index.dtype.kind in "iufMm" and n <= 5_000_000:
            parts.append("sorted" if index.is_monotonic_increasing else "unsorted")
    tz = getattr(index, "tz", None)
    if tz is not None:
        parts.append(f"tz={tz}")
    freq = getattr(index, "freqstr", None)
    if freq:
        parts.append(f"freq={freq}")
    return ", ".join(parts)


def _cell(value: Any, width: int = 40) -> str:
    text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _column_info(col: Any, sample: Any, n_rows: int, exact_objects: bool, *, sampled: bool) -> tuple[str, str | None]:
    """One line for the column listing, and a top-values line for low-cardinality columns."""
    import numpy as np
    import pandas as pd

    dtype = col.dtype
    dname = str(dtype)
    is_object = dtype.kind == "O" and not isinstance(dtype, pd.CategoricalDtype)
    is_text = dname in ("str", "string")
    # Null counts: exact where a vectorised pass is cheap, estimated from the sample otherwise.
    if dtype.kind in "iub" and isinstance(dtype, np.dtype):
        nulls, approx = 0, False
    elif dtype.kind == "f" and isinstance(dtype, np.dtype):
        nulls, approx = _nan_count(col.to_numpy()), False
    elif (is_object or is_text) and not exact_objects:
        nulls, approx = int(sample.isna().sum()) * n_rows // max(len(sample), 1), True
    else:
        nulls, approx = int(col.isna().sum()), False
    null_text = f"~{nulls / n_rows:.1%} null" if approx and n_rows else f"{nulls:,} null"
    line = f"{dname}, {null_text}"
    if is_object and len(sample):
        try:
            inferred = pd.api.types.infer_dtype(sample.iloc[:2000], skipna=True)
        except Exception:
            inferred = "mixed"
        line += f" (holds {inferred})" if inferred not in ("string",) else " (holds strings)"
    top = None
    try:
        if isinstance(dtype, pd.CategoricalDtype):
            counts = col.value_counts()  # counts category codes: cheap at any length
            line += f", {len(dtype.categories):,} categories" + (" ordered" if dtype.ordered else "")
            top = _top(counts, len(col) - nulls, approx=False)
        elif dname in ("bool", "boolean"):
            top = _top(col.value_counts(), len(col) - nulls, approx=False)
        elif is_object or is_text:
            probe = sample.iloc[:5000]
            nunique = probe.nunique()
            if nunique <= 20 and nunique < max(len(probe) // 2, 2):
                top = _top(sample.value_counts(), int(sample.notna().sum()), approx=sampled)
            else:
                line += f", ~{nunique:,} distinct in {len(probe):,} sampled" if sampled else f", {nunique:,} distinct"
    except TypeError:  # unhashable values (dicts, lists)
        pass
    if dtype.kind == "M" and len(col) and nulls < len(col):
        line += f", {_cell(col.min())} .. {_cell(col.max())}"
    return line, top


def _nan_count(values: Any) -> int:
    """NaN count of a float array; the min pass settles the common no-NaN case."""
    import numpy as np

    if not values.size or not np.isnan(values.min()):
        return 0
    return int(np.count_nonzero(np.isnan(values)))


def _top(counts: Any, total: int, *, approx: bool) -> str | None:
    if not total or counts.empty:
        return None
    shown = counts.iloc[:6]
    sign = "~" if approx else ""
    parts = [f"{_cell(k, 30)!s} {sign}{v / total:.1%}" for k, v in shown.items()]
    more = f", … ({len(counts):,} distinct)" if len(counts) > len(shown) else ""
    return ", ".join(parts) + more


def _describe(df: Any, positions: list[int], sample: Any) -> str:
    """count/mean/std/quartiles of numeric columns; min/max are always over every row."""
    import numpy as np
    import pandas as pd

    numeric = [
        j for j in positions
        if pd.api.types.is_numeric_dtype(df.dtypes.iloc[j]) and not pd.api.types.is_bool_dtype(df.dtypes.iloc[j])
    ]
    if not numeric or not len(df):
        return ""
    rows = []
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for j in numeric:
            full = df.iloc[:, j].to_numpy(dtype="float64", na_value=np.nan)
            part = full if sample is None else sample.iloc[:, j].to_numpy(dtype="float64", na_value=np.nan)
            q = np.nanpercentile(part, [25, 50, 75]) if part.size else [np.nan] * 3
            rows.append([
                int(np.count_nonzero(~np.isnan(part))), np.nanmean(part), np.nanstd(part, ddof=1),
                _fast_extreme(full, np.min, np.nanmin), *q, _fast_extreme(full, np.max, np.nanmax),
            ])
    desc = pd.DataFrame(rows, index=[_col_name(df.columns[j]) for j in numeric],
                        columns=["count", "mean", "std", "min", "25%", "50%", "75%", "max"])
    if sample is not None:
        desc = desc.drop(columns=["count"])
    return desc.to_string(float_format=lambda v: f"{v:.4g}")


def _fast_extreme(values: Any, plain: Any, nan_aware: Any) -> float:
    """min/max without nan-aware overhead unless the fast pass hits a NaN."""
    import numpy as np

    if not values.size:
        return float("nan")
    result = plain(values)
    return nan_aware(values) if np.isnan(result) else result


def _table(view: Any, colwidth: int) -> str:
    import pandas as pd

    view = view.copy()
    for j in range(view.shape[1]):
        col = view.iloc[:, j]
        if col.dtype.kind == "O" or isinstance(col.dtype, pd.StringDtype):
            view.isetitem(j, col.map(lambda v: _cell(v, colwidth), na_action="ignore").astype(object))
    view.columns = [_col_name(c) for c in view.columns]
    return view.to_string(max_colwidth=colwidth, float_format=lambda v: f"{v:.6g}")
