"""A small import-linter: the import graph of the repository's own modules, from their source (ast)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("harness", "apiary_suite", "services", "features", "bench", "examples")


def module_name(path: Path, root: Path) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")


def modules(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Every module of the packages: dotted name -> file."""
    return {module_name(p, root): p for pkg in packages if (root / pkg).is_dir() for p in (root / pkg).rglob("*.py")}


def imports_of(name: str, mods: dict[str, Path]) -> set[str]:
    """The repository modules one module imports anywhere in its source (function-level imports too)."""
    tree = ast.parse(mods[name].read_text(), str(mods[name]))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    out = set()
    for f in found:
        while f and f not in mods:      # a name imported is no module: its module is the longest prefix that is
            f = f.rpartition(".")[0]
        while f:                        # importing a.b.c runs a/__init__ and a/b/__init__ first: their imports count
            if f in mods:
                out.add(f)
            f = f.rpartition(".")[0]
    return out


def closure(start: str, mods: dict[str, Path]) -> dict[str, str]:
    """Every module reachable from `start`, each with the module it was first reached from."""
    via, todo = {start: ""}, [start]
    while todo:
        m = todo.pop()
        for dep in sorted(imports_of(m, mods)):
            if dep not in via:
                via[dep] = m
                todo.append(dep)
    return via


def chain(via: dict[str, str], end: str) -> str:
    """start -> ... -> end, the path by which `end` was reached."""
    path = [end]
    while via.get(path[-1]):
        path.append(via[path[-1]])
    return " -> ".join(reversed(path))
