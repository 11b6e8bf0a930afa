"""The documentation is tested like code.

- The repository stands on its own: no file refers a reader to documents outside it.
- Every shell command fenced as runnable (```bash) in README.md and docs/*.md is run by a test of
  this file on small data (the test config, the own-data example), or is in ALLOWED with the reason
  it cannot run here (a cluster, a GPU, the internet, hours of compute, or a test running itself).
- Every config in config/ plans (`snakemake -n`) with the command config/README.md documents for it,
  and the job counts the docs quote are the planned ones.
- The configuration reference (config/README.md) is the one generated from the schema, and holds
  every schema key, and no other.
- README.md has at most 150 lines; every link in README.md, docs/ and config/README.md resolves.
- The worked method of docs/adding-a-method.md keeps the method contract the page lists.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

# tests/conftest.py as pytest loaded it (with --import-mode=importlib it is not importable by name)
_conftest = next(m for m in list(sys.modules.values())
                 if getattr(m, "__file__", None) and Path(m.__file__).resolve() == REPO / "tests" / "conftest.py")
VENV_BIN, Project, copy_worktree, parse_dry_run = (_conftest.VENV_BIN, _conftest.Project, _conftest.copy_worktree,
                                                   _conftest.parse_dry_run)
OUTSIDE = re.compile(r"\.\./shared|shared/(DESIGN|reference|README)|reference/(methods|permutation|workflow|eval|house)\.md|\bDESIGN\.md")

PAGES = ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))]
LINKED_FILES = [*PAGES, "config/README.md"]

# Commands that no test here runs, each with the reason. A runnable command that is neither run by
# one of the page tests below nor listed here fails test_every_runnable_command_is_run_or_allowed.
ALLOWED = {
    "bash scripts/test.sh": "runs the whole test suite, this file included (CI runs it as `.ci/run`)",
    "python -m pytest tests/test_docs.py -k method -q": "runs tests of this file (test_worked_method_keeps_the_method_contract)",
    "snakemake --workflow-profile workflow/profiles/slurm --configfile config/paper.yaml":
        "a GPU cluster and the paper's data; planned with -n by test_every_config_plans_with_its_documented_command",
    "LFSGAN_SLURM_DIR=/tmp/slurm tests/slurm/install.sh && tests/slurm/up.sh":
        "root and apt-get; tests/test_slurm.py installs and starts the same cluster",
    "dvc repro": "the completed_run fixture (tests/conftest.py) runs it on the test config for tests/test_dvc.py",
    "dvc push": "a DVC remote; tests/test_dvc.py pushes to a local one",
    "dvc remote modify storage url s3://my-bucket/lfsgan": "a placeholder URL for shared storage (network)",
    "dvc pull && snakemake --touch --cores 1": "a DVC remote holding a pushed run; tests/test_dvc.py pulls from a local one",
    "lfsgan weights --config config/paper.yaml": "exits 1 until the paper's checkpoint and weights files are in place",
    "lfsgan weights --config config/paper.yaml --fetch": "the internet (downloads Inception and VGG16 weights)",
    "snakemake --workflow-profile workflow/profiles/default --cores 2 --configfile config/config.yaml config/study.yaml":
        "about 55 minutes on 2 cores; planned with -n by test_every_config_plans_with_its_documented_command",
    "snakemake --workflow-profile workflow/profiles/slurm --configfile my-source.yaml":
        "a SLURM cluster with GPUs and a source config of your own; tests/test_slurm.py runs the same rule on 2 CPU processes",
    "python -m torch.distributed.run --standalone --nproc-per-node=4 --no-python lfsgan pretrain --config my-source.yaml --seed 0 --data results/data/ffhq --out results/source/seed0":
        "4 GPUs; tests/test_distributed.py runs torchrun with 2 CPU processes",
    'srun --nodes=2 --ntasks-per-node=1 --kill-on-bad-exit=1 python -m torch.distributed.run --nnodes=2 --nproc-per-node=4 --rdzv-backend=c10d --rdzv-endpoint="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1):${LFSGAN_RDZV_PORT:-29500}" --rdzv-id="$SLURM_JOB_ID" --no-python lfsgan pretrain --config my-source.yaml --seed 0 --data results/data/ffhq --out results/source/seed0':
        "two GPU nodes inside a SLURM job; tests/test_distributed.py checks that the rule plans this command",
    "snakemake --workflow-profile workflow/profiles/default --cores 2 --configfile config/config.yaml config/narrow.yaml":
        "about 10 minutes on 2 cores (the earlier 32-channel demo); planned with -n by test_every_config_plans_with_its_documented_command",
    "SEEDS=0 THREADS=2 PHASE=config/source-demo-longer.yaml PREFIX=wide-longer- bash scripts/pretrain-demo-sources.sh":
        "about 9 minutes on 2 cores, and it rewrites a shipped source; its overlay is planned with -n by "
        "test_every_config_plans_with_its_documented_command and tests/test_install_source.py runs source.continue_from",
    "snakemake --workflow-profile workflow/profiles/default --cores 2 --configfile config/config.yaml config/sweep.yaml":
        "about 25 minutes on 2 cores after the demo, in its checkout (its last run: 52 jobs, 23 min); planned with -n by test_every_config_plans_with_its_documented_command",
}

# Pages whose commands run in a copy of the working tree (cheap: help texts and dry runs) ...
FRESH_PAGES = ["docs/index.md", "docs/workflow.md", "docs/benchmarks.md", "docs/clusters.md"]
# ... on the completed test workflow (tests/conftest.py: completed_run) ...
COMPLETED_PAGES = ["README.md", "docs/report.md"]
# ... and on the own-data example, from scratch.
OWN_DATA_PAGE = "docs/own-data.md"
RUN_PAGES = [*COMPLETED_PAGES, OWN_DATA_PAGE, *FRESH_PAGES]


def home(command: str) -> str | None:
    """The page whose test runs ``command``: the first of RUN_PAGES that has it (a command quoted on
    several pages, such as the demo, runs once)."""
    return next((page for page in RUN_PAGES if command in page_commands(page)), None)

FENCE = re.compile(r"^[ \t]*```(\w*)[^\n]*\n(.*?)^[ \t]*```[ \t]*$", re.M | re.S)
RUNNABLE = {"bash", "sh", "shell"}


def fenced(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block, indentation of the fence removed."""
    out = []
    for m in FENCE.finditer(text):
        indent = len(m.group(0)) - len(m.group(0).lstrip(" \t"))
        body = "\n".join(line[indent:] if line[:indent].strip() == "" else line for line in m.group(2).splitlines())
        out.append((m.group(1), body))
    return out


