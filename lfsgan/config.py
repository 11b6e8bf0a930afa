"""Load, validate and resolve a workflow config.

The schema at ``workflow/schemas/config.schema.yaml`` is the single source of truth: the Snakefile
and every CLI verb call :func:`validate_config`, which fills in the schema's defaults and turns
the first violation into an error that names the key path, the file and what is expected.
YAML is read with a strict variant of ``yaml.SafeLoader`` (:func:`read_yaml`): no config value is ever
executed, and a key given twice in one mapping (at any depth) is an error naming the key and both
lines, instead of YAML's silent "the last one wins". The schema's ``integer`` means a whole number
written as one: ``2.0`` or ``1.0e+9`` is refused (JSON Schema itself accepts a float with no
fractional part), so a value that would fail later in a job fails when the config is read.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators
from yaml.constructor import ConstructorError

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A config that does not satisfy the schema or refers to things that do not exist."""


class _DuplicateKey(ConstructorError):
    """A key given twice in one YAML mapping."""


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first_line: dict[Any, int] = {}
        for key_node, _value in node.value:  # the mapping's own keys: those a merge (<<) brings in may be overridden
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool)) and key in first_line:
                raise _DuplicateKey(
                    None, None, f"key {key!r} appears twice in one mapping (lines {first_line[key]} and {line}); "
                    "YAML would silently keep the last one: delete or merge one of them", key_node.start_mark)
            first_line.setdefault(key, line)
        self.flatten_mapping(node)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> Any:
    """The YAML document in ``path``, read safely and strictly (see the module docstring).

    Raises :class:`ConfigError` naming the file for a missing file, bad YAML or a duplicate key.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        return yaml.load(path.read_text(), Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as e:
        raise ConfigError(f"{path}: {e.problem}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from e


def _is_strict_integer(checker, instance: Any) -> bool:
    """JSON Schema's ``integer``, less floats: ``2.0`` is a number, not an integer, in a config."""
    return isinstance(instance, int) and not isinstance(instance, bool)


