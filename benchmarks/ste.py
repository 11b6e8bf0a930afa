"""Benchmark: the whole STE rule (``lfsgan ste``, rule ``ste_search``) of a config on two sources,
beside weight matching of the same pair.

The sources are **random-initialised** generators and discriminators of the config's model
(seeds 0 and 1), written as source run folders by :func:`lfsgan.verbs._models.write_source`:
the cost of the search depends on the architecture and the step count, not on what the weights
learned (the permutations found do). The verb runs as the rule runs it (a subprocess with the
config's ``threads``); the script prints its wall time, the seconds per 100 steps the verb
itself records in ``ste.json`` (projection = WM per step, forward/backward, evaluation), the
two-model WM time of the same two generators measured in this run, and their ratio.

    python benchmarks/ste.py                           # config/config.yaml (the demo)
    python benchmarks/ste.py --config config/test.yaml --json out.json

For the paper-size model (256 px, multiplier 2) use ``benchmarks/match.py --nets G --ste-steps K``
(a few steps, extrapolated to 100).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from lfsgan.config import load_config  # noqa: E402
from lfsgan.io import write_json  # noqa: E402
from lfsgan.permute import generator_spec, match  # noqa: E402
from lfsgan.train import build_models  # noqa: E402
from lfsgan.verbs._models import model_config, write_source  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "config" / "config.yaml"))
    ap.add_argument("--seeds", type=int, nargs=2, default=(0, 1), help="init seeds of the two sources")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    cfg = load_config(args.config)
    threads = int(cfg.get("threads") or 0)
    if threads:
        torch.set_num_threads(threads)
    pc, sc = cfg["permutation"], cfg["permutation"]["ste"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, model {model_config(cfg)}, "
          f"STE steps={sc['steps']} batch={sc['batch']} eval_latents={sc['eval_latents']}", flush=True)

    with tempfile.TemporaryDirectory(prefix="ste-bench-") as tmp:
        sources = []
        for seed in args.seeds:
            torch.manual_seed(seed)
            G, D = build_models(model_config(cfg))
            out = Path(tmp) / f"seed{seed}"
            write_source(cfg, {"g_ema": G.state_dict(), "d": D.state_dict()}, out, {"seed": seed, "init": "random"}, f"random init {seed}")
            sources.append(out / "final.pt")
        states = [torch.load(s, weights_only=True)["g_ema"] for s in sources]

        t0 = time.perf_counter()
        wm = match(states[0], states[1], generator_spec(states[0], lr_mlp=cfg["model"]["lr_mlp"]), max_iter=pc["max_iter"], seed=pc["seed"])
        wm_s = time.perf_counter() - t0

        cmd = [sys.executable, "-m", "lfsgan.cli", "ste", "--config", str(args.config), "--sources", *map(str, sources),
               "--out", str(Path(tmp) / "ste")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        rule_s = time.perf_counter() - t0
        if proc.returncode:
            raise SystemExit(f"`lfsgan ste` failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
        ste = json.loads((Path(tmp) / "ste" / "ste.json").read_text())

    per100 = {k: round(100 * v / ste["steps_run"], 2) for k, v in ste["seconds"].items()}
    row = {
        "config": str(args.config), "sources": "random init", "steps": ste["steps_run"], "batch": sc["batch"],
        "rule_wall_s": round(rule_s, 2), "search_s": round(ste["seconds_this_run"], 2),
        "s_per_100_steps": round(ste["seconds_per_100_steps"], 2), **{f"{k}_s_per_100": v for k, v in per100.items()},
        "wm_s": round(wm_s, 3), "wm_sweeps": wm.sweeps, "ste_per_100_over_wm": round(ste["seconds_per_100_steps"] / wm_s, 1),
        "start_loss": ste["start_loss"], "selected_loss": ste["selected_loss"], "selected_step": ste["selected_step"],
    }
    print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    if args.json:
        write_json(args.json, {"args": vars(args), "threads": torch.get_num_threads(), "results": [row]})


if __name__ == "__main__":
    main()