def commands(text: str) -> list[str]:
    """The shell commands of the runnable blocks: continuation lines joined, comments dropped."""
    out = []
    for lang, body in fenced(text):
        if lang not in RUNNABLE:
            continue
        for line in re.sub(r"\\\n\s*", " ", body).splitlines():
            line = re.sub(r"(^|\s+)#\s.*$", "", line).strip()
            if line and not line.startswith("#"):
                out.append(" ".join(line.split()))
    return out


def page_commands(page: str) -> list[str]:
    return commands((REPO / page).read_text())


# --- the repository stands on its own -------------------------------------------------------------
def test_no_file_refers_to_documents_outside_the_repository():
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    offenders = []
    for name in files:
        path = REPO / name
        if name == "tests/test_docs.py" or not path.is_file() or path.suffix in {".pt", ".png", ".gz", ".zip"}:
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        offenders += [f"{name}:{i}: {line.strip()}" for i, line in enumerate(text.splitlines(), 1) if OUTSIDE.search(line)]
    assert not offenders, "files cite documents a reader of the repository does not have:\n" + "\n".join(offenders)


def test_cited_docs_exist():
    for doc in ("docs/design.md", "docs/methods.md", "docs/permutation.md", "docs/index.md", "config/README.md"):
        assert (REPO / doc).is_file(), doc


