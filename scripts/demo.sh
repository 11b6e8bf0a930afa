#!/usr/bin/env bash
# Set up and run the offline demo end to end (config/config.yaml, CPU), then build the HTML report.
# Extra arguments go to snakemake (e.g. --cores 4, --configfile my.yaml, -n).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. .venv/bin/activate
snakemake --workflow-profile workflow/profiles/default --cores "${CORES:-2}" "$@"
snakemake --cores 1 --report results/report/report.html "$@"
echo "[demo] done: open results/report/report.html (tables: results/report/summary.md)"
