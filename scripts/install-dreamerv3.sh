#!/usr/bin/env bash
# Create .venv-dreamerv3: the project's environment (as scripts/setup-venv.sh builds .venv) plus
# the official DreamerV3 package (JAX), for tests/extras/test_dreamerv3_crosscheck.py:
#   bash scripts/install-dreamerv3.sh && .venv-dreamerv3/bin/pytest -q tests/extras
# dreamerv3 1.5.0 does not install with its own requirements (its gym 0.19 pin fails to build,
# tensorflow is not needed), so the pins of pyproject.toml's `dreamerv3` extra, the lean stack
# that its maths needs, are installed with --no-deps. torch comes first and pinned to 2.13.0
# (a local CPU build on this project's machines), and nothing here may pull another torch.
# Idempotent: a marker records what was installed; a second run with the same
# requirements.lock and pins does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=.venv-dreamerv3
MARKER=$VENV/.l2rl-dreamerv3-installed
"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"l2rl needs Python >= 3.11, found {sys.version.split()[0]}")
PY
# The extra's pins, one a line (tomllib: Python >= 3.11).
PINS=$("$PYTHON" -c '
import tomllib
extra = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["dreamerv3"]
print("\n".join(extra))
')
WANTED=$(printf '%s\n%s\n' "$(sha256sum requirements.lock)" "$PINS")
if [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$WANTED" ]; then
    echo "$VENV already set up (remove $MARKER to reinstall)"
    exit 0
fi
rm -f "$MARKER"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
pip_install() {
    # Filters only pip's warnings about absent local mirror folders; pip's exit status stands.
    "$VENV/bin/python" -m pip install --quiet "$@" 2> >(grep -v "is ignored: it is neither" >&2)
}
pip_install "torch==2.13.0"
pip_install -r requirements.lock
pip_install --no-deps -e .
# shellcheck disable=SC2086 # one argument per pin
pip_install --no-deps $PINS
"$VENV/bin/python" -c "
import dreamerv3, jax, torch, l2rl.components
assert torch.__version__.split('+')[0] == '2.13.0', torch.__version__
print('dreamerv3 environment ready: jax', jax.__version__, 'torch', torch.__version__)
"
printf '%s\n' "$WANTED" >"$MARKER"
