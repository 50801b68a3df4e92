"""Built-in scenarios: task families registered in the ``l2rl.scenarios`` entry-point group.

- ``cartpole-variants`` (:mod:`.cartpole_variants`): CartPole tasks that conflict (swapped
  actions, permuted or negated observations, a longer pole), so plain fine-tuning forgets.
- ``minigrid-sequence`` (:mod:`.minigrid_sequence`): a short MiniGrid sequence with flat
  symbolic observations, scored by success rate.
- ``gym-sequence`` (:mod:`.from_envs`): any list of gymnasium env ids; the same module offers
  :func:`~.from_envs.tasks_from_envs` and :func:`~.from_envs.scenario_from_envs` for Python use.

They register through the same entry-point group a third-party package would use.
"""
