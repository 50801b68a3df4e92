"""The numerical building blocks of DreamerV3 (Hafner et al. 2023, "Mastering Diverse
Domains through World Models"), as pure torch functions.

* :func:`symlog` / :func:`symexp`: ``symlog(x) = sign(x) ln(|x| + 1)`` (paper eq. 9) and its
  inverse; vector inputs and regression targets are squashed with it.
* :func:`twohot` / :func:`twohot_loss` / :func:`twohot_mean`: a scalar target in symlog
  space spread over its two neighbouring bins of ``linspace(-20, 20, 255)`` (eq. 10-11);
  the loss is the cross-entropy of the predicted bin logits against it, the prediction is
  ``symexp`` of the softmax-weighted bin mean.
* :func:`unimix_logits`: ``p = 0.99 softmax(logits) + 0.01 / K`` (1% uniform mix, the
  RSSM's and the actor's categoricals), returned as log-probabilities.
* :func:`categorical_kl` and :func:`balanced_kl_loss`: the KL between posterior and prior
  over ``L`` categoricals of ``K`` classes, summed over latents, and DreamerV3's loss
  ``0.5 max(1, KL[sg(q) || p]) + 0.1 max(1, KL[q || sg(p)])`` (eq. 5: dynamics and
  representation terms with free bits of 1 nat after summing over latents).
* :func:`lambda_returns`: ``R_t = r_t + gamma c_t ((1 - lambda) v_{t+1} + lambda R_{t+1})``
  with ``R_H = v_H`` (eq. 7).
* :func:`mlp`: DreamerV3's MLP block (Linear, LayerNorm, SiLU), shared by the world model,
  the actor-critic and exploration heads.
* :class:`ReturnNormalizer`: ``S = EMA_0.99(P95(R) - P5(R))``; advantages are divided by
  ``max(1, S)`` (eq. 8).

Checked against hand-computed values in ``tests/unit/test_dreamer_math.py`` and against the
official ``dreamerv3`` package's own functions in ``tests/extras/test_dreamerv3_crosscheck.py``
(an optional extra: ``bash scripts/install-dreamerv3.sh``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import torch
import torch.nn.functional as F
from torch import nn

from l2rl.config import ConfigError

BINS = 255
"""Twohot bins of the reward and critic heads."""
BIN_RANGE = 20.0
"""Bins span ``[-BIN_RANGE, BIN_RANGE]`` in symlog space."""
UNIMIX = 0.01
"""Uniform mix of every categorical."""


def symlog(x: torch.Tensor) -> torch.Tensor:
    """``sign(x) ln(|x| + 1)``.

    >>> symlog(torch.tensor([-(torch.e - 1), 0.0, torch.e - 1])).tolist()
    [-1.0, 0.0, 1.0]
    """
    return torch.sign(x) * torch.log1p(torch.abs(x))


def symexp(x: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`symlog`: ``sign(x) (exp(|x|) - 1)``."""
    return torch.sign(x) * torch.expm1(torch.abs(x))


def bins(count: int = BINS, bound: float = BIN_RANGE) -> torch.Tensor:
    """Bin centres ``linspace(-bound, bound, count)`` in symlog space."""
    return torch.linspace(-bound, bound, count)


