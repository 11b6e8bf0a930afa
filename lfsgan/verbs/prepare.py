"""`lfsgan prepare`: one data domain -> uint8 tensors + manifest (rule `prepare_data`)."""

from __future__ import annotations

from pathlib import Path

from lfsgan.config import ConfigError
from lfsgan.data import prepare_dataset


def run(cfg: dict, domain: str, out: str) -> None:
    domains = cfg["data"]["domains"]
    if domain not in domains:
        raise ConfigError(f"domain '{domain}' is not a key of data.domains ({', '.join(domains)})")
    spec = domains[domain]
    source = f"builtin:{spec['builtin']}" if "builtin" in spec else Path(spec["path"])
    data = cfg["data"]
    prepare_dataset(
        source,
        Path(out),
        resolution=data["resolution"],
        resize_filter=data["resize_filter"],
        n_shots=data["n_shots"],
        shot_seed=data["shot_seed"],
        shots_source=Path(spec["shots"]) if "shots" in spec else None,
    )
