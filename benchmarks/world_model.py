"""Speed and memory of the DreamerV3-style world model (``dreamer-world-model``).

On CartPole-shaped data (4 float32 observations, 2 discrete actions; random transitions in
episodes of random length), at the sizes of :class:`DreamerWorldModel.Config` unless a flag
says otherwise (batch 16 sequences x 64 steps by default), three measurements:

1. **Train step.** Updates/s of the world model trained through l2rl, i.e. what a run pays
   per update: ``learner.batches(step)`` drawing a batch from a real ``fifo`` replay
   (``sample_sequences``) and the runner's one update path on it
   (:meth:`l2rl.runner.Runner._update`: hooks, the loss dict summed, NaN guard on the
   loss, ``zero_grad``, backward, gradient clipping with the NaN guard on the norm, Adam,
   ``after_optimizer_step``), beside the same update written as a plain single-file torch
   loop (:class:`PlainWorldModel`, below): the same architecture, sizes, losses, Adam and
   clipping, on batches sampled once beforehand from the same replay, no framework. Before
   timing, the plain model is loaded with the l2rl model's weights and must give the same
   four losses on the same batch and random stream, so the two do the same work. The two
   are interleaved (alternating which goes first) and repeated; medians are reported, and
   the ratio is the median of the per-repeat ratios. Target: l2rl >= 0.9x the plain loop.
   The time l2rl spends in ``sample_sequences`` is timed alone too.
2. **Imagination.** Imagined steps/s (N start states x horizon 15 / time) of
   :meth:`DreamerWorldModel.imagine` from the posteriors of one batch (N = batch x length)
   with a small MLP actor (2 x 64 units): under ``torch.no_grad()`` with sampled action
   indices (acting, or the critic's targets); with gradients and a REINFORCE actor loss
   (DreamerV3's discrete actor: the graph holds the actor only, as an index action carries
   no gradient into the model); and with gradients through the dynamics (a model with
   2-dim ``Box`` actions fed a straight-through one-hot, as a backprop actor needs). The
   gradient rows are timed with and without the actor loss's backward pass.
3. **Peak memory.** Peak resident set size (the kernel's ``VmHWM``, see
   :func:`peak_rss_mib`) of a fresh child process that builds the replay and the model
   and runs K updates, for the l2rl path and for the plain loop: after building (before
   the first update), at the end, and what the updates added. RSS is what the machine
   pays (torch's CPU tensors come from ``malloc``, which ``tracemalloc`` does not see); a
   fresh process per figure keeps earlier measurements' memory out of it. It includes
   the interpreter, torch and l2rl (about 240 MiB before anything is built). The
   training steps of a Dreamer run (agent and world model updated at every step, the
   agent imagining from batches of the same size) are measured the same way; further
   measurements register in :data:`MEMORY_RUNS`.

Timings are CPU time of this process (``time.process_time``) with one torch thread: on a
shared 2-core machine wall time swings with the other load, CPU time much less. The exit
status is 1 when the train-step target is missed.

Usage::

    python benchmarks/world_model.py --repeats 5
    python benchmarks/world_model.py --repeats 1 --updates 2 --deter 16 --units 16 \\
        --latents 4 --classes 4 --batch 2 --length 8      # a smoke run, seconds
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from l2rl.agents.dreamer import DreamerAgent
from l2rl.builder import build_component, services_from
from l2rl.components.replay.buffer import StepBatch
from l2rl.components.replay.component import ChunkReplay
from l2rl.components.world_models.dreamer_world_model import (
    DreamerWorldModel,
    DreamerWorldModelComponent,
)
from l2rl.components.world_models.rssm import LatentState
from l2rl.config import EvalConfig, PluginRef
from l2rl.core import Agent
from l2rl.hooks import Hook
from l2rl.runner import Runner
from l2rl.scenarios.from_envs import scenario_from_envs
from l2rl.testing import FakeAgent
from l2rl.types import EnvSpec, SequenceBatch

ENV_ID = "CartPole-v1"
OBS_DIM, NUM_ACTIONS = 4, 2
TARGET_RATIO = 0.9
HORIZON = 15
ACTOR_UNITS = 64
REPLAY_STEPS = 20_000
DEFAULTS = DreamerWorldModel.Config()


@dataclass(frozen=True)
class Sizes:
    """The model and batch sizes under test."""

    deter: int = DEFAULTS.deter
    units: int = DEFAULTS.units
    layers: int = DEFAULTS.layers
    latents: int = DEFAULTS.latents
    classes: int = DEFAULTS.classes
    batch: int = DEFAULTS.batch_size
    length: int = DEFAULTS.sequence_length

    def options(self) -> dict[str, Any]:
        """``dreamer-world-model`` options: these sizes, an update at every step."""
        return {
            "deter": self.deter,
            "units": self.units,
            "layers": self.layers,
            "latents": self.latents,
            "classes": self.classes,
            "batch_size": self.batch,
            "sequence_length": self.length,
            "train_every": 1,
            "learning_starts": 0,
        }

    def describe(self) -> str:
        """One line for the report."""
        return (
            f"deter {self.deter}, units {self.units} x {self.layers} layers, "
            f"z {self.latents}x{self.classes}, batch {self.batch} x {self.length} steps"
        )


# --- the plain single-file baseline ---------------------------------------------------
def plain_mlp(in_dim: int, units: int, layers: int, out_dim: int | None = None) -> nn.Sequential:
    """Linear, LayerNorm, SiLU ``layers`` times, then a Linear to ``out_dim`` if given."""
    modules: list[nn.Module] = []
    for _ in range(layers):
        modules += [nn.Linear(in_dim, units), nn.LayerNorm(units), nn.SiLU()]
        in_dim = units
    if out_dim is not None:
        modules.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*modules)


class PlainRSSM(nn.Module):
    """The RSSM's four networks (named as l2rl's, so its weights load)."""

    def __init__(self, embed: int, actions: int, deter: int, stoch: int, units: int) -> None:
        super().__init__()
        self.img_in = plain_mlp(stoch + actions, units, 1)
        self.gru = nn.GRUCell(units, deter)
        self.prior_head = plain_mlp(deter, units, 1, stoch)
        self.post_head = plain_mlp(deter + embed, units, 1, stoch)


class PlainWorldModel(nn.Module):
    """DreamerV3's world model and its loss written out with torch alone.

    The same architecture, sizes and losses as ``dreamer-world-model`` (see its module
    docstring): symlog MLP encoder, GRU RSSM with 1%-unimix categorical latents sampled with
    straight-through gradients, symlog-MSE decoder, twohot reward head (zero-initialised
    output), Bernoulli continue head, balanced KL with free bits.
    """

    def __init__(self, sizes: Sizes, unimix: float = DEFAULTS.unimix) -> None:
        super().__init__()
        s = sizes
        self.latents, self.classes, self.unimix = s.latents, s.classes, unimix
        stoch = s.latents * s.classes
        feat = s.deter + stoch
        self.encoder = plain_mlp(OBS_DIM, s.units, s.layers)
        self.rssm = PlainRSSM(s.units, NUM_ACTIONS, s.deter, stoch, s.units)
        self.decoder = plain_mlp(feat, s.units, s.layers, OBS_DIM)
        self.reward = plain_mlp(feat, s.units, s.layers, 255)
        self.cont = plain_mlp(feat, s.units, s.layers, 1)
        last = self.reward[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.bins: torch.Tensor
        self.register_buffer("bins", torch.linspace(-20.0, 20.0, 255), persistent=False)

    def log_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """Unimix categorical log-probabilities ``[N, L, K]``."""
        probs = F.softmax(logits.view(-1, self.latents, self.classes), -1)
        return torch.log((1.0 - self.unimix) * probs + self.unimix / self.classes)

    def loss(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        terminated: torch.Tensor,
        is_first: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The summed loss and its four terms on ``[B, T, ...]`` sequences."""
        batch, steps = is_first.shape
        rssm, classes = self.rssm, self.classes
        target = torch.sign(obs) * torch.log1p(obs.abs())
        embed = self.encoder(target)
        onehot = F.one_hot(actions, NUM_ACTIONS).float()
        keep_all = (~is_first).float().unsqueeze(-1)
        deter = obs.new_zeros(batch, rssm.gru.hidden_size)
        stoch = obs.new_zeros(batch, self.latents * classes)
        posts, priors, deters, stochs = [], [], [], []
        for t in range(steps):
            keep = keep_all[:, t]
            deter, stoch = deter * keep, stoch * keep
            x = rssm.img_in(torch.cat([stoch, onehot[:, t] * keep], -1))
            deter = rssm.gru(x, deter)
            post = self.log_probs(rssm.post_head(torch.cat([deter, embed[:, t]], -1)))
            probs = post.exp()
            cdf = probs.detach().cumsum(-1)  # inverse-CDF draw, as the RSSM samples
            draw = torch.rand(*cdf.shape[:-1], 1) * cdf[..., -1:]
            index = (cdf <= draw).sum(-1).clamp(max=classes - 1).view(batch, -1)
            sample = F.one_hot(index, classes).float() + probs - probs.detach()
            stoch = sample.flatten(1)
            posts.append(post)
            priors.append(self.log_probs(rssm.prior_head(deter)))
            deters.append(deter)
            stochs.append(stoch)
        post, prior = torch.stack(posts, 1), torch.stack(priors, 1)
        feat = torch.cat([torch.stack(deters, 1), torch.stack(stochs, 1)], -1)

        decoder = 0.5 * (self.decoder(feat) - target).pow(2).sum(-1).mean()
        # Twohot cross-entropy: the target's weights on its two neighbouring bins.
        bins = self.bins
        y = (torch.sign(rewards) * torch.log1p(rewards.abs())).clamp(-20.0, 20.0)
        above = torch.searchsorted(bins, y.contiguous(), right=True).clamp(1, len(bins) - 1)
        below = above - 1
        w_above = (y - bins[below]) / (bins[above] - bins[below])
        logp = F.log_softmax(self.reward(feat), -1)
        reward = -(
            (1.0 - w_above) * logp.gather(-1, below.unsqueeze(-1)).squeeze(-1)
            + w_above * logp.gather(-1, above.unsqueeze(-1)).squeeze(-1)
        ).mean()
        cont = F.binary_cross_entropy_with_logits(
            self.cont(feat).squeeze(-1), (~terminated).float()
        )
        dyn = (post.detach().exp() * (post.detach() - prior)).sum((-2, -1))
        rep = (post.exp() * (post - prior.detach())).sum((-2, -1))
        kl = (0.5 * dyn.clamp(min=1.0) + 0.1 * rep.clamp(min=1.0)).mean()
        terms = {"loss_decoder": decoder, "loss_reward": reward, "loss_continue": cont}
        terms["loss_kl"] = kl
        return decoder + reward + cont + kl, terms


