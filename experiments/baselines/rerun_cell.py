"""Rerun one cell of the committed baseline table from scratch and compare record by record.

    .venv/bin/python experiments/baselines/rerun_cell.py --method reservoir --seed 3

Trains the method's seed (and its single-task reference runs) in a fresh folder with the
committed configuration, then compares every evaluation record, and every reference
record, with the committed ones under ``results/records/``: all fields, scores and
per-episode returns included, must be equal. Prints what differs and exits 1 if anything
does, so a fresh clone on a fresh install can check that it reproduces the table. The two
environment manifests are compared too (differences there are reported, not failures: they
explain a mismatch rather than make one).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from run import AVAILABLE, RECORDS, experiment_configs

from l2rl.logging.files import read_jsonl
from l2rl.sweep import run_sweep

COMPARED = ("evals.jsonl", "reference_evals.jsonl")
MANIFEST_KEYS = ("python", "cpu", "numpy", "torch", "packages")


def compare_rows(
    name: str, committed: list[dict[str, Any]], rerun: list[dict[str, Any]]
) -> list[str]:
    """Human-readable differences between two record files (empty: identical)."""
    problems = []
    if len(committed) != len(rerun):
        problems.append(f"{name}: {len(committed)} committed records, {len(rerun)} rerun")
    for index, (old, new) in enumerate(zip(committed, rerun, strict=False)):
        fields = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        if fields:
            changes = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in fields)
            problems.append(f"{name} record {index}: {changes}")
    return problems


def manifest_differences(committed: dict[str, Any], rerun: dict[str, Any]) -> list[str]:
    """Environment differences between the committed run and the rerun."""
    notes = []
    for key in MANIFEST_KEYS:
        old, new = committed.get(key), rerun.get(key)
        if key == "packages" and isinstance(old, dict) and isinstance(new, dict):
            for name in sorted(old.keys() | new.keys()):
                if old.get(name) != new.get(name):
                    notes.append(f"package {name}: {old.get(name)} -> {new.get(name)}")
        elif key == "torch" and isinstance(old, dict) and isinstance(new, dict):
            for field in sorted(old.keys() | new.keys()):
                if field != "build" and old.get(field) != new.get(field):
                    notes.append(f"torch {field}: {old.get(field)} -> {new.get(field)}")
        elif old != new:
            notes.append(f"{key}: {old} -> {new}")
    return notes


def main(argv: list[str] | None = None) -> int:
    """Rerun the cell, print the comparison, return 0 when every record is identical."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", default="cartpole-variants", choices=AVAILABLE)
    parser.add_argument("--method", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--records", type=Path, default=RECORDS)
    args = parser.parse_args(argv)

    committed = args.records / args.scenario / args.method / f"seed_{args.seed}"
    if not committed.is_dir():
        raise SystemExit(f"no committed records at {committed}")
    with tempfile.TemporaryDirectory(prefix="l2rl-rerun-") as scratch:
        grid = experiment_configs([args.scenario], [args.method], [args.seed], Path(scratch))
        ((directory, config),) = grid.values()
        run_sweep({directory: config}, workers=1)
        rerun = directory / f"seed_{args.seed}"
        problems = []
        for name in COMPARED:
            problems += compare_rows(
                name, list(read_jsonl(committed / name)), list(read_jsonl(rerun / name))
            )
        notes = manifest_differences(
            json.loads((committed / "environment.json").read_text()),
            json.loads((rerun / "environment.json").read_text()),
        )
        count = sum(len(list(read_jsonl(committed / name))) for name in COMPARED)
    cell = f"{args.scenario}/{args.method}/seed_{args.seed}"
    for note in notes:
        print(f"environment differs: {note}")
    if problems:
        print(f"{cell}: NOT reproduced, {len(problems)} difference(s):")
        for problem in problems[:20]:
            print(f"  {problem}")
        return 1
    print(f"{cell}: reproduced, all {count} records identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
