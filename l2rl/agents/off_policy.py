"""The update schedule shared by the replay-based agents (DQN, SAC)."""

from __future__ import annotations

from collections.abc import Iterator

from l2rl.core import BatchSource
from l2rl.types import TransitionBatch


def replay_batches(
    replay: BatchSource,
    global_step: int,
    *,
    train_every: int,
    learning_starts: int,
    gradient_steps: int,
    batch_size: int,
) -> Iterator[TransitionBatch]:
    """``gradient_steps`` minibatches every ``train_every`` env steps, once the replay holds
    ``learning_starts`` transitions; nothing otherwise."""
    if global_step % train_every != 0 or len(replay) < learning_starts:
        return
    for _ in range(gradient_steps):
        yield replay.sample(batch_size)
