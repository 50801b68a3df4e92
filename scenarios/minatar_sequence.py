"""MinAtar games in sequence: tasks without shared structure, at CPU scale.

MinAtar (Young & Tian 2019, arXiv:1903.03176; PyPI ``MinAtar``) plays miniature versions of
five Atari games on a 10x10 grid of 0/1 object channels, at tens of thousands of steps per
second in pure Python. Each task is one game; the sequence of different games is the
setting of WMAR (Yang et al. 2024) and Continual-Dreamer (Kessler et al. 2022) on Atari,
small enough for 2 CPU cores.

**Observations: padded channels.** The games have 4 (Breakout), 6 (SpaceInvaders), 7
(Freeway), 4 (Asterix) and 10 (Seaquest) channels (:data:`GAME_CHANNELS`). Every task
declares the same ``Box(0, 1, (10, 10, C_max), uint8)``, ``C_max`` the most channels of the
chosen games: a game's own channels come first, in MinAtar's order, and the channels after
them are always 0 (:meth:`MinAtarLayout.padding`). Channel ``k`` therefore means different
objects in different games; only the padding is shared.

**Actions: the union of the minimal sets.** MinAtar numbers six actions, ``0`` no-op,
``1`` left, ``2`` up, ``3`` right, ``4`` down, ``5`` fire (:data:`MINATAR_ACTIONS`); each
game uses a subset, its minimal action set (:data:`MINIMAL_ACTIONS`). The common action
space is ``Discrete(len(U))``, ``U`` the sorted union of the chosen games' minimal sets:
common action ``i`` is MinAtar action ``U[i]``. A game receives ``U[i]`` when it is in its
minimal set and no-op (``0``) otherwise (:meth:`MinAtarLayout.action_map`). For the default
games, and for Breakout, SpaceInvaders and Freeway, ``U`` is all six actions.

**Episodes.** MinAtar's sticky actions (with probability ``sticky_action_prob`` the game
repeats the previous action instead; MinAtar's default 0.1) and difficulty ramping (its
default) are kept. Episodes end when the game does (Freeway always after 2500 frames) or
are truncated at ``max_episode_steps``, default 2500: Freeway's own length, so every game's
episode is bounded by the same limit. A reset with a seed reseeds the game (dynamics and
sticky actions share its generator) and clears the sticky previous action, so a seed
fixes the whole episode for a given action sequence.

**Scores.** A task's score is its return scaled linearly from ``[low, high]`` to
``[0, 1]`` and clipped (:class:`~l2rl.types.ReturnRange`), with per-game references
(:data:`REFERENCE_RETURNS`):

- ``low``: the mean return of uniformly random actions over MinAtar's six actions (the
  policy of MinAtar's ``examples/random_play.py``), measured here over 1000 episodes
  (reset seeds 0-999, actions from ``numpy.random.default_rng(seed)``), sticky actions
  0.1, difficulty ramping, 2500-step limit; standard errors 0.01 to 0.03 (0.07 for
  SpaceInvaders).
- ``high``: DQN's return after 5M frames in MinAtar's published learning curves (Young &
  Tian 2019, v2; the README's ``img/learning_curves.gif``: the moving average of returns
  over 100 episodes, mean of 30 runs, with sticky actions 0.1), read off the figure to the
  nearest unit. Those runs had no step limit besides Freeway's; a 2500-step limit can only
  lower a DQN-level agent's return in games where its episodes last longer.

A score of 1 means "as good as the paper's DQN after 5M frames"; a better agent (MinAtar's
actor-critic beats DQN on Breakout, Asterix and SpaceInvaders) is clipped at 1. Other
settings (no sticky actions, another step limit) need references of their own:
``return_low`` and ``return_high``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import TimeLimit
from minatar import Environment
from pydantic import Field, field_validator, model_validator

from l2rl.config import ConfigError, PluginConfig
from l2rl.scenario import TaskFamily
from l2rl.types import ReturnRange, TaskSpec

GAMES = ("breakout", "space_invaders", "freeway", "asterix", "seaquest")
"""MinAtar's games (its own names, also the task names), in the default training order."""

MINATAR_ACTIONS = ("noop", "left", "up", "right", "down", "fire")
"""MinAtar's action numbering: action ``i`` is ``MINATAR_ACTIONS[i]`` in every game."""

NOOP = 0
"""MinAtar's no-op; every game's minimal action set holds it."""

GAME_CHANNELS: dict[str, int] = {
    "breakout": 4,
    "space_invaders": 6,
    "freeway": 7,
    "asterix": 4,
    "seaquest": 10,
}
"""Observation channels of each game (MinAtar's ``state_shape()[2]``)."""

MINIMAL_ACTIONS: dict[str, tuple[int, ...]] = {
    "breakout": (0, 1, 3),
    "space_invaders": (0, 1, 3, 5),
    "freeway": (0, 2, 4),
    "asterix": (0, 1, 2, 3, 4),
    "seaquest": (0, 1, 2, 3, 4, 5),
}
"""Each game's minimal action set in MinAtar's numbering (``minimal_action_set()``)."""

