"""Continual-learning regularizers (role ``regularizer``): a plain object per method + adapter.

Each module holds the method's math as a plain object that works on any ``torch.nn.Module``
(testable without the framework) and a thin :class:`~l2rl.core.Component` adapter:

- ``l2`` (:mod:`.l2`): L2 to the previous task's weights.
- ``ewc`` (:mod:`.ewc`): elastic weight consolidation, one Fisher term per task.
- ``online-ewc`` (:mod:`.online_ewc`): one decayed running Fisher.
- ``si`` (:mod:`.si`): synaptic intelligence, path-integral importances.
- ``agem`` (:mod:`.agem`): gradient projection against an episodic memory.
- ``packnet`` (:mod:`.packnet`): pruning, freezing and per-task weight views.
- ``behavior-cloning`` (:mod:`.behavior_cloning`): CLEAR-style cloning of old policies.

They protect ``agent.networks()``. EWC and behaviour cloning also need an agent that
exposes its policy (:class:`~l2rl.core.PolicyAgent`). Shared pieces: :mod:`.params`
(parameters by name, weighted distances, the quadratic penalties' base
:class:`~.params.QuadraticPenalty`), :mod:`.memory` (reservoir, episodic memory),
:mod:`.adapters` (framework-facing checks, and the adapters' skeletons: a penalty as a
loss term, a sample of each window for use at its end).
"""
