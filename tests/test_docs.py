"""The repository stands on its own: no file refers a reader to documents outside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUTSIDE = re.compile(r"\.\./shared|shared/(DESIGN|reference|README)|reference/(methods|permutation|workflow|eval|house)\.md|\bDESIGN\.md")


def test_no_file_refers_to_documents_outside_the_repository():
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    offenders = []
    for name in files:
        path = REPO / name
        if name == "tests/test_docs.py" or not path.is_file() or path.suffix in {".pt", ".png", ".gz"}:
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        offenders += [f"{name}:{i}: {line.strip()}" for i, line in enumerate(text.splitlines(), 1) if OUTSIDE.search(line)]
    assert not offenders, "files cite documents a reader of the repository does not have:\n" + "\n".join(offenders)


def test_cited_docs_exist():
    for doc in ("docs/design.md", "docs/methods.md", "docs/permutation.md"):
        assert (REPO / doc).is_file(), doc
