#!/usr/bin/env bash
# Set up (venv, pinned packages, Debian test packages) and run the whole test suite.
# Exits non-zero when any test fails. Extra arguments go to pytest (e.g. -m "not integration").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
. .venv/bin/activate
exec python -m pytest "$@"
