"""Skill-lifecycle managers (SLIM and its two ablations, CSP) vs fine-tuning and reservoir
replay on cartpole-variants with cycles (A B C A B C).

    .venv/bin/python experiments/skills/run.py                 # run or resume, report
    .venv/bin/python experiments/skills/run.py --report-only   # table + plots from records

The base settings are ``<scenario>.yaml`` beside this file; ``methods.yaml`` says what
each method changes. Runs go to ``runs/skills/<scenario>/<method>/seed_<s>/``; each
finished seed's records (its skill events, windows and timings included) are copied to
``results/records/``, and the table and plots are computed from those records only
(:class:`l2rl.grid.Grid`). See README.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from l2rl.grid import Grid, PerTaskScores, ScoreCurves, SectionInput
from l2rl.logging.recorder import SKILL_EVENTS_FILE, WINDOWS_FILE
from l2rl.report_document import Table

HERE = Path(__file__).resolve().parent
TIMINGS_FILE = "timings.jsonl"


def _rows(path: Path) -> list[dict[str, object]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def skill_lifecycle(data: SectionInput) -> list[str]:
    """A section: per method with a skill manager, the bank at each window's end, its
    lifecycle events (mean over seeds), skills absorbed, and the cost of the run against
    fine-tuning (training wall seconds, optimiser steps of all learners)."""
    shown = [
        m for m in data.methods if any((d / SKILL_EVENTS_FILE).is_file() for d in data.seed_dirs[m])
    ]
    if not shown:
        return []
    rows, cost_rows = [], []
    baseline_seconds = _seconds(data.seed_dirs.get("fine-tuning", []))
    for method in shown:
        per_seed_sizes: list[list[int]] = []
        per_seed_validation: list[list[int]] = []
        counts: dict[str, int] = {}
        absorbed = []
        for seed_dir in data.seed_dirs[method]:
            events = _rows(seed_dir / SKILL_EVENTS_FILE)
            windows = _rows(seed_dir / WINDOWS_FILE)
            ends = [int(str(w["end_step"])) for w in windows]
            sizes = []
            for end in ends:
                before = [e for e in events if int(str(e["global_step"])) <= end]
                sizes.append(int(str(before[-1]["bank_size"])) if before else 0)
            per_seed_sizes.append(sizes)
            per_seed_validation.append([int(str(w.get("validation_episodes", 0))) for w in windows])
            for e in events:
                counts[str(e["event"])] = counts.get(str(e["event"]), 0) + 1
            # absorbed: retired because the learner itself scored at least as well
            absorbed.append(sum(1 for e in events if e["event"] == "retire"))
        seeds = len(data.seed_dirs[method])
        mean_sizes = np.mean(np.array(per_seed_sizes, dtype=np.float64), axis=0)
        validation = np.mean(np.array(per_seed_validation, dtype=np.float64), axis=0)
        events_text = ", ".join(f"{k} {v / seeds:.1f}" for k, v in sorted(counts.items()))
        rows.append(
            [
                method,
                " ".join(f"{s:.1f}" for s in mean_sizes),
                " ".join(f"{v:.0f}" for v in validation),
                f"{np.mean(absorbed):.1f}",
                events_text,
            ]
        )
        seconds = _seconds(data.seed_dirs[method])
        updates = [
            sum(_window_updates(w) for w in _rows(d / WINDOWS_FILE)) for d in data.seed_dirs[method]
        ]
        ratio = f"{seconds / baseline_seconds:.2f}" if baseline_seconds else "n/a"
        cost_rows.append([method, f"{seconds:.0f}", ratio, f"{np.mean(updates):.0f}"])
    lines = [
        f"### {data.scenario}: the skill bank",
        "",
        "Skills held at the end of each window (memory: each is one Q-network's parameters); "
        "validation episodes played in each window (compute beyond training); skills retired "
        "(absorbed: the learner or another skill covers them); lifecycle events per seed; "
        "mean over seeds:",
        "",
        *Table(
            [
                "method",
                "bank size per window",
                "validation episodes per window",
                "absorbed",
                "events",
            ],
            rows,
        ).markdown(),
        "",
        "Cost: training wall seconds per seed (validation episodes included) and its ratio "
        "to fine-tuning's; optimiser steps of all learners (expanded skills included):",
        "",
        *Table(["method", "seconds", "vs fine-tuning", "updates"], cost_rows).markdown(),
        "",
    ]
    return lines


def _window_updates(window: dict[str, object]) -> int:
    """Optimiser steps of all learners in one ``windows.jsonl`` row."""
    updates = window["updates"]
    assert isinstance(updates, dict)
    return sum(int(v) for v in updates.values())


def _seconds(seed_dirs: list[Path]) -> float:
    """Mean training wall seconds per seed (``timings.jsonl``), 0 without timings."""
    totals = [
        sum(float(str(r["seconds"])) for r in _rows(d / TIMINGS_FILE) if r["work"] == "training")
        for d in seed_dirs
    ]
    return float(np.mean(totals)) if totals else 0.0


GRID = Grid(
    folder=HERE,
    title="Skill-lifecycle managers (SLIM, CSP) vs fine-tuning and reservoir replay",
    scenarios=("cartpole-variants", "minigrid-sequence"),
    available=("cartpole-variants", "minigrid-sequence"),
    baseline="fine-tuning",
    reference="fine-tuning's DQN",
    regenerate=(
        "Regenerate from the committed per-seed records with",
        "`.venv/bin/python experiments/skills/run.py --report-only`.",
    ),
    output=Path("runs/skills"),
    optional_record_files=(SKILL_EVENTS_FILE, WINDOWS_FILE, TIMINGS_FILE),
    sections=(skill_lifecycle, PerTaskScores(), ScoreCurves()),
)


def main(argv: list[str] | None = None) -> int:
    """Run (or resume) the grid, commit records, write the report."""
    return GRID.main(argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
