"""Assignment with rollback, agreement between the replicas of a distribution strategy, and
how far a model has trained."""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np

__all__ = ["Transaction", "agree", "steps_taken"]


def steps_taken(model) -> int:
    """The optimizer steps ``model`` has taken (0 without an optimizer): trained, or resumed."""
    iterations = getattr(getattr(model, "optimizer", None), "iterations", None)
    return 0 if iterations is None else int(keras.ops.convert_to_numpy(iterations))


class Transaction:
    """Snapshot ``variables`` (and ``(object, attribute)`` pairs; ``values``: a snapshot taken
    already); restore them all if the block raises, so a step succeeds or changes nothing."""

    def __init__(self, variables: Sequence[Any], attributes: Sequence[tuple] = (),
                 values: Sequence[Any] = None):
        self.variables = list(variables)
        self.attributes = list(attributes)
        self.values = None if values is None else list(values)

    def __enter__(self) -> Transaction:
        if self.values is None:  # copies: a later assign does not change them
            self.values = [keras.ops.copy(v) for v in self.variables]
        self.saved = [(obj, name, getattr(obj, name)) for obj, name in self.attributes]
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            for var, value in zip(self.variables, self.values):
                var.assign(value)
            for obj, name, value in self.saved:
                setattr(obj, name, value)
        return False


def _strategy(variables: Sequence[Any] = ()):
    """The strategy in scope, else the one owning ``variables``; None unless several replicas."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    strategy = tf.distribute.get_strategy() if tf.distribute.has_strategy() else None
    if strategy is None:
        for var in variables:
            strategy = getattr(getattr(var, "value", None), "distribute_strategy", None)
            if strategy is not None:
                break
    return strategy if strategy is not None and strategy.num_replicas_in_sync > 1 else None


def agree(values: Sequence[float], failed: bool = False, variables: Sequence[Any] = ()) -> tuple:
    """``(values of replica 0, whether any replica failed)``, the same on every replica: under a
    ``tf.distribute`` strategy of several replicas, or a ``keras.distribution`` over several JAX
    processes. A collective: every worker calls it at the same point. Else the arguments.
    """
    values = np.asarray(values, np.float64).reshape(-1)
    if keras.backend.backend() == "jax":
        return _agree_jax_processes(values, failed)
    strategy = _strategy(variables)
    if strategy is None:
        return values, failed
    import tensorflow as tf

    local = np.concatenate([[float(failed)], values])

    def replica_fn():
        ctx = tf.distribute.get_replica_context()
        first = tf.cast(tf.equal(ctx.replica_id_in_sync_group, 0), tf.float64)
        mask = tf.concat([tf.ones([1], tf.float64), tf.fill([len(values)], first)], 0)
        return tf.constant(local, tf.float64) * mask

    with strategy.scope():
        if not tf.distribute.in_cross_replica_context():
            raise RuntimeError("Model-level steps run in cross-replica context: call them "
                               "outside `strategy.run` (inside `strategy.scope()` is fine).")
        per_replica = strategy.run(replica_fn)
        summed = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
    summed = np.asarray(summed.numpy(), np.float64)
    return summed[1:], bool(summed[0] > 0)


def _agree_jax_processes(values: np.ndarray, failed: bool) -> tuple:
    """:func:`agree` on JAX: a no-op unless a ``keras.distribution`` spans several processes."""
    import jax

    if keras.distribution.distribution() is None or jax.process_count() <= 1:
        return values, failed
    from jax.experimental import multihost_utils

    # float64 needs jax_enable_x64: float32 pairs (hi + lo) carry the values instead.
    hi = values.astype(np.float32)
    lo = (values - hi.astype(np.float64)).astype(np.float32)
    shared = multihost_utils.broadcast_one_to_all(np.concatenate([hi, lo]))
    flags = multihost_utils.process_allgather(np.array([float(failed)], np.float32))
    return np.asarray(shared, np.float64).reshape(2, -1).sum(0), bool(np.asarray(flags).max() > 0)

