"""The default CartPole sequence's tasks are distinct MDPs whose optimal policies conflict.

Each variant's optimal policy is the base controller read through the variant's change (a
policy scoring 1.0 on its own task). If two tasks were one MDP to the agent, every policy
would score the same on both; here each task's optimal policy scores below 0.2 on each other
task (a random policy scores about 0.1). ``negate-obs`` fails this against ``swap-actions``:
by CartPole's mirror symmetry they are one MDP, which is why the scenario rejects the pair.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import permutations

import numpy as np
import pytest

from l2rl.config import ConfigError
from l2rl.scenarios.cartpole_variants import (
    PERMUTATION,
    CartPoleVariantsConfig,
    cartpole_variants,
    make_cartpole_variant,
)

Policy = Callable[[np.ndarray], int]
INVERSE = np.argsort(PERMUTATION)


def _base_controller(obs: np.ndarray) -> int:
    """A linear controller that balances the pole for the full 200 steps on ``base``."""
    return int(obs[2] + 0.5 * obs[3] + 0.01 * obs[0] + 0.1 * obs[1] > 0)


OPTIMAL: dict[str, Policy] = {
    "base": _base_controller,
    "swap-actions": lambda o: 1 - _base_controller(o),
    "negate-obs": lambda o: _base_controller(-o),
    "permute-obs": lambda o: _base_controller(o[INVERSE]),
}


def _score(variant: str, policy: Policy, episodes: int = 10) -> float:
    env = make_cartpole_variant(variant)
    total = 0.0
    for seed in range(episodes):
        obs, _ = env.reset(seed=seed)
        done = False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            total += float(reward)
            done = terminated or truncated
    return total / (episodes * 200.0)


def test_every_pair_of_default_tasks_conflicts() -> None:
    default = CartPoleVariantsConfig().variants
    assert default == ["base", "swap-actions", "permute-obs"]
    for own in default:
        assert _score(own, OPTIMAL[own]) == 1.0
    for own, other in permutations(default, 2):
        assert _score(other, OPTIMAL[own]) < 0.2, (own, other)


def test_negate_obs_is_swap_actions_seen_from_a_mirrored_start() -> None:
    # Why negate-obs left the default: for any policy, the two give bit-identical streams.
    rng = np.random.default_rng(0)
    for seed in range(5):
        weights = rng.normal(size=4)

        def policy(obs: np.ndarray, w: np.ndarray = weights) -> int:
            return int(obs @ w > 0)

        negated, swapped = (
            make_cartpole_variant("negate-obs"),
            make_cartpole_variant("swap-actions"),
        )
        obs_n, _ = negated.reset(seed=seed)
        swapped.reset(seed=seed)
        swapped.unwrapped.state = -np.asarray(negated.unwrapped.state)  # type: ignore[attr-defined]
        obs_s = np.asarray(swapped.unwrapped.state, dtype=np.float32)  # type: ignore[attr-defined]
        done = False
        while not done:
            np.testing.assert_array_equal(obs_n, obs_s)
            action = policy(obs_n)
            obs_n, r_n, term_n, trunc_n, _ = negated.step(action)
            obs_s, r_s, term_s, trunc_s, _ = swapped.step(action)
            assert (r_n, term_n, trunc_n) == (r_s, term_s, trunc_s)
            done = term_n or trunc_n
    # And so the pairwise test above would fail for it: one policy solves both.
    assert _score("negate-obs", OPTIMAL["swap-actions"]) == 1.0


def test_scenario_rejects_the_mirror_equivalent_pair() -> None:
    with pytest.raises(ConfigError, match="same MDP to the agent"):
        cartpole_variants.tasks({"variants": ["base", "negate-obs", "swap-actions"]})
