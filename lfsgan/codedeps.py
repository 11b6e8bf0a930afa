"""Which source files a method's results depend on, for the workflow's per-rule reruns.

Snakemake reruns a job when one of its inputs is newer than its outputs. Listing a method's own
modules as inputs of its ``train_task`` jobs makes "edit one method's code" rerun that method's
tasks and what follows them, and nothing of the other methods. The files are found by reading
(never importing) ``lfsgan/methods/<kind>.py`` and following its imports inside ``lfsgan/methods``
transitively, so the Snakefile stays free of torch. Shared code (models, the training loop) is not
listed: a change there concerns every method, and ``snakemake --forcerun train_task`` says so.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
METHODS_DIR = PACKAGE_DIR / "methods"


def _imported_method_modules(path: Path) -> set[Path]:
    """Modules of ``lfsgan/methods`` that ``path`` imports (``from .x import``, ``from lfsgan.methods.x import``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level == 1 and node.module:  # from .x import y
            name = node.module.split(".")[0]
        elif node.level == 0 and (node.module or "").startswith("lfsgan.methods."):
            name = node.module.split(".")[2]
        else:
            continue
        candidate = METHODS_DIR / f"{name}.py"
        if candidate.is_file():
            found.add(candidate)
    return found


def method_sources(kind: str, root: str | Path | None = None) -> list[str]:
    """Sorted source files of method ``kind`` (its module and what it imports from ``lfsgan/methods``).

    Paths are relative to ``root`` (the workflow's directory) when the package lives under it,
    absolute otherwise (an installed, non-editable package).
    """
    start = METHODS_DIR / f"{kind}.py"
    if not start.is_file():
        raise FileNotFoundError(f"method kind {kind!r}: no module {start} (one module per method kind)")
    seen, todo = set(), [start]
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo.extend(_imported_method_modules(path) - seen)
    root = Path(root).resolve() if root is not None else None
    return [str(p.relative_to(root)) if root and p.is_relative_to(root) else str(p) for p in sorted(seen)]
