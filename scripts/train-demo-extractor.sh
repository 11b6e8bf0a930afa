#!/usr/bin/env bash
# Reproduce the offline demo's shipped feature extractor, data/extractor/demo-cnn.pt (config/config.yaml's
# evaluation.fid.extractor_checkpoint): train the demo CNN with the demo config (rule train_extractor, the
# checkpoint entry emptied by an overlay), copy results/extractor/demo_cnn.pt into data/extractor/ and print
# the entry to paste into the config. OVERLAY=<file> trains it for that overlay's data and tasks; extra
# arguments go to snakemake. Its training is seeded and single-threaded (the demo config's `threads: 1`), so
# the file comes out byte for byte the same on the same software; `lfsgan install-extractor` checks that a
# shipped file was trained on exactly the run's inputs before a run uses it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi
overrides=$(mktemp --suffix=.yaml)
trap 'rm -f "$overrides"' EXIT
printf 'evaluation:\n  fid:\n    extractor_checkpoint: null\n' > "$overrides"
# the target before --configfile, which takes every following word as a file; --force: train it even when an
# installed copy is there
snakemake results/extractor/demo_cnn.pt --force --workflow-profile workflow/profiles/default --cores "${CORES:-2}" \
    --configfile config/config.yaml ${OVERLAY:-} "$overrides" "$@"
mkdir -p data/extractor
cp results/extractor/demo_cnn.pt data/extractor/demo-cnn.pt
echo "evaluation.fid.extractor_checkpoint for ${OVERLAY:-config/config.yaml}:"
echo "  extractor_checkpoint: {path: data/extractor/demo-cnn.pt, sha256: $(sha256sum data/extractor/demo-cnn.pt | cut -d' ' -f1)}"
