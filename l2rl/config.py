"""Typed, validated run configuration, loaded from YAML with ``key=value`` overrides.

Every field is checked before any training: unknown keys, wrong types and negative budgets
fail with one :class:`ConfigError` that names the offending path. Plugin options (an agent's,
a component's, a scenario's) are validated against the plugin's own ``Config`` model by the
builder, so a typo in ``agent.options`` fails the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.1 wants ``1.0e-3``)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """Parse YAML text, reading exponent floats such as ``1e-3`` as floats."""
    return yaml.load(text, Loader=_YamlLoader)


M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """The configuration is invalid; the message lists every problem found."""


class PluginConfig(BaseModel):
    """Base class of every plugin's options model: unknown keys, coercions and non-finite
    floats (``.inf``, ``.nan``, which ``gt=0`` alone lets through) are errors."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class PluginRef(_Strict):
    """A registered plugin by name, with its options (validated by the plugin's ``Config``)."""

    name: str = Field(description="Registered name (see `l2rl list`).")
    options: dict[str, Any] = Field(default_factory=dict, description="The plugin's options.")
    label: str | None = Field(
        default=None, description="Name used in logs and errors; defaults to `name`."
    )


class ScenarioConfig(_Strict):
    """Which tasks, in which order, for how long, and what the agent is told."""

    name: str = Field(description="Registered scenario (task family), e.g. `cartpole-variants`.")
    options: dict[str, Any] = Field(default_factory=dict, description="The scenario's options.")
    steps_per_task: int = Field(gt=0, description="Env steps in each training window.")
    cycles: int = Field(default=1, gt=0, description="Repeat the task sequence this often.")
    task_aware: bool = Field(
        default=True,
        description="Give task ids and boundary hooks to agent and components.",
    )


class EvalConfig(_Strict):
    """Continual evaluation: every task, on separate seeded environments, greedy policy."""

    every: int = Field(gt=0, description="Evaluate all tasks every this many env steps.")
    episodes: int = Field(default=5, gt=0, description="Episodes per task per evaluation.")
    max_episode_steps: int | None = Field(
        default=None, gt=0, description="Cut evaluation episodes at this length (None: env's)."
    )
    parallel_episodes: int | None = Field(
        default=None,
        gt=0,
        description=(
            "A task's episodes played in lockstep, one batched forward pass per step "
            "(None: all of them; 1: one after another, one env per task for heavy envs)."
        ),
    )


class MetricsConfig(_Strict):
    """How metrics are computed from the evaluation records."""

    reference_runs: bool = Field(
        default=True,
        description=(
            "Run (or reuse cached) single-task reference runs to compute forward transfer."
        ),
    )
    reference_replay: PluginRef | None = Field(
        default=None,
        description=(
            "Replay for the reference runs; null: the run's own. Set it to compare methods "
            "that change the replay against one shared reference."
        ),
    )
    reference_components: list[PluginRef] = Field(
        default_factory=list,
        description=(
            "Components the reference runs keep (default: none, the agent and its replay "
            "alone). An agent that learns in a world model needs it here, e.g. "
            "dreamer-world-model with the runs' options."
        ),
    )
    end_window: int = Field(
        default=1,
        gt=0,
        description=(
            "Evaluations averaged for 'the score at the end of a window' (Continual World uses 5)."
        ),
    )


Seed = Annotated[int, Field(ge=0, lt=2**64)]
"""A run seed: what numpy's and torch's generators accept."""


class RunConfig(_Strict):
    """One experiment: scenario, agent, replay, components, evaluation, seeds, output."""

    name: str = Field(description="Experiment name; the run directory is `<output_dir>/<name>`.")
    seeds: list[Seed] = Field(
        default_factory=lambda: [0],
        min_length=1,
        description="Seeds, distinct, each in [0, 2**64) (one run directory per seed).",
    )
    scenario: ScenarioConfig
    agent: PluginRef
    replay: PluginRef | None = Field(
        default_factory=lambda: PluginRef(name="fifo", options={}),
        description="Replay component feeding the agent (role `replay`); null for none.",
    )
    components: list[PluginRef] = Field(
        default_factory=list, description="Further components, in dispatch order within a role."
    )
    evaluation: EvalConfig
    num_envs: int = Field(
        default=1, gt=0, description="Training envs stepped in lockstep (budgets count all)."
    )
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    output_dir: str = Field(default="runs", description="Where run directories are created.")
    torch_threads: int | None = Field(
        default=None, gt=0, description="torch.set_num_threads for the run (None: leave it)."
    )
    progress: bool = Field(default=True, description="Show a progress display on stderr.")
    checkpoint_every: int | None = Field(
        default=None,
        gt=0,
        description=(
            "Also checkpoint every this many env steps inside a training window, so a "
            "killed long window resumes near where it stopped (None: only at window ends). "
            "Each costs a write of the whole state, replay included."
        ),
    )

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        """Each seed has its own run directory: a repeated seed would collide there."""
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        if repeated:
            raise ValueError(f"seeds must be distinct, repeated: {repeated}")
        return seeds


