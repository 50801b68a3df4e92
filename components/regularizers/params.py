"""A network's trainable parameters as one flat vector, and the layout to map it back.

Plain functions on any ``torch.nn.Module``. The quadratic penalties (L2, EWC, online EWC,
SI) are all ``sum_i w_i (theta_i - theta*_i)^2`` for some weights ``w`` and anchor
``theta*``; on one concatenated vector that is four tensor operations per term instead of
four per parameter tensor, which halves the cost of an EWC penalty on a small MLP. The
:data:`Layout` (names and shapes, in the module's order) turns a flat vector back into
``{parameter name: tensor}`` for saving and inspection, and catches a vector made for a
different network. :class:`QuadraticPenalty` is what the four penalties share: the loss
term over their ``(w, theta*)`` terms and their state by parameter name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

Tensors = dict[str, torch.Tensor]
"""One tensor per parameter, keyed by the parameter's name in its module."""

Layout = tuple[tuple[str, tuple[int, ...]], ...]
"""``(name, shape)`` of each trainable parameter, in the module's order."""


def trainable_parameters(module: nn.Module) -> dict[str, nn.Parameter]:
    """The parameters that receive gradients, by name (frozen ones are not regularized)."""
    return {name: p for name, p in module.named_parameters() if p.requires_grad}


def layout_of(module: nn.Module) -> Layout:
    """Names and shapes of the module's trainable parameters."""
    return tuple((name, tuple(p.shape)) for name, p in trainable_parameters(module).items())


def check_layout(module: nn.Module, layout: Layout, what: str) -> None:
    """Raise if ``layout`` was made for a module with other parameters.

    Raises:
        KeyError: names or shapes differ (another network, or one whose layout changed).
    """
    found = layout_of(module)
    if found != layout:
        raise KeyError(
            f"{what} was made for parameters {list(layout)}, the network has {list(found)}"
        )


def flat_parameters(module: nn.Module) -> torch.Tensor:
    """The trainable parameters concatenated, differentiable in each of them."""
    return torch.cat([p.reshape(-1) for p in trainable_parameters(module).values()])


def flat_snapshot(module: nn.Module) -> torch.Tensor:
    """A detached copy of :func:`flat_parameters`."""
    return flat_parameters(module).detach().clone()


def flat_gradients(module: nn.Module) -> torch.Tensor:
    """The trainable parameters' ``.grad`` concatenated (zeros where a ``.grad`` is None)."""
    return torch.cat(
        [
            p.new_zeros(p.numel()) if p.grad is None else p.grad.reshape(-1)
            for p in trainable_parameters(module).values()
        ]
    )


def flatten(tensors: Mapping[str, torch.Tensor], layout: Layout) -> torch.Tensor:
    """``tensors`` (one per parameter, by name) concatenated in ``layout``'s order.

    Raises:
        KeyError: the names or shapes do not match the layout.
    """
    if [(name, tuple(t.shape)) for name, t in tensors.items()] != list(layout):
        shapes = {name: tuple(t.shape) for name, t in tensors.items()}
        raise KeyError(f"tensors {shapes} do not match the parameters {list(layout)}")
    return torch.cat([t.detach().reshape(-1) for t in tensors.values()])


def unflatten(vector: torch.Tensor, layout: Layout) -> Tensors:
    """Split a flat vector back into one tensor per parameter (copies, by name)."""
    out: Tensors = {}
    start = 0
    for name, shape in layout:
        count = int(torch.Size(shape).numel())
        out[name] = vector[start : start + count].reshape(shape).clone()
        start += count
    return out


def layout_from(tensors: Mapping[str, torch.Tensor]) -> Layout:
    """The layout of saved per-parameter tensors (their names and shapes, in order)."""
    return tuple((name, tuple(t.shape)) for name, t in tensors.items())


