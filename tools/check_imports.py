#!/usr/bin/env python3
"""Static import-graph check of every distribution in the repository (DESIGN: layering).

For each distribution (``shared-core/`` and ``packages/*/``), the modules under ``src/`` are read
with :mod:`ast` (nothing is imported, so no framework is needed) and every import statement is
followed, at module level and inside functions alike:

1. **No import cycles** inside a distribution. A module importing its own parent package (an
   ``__init__`` re-exporting it) is not a cycle; any other strongly connected component of two or
   more modules is reported with its members.
2. **No sibling private modules**: a distribution never imports a module of another distribution
   whose path has a component starting with an underscore (``diff_core._jax_scan``).

Exit status 0 when clean, 1 with one line per problem otherwise. Usage, from the repository root::

    python tools/check_imports.py            # or: hatch run tools:imports
    python tools/check_imports.py --root DIR
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Distribution", "find_distributions", "import_cycles", "main", "private_imports"]


@dataclass
class Distribution:
    """One distribution's modules: dotted name -> (file, is package ``__init__``)."""

    folder: Path
    modules: dict[str, tuple[Path, bool]] = field(default_factory=dict)

    @property
    def top_level(self) -> set[str]:
        return {m.split(".")[0] for m in self.modules}


def find_distributions(root: Path) -> list[Distribution]:
    """Every folder with a ``pyproject.toml`` and a ``src/``: ``shared-core`` and ``packages/*``."""
    folders = [root / "shared-core", *sorted((root / "packages").glob("*"))]
    out = []
    for folder in folders:
        src = folder / "src"
        if not (folder / "pyproject.toml").is_file() or not src.is_dir():
            continue
        dist = Distribution(folder)
        for f in sorted(src.rglob("*.py")):
            parts = list(f.relative_to(src).with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            if is_pkg:
                parts = parts[:-1]
            if parts:
                dist.modules[".".join(parts)] = (f, is_pkg)
        out.append(dist)
    return out


def _imported_names(module: str, path: Path, is_pkg: bool) -> Iterable[str]:
    """Absolute dotted names the imports of ``module`` may refer to (modules or attributes)."""
    package = module if is_pkg else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def _resolve(name: str, modules: dict[str, tuple[Path, bool]]) -> str | None:
    """The longest prefix of ``name`` that is a module of the distribution."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_cycles(dist: Distribution) -> list[list[str]]:
    """Strongly connected components of two or more modules (Tarjan's algorithm)."""
    graph: dict[str, set[str]] = {m: set() for m in dist.modules}
    for m, (path, is_pkg) in dist.modules.items():
        for name in _imported_names(m, path, is_pkg):
            target = _resolve(name, dist.modules)
            # a module importing a package it belongs to (its __init__) is the normal layering
            if target and target != m and not m.startswith(target + "."):
                graph[m].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    try:
        for v in sorted(graph):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return sorted(components)


def private_imports(dist: Distribution, others: Iterable[Distribution]) -> list[str]:
    """``"module imports sibling.private"`` for every import of another distribution's module
    with a path component starting with ``_`` (``__init__`` aside)."""
    foreign: dict[str, Distribution] = {}
    for other in others:
        if other is not dist:
            foreign.update(dict.fromkeys(other.top_level, other))
    problems = []
    for m, (path, is_pkg) in sorted(dist.modules.items()):
        for name in _imported_names(m, path, is_pkg):
            top = name.split(".")[0]
            if top not in foreign:
                continue
            target = _resolve(name, foreign[top].modules) or name
            if any(part.startswith("_") for part in target.split(".")):
                problems.append(f"{m} imports {target}, a private module of another distribution")
    return sorted(set(problems))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=".", help="repository root (default: .)")
    args = parser.parse_args(argv)
    root = Path(args.root)
    dists = find_distributions(root)
    if not dists:
        print(f"check_imports: no distributions found under {root.resolve()}", file=sys.stderr)
        return 1
    problems = []
    for dist in dists:
        for comp in import_cycles(dist):
            problems.append(f"{dist.folder.name}: import cycle {' <-> '.join(comp)}")
        problems += [f"{dist.folder.name}: {p}" for p in private_imports(dist, dists)]
    modules = sum(len(d.modules) for d in dists)
    if problems:
        print("\n".join(problems))
        print(f"check_imports: {len(problems)} problems in {len(dists)} distributions")
        return 1
    print(
        f"check_imports: {len(dists)} distributions, {modules} modules: no import cycles, "
        "no private imports across distributions"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
