#!/usr/bin/env bash
# Create .venv-l2metrics: JHU APL's l2metrics 3.1.0 (and the l2logger 1.8.2 it reads logs with)
# for tests/extras/test_l2metrics_crosscheck.py, which compares l2rl.metrics_l2m with it:
#   bash scripts/install-l2metrics.sh && .venv/bin/pytest -q tests/extras/test_l2metrics_crosscheck.py
# l2metrics 3.1.0 uses np.NaN (removed in numpy 2), so this environment is kept apart from .venv
# (numpy 2); it holds no l2rl and no torch: the test runs in .venv and calls this environment's
# python on the logs l2rl exported. Idempotent: a marker records what was installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${L2METRICS_VENV:-.venv-l2metrics}
MARKER=$VENV/.l2rl-l2metrics-installed
PINS="l2metrics==3.1.0 l2logger==1.8.2 numpy<2 pandas<3 pyarrow<26"
if [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$PINS" ]; then
    echo "$VENV already set up (remove $MARKER to reinstall)"
    exit 0
fi
rm -f "$MARKER"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
# Filters only pip's warnings about absent local mirror folders; pip's exit status stands.
# shellcheck disable=SC2086 # one argument per pin
"$VENV/bin/python" -m pip install --quiet $PINS 2> >(grep -v "is ignored: it is neither" >&2)
"$VENV/bin/python" -c "
import l2logger.util, l2metrics, numpy, pandas
from l2metrics.report import MetricsReport
from importlib.metadata import version
print('l2metrics environment ready: l2metrics', version('l2metrics'), 'numpy', numpy.__version__)
"
printf '%s\n' "$PINS" >"$MARKER"
