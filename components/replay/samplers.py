"""Samplers: which stored rows a minibatch reads.

A sampler returns flat storage rows: the rows transitions end at (``valid`` rows, see
:mod:`.storage`) or the first rows of sequences. It reads the storage's per-slot fill and
counts and, where its rule needs them, the replay's *views*: lists of chunk ids (one per
buffer; the chunks being filled belong to the first). Every draw comes from the sampler's
own seeded generator, so a replay's minibatches are reproducible and survive a
checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

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

    def views(self) -> list[np.ndarray]:
        """Chunk ids per buffer; the chunks being filled are in the first."""
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


def _below(rng: np.random.Generator, highs: np.ndarray) -> np.ndarray:
    """One integer in ``[0, high)`` per element of ``highs`` (all positive).

    ``floor(u * high)`` for a double ``u``: uniform to within double rounding (~``high /
    2^53``), and several times faster than ``Generator.integers`` with an array bound.
    """
    picks: np.ndarray = (rng.random(len(highs)) * highs).astype(np.int64)
    # u * high can round up to high itself when u is the largest double below 1.
    np.minimum(picks, highs - 1, out=picks)
    return picks


def _weighted(
    rng: np.random.Generator, items: np.ndarray, weights: np.ndarray, n: int
) -> np.ndarray:
    """``n`` draws from ``items`` with probability proportional to integer ``weights``."""
    cumulative = np.cumsum(weights)
    picks: np.ndarray = items[
        np.searchsorted(cumulative, rng.integers(0, cumulative[-1], n), side="right")
    ]
    return picks


def rows_in(rng: np.random.Generator, storage: ChunkStorage, slots: np.ndarray) -> np.ndarray:
    """A uniformly random transition end in each of ``slots`` (each must hold one).

    Rejection sampling over each slot's written rows: uniform over the accepted ones, and
    at least half are accepted (a row that ends no transition is followed by one that
    does), so a few rounds suffice.
    """
    base, fill = slots * storage.rows, storage.fill[slots]
    rows: np.ndarray = base + _below(rng, fill)
    bad = np.flatnonzero(~storage.valid.take(rows))
    while bad.size:
        rows[bad] = base[bad] + _below(rng, fill[bad])
        bad = bad[~storage.valid.take(rows[bad])]
    return rows


@dataclass(frozen=True)
class View:
    """Some chunks of a replay (one buffer's) and, cached with them, their flat rows."""

    slots: np.ndarray
    rows: np.ndarray

    @classmethod
    def of(cls, storage: ChunkStorage, slots: np.ndarray) -> View:
        """The view of ``slots``."""
        rows = (slots[:, None] * storage.rows + np.arange(storage.rows)).ravel()
        return cls(slots, rows)


def uniform_rows(
    rng: np.random.Generator, storage: ChunkStorage, view: View | None, slots_used: int, n: int
) -> np.ndarray:
    """``n`` transition ends, uniform over all those stored in ``view``'s chunks.

    ``view=None`` means slots ``0 .. slots_used - 1``. Draws uniform rows of the chunks
    and keeps the first ``n`` that end a transition: i.i.d. uniform over them, exactly.
    When fewer than half the rows end one (a nearly empty replay) it picks chunks in
    proportion to their transitions first instead (:func:`rows_in`).

    Raises:
        ValueError: the chunks hold no transition.
    """
    if view is None:
        total, span = storage.transitions, slots_used * storage.rows
    else:
        total, span = int(storage.count.take(view.slots).sum()), len(view.rows)
    if total == 0:
        raise _empty()
    if 2 * total < span:
        slots = np.arange(slots_used) if view is None else view.slots
        return rows_in(rng, storage, _weighted(rng, slots, storage.count[slots], n))
    valid, invalid = storage.valid, 1.0 - total / span
    found: list[np.ndarray] = []
    missing = n
    while missing > 0:
        # The expected shortfall plus 4 sd (+ 8): a second round is rare.
        extra = missing * invalid / (1.0 - invalid)
        draws = rng.integers(0, span, missing + int(extra + 4 * extra**0.5) + 8)
        if view is not None:
            draws = view.rows.take(draws)
        kept = draws[valid.take(draws)][:missing]
        found.append(kept)
        missing -= len(kept)
    return found[0] if len(found) == 1 else np.concatenate(found)


def _starts_in(
    rng: np.random.Generator, storage: ChunkStorage, slots: np.ndarray, length: int
) -> np.ndarray:
    """A uniformly random first row of a ``length``-row run in each of ``slots``."""
    starts: np.ndarray = slots * storage.rows + _below(rng, storage.fill[slots] - length + 1)
    return starts


def _check_length(storage: ChunkStorage, length: int) -> None:
    if not 0 < length <= storage.rows:
        raise ValueError(
            f"sequence length must be in [1, {storage.rows}] (chunk_steps + 1), got {length}"
        )


class UniformSampler(_Seeded):
    """Uniform over every stored transition (with replacement), or every sequence start.

    Used by FIFO, reservoir and task-balanced replay, where every stored chunk, including
    the ones being filled, is part of the one buffer. Transitions: uniform rows of the
    used slots, redrawing the ones that end no transition (:func:`uniform_rows`).
    Sequences: a slot in proportion to the runs of ``length`` rows it holds, then a
    uniform start.

    Args:
        seed: seed of the sampler's generator (a replay reseeds it from the run's seed).
    """

    def transitions(self, source: ChunkSource, batch_size: int) -> np.ndarray:
        """Flat rows of ``batch_size`` transition ends, uniform over all stored."""
        return uniform_rows(self.rng, source.storage, None, source.slots_used, batch_size)

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

    def __init__(self, seed: Seed = 0) -> None:
        super().__init__(seed)
        self._views: list[View] = []
        self._views_version = -1

    def _pick(self, weights: list[np.ndarray]) -> int:
        """The buffer drawn, or the next one that has something (-1: none has)."""
        first = int(self.rng.integers(len(weights)))
        for i in (*range(first, len(weights)), *range(first)):
            if weights[i].sum() > 0:
                return int(i)
        return -1

    def _rows_views(self, source: ChunkSource) -> list[View]:
        """The buffers' views with their rows (rebuilt when the views change)."""
        if self._views_version != source.version:
            self._views = [View.of(source.storage, v) for v in source.views()]
            self._views_version = source.version
        return self._views

    def transitions(self, source: ChunkSource, batch_size: int) -> np.ndarray:
        """Flat rows of ``batch_size`` transition ends from one randomly chosen buffer."""
        storage, views = source.storage, self._rows_views(source)
        i = self._pick([storage.count.take(v.slots) for v in views])
        if i < 0:
            raise _empty()
        return uniform_rows(self.rng, storage, views[i], source.slots_used, batch_size)

    def sequence_starts(self, source: ChunkSource, batch_size: int, length: int) -> np.ndarray:
        """First rows of ``batch_size`` runs of ``length`` from one randomly chosen buffer."""
        storage, views = source.storage, source.views()
        _check_length(storage, length)
        runs = [np.maximum(storage.fill[v] - length + 1, 0) for v in views]
        i = self._pick(runs)
        if i < 0:
            raise _too_short(length)
        chosen = _weighted(self.rng, views[i], runs[i], batch_size)
        return _starts_in(self.rng, storage, chosen, length)


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
        self._order_version = -1

    def ranks(self, n: int, size: int) -> np.ndarray:
        """``size`` indices into ``n`` items ordered oldest first, by the 50:50 rule.

        Inverse-CDF draws from one uniform ``v`` each: ``n * sqrt(v)`` is triangular(0, n,
        n) (its CDF is ``(x / n)^2``), ``n * v`` uniform on ``[0, n)``; the floor is the
        index (uniform to within double rounding, ~``n / 2^53``).
        """
        recent = self.rng.random(size) < self.recent_fraction
        v = self.rng.random(size)
        index: np.ndarray = (n * np.where(recent, np.sqrt(v), v)).astype(np.int64)
        np.minimum(index, n - 1, out=index)  # v < 1, but n * v can round up to n
        return index

    def _by_age(self, source: ChunkSource) -> np.ndarray:
        """The first view's chunks, oldest first (kept until the views change)."""
        if self._order_version != source.version:
            slots = source.views()[0]
            self._order = slots[np.argsort(source.storage.serial[slots], kind="stable")]
            self._order_version = source.version
        return self._order

    def transitions(self, source: ChunkSource, batch_size: int) -> np.ndarray:
        """Flat rows of ``batch_size`` transition ends, chunk by the 50:50 rule."""
        storage = source.storage
        slots = self._by_age(source)
        slots = slots[storage.count[slots] > 0]
        if slots.size == 0:
            raise _empty()
        return rows_in(self.rng, storage, slots[self.ranks(slots.size, batch_size)])

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
