"""Samplers: which stored rows a minibatch reads.

A sampler returns flat storage rows: the rows transitions end at (``valid`` rows, see
:mod:`.storage`) or the first rows of sequences. It reads the storage's per-slot fill and
counts and, where its rule needs them, the replay's *views*: lists of chunk ids (one per
buffer; the chunks being filled belong to the first), or its *end indexes*: the
transitions of each buffer packed densely (:mod:`.end_index`), from which a uniform
transition is one draw and one gather. Every draw comes from the sampler's own seeded
generator, so a replay's minibatches are reproducible and survive a checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from .end_index import EndIndex
from .storage import ChunkStorage

Seed = int | Sequence[int]
"""What :func:`numpy.random.default_rng` takes."""


class ChunkSource(Protocol):
    """What a sampler reads from a replay."""

    storage: ChunkStorage
    slots_used: int
    """Slots ``0 .. slots_used - 1`` may hold data; the ones above never have."""
    version: int
    """Changes whenever :meth:`views` may change (what a sampler may cache on)."""
    ends: list[EndIndex]
    """Per buffer, its transitions packed densely (the first's: with the chunks being filled)."""

    def views(self) -> list[np.ndarray]:
        """Chunk ids per buffer; the chunks being filled are in the first."""
        ...

    def filling(self) -> list[int]:
        """Slots of the chunks being filled (all in the first view)."""
        ...


class Sampler(Protocol):
    """A rule that picks the rows of a minibatch."""

    def transitions(self, source: ChunkSource, batch_size: int) -> np.ndarray:
        """Flat rows of ``batch_size`` transition ends (with replacement)."""
        ...

    def sequence_starts(self, source: ChunkSource, batch_size: int, length: int) -> np.ndarray:
        """Flat first rows of ``batch_size`` runs of ``length`` rows, each inside a chunk."""
        ...

    def reseed(self, seed: Seed) -> None:
        """Restart the random stream from ``seed``."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """The generator's state."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume the random stream saved by :meth:`state_dict`."""
        ...


class _Seeded:
    """Owns the sampler's generator and its state round trip."""

    def __init__(self, seed: Seed = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed: Seed) -> None:
        """Restart the random stream from ``seed``."""
        self.rng = np.random.default_rng(seed)

    def state_dict(self) -> dict[str, Any]:
        """The generator's state (plain Python ints and strings)."""
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume the random stream saved by :meth:`state_dict`."""
        self.rng.bit_generator.state = state["rng"]


def _empty() -> ValueError:
    return ValueError("cannot sample from an empty replay")


def _too_short(length: int) -> ValueError:
    return ValueError(f"no stored chunk holds {length} consecutive frames yet")


def _below(rng: np.random.Generator, highs: np.ndarray | int, size: int) -> np.ndarray:
    """``size`` integers in ``[0, high)``, for each element of ``highs`` (or one ``high``).

    ``floor(u * high)`` for a double ``u``: uniform to within double rounding (~``high /
    2^53``), and over twice as fast as ``Generator.integers`` for a minibatch of 256,
    whose cost is mostly per-call overhead. It never reaches ``high``: ``u <= 1 - 2^-53``,
    so the exact product is at least ``high * 2^-53`` below ``high``, more than half the
    gap to the next double down (or, for a power of two, exact), and rounds below it.
    """
    picks: np.ndarray = (rng.random(size) * highs).astype(np.int64)
    return picks


def _weighted(
    rng: np.random.Generator, items: np.ndarray, weights: np.ndarray, n: int
) -> np.ndarray:
    """``n`` draws from ``items`` with probability proportional to integer ``weights``."""
    cumulative = np.cumsum(weights)
    picks: np.ndarray = items[
        np.searchsorted(cumulative, _below(rng, int(cumulative[-1]), n), side="right")
    ]
    return picks


def _ends_at(storage: ChunkStorage, slots: np.ndarray, u: np.ndarray) -> np.ndarray:
    """For uniforms ``u``, the ``floor(u * count)``-th transition end of each of ``slots``.

    Uniform over each slot's transitions (to within double rounding, as :func:`_below`),
    read from :attr:`~.storage.ChunkStorage.end_rows`: no rows to reject and redraw.
    """
    j = (u * storage.count.take(slots)).astype(np.int64)
    rows: np.ndarray = storage.end_rows.take(slots * storage.rows + j)
    return rows


def _starts_in(
    rng: np.random.Generator, storage: ChunkStorage, slots: np.ndarray, length: int
) -> np.ndarray:
    """A uniformly random first row of a ``length``-row run in each of ``slots``."""
    runs = storage.fill[slots] - length + 1
    starts: np.ndarray = slots * storage.rows + _below(rng, runs, len(slots))
    return starts


def _check_length(storage: ChunkStorage, length: int) -> None:
    if not 0 < length <= storage.rows:
        raise ValueError(
            f"sequence length must be in [1, {storage.rows}] (chunk_steps + 1), got {length}"
        )


class UniformSampler(_Seeded):
    """Uniform over every stored transition (with replacement), or every sequence start.

    Used by FIFO, reservoir and task-balanced replay, where every stored chunk, including
    the ones being filled, is part of the one buffer. Transitions: a uniform position of
    the buffer's end index (:class:`~.end_index.EndIndex`), one draw each. Sequences: a
    slot in proportion to the runs of ``length`` rows it holds, then a uniform start.

    Args:
        seed: seed of the sampler's generator (a replay reseeds it from the run's seed).
    """

    def transitions(self, source: ChunkSource, batch_size: int) -> np.ndarray:
        """Flat rows of ``batch_size`` transition ends, uniform over all stored."""
        index = source.ends[0]
        if index.size == 0:
            raise _empty()
        return index.rows_at(self.rng.random(batch_size))

    def sequence_starts(self, source: ChunkSource, batch_size: int, length: int) -> np.ndarray:
        """First rows of ``batch_size`` runs, uniform over all stored runs of ``length``."""
        storage = source.storage
        _check_length(storage, length)
        slots = np.arange(source.slots_used)
        runs = np.maximum(storage.fill[slots] - length + 1, 0)
        if runs.sum() == 0:
            raise _too_short(length)
        chosen = _weighted(self.rng, slots, runs, batch_size)
        return _starts_in(self.rng, storage, chosen, length)


class BufferChoiceSampler(_Seeded):
    """WMAR's 50:50 rule: each minibatch comes from one buffer chosen uniformly at random.

    Yang et al. 2024 (WMAR) keep a short-term FIFO and a long-term distribution-matching
    buffer and draw every minibatch from one of them, picked with equal probability. Within
    the chosen buffer, transitions are uniform over its transitions, and sequences uniform
    over its runs of ``length`` rows (WMAR: a uniform chunk, then a uniform offset; the
    same when chunks are complete). A buffer with nothing to give (the long-term one
    before the first chunk is complete) passes the minibatch to the other.

    Args:
        seed: seed of the sampler's generator (a replay reseeds it from the run's seed).
    """

    @staticmethod
    def _turns(first: int, buffers: int) -> list[int]:
        """The buffers in the order to try them: ``first``, then the next ones."""
        return [*range(first, buffers), *range(first)]

    def transitions(self, source: ChunkSource, batch_size: int) -> np.ndarray:
        """Flat rows of ``batch_size`` transition ends from one randomly chosen buffer.

        One call draws the buffer choice (the last uniform) with the rows' uniforms: the
        generator's per-call overhead is much of a minibatch's cost.
        """
        indexes = source.ends
        u = self.rng.random(batch_size + 1)
        first = int(u[batch_size] * len(indexes))  # below len(indexes), as in _below
        index = indexes[first]
        if index.size == 0:  # only before the long-term buffer holds its first chunk
            holding = [i for i in self._turns(first, len(indexes)) if indexes[i].size]
            if not holding:
                raise _empty()
            index = indexes[holding[0]]
        return index.rows_at(u[:batch_size])

    def sequence_starts(self, source: ChunkSource, batch_size: int, length: int) -> np.ndarray:
        """First rows of ``batch_size`` runs of ``length`` from one randomly chosen buffer."""
        storage, views = source.storage, source.views()
        _check_length(storage, length)
        runs = [np.maximum(storage.fill[v] - length + 1, 0) for v in views]
        first = int(self.rng.random() * len(views))  # below len(views), as in _below
        for i in self._turns(first, len(views)):
            if runs[i].sum() > 0:
                chosen = _weighted(self.rng, views[i], runs[i], batch_size)
                return _starts_in(self.rng, storage, chosen, length)
        raise _too_short(length)


def recency_ranks(u: np.ndarray, n: int, recent_fraction: float) -> np.ndarray:
    """Indices into ``n`` items ordered oldest first, by Continual-Dreamer's 50:50 rule.

    One index per column of ``u``, from its three uniforms on ``[0, 1)``: a coin
    ``u[0]``, recency-biased when below ``recent_fraction``, and ``a = u[1]``,
    ``b = u[2]``. A recency-biased draw takes ``max(a, b)``, whose CDF is ``x^2`` (so
    ``n * max(a, b)`` is triangular(0, n, n)), any other ``a``; the floor of ``n`` times
    that is the index (uniform to within double rounding, ~``n / 2^53``, and below ``n``
    for the reason given in :func:`_below`). The larger of two uniforms costs fewer numpy
    calls than the inverse CDF ``sqrt`` on the biased draws alone. Rows of ``u`` past the
    third are not read.
    """
    # Where the coin says uniform, b * False is 0 and max(a, 0) is a.
    x = np.maximum(u[1], u[2] * (u[0] < recent_fraction))
    x *= n
    index: np.ndarray = x.astype(np.int64)
    return index


class RecencyBiasedSampler(_Seeded):
    """Continual-Dreamer's "50:50" sampling: recency-biased with probability ``p``.

    Kessler et al. 2022 ("The Surprising Effectiveness of Latent World Models for Continual
    Reinforcement Learning"): for each sequence, with probability ``p`` the episode index
    is drawn from a triangular(0, n, n) distribution over the ``n`` stored episodes ordered
    oldest first, so the density rises linearly towards the newest; otherwise it is
    uniform. Checked against skezle/continual-dreamer ``dreamerv2/common/replay.py``
    (``_sample_sequence``): ``episodes_keys[int(floor(triangular(0, n, n)))]`` when
    ``recent_past_sampl_thres > random()``, keys in insertion order, ongoing episodes
    appended last. Here the unit is a stored chunk, ordered by when it was started (the
    chunks being filled are the newest); a transition or sequence start is then uniform
    inside the chosen chunk.

    Args:
        recent_fraction: ``p``, the probability of a recency-biased draw.
        seed: seed of the sampler's generator (a replay reseeds it from the run's seed).
    """

    def __init__(self, recent_fraction: float, seed: Seed = 0) -> None:
        if not 0.0 <= recent_fraction <= 1.0:
            raise ValueError(f"recent_fraction must be in [0, 1], got {recent_fraction}")
        super().__init__(seed)
        self.recent_fraction = recent_fraction
        self._order = np.zeros(0, dtype=np.int64)
        self._filling: list[int] = []
        self._order_version = -1
        self._holding_slots = self._order
        self._holding_key: tuple[int, list[int]] | None = None

    def ranks(self, n: int, size: int) -> np.ndarray:
        """``size`` indices into ``n`` items ordered oldest first, by the 50:50 rule
        (:func:`recency_ranks` of three fresh uniforms each)."""
        return recency_ranks(self.rng.random((3, size)), n, self.recent_fraction)

    def _by_age(self, source: ChunkSource) -> np.ndarray:
        """The first view's chunks, oldest first (kept until the views change)."""
        if self._order_version != source.version:
            slots = source.views()[0]
            self._order = slots[np.argsort(source.storage.serial[slots], kind="stable")]
            self._filling = source.filling()
            self._order_version = source.version
        return self._order

    def _holding(self, source: ChunkSource) -> np.ndarray:
        """The chunks that hold a transition, oldest first.

        The buffer never completes an empty chunk, so only a chunk being filled can hold
        none: the list is kept until the chunks change or one being filled gets its first
        transition.
        """
        order = self._by_age(source)
        count = source.storage.count
        key = (source.version, [s for s in self._filling if count[s] > 0])
        if key != self._holding_key:
            self._holding_slots = order[count[order] > 0]
            self._holding_key = key
        return self._holding_slots

    def transitions(self, source: ChunkSource, batch_size: int) -> np.ndarray:
        """Flat rows of ``batch_size`` transition ends, chunk by the 50:50 rule."""
        slots = self._holding(source)
        if slots.size == 0:
            raise _empty()
        # One call draws each transition's three rank uniforms and its place in the chunk:
        # the generator's per-call overhead is most of its cost for a minibatch.
        u = self.rng.random((4, batch_size))
        ranks = recency_ranks(u, slots.size, self.recent_fraction)
        return _ends_at(source.storage, slots.take(ranks), u[3])

    def sequence_starts(self, source: ChunkSource, batch_size: int, length: int) -> np.ndarray:
        """First rows of ``batch_size`` runs of ``length``, chunk by the 50:50 rule."""
        storage = source.storage
        _check_length(storage, length)
        slots = self._by_age(source)
        slots = slots[storage.fill[slots] >= length]
        if slots.size == 0:
            raise _too_short(length)
        chosen = slots[self.ranks(slots.size, batch_size)]
        return _starts_in(self.rng, storage, chosen, length)