# --- README and links --------------------------------------------------------------------------------
def test_readme_is_short():
    n = len((REPO / "README.md").read_text().splitlines())
    assert n <= 150, f"README.md has {n} lines; move detail into docs/ (at most 150)"


def test_readme_figure_is_small_and_committed():
    links = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", (REPO / "README.md").read_text())
    assert links, "the README shows no figure"
    for link in links:
        path = REPO / link
        assert path.suffix == ".png" and path.is_file(), link
        assert path.stat().st_size < 200_000, f"{link}: {path.stat().st_size} bytes (keep it under 200 KB)"


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.M):
        s = slug(heading)
        out.add(s if s not in seen else f"{s}-{seen[s]}")
        seen[s] = seen.get(s, 0) + 1
    return out


def links(path: Path) -> list[str]:
    text = FENCE.sub("", path.read_text())
    text = re.sub(r"`[^`\n]*`", "", text)  # inline code is not a link
    return re.findall(r"\]\(([^)\s]+)\)", text)


def broken_links(page: str) -> list[str]:
    path = REPO / page
    broken = []
    for link in links(path):
        if re.match(r"[a-z]+:", link):  # http(s), mailto: outside the repository
            continue
        target, _, anchor = link.partition("#")
        file = (path.parent / target).resolve() if target else path
        if not file.exists() or REPO not in file.parents:
            broken.append(f"{page}: {link} (no such file)")
        elif anchor and (file.suffix != ".md" or anchor not in anchors(file)):
            broken.append(f"{page}: {link} (no heading with anchor #{anchor})")
    return broken


def test_every_link_resolves():
    broken = [b for page in LINKED_FILES for b in broken_links(page)]
    assert not broken, "\n".join(broken)


def test_link_check_finds_a_broken_link(tmp_path, monkeypatch):
    """The link check itself: a missing file and a missing anchor are both reported."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Title\n\n## Some `code` here\n\n[ok](#some-code-here) [x](b.md) [y](#nope)\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert broken_links("docs/a.md") == ["docs/a.md: b.md (no such file)", "docs/a.md: #nope (no heading with anchor #nope)"]


def test_guide_index_links_every_page():
    linked = {Path(link.partition("#")[0]).name for link in links(REPO / "docs" / "index.md")}
    missing = [p for p in PAGES if p.startswith("docs/") and Path(p).name not in linked | {"index.md"}]
    assert not missing, f"docs/index.md does not link {missing}"


# --- configuration reference -------------------------------------------------------------------------
def test_config_reference_is_generated_from_the_schema():
    from lfsgan.configref import REFERENCE, regenerate

    assert REFERENCE.read_text() == regenerate(), "config/README.md is stale: run `python -m lfsgan.configref`"


def schema_keys(schema: dict) -> set[str]:
    """Every key path of the schema, written as config/README.md writes them (see lfsgan.configref)."""
    defs, keys = schema["$defs"], set()

    def walk(node: dict, path: str) -> None:
        if path:
            keys.add(path)
        if node.get("$ref") == "#/$defs/train":
            return
        for name, sub in node.get("properties", {}).items():
            walk(sub, f"{path}.{name}" if path else name)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and extra.get("properties"):
            walk(extra, f"{path}.<{path.rsplit('.', 1)[-1].removesuffix('s')}>")
        items = node.get("items")
        if isinstance(items, dict):
            for name, sub in items.get("properties", {}).items():
                walk(sub, f"{path}[].{name}")

    walk(schema, "")
    for name, sub in defs["train"]["properties"].items():
        walk(sub, f"<train>.{name}")
    for name, d in defs.items():
        if name.startswith("options_"):
            for option in d["properties"]:
                keys.add(f"methods.<method>.options.{option}")
    return keys


def test_every_schema_key_is_in_the_reference_and_back():
    from lfsgan.config import load_schema

    from lfsgan.configref import MARKER

    text = (REPO / "config" / "README.md").read_text().split(MARKER, 1)[1]
    documented = set(re.findall(r"^\| `([^`]+)` \|", text, re.M))
    keys = schema_keys(load_schema())
    assert keys - documented == set(), f"schema keys missing from config/README.md: {sorted(keys - documented)}"
    assert documented - keys == set(), f"config/README.md documents keys the schema lacks: {sorted(documented - keys)}"


def test_reference_check_fails_on_a_new_schema_key(tmp_path, monkeypatch):
    """A key added to the schema without regenerating: both checks above catch it."""
    import lfsgan.configref as configref
    from lfsgan.config import load_schema

    schema = load_schema()
    schema["properties"]["fisher"]["properties"]["brand_new"] = {"type": "integer", "default": 1}
    assert "fisher.brand_new" in schema_keys(schema)
    assert configref.regenerate(schema=schema) != (REPO / "config" / "README.md").read_text()
    assert "| `fisher.brand_new` | integer | `1` |" in configref.render(schema)


# --- every config plans with its documented command --------------------------------------------------
def documented_config_commands() -> dict[str, str]:
    """config file name -> the command config/README.md gives for it (its table's last column)."""
    out = {}
    for name, command in re.findall(r"^\| `([\w-]+\.yaml)` \|.*\| `([^`]+)` \|$", (REPO / "config" / "README.md").read_text(), re.M):
        out[name] = command
    return out


def fill_in_paper_paths(project: Project, tmp_path: Path) -> None:
    """Replace config/paper.yaml's /FILL-IN/ paths with folders of a few images and a checkpoint file,
    as a user does before the paper run."""
    from PIL import Image

    base = tmp_path / "paper-data"
    text = (project.root / "config" / "paper.yaml").read_text()
    for fill in sorted(set(re.findall(r"/FILL-IN/[\w./-]+", text))):
        path = base / fill.removeprefix("/FILL-IN/")
        if path.suffix == ".pt":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"not read by a dry run")
        else:
            path.mkdir(parents=True, exist_ok=True)
            for i in range(10):
                Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(path / f"{i}.png")
    (project.root / "config" / "paper.yaml").write_text(text.replace("/FILL-IN/", f"{base}/"))