def format_validation_error(err: ValidationError, where: str) -> str:
    """One line per problem: ``where.path.to.field: message``."""
    lines = [f"invalid {where}:"]
    for problem in err.errors():
        path = ".".join(str(p) for p in problem["loc"]) or "(top level)"
        lines.append(f"  {path}: {problem['msg']}")
    return "\n".join(lines)


def validate_options(model: type[M], options: Mapping[str, Any], where: str) -> M:
    """Validate a plugin's options against its model, raising :class:`ConfigError`."""
    try:
        return model.model_validate(dict(options))
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, where)) from None


def _item_name(item: Any) -> str:
    """How an override error shows a list item: its label and name, or its value."""
    if isinstance(item, dict) and ("name" in item or "label" in item):
        name, label = item.get("name"), item.get("label")
        return f"{label} ({name})" if label is not None and label != name else str(name)
    return repr(item)


def _list_index(items: list[Any], part: str, override: str, where: str) -> int:
    """The position in the list ``items`` (at path ``where``) that the key ``part`` names:
    an index, or the ``label`` or ``name`` of exactly one item."""
    if re.fullmatch(r"[+-]?\d+", part):
        index = int(part)
        if not 0 <= index < len(items):
            raise ConfigError(
                f"override {override!r}: index {index} is out of range, {where} has "
                f"{len(items)} item(s)"
            )
        return index
    matches = [
        i
        for i, item in enumerate(items)
        if isinstance(item, dict) and part in (item.get("label"), item.get("name"))
    ]
    if len(matches) == 1:
        return matches[0]
    listing = ", ".join(f"{i}: {_item_name(item)}" for i, item in enumerate(items)) or "none"
    if not matches:
        raise ConfigError(
            f"override {override!r}: no item of {where} has label or name {part!r} "
            f"(its items: {listing})"
        )
    raise ConfigError(
        f"override {override!r}: {part!r} is ambiguous, items {matches} of {where} have that "
        f"label or name; use an index or give them distinct labels (its items: {listing})"
    )


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``dotted.key=value`` overrides; values are parsed as YAML scalars/lists.

    A key descends into a list by index (``components.0.options.x=1``) or by the ``label``
    or ``name`` of exactly one of its items (``components.ewc.options.x=1``).

    Raises:
        ConfigError: for an override without ``=``, a value that is not valid YAML, one
            that descends into a scalar, or a list index that is out of range, unknown or
            ambiguous.
    """
    for override in overrides:
        if "=" not in override:
            raise ConfigError(f"override {override!r} is not of the form key=value")
        key, raw = override.split("=", 1)
        try:
            value = load_yaml(raw) if raw else ""
        except yaml.YAMLError as err:
            problem = getattr(err, "problem", None) or type(err).__name__
            raise ConfigError(
                f"override {override!r}: the value {raw!r} is not valid YAML ({problem}); "
                "quote it for the shell, e.g. 'key=[1, 2]'"
            ) from None
        node: Any = data
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            if isinstance(node, list):
                child = node[_list_index(node, part, override, ".".join(parts[:depth]))]
            else:
                child = node.get(part)
                if child is None:
                    child = {}
                    node[part] = child
            if not isinstance(child, dict | list):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(f"override {override!r}: {where!r} is not a mapping or a list")
            node = child
        if isinstance(node, list):
            node[_list_index(node, parts[-1], override, ".".join(parts[:-1]))] = value
        else:
            node[parts[-1]] = value
    return data


def merge_method(base: Mapping[str, Any], changes: Mapping[str, Any] | None) -> dict[str, Any]:
    """``base`` changed by a method's ``changes``: a mapping merges into the base's mapping
    key by key, any other value replaces the base's, and ``<name>+`` appends its list to
    the base's list ``name`` (experiment grids and sweep files describe methods this way).

    >>> base = {"replay": {"name": "fifo", "options": {"capacity": 8}}, "components": [1]}
    >>> merge_method(base, {"replay": {"name": "wmar"}, "components+": [2]})
    {'replay': {'name': 'wmar', 'options': {'capacity': 8}}, 'components': [1, 2]}

    Raises:
        ConfigError: ``<name>+`` where ``name`` is not a list in ``base``, or its value is
            not a list.
    """
    merged = dict(base)
    for key, value in (changes or {}).items():
        if key.endswith("+"):
            name = key[:-1]
            current = merged.get(name, [])
            if not isinstance(current, list) or not isinstance(value, list):
                raise ConfigError(f"{key!r} appends a list to the list {name!r}")
            merged[name] = [*current, *value]
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_method(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_config(data: Mapping[str, Any]) -> RunConfig:
    """Validate a mapping into a :class:`RunConfig`."""
    try:
        return RunConfig.model_validate(dict(data))
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, "config")) from None


def read_yaml_mapping(path: str | Path, what: str = "config") -> dict[str, Any]:
    """The mapping a YAML file holds.

    Raises:
        ConfigError: the file is missing (naming ``what`` it should be), is not valid YAML,
            or does not hold a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} file not found: {path}")
    try:
        data = load_yaml(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    return data


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a YAML config file, apply overrides, validate.

    Raises:
        ConfigError: the file is missing, is not a YAML mapping, or fails validation.
    """
    return parse_config(apply_overrides(read_yaml_mapping(path), overrides))


def dump_config(config: RunConfig) -> str:
    """The resolved config as YAML (what every run directory records)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
