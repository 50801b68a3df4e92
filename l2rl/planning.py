"""Sampling-based model-predictive control: CEM and MPPI over a learned or given model.

Both planners score candidate action sequences by rolling them through a dynamics
function and summing the task's rewards, batched over candidates: one call of the dynamics
and one of the reward function per horizon step for all samples at once
(:func:`rollout_returns`), never a Python loop over samples.

* :class:`CEMPlanner`: the cross-entropy method as HyperCRL's controller runs it (Huang et
  al. 2020, ``hypercrl/control/cem.py``): each decision starts from a fresh Gaussian
  (mean at the centre of the action box, standard deviation ``init_std`` half-ranges),
  ``iterations`` times samples ``samples`` sequences, clips them to the box, and refits
  mean and (biased) standard deviation to the ``elites`` best; a last round of samples is
  drawn from the fitted Gaussian and its best sequence is returned. Defaults are HyperCRL's
  cartpole settings (horizon 25, 400 samples, 40 elites, 5 iterations, discount 0.99).
* :class:`MPPIPlanner`: model-predictive path integral control (Williams et al. 2017,
  "Information Theoretic MPC for Model-Based Reinforcement Learning", Algorithm 2): a
  nominal sequence ``U`` perturbed by ``eps_k ~ N(0, sigma^2)``, weighted by
  ``w_k = exp(-(S_k - min_j S_j) / lambda) / sum_j (...)`` with cost ``S_k`` the negative
  discounted return, updated ``U <- U + sum_k w_k eps_k`` and shifted one step after each
  decision (warm start). Defaults are HyperCRL's pendulum settings (horizon 15, 100
  samples).

Dynamics map ``(obs [N, d], action [N, a]) -> next_obs [N, d]``; reward functions map
``(obs, action, next_obs) -> reward [N]`` (:data:`l2rl.types.RewardFn`).

>>> import torch
>>> planner = CEMPlanner(CEMSettings(horizon=3, samples=64, elites=8, iterations=4),
...                      action_low=torch.tensor([-1.0]), action_high=torch.tensor([1.0]))
>>> step = lambda obs, act: obs + act  # a point mass that moves by its action
>>> reward = lambda obs, act, nxt: -((nxt - 0.5) ** 2).sum(-1)  # stay at 0.5
>>> plan = planner.plan(torch.zeros(1), step, reward, torch.Generator().manual_seed(0))
>>> plan.shape, abs(float(plan[0, 0]) - 0.5) < 0.1
(torch.Size([3, 1]), True)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from l2rl.types import RewardFn

Dynamics = Callable[[Tensor, Tensor], Tensor]
"""Batched one-step model: ``(obs [N, d], action [N, a]) -> next_obs [N, d]``."""


def rollout_returns(
    obs: Tensor, actions: Tensor, dynamics: Dynamics, reward_fn: RewardFn, discount: float
) -> Tensor:
    """Discounted returns ``sum_t discount^t r_t`` of ``actions [N, H, a]`` from ``obs [d]``.

    One ``dynamics`` and one ``reward_fn`` call per horizon step, each on all ``N``
    sequences.
    """
    samples, horizon = actions.shape[:2]
    state = obs.unsqueeze(0).expand(samples, *obs.shape)
    total = torch.zeros(samples, dtype=actions.dtype, device=actions.device)
    for t in range(horizon):
        next_state = dynamics(state, actions[:, t])
        total = total + discount**t * reward_fn(state, actions[:, t], next_state)
        state = next_state
    return total


def _check_box(action_low: Tensor, action_high: Tensor) -> None:
    if action_low.shape != action_high.shape or action_low.dim() != 1:
        raise ValueError(
            f"action_low and action_high must be 1-D of one shape, got "
            f"{tuple(action_low.shape)} and {tuple(action_high.shape)}"
        )
    if not bool(torch.all(action_high > action_low)) or not bool(
        torch.all(torch.isfinite(action_high - action_low))
    ):
        raise ValueError(
            f"the action box must be finite with high > low, got {action_low} .. {action_high}"
        )


@dataclass(frozen=True)
class CEMSettings:
    """Options of :class:`CEMPlanner` (defaults: HyperCRL's cartpole settings)."""

    horizon: int = 25
    samples: int = 400
    elites: int = 40
    iterations: int = 5
    init_std: float = 1.0
    """Initial standard deviation in half-ranges of the action box."""
    discount: float = 0.99

    def __post_init__(self) -> None:
        if min(self.horizon, self.samples, self.elites, self.iterations) < 1:
            raise ValueError(f"CEM sizes must be positive, got {self}")
        if self.elites > self.samples:
            raise ValueError(f"CEM elites ({self.elites}) exceed samples ({self.samples})")
        if self.init_std <= 0 or not 0 < self.discount <= 1:
            raise ValueError(f"CEM needs init_std > 0 and discount in (0, 1], got {self}")


class CEMPlanner:
    """Cross-entropy-method planner over action sequences in a box (see the module doc)."""

    def __init__(self, settings: CEMSettings, action_low: Tensor, action_high: Tensor) -> None:
        _check_box(action_low, action_high)
        self.settings = settings
        self.action_low = action_low
        self.action_high = action_high

    def _sample(self, mean: Tensor, std: Tensor, generator: torch.Generator) -> Tensor:
        noise = torch.randn(
            (self.settings.samples, *mean.shape), generator=generator, dtype=mean.dtype
        )
        return torch.clamp(mean + std * noise, self.action_low, self.action_high)

    def plan(
        self, obs: Tensor, dynamics: Dynamics, reward_fn: RewardFn, generator: torch.Generator
    ) -> Tensor:
        """The best action sequence ``[horizon, a]`` from ``obs`` (act on its first row)."""
        s = self.settings
        centre = (self.action_low + self.action_high) / 2
        half_range = (self.action_high - self.action_low) / 2
        mean = centre.expand(s.horizon, -1).clone()
        std = (s.init_std * half_range).expand(s.horizon, -1).clone()
        for _ in range(s.iterations):
            candidates = self._sample(mean, std, generator)
            returns = rollout_returns(obs, candidates, dynamics, reward_fn, s.discount)
            elite = candidates[torch.topk(returns, s.elites).indices]
            mean, std = elite.mean(0), elite.std(0, unbiased=False)
        candidates = self._sample(mean, std, generator)
        returns = rollout_returns(obs, candidates, dynamics, reward_fn, s.discount)
        return candidates[int(torch.argmax(returns))]


@dataclass(frozen=True)
class MPPISettings:
    """Options of :class:`MPPIPlanner` (horizon and samples: HyperCRL's pendulum ones)."""

    horizon: int = 15
    samples: int = 100
    noise_std: float = 0.5
    """Perturbation standard deviation in half-ranges of the action box."""
    temperature: float = 1.0
    """``lambda`` of the path-integral weights; lower is greedier."""
    discount: float = 0.99

    def __post_init__(self) -> None:
        if min(self.horizon, self.samples) < 1:
            raise ValueError(f"MPPI sizes must be positive, got {self}")
        if self.noise_std <= 0 or self.temperature <= 0 or not 0 < self.discount <= 1:
            raise ValueError(
                f"MPPI needs noise_std > 0, temperature > 0, discount in (0, 1], got {self}"
            )


class MPPIPlanner:
    """Model-predictive path integral planner with a warm-started nominal sequence.

    Call :meth:`reset` at each episode start: the nominal sequence carries over between
    decisions of one episode (shifted by one step), not across episodes.
    """

    def __init__(self, settings: MPPISettings, action_low: Tensor, action_high: Tensor) -> None:
        _check_box(action_low, action_high)
        self.settings = settings
        self.action_low = action_low
        self.action_high = action_high
        self.nominal = self._centre()

    def _centre(self) -> Tensor:
        centre = (self.action_low + self.action_high) / 2
        return centre.expand(self.settings.horizon, -1).clone()

    def reset(self) -> None:
        """Forget the warm start (a new episode)."""
        self.nominal = self._centre()

    def plan(
        self, obs: Tensor, dynamics: Dynamics, reward_fn: RewardFn, generator: torch.Generator
    ) -> Tensor:
        """The updated nominal sequence ``[horizon, a]`` (act on its first row).

        Afterwards the nominal is shifted one step (its last row repeated), ready for the
        next decision.
        """
        s = self.settings
        half_range = (self.action_high - self.action_low) / 2
        noise = (
            s.noise_std
            * half_range
            * torch.randn(
                (s.samples, *self.nominal.shape), generator=generator, dtype=self.nominal.dtype
            )
        )
        candidates = torch.clamp(self.nominal + noise, self.action_low, self.action_high)
        # the clipped perturbation, so the update stays inside the box
        noise = candidates - self.nominal
        returns = rollout_returns(obs, candidates, dynamics, reward_fn, s.discount)
        weights = torch.softmax(returns / s.temperature, dim=0)  # = exp(-(S - min S)/lambda)/Z
        plan = self.nominal + torch.einsum("k,kha->ha", weights, noise)
        self.nominal = torch.cat([plan[1:], plan[-1:]])
        return plan