@pytest.fixture(scope="module")
def docs_project(tmp_path_factory) -> Project:
    """A copy of the working tree with its own config/config.yaml (the demo's, not the test config)."""
    project = copy_worktree(tmp_path_factory.mktemp("docs") / "lfsgan")
    shutil.copyfile(REPO / "config" / "config.yaml", project.root / "config" / "config.yaml")
    fill_in_paper_paths(project, tmp_path_factory.mktemp("paper"))
    (project.root / ".venv").symlink_to(VENV_BIN.parent)
    return project


def test_every_config_has_a_documented_command():
    configs = sorted(p.name for p in (REPO / "config").glob("*.yaml"))
    assert sorted(documented_config_commands()) == configs


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "config").glob("*.yaml")))
def test_every_config_plans_with_its_documented_command(docs_project, name):
    command = documented_config_commands()[name]
    assert command.startswith("snakemake "), command
    out = docs_project.run("bash", "-c", f"{command} -n", timeout=600).stdout
    jobs = parse_dry_run(out)
    assert jobs, out[-3000:]
    if name != "config.yaml":  # a --configfile replaces the demo config: none of its shipped sources
        assert "install_source" not in {j.rule for j in jobs} or "config/config.yaml" in command, out[-3000:]
    quoted = {"config.yaml": ("README.md", r"Snakemake's progress \((\d+) jobs\)"),
              "paper.yaml": ("docs/paper.md", r"lists (\d+) jobs")}
    if name in quoted:
        page, pattern = quoted[name]
        documented = int(re.search(pattern, (REPO / page).read_text()).group(1))
        assert documented == len(jobs), f"{page} says {documented} jobs; `{command} -n` plans {len(jobs)}"


