"""The package's modules form layers: no import circle, lazy imports included, and no
module much over 500 lines but those named here with the reason."""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "nb_claude"


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(current: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    if node.level:
        base = current.split(".") if is_package else current.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    if not prefix.startswith("nb_claude"):
        return []
    return [prefix] + [f"{prefix}.{alias.name}" for alias in node.names]


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere in its body (lazily or not)."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                targets.update(t for t in _resolve(name, is_package, node) if t in files)
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name in files)
        targets.discard(name)
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_among_package_modules() -> None:
    graph = {name: {t for t in targets if t != "nb_claude"} for name, targets in
             import_graph().items() if name != "nb_claude"}
    assert find_cycle(graph) is None


FRONT_ENDS = {"nb_claude._magics", "nb_claude._magic_args", "nb_claude._panel",
              "nb_claude._panel_parts", "nb_claude._render", "nb_claude._export",
              "nb_claude._session", "nb_claude.demo", "nb_claude._batch_view",
              "nb_claude._batch_magic"}
CORE = ("nb_claude._engine", "nb_claude._turns", "nb_claude._wire", "nb_claude._options",
        "nb_claude._exchange", "nb_claude._stream", "nb_claude._client", "nb_claude._sse",
        "nb_claude._config", "nb_claude._replay", "nb_claude._tools", "nb_claude._tool_results",
        "nb_claude._batch", "nb_claude._batch_items", "nb_claude._batch_gate")


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target in graph.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_the_front_end_list_names_real_modules() -> None:
    """A renamed module would silently leave the layer checks."""
    graph = import_graph()
    assert FRONT_ENDS.issubset(graph) and set(CORE).issubset(graph)
    # The batch's progress view is a front end: the batch engine receives it from the
    # caller, and only the session layer and the magic choose it.
    importers = {name for name, targets in graph.items() if "nb_claude._batch_view" in targets}
    assert importers <= FRONT_ENDS, importers - FRONT_ENDS


def test_the_core_imports_no_front_end() -> None:
    """Not even lazily or through another module: the session's defaults (a display, a
    stdin confirmer) live in the public `_session` layer, over `_engine`."""
    graph = import_graph()
    for core in CORE:
        assert _reachable(graph, core) & FRONT_ENDS == set(), core


def test_the_core_imports_no_ipython_and_no_widgets() -> None:
    for core in CORE:
        tree = ast.parse((PACKAGE / f"{core.rsplit('.', 1)[1]}.py").read_text(encoding="utf-8"))
        names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
        names |= {node.module or "" for node in ast.walk(tree)
                  if isinstance(node, ast.ImportFrom) and not node.level}
        assert not {n for n in names if n.split(".")[0] in ("IPython", "ipywidgets")}, core


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_modules_stay_small(path: pathlib.Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= LONG.get(_module_name(path), 560), (path.name, lines)


# Modules allowed past ~500 lines, and why.
LONG: dict[str, int] = {
    # One HTTP transport: retries, timeouts, cancellation and error mapping belong together.
    "nb_claude._client": 620,
    # Type hints to JSON schema and back: one table of hint kinds, read top to bottom.
    "nb_claude._schema": 640,
}
