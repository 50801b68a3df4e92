#!/usr/bin/env bash
# Set up .venv, then run the checks CI runs: ruff, mypy and the default (fast) test suite.
# Slow learning tests are marked `slow` and run with: .venv/bin/pytest -m slow
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# pytest exits 5 when it collects no tests; set -e turns that into a failure too.
.venv/bin/pytest -q "$@"
