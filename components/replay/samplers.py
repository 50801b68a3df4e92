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


def rows_in(rng: np.random.Generator, storage: ChunkStorage, slots: np.ndarray) -> np.ndarray:
    """A uniformly random transition end in each of ``slots`` (each must hold one)."""
    return _ends_at(storage, slots, rng.random(len(slots)))


def _ends_at(storage: ChunkStorage, slots: np.ndarray, u: np.ndarray) -> np.ndarray:
    """For uniforms ``u``, the ``floor(u * count)``-th transition end of each of ``slots``.

    Uniform over each slot's transitions (to within double rounding, as :func:`_below`),
    read from :attr:`~.storage.ChunkStorage.end_rows`: no rows to reject and redraw.
    """
    j = (u * storage.count.take(slots)).astype(np.int64)
    rows: np.ndarray = storage.end_rows.take(slots * storage.rows + j)
    return rows


@dataclass(frozen=True)
class View:
    """One buffer's chunks and what sampling them needs, cached until the chunks change.

    Attributes:
        slots: the chunk ids.
        rows: their flat rows, slot after slot (a uniform index into it is a uniform row).
        settled: transitions in its complete chunks; a held chunk is never written, so
            this holds until the chunk set, and with it the view, changes.
        filling: its slots whose chunks are being filled; their counts grow with every
            step, so :meth:`transitions` reads them on each call.
    """

    slots: np.ndarray
    rows: np.ndarray
    settled: int
    filling: tuple[int, ...]

    @classmethod
    def of(cls, storage: ChunkStorage, slots: np.ndarray, filling: Sequence[int]) -> View:
        """The view of ``slots``; those also in ``filling`` are being filled."""
        rows = (slots[:, None] * storage.rows + np.arange(storage.rows)).ravel()
        held = set(slots.tolist())
        mine = tuple(int(s) for s in filling if s in held)
        settled = int(storage.count[slots].sum()) - sum(int(storage.count[s]) for s in mine)
        return cls(slots, rows, settled, mine)

    def transitions(self, storage: ChunkStorage) -> int:
        """Transitions in the view's chunks now."""
        total, count = self.settled, storage.count
        for slot in self.filling:  # a loop: faster than sum() or numpy for one or two
            total += int(count[slot])
        return total


def uniform_rows(
    rng: np.random.Generator, storage: ChunkStorage, view: View | None, slots_used: int, n: int
) -> np.ndarray:
    """``n`` transition ends, uniform over all those stored in ``view``'s chunks.

    ``view=None`` means slots ``0 .. slots_used - 1``. Draws uniform rows of the chunks
    and keeps the first ``n`` that end a transition: i.i.d. uniform over them (to within
    double rounding, :func:`_below`).
    When fewer than half the rows end one (a nearly empty replay) it picks chunks in
    proportion to their transitions first instead (:func:`rows_in`).

    Raises:
        ValueError: the chunks hold no transition.
    """
    if view is None:
        total, span = storage.transitions, slots_used * storage.rows
    else:
        total, span = view.transitions(storage), len(view.rows)
    if total == 0:
        raise _empty()
    if 2 * total < span:
        slots = np.arange(slots_used) if view is None else view.slots
        return rows_in(rng, storage, _weighted(rng, slots, storage.count[slots], n))
    # The expected shortfall plus 4 sd (+ 8) drawn on top: a second round is rare.
    extra = n * (span - total) / total
    draws = _below(rng, span, n + int(extra + 4 * extra**0.5) + 8)
    if view is not None:
        draws = view.rows.take(draws)
    kept = draws[storage.valid.take(draws)]
    if len(kept) < n:
        more = uniform_rows(rng, storage, view, slots_used, n - len(kept))
        kept = np.concatenate((kept, more))
    rows: np.ndarray = kept[:n]
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

    def _turns(self, buffers: int) -> list[int]:
        """The buffers in the order to try them: a uniformly drawn one, then the next ones."""
        first = int(self.rng.random() * buffers)  # below ``buffers``, as in _below
        return [*range(first, buffers), *range(first)]

    def _rows_views(self, source: ChunkSource) -> list[View]:
        """The buffers' views with their rows (rebuilt when the views change)."""
        if self._views_version != source.version:
            storage, filling = source.storage, source.filling()
            self._views = [View.of(storage, v, filling) for v in source.views()]
            self._views_version = source.version
        return self._views

    def transitions(self, source: ChunkSource, batch_size: int) -> np.ndarray:
        """Flat rows of ``batch_size`` transition ends from one randomly chosen buffer."""
        storage, views = source.storage, self._rows_views(source)
        for i in self._turns(len(views)):
            if views[i].transitions(storage) > 0:
                return uniform_rows(self.rng, storage, views[i], source.slots_used, batch_size)
        raise _empty()

    def sequence_starts(self, source: ChunkSource, batch_size: int, length: int) -> np.ndarray:
        """First rows of ``batch_size`` runs of ``length`` from one randomly chosen buffer."""
        storage, views = source.storage, source.views()
        _check_length(storage, length)
        runs = [np.maximum(storage.fill[v] - length + 1, 0) for v in views]
        for i in self._turns(len(views)):
            if runs[i].sum() > 0:
                chosen = _weighted(self.rng, views[i], runs[i], batch_size)
                return _starts_in(self.rng, storage, chosen, length)
        raise _too_short(length)


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
        """``size`` indices into ``n`` items ordered oldest first, by the 50:50 rule.

        Each from three uniforms on ``[0, 1)``: a coin, recency-biased when below ``p``,
        and ``a``, ``b``. A recency-biased draw takes ``max(a, b)``, whose CDF is ``x^2``
        (so ``n * max(a, b)`` is triangular(0, n, n)), any other ``a``; the floor of ``n``
        times that is the index (uniform to within double rounding, ~``n / 2^53``, and
        below ``n`` for the reason given in :func:`_below`). The larger of two uniforms
        costs fewer numpy calls than the inverse CDF ``sqrt`` on the biased draws alone.
        """
        return self._ranks(self.rng.random((3, size)), n)

    def _ranks(self, u: np.ndarray, n: int) -> np.ndarray:
        """The indices :meth:`ranks` draws, from its uniforms ``u[0]`` (the coin), ``u[1]``
        and ``u[2]``."""
        # Where the coin says uniform, b * False is 0 and max(a, 0) is a.
        x = np.maximum(u[1], u[2] * (u[0] < self.recent_fraction))
        x *= n
        index: np.ndarray = x.astype(np.int64)
        return index

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
        return _ends_at(source.storage, slots.take(self._ranks(u, slots.size)), u[3])

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
