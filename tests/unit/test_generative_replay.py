"""generative-replay: the VAE's ELBO by hand and its learning, the conformance kit, and a
sleep that pulls a drifted policy back towards the consolidated one on generated inputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from l2rl.builder import build_component
from l2rl.components.consolidators.generative_replay import GenerativeReplay, ObservationVAE
from l2rl.components.regularizers.behavior_cloning import distribution_parameters, policy_kl
from l2rl.config import PluginRef
from l2rl.core import AgentServices, RunContext
from l2rl.logging.recorder import Recorder
from l2rl.testing import FakeAgent, check_component, fake_scenario
from l2rl.types import EnvSpec, Step, TaskInfo


def test_the_vae_loss_is_the_negative_elbo_by_hand() -> None:
    vae = ObservationVAE(obs_dim=2, latent_dim=1, units=4)
    with torch.no_grad():  # an encoder giving mu = 0.5, log sigma = 0; a decoder giving 1
        vae.encoder[-1].weight.zero_()
        vae.encoder[-1].bias.copy_(torch.tensor([0.5, 0.0]))
        vae.decoder[-1].weight.zero_()
        vae.decoder[-1].bias.fill_(1.0)
    x = torch.tensor([[1.0, 3.0]])
    # reconstruction (1-1)^2 + (3-1)^2 = 4; KL = 0.5 (0.25 + 1 - 0 - 1) = 0.125
    assert float(vae.loss(x).detach()) == 4.125


def test_the_vae_learns_the_observations_it_sees() -> None:
    torch.manual_seed(0)
    data = torch.randn(512, 3) * torch.tensor([0.5, 1.0, 2.0]) + torch.tensor([3.0, -1.0, 0.0])
    vae = ObservationVAE(obs_dim=3, latent_dim=2, units=32)
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-2)
    first = float(vae.loss(data).detach())
    for _ in range(400):
        optimizer.zero_grad()
        vae.loss(data[torch.randint(512, (64,))]).backward()
        optimizer.step()
    assert float(vae.loss(data).detach()) < 0.3 * first
    samples = vae.sample(2000, torch.Generator().manual_seed(1))
    np.testing.assert_allclose(samples.mean(0).numpy(), data.mean(0).numpy(), atol=0.35)


def fifo(env_spec: EnvSpec) -> Any:
    return build_component(PluginRef(name="fifo", options={"capacity": 200}), env_spec)


def test_it_passes_the_conformance_kit() -> None:
    options = {"batch_size": 8, "generated": 32, "real_buffer": 16, "sleep_updates": 3}
    report = check_component(
        GenerativeReplay, options, companions=[fifo], steps_per_task=48, name="generative-replay"
    )
    assert "state_dict[task-aware]" in report.passed


def test_a_sleep_pulls_a_drifted_policy_back_on_generated_observations() -> None:
    torch.manual_seed(0)
    scenario = fake_scenario(num_tasks=1, steps_per_task=10)
    env_spec = scenario.env_spec()
    replay = fifo(env_spec)
    agent = FakeAgent(FakeAgent.Config(lr=0.05), env_spec, AgentServices(replay=replay), seed=0)
    options = {"batch_size": 64, "generated": 512, "sleep_updates": 300}
    component = GenerativeReplay(GenerativeReplay.Config(**options), env_spec)
    component.name = "generative-replay"
    component.wire(AgentServices(replay=replay))
    ctx = RunContext(agent, env_spec, scenario.tasks, 0, Recorder())
    component.on_run_start(ctx)
    generator = torch.Generator().manual_seed(0)
    for t in range(200):
        obs = torch.rand(4, generator=generator).numpy().astype(np.float32)
        step = Step(obs, 0, 0.0, obs, False, False, 0, t + 1)
        replay.add(step)
        component.on_step(ctx, step)
        for batch in component.generator.batches(t + 1):  # the wake generator's updates
            optimizer = component.generator.optimizer
            optimizer.zero_grad()
            component.generator.losses(batch)["loss_vae"].backward()
            optimizer.step()
    task = TaskInfo(index=0, name="t", block=0, num_tasks=1)
    assert list(component.sleep_batches(ctx, task)) == []  # the first sleep: snapshots only
    consolidated = {k: v.clone() for k, v in agent.networks().state_dict().items()}
    with torch.no_grad():  # a wake phase moves the network
        for p in agent.networks().parameters():
            p.add_(torch.randn(p.shape, generator=generator))

    probe = torch.rand(256, 4, generator=generator)
    ids = torch.full((256,), -1, dtype=torch.long)

    def kl_to_consolidated() -> float:
        current = {k: v.clone() for k, v in agent.networks().state_dict().items()}
        agent.networks().load_state_dict(consolidated)
        target = distribution_parameters(agent.policy_distribution(probe, ids))
        agent.networks().load_state_dict(current)
        return float(policy_kl(target, agent.policy_distribution(probe, ids)).mean().detach())

    before = kl_to_consolidated()
    updates = 0
    for batch in component.sleep_batches(ctx, task):
        losses = component.sleep_losses(ctx, batch)
        agent.optimizer.zero_grad()
        sum(losses.values()).backward()
        agent.optimizer.step()
        updates += 1
    assert updates == 300
    # 3/4 of each batch is generated and labelled by the consolidated policy: the policy on
    # fresh observations of the same distribution moves most of the way back
    assert kl_to_consolidated() < 0.5 * before