def _with_defaults(validator_class):
    """A validator that writes each property's ``default`` into the instance before checking it."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    type_checker = validator_class.TYPE_CHECKER.redefine("integer", _is_strict_integer)
    return validators.extend(validator_class, {"properties": set_defaults}, type_checker=type_checker)


_DefaultingValidator = _with_defaults(Draft202012Validator)


def load_schema() -> dict:
    """The config schema (a fresh copy: callers may modify it)."""
    return copy.deepcopy(_parsed_schema(SCHEMA_PATH))


@functools.lru_cache(maxsize=4)
def _parsed_schema(path: Path) -> dict:
    """``path`` parsed once per process, with libyaml's parser when PyYAML has it: the pure-Python
    one took ~0.25 s per parse of this file, twice in every job."""
    if not path.is_file():
        raise ConfigError(f"config schema not found at {path}; install lfsgan from a checkout (pip install -e .)")
    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _path(error) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "<top level>"


def _first_error(validator, instance: Any, source: str, prefix: str = "") -> None:
    """Raise :class:`ConfigError` for the shallowest violation of ``instance`` (defaults are filled in place)."""
    errors = sorted(validator.iter_errors(instance), key=lambda e: (len(list(e.absolute_path)), _path(e)))
    if not errors:
        return
    e = errors[0]
    msg = e.message
    if e.validator == "additionalProperties":
        allowed = sorted(e.schema.get("properties", {}))
        if allowed:
            msg += f" (allowed keys here: {', '.join(allowed)})"
    elif e.validator == "type" and "integer" in e.validator_value and isinstance(e.instance, float):
        msg += " (write a whole number without a decimal point or exponent, e.g. 2 or 1000000)"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    path = _path(e)
    if prefix:
        path = prefix if path == "<top level>" else f"{prefix}.{path}"
    raise ConfigError(f"{source}: key '{path}': {msg}{more}")


def validate_config(config: dict, source: str = "<config>") -> dict:
    """Return a validated copy of ``config`` with defaults filled in; raise :class:`ConfigError`."""
    cfg = copy.deepcopy(config)
    _first_error(_DefaultingValidator(load_schema()), cfg, source)
    _check_references(cfg, source)
    return cfg


def method_options(kind: str, options: dict | None, source: str = "<method options>") -> dict:
    """``options`` of a method ``kind`` checked against, and completed from, the schema.

    The rules are ``$defs/options_<kind>``, or ``$defs/options_base`` (``style_mixing`` only) for a
    kind without options of its own — the same that :func:`validate_config` applies to a config's
    ``methods.<name>.options``; this is for code that builds a method without a config file. Which
    kinds exist is the registry's business (``lfsgan.methods.METHODS``) and the schema's enum.
    """
    defs = load_schema()["$defs"]
    ref = f"#/$defs/options_{kind}" if f"options_{kind}" in defs else "#/$defs/options_base"
    opts = copy.deepcopy(dict(options or {}))
    _first_error(_DefaultingValidator({"$ref": ref, "$defs": defs}), opts, source, "options")
    return opts


def _check_references(cfg: dict, source: str) -> None:
    domains = cfg["data"]["domains"]
    if cfg["source"]["domain"] not in domains:
        raise ConfigError(
            f"{source}: key 'source.domain': '{cfg['source']['domain']}' is not a key of data.domains ({', '.join(domains)})"
        )
    for i, task in enumerate(cfg["tasks"]):
        if task not in domains:
            raise ConfigError(f"{source}: key 'tasks.{i}': '{task}' is not a key of data.domains ({', '.join(domains)})")
    seeds = cfg["source"]["seeds"]
    for i, (a, b) in enumerate(cfg["permutation"]["pairs"]):
        for s in (a, b):
            if s not in seeds:
                raise ConfigError(f"{source}: key 'permutation.pairs.{i}': seed {s} is not in source.seeds {seeds}")
        if a == b:
            raise ConfigError(f"{source}: key 'permutation.pairs.{i}': a pair needs two different seeds")
    for i, s in enumerate(cfg["permutation"]["seeds"]):
        if s not in seeds:
            raise ConfigError(f"{source}: key 'permutation.seeds.{i}': seed {s} is not in source.seeds {seeds}; add it there (it is pretrained) or remove it")
    _check_shipped_sources(cfg["source"], source)
    fid = cfg["evaluation"]["fid"]
    if fid["extractor_checkpoint"] and fid["extractor"] != "lfsgan-demo-cnn":
        raise ConfigError(f"{source}: key 'evaluation.fid.extractor_checkpoint' is set but evaluation.fid.extractor is "
                          f"{fid['extractor']!r}; only the lfsgan-demo-cnn extractor is trained by the workflow, so only it can be shipped")
    for name, spec in domains.items():
        if ("builtin" in spec) == ("path" in spec):
            raise ConfigError(
                f"{source}: key 'data.domains.{name}': give either `builtin: NAME` (a demo domain) or "
                f"`path: FOLDER_OR_ZIP` (your images, optionally with `shots: FOLDER_OR_ZIP`), not {sorted(spec)}"
            )
        if "shots" in spec and "builtin" in spec:
            raise ConfigError(f"{source}: key 'data.domains.{name}.shots': only a `path` domain takes given shots")
        if "builtin" in spec:
            from lfsgan.data import DEMO_DOMAINS  # local import: keeps `import lfsgan.config` light

            if spec["builtin"] not in DEMO_DOMAINS:
                raise ConfigError(
                    f"{source}: key 'data.domains.{name}.builtin': unknown demo domain '{spec['builtin']}' "
                    f"(available: {', '.join(sorted(DEMO_DOMAINS))})"
                )


def _check_shipped_sources(src: dict, source: str) -> None:
    """``source.checkpoints`` lists exactly the seeds of ``source.seeds``, and excludes ``import_checkpoint``;
    ``source.continue_from`` lists some of them, only when neither is set."""
    continued = [e["seed"] for e in src["continue_from"]]
    if continued and (src["checkpoints"] or src["import_checkpoint"]):
        raise ConfigError(f"{source}: key 'source.continue_from' applies only to sources pretrained in the run; "
                          "empty source.checkpoints and source.import_checkpoint, or remove it")
    if len(continued) != len(set(continued)) or not set(continued) <= set(src["seeds"]):
        raise ConfigError(f"{source}: key 'source.continue_from': lists seeds {continued}, expected at most one entry "
                          f"for each of source.seeds {src['seeds']}")
    shipped = [e["seed"] for e in src["checkpoints"]]
    if not shipped:
        return
    if src["import_checkpoint"]:
        raise ConfigError(f"{source}: keys 'source.checkpoints' and 'source.import_checkpoint' are both set; keep one")
    if sorted(shipped) != sorted(set(src["seeds"])) or len(shipped) != len(set(shipped)):
        raise ConfigError(
            f"{source}: key 'source.checkpoints': lists seeds {shipped}, expected one entry for each of source.seeds {src['seeds']}"
        )


def load_config(path: str | Path) -> dict:
    """Read a YAML config file safely and strictly (:func:`read_yaml`) and validate it."""
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    return validate_config(raw, source=str(path))


#: a replicate run of a method is named ``<method>@r<k>`` (k >= 1); replicate 0 keeps the plain name
REPLICATE_SEP = "@r"


def method_runs(cfg: dict) -> list[str]:
    """Every (method, replicate) the workflow trains: ``m`` for replicate 0, ``m@r1``… up to ``replicates - 1``.

    Replicates are independent task trainings (their own training seed), so every metric can be
    reported as a mean with a confidence interval over them; each is a separate Snakemake job.
    """
    return [m if k == 0 else f"{m}{REPLICATE_SEP}{k}" for m in cfg["methods"] for k in range(cfg["replicates"])]


def split_run(cfg: dict, run: str) -> tuple[str, int]:
    """``(method, replicate)`` of a run name from :func:`method_runs`; a clear error for anything else."""
    method, sep, k = run.partition(REPLICATE_SEP)
    replicate = int(k) if sep and k.isdigit() else (0 if not sep else -1)
    if method not in cfg["methods"] or not 0 <= replicate < cfg["replicates"]:
        raise ConfigError(
            f"unknown method '{run}' (config methods: {', '.join(cfg['methods'])}; replicate k of method m is "
            f"'m{REPLICATE_SEP}k' with 1 <= k < replicates = {cfg['replicates']})"
        )
    return method, replicate


def method_entry(cfg: dict, run: str) -> dict:
    """The config entry (``kind``, ``options``, ``train``) of a method or one of its replicate runs."""
    return cfg["methods"][split_run(cfg, run)[0]]


def method_train_config(cfg: dict, method: str) -> dict:
    """Training settings of ``method``'s tasks: ``task_train`` overridden by the method's ``train``."""
    return {**cfg["task_train"], **method_entry(cfg, method).get("train", {})}


def permutation_seeds(cfg: dict) -> list[int]:
    """The source seeds the permutation analysis compares: ``permutation.seeds``, else ``source.seeds``."""
    if not cfg["permutation"]["enabled"]:
        return []
    return list(cfg["permutation"]["seeds"] or cfg["source"]["seeds"])


def permutation_pairs(cfg: dict) -> list[tuple[int, int]]:
    """The (A, B) seed pairs to match: the configured pairs, else every pair of the permutation seeds."""
    if not cfg["permutation"]["enabled"]:
        return []
    pairs = cfg["permutation"]["pairs"]
    if pairs:
        return [tuple(p) for p in pairs]
    seeds = permutation_seeds(cfg)
    return [(a, b) for i, a in enumerate(seeds) for b in seeds[i + 1 :]]


def merge_sets(cfg: dict) -> list[tuple[int, ...]]:
    """Seed sets merged into one generator: all permutation seeds, and every pair when there are
    three or more (so 2-model and N-model merges are compared); none unless ``permutation.merge``."""
    seeds = permutation_seeds(cfg)
    if not cfg["permutation"]["merge"] or len(seeds) < 2:
        return []
    sets = [tuple(seeds)]
    if len(seeds) > 2:
        sets += [(a, b) for i, a in enumerate(seeds) for b in seeds[i + 1 :]]
    return sets


def config_digest(obj: Any) -> str:
    """Stable short hash of a JSON-serialisable object (for content-addressed names)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]
