"""What generating a network's weights costs: HyperCRL's hypernetwork against a plain
network, per update.

For three of HyperCRL's sizes (a [32, 32] pendulum model from a [16, 16] hypernetwork, a
[256, 256] cart-pole model from [128, 128], and a [200, 200] model from the chunked
[20, 20] hypernetwork with 2000 outputs per chunk), on a batch of 32 delta-state inputs
(obs 4 + action 1), it measures in the same run:

* ``generate``: one ``h(e, Theta)`` forward (what every update and every planning decision
  pays once);
* ``forward``: the plain model's forward on the batch;
* ``plain update``: loss, backward and Adam step of the plain model;
* ``generated update``: the same update through :class:`HyperCRL` (generation, the model
  run by ``functional_call``, backward into ``Theta`` and ``e``, the output regulariser at
  the look-ahead with 4 earlier tasks, both Adam steps).

Timings are interleaved and repeated; medians are reported, with the ratios generate /
forward and generated update / plain update. There is no target: the figures say what a
hypernetwork costs.

Usage::

    python benchmarks/weight_generation.py --calls 200 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from l2rl.agents.networks import MultiHeadMLP
from l2rl.components.hypernetworks.hypercrl import HyperCRL
from l2rl.testing import fake_scenario
from l2rl.types import TaskInfo

BATCH, IN_DIM, OUT_DIM, EARLIER_TASKS = 32, 5, 4, 4
CONTEXT: Any = SimpleNamespace(logger=SimpleNamespace(scalar=lambda *a: None), global_step=0)
"""What HyperCRL's hooks read of a run context: a logger and the step."""


@dataclass(frozen=True)
class Size:
    """A target model and the hypernetwork HyperCRL pairs with it."""

    name: str
    hidden: list[int]
    hnet_hidden: list[int]
    chunk_dim: int | None = None


SIZES = (
    Size("pendulum [32,32] <- [16,16]", [32, 32], [16, 16]),
    Size("cartpole [256,256] <- [128,128]", [256, 256], [128, 128]),
    Size("chunked [200,200] <- [20,20]/2000", [200, 200], [20, 20], 2000),
)


def hypercrl_for(size: Size, target: nn.Module) -> HyperCRL:
    """A bound HyperCRL that has seen ``EARLIER_TASKS`` tasks before the current one."""
    config = HyperCRL.Config(hidden=size.hnet_hidden, chunk_dim=size.chunk_dim)
    component = HyperCRL(config, fake_scenario(1, 4).env_spec())
    component.name = "hypercrl"
    component.bind(target, loss_scale=BATCH)
    for task in range(EARLIER_TASKS + 1):
        component.on_task_start(CONTEXT, TaskInfo(task, f"t{task}", task, EARLIER_TASKS + 1))
    return component


def median_seconds(call: Callable[[], object], calls: int) -> float:
    """Seconds per call over ``calls`` calls."""
    begin = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - begin) / calls


def timed_calls(size: Size) -> dict[str, Callable[[], object]]:
    """The four measured operations of one size."""
    torch.manual_seed(0)
    x, y = torch.randn(BATCH, IN_DIM), torch.randn(BATCH, OUT_DIM)
    plain = MultiHeadMLP(IN_DIM, OUT_DIM, size.hidden)
    plain_adam = torch.optim.Adam(plain.parameters(), lr=1e-3)
    target = MultiHeadMLP(IN_DIM, OUT_DIM, size.hidden).requires_grad_(False)
    hnet = hypercrl_for(size, target)

    def generate() -> object:
        with torch.no_grad():
            return hnet.weights(None)

    def forward() -> object:
        with torch.no_grad():
            return plain(x)

    def plain_update() -> object:
        plain_adam.zero_grad()
        loss = (plain(x) - y).pow(2).sum()
        loss.backward()
        plain_adam.step()
        return loss

    def generated_update() -> object:
        learners = hnet.learners()
        for learner in learners:
            learner.optimizer.zero_grad()
        out = torch.func.functional_call(target, hnet.weights(None), (x,))
        loss = (out - y).pow(2).sum()
        loss.backward()
        hnet.after_backward(CONTEXT)
        for learner in learners:
            params = [p for g in learner.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            learner.optimizer.step()
        return loss

    return {
        "generate": generate,
        "forward": forward,
        "plain update": plain_update,
        "generated update": generated_update,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, measure, print."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per timed run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=int, default=len(SIZES), help="first N sizes")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"batch {BATCH}, {EARLIER_TASKS} earlier tasks; torch threads {torch.get_num_threads()}")
    for size in SIZES[: args.sizes]:
        calls = timed_calls(size)
        times: dict[str, list[float]] = {name: [] for name in calls}
        for repeat in range(args.repeats):
            order = list(calls.items())[:: 1 if repeat % 2 == 0 else -1]
            for name, call in order:
                times[name].append(median_seconds(call, args.calls))
        med = {name: statistics.median(values) for name, values in times.items()}
        print(f"{size.name}:")
        for name, seconds in med.items():
            print(f"  {name:>16}: {seconds * 1e3:8.3f} ms")
        print(f"  generate / forward: {med['generate'] / med['forward']:.2f}x")
        ratio = med["generated update"] / med["plain update"]
        print(f"  generated update / plain update: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
