#!/usr/bin/env bash
# Reproduce the offline demo's shipped source generators, data/sources/wide-seed<S>.pt (config/config.yaml's
# source.checkpoints, 64 channels): pretrain every seed of source.seeds with the longer recipe of
# config/source-demo.yaml (merged over config/config.yaml), copy each results/source/seed<S>/final.pt into
# data/sources/ and print the entries to paste into source.checkpoints. Extra arguments go to snakemake (e.g. --cores 4).
# SEEDS="2" pretrains other seeds (config/study.yaml's third source: SEEDS=2 THREADS=2).
# OVERLAY=config/narrow.yaml pretrains with that overlay's model (applied before the pretraining recipe, so its
# source.checkpoints are ignored) and PREFIX names the files data/sources/<PREFIX>seed<S>.pt (default "wide-"):
#   OVERLAY=config/narrow.yaml PREFIX= bash scripts/pretrain-demo-sources.sh   (the earlier 32-channel sources)
# PHASE=<overlay> is applied after the recipe, for a further phase from a finished source (source.continue_from):
#   SEEDS=0 THREADS=2 PHASE=config/source-demo-longer.yaml PREFIX=wide-longer- bash scripts/pretrain-demo-sources.sh
#   (the demo's seed-0 source, data/sources/wide-longer-seed0.pt)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi
seeds=${SEEDS:-$(python -c "import yaml; print(*yaml.safe_load(open('config/config.yaml'))['source']['seeds'])")}
targets=()
for s in $seeds; do targets+=("results/source/seed$s/final.pt"); done
overrides=$(mktemp --suffix=.yaml)
trap 'rm -f "$overrides"' EXIT
printf 'threads: %s\nsource:\n  seeds: [%s]\n' "${THREADS:-1}" "$(echo $seeds | tr ' ' ',')" > "$overrides"
# targets before --configfile, which takes every following word as a file
snakemake "${targets[@]}" --workflow-profile workflow/profiles/default --cores "${CORES:-2}" \
    --configfile config/config.yaml ${OVERLAY:-} config/source-demo.yaml ${PHASE:-} "$overrides" "$@"
mkdir -p data/sources
echo "source.checkpoints for ${OVERLAY:-config/config.yaml}:"
for s in $seeds; do
    file="data/sources/${PREFIX-wide-}seed$s.pt"
    cp "results/source/seed$s/final.pt" "$file"
    echo "  - {seed: $s, path: $file, sha256: $(sha256sum "$file" | cut -d' ' -f1)}"
done
