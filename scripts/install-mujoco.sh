#!/usr/bin/env bash
# Install the mujoco extra into .venv (after scripts/setup-venv.sh): MuJoCo itself and
# imageio, which gymnasium's MuJoCo envs import. tests/extras/test_mujoco_gravity.py skips
# without them unless L2RL_REQUIRE_EXTRAS names mujoco.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pip install --quiet "mujoco>=3" imageio 2> >(grep -v "is ignored: it is neither" >&2)
.venv/bin/python -c "import mujoco, gymnasium; gymnasium.make('HalfCheetah-v5'); print('mujoco', mujoco.__version__, 'ready')"
