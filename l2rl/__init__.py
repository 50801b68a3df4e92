"""l2rl: continual (lifelong) reinforcement learning.

Components plug in around a base agent through lifecycle hooks (:mod:`l2rl.core`,
:mod:`l2rl.hooks`); a runner (:mod:`l2rl.runner`) drives scenarios with continual
evaluation; :mod:`l2rl.metrics` turns evaluations into forgetting and transfer.
"""

__version__ = "0.1.0"
