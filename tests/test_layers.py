"""The house in layers: every module of ``loramem`` imports only its own layer or the ones below, the import
graph has no circle (TYPE_CHECKING and function-level imports included), and no file is over 500 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "loramem"

# Layer of every module (a package's files share its layer). The README's Architecture section shows the same.
LAYERS: dict[str, int] = {
    "types": 0, "config": 0, "text": 0, "_fs": 0, "_schema": 0, "locks": 0, "devices": 0,
    "prompts": 1, "models": 1, "store": 1, "embed": 1, "index": 1, "capacity": 1, "phonebook": 1, "memories": 1,
    "pending": 1,
    "train": 2, "read": 2, "synth": 2, "preserve": 2,
    "adapters": 3, "route": 3, "plan": 3, "runtime": 3,
    "writing": 4, "edits": 4, "querying": 4, "compose": 4, "recall": 4, "interop": 4, "buffer": 4,
    "consolidator": 4, "incremental": 4, "fanout": 4, "export": 4, "engine": 4, "serve": 4,
    "memory": 5, "shortterm": 5,
    "readers": 6, "calibration": 6, "cli": 6, "demo": 6,
}


def _lazy_exports() -> dict[str, str]:
    """``loramem.__init__``'s map of exported names to the modules that define them."""
    tree = ast.parse((SRC / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_LAZY" for t in node.targets):
            return dict(ast.literal_eval(node.value))
    raise AssertionError("loramem/__init__.py has no _LAZY map")


_LAZY = _lazy_exports()


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every loramem module this file imports, at any depth of the file (``from . import x`` resolved)."""
    name = _module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name[len("loramem."):] for a in node.names if a.name.startswith("loramem.")}
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module == "loramem":  # from loramem import KnowledgeMemory: the module behind the name
                    out |= {_LAZY.get(a.name, a.name) for a in node.names}
                elif node.module and node.module.startswith("loramem."):
                    out.add(node.module[len("loramem."):])
                continue
            base = package[: len(package) - (node.level - 1)] if node.level > 1 else list(package)
            mod = ".".join(base + ([node.module] if node.module else []))
            if node.module is None:  # from . import a, b: each is a module (or a name the package exports)
                out |= {".".join(filter(None, [mod, a.name if mod else _LAZY.get(a.name, a.name)])) for a in node.names}
            else:
                out.add(mod)
    return {m for m in out if m and m != name}


def _graph() -> dict[str, set[str]]:
    files = [p for p in SRC.rglob("*.py") if p.name != "__init__.py" or p.parent != SRC]
    known = {_module_name(p) for p in files}
    graph = {}
    for p in files:
        deps = set()
        for m in _imports(p):
            while m and m not in known:  # "readers.rag.chunk_text" style: climb to the module
                m = m.rpartition(".")[0]
            if m:
                deps.add(m)
        graph[_module_name(p)] = deps - {_module_name(p)}
    return graph


def _layer(module: str) -> int:
    top = module.split(".")[0]
    if top not in LAYERS:
        raise AssertionError(f"module {module!r} has no layer: add it to LAYERS (and the README's Architecture)")
    return LAYERS[top]


def test_every_import_points_down_or_sideways() -> None:
    bad = [f"{m} (L{_layer(m)}) imports {d} (L{_layer(d)})"
           for m, deps in _graph().items() for d in deps if _layer(d) > _layer(m)]
    assert not bad, "upward imports:\n" + "\n".join(sorted(bad))


def test_no_import_circle() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_no_file_over_500_lines(path: Path) -> None:
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= 500, f"{path.relative_to(SRC)} has {n} lines; split it by concern"


def test_the_checker_sees_a_circle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks above can fail: a TYPE_CHECKING import of the facade from a lower layer is caught."""
    pkg = tmp_path / "loramem"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("_LAZY = {}\n")
    (pkg / "memory.py").write_text("from .plan import x\n")
    (pkg / "plan.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .memory import K\n")
    monkeypatch.setattr(__import__(__name__), "SRC", pkg)
    with pytest.raises(AssertionError, match="upward imports"):
        test_every_import_points_down_or_sideways()
    with pytest.raises(AssertionError, match="import circle"):
        test_no_import_circle()
