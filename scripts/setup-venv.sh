#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv with everything l2rl needs,
# at the exact versions of requirements.lock (L2RL_UNPINNED=1: the newest that pyproject.toml
# allows instead). torch comes first and pinned to 2.13.0: on this project's machines that
# release is a local CPU build, while an unpinned torch would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"l2rl needs Python >= 3.11, found {sys.version.split()[0]}")
PY
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
pip_install() {
    # Filters only pip's warnings about absent local mirror folders; pip's exit status stands.
    .venv/bin/python -m pip install --quiet "$@" 2> >(grep -v "is ignored: it is neither" >&2)
}
pip_install "torch==2.13.0"
if [ "${L2RL_UNPINNED:-0}" = "1" ]; then
    pip_install -e ".[dev]"
else
    pip_install -r requirements.lock
    pip_install --no-deps -e .
fi
.venv/bin/python -c "import torch, l2rl.components, l2rl.scenarios; print('l2rl environment ready: torch', torch.__version__)"
