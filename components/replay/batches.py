"""The sequence minibatch replays hand to world models (transitions use ``TransitionBatch``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SequenceBatch:
    """``B`` runs of ``L`` consecutive stored frames, as torch tensors ``[B, L, ...]``.

    The layout is Dreamer's: row ``t`` holds an observation together with what led to it,
    so ``actions[:, t]`` and ``rewards[:, t]`` are the action taken at ``obs[:, t - 1]`` and
    the reward it earned. A row where ``is_first`` is set starts an episode: its action and
    reward are zero. A sequence may run across an episode boundary inside one stored chunk
    (``is_first`` marks where; a world model resets its latent state there) but never
    across chunks.

    Dtypes: ``obs`` keeps the observation dtype, ``actions`` the action dtype, ``rewards``
    float32, ``terminated`` and ``is_first`` bool, ``task_ids`` int64 (-1 where unknown).

    Attributes:
        obs: observations ``[B, L, *obs_shape]``.
        actions: the action that led to each observation ``[B, L, *action_shape]``.
        rewards: the reward for that action ``[B, L]``.
        terminated: the observation is a terminal state ``[B, L]``.
        is_first: the observation is an episode's first ``[B, L]``.
        task_ids: the task the frames came from ``[B, L]``.
    """

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    terminated: torch.Tensor
    is_first: torch.Tensor
    task_ids: torch.Tensor

    def __len__(self) -> int:
        return int(self.obs.shape[0])
