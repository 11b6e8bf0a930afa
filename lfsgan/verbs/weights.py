"""`lfsgan weights`: list every weights file a config needs, or fetch them (``--fetch``) before an offline run.

Exit status 1, with one line naming each file and what to do, when a file is missing, is not the
published file (its sha256), or cannot be downloaded."""

from __future__ import annotations

import logging

from lfsgan.metrics.requirements import WeightsFile, check_required_weights, fetch_weights, required_weights

log = logging.getLogger("lfsgan")


def run(cfg: dict, fetch: bool = False) -> None:
    needs = required_weights(cfg)
    if not needs:
        print("this config needs no pretrained weights file (demo extractor, random LPIPS backbone, source trained here)")
        return
    for need in needs:
        if fetch and need.url is not None:
            fetch_weights(need)
        print(describe(need))
    check_required_weights(cfg, source="lfsgan weights")


def describe(need: WeightsFile) -> str:
    """A few lines on one file: present (and its sha256), WRONG (not the published file) or MISSING."""
    status = "MISSING" if not need.present else f"{'WRONG' if need.wrong() else 'present'}  sha256 {need.actual_sha256()}"
    if need.sha256 is None:
        expected = "no published sha256"
    else:
        expected = f"sha256 {'is' if len(need.sha256) == 64 else 'starts with'} {need.sha256}"
    return (f"{need.what}\n  {status}\n  path: {need.path}  (config key `{need.config_key}`)\n  expected: {expected}\n"
            f"  from: {need.url or 'only you have it'}")
