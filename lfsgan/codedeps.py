"""Which source files a job depends on, found by reading (never importing) lfsgan's imports.

Three users:

- the workflow's per-rule reruns: Snakemake reruns a job when one of its inputs is newer than its
  outputs. Listing a method's own modules (:func:`method_sources`) as inputs of its ``train_task``
  jobs makes "edit one method's code" rerun that method's tasks and what follows them, and nothing of
  the other methods. Shared code (models, the training loop) is not listed there: a change there
  concerns every method, and ``snakemake --forcerun train_task`` says so.
- ``dvc.yaml``'s code dependencies: every module a stage's verbs import (:func:`verb_sources`) must be
  covered by that stage's ``deps`` (tests/test_dvc.py checks it); ``python -m lfsgan.codedeps VERB...``
  prints the list.
- a training run's resume fingerprint (:mod:`lfsgan.train.loop`): :func:`code_fingerprint` hashes the
  files a verb runs, so a checkpoint written by other code is not continued.

Imports are followed transitively with :mod:`ast`, including imports inside functions (lazy ones),
``from package import submodule``, relative imports and the lazy ``_EXPORTS`` tables of packages that
import on attribute access (``lfsgan.metrics``). The ``__init__.py`` of every package on the way is listed
too (importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__``) but what it imports is followed only
when a module imports names from the package itself. The module stays free of torch, so the
Snakefile can import it.
"""

from __future__ import annotations

import ast
import hashlib
import sys
from pathlib import Path
from typing import Iterable

PACKAGE = "lfsgan"
PACKAGE_DIR = Path(__file__).resolve().parent
METHODS_DIR = PACKAGE_DIR / "methods"
VERBS_DIR = PACKAGE_DIR / "verbs"
CLI = PACKAGE_DIR / "cli.py"


