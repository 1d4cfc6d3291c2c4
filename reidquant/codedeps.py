"""The library files a workflow script runs, found by walking its imports.

Rules list them as inputs, so that changing a module reruns exactly the jobs that run it.
Imports anywhere in a file count, those inside functions included: the library imports
heavy modules lazily, and a lazy import still runs in the job.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "reidquant"


def imported_names(source: Path, package_root: Path) -> set[str]:
    """Dotted names of the package's modules (or of names inside them) that ``source`` imports."""
    source = Path(source)
    tree = ast.parse(source.read_text(), filename=str(source))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, source, package_root)
            if module:
                names.add(module)
                # ``from reidquant import model`` imports the module reidquant.model
                names.update(f"{module}.{alias.name}" for alias in node.names)
    return {name for name in names if name == PACKAGE or name.startswith(PACKAGE + ".")}


def _absolute(node: ast.ImportFrom, source: Path, package_root: Path) -> str | None:
    if node.level == 0:
        return node.module
    try:
        parts = [PACKAGE, *source.resolve().relative_to(Path(package_root).resolve()).parent.parts]
    except ValueError:  # a relative import outside the package is not ours to follow
        return None
    if node.level > len(parts):
        return None
    base = parts[: len(parts) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def module_file(name: str, package_root: Path) -> Path | None:
    """The file of module ``name`` in the package, or None when ``name`` is not a module."""
    path = Path(package_root).joinpath(*name.split(".")[1:])
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def library_files(script: Path, package_root: Path) -> list[Path]:
    """Every file of the package that running ``script`` imports, transitively, sorted."""
    package_root = Path(package_root)
    found: set[Path] = set()
    todo = [Path(script)]
    while todo:
        for name in imported_names(todo.pop(), package_root):
            parts = name.split(".")
            # importing a.b.c runs a/__init__.py and a/b/__init__.py too
            for depth in range(1, len(parts) + 1):
                path = module_file(".".join(parts[:depth]), package_root)
                if path is not None and path not in found:
                    found.add(path)
                    todo.append(path)
    return sorted(found)
