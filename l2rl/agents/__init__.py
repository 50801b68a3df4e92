"""Built-in base agents (registered in the ``l2rl.agents`` entry-point group).

- ``dqn``: :class:`l2rl.agents.dqn.DQNAgent`, double DQN for discrete actions, optionally
  one head per task.
"""
