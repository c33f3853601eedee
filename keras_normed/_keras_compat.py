"""The one reader of Keras internals, which Keras 3 has no public API for; each use is pinned by
tests/test_keras_compat.py."""

from __future__ import annotations

import contextlib
import inspect
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import keras

# The dtype of the int seeds the backend's random ops take (Keras checks only when drawing).
from keras.src.backend import random_seed_dtype  # noqa: F401

# Keras 3.15 exports RandomInitializer (the base of its seeded initializers) only from keras.src.
from keras.src.initializers.random_initializers import RandomInitializer  # noqa: F401
from keras.src.layers.convolutional.base_conv import BaseConv


def all_layers(model) -> List[Any]:
    """``model`` and every layer nested in it (models, wrappers, attributes), each once."""
    return list(model._flatten_layers(include_self=True, recursive=True))


def build_input_shape(layer) -> Optional[Tuple[Optional[int], ...]]:
    """The (first) input shape Keras recorded when it built ``layer``, or ``None``."""
    shapes = getattr(layer, "_build_shapes_dict", None)
    shape = next(iter(shapes.values())) if shapes else None
    return None if shape is None else tuple(shape)


def is_graph_model(model) -> bool:
    """Whether ``model`` runs a layer graph (Sequential or functional), not its own ``call``."""
    return isinstance(model, keras.Sequential) or hasattr(model, "_run_through_graph")


def call_takes_training(layer) -> bool:
    """Whether ``layer.call`` accepts a ``training`` argument (subclassed models may not)."""
    return bool(layer._call_has_training_arg)


def is_keras_tensor(value) -> bool:
    return isinstance(value, keras.KerasTensor)


def producer(tensor) -> Optional[Tuple[Any, Any]]:
    """``(operation, node)`` that produced a symbolic tensor; ``None`` for an ``Input``."""
    history = getattr(tensor, "_keras_history", None)
    if history is None or history.operation is None:
        return None
    op = history.operation
    node = op._inbound_nodes[history.node_index]
    return None if getattr(node, "is_input", False) else (op, node)


def node_inputs(node) -> List[Any]:
    """The symbolic tensors a node was called on, flattened in call order."""
    return list(node.input_tensors)


def node_arguments(node) -> Tuple[tuple, dict]:
    """``(args, kwargs)`` a node's operation was called with (symbolic tensors and the rest)."""
    return tuple(node.arguments.args), dict(node.arguments.kwargs)


def node_outputs(node) -> List[Any]:
    return list(node.output_tensors)


def consumers(layer) -> List[Any]:
    """The operations that take ``layer``'s outputs, over every graph it is in."""
    return [node.operation for node in getattr(layer, "_outbound_nodes", [])]


def layer_calls(layer) -> int:
    """How many symbolic calls (graph nodes) ``layer`` has, over every graph it is in."""
    return len(getattr(layer, "_inbound_nodes", ()))


@contextlib.contextmanager
def graph_side_effects_undone(layers: Sequence[Any]) -> Iterator[None]:
    """Undo the graph nodes a symbolic trace (for analysis) adds to ``layers``."""
    saved = [(layer, list(layer._inbound_nodes), list(layer._outbound_nodes))
             for layer in layers]
    try:
        yield
    finally:
        for layer, inbound, outbound in saved:
            layer._inbound_nodes[:], layer._outbound_nodes[:] = inbound, outbound


@contextlib.contextmanager
def captured_calls(layers: Sequence[Any]) -> Iterator[dict]:
    """Record ``(args, kwargs, output)`` of every eager call of ``layers`` in the block by
    ``id(layer)``: what a layer gets inside any model (nested, subclassed)."""
    record: dict = {id(layer): [] for layer in layers}

    def spy(original, calls):
        def call(*args, **kwargs):
            out = original(*args, **kwargs)
            calls.append((args, kwargs, out))
            return out
        return call

    patched = [(layer, "call" in layer.__dict__, layer.call) for layer in layers]
    for layer, _, original in patched:
        layer.call = spy(original, record[id(layer)])
    try:
        yield record
    finally:
        for layer, had_own, original in patched:
            if had_own:
                layer.call = original
            else:
                del layer.call


def is_conv(layer) -> bool:
    """A Keras ``Conv1D/2D/3D`` (not transposed): the kernel's last axis is the filters."""
    return isinstance(layer, BaseConv)


def building_layer(max_depth: int = 48):
    """``(layer, weight name)`` of the ``Layer.add_weight`` running on this thread (Keras calls
    ``initializer(shape, dtype)``) or, for a deferred variable (a subclassed model built by its
    first call), of the layer that owns it, read from the call stack; ``(None, name)`` without
    an owner; ``None`` outside any variable's initialization."""
    frame = inspect.currentframe()
    variable = None
    try:
        for _ in range(max_depth):
            frame = frame.f_back if frame is not None else None
            if frame is None:
                break
            owner = frame.f_locals.get("self")
            if variable is None and isinstance(owner, keras.Variable):
                variable = owner
            elif frame.f_code.co_name == "add_weight" and isinstance(owner, keras.layers.Layer):
                return owner, None if variable is None else variable.name
            elif variable is not None and isinstance(owner, keras.layers.Layer):
                # Deferred: the owner is inside the layer whose call initializes it now.
                for layer in all_layers(owner):
                    if any(v is variable for v in layer._trainable_variables
                           + layer._non_trainable_variables):
                        return layer, variable.name
        return None if variable is None else (None, variable.name)
    finally:
        del frame


def in_xla_context() -> bool:
    """Whether TensorFlow ops being built now are inside ``tf.function(jit_compile=True)``."""
    try:
        from tensorflow.python.framework import ops as tf_ops
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # pragma: no cover - TensorFlow reorganised its internals
        return False
    return bool(control_flow_util.GraphOrParentsInXlaContext(tf_ops.get_default_graph()))


def assert_size_at_least(tensor, axis: int, minimum: int, message: str):
    """``tensor``, checked when the graph runs to be at least ``minimum`` long on ``axis``:
    TensorFlow traces unknown sizes as None (other backends trace concrete sizes, which the
    caller checks in Python)."""
    if keras.backend.backend() != "tensorflow" or tensor.shape[axis] is not None:
        return tensor
    import tensorflow as tf

    check = tf.debugging.assert_greater_equal(tf.shape(tensor)[axis], minimum, message=message)
    with tf.control_dependencies([check]):
        return tf.identity(tensor)
