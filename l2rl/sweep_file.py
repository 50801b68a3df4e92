"""``l2rl sweep SWEEP.yaml``: a declarative grid of scenarios x methods x seeds.

A sweep file names a base config per scenario (a path, relative to the file), what each
method changes in it (merged as :func:`l2rl.config.merge_method` does: mappings key by key,
``components+`` appends), the seeds, and where the runs go::

    name: my-sweep
    output: runs/my-sweep          # relative to the current directory
    seeds: [0, 1, 2]
    scenarios:
      cartpole: ../experiments/default.yaml
    methods:
      fine-tuning: {}
      ewc: {components+: [{name: ewc}]}

Each cell ``(scenario, method)`` is one experiment in ``<output>/<scenario>/<method>/``,
its seeds ``seed_<s>/`` inside: the seed is not part of a cell's identity, so adding seeds
adds runs to the same cells. Running a sweep again skips every finished seed and resumes
every cut-short one (:func:`l2rl.sweep.run_sweep`); ``<output>/summary.json`` holds every
cell's headline metrics over its seeds with 90% intervals.

>>> sweep = parse_sweep({"name": "s", "output": "out", "seeds": [0],
...     "scenarios": {"a": "a.yaml"}, "methods": {"m": {}}}, Path("."))
>>> sweep.scenarios["a"].name, list(sweep.methods)
('a.yaml', ['m'])
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from l2rl.config import (
    ConfigError,
    RunConfig,
    format_validation_error,
    merge_method,
    parse_config,
    read_yaml_mapping,
)

Cell = tuple[str, str]
"""``(scenario, method)``."""


class SweepFile(BaseModel):
    """A sweep file's fields (module docstring)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="The sweep's name.")
    output: Path = Field(description="Where the cells' folders go.")
    seeds: list[int] = Field(min_length=1, description="Seeds of every cell.")
    scenarios: dict[str, Path] = Field(min_length=1, description="Label -> base config path.")
    methods: dict[str, dict[str, Any]] = Field(
        min_length=1, description="Label -> what the method changes in each base config."
    )


def parse_sweep(data: Mapping[str, Any], folder: Path) -> SweepFile:
    """Validate a sweep file's mapping; scenario paths become relative to ``folder``.

    Raises:
        ConfigError: a missing or unknown field, or a wrong type.
    """
    try:
        sweep = SweepFile.model_validate(dict(data))
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, "sweep")) from None
    sweep.scenarios = {label: folder / path for label, path in sweep.scenarios.items()}
    return sweep


def load_sweep(path: Path) -> SweepFile:
    """Read and validate a sweep file.

    Raises:
        ConfigError: the file is missing, not YAML, or invalid.
    """
    return parse_sweep(read_yaml_mapping(path, "sweep"), path.parent)


def cell_configs(sweep: SweepFile) -> dict[Cell, tuple[Path, RunConfig]]:
    """Every cell's folder and config: the scenario's base changed by the method, the
    sweep's seeds, runs under ``<output>/<scenario>/<method>``.

    Raises:
        ConfigError: a base config is missing or a merged config is invalid (naming the
            cell).
    """
    cells = {}
    for scenario, path in sweep.scenarios.items():
        if not path.is_file():
            raise ConfigError(f"sweep scenario {scenario!r}: base config not found: {path}")
        base = read_yaml_mapping(path)
        for method, changes in sweep.methods.items():
            data = merge_method(base, changes)
            data.update(name=method, seeds=sweep.seeds, output_dir=str(sweep.output / scenario))
            try:
                config = parse_config(data)
            except ConfigError as err:
                raise ConfigError(f"sweep cell {scenario}/{method}: {err}") from None
            cells[(scenario, method)] = (sweep.output / scenario / method, config)
    return cells
