"""Built-in base agents (registered in the ``l2rl.agents`` entry-point group).

- ``dqn``: :class:`l2rl.agents.dqn.DQNAgent`, double DQN for discrete actions, optionally
  one head per task.
- ``ppo``: :class:`l2rl.agents.ppo.PPOAgent`, clipped PPO with GAE for discrete and
  continuous actions, over the run's parallel training envs.
- ``sac``: :class:`l2rl.agents.sac.SACAgent`, soft actor-critic with twin critics and
  automatic temperature for continuous actions.
"""
