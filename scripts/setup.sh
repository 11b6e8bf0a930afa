#!/usr/bin/env bash
# Create .venv and install lfsgan with its pinned dependencies (idempotent: a no-op when the
# pinned set is already installed). Usage: scripts/setup.sh [--test]
#   --test  also the test extras and the Debian packages the integration tests use
#           (slurm-wlm + munge for a real single-node SLURM, chromium to render the HTML report).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LFSGAN_VENV:-.venv}
PY=${PYTHON:-python3}

if [[ "${1:-}" == "--test" ]]; then
  need=()
  command -v slurmctld >/dev/null || need+=(slurm-wlm munge)
  command -v chromium >/dev/null || need+=(chromium)
  command -v git >/dev/null || need+=(git)
  if ((${#need[@]})); then
    echo "[setup] apt-get install ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  extras="[test]"
else
  extras=""
fi

stamp="$VENV/.lfsgan-installed"
want="$(sha256sum pyproject.toml | cut -c1-16)${extras}"
if [[ -f "$stamp" && "$(cat "$stamp")" == *"$want"* ]]; then
  echo "[setup] $VENV is up to date"
  exit 0
fi
# The registry's torch build brings its CUDA libraries (measured: 6.0 GB for the whole venv, and pip
# unpacks its downloads in a temporary folder beside that: a CI run with less than ~9 GB free failed with
# "No space left on device"); say so before pip runs out of space half-way through an install.
if [[ ! -x "$VENV/bin/python" ]]; then
  mkdir -p "$(dirname "$VENV")"
  free_mb=$(df -Pm "$(dirname "$VENV")" | awk 'NR==2 {print $4}')
  tmp_mb=$(df -Pm "${TMPDIR:-/tmp}" | awk 'NR==2 {print $4}')
  if ((tmp_mb < free_mb)); then free_mb=$tmp_mb; fi
  if ((free_mb < 9000)); then
    echo "[setup] only ${free_mb} MB free for $VENV and pip's temporary files; the install needs about 9,000 MB" \
         "(torch with its CUDA libraries). Free some space, or set LFSGAN_VENV to a path on a larger disk." >&2
    exit 1
  fi
fi
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
echo "[setup] installing lfsgan${extras} and its pinned dependencies into $VENV (a few minutes the first time)"
"$VENV/bin/python" -m pip install -q --no-cache-dir -e ".${extras}" 2>&1 | grep -vE "is ignored|^\s*$" || true
"$VENV/bin/python" -c "import lfsgan, torch, torchvision, lpips, torch_fidelity, tensorly, snakemake" \
  || { echo "[setup] installation incomplete: an import failed" >&2; exit 1; }
echo "$want" >> "$stamp"
echo "[setup] done"
