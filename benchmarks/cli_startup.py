"""What the ``l2rl`` command costs before it does anything: start-up of ``--help``,
``list`` and ``list --check``, against a bare ``python -c pass`` run in the same loop.

Each command runs as a fresh process, the commands interleaved round by round so load on
the machine falls on all of them alike. Printed: median wall seconds and CPU seconds (user
+ system of the child, the steadier figure on a shared machine) per command, and the
ratio to the bare interpreter's.

Target (issue 15): ``l2rl --help`` and ``l2rl list`` under 0.5 s. ``list`` finds each
plugin's module without importing it (:func:`l2rl.registry.missing_modules`); ``list
--check`` imports every plugin, torch included, and is shown for comparison.

Usage::

    python benchmarks/cli_startup.py --repeats 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "l2rl --help": [sys.executable, "-m", "l2rl.cli", "--help"],
    "l2rl list": [sys.executable, "-m", "l2rl.cli", "list"],
    "l2rl list --check": [sys.executable, "-m", "l2rl.cli", "list", "--check"],
}
TARGET_SECONDS = 0.5
TARGETED = ("l2rl --help", "l2rl list")


def timed(command: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system of the child) of one run of ``command``."""
    before = os.times()
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return wall, cpu


def main() -> None:
    """Run every command ``--repeats`` times, interleaved, and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    walls: dict[str, list[float]] = {name: [] for name in COMMANDS}
    cpus: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for command in COMMANDS.values():  # warm the file cache once, untimed
        timed(command)
    for _ in range(args.repeats):
        for name, command in COMMANDS.items():
            wall, cpu = timed(command)
            walls[name].append(wall)
            cpus[name].append(cpu)
    base_wall = statistics.median(walls["python -c pass"])
    base_cpu = statistics.median(cpus["python -c pass"])
    print(f"{'command':<20} {'wall s':>8} {'cpu s':>8} {'wall/base':>10} {'cpu/base':>9}")
    for name in COMMANDS:
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        print(f"{name:<20} {wall:8.3f} {cpu:8.3f} {wall / base_wall:10.1f} {cpu / base_cpu:9.1f}")
    for name in TARGETED:
        wall = statistics.median(walls[name])
        verdict = "met" if wall < TARGET_SECONDS else "NOT met"
        print(f"target {name} < {TARGET_SECONDS} s: {verdict} ({wall:.3f} s)")


if __name__ == "__main__":
    main()
