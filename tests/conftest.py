"""Shared fixtures.

Integration fixtures (tests/test_slurm.py, test_dvc.py, test_reruns.py): a `Project` is a
temporary copy of the working tree whose config/config.yaml is config/test.yaml, so the real
Snakefile, profiles and dvc.yaml run unchanged on the tiny test config. `completed_run` is one
complete run of that workflow per session, made by `dvc repro` (so it also checks that the real
dvc.yaml runs the whole pipeline); tests that change things work on a `Project.copy()` of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent  # snakemake, dvc and lfsgan live next to this python

# Top-level entries of the working tree that are not copied: environments, VCS and DVC state,
# and everything a run generates.
_NOT_COPIED = {".venv", ".git", ".dvc", "dvc_remote", "results", "logs", ".snakemake", ".pytest_cache"}

NOTHING_TO_DO = "Nothing to be done"


@dataclass(frozen=True)
class PlannedJob:
    """One job of a `snakemake -n` plan: rule name, wildcards and Snakemake's reason for it."""

    rule: str
    wildcards: dict[str, str]
    reason: str


def parse_dry_run(output: str) -> list[PlannedJob]:
    """The jobs listed by `snakemake -n` (rule blocks: `rule X:` followed by indented `key: value`)."""
    jobs, current = [], None
    for line in output.splitlines():
        head = re.match(r"^\s*(?:local)?rule (\w+):\s*$", line)
        if head:
            current = {"rule": head.group(1), "wildcards": {}, "reason": ""}
            jobs.append(current)
            continue
        field = re.match(r"^\s+(\w+): (.*)$", line)
        if current is not None and field:
            key, value = field.groups()
            if key == "wildcards":
                current["wildcards"] = dict(kv.split("=", 1) for kv in value.split(", "))
            elif key == "reason":
                current["reason"] = value
        elif not line.strip():
            current = None
    return [PlannedJob(**j) for j in jobs]


_TEXT_SUFFIXES = {".json", ".csv", ".md", ".tsv", ".txt"}


def _run_record_key(key: str) -> bool:
    """JSON keys that record how a run went, not what it computed: wall-clock timings
    (`*seconds*`) and whether a cache was hit (`hit`, which depends on job order)."""
    return "seconds" in key or key == "hit"


def _drop_run_records(node):
    if isinstance(node, dict):
        return {k: _drop_run_records(v) for k, v in node.items() if not _run_record_key(k)}
    if isinstance(node, list):
        return [_drop_run_records(v) for v in node]
    return node


