#!/usr/bin/env bash
# Regenerate requirements.lock: resolve pyproject.toml's ranges (with the dev extra) in a
# fresh virtual environment and write the exact versions pip chose.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"$PYTHON" -m venv "$scratch/venv"
"$scratch/venv/bin/python" -m pip install --quiet "torch==2.13.0"
"$scratch/venv/bin/python" -m pip install --quiet -e ".[dev]"
{
    echo "# Exact versions of every package l2rl's set-up installs (scripts/setup-venv.sh uses it;"
    echo "# L2RL_UNPINNED=1 installs from pyproject.toml's ranges instead). Regenerate with"
    echo "# scripts/lock-requirements.sh. torch is the local CPU build of 2.13.0."
    # The local build's "+cpu" tag is not a registry version: pin the release.
    "$scratch/venv/bin/python" -m pip freeze --exclude-editable | sed 's/^torch==\(.*\)+cpu$/torch==\1/'
} > requirements.lock
echo "wrote requirements.lock ($(grep -vc '^#' requirements.lock) packages)"