def _module_file(dotted: str) -> Path | None:
    """``lfsgan/a/b.py`` or ``lfsgan/a/b/__init__.py`` for ``"lfsgan.a.b"``; None outside lfsgan."""
    parts = dotted.split(".")
    if parts[0] != PACKAGE:
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _dotted(path: Path) -> str:
    rel = path.relative_to(PACKAGE_DIR.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _lazy_exports(init: Path) -> dict[str, str]:
    """A package's ``_EXPORTS = {name: submodule}`` table (names it imports on attribute access)."""
    for node in ast.parse(init.read_text(), filename=str(init)).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_EXPORTS" for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


def _parents(dotted: str) -> set[Path]:
    """The ``__init__.py`` of each package above module ``dotted`` (they run when it is imported)."""
    parts = dotted.split(".")
    found = {_module_file(".".join(parts[:i])) for i in range(1, len(parts))}
    return {p for p in found if p is not None}


def imported_modules(path: Path) -> tuple[set[Path], set[Path]]:
    """``(named, parents)``: lfsgan modules that ``path`` imports anywhere in its body (top level or
    inside functions), and the ``__init__.py`` files of the packages above them."""
    path = Path(path).resolve()
    package = _dotted(path) if path.name == "__init__.py" else _dotted(path).rpartition(".")[0]
    named: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            named |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{node.module}" if node.module else anchor
            else:
                base = node.module or ""
            init = _module_file(base)
            if init is None:
                continue
            exports = _lazy_exports(init) if init.name == "__init__.py" else {}
            for alias in node.names:
                if _module_file(f"{base}.{alias.name}") is not None:  # from package import submodule
                    named.add(f"{base}.{alias.name}")
                elif alias.name in exports:  # a name the package imports on attribute access
                    named.add(f"{base}.{exports[alias.name]}")
                else:
                    named.add(base)
    files = {_module_file(d): d for d in named if _module_file(d) is not None}
    return set(files), set().union(*(_parents(d) for d in files.values())) - set(files)


def module_closure(starts: Iterable[Path], within: Path = PACKAGE_DIR, parents: bool = True) -> set[Path]:
    """``starts`` and every lfsgan module they import, transitively, only files under ``within``.

    ``parents``: also list the ``__init__.py`` of every package on the way (they run on import), without
    following their own imports: ``from lfsgan.methods.base import Method`` depends on ``methods/__init__.py``
    but not on every method the registry there imports.
    """
    seen: set[Path] = set()
    inits: set[Path] = set()
    todo = [Path(p).resolve() for p in starts]
    while todo:
        path = todo.pop()
        if path not in seen and path.is_relative_to(within):
            seen.add(path)
            named, above = imported_modules(path)
            todo.extend(named - seen)
            inits |= above
    return seen | ({p for p in inits if p.is_relative_to(within)} if parents else set())


def _data_files(modules: set[Path]) -> set[Path]:
    """Non-Python files the modules read: the config schema (every verb validates its config)."""
    if PACKAGE_DIR / "config.py" in modules:
        from lfsgan.config import SCHEMA_PATH

        return {SCHEMA_PATH.resolve()}
    return set()


def _shown(paths: Iterable[Path], root: str | Path | None) -> list[str]:
    """Sorted paths relative to ``root`` when they lie under it (the workflow's directory), else absolute."""
    root = Path(root).resolve() if root is not None else None
    return sorted(str(p.relative_to(root)) if root and p.is_relative_to(root) else str(p) for p in paths)


def verb_sources(verb: str, root: str | Path | None = None) -> list[str]:
    """Every file ``lfsgan VERB`` runs: the CLI, the verb's module, what they import, and the schema."""
    start = VERBS_DIR / f"{verb.replace('-', '_')}.py"
    if not start.is_file():
        raise FileNotFoundError(f"verb {verb!r}: no module {start} (one module per verb)")
    modules = module_closure([CLI, start])
    return _shown(modules | _data_files(modules), root)


def method_sources(kind: str, root: str | Path | None = None) -> list[str]:
    """Sorted source files of method ``kind`` (its module and what it imports from ``lfsgan/methods``).

    Paths are relative to ``root`` (the workflow's directory) when the package lives under it,
    absolute otherwise (an installed, non-editable package).
    """
    start = METHODS_DIR / f"{kind}.py"
    if not start.is_file():
        raise FileNotFoundError(f"method kind {kind!r}: no module {start} (one module per method kind)")
    return _shown(module_closure([start], within=METHODS_DIR, parents=False), root)


def file_digests(paths: Iterable[Path], root: Path = PACKAGE_DIR.parent) -> dict[str, str]:
    """``{path: sha256}`` of source files, paths as :func:`_shown` writes them relative to ``root``
    (``lfsgan/...`` for the package), so equal code gives equal keys in any clone."""
    digests = {}
    for path in paths:
        with open(path, "rb") as f:
            digests[_shown([path], root)[0]] = hashlib.file_digest(f, "sha256").hexdigest()
    return dict(sorted(digests.items()))


def code_fingerprint(verb: str | None = None, starts: Iterable[Path] = ()) -> dict[str, object]:
    """``{"sha256": digest, "files": {path: sha256}}`` of every file ``lfsgan VERB`` runs (:func:`verb_sources`)
    and of ``starts`` with what they import; ``digest`` is the sha256 of the sorted ``files``."""
    modules = module_closure(starts)
    if verb is not None:
        modules |= {PACKAGE_DIR.parent / f for f in verb_sources(verb, PACKAGE_DIR.parent)}
    files = file_digests(modules | _data_files(modules))
    digest = hashlib.sha256("".join(f"{k}\0{v}\n" for k, v in files.items()).encode()).hexdigest()
    return {"sha256": digest, "files": files}


def changed_files(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """Paths whose sha256 differs between two :func:`file_digests` tables, or that only one of them has."""
    return sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))


if __name__ == "__main__":  # python -m lfsgan.codedeps VERB... : the files those verbs run
    print("\n".join(sorted({f for verb in sys.argv[1:] for f in verb_sources(verb, Path.cwd())})))
