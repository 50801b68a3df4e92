"""Replay (role ``replay``): storage + writer + sampler, each a small plain object.

A new buffer is a new writer (which slot a transition goes to) or sampler (which slots a
batch reads) combined with :class:`.storage.TransitionStorage`, not a subclass of another
buffer. Built-in: ``fifo`` (:class:`.fifo.FIFOReplay`).
"""
