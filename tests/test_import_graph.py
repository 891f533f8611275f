"""The package's import graph: no cycles, the floors of STYLE.md, adapters on the public API.

The graph is read from the source (ast), so it holds every import: module level, inside
functions (a lazy import is still a dependency), under `TYPE_CHECKING`, and
`importlib.import_module("literal")`. `from pkg import name` counts as importing `pkg.name`
when that is a module, else `pkg`; a module importing its own package's face is not an edge.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "clip_multimodal"
ADAPTERS = (
    ROOT / "integrations" / "langchain" / "langchain_clip_multimodal",
    ROOT / "integrations" / "llama-index" / "llama_index",
)
GROUND = ("clip_multimodal.errors", "clip_multimodal.text", "clip_multimodal._lazy")
SECOND = ("clip_multimodal.models", "clip_multimodal.types")
TOP = ("clip_multimodal.cli", "clip_multimodal.server", "clip_multimodal.training")
#: (modules, what they must not import, except these): a lower floor never reaches up, a
#: library never imports the command layer, and a strategy never imports back what it serves.
#: Besides GROUND, any module importing nothing of the package is ground floor too.
LAYERS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    *((m, ("clip_multimodal",), GROUND) for m in GROUND),
    *((m, ("clip_multimodal",), GROUND + SECOND) for m in SECOND),
    ("clip_multimodal.images", ("clip_multimodal.encoder", "clip_multimodal.index", *TOP), ()),
    ("clip_multimodal.gpu", ("clip_multimodal.encoder", *TOP), ()),
    ("clip_multimodal.index", ("clip_multimodal.encoder", "clip_multimodal.gpu", *TOP), ()),
    ("clip_multimodal.encoder", ("clip_multimodal.index", *TOP), ()),
    ("clip_multimodal.training", ("clip_multimodal.cli", "clip_multimodal.server"), ()),
]


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under `root` outside test folders."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        if "tests" in path.relative_to(root).parts:
            continue
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imported(module: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The dotted names `module` imports (package-relative imports resolved)."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package[: len(package) - (node.level - 1)]
                base = ".".join(parent + ([base] if base else []))
            for alias in node.names:
                name = f"{base}.{alias.name}"
                yield name if name in known else base
        elif isinstance(node, ast.Call) and _is_import_call(node):
            yield node.args[0].value  # type: ignore[attr-defined]


def _is_import_call(node: ast.Call) -> bool:
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    first = node.args[0] if node.args else None
    literal = isinstance(first, ast.Constant) and isinstance(first.value, str)
    return literal and called in ("import_module", "__import__")


def _owner(name: str, known: dict[str, Path]) -> str | None:
    """The module of `known` that `name` lies in (its longest known prefix)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules under `root` it imports."""
    known = _modules(root)
    graph: dict[str, set[str]] = {m: set() for m in known}
    for module, path in known.items():
        for name in _imported(module, path, known):
            target = _owner(name, known)
            if target and target != module and not module.startswith(target + "."):
                graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        component.append(top)
                        if top == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return sorted(found)


def _edges_of(prefix: str, graph: dict[str, set[str]]) -> Iterator[tuple[str, str]]:
    for module, targets in sorted(graph.items()):
        if _within(module, prefix):
            yield from ((module, t) for t in sorted(targets))


def layer_breaks(graph: dict[str, set[str]]) -> list[str]:
    """Each import that LAYERS forbids, as "module imports target"."""
    leaves = {module for module, targets in graph.items() if not targets}
    return [
        f"{module} imports {target}"
        for lower, banned, allowed in LAYERS
        for module, target in _edges_of(lower, graph)
        if any(_within(target, b) for b in banned)
        and not any(_within(target, a) for a in allowed)
        and target not in leaves
    ]


# --- the tests --------------------------------------------------------------------------


def test_the_core_has_no_import_cycles() -> None:
    found = cycles(import_graph(CORE))
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_cycles_finds_each_component_once() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "e"}, "e": {"d"}, "f": set()}
    assert cycles(graph) == [["a", "b", "c"], ["d", "e"]]


def test_graph_reads_lazy_relative_and_type_only_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "low.py").write_text("def f():\n    from pkg.sub import high\n")
    (pkg / "sub" / "__init__.py").write_text("from . import high\n")
    (pkg / "sub" / "high.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..low import f\n"
        "import importlib\nimportlib.import_module('pkg')\n"
    )
    graph = import_graph(pkg)
    assert graph["pkg.low"] == {"pkg.sub.high"}
    assert graph["pkg.sub"] == {"pkg.sub.high"}
    assert graph["pkg.sub.high"] == {"pkg.low"}  # its own package face is no edge
    assert cycles(graph) == [["pkg.low", "pkg.sub.high"]]


def test_lower_floors_never_import_higher_ones() -> None:
    wrong = layer_breaks(import_graph(CORE))
    assert not wrong, "\n".join(wrong)


def test_the_core_imports_no_framework() -> None:
    known = _modules(CORE)
    wrong = [
        f"{module} imports {name}"
        for module, path in known.items()
        for name in _imported(module, path, known)
        if name.split(".")[0].startswith(("langchain", "llama_index"))
    ]
    assert not wrong, "\n".join(wrong)


def test_adapters_import_no_private_core_module() -> None:
    core = _modules(CORE)
    wrong = []
    for root in ADAPTERS:
        known = _modules(root)
        for module, path in known.items():
            for name in _imported(module, path, {**known, **core}):
                parts = name.split(".")
                if parts[0] == "clip_multimodal" and any(p.startswith("_") for p in parts):
                    wrong.append(f"{module} imports {name}")
    assert not wrong, "\n".join(wrong)