def test_overlay_alone_says_how_to_name_it(docs_project):
    r = docs_project.snakemake("-n", "--cores", "1", "--configfile", "config/study.yaml", check=False)
    assert r.returncode != 0 and "--configfile config/config.yaml OVERLAY.yaml" in r.stdout, r.stdout[-3000:]


# --- every runnable command is run, or allowed with a reason -----------------------------------------
def test_every_runnable_command_is_run_or_allowed():
    unaccounted = [f"{page}: {c}" for page in PAGES for c in page_commands(page) if home(c) is None and c not in ALLOWED]
    assert not unaccounted, ("runnable commands no test runs; run them in a page test or add them to ALLOWED "
                             "with the reason:\n" + "\n".join(unaccounted))
    everywhere = {c for page in PAGES for c in page_commands(page)}
    stale = sorted(set(ALLOWED) - everywhere)
    assert not stale, f"ALLOWED lists commands no page has: {stale}"
    assert set(RUN_PAGES) <= set(PAGES)


def test_command_extraction():
    text = "```bash\nfoo --a \\\n    --b   # why\n# comment only\n\nbar && baz\n```\n```text\nnot run\n```\n  ```bash\n  indented\n  ```\n"
    assert commands(text) == ["foo --a --b", "bar && baz", "indented"]


