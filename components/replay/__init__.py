"""Replay (role ``replay``): storage + writer + sampler, each a small plain object.

:mod:`.storage` keeps frames once, in chunks of consecutive steps; :mod:`.writers` decide
which complete chunks are kept; :mod:`.samplers` decide which stored rows a minibatch
reads; :mod:`.buffer` ties them together without the framework, and each component is a
thin adapter choosing a writer and a sampler. A new buffer is a new writer or sampler, not
a subclass of another buffer.

Built-in (entry points in ``pyproject.toml``): ``fifo`` (:class:`.fifo.FIFOReplay`),
``reservoir`` (:class:`.reservoir.ReservoirReplay`), ``task-balanced``
(:class:`.task_balanced.TaskBalancedReplay`), ``wmar`` (:class:`.wmar.WMARReplay`) and
``continual-dreamer`` (:class:`.continual_dreamer.ContinualDreamerReplay`). Every one
offers ``sample(batch_size) -> TransitionBatch`` and ``sample_sequences(batch_size,
length) -> SequenceBatch`` from the same storage.
"""
