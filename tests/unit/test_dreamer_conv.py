"""The DreamerV3 CNN encoder and decoder, and the world model on image observations."""

from __future__ import annotations

import doctest
import math
from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from l2rl.agents.dqn import DQNAgent
from l2rl.components.replay.fifo import FIFOReplay
from l2rl.components.world_models import conv
from l2rl.components.world_models.conv import ConvDecoder, ConvEncoder, ConvGeometry
from l2rl.components.world_models.dreamer_world_model import (
    DreamerWorldModel,
    DreamerWorldModelComponent,
)
from l2rl.config import ConfigError, EvalConfig
from l2rl.core import AgentServices
from l2rl.runner import Runner
from l2rl.scenario import Scenario
from l2rl.types import EnvSpec, ReturnRange, SequenceBatch, TaskSpec


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Small convolutions on a shared 2-core machine: more threads only oversubscribe it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SMALL = {
    "deter": 32,
    "latents": 4,
    "classes": 4,
    "units": 32,
    "layers": 1,
    "cnn_depth": 8,
    "batch_size": 8,
    "sequence_length": 8,
    "train_every": 2,
    "learning_starts": 40,
    "lr": 3e-3,
}


@pytest.mark.parametrize(
    ("shape", "stages", "smallest", "embed_dim"),
    [
        ((10, 10, 4), 2, (3, 3), 16 * 3 * 3),  # MinAtar Breakout: padded to 12x12
        ((10, 10, 10), 2, (3, 3), 16 * 3 * 3),  # MinAtar Seaquest
        ((64, 64, 3), 4, (4, 4), 64 * 4 * 4),  # DreamerV3's own layout: 32, 16, 8, 4
    ],
)
def test_encoder_and_decoder_shapes(
    shape: tuple[int, int, int], stages: int, smallest: tuple[int, int], embed_dim: int
) -> None:
    torch.manual_seed(0)
    encoder = ConvEncoder(shape, depth=8, min_resolution=4)
    decoder = ConvDecoder(24, shape, depth=8, min_resolution=4)
    assert encoder.geometry.stages == stages
    assert (encoder.geometry.min_height, encoder.geometry.min_width) == smallest
    assert encoder.embed_dim == embed_dim
    # Acting passes [N, H, W, C]; training passes [B, T, H, W, C].
    assert encoder(torch.rand(5, *shape)).shape == (5, embed_dim)
    assert encoder(torch.rand(2, 3, *shape)).shape == (2, 3, embed_dim)
    assert decoder(torch.rand(2, 3, 24)).shape == (2, 3, *shape)
    assert decoder(torch.rand(5, 24)).shape == (5, *shape)


def test_odd_sizes_are_padded_evenly_and_cropped_back() -> None:
    geometry = ConvGeometry(10, 7, min_resolution=4)
    # 2 halvings bring 10 to 3; pad to multiples of 4: 12 x 8.
    assert geometry.stages == 2
    assert geometry.padding == (0, 1, 1, 1)  # (left, right, top, bottom)
    assert (geometry.min_height, geometry.min_width) == (3, 2)
    assert ConvGeometry(4, 4, min_resolution=4).stages == 0  # already small: flatten only
    torch.manual_seed(0)
    decoder = ConvDecoder(6, (10, 7, 2), depth=4, min_resolution=4)
    assert decoder(torch.rand(3, 6)).shape == (3, 10, 7, 2)
    tiny = ConvEncoder((4, 4, 2), depth=4, min_resolution=4)
    assert tiny.embed_dim == 4 * 4 * 2
    assert ConvDecoder(6, (4, 4, 2), depth=4, min_resolution=4)(torch.rand(3, 6)).shape == (
        3,
        4,
        4,
        2,
    )


def test_each_image_is_encoded_on_its_own() -> None:
    """Leading dimensions are only batch: an image's embedding ignores its neighbours."""
    torch.manual_seed(0)
    encoder = ConvEncoder((10, 10, 4), depth=8, min_resolution=4)
    images = torch.rand(2, 3, 10, 10, 4)
    batched = encoder(images)
    torch.testing.assert_close(batched[1, 2], encoder(images[1, 2].unsqueeze(0))[0])
    # Changing one pixel changes that image's embedding only.
    changed = images.clone()
    changed[0, 1, 9, 9, 3] += 1.0
    after = encoder(changed)
    assert not torch.allclose(after[0, 1], batched[0, 1])
    torch.testing.assert_close(after[1], batched[1])


def test_the_conv_module_examples_run() -> None:
    result = doctest.testmod(conv)
    assert result.attempted > 0 and result.failed == 0


def image_spec(shape: tuple[int, ...], low: Any = 0, high: Any = 1) -> EnvSpec:
    box = gym.spaces.Box(low, high, shape, np.uint8)
    return EnvSpec(box, gym.spaces.Discrete(3), 1, True)


