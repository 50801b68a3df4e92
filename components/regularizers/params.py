"""A network's trainable parameters as one flat vector, and the layout to map it back.

Plain functions on any ``torch.nn.Module``. The quadratic penalties (L2, EWC, online EWC,
SI) are all ``sum_i w_i (theta_i - theta*_i)^2`` for some weights ``w`` and anchor
``theta*``; on one concatenated vector that is four tensor operations per term instead of
four per parameter tensor, which halves the cost of an EWC penalty on a small MLP. The
:data:`Layout` (names and shapes, in the module's order) turns a flat vector back into
``{parameter name: tensor}`` for saving and inspection, and catches a vector made for a
different network.
"""

from __future__ import annotations

from collections.abc import Mapping

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
