"""`lfsgan weights`: list every weights file a config needs, or fetch them (``--fetch``) before an offline run."""

from __future__ import annotations

import logging

from lfsgan.io import sha256_file
from lfsgan.metrics.requirements import check_required_weights, fetch_weights, required_weights

log = logging.getLogger("lfsgan")


def run(cfg: dict, fetch: bool = False) -> None:
    needs = required_weights(cfg)
    if not needs:
        print("this config needs no pretrained weights file (demo extractor, random LPIPS backbone, source trained here)")
        return
    for need in needs:
        if fetch and need.url is not None:
            fetch_weights(need)
        if need.present:
            status = f"present  sha256 {sha256_file(need.path)}"
        else:
            status = "MISSING"
        expected = f"sha256 starts with {need.sha256_prefix}" if need.sha256_prefix else "no published sha256"
        source = need.url or "only you have it"
        print(f"{need.what}\n  {status}\n  path: {need.path}  (config key `{need.config_key}`)\n  expected: {expected}\n  from: {source}")
    check_required_weights(cfg, source="lfsgan weights")
