"""PETS's probabilistic ensemble of dynamics models (Chua et al. 2018, "Deep Reinforcement
Learning in a Handful of Trials using Probabilistic Dynamics Models", sections 4.1-4.2).

``B`` MLPs, each giving a Gaussian over the state change: mean ``mu_b(x)`` and log-variance
``log sigma_b^2(x)``, the log-variance softly bounded between learned ``max`` and ``min``
(``max - softplus(max - l)``, then ``min + softplus(l - min)``; PETS's and HyperCRL's
``mlp_var_minmax``). Each member trains on its own bootstrap of the data: here, of each
minibatch (rows drawn with replacement per member; PETS resamples the whole dataset). The
loss is the Gaussian negative log-likelihood of HyperCRL's ``TaskLoss`` with ``out_var``,

    sum over members and rows of sum_j [(mu_j - y_j)^2 / sigma_j^2 + log sigma_j^2] / d
        + 0.01 (sum max - sum min),

with ``d`` the state size. Members run batched (one ``baddbmm`` per layer for all of
them). For planning, candidate ``i`` is propagated by member ``i mod B`` for its whole
horizon (PETS's TS-infinity) through that member's mean; elsewhere the prediction is the
members' mean of means.

>>> import torch
>>> ensemble = ProbabilisticEnsemble(in_dim=4, out_dim=3, hidden=[8], members=5)
>>> ensemble.mean_prediction(torch.zeros(2, 4)).shape, ensemble.grouped(torch.zeros(7, 4)).shape
(torch.Size([2, 3]), torch.Size([7, 3]))
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ProbabilisticEnsemble(nn.Module):
    """``members`` Gaussian MLPs of the state change (see the module docstring).

    Args:
        in_dim, out_dim: input and state-change sizes.
        hidden: hidden widths of every member.
        members: ``B``.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int], members: int) -> None:
        super().__init__()
        if members < 1:
            raise ValueError(f"an ensemble needs at least one member, got {members}")
        self.members, self.out_dim = members, out_dim
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in itertools.pairwise([in_dim, *hidden, 2 * out_dim]):
            bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's default initialisation
            self.weights.append(
                nn.Parameter(torch.empty(members, fan_in, fan_out).uniform_(-bound, bound))
            )
            self.biases.append(
                nn.Parameter(torch.empty(members, 1, fan_out).uniform_(-bound, bound))
            )
        self.max_logvar = nn.Parameter(torch.full((out_dim,), 0.5))
        self.min_logvar = nn.Parameter(torch.full((out_dim,), -10.0))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Each member's mean and bounded log-variance for its own rows, ``x [B, N, in]``."""
        hidden = x
        last = len(self.weights) - 1
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            hidden = torch.baddbmm(bias, hidden, weight)
            if i < last:
                hidden = torch.relu(hidden)
        mean, raw = hidden[..., : self.out_dim], hidden[..., self.out_dim :]
        logvar = self.max_logvar - F.softplus(self.max_logvar - raw)
        return mean, self.min_logvar + F.softplus(logvar - self.min_logvar)

    def nll(self, x: Tensor, target: Tensor, generator: torch.Generator) -> Tensor:
        """The loss of the module docstring on a minibatch, each member on its bootstrap."""
        rows = torch.randint(len(x), (self.members, len(x)), generator=generator)
        mean, logvar = self(x[rows])
        y = target[rows]
        per_entry = (mean - y).pow(2) * torch.exp(-logvar) + logvar
        bounds = 0.01 * (self.max_logvar.sum() - self.min_logvar.sum())
        loss: Tensor = per_entry.sum() / self.out_dim + bounds
        return loss

    def mean_prediction(self, x: Tensor) -> Tensor:
        """The members' mean of means, ``[N, out]``."""
        mean: Tensor = self(x.unsqueeze(0).expand(self.members, *x.shape))[0]
        return mean.mean(0)

    def grouped(self, x: Tensor) -> Tensor:
        """Row ``i`` through member ``i mod B``'s mean (one batched pass), ``[N, out]``."""
        n = len(x)
        per_member = -(-n // self.members)
        padded = torch.cat([x, x.new_zeros(per_member * self.members - n, x.shape[1])])
        # row i sits at [i mod B, i div B]
        grouped = padded.view(per_member, self.members, -1).transpose(0, 1)
        mean: Tensor = self(grouped)[0]
        return mean.transpose(0, 1).reshape(per_member * self.members, -1)[:n]
