"""Consolidators (role ``consolidator``): they offer a learner batches to train on in the
sleep phase after a task closes (:meth:`l2rl.core.Component.sleep_batches`)."""