Tensors = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class PlainLoop:
    """The baseline's training loop: pre-sampled batches, loss, backward, clip, Adam."""

    def __init__(self, sizes: Sizes, batches: list[Tensors]) -> None:
        cfg = DEFAULTS
        self.sizes = sizes
        self.model = PlainWorldModel(sizes)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, eps=1e-8)
        self.max_grad_norm = cfg.max_grad_norm
        self.batches = batches
        self.count = 0

    def step(self) -> None:
        """One update on the next pre-sampled batch."""
        batch = self.batches[self.count % len(self.batches)]
        self.count += 1
        loss, _ = self.model.loss(*batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
        self.optimizer.step()


def tensors(batch: SequenceBatch) -> Tensors:
    """A replay batch as the plain loop's own tensors (copies: no storage shared)."""
    return (
        batch.obs.float().clone(),
        batch.actions.long().clone(),
        batch.rewards.clone(),
        batch.terminated.clone(),
        batch.is_first.clone(),
    )


# --- l2rl -----------------------------------------------------------------------------
def filled_replay(env_spec: EnvSpec, length: int, seed: int) -> ChunkReplay:
    """A ``fifo`` replay holding :data:`REPLAY_STEPS` random transitions.

    Episodes of 10-200 steps (CartPole's range), normal observations, reward 1 per step,
    a terminal last step; chunks of twice the sequence length.
    """
    chunk = max(50, 2 * length)
    ref = PluginRef(name="fifo", options={"capacity": REPLAY_STEPS, "chunk_steps": chunk})
    replay = build_component(ref, env_spec)
    assert isinstance(replay, ChunkReplay)
    rng = np.random.default_rng(seed)
    done = 0
    while done < REPLAY_STEPS:
        steps = min(int(rng.integers(10, 201)), REPLAY_STEPS - done)
        frames = rng.normal(size=(steps + 1, OBS_DIM)).astype(np.float32)
        terminated = np.zeros(steps, np.bool_)
        terminated[-1] = True
        first = np.zeros(steps, np.bool_)
        first[0] = True
        batch = StepBatch(
            obs=frames[:-1],
            actions=rng.integers(0, NUM_ACTIONS, steps),
            rewards=np.ones(steps, np.float32),
            next_obs=frames[1:],
            terminated=terminated,
            truncated=np.zeros(steps, np.bool_),
            task_id=0,
            first=first,
        )
        replay.add_batch(batch)
        done += steps
    return replay


class L2RLLoop:
    """The world model trained by the runner's update path, from a real ``fifo`` replay.

    With ``dreamer`` the agent is the ``dreamer`` agent (actor-critic of ``units`` width,
    start states from batches of the same size, horizon 15) and :meth:`step` updates it
    too: one training step of a Dreamer run; otherwise a :class:`FakeAgent` that never
    updates, and the step is the world model's update alone.
    """

    def __init__(self, sizes: Sizes, seed: int, dreamer: bool = False) -> None:
        scenario = scenario_from_envs([ENV_ID], steps_per_task=1, return_range=(0.0, 500.0))
        spec = scenario.env_spec()
        self.replay = filled_replay(spec, sizes.length, seed)
        ref = PluginRef(name="dreamer-world-model", options=sizes.options())
        component = build_component(ref, spec)
        assert isinstance(component, DreamerWorldModelComponent)
        self.components = [self.replay, component]
        services = services_from(self.components)
        for c in self.components:
            c.wire(services)
        agent: Agent
        if dreamer:
            options = {
                "units": sizes.units,
                "layers": sizes.layers,
                "batch_size": sizes.batch,
                "sequence_length": sizes.length,
                "train_every": 1,
                "learning_starts": 0,
            }
            agent = DreamerAgent(DreamerAgent.Config(**options), spec, services, seed)
        else:
            agent = FakeAgent(FakeAgent.Config(), spec, services, seed)
        self.learners = [agent, component.model] if dreamer else [component.model]
        evaluation = EvalConfig(every=10**9, episodes=1, max_episode_steps=1)
        self.runner = Runner(scenario, agent, self.components, evaluation, seed, env_spec=spec)
        self.runner.hooks.fire(Hook.RUN_START, self.runner.ctx)  # seeds the replay
        self.model: DreamerWorldModel = component.model

    def step(self) -> None:
        """The updates of one due env step, as the runner does them."""
        runner, ctx = self.runner, self.runner.ctx
        ctx.global_step += 1
        for learner in self.learners:
            for batch in learner.batches(ctx.global_step):
                runner._update(learner, batch)

    def sample(self) -> SequenceBatch:
        """One batch as the world model draws it."""
        cfg = self.model.config
        batch: SequenceBatch = self.replay.sample_sequences(cfg.batch_size, cfg.sequence_length)
        return batch


def check_same_model(l2rl: L2RLLoop, sizes: Sizes) -> float:
    """The largest difference of the four losses of l2rl's model and of a plain one loaded
    with its weights, on one batch and one random stream; raises unless it is tiny."""
    model = PlainWorldModel(sizes)
    model.load_state_dict(l2rl.model.nets.state_dict())
    batch = l2rl.sample()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        ours = l2rl.model.losses(batch)
        torch.manual_seed(0)
        _, theirs = model.loss(*tensors(batch))
    diff = max(abs(float(ours[k].item()) - float(theirs[k].item())) for k in ours)
    if set(ours) != set(theirs) or not diff < 1e-4:
        raise AssertionError(f"the plain loop computes other losses: {ours} vs {theirs}")
    return diff


# --- 1. train step --------------------------------------------------------------------
def rate(step: Callable[[], object], calls: int) -> float:
    """Calls/s of ``step`` in CPU time."""
    start = time.process_time()
    for _ in range(calls):
        step()
    return calls / (time.process_time() - start)


@dataclass
class TrainFigures:
    """Updates/s per repeat of both loops, what sampling costs, how equal the losses are."""

    l2rl: list[float]
    plain: list[float]
    sample_seconds: float
    loss_difference: float


def measure_training(sizes: Sizes, updates: int, repeats: int, seed: int) -> TrainFigures:
    """Interleaved, repeated updates/s of the l2rl path and of the plain loop."""
    torch.manual_seed(seed)
    l2rl = L2RLLoop(sizes, seed)
    difference = check_same_model(l2rl, sizes)
    plain = PlainLoop(sizes, [tensors(l2rl.sample()) for _ in range(8)])
    loops = {"l2rl": l2rl.step, "plain": plain.step}
    for step in loops.values():  # first-call costs are not what is measured
        rate(step, 2)
    rates: dict[str, list[float]] = {key: [] for key in loops}
    for repeat in range(repeats):
        for key in ("l2rl", "plain") if repeat % 2 == 0 else ("plain", "l2rl"):
            rates[key].append(rate(loops[key], updates))
    sample_seconds = 1.0 / rate(l2rl.sample, 50)
    return TrainFigures(rates["l2rl"], rates["plain"], sample_seconds, difference)


# --- 2. imagination -------------------------------------------------------------------
class Actor(nn.Module):
    """A small MLP policy over the model's features: 2 x :data:`ACTOR_UNITS` units."""

    def __init__(self, feature_dim: int) -> None:
        super().__init__()
        self.net = plain_mlp(feature_dim, ACTOR_UNITS, 2, NUM_ACTIONS)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Action logits ``[N, A]``."""
        logits: torch.Tensor = self.net(features)
        return logits


def sampled_index(logits: torch.Tensor) -> torch.Tensor:
    """An action index per row, drawn from ``softmax(logits)``."""
    return torch.multinomial(F.softmax(logits, -1), 1).squeeze(-1)


IMAGINE_LABELS = {
    "no_grad": "no_grad, index actions",
    "reinforce": "grad, index actions (REINFORCE)",
    "reinforce+bw": "  + backward of the actor loss",
    "dynamics": "grad, straight-through one-hot",
    "dynamics+bw": "  + backward through the dynamics",
}


def imagination_steps(
    model: DreamerWorldModel, box_model: DreamerWorldModel, start: LatentState, horizon: int
) -> dict[str, Callable[[], None]]:
    """One rollout (and its backward pass) of every row of :data:`IMAGINE_LABELS`."""
    actor = Actor(model.feature_dim)

    def no_grad() -> None:
        with torch.no_grad():
            model.imagine(start, lambda f: sampled_index(actor(f)), horizon)

    def reinforce(backward: bool) -> None:
        log_probs: list[torch.Tensor] = []

        def policy(features: torch.Tensor) -> torch.Tensor:
            logits = F.log_softmax(actor(features), -1)
            index = sampled_index(logits)
            log_probs.append(logits.gather(-1, index.unsqueeze(-1)).squeeze(-1))
            return index

        out = model.imagine(start, policy, horizon)
        if backward:
            loss: torch.Tensor = -(torch.stack(log_probs) * out["rewards"].detach()).mean()
            actor.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]

    def dynamics(backward: bool) -> None:
        def policy(features: torch.Tensor) -> torch.Tensor:
            probs = F.softmax(actor(features), -1)
            index = torch.multinomial(probs.detach(), 1).squeeze(-1)
            return F.one_hot(index, NUM_ACTIONS).float() + probs - probs.detach()

        out = box_model.imagine(start, policy, horizon)
        if backward:
            loss: torch.Tensor = -out["rewards"].mean()  # continues: a mode, no gradient
            actor.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]

    return {
        "no_grad": no_grad,
        "reinforce": lambda: reinforce(False),
        "reinforce+bw": lambda: reinforce(True),
        "dynamics": lambda: dynamics(False),
        "dynamics+bw": lambda: dynamics(True),
    }


@dataclass
class ImagineFigures:
    """Imagined steps/s per repeat of every row, and the rollout's size."""

    rates: dict[str, list[float]]
    starts: int
    horizon: int


def measure_imagination(
    sizes: Sizes, rollouts: int, repeats: int, horizon: int, seed: int
) -> ImagineFigures:
    """Imagined steps/s from the posteriors of one replayed batch (N = batch x length)."""
    torch.manual_seed(seed)
    l2rl = L2RLLoop(sizes, seed)
    posterior = l2rl.model.observe_sequences(l2rl.sample())
    start = LatentState(posterior.deter.flatten(0, 1), posterior.stoch.flatten(0, 1))
    starts = start.deter.shape[0]
    # The same sizes with 2-dim Box actions: a straight-through one-hot reaches the GRU.
    box = gym.spaces.Box(0.0, 1.0, (NUM_ACTIONS,), np.float32)
    box_spec = EnvSpec(l2rl.runner.env_spec.observation_space, box, 1, True)
    box_model = DreamerWorldModel(DreamerWorldModel.Config(**sizes.options()), box_spec)
    steps = imagination_steps(l2rl.model, box_model, start, horizon)
    for step in steps.values():
        step()
    rates: dict[str, list[float]] = {key: [] for key in steps}
    for repeat in range(repeats):
        keys = list(steps) if repeat % 2 == 0 else list(reversed(steps))
        for key in keys:
            rates[key].append(rate(steps[key], rollouts) * starts * horizon)
    return ImagineFigures(rates, starts, horizon)


# --- 3. peak memory -------------------------------------------------------------------
@dataclass(frozen=True)
class MemoryRun:
    """A measurement in a fresh process: ``setup`` builds everything and returns one step;
    the step runs ``--memory-updates`` times."""

    label: str
    setup: Callable[[Sizes, int], Callable[[], None]]


def _l2rl_setup(sizes: Sizes, seed: int) -> Callable[[], None]:
    return L2RLLoop(sizes, seed).step


def _plain_setup(sizes: Sizes, seed: int) -> Callable[[], None]:
    l2rl = L2RLLoop(sizes, seed)  # the same replay, to draw the batches from
    return PlainLoop(sizes, [tensors(l2rl.sample()) for _ in range(8)]).step


def _dreamer_setup(sizes: Sizes, seed: int) -> Callable[[], None]:
    return L2RLLoop(sizes, seed, dreamer=True).step


MEMORY_RUNS: dict[str, MemoryRun] = {
    "l2rl": MemoryRun("world-model training, l2rl", _l2rl_setup),
    "plain": MemoryRun("world-model training, plain loop", _plain_setup),
    "dreamer": MemoryRun("Dreamer training (agent + world model), l2rl", _dreamer_setup),
}
"""Peak-memory measurements by key; each runs in its own child process."""


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB: ``VmHWM`` of
    ``/proc/self/status``, or ``ru_maxrss`` where there is no ``/proc``.

    ``ru_maxrss`` is not used on Linux: a process started with fork (or vfork) and exec
    reports at least its parent's peak there, as exec folds the old address space's peak
    into it; ``VmHWM`` belongs to the new address space alone.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes / KiB


def memory_child(key: str, sizes: Sizes, updates: int, seed: int) -> None:
    """The child's side: build, note the peak, step ``updates`` times, print both (JSON)."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    step = MEMORY_RUNS[key].setup(sizes, seed)
    before = peak_rss_mib()
    for _ in range(updates):
        step()
    print(json.dumps({"before": before, "peak": peak_rss_mib()}))


def size_flags(sizes: Sizes) -> list[str]:
    """Command-line flags that give ``sizes``."""
    return [f"--{f.name}={getattr(sizes, f.name)}" for f in fields(sizes)]


def measure_memory(
    keys: Sequence[str], sizes: Sizes, updates: int, seed: int
) -> dict[str, dict[str, float]]:
    """``before``/``peak`` MiB of the :data:`MEMORY_RUNS` entries ``keys``, each in a fresh
    process.

    The children run at the same time (memory, not speed, is measured: they share no pages
    but the interpreter's and torch's read-only ones, which each counts in its own RSS).
    """
    children = {}
    for key in keys:
        command = [sys.executable, __file__, "--memory-child", key, *size_flags(sizes)]
        command += [f"--memory-updates={updates}", f"--seed={seed}"]
        children[key] = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    results = {}
    for key, child in children.items():
        stdout, stderr = child.communicate()
        if child.returncode != 0:
            raise RuntimeError(f"memory measurement {key!r} failed:\n{stderr}")
        results[key] = json.loads(stdout.strip().splitlines()[-1])
    return results


# --- report ---------------------------------------------------------------------------
def _runs(values: Sequence[float], fmt: str = ",.1f") -> str:
    return " ".join(f"{v:{fmt}}" for v in values)


def report_training(figures: TrainFigures, updates: int) -> tuple[list[str], bool]:
    """The train-step table and whether the target is met."""
    l2rl, plain = statistics.median(figures.l2rl), statistics.median(figures.plain)
    pairs = [a / b for a, b in zip(figures.l2rl, figures.plain, strict=True)]
    ratio = statistics.median(pairs)
    met = ratio >= TARGET_RATIO
    sample_share = figures.sample_seconds * l2rl
    lines = [
        f"1. train step ({updates} updates per run, {len(pairs)} repeats)",
        f"   {'loop':<34}{'median updates/s':>17}  all runs",
        f"   {'l2rl: fifo replay + runner update':<34}{l2rl:>17.2f}  {_runs(figures.l2rl, '.2f')}",
        f"   {'plain single-file torch loop':<34}{plain:>17.2f}  {_runs(figures.plain, '.2f')}",
        f"   l2rl / plain per repeat:   {_runs(pairs, '.3f')}",
        f"   l2rl / plain median:       {ratio:.3f}  (target >= {TARGET_RATIO}: "
        f"{'met' if met else 'NOT met'})",
        f"   of l2rl's update, sample_sequences: {figures.sample_seconds * 1e3:.2f} ms "
        f"({sample_share:.2%})",
        f"   plain loop loaded with l2rl's weights: losses differ by {figures.loss_difference:.1e}",
    ]
    return lines, met


def report_imagination(figures: ImagineFigures, rollouts: int) -> list[str]:
    """The imagination table."""
    width = max(len(label) for label in IMAGINE_LABELS.values())
    lines = [
        f"2. imagination: {figures.starts} start states x horizon {figures.horizon}, "
        f"{rollouts} rollouts per run, actor 2 x {ACTOR_UNITS}",
        f"   {'mode':<{width}}  {'median imagined steps/s':>23}  all runs",
    ]
    for key, label in IMAGINE_LABELS.items():
        values = figures.rates[key]
        lines.append(
            f"   {label:<{width}}  {statistics.median(values):>23,.0f}  {_runs(values, ',.0f')}"
        )
    return lines


def report_memory(results: dict[str, dict[str, float]], updates: int) -> list[str]:
    """The peak-RSS table, and each run's ratio to the plain loop's increment."""
    width = max(len(run.label) for run in MEMORY_RUNS.values())
    lines = [
        f"3. peak RSS (VmHWM of a fresh process, {updates} updates)",
        f"   {'run':<{width}}  {'before (MiB)':>12}  {'peak (MiB)':>10}  {'added':>8}",
    ]
    for key, run in MEMORY_RUNS.items():
        if key not in results:
            continue
        before, peak = results[key]["before"], results[key]["peak"]
        lines.append(
            f"   {run.label:<{width}}  {before:>12.1f}  {peak:>10.1f}  {peak - before:>8.1f}"
        )
    if "plain" in results and "l2rl" in results:
        ratio = results["l2rl"]["peak"] / results["plain"]["peak"]
        lines.append(f"   l2rl / plain peak: {ratio:.3f}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, measure, print; 1 when the train-step target is missed."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per configuration")
    parser.add_argument("--updates", type=int, default=10, help="updates per timed run")
    parser.add_argument("--rollouts", type=int, default=2, help="rollouts per timed run")
    parser.add_argument("--memory-updates", type=int, default=20, help="K for peak memory")
    parser.add_argument("--horizon", type=int, default=HORIZON)
    for f in fields(Sizes):
        parser.add_argument(f"--{f.name}", type=int, default=f.default)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--memory-runs",
        nargs="*",
        choices=list(MEMORY_RUNS),
        default=list(MEMORY_RUNS),
        help="peak-memory measurements to make (none: skip them)",
    )
    parser.add_argument("--memory-child", choices=list(MEMORY_RUNS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = Sizes(**{f.name: getattr(args, f.name) for f in fields(Sizes)})
    torch.set_num_threads(1)
    if args.memory_child:
        memory_child(args.memory_child, sizes, args.memory_updates, args.seed)
        return 0
    print(f"{ENV_ID}-shaped data: {sizes.describe()}; torch threads: {torch.get_num_threads()}")
    train = measure_training(sizes, args.updates, args.repeats, args.seed)
    lines, met = report_training(train, args.updates)
    print("\n".join(lines), flush=True)
    imagine = measure_imagination(sizes, args.rollouts, args.repeats, args.horizon, args.seed)
    print("\n".join(report_imagination(imagine, args.rollouts)), flush=True)
    if args.memory_runs:
        memory = measure_memory(args.memory_runs, sizes, args.memory_updates, args.seed)
        print("\n".join(report_memory(memory, args.memory_updates)))
    print("train-step target met" if met else "train-step target NOT met")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
