"""An example l2rl plugin: the ``episode-stats`` component."""

from l2rl_example_plugin.episode_stats import EpisodeStats, EpisodeTally

__all__ = ["EpisodeStats", "EpisodeTally"]