GRID = 10
"""MinAtar's grid side: observations are ``GRID x GRID x channels``."""

MEASURED_STICKY_ACTION_PROB = 0.1
"""Sticky-action probability :data:`REFERENCE_RETURNS` hold for (MinAtar's default)."""

MEASURED_EPISODE_STEPS = 2500
"""Step limit :data:`REFERENCE_RETURNS` hold for (with difficulty ramping on)."""

REFERENCE_RETURNS: dict[str, tuple[float, float]] = {
    "breakout": (0.52, 10.0),
    "space_invaders": (2.88, 43.0),
    "freeway": (0.13, 50.0),
    "asterix": (0.46, 17.0),
    "seaquest": (0.11, 20.0),
}
"""Game -> (random-policy mean return, DQN's return after 5M frames); see the module
docstring for how each was obtained."""


@dataclass(frozen=True)
class MinAtarLayout:
    """How the chosen games share one observation space and one action space.

    Attributes:
        games: the chosen games.
        channels: ``C_max``, the most channels among them; every observation has this many.
        actions: ``U``, the sorted union of their minimal action sets: common action ``i``
            is MinAtar action ``actions[i]``.

    >>> layout = MinAtarLayout.of(["breakout", "freeway"])
    >>> layout.channels, layout.actions
    (7, (0, 1, 2, 3, 4))
    >>> layout.action_map("breakout")  # up and down are not Breakout's: no-op
    (0, 1, 0, 3, 0)
    >>> layout.padding("breakout")  # channels 4, 5 and 6 are always 0
    (4, 7)
    """

    games: tuple[str, ...]
    channels: int
    actions: tuple[int, ...]

    @classmethod
    def of(cls, games: Sequence[str]) -> MinAtarLayout:
        """The layout of ``games``.

        Raises:
            ConfigError: no games, or a name that is not one of :data:`GAMES`.
        """
        unknown = [g for g in games if g not in GAMES]
        if unknown or not games:
            raise ConfigError(f"unknown MinAtar game(s) {unknown or games}; valid: {GAMES}")
        actions = sorted({a for game in games for a in MINIMAL_ACTIONS[game]})
        return cls(tuple(games), max(GAME_CHANNELS[g] for g in games), tuple(actions))

    def observation_space(self) -> gym.spaces.Box:
        """``Box(0, 1, (10, 10, channels), uint8)``, declared by every task."""
        return gym.spaces.Box(0, 1, (GRID, GRID, self.channels), np.uint8)

    def action_space(self) -> gym.spaces.Discrete:
        """``Discrete(len(actions))``, declared by every task."""
        return gym.spaces.Discrete(len(self.actions))

    def action_map(self, game: str) -> tuple[int, ...]:
        """The MinAtar action ``game`` receives for each common action: ``actions[i]`` if
        it is in the game's minimal set, else no-op."""
        minimal = MINIMAL_ACTIONS[game]
        return tuple(a if a in minimal else NOOP for a in self.actions)

    def padding(self, game: str) -> tuple[int, int]:
        """The ``[start, stop)`` range of ``game``'s zero channels (empty for the widest)."""
        return GAME_CHANNELS[game], self.channels