def test_image_targets_are_scaled_by_the_box_bounds() -> None:
    # A 0/1 frame (MinAtar): 0 -> -0.5 and 1 -> 0.5, not divided by 255.
    model = DreamerWorldModel(DreamerWorldModel.Config(**SMALL), image_spec((4, 4, 2)))
    frame = torch.zeros(4, 4, 2, dtype=torch.uint8)
    frame[1, 2, 0] = 1
    frame[3, 3, 1] = 1
    target = model.observation_target(frame)
    expected = torch.full((4, 4, 2), -0.5)
    expected[1, 2, 0] = expected[3, 3, 1] = 0.5
    torch.testing.assert_close(target, expected)
    # A 0..255 frame: DreamerV3's x / 255 - 0.5.
    pixels = DreamerWorldModel(DreamerWorldModel.Config(**SMALL), image_spec((4, 4, 2), high=255))
    frame = torch.tensor([0, 51, 255], dtype=torch.uint8).repeat(4, 4, 1)[..., :2]
    torch.testing.assert_close(pixels.observation_target(frame)[0, 0], torch.tensor([-0.5, -0.3]))
    # Per-element bounds: channel 1 spans 10..20.
    low = np.zeros((4, 4, 2), np.uint8)
    high = np.ones((4, 4, 2), np.uint8)
    low[..., 1], high[..., 1] = 10, 20
    mixed = DreamerWorldModel(DreamerWorldModel.Config(**SMALL), image_spec((4, 4, 2), low, high))
    frame = torch.zeros(4, 4, 2, dtype=torch.uint8)
    frame[..., 1] = 15
    torch.testing.assert_close(mixed.observation_target(frame)[2, 2], torch.tensor([-0.5, 0.0]))


def test_images_need_finite_distinct_bounds() -> None:
    box = gym.spaces.Box(0.0, np.inf, (4, 4, 1), np.float32)
    with pytest.raises(ConfigError, match="finite with high > low"):
        DreamerWorldModel(
            DreamerWorldModel.Config(**SMALL), EnvSpec(box, gym.spaces.Discrete(2), 1, True)
        )
    flat = gym.spaces.Box(0, 1, (4, 4), np.uint8)
    with pytest.raises(ConfigError, match="3-D Box"):
        DreamerWorldModel(
            DreamerWorldModel.Config(**SMALL), EnvSpec(flat, gym.spaces.Discrete(2), 1, True)
        )


class DotEnv(gym.Env[np.ndarray, np.int64]):
    """A 6x6x2 0/1 frame: a dot that moves right one cell per step along a random row
    (channel 0) and a bar marking the last action's column (channel 1). Reward 1 when the
    action matches the row's parity; 8-step episodes end truncated."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(0, 1, (6, 6, 2), np.uint8)
        self.action_space = gym.spaces.Discrete(3)
        self.row, self.t, self.action = 0, 0, 0

    def frame(self) -> np.ndarray:
        obs = np.zeros((6, 6, 2), np.uint8)
        obs[self.row, self.t % 6, 0] = 1
        obs[:, self.action, 1] = 1
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.row, self.t, self.action = int(self.np_random.integers(6)), 0, 0
        return self.frame(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.t, self.action = self.t + 1, int(action)
        reward = float(self.action == self.row % 2)
        return self.frame(), reward, False, self.t >= 8, {}


def setup(steps: int) -> tuple[Runner, DreamerWorldModelComponent, FIFOReplay]:
    task = TaskSpec("dots", DotEnv, ReturnRange(0.0, 8.0))
    scenario = Scenario.sequence("dots", [task], steps_per_task=steps)
    spec = scenario.env_spec()
    replay = FIFOReplay(FIFOReplay.Config(capacity=2000), spec)
    replay.name = "fifo"
    model = DreamerWorldModelComponent(DreamerWorldModel.Config(**SMALL), spec)
    model.name = "dreamer-world-model"
    services = AgentServices(replay=replay, sequences=replay, world_model=model.model)
    model.wire(services)
    # A small DQN: an agent that takes image observations and mostly explores here.
    options = {"hidden_sizes": [8], "batch_size": 8, "learning_starts": 50, "train_every": 8}
    agent = DQNAgent(DQNAgent.Config(**options), spec, services, seed=0)
    evaluation = EvalConfig(every=10 * steps, episodes=1)
    runner = Runner(scenario, agent, [replay, model], evaluation, 0)
    return runner, model, replay


def sequences(replay: FIFOReplay) -> SequenceBatch:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return replay.sample_sequences(8, 8)


def test_losses_are_finite_at_initialisation() -> None:
    runner, model, replay = setup(steps=60)
    model.model.source = None  # collect data only
    runner.run()
    batch = sequences(replay)
    assert batch.obs.shape == (8, 8, 6, 6, 2) and batch.obs.dtype == torch.uint8
    losses = model.model.losses(batch)
    assert set(losses) == {"loss_decoder", "loss_reward", "loss_continue", "loss_kl"}
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_reward"].item() == pytest.approx(math.log(255), rel=1e-6)
    # Summed over the 72 values of a frame: far above a single pixel's error.
    assert losses["loss_decoder"].item() > 72 * 0.05
    # The acting path filters [N, H, W, C] frames.
    state = model.model.observe_step(
        model.model.initial(3),
        torch.zeros(3, dtype=torch.long),
        batch.obs[:3, 0],
        torch.ones(3, dtype=torch.bool),
    )
    assert state.deter.shape == (3, SMALL["deter"])


def test_the_decoder_learns_the_frames() -> None:
    runner, model, replay = setup(steps=300)
    # The same initialisation (same seed), never trained: the loss it starts from.
    untrained = DreamerWorldModel(DreamerWorldModel.Config(**SMALL), model.env_spec)
    runner.run()
    assert runner.ctx.learner_updates["world_model"] == (300 - 40) // 2 + 1
    batch = sequences(replay)
    decoder = model.model.losses(batch)["loss_decoder"].item()
    assert decoder < 0.1 * untrained.losses(batch)["loss_decoder"].item()
    # The best frame-independent prediction is the mean frame: the model must beat it,
    # i.e. it reconstructs where the dot and the bar are, not just the empty background.
    target = model.model.observation_target(batch.obs)
    mean_frame = (target - target.mean((0, 1))).pow(2).sum((-3, -2, -1)).mean().item()
    assert decoder < 0.5 * mean_frame
