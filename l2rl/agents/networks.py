"""Small networks shared by the built-in agents."""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn


def mlp(in_dim: int, hidden_sizes: Sequence[int]) -> nn.Sequential:
    """Linear + ReLU layers of the given widths (an empty module when there are none)."""
    layers: list[nn.Module] = []
    for width in hidden_sizes:
        layers += [nn.Linear(in_dim, width), nn.ReLU()]
        in_dim = width
    return nn.Sequential(*layers)


def check_heads(heads: torch.Tensor | None, num_heads: int) -> torch.Tensor:
    """``heads`` as given, after checking that every row names a real head.

    Raises:
        ValueError: ``heads`` is missing or holds a negative index. -1 marks an unknown
            task; as an index it would silently pick the last head.
    """
    if heads is None or bool((heads < 0).any()):
        raise ValueError(
            f"a network with {num_heads} heads needs the head index (>= 0) of every row"
        )
    return heads


def frame_scale(space: gym.spaces.Box) -> float:
    """The factor that maps integer frames to ``[0, 1]``: ``1 / high`` for a uint8 Box
    (``1/255`` for 0..255 pixels, ``1`` for MinAtar's 0/1 channels), else 1."""
    if space.dtype != np.uint8:
        return 1.0
    return 1.0 / float(np.max(space.high))


class MultiHeadMLP(nn.Module):
    """Flatten, scale, MLP torso, then one linear output head per task.

    The input conversion lives inside the module so that anything holding the network
    (a regularizer, a distillation loss) can call it on stored observations directly.

    Args:
        in_dim: number of input elements (the product of the input shape).
        out_dim: outputs of each head.
        hidden_sizes: widths of the torso's hidden layers.
        num_heads: output heads; with more than one, ``forward`` needs each row's head.
        input_scale: inputs are multiplied by this after conversion to float32
            (``1/255`` for uint8 frames).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_sizes: Sequence[int],
        num_heads: int = 1,
        input_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.input_scale = input_scale
        self.torso = mlp(in_dim, hidden_sizes)
        width = hidden_sizes[-1] if hidden_sizes else in_dim
        self.heads = nn.ModuleList(nn.Linear(width, out_dim) for _ in range(num_heads))

    def forward(self, x: torch.Tensor, heads: torch.Tensor | None = None) -> torch.Tensor:
        """Outputs ``[batch, out_dim]``; row ``i`` from head ``heads[i]``.

        Args:
            x: inputs ``[batch, *shape]`` of any numeric dtype.
            heads: int64 head index per row; required when there are several heads.
        """
        x = x.flatten(1).to(torch.float32)
        if self.input_scale != 1.0:
            x = x * self.input_scale
        features = self.torso(x)
        if len(self.heads) == 1:
            return self.heads[0](features)  # type: ignore[no-any-return]
        heads = check_heads(heads, len(self.heads))
        # Every head runs on every row and each row keeps its own: one small matmul per
        # head, and the heads a row did not select receive exactly zero gradient from it.
        out = torch.stack([head(features) for head in self.heads], dim=1)
        return out[torch.arange(len(out), device=out.device), heads]


class QNetwork(MultiHeadMLP):
    """Action values from raw observations: a :class:`MultiHeadMLP` with one output per
    action (``in_dim = obs_dim``, ``out_dim = num_actions``; the other arguments as there).
    """

    def __init__(
        self,
        obs_dim: int,
        num_actions: int,
        hidden_sizes: Sequence[int],
        num_heads: int = 1,
        input_scale: float = 1.0,
    ) -> None:
        super().__init__(obs_dim, num_actions, hidden_sizes, num_heads, input_scale)


class ContinuousQNetwork(nn.Module):
    """``Q(s, a)`` for continuous actions: observation and action concatenated into an MLP.

    Args:
        obs_dim: number of observation elements.
        action_dim: number of action elements.
        hidden_sizes: widths of the hidden layers.
        num_heads: output heads (one per task when multi-headed).
        input_scale: observations (not actions) are multiplied by this after conversion to
            float32.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden_sizes: Sequence[int],
        num_heads: int = 1,
        input_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.input_scale = input_scale
        self.body = MultiHeadMLP(obs_dim + action_dim, 1, hidden_sizes, num_heads)

    def forward(
        self, obs: torch.Tensor, action: torch.Tensor, heads: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Q-values ``[batch]`` of ``action`` (``[batch, action_dim]``) in ``obs``."""
        x = obs.flatten(1).to(torch.float32)
        if self.input_scale != 1.0:
            x = x * self.input_scale
        q: torch.Tensor = self.body(torch.cat([x, action.to(torch.float32)], dim=1), heads)
        return q.squeeze(1)
