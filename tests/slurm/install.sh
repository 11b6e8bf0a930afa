#!/usr/bin/env bash
# Install a single-node SLURM (Debian 12 `slurm-wlm`, 22.05) and munge for the integration tests.
#
# Idempotent: does nothing when the binaries are already there, runs `apt-get update` only when
# the package index has never been fetched or the first install attempt fails.
# Needs root (the CI machine runs as root). Takes ~20 s on a fresh machine.
#
# Usage: bash tests/slurm/install.sh
set -euo pipefail

need=(slurmctld slurmd sbatch squeue scancel sinfo munged munge)
missing=0
for b in "${need[@]}"; do
    command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || missing=1
done
if [ "$missing" = 0 ]; then
    echo "install.sh: slurm and munge already installed"
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    echo "install.sh: needs root to apt-get install slurm-wlm munge (run as root or install them yourself)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
pkgs=(slurm-wlm munge)
# The package index is empty on a fresh image; fetch it once, and again only if the install fails
# (e.g. a stale index pointing at superseded .deb versions).
if ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then
    apt-get update -q
fi
if ! apt-get install -y -q --no-install-recommends "${pkgs[@]}"; then
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${pkgs[@]}"
fi
echo "install.sh: installed $(dpkg-query -W -f='${Package} ${Version}  ' "${pkgs[@]}")"