def twohot(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """``x`` (already in symlog space) as weights on its two nearest ``centres``.

    Weights ``|b_{k+1} - x| / |b_{k+1} - b_k|`` on the bin below and the rest on the bin
    above, so their weighted mean is ``x``; values outside the range go to an end bin.
    Shape ``[..., K]``.
    """
    x = x.clamp(float(centres[0]), float(centres[-1]))
    above = torch.searchsorted(centres, x.contiguous(), right=True).clamp(1, len(centres) - 1)
    below = above - 1
    low, high = centres[below], centres[above]
    weight_high = (x - low) / (high - low)
    encoded = torch.zeros(*x.shape, len(centres), dtype=x.dtype)
    encoded.scatter_(-1, below.unsqueeze(-1), (1.0 - weight_high).unsqueeze(-1))
    encoded.scatter_add_(-1, above.unsqueeze(-1), weight_high.unsqueeze(-1))
    return encoded


def twohot_loss(logits: torch.Tensor, target: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of bin ``logits`` ``[..., K]`` against ``twohot(symlog(target))``."""
    encoded = twohot(symlog(target), centres)
    return -(encoded * F.log_softmax(logits, dim=-1)).sum(-1)


def twohot_mean(logits: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """The prediction of bin ``logits``: ``symexp(sum_k softmax(logits)_k b_k)``."""
    return symexp((F.softmax(logits, dim=-1) * centres).sum(-1))


def unimix_logits(logits: torch.Tensor, mix: float = UNIMIX) -> torch.Tensor:
    """Log-probabilities of ``(1 - mix) softmax(logits) + mix / K`` over the last axis."""
    probs = (1.0 - mix) * F.softmax(logits, dim=-1) + mix / logits.shape[-1]
    return torch.log(probs)


def categorical_kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """``KL[p || q]`` of ``[..., L, K]`` categoricals (log-probabilities), summed over the
    ``L`` latents: shape ``[...]``."""
    return (log_p.exp() * (log_p - log_q)).sum(dim=(-2, -1))


def balanced_kl_loss(
    posterior: torch.Tensor,
    prior: torch.Tensor,
    dynamics: float = 0.5,
    representation: float = 0.1,
    free_nats: float = 1.0,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """DreamerV3's KL loss on ``[..., L, K]`` log-probabilities; returns ``(loss [...], info)``.

    ``dynamics * max(free, KL[sg(q) || p]) + representation * max(free, KL[q || sg(p)])``:
    the dynamics term trains the prior towards the posterior, the representation term the
    posterior towards the prior; below ``free_nats`` (after summing over latents) a term
    has no gradient. ``info`` holds the raw KL (``kl``) for logging.
    """
    dyn = categorical_kl(posterior.detach(), prior)
    rep = categorical_kl(posterior, prior.detach())
    loss = dynamics * dyn.clamp(min=free_nats) + representation * rep.clamp(min=free_nats)
    return loss, {"kl": dyn.detach()}


def lambda_returns(
    rewards: torch.Tensor,
    continues: torch.Tensor,
    values: torch.Tensor,
    gamma: float,
    lam: float,
) -> torch.Tensor:
    """``R_t = r_t + gamma c_t ((1 - lam) v_{t+1} + lam R_{t+1})`` backwards from ``R_H = v_H``.

    Args:
        rewards: ``r_0 .. r_{H-1}``, time on axis 0.
        continues: ``c_0 .. c_{H-1}`` (1 where the episode goes on after step ``t``).
        values: ``v_0 .. v_H`` (one more than ``rewards``).

    Returns:
        ``R_0 .. R_{H-1}``.
    """
    horizon = rewards.shape[0]
    if values.shape[0] != horizon + 1 or continues.shape[0] != horizon:
        raise ValueError(
            f"need H rewards and continues and H + 1 values, got {horizon}, "
            f"{continues.shape[0]}, {values.shape[0]}"
        )
    returns = []
    last = values[-1]
    for t in reversed(range(horizon)):
        last = rewards[t] + gamma * continues[t] * ((1.0 - lam) * values[t + 1] + lam * last)
        returns.append(last)
    return torch.stack(returns[::-1])


class ReturnNormalizer:
    """``S = EMA_decay(P95(R) - P5(R))`` starting from 0; :meth:`scale` is ``max(1, S)``.

    An EMA of the range is the difference of EMAs of the two percentiles (both linear), which
    is how DreamerV3's code keeps them; with few updates ``S`` is small and the scale stays
    1, so early returns are not blown up.

    >>> normalizer = ReturnNormalizer()
    >>> normalizer.update(torch.linspace(0.0, 100.0, 101))
    >>> round(normalizer.range, 6), normalizer.scale()
    (0.9, 1.0)
    """

    def __init__(self, decay: float = 0.99, low: float = 0.05, high: float = 0.95) -> None:
        self.decay, self.low, self.high = decay, low, high
        self.range = 0.0

    def update(self, returns: torch.Tensor) -> None:
        """Fold the percentile range of ``returns`` into the average."""
        flat = returns.detach().flatten().to(torch.float64)
        spread = float(torch.quantile(flat, self.high) - torch.quantile(flat, self.low))
        self.range = self.decay * self.range + (1.0 - self.decay) * spread

    def scale(self) -> float:
        """``max(1, S)``."""
        return max(1.0, self.range)

    def state_dict(self) -> dict[str, float]:
        """The running range."""
        return {"range": self.range}

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.range = float(state["range"])


def mlp(in_dim: int, units: int, layers: int, out_dim: int | None = None) -> nn.Sequential:
    """``layers`` blocks of Linear, LayerNorm, SiLU, then a Linear to ``out_dim`` if given."""
    blocks: list[nn.Module] = []
    for _ in range(layers):
        blocks += [nn.Linear(in_dim, units), nn.LayerNorm(units), nn.SiLU()]
        in_dim = units
    if out_dim is not None:
        blocks.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*blocks)


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Run ``module`` without its parameters in the autograd graph (flags restored after):
    gradients still flow through it to its inputs (imagination's actions), never into its
    parameters."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@dataclass(frozen=True)
class ActionEncoding:
    """How actions enter a model's networks: ``Discrete`` indices one-hot, a 1-D ``Box``'s
    floats as they are (the world model, its exploration heads and their rollouts must
    agree on it).

    >>> encode = ActionEncoding.of(gym.spaces.Discrete(3), "model")
    >>> encode(torch.tensor([2])).tolist(), encode.dim
    ([[0.0, 0.0, 1.0]], 3)
    """

    num_actions: int | None
    """Number of discrete actions, or ``None`` for continuous ones."""
    dim: int
    """Size of an encoded action."""

    @classmethod
    def of(cls, space: gym.spaces.Space[Any], owner: str) -> ActionEncoding:
        """The encoding of ``space``.

        Raises:
            ConfigError: neither ``Discrete`` nor a 1-D ``Box`` (naming ``owner``).
        """
        if isinstance(space, gym.spaces.Discrete):
            return cls(int(space.n), int(space.n))
        if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
            return cls(None, int(space.shape[0]))
        raise ConfigError(f"{owner} cannot encode actions of {space}")

    def __call__(self, actions: torch.Tensor) -> torch.Tensor:
        """``[..., dim]`` float32 encodings of ``actions``."""
        if self.num_actions is not None:
            return F.one_hot(actions.long(), self.num_actions).to(torch.float32)
        return actions.to(torch.float32)
