"""`lfsgan install-extractor`: a shipped demo CNN stands in for training it (rule `install_extractor`).

The offline demo's extractor is trained once with the demo config and shipped in git
(``data/extractor/``); ``evaluation.fid.extractor_checkpoint`` pins the file's sha256. It is used only
when it is what the run would train: its sha256 matches the config, it loads with
``weights_only=True`` as a demo CNN, it was trained with the settings `lfsgan train-extractor` uses
(the config's ``extractor_steps``, seed, batch size, learning rate, held-out fraction) and its
recorded ``inputs_sha256`` equals the digest of the inputs `lfsgan train-extractor` would train on
here (the prepared sets and the digit renderings, :func:`~lfsgan.verbs.train_extractor.extractor_inputs`).
Then its bytes are copied unchanged, so every protocol that records the extractor's sha256 reads the
same value as after training it in the run.
"""

from __future__ import annotations

import logging
import shutil

from lfsgan.io import atomic_path, sha256_file
from lfsgan.metrics.demo_extractor import load_demo_extractor
from lfsgan.verbs.train_extractor import extractor_inputs, extractor_settings

log = logging.getLogger("lfsgan")

REMAKE = "set evaluation.fid.extractor_checkpoint to null to train it in the run, or remake the shipped file (bash scripts/train-demo-extractor.sh)"


def shipped_extractor(cfg: dict) -> dict:
    """The ``evaluation.fid.extractor_checkpoint`` entry (the config's validation allows one only for
    the demo CNN); a clear error when there is none."""
    entry = cfg["evaluation"]["fid"]["extractor_checkpoint"]
    if not entry:
        raise ValueError("config key 'evaluation.fid.extractor_checkpoint' is empty; add {path: ..., sha256: ...}")
    return entry


def run(cfg: dict, data: list[str], checkpoint: str, out: str) -> None:
    expected = shipped_extractor(cfg)["sha256"]
    found = sha256_file(checkpoint)
    if found != expected:
        raise ValueError(f"{checkpoint}: sha256 {found} differs from evaluation.fid.extractor_checkpoint {expected}; "
                         f"restore the shipped file (`git checkout -- {checkpoint}`) or {REMAKE}")
    _, meta = load_demo_extractor(checkpoint)  # weights_only
    settings = extractor_settings(cfg)
    if meta.get("steps") != settings["steps"]:
        raise ValueError(f"{checkpoint}: trained for {meta.get('steps')} steps, the config's evaluation.fid.extractor_steps "
                         f"is {settings['steps']}; {REMAKE}")
    recorded = {**{k: meta.get(k) for k in settings}, "holdout": (meta.get("heldout") or {}).get("fraction")}
    if recorded != settings:
        differ = {k: (recorded[k], settings[k]) for k in settings if recorded[k] != settings[k]}
        raise ValueError(f"{checkpoint}: trained with other settings than `lfsgan train-extractor` uses (file, here: {differ}); {REMAKE}")
    inputs = extractor_inputs(cfg, data)
    if meta.get("inputs_sha256") != inputs.sha256():
        trained = {d["name"]: d["images_sha256"] for d in meta.get("training_data") or []}
        here = {d["name"]: d["images_sha256"] for d in inputs.data_identity}
        differ = sorted(n for n in {*trained, *here} if trained.get(n) != here.get(n))
        which = f"the prepared sets {differ} differ" if differ else "the digit renderings differ (same prepared sets)"
        raise ValueError(f"{checkpoint}: trained on other inputs than this run's ({which}: inputs_sha256 "
                         f"{meta.get('inputs_sha256')} vs {inputs.sha256()}); {REMAKE}")
    with atomic_path(out) as tmp:
        shutil.copyfile(checkpoint, tmp)
    log.info("installed %s (sha256 %s, trained on inputs %s) -> %s", checkpoint, found, meta["inputs_sha256"], out)