def run_page(project: Project, page: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """Run every command of ``page`` that is not ALLOWED, in order, in ``project``; {command: output}."""
    outputs = {}
    for command in page_commands(page):
        if command in ALLOWED or home(command) != page:
            continue
        r = project.run("bash", "-c", command, timeout=1800, env=env, check=False)
        assert r.returncode == 0, f"{page}: `{command}` exited {r.returncode}\n{r.stdout[-6000:]}"
        outputs[command] = r.stdout
    assert outputs, f"{page} has no command of its own to run"
    return outputs


@pytest.mark.parametrize("page", FRESH_PAGES)
def test_page_commands_run(docs_project, page):
    outputs = run_page(docs_project, page)
    if page == "docs/index.md":
        assert "train-task" in outputs["lfsgan --help"]


def with_venv(project: Project) -> Project:
    """``.venv`` in the project is the environment running the tests, as scripts/setup.sh makes it."""
    if not (VENV_BIN.parent / ".lfsgan-installed").is_file():
        pytest.skip("the test environment was not made by scripts/setup.sh (no .lfsgan-installed stamp)")
    link = project.root / ".venv"
    if not link.exists():
        link.symlink_to(VENV_BIN.parent)
    return project


@pytest.mark.integration
@pytest.mark.parametrize("page", COMPLETED_PAGES)
def test_page_commands_run_on_the_completed_test_workflow(completed_run, tmp_path, page):
    project = with_venv(completed_run.copy(tmp_path / "run"))
    outputs = run_page(project, page)
    if page == "README.md":
        demo = outputs["bash scripts/demo.sh"]
        last = demo.strip().splitlines()[-1]
        assert last.startswith("[demo] done") and last in (REPO / "README.md").read_text(), \
            f"the README quotes another last line than demo.sh prints: {last!r}"
        assert (project.root / "results" / "report" / "report.html").is_file()
    if page == "docs/report.md":
        assert (project.root / "results" / "report" / "report.html").stat().st_size > 0


@pytest.mark.integration
def test_own_data_page(tmp_path):
    project = with_venv(copy_worktree(tmp_path / "lfsgan"))
    outputs = run_page(project, OWN_DATA_PAGE)
    text = (REPO / OWN_DATA_PAGE).read_text()
    printed = next(out for cmd, out in outputs.items() if cmd.startswith("python -c")).strip().splitlines()[-1]
    assert printed in text, f"{OWN_DATA_PAGE} shows another output than the command prints: {printed!r}"
    report = project.root / "results" / "report"
    assert (report / "summary.md").is_file() and (report / "report.html").is_file()
    summary = (report / "summary.md").read_text()
    assert "finetune" in summary and "lfsgan" in summary
    quoted = int(re.search(r"\((\d+) jobs here\)", text).group(1))
    finished = len(list((project.root / "benchmarks").rglob("*.tsv")))
    assert finished == quoted - 1, f"{OWN_DATA_PAGE} says {quoted} jobs; the run benchmarked {finished} + `all`"


# --- the worked method --------------------------------------------------------------------------------
def test_worked_method_is_the_one_on_the_page():
    page = (REPO / "docs" / "adding-a-method.md").read_text()
    shipped = (REPO / "docs" / "examples" / "lastlayers.py").read_text()
    assert any(lang == "python" and body.strip() == shipped.strip() for lang, body in fenced(page))


def load_worked_method():
    """docs/examples/lastlayers.py imported as lfsgan.methods.lastlayers (it imports `.base`)."""
    spec = importlib.util.spec_from_file_location("lfsgan.methods.lastlayers", REPO / "docs" / "examples" / "lastlayers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.LastLayers


def test_worked_method_keeps_the_method_contract(tmp_path):
    import torch

    from lfsgan.config import ConfigError
    from lfsgan.io import load_checkpoint, save_checkpoint
    from lfsgan.methods import TaskContext
    from lfsgan.models import Discriminator, Generator
    from lfsgan.train import TrainConfig, Trainer

    torch.set_num_threads(1)
    LastLayers = load_worked_method()

    def models(seed):
        torch.manual_seed(seed)
        return Generator(16, style_dim=32, n_mlp=2, channel_max=32), Discriminator(16, channel_max=32)

    def images(G):
        z = torch.randn(4, G.style_dim, generator=torch.Generator().manual_seed(123))
        with torch.no_grad():
            return G(z, noise_mode="const")

    G0, D0 = models(0)
    source = (G0.state_dict(), D0.state_dict())
    with pytest.raises(ConfigError, match="bogus"):
        LastLayers({"bogus": 1})  # options are checked

    states, drawn = [], []
    for t in range(2):
        method = LastLayers()
        G, D = models(100 + t)
        method.setup(G, D, TaskContext(t, f"t{t}", *source, previous=list(states), seed=t))
        trainer = Trainer(G, D, TrainConfig(batch=4, r1_every=2, path_reg_every=2, seed=0), method)
        real = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(t)) * 2 - 1
        for step in range(3):
            trainer.step(step, real)
        drawn.append(images(G))
        assert not torch.equal(drawn[-1], images(LastLayers().rebuild(models(9)[0], source[0], []))), "it did not train"
        trained = {id(p) for p in method.generator_parameters(G)}
        frozen = [k for k, p in G.named_parameters() if id(p) not in trained and not torch.equal(p, source[0][k])]
        assert not frozen, f"parameters outside generator_parameters changed: {frozen[:3]}"
        save_checkpoint(tmp_path / f"t{t}.pt", method.task_state(G, D), {"task": t})
        states.append(load_checkpoint(tmp_path / f"t{t}.pt")[0])  # tensors only: loaded with weights_only
        rebuilt = LastLayers().rebuild(models(9)[0], source[0], states)
        assert torch.equal(images(rebuilt), drawn[-1]), "rebuild does not give the trained generator"
    assert LastLayers.isolates_tasks
    assert torch.equal(images(LastLayers().rebuild(models(9)[0], source[0], states[:1])), drawn[0]), "task 0 forgot"


# --- the command line ---------------------------------------------------------------------------------
def test_cli_help_lists_every_verb_on_one_line_and_says_what_it_reads_and_writes(capsys, monkeypatch):
    from lfsgan.cli import _VERBS, main

    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit):
        main(["--help"])
    listing = capsys.readouterr().out
    for name, (_module, help, _add) in _VERBS.items():
        assert re.search(rf"^    {re.escape(name)} +{re.escape(help)}$", listing, re.M), f"`{name}` not on one line:\n{listing}"
        with pytest.raises(SystemExit):
            main([name, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert " Reads " in text and " Writes " in text, f"`lfsgan {name} --help` does not say what it reads and writes"
