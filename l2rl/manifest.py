"""The environment a run ran in, written beside its config as ``environment.json``.

Two runs of one config give the same records only on the same software and, for float
arithmetic, often the same hardware and thread count. The manifest records what decides
that, so a reader can tell whether a difference comes from the code or from the machine:
every installed distribution and its version, Python, torch's version, build settings and
thread counts, the BLAS numpy and torch use, the CPU model and count, and the git commit of
the working tree (with whether it had uncommitted changes).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

_REPO = Path(__file__).resolve().parents[1]


def _cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` says)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=_REPO, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def _numpy_blas() -> str:
    """The BLAS numpy was built against, from its build configuration."""
    config: Any = np.show_config(mode="dicts")
    blas = config.get("Build Dependencies", {}).get("blas", {})
    described = blas.get("openblas configuration") or blas.get("version", "")
    return f"{blas.get('name', 'unknown')} {described}".strip()


def _torch_blas() -> str:
    """``BLAS_INFO`` of torch's build settings (e.g. ``mkl``)."""
    match = re.search(r"BLAS_INFO=([^,\s]+)", torch.__config__.show())
    return match.group(1) if match else "unknown"


def _packages() -> dict[str, str]:
    versions = {dist.metadata["Name"]: dist.version for dist in importlib.metadata.distributions()}
    return dict(sorted(versions.items(), key=lambda item: item[0].lower()))


def environment_manifest() -> dict[str, Any]:
    """What the current process runs on, JSON-ready (see the module docstring).

    >>> sorted(environment_manifest())[:3]
    ['cpu', 'git', 'numpy']
    """
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "cpu": {"model": _cpu_model(), "logical_cores": os.cpu_count()},
        "git": {
            "commit": commit,
            "dirty": None if status is None else bool(status),
        },
        "numpy": {"version": np.__version__, "blas": _numpy_blas()},
        "packages": _packages(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch": {
            "version": torch.__version__,
            "num_threads": torch.get_num_threads(),
            "num_interop_threads": torch.get_num_interop_threads(),
            "blas": _torch_blas(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "build": torch.__config__.show(),
        },
    }
