"""`python -m nb_claude verify` at scale: 20 notebooks of 50 AI cells each, their replay
file recorded against the offline stand-in (by `verify --record` itself), then verified
in strict replay mode with kernels started in parallel, up to the core count.

`run(quick=False) -> list[dict]`. Quick mode: 2 notebooks of 10 cells, labelled so.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from bench_spine import row  # noqa: E402

__all__ = ["run", "bench_verify", "make_notebooks"]

TARGET_S = 60.0


def make_notebooks(folder: Path, notebooks: int, cells: int) -> list[Path]:
    """`notebooks` notebooks sharing one replay file, each a setup cell and `cells` prompts."""
    import nbformat

    paths = []
    for n in range(notebooks):
        nb = nbformat.v4.new_notebook()
        nb.cells.append(nbformat.v4.new_code_cell(
            "%load_ext nb_claude\n%config ClaudeMagics.max_tokens = 256"))
        nb.cells.extend(nbformat.v4.new_code_cell(
            f"%%claude\nNotebook {n}, question {c}: name one check of a regression fit.")
            for c in range(cells))
        path = folder / f"analysis-{n:02d}.ipynb"
        nbformat.write(nb, path)
        paths.append(path)
    return paths


def _verify(paths: list[Path], **kwargs: Any) -> tuple[int, float, str]:
    from nb_claude._verify import main

    out = io.StringIO()
    started = time.perf_counter()
    code = main([*map(str, paths), *kwargs.get("args", [])], out=out, err=out)
    return code, time.perf_counter() - started, out.getvalue()


def bench_verify(quick: bool = False) -> list[dict[str, Any]]:
    """Wall time of `verify` over the generated notebooks; baseline: one notebook alone."""
    from nb_claude.testing import DEMO_KEY, StandInServer

    notebooks, cells = (2, 10) if quick else (20, 50)
    cores = os.cpu_count() or 1
    saved = {k: os.environ.get(k) for k in ("AIMLAPI_KEY", "NB_CLAUDE_BASE_URL")}
    with tempfile.TemporaryDirectory(prefix="nbc-bench-verify-") as tmp:
        paths = make_notebooks(Path(tmp), notebooks, cells)
        try:
            with StandInServer(seed=2) as server:
                os.environ.update(AIMLAPI_KEY=DEMO_KEY, NB_CLAUDE_BASE_URL=server.url)
                code, recorded_s, out = _verify(paths, args=["--record"])
                if code != 0:
                    raise RuntimeError(f"recording failed: {out[-300:]}")
                asked = len(server.requests)
                code, verify_s, out = _verify(paths)  # the key is set: verify drops it
                if code != 0 or len(server.requests) != asked:
                    raise RuntimeError(f"verify failed or sent requests: {out[-300:]}")
                _, one_s, _ = _verify(paths[:1])
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    size = f"{notebooks} notebooks × {cells} AI cells"
    scale = "" if not quick else "quick mode, not the 20 × 50 target size; "
    return [row(f"verify {size} ({cores} cores)", verify_s, one_s * notebooks,
                target=f"< {TARGET_S:g} s" if not quick else "-",
                ok=verify_s < TARGET_S if not quick else None, unit="s",
                note=f"{scale}baseline: one notebook alone × {notebooks}; recording them "
                     f"first with verify --record took {recorded_s:.1f} s "
                     f"({asked} requests to the stand-in)")]


BENCHMARKS = [bench_verify]


def run(quick: bool = False) -> list[dict[str, Any]]:
    return bench_verify(quick)


if __name__ == "__main__":
    from run_all import table

    print(table(run(quick="--quick" in sys.argv)))
