"""Averaged gradient episodic memory (Chaudhry et al. 2019, ICLR, eq. 11).

Before each optimiser step, the gradient ``g`` of the current losses is compared with
``g_ref``, the gradient of the agent's own loss on a batch drawn from an episodic memory of
earlier tasks. If the step would increase that loss (``g . g_ref < 0``) it is projected::

    g <- g - (g . g_ref / g_ref . g_ref) g_ref

so that ``g . g_ref = 0``; otherwise ``g`` is left as it is. The memory keeps a uniform
sample of every finished task's transitions; Continual World (Wołczyk et al. 2021) keeps
10 000 per task and draws reference batches of 128.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from pydantic import Field, PositiveInt

from l2rl.config import PluginConfig
from l2rl.core import Agent, RunContext
from l2rl.types import EnvSpec, Step, TaskInfo, TransitionBatch

from .adapters import WindowSampling, stream_seed, transition_fields, transition_row
from .memory import EpisodicMemory, Reservoir
from .params import trainable_parameters

_SAMPLE_STREAM = 0xA6E0
_MEMORY_STREAM = 0xA6E1


def project_gradient(
    grads: Sequence[torch.Tensor], reference: Sequence[torch.Tensor]
) -> tuple[list[torch.Tensor], bool]:
    """A-GEM's projection of ``grads`` against ``reference`` (both one tensor per parameter).

    The dot products run over all parameters together, as one flat vector.

    Returns:
        The gradients to apply, and whether they were projected (``g . g_ref < 0``).
    """
    dot = sum(((g * r).sum() for g, r in zip(grads, reference, strict=True)), torch.zeros(()))
    if dot >= 0:
        return list(grads), False
    ref_norm = sum((r.pow(2).sum() for r in reference), torch.zeros(()))
    scale = dot / ref_norm
    return [g - scale * r for g, r in zip(grads, reference, strict=True)], True


def reference_gradients(
    loss: torch.Tensor, params: Sequence[torch.nn.Parameter]
) -> list[torch.Tensor]:
    """``d loss / d params``, zeros for parameters the loss does not reach.

    Uses :func:`torch.autograd.grad`, so the ``.grad`` of the current loss is untouched.
    """
    grads = torch.autograd.grad(loss, list(params), allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


def _declared_batch_type(agent: Agent) -> type | None:
    """The class ``agent.losses`` declares for its batch, if it declares a resolvable one."""
    try:
        hint = typing.get_type_hints(type(agent).losses).get("batch")
    except (NameError, TypeError):
        return None
    # typing.Any is a class since Python 3.11; it declares nothing.
    return hint if isinstance(hint, type) and hint is not Any else None


def _unsuitable(agent: Agent, why: str) -> str:
    return (
        "A-GEM evaluates the agent's own loss on stored transitions, but "
        f"{type(agent).__name__}.losses cannot take a TransitionBatch ({why}); A-GEM applies "
        "to agents that learn from replayed transitions (DQN, SAC)"
    )


class AGEM(WindowSampling):
    """Component ``agem``: projects each update's gradient against an episodic memory.

    During a window it keeps a uniform sample (reservoir) of the window's transitions; at
    the window's end that sample becomes the task's memory. From the next update on, every
    ``after_backward`` computes ``g_ref`` with the agent's own loss
    (``sum(agent.losses(batch).values())``) on a memory batch and projects ``.grad`` of
    ``networks()``'s parameters. The memory batch is a :class:`~l2rl.types.TransitionBatch`,
    so the agent's loss must take one (DQN and SAC do; an on-policy loss that needs
    rollout statistics cannot be evaluated on stored transitions). A task-agnostic run has
    no task ends, so the memory stays empty and nothing is projected (it warns).

    Logs ``<name>/projected_fraction`` (updates projected over updates checked) at each
    task end.
    """

    class Config(PluginConfig):
        """Options of A-GEM."""

        memory_per_task: PositiveInt = Field(
            default=10_000,
            description="Transitions kept per finished task (Continual World: 10 000).",
        )
        batch_size: PositiveInt = Field(
            default=128, description="Memory transitions per reference gradient (CW: 128)."
        )

    config: Config
    sample_stream = _SAMPLE_STREAM

    def __init__(self, config: Config, env_spec: EnvSpec) -> None:
        super().__init__(config, env_spec)
        fields = transition_fields(env_spec)
        self.window = Reservoir(config.memory_per_task, fields, _SAMPLE_STREAM)
        self.memory = EpisodicMemory(_MEMORY_STREAM)
        self.checked = 0
        """Updates whose gradient was compared with a reference gradient."""
        self.projected = 0
        """Of those, the updates whose gradient was projected."""

    def on_run_start(self, ctx: RunContext) -> None:
        """Check the agent's batch type, seed sample and memory, warn without boundaries.

        Raises:
            TypeError: the agent's ``losses`` is annotated with a batch type that a
                :class:`~l2rl.types.TransitionBatch` is not (e.g. a rollout batch).
        """
        declared = _declared_batch_type(ctx.agent)
        if declared is not None and not issubclass(TransitionBatch, declared):
            raise TypeError(_unsuitable(ctx.agent, f"it takes {declared.__name__}"))
        super().on_run_start(ctx)
        self.memory.reseed(stream_seed(ctx, _MEMORY_STREAM))

    def _window_row(self, step: Step) -> dict[str, Any]:
        """The whole transition."""
        return transition_row(step)

    def after_backward(self, ctx: RunContext) -> None:
        """Project ``.grad`` if it conflicts with the memory's reference gradient."""
        if len(self.memory) == 0:
            return
        params = list(trainable_parameters(ctx.agent.networks()).values())
        batch = TransitionBatch(**self.memory.sample(self.config.batch_size))
        try:
            losses = ctx.agent.losses(batch)
        except (AttributeError, TypeError) as exc:
            raise TypeError(_unsuitable(ctx.agent, str(exc))) from exc
        reference = reference_gradients(torch.stack(list(losses.values())).sum(), params)
        grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
        projected, changed = project_gradient(grads, reference)
        self.checked += 1
        if changed:
            self.projected += 1
            for p, g in zip(params, projected, strict=True):
                p.grad = g

    def on_task_end(self, ctx: RunContext, task: TaskInfo) -> None:
        """The window's sample becomes this task's memory; log the projection rate."""
        if len(self.window) > 0:
            self.memory.store(task.index, self.window.rows())
        if self.checked:
            ctx.logger.scalar(
                f"{self.name}/projected_fraction", self.projected / self.checked, ctx.global_step
            )

    def state_dict(self) -> dict[str, Any]:
        """Window sample, memory and projection counts."""
        return {
            "window": self.window.state_dict(),
            "memory": self.memory.state_dict(),
            "checked": self.checked,
            "projected": self.projected,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.window.load_state_dict(state["window"])
        self.memory.load_state_dict(state["memory"])
        self.checked = int(state["checked"])
        self.projected = int(state["projected"])