def weighted_squared_distance(
    theta: torch.Tensor, anchor: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """``sum_i w_i (theta_i - anchor_i)^2`` over flat vectors (``w = 1`` when None)."""
    squared = (theta - anchor).pow(2)
    return (squared if weights is None else squared * weights).sum()


class QuadraticPenalty:
    """``scale * strength * sum_terms sum_i w_i (theta_i - theta*_i)^2`` over flat vectors.

    The skeleton of the L2, EWC, online EWC and SI penalties. A subclass says which
    ``(w, theta*)`` terms it holds (:meth:`_weighted_anchors`; none before its first
    consolidation) and names the flat vectors it keeps (:attr:`vectors`); the loss and the
    state by parameter name follow here.

    Args:
        strength: the penalty's ``lambda`` (SI's ``c``).
    """

    scale: ClassVar[float] = 1.0
    """Factor before ``strength`` (the Fisher penalties' ``1/2``)."""
    vectors: ClassVar[tuple[str, ...]] = ("anchor",)
    """Attributes holding flat vectors (or ``None``), saved by parameter name in this order."""
    what: ClassVar[str]
    """What a layout mismatch names: the state laid out for other parameters."""
    missing: ClassVar[str]
    """What a penalty without terms lacks, for its error."""

    def __init__(self, strength: float) -> None:
        self.strength = strength
        self.layout: Layout = ()
        """The parameters the flat vectors are laid out for."""

    def _weighted_anchors(self) -> list[tuple[torch.Tensor | None, torch.Tensor]]:
        """``(w, theta*)`` of each term held (``w = None``: unweighted)."""
        raise NotImplementedError

    @property
    def active(self) -> bool:
        """Whether any task was consolidated (the penalty has a term)."""
        return bool(self._weighted_anchors())

    def __call__(self, module: nn.Module) -> torch.Tensor:
        """The penalty, differentiable in the module's parameters.

        Raises:
            RuntimeError: nothing was consolidated yet.
            KeyError: the module has other parameters than the terms were made for.
        """
        terms = self._weighted_anchors()
        if not terms:
            raise RuntimeError(
                f"{type(self).__name__} has {self.missing} yet: call consolidate() first"
            )
        check_layout(module, self.layout, self.what)
        theta = flat_parameters(module)
        distances = [weighted_squared_distance(theta, anchor, w) for w, anchor in terms]
        # One term (all but multi-task EWC): its distance alone, no stack-and-sum.
        total = distances[0] if len(distances) == 1 else torch.stack(distances).sum()
        return self.scale * self.strength * total

    def _named(self, vector: torch.Tensor | None) -> Tensors:
        """A flat vector by parameter name (empty for ``None``)."""
        return {} if vector is None else unflatten(vector, self.layout)

    def _flat(self, named: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        """What :meth:`_named` returned, flat again (``None`` for empty)."""
        return flatten(named, self.layout) if named else None

    def follow(self, module: nn.Module) -> None:
        """Lay the state out for ``module``'s parameters as they are now (they grew or
        shrank: :class:`~l2rl.types.ParametersChanged`): entries of kept parameters stay,
        those of removed ones are dropped, and a new parameter gets weight 0 with its
        current value as anchor, so it is free until a consolidation weighs it."""
        if not self.layout:
            return  # nothing held yet: the next consolidation takes the module as it is
        old = {name for name, _ in self.layout}
        now = {name: p.detach() for name, p in trainable_parameters(module).items()}

        def remap(item: Any, key: str) -> Any:
            if isinstance(item, Mapping) and item and set(item) == old:
                return {
                    name: item[name]
                    if name in item
                    else (value.clone() if key == "anchor" else torch.zeros_like(value))
                    for name, value in now.items()
                }
            if isinstance(item, Mapping):
                return {k: remap(v, str(k)) for k, v in item.items()}
            return item

        self.load_state_dict(remap(self.state_dict(), ""))
        self.layout = layout_of(module)

    def state_dict(self) -> dict[str, Any]:
        """Each of :attr:`vectors` by parameter name (empty where not made)."""
        return {name: self._named(getattr(self, name)) for name in self.vectors}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.layout = layout_from(state["anchor"])
        for name in self.vectors:
            setattr(self, name, self._flat(state[name]))
