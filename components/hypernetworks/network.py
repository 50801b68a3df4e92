"""The hypernetwork ``h(e, Theta)``: a task embedding in, a target network's weights out.

The architecture is the one of von Oswald et al. 2020 ("Continual learning with
hypernetworks", ICLR) that HyperCRL (Huang et al. 2020) uses: an MLP with ReLU hidden
layers on the embedding ``e``, then

* **whole**: one linear output head per target tensor, reshaped to the tensor's shape
  (``hypercl/hyper_model.py``), or
* **chunked** (``chunk_dim`` set): the MLP takes ``[e, c_i]`` for each of ``C`` learned
  chunk embeddings ``c_i`` and one head emits ``chunk_dim`` values per chunk; the chunks
  are concatenated, cut to the target's size and split into its tensors
  (``hypercl/chunked_hyper_model.py``). ``C = ceil(target size / chunk_dim)``, so the
  hypernetwork can be much smaller than the network it generates.

Initialisation is HyperCRL's (``hypercrl/model/tools.py``): Xavier-uniform weight
matrices, zero biases, chunk embeddings ``N(0, 1)``. ``Theta`` (:attr:`HyperNetwork.theta`)
is everything but the task embeddings, which the caller owns.

>>> import torch
>>> from torch import nn
>>> target = nn.Linear(3, 2)
>>> shapes = {name: p.shape for name, p in target.named_parameters()}
>>> hnet = HyperNetwork(shapes, embedding_dim=10, hidden=[16, 16])
>>> weights = hnet(torch.randn(10))
>>> {name: tuple(w.shape) for name, w in weights.items()}
{'weight': (2, 3), 'bias': (2,)}
>>> out = torch.func.functional_call(target, weights, (torch.ones(4, 3),))
>>> out.shape
torch.Size([4, 2])
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn


def _xavier_linear(fan_in: int, fan_out: int) -> nn.Linear:
    layer = nn.Linear(fan_in, fan_out)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class Theta(nn.Module):
    """``Theta``: the hidden layers, the heads and (chunked) the chunk embeddings.

    Its forward is the generation itself, so that ``torch.func.functional_call`` can run
    it with changed parameters (``Theta + dTheta``). See :class:`HyperNetwork`.
    """

    def __init__(
        self,
        target_shapes: Mapping[str, torch.Size],
        embedding_dim: int,
        hidden: Sequence[int],
        chunk_dim: int | None,
        chunk_embedding_dim: int,
    ) -> None:
        super().__init__()
        self.target_shapes = dict(target_shapes)
        self.chunk_dim = chunk_dim
        self.num_outputs = sum(shape.numel() for shape in self.target_shapes.values())
        widths = [embedding_dim + (chunk_embedding_dim if chunk_dim else 0), *hidden]
        self.trunk = nn.ModuleList(_xavier_linear(a, b) for a, b in itertools.pairwise(widths))
        self.heads = nn.ModuleList()
        self.chunk_embeddings: nn.Parameter | None = None
        if chunk_dim is None:
            self.heads.extend(
                _xavier_linear(widths[-1], shape.numel()) for shape in self.target_shapes.values()
            )
        else:
            chunks = math.ceil(self.num_outputs / chunk_dim)
            self.heads.append(_xavier_linear(widths[-1], chunk_dim))
            self.chunk_embeddings = nn.Parameter(torch.randn(chunks, chunk_embedding_dim))

    def forward(self, embedding: Tensor) -> dict[str, Tensor]:
        """The target's tensors by name for one task embedding."""
        hidden = embedding
        if self.chunk_embeddings is not None:
            chunks = self.chunk_embeddings
            hidden = torch.cat([embedding.expand(chunks.shape[0], -1), chunks], dim=1)
        for layer in self.trunk:
            hidden = torch.relu(layer(hidden))
        if self.chunk_embeddings is None:
            flat = [head(hidden) for head in self.heads]
        else:
            values = self.heads[0](hidden).reshape(-1)[: self.num_outputs]
            flat = list(values.split([s.numel() for s in self.target_shapes.values()]))
        return {
            name: out.view(shape)
            for (name, shape), out in zip(self.target_shapes.items(), flat, strict=True)
        }


class HyperNetwork(nn.Module):
    """Generates every tensor of a target network from a task embedding.

    Args:
        target_shapes: the target's parameter names and shapes, in order (as
            ``named_parameters()`` gives them).
        embedding_dim: size of the task embedding ``e``.
        hidden: widths of the hidden layers (HyperCRL: ``[16, 16]`` for a ``[32, 32]``
            target, ``[50, 50]`` for ``[200, 200]``, ``[128, 128]`` for ``[256, 256]``).
        chunk_dim: outputs per chunk for the chunked variant; ``None``: whole.
        chunk_embedding_dim: size of each chunk embedding (chunked only).

    Attributes:
        theta: the trained parameters ``Theta`` (:class:`Theta`).
    """

    def __init__(
        self,
        target_shapes: Mapping[str, torch.Size | Sequence[int]],
        embedding_dim: int,
        hidden: Sequence[int],
        chunk_dim: int | None = None,
        chunk_embedding_dim: int = 20,
    ) -> None:
        super().__init__()
        if not target_shapes:
            raise ValueError("the target network has no parameters to generate")
        shapes = {name: torch.Size(shape) for name, shape in target_shapes.items()}
        self.embedding_dim = embedding_dim
        self.theta = Theta(shapes, embedding_dim, hidden, chunk_dim, chunk_embedding_dim)

    @property
    def target_shapes(self) -> dict[str, torch.Size]:
        """The generated tensors' names and shapes."""
        return self.theta.target_shapes

    def forward(
        self, embedding: Tensor, theta_delta: Mapping[str, Tensor] | None = None
    ) -> dict[str, Tensor]:
        """The target's tensors ``h(e, Theta)``, or ``h(e, Theta + dTheta)``.

        Args:
            embedding: the task embedding ``e``, ``[embedding_dim]``.
            theta_delta: per name of ``theta.named_parameters()``, a change to add to that
                parameter (HyperCRL's look-ahead ``dTheta``); missing names add nothing.
        """
        if not theta_delta:
            return self.generate(embedding)
        return self.generate(embedding, self.moved_theta(theta_delta))

    def moved_theta(self, theta_delta: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``Theta + dTheta`` by parameter name (computed once, to generate many tasks).

        Raises:
            KeyError: ``theta_delta`` names a parameter ``theta`` does not have.
        """
        params = dict(self.theta.named_parameters())
        unknown = sorted(set(theta_delta) - set(params))
        if unknown:
            raise KeyError(f"theta_delta names no parameter of theta: {unknown}")
        return {n: p + theta_delta[n] if n in theta_delta else p for n, p in params.items()}

    def generate(
        self, embedding: Tensor, theta: Mapping[str, Tensor] | None = None
    ) -> dict[str, Tensor]:
        """``h(e, theta)`` with ``theta`` a full set of ``Theta``'s parameters by name
        (:meth:`moved_theta`), or ``Theta`` itself."""
        if embedding.shape != (self.embedding_dim,):
            raise ValueError(
                f"expected a task embedding of shape ({self.embedding_dim},), "
                f"got {tuple(embedding.shape)}"
            )
        if theta is None:
            return self.theta(embedding)  # type: ignore[no-any-return]
        out: dict[str, Tensor] = torch.func.functional_call(self.theta, dict(theta), (embedding,))
        return out
