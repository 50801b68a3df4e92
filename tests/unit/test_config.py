"""Config validation: every kind of bad input fails before training with a clear message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from l2rl import registry
from l2rl.builder import build_run, check_config
from l2rl.config import (
    ConfigError,
    apply_overrides,
    dump_config,
    load_config,
    load_yaml,
    parse_config,
    validate_options,
)

ROOT = Path(__file__).resolve().parents[2]


def minimal(**changes: Any) -> dict[str, Any]:
    """A small valid config as a dict, with top-level keys replaced by ``changes``."""
    data: dict[str, Any] = {
        "name": "t",
        "scenario": {"name": "cartpole-variants", "steps_per_task": 100},
        "agent": {"name": "dqn", "options": {"learning_starts": 50, "batch_size": 8}},
        "evaluation": {"every": 50, "episodes": 1},
    }
    data.update(changes)
    return data


def test_default_experiment_config_is_valid() -> None:
    config = load_config(ROOT / "experiments" / "default.yaml")
    check_config(config)
    assert config.scenario.name == "cartpole-variants"


def test_defaults_fill_in_fifo_replay_and_one_seed() -> None:
    config = parse_config(minimal())
    assert config.replay is not None and config.replay.name == "fifo"
    assert config.seeds == [0]


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"bogus": 1}, "bogus: Extra inputs are not permitted"),
        ({"seeds": "0"}, "seeds: Input should be a valid list"),
        ({"scenario": {"name": "cartpole-variants", "steps_per_task": -5}}, "steps_per_task"),
        ({"scenario": {"name": "cartpole-variants", "steps_per_task": 1.5}}, "steps_per_task"),
        ({"evaluation": {"every": 0}}, "evaluation.every"),
        ({"seeds": []}, "seeds"),
        ({"seeds": [0, 0]}, "seeds: Value error, seeds must be distinct, repeated: [0]"),
        ({"seeds": [3, 1, 3, 1, 2]}, "seeds must be distinct, repeated: [1, 3]"),
        ({"seeds": [-1]}, "seeds.0: Input should be greater than or equal to 0"),
    ],
)
def test_bad_top_level_values_name_the_field(changes: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError, match="invalid config") as info:
        parse_config(minimal(**changes))
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"agent": {"name": "dqn", "options": {"lr": -1.0}}}, "agent 'dqn' options"),
        ({"agent": {"name": "dqn", "options": {"lerning_rate": 1.0}}}, "lerning_rate"),
        ({"agent": {"name": "dqn", "options": {"batch_size": "8"}}}, "batch_size"),
        ({"agent": {"name": "nope"}}, "unknown agent 'nope'; available: "),
        ({"replay": {"name": "nope"}}, "unknown component 'nope'; available: "),
        ({"scenario": {"name": "nope", "steps_per_task": 10}}, "unknown scenario 'nope'"),
        (
            {"scenario": {"name": "cartpole-variants", "steps_per_task": 10, "options": {"x": 1}}},
            "scenario 'cartpole-variants' options",
        ),
        ({"replay": None}, "replay"),
    ],
)
def test_bad_plugin_choices_fail_before_training(changes: dict[str, Any], fragment: str) -> None:
    config = parse_config(minimal(**changes))
    with pytest.raises(ConfigError) as info:
        build_run(config, seed=0)
    assert fragment in str(info.value)


def test_unknown_name_lists_available_names() -> None:
    config = parse_config(minimal(agent={"name": "dqm"}))
    with pytest.raises(ConfigError, match="dqn"):
        build_run(config, seed=0)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"agent": {"name": "dqnn"}}, "unknown agent 'dqnn'; did you mean 'dqn'? available: "),
        ({"replay": {"name": "fifoo"}}, "unknown component 'fifoo'; did you mean 'fifo'?"),
        (
            {"scenario": {"name": "cartpole-variant", "steps_per_task": 10}},
            "did you mean 'cartpole-variants'",
        ),
    ],
)
def test_unknown_names_suggest_the_nearest_match(changes: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_run(parse_config(minimal(**changes)), seed=0)
    assert fragment in str(info.value)
    with pytest.raises(ConfigError) as info:
        build_run(parse_config(minimal(agent={"name": "zzzzzz"})), seed=0)
    assert "did you mean" not in str(info.value)


def test_seeds_up_to_2_to_the_64_build_and_larger_ones_are_blamed_on_seeds() -> None:
    config = parse_config(minimal(seeds=[2**64 - 1]))
    build_run(config, seed=config.seeds[0])  # numpy and torch accept it
    with pytest.raises(ConfigError, match=r"seeds\.1: Input should be less than 1844"):
        parse_config(minimal(seeds=[0, 2**64]))


def test_duplicate_component_names_need_labels() -> None:
    config = parse_config(minimal(components=[{"name": "fifo"}]))
    with pytest.raises(ConfigError, match="unique"):
        build_run(config, seed=0)


def test_overrides_reach_nested_keys_and_parse_yaml_values() -> None:
    data = apply_overrides(
        minimal(), ["scenario.steps_per_task=7", "agent.options.lr=1e-4", "seeds=[1, 2]"]
    )
    config = parse_config(data)
    assert config.scenario.steps_per_task == 7
    assert config.agent.options["lr"] == pytest.approx(1e-4)
    assert config.seeds == [1, 2]


def _with_components() -> dict[str, Any]:
    return minimal(
        seeds=[0],
        components=[
            {"name": "ewc", "options": {"strength": 1.0}},
            {"name": "l2", "label": "l2-a", "options": {"strength": 2.0}},
            {"name": "l2", "label": "l2-b"},
        ],
    )


def test_overrides_reach_list_items_by_index_label_or_name() -> None:
    data = apply_overrides(
        _with_components(),
        [
            "components.0.options.strength=10",
            "components.ewc.options.fisher_floor=0.5",
            "components.l2-b.options.strength=3",
            "components.1.label=l2-first",
            "seeds=[4, 5]",
            "seeds.1=6",
        ],
    )
    config = parse_config(data)
    ewc, first, second = config.components
    assert ewc.options == {"strength": 10, "fisher_floor": 0.5}
    assert (first.label, first.options) == ("l2-first", {"strength": 2.0})
    assert (second.label, second.options) == ("l2-b", {"strength": 3})
    assert config.seeds == [4, 6]


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("components.3.options.x=1", "index 3 is out of range, components has 3 item(s)"),
        ("components.-1.options.x=1", "index -1 is out of range"),
        ("seeds.1=2", "index 1 is out of range, seeds has 1 item(s)"),
        (
            "components.l2.options.x=1",
            "'l2' is ambiguous, items [1, 2] of components have that label or name; use an "
            "index or give them distinct labels (its items: 0: ewc, 1: l2-a (l2), 2: l2-b (l2))",
        ),
        ("components.si.options.x=1", "no item of components has label or name 'si'"),
        ("name.x=1", "'name' is not a mapping or a list"),
        ("components.0.name.x=1", "'components.0.name' is not a mapping or a list"),
    ],
)
def test_bad_list_overrides_say_why(override: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        apply_overrides(_with_components(), [override])
    assert f"override {override!r}: {fragment}" in str(info.value)


def test_override_without_equals_is_an_error() -> None:
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(minimal(), ["scenario.steps_per_task"])


def test_exponent_floats_parse_as_floats() -> None:
    assert load_yaml("a: 1e-3\nb: -2E+2\nc: x1e3") == {"a": 1e-3, "b": -200.0, "c": "x1e3"}


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_dumped_config_round_trips(tmp_path: Path) -> None:
    config = parse_config(minimal())
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(config))
    assert load_config(path) == config


def _float_fields() -> list[tuple[registry.Group, str, str, bool]]:
    """``(group, plugin, field, list-only)`` for every float option of every plugin."""
    found = []
    for group in registry.GROUPS:
        for name in registry.available(group):
            model = registry.load(group, name).Config
            for field, info in model.model_fields.items():
                annotation = str(info.annotation)
                if "float" in annotation:
                    list_only = "float |" not in annotation and annotation != "<class 'float'>"
                    found.append((group, name, field, list_only))
    return found


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_every_plugins_float_options_reject_non_finite_values(value: float) -> None:
    fields = _float_fields()
    assert len(fields) > 20  # agents, components and scenarios all have some
    for group, name, field, list_only in fields:
        model = registry.load(group, name).Config
        with pytest.raises(ConfigError) as info:
            validate_options(model, {field: [value] if list_only else value}, f"{name} options")
        assert f"{field}" in str(info.value) and "finite" in str(info.value), (name, field)


def test_an_infinite_lr_override_fails_at_config_time_naming_the_option(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(parse_config(minimal())))
    for raw in (".inf", ".nan", "-.inf"):
        config = load_config(path, [f"agent.options.lr={raw}"])
        with pytest.raises(ConfigError, match=r"agent 'dqn' options:\n  lr: .*finite"):
            check_config(config)