class MinAtarEnv(gym.Env[np.ndarray, np.int64]):
    """One MinAtar game behind the common spaces of a :class:`MinAtarLayout`.

    Observations are the game's 0/1 channels followed by zero channels, as ``uint8``;
    actions are common actions, mapped by :meth:`MinAtarLayout.action_map`. No step limit
    of its own: :func:`make_minatar_env` adds it.

    Args:
        game: one of the layout's games.
        layout: the scenario's layout.
        sticky_action_prob: probability that the game repeats the previous action.
        difficulty_ramping: let the game speed up over an episode (MinAtar's default).
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - gymnasium's attribute

    def __init__(
        self,
        game: str,
        layout: MinAtarLayout,
        sticky_action_prob: float = MEASURED_STICKY_ACTION_PROB,
        difficulty_ramping: bool = True,
    ) -> None:
        if game not in layout.games:
            raise ConfigError(f"{game!r} is not one of the layout's games {layout.games}")
        self.game = game
        self.layout = layout
        self._game = Environment(game, sticky_action_prob, difficulty_ramping)
        self._map = np.asarray(layout.action_map(game), dtype=np.int64)
        self._channels = GAME_CHANNELS[game]
        self.observation_space = layout.observation_space()
        self.action_space = layout.action_space()

    def _obs(self) -> np.ndarray:
        obs = np.zeros((GRID, GRID, self.layout.channels), dtype=np.uint8)
        obs[..., : self._channels] = self._game.state()
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a game; ``seed`` reseeds it (dynamics and sticky actions)."""
        super().reset(seed=seed)
        if seed is not None:
            self._game.seed(seed)
        self._game.reset()
        # MinAtar keeps the sticky previous action across resets; clear it so that an
        # episode depends on its seed and actions only.
        self._game.last_action = NOOP
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Play the mapped action for one frame."""
        reward, terminal = self._game.act(int(self._map[int(action)]))
        return self._obs(), float(reward), bool(terminal), False, {}


def make_minatar_env(
    game: str,
    games: Sequence[str],
    sticky_action_prob: float = MEASURED_STICKY_ACTION_PROB,
    max_episode_steps: int = MEASURED_EPISODE_STEPS,
    difficulty_ramping: bool = True,
) -> gym.Env[np.ndarray, np.int64]:
    """A fresh env of ``game`` in the common spaces of ``games``, with a step limit."""
    env = MinAtarEnv(game, MinAtarLayout.of(games), sticky_action_prob, difficulty_ramping)
    return TimeLimit(env, max_episode_steps)


class MinAtarSequenceConfig(PluginConfig):
    """Options of ``minatar-sequence``."""

    games: list[str] = Field(
        default_factory=lambda: list(GAMES),
        min_length=1,
        description=f"MinAtar games in training order (task names = games); any of {GAMES}.",
    )
    sticky_action_prob: float = Field(
        default=MEASURED_STICKY_ACTION_PROB,
        ge=0.0,
        lt=1.0,
        description="Probability that a game repeats the previous action (MinAtar: 0.1).",
    )
    max_episode_steps: int = Field(
        default=MEASURED_EPISODE_STEPS,
        gt=0,
        description="Episode step limit (default: Freeway's own 2500 frames).",
    )
    difficulty_ramping: bool = Field(
        default=True, description="Games speed up over an episode (MinAtar's default)."
    )
    return_low: list[float] | None = Field(
        default=None,
        description=(
            "Return scored 0, one per game; give it with `return_high`. Default: the "
            "measured random-policy returns, which hold for the default sticky_action_prob, "
            "max_episode_steps and difficulty_ramping only."
        ),
    )
    return_high: list[float] | None = Field(
        default=None,
        description="Return scored 1, one per game; give it with `return_low`. Default: "
        "DQN's return after 5M frames (MinAtar paper).",
    )

    @field_validator("games")
    @classmethod
    def _known_games(cls, games: list[str]) -> list[str]:
        unknown = [g for g in games if g not in GAMES]
        if unknown:
            raise ValueError(f"unknown MinAtar game(s) {unknown}; valid: {', '.join(GAMES)}")
        if len(set(games)) != len(games):
            raise ValueError(f"games must be distinct, got {games}")
        return games

    @model_validator(mode="after")
    def _bounds_known(self) -> MinAtarSequenceConfig:
        self.bounds()  # fail at validation, not when the scenario is built
        return self

    def bounds(self) -> list[tuple[float, float]]:
        """The (low, high) score bounds of each game, given or the references."""
        if (self.return_low is None) != (self.return_high is None):
            raise ValueError("give `return_low` and `return_high` together")
        if self.return_low is not None and self.return_high is not None:
            if not len(self.return_low) == len(self.return_high) == len(self.games):
                raise ValueError(
                    f"return_low and return_high need one value per game ({len(self.games)}), "
                    f"got {len(self.return_low)} and {len(self.return_high)}"
                )
            pairs = list(zip(self.return_low, self.return_high, strict=True))
            if any(low >= high for low, high in pairs):
                raise ValueError(f"each return_low must be below its return_high, got {pairs}")
            return pairs
        measured = (
            self.sticky_action_prob == MEASURED_STICKY_ACTION_PROB
            and self.max_episode_steps == MEASURED_EPISODE_STEPS
            and self.difficulty_ramping
        )
        if not measured:
            raise ValueError(
                f"the reference returns hold for sticky_action_prob="
                f"{MEASURED_STICKY_ACTION_PROB}, max_episode_steps={MEASURED_EPISODE_STEPS} "
                "and difficulty_ramping=true; give return_low and return_high for other "
                "settings"
            )
        return [REFERENCE_RETURNS[game] for game in self.games]


def _build(config: MinAtarSequenceConfig) -> list[TaskSpec]:
    layout = MinAtarLayout.of(config.games)
    return [
        TaskSpec(
            name=game,
            make_env=partial(
                make_minatar_env,
                game,
                tuple(config.games),
                config.sticky_action_prob,
                config.max_episode_steps,
                config.difficulty_ramping,
            ),
            normalizer=ReturnRange(low, high),
            params={
                "game": game,
                "channels": GAME_CHANNELS[game],
                "padded_channels": layout.channels,
                "zero_channels": list(layout.padding(game)),
                "actions": list(layout.actions),
                "action_map": list(layout.action_map(game)),
                "sticky_action_prob": config.sticky_action_prob,
                "max_episode_steps": config.max_episode_steps,
                "difficulty_ramping": config.difficulty_ramping,
            },
        )
        for game, (low, high) in zip(config.games, config.bounds(), strict=True)
    ]


minatar_sequence: TaskFamily[MinAtarSequenceConfig] = TaskFamily(
    MinAtarSequenceConfig,
    _build,
    "MinAtar games in sequence (Breakout, SpaceInvaders, Freeway, Asterix, Seaquest): 10x10 "
    "0/1 frames zero-padded to the most channels, actions the union of the minimal sets.",
)
"""The ``minatar-sequence`` task family."""
