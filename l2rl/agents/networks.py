"""Small networks shared by the built-in agents."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def mlp(in_dim: int, hidden_sizes: Sequence[int]) -> nn.Sequential:
    """Linear + ReLU layers of the given widths (an empty module when there are none)."""
    layers: list[nn.Module] = []
    for width in hidden_sizes:
        layers += [nn.Linear(in_dim, width), nn.ReLU()]
        in_dim = width
    return nn.Sequential(*layers)


class QNetwork(nn.Module):
    """Action values from raw observations: flatten, scale, MLP torso, one head per task.

    The input conversion lives inside the module so that anything holding the network
    (a regularizer, a distillation loss) can call it on stored observations directly.

    Args:
        obs_dim: number of observation elements (the product of the observation shape).
        num_actions: number of discrete actions.
        hidden_sizes: widths of the torso's hidden layers.
        num_heads: output heads; with more than one, ``forward`` needs each row's head.
        input_scale: observations are multiplied by this after conversion to float32
            (``1/255`` for uint8 frames).
    """

    def __init__(
        self,
        obs_dim: int,
        num_actions: int,
        hidden_sizes: Sequence[int],
        num_heads: int = 1,
        input_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.input_scale = input_scale
        self.torso = mlp(obs_dim, hidden_sizes)
        width = hidden_sizes[-1] if hidden_sizes else obs_dim
        self.heads = nn.ModuleList(nn.Linear(width, num_actions) for _ in range(num_heads))

    def forward(self, obs: torch.Tensor, heads: torch.Tensor | None = None) -> torch.Tensor:
        """Q-values ``[batch, num_actions]``; row ``i`` from head ``heads[i]``.

        Args:
            obs: observations ``[batch, *obs_shape]`` of any numeric dtype.
            heads: int64 head index per row; required when there are several heads.
        """
        x = obs.flatten(1).to(torch.float32)
        if self.input_scale != 1.0:
            x = x * self.input_scale
        features = self.torso(x)
        if len(self.heads) == 1:
            return self.heads[0](features)  # type: ignore[no-any-return]
        if heads is None or bool((heads < 0).any()):
            # -1 marks an unknown task; as an index it would silently pick the last head.
            raise ValueError("a multi-head QNetwork needs the head index (>= 0) of every row")
        # Every head runs on every row and each row keeps its own: one small matmul per
        # head, and the heads a row did not select receive exactly zero gradient from it.
        all_q = torch.stack([head(features) for head in self.heads], dim=1)
        return all_q[torch.arange(len(all_q), device=all_q.device), heads]