def content_digest(path: Path, project_root: Path | None = None) -> str:
    """sha256 of a file's content; for a checkpoint, of its tensors and metadata.

    `torch.save` to a path names the zip records after the (temporary) file name, so two
    identical checkpoints can differ in bytes; their tensors and metadata must not.
    With `project_root`, text outputs are made comparable across two runs in different folders:
    the folder's path is replaced by a placeholder and JSON run records are dropped.
    """
    if path.suffix == ".pt":
        return _checkpoint_digest(path)
    if project_root is None or path.suffix not in _TEXT_SUFFIXES:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    text = path.read_text().replace(str(project_root), "<project>")
    if path.suffix == ".json":
        text = json.dumps(_drop_run_records(json.loads(text)), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _checkpoint_digest(path: Path) -> str:
    import torch

    from lfsgan.io import load_checkpoint

    tensors, meta = load_checkpoint(path)
    h = hashlib.sha256(repr(sorted(meta.items())).encode())

    def walk(prefix: str, node) -> None:
        if isinstance(node, torch.Tensor):
            t = node.detach().cpu().contiguous()
            h.update(f"{prefix}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            for k in sorted(node):
                walk(f"{prefix}.{k}", node[k])

    walk("", tensors)
    return h.hexdigest()


class Project:
    """A temporary copy of the repository's working tree, with helpers to run the workflow in it."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONPATH"] = str(self.root)  # this copy's lfsgan, also inside SLURM jobs (--export=ALL)
        env.pop("LFSGAN_FAIL_RULE", None)
        env.update({"GIT_AUTHOR_NAME": "lfsgan-tests", "GIT_AUTHOR_EMAIL": "tests@lfsgan.invalid"})
        env.update({"GIT_COMMITTER_NAME": "lfsgan-tests", "GIT_COMMITTER_EMAIL": "tests@lfsgan.invalid"})
        env.update(extra)
        return env

    def run(
        self, *cmd: str, timeout: float = 900, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        """Run `cmd` in the project; stdout and stderr together in `.stdout`.

        On timeout the command gets SIGINT first (Snakemake then cancels its SLURM jobs; SIGTERM
        would not), then SIGKILL a minute later.
        """
        proc = subprocess.Popen(
            [str(c) for c in cmd], cwd=self.root, env=env or self.env(), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                out, _ = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                out, _ = proc.communicate()
            raise AssertionError(f"timed out after {timeout} s: {' '.join(map(str, cmd))}\n{out[-6000:]}")
        result = subprocess.CompletedProcess(proc.args, proc.returncode, out, None)
        if check and result.returncode != 0:
            raise AssertionError(
                f"exit {result.returncode}: {' '.join(map(str, cmd))} (in {self.root})\n{out[-6000:]}"
            )
        return result

    def snakemake(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run("snakemake", *args, **kw)

    def dry_run(self, *args: str) -> list[PlannedJob]:
        """The jobs `snakemake -n` would run now (default profile, so groups do not nest the output)."""
        out = self.snakemake("-n", "--workflow-profile", "workflow/profiles/default", *args).stdout
        jobs = parse_dry_run(out)
        assert jobs or NOTHING_TO_DO in out, f"could not parse the dry run:\n{out[-4000:]}"
        return jobs

    def copy(self, dst: Path) -> Project:
        """A full copy (results, .snakemake metadata, DVC and git state); file mtimes are kept."""
        shutil.copytree(self.root, dst, symlinks=True)
        return Project(dst)

    def git_clone(self, dst: Path) -> Project:
        """`git clone` of the project: what a colleague gets (no results, no .snakemake)."""
        self.run("git", "clone", "-q", str(self.root), str(dst))
        return Project(dst)

    def outputs(self, across_folders: bool = False) -> dict[str, str]:
        """{path under results/: content_digest} of every file the workflow wrote.

        `across_folders`: comparable with a run in another folder (see `content_digest`).
        """
        base = self.root / "results"
        root = self.root if across_folders else None
        return {
            str(p.relative_to(self.root)): content_digest(p, root)
            for p in sorted(base.rglob("*"))
            if p.is_file() and ".cache" not in p.relative_to(base).parts
        }

    def write_config(self, text: str) -> None:
        (self.root / "config" / "config.yaml").write_text(text)

    def read_config(self) -> str:
        return (self.root / "config" / "config.yaml").read_text()


def copy_worktree(dst: Path) -> Project:
    """Copy the working tree (tracked and untracked source files, no generated ones) to `dst`,
    with config/test.yaml as its config/config.yaml."""

    def ignore(directory: str, names: list[str]) -> set[str]:
        rel = Path(directory).resolve().relative_to(REPO)
        skip = {n for n in names if n == "__pycache__" or n.endswith(".egg-info")}
        if rel == Path("."):
            skip |= _NOT_COPIED & set(names)
        if rel == Path("benchmarks"):  # per-rule `benchmark:` folders; the scripts are copied
            skip |= {n for n in names if (Path(directory) / n).is_dir()}
        return skip

    shutil.copytree(REPO, dst, ignore=ignore, symlinks=True)
    shutil.copyfile(dst / "config" / "test.yaml", dst / "config" / "config.yaml")
    return Project(dst)


def init_dvc_repo(project: Project) -> None:
    """Make `project` a git + DVC repository (as a user's clone of lfsgan would be) and commit."""
    project.run("git", "init", "-q")
    project.run("dvc", "init", "-q")
    project.run("dvc", "config", "core.autostage", "true")
    project.run("dvc", "config", "core.analytics", "false")
    project.run("git", "add", "-A")
    project.run("git", "commit", "-q", "-m", "test project")


@pytest.fixture
def one_thread():
    """One torch thread for the test (small tensors: one thread is fastest, and on a shared CPU two
    threads mostly wait for each other); a module opts in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fresh_project(tmp_path) -> Project:
    """A copy of the working tree with the test config and no results."""
    return copy_worktree(tmp_path / "lfsgan")


@pytest.fixture(scope="session")
def completed_run(tmp_path_factory) -> Project:
    """The test workflow run to completion once per session with `dvc repro` (the real dvc.yaml).

    Read-only for tests: copy it (`completed_run.copy(tmp_path / ...)`) before changing anything.
    """
    project = copy_worktree(tmp_path_factory.mktemp("completed") / "lfsgan")
    init_dvc_repo(project)
    project.run("dvc", "repro", timeout=1800)
    project.run("git", "add", "-A")
    project.run("git", "commit", "-q", "-m", "dvc repro of the test config")
    out = project.snakemake("-n", "--workflow-profile", "workflow/profiles/default").stdout
    assert NOTHING_TO_DO in out, f"`dvc repro` left work for Snakemake:\n{out[-4000:]}"
    return project


class _Planted:
    """A pickle that creates ``marker`` when unpickled (``__reduce__`` -> ``open(marker, "w")``)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant_poison(cache_dir: Path, marker: Path) -> list[Path]:
    """Overwrite every real-set cache file in ``cache_dir`` with a code-carrying pickle, and add the
    files torch-fidelity's own cache would read for those entries; returns the planted paths."""
    import torch

    planted = []
    for entry in sorted(cache_dir.glob("real-*.pt")):
        stem = entry.name[: -len(".pt")]
        for extractor in ("lfsgan-demo-cnn", "inception-v3-compat"):
            for layer in ("penultimate", "2048", "64"):
                planted += [cache_dir / f"{stem}-{extractor}-features-{layer}.pt", cache_dir / f"{stem}-{extractor}-stat-fid-{layer}.pt"]
        planted.append(entry)
    for p in planted:
        torch.save({"features": _Planted(marker)}, p)
    return planted


@pytest.fixture
def plant_poison():
    """``plant_poison(cache_dir, marker) -> planted paths``: the FID cache attack (tests/test_metrics.py, test_dvc.py)."""
    return _plant_poison
