"""The one reader of Keras internals.

Keras 3 has no public API for a model's graph (which layer produced which tensor, how often a
layer is called), for the list of nested sublayers of a subclassed model, or for whether a
layer's ``call`` takes ``training``. Every such read goes through this module, and each is
pinned by a test (tests/test_keras_compat.py), so a Keras release that moves one fails there,
not silently in the model-level code.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import keras

# Keras 3.15 exports RandomInitializer (the base of its seeded initializers) only from keras.src.
from keras.src.initializers.random_initializers import RandomInitializer

__all__ = ["RandomInitializer", "random_seed_dtype", "in_xla_context", "all_layers",
           "build_input_shape", "is_graph_model",
           "call_takes_training", "producer", "node_inputs", "node_arguments", "node_outputs",
           "consumers", "layer_calls", "graph_side_effects_undone", "captured_calls",
           "is_keras_tensor", "is_conv"]


def all_layers(model) -> List[Any]:
    """``model`` and every layer nested in it (models, wrappers, attributes), each once."""
    if hasattr(model, "_flatten_layers"):
        return list(model._flatten_layers(include_self=True, recursive=True))
    return [model]


def build_input_shape(layer) -> Optional[Tuple[Optional[int], ...]]:
    """The (first) input shape Keras recorded when it built ``layer``, or ``None``."""
    shapes = getattr(layer, "_build_shapes_dict", None)
    if shapes:
        shape = next(iter(shapes.values()))
        if shape is not None:
            return tuple(shape)
    return None


def is_graph_model(model) -> bool:
    """Whether ``model`` runs a layer graph: Sequential or functional (a Functional model,
    or a subclass built with ``keras.Model(inputs, outputs)``), not a subclassed ``call``."""
    return isinstance(model, keras.Sequential) or hasattr(model, "_run_through_graph")


def call_takes_training(layer) -> bool:
    """Whether ``layer.call`` accepts a ``training`` argument (subclassed models may not)."""
    flag = getattr(layer, "_call_has_training_arg", None)
    if flag is not None:
        return bool(flag)
    try:
        params = inspect.signature(layer.call).parameters
    except (TypeError, ValueError):
        return False
    return "training" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def is_keras_tensor(value) -> bool:
    return isinstance(value, keras.KerasTensor)


def producer(tensor) -> Optional[Tuple[Any, Any]]:
    """``(operation, node)`` that produced a symbolic tensor; ``None`` for an ``Input``."""
    history = getattr(tensor, "_keras_history", None)
    if history is None or history.operation is None:
        return None
    op = history.operation
    node = op._inbound_nodes[history.node_index]
    if getattr(node, "is_input", False):
        return None
    return op, node


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
    """Undo the graph nodes a symbolic trace adds to ``layers`` (calling a layer on a
    ``KerasTensor`` appends to its node lists; a trace for analysis must leave no trace)."""
    saved = [(layer, list(getattr(layer, "_inbound_nodes", [])),
              list(getattr(layer, "_outbound_nodes", []))) for layer in layers]
    try:
        yield
    finally:
        for layer, inbound, outbound in saved:
            if hasattr(layer, "_inbound_nodes"):
                layer._inbound_nodes[:] = inbound
            if hasattr(layer, "_outbound_nodes"):
                layer._outbound_nodes[:] = outbound


@contextlib.contextmanager
def captured_calls(layers: Sequence[Any]) -> Iterator[dict]:
    """Record ``(args, kwargs, output)`` of every eager call of ``layers`` made in the block,
    by ``id(layer)``: the inputs a layer really gets inside any model (nested, subclassed),
    where a symbolic sub-model could not reach it."""
    record: dict = {id(layer): [] for layer in layers}
    patched = []
    for layer in layers:
        patched.append((layer, "call" in layer.__dict__, layer.call))
        layer.call = _spy(layer.call, record[id(layer)])
    try:
        yield record
    finally:
        for layer, had_own, original in patched:
            if had_own:
                layer.call = original
            else:
                del layer.call


def _spy(original, calls: list):
    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        calls.append((args, kwargs, out))
        return out

    return spy


def is_conv(layer) -> bool:
    """A Keras ``Conv1D/2D/3D`` (not transposed): the kernel's last axis is the filters."""
    from keras.src.layers.convolutional.base_conv import BaseConv

    return isinstance(layer, BaseConv)


def random_seed_dtype() -> str:
    """The dtype of the int seeds the backend's random ops take (Keras checks only when
    drawing)."""
    try:
        from keras.src.backend import random_seed_dtype as dtype
    except ImportError:  # pragma: no cover - other Keras layouts
        return "int64"
    return dtype()


def in_xla_context() -> bool:
    """Whether TensorFlow ops being built now are inside ``tf.function(jit_compile=True)``.
    Reads TensorFlow's XLA context through its internal ``control_flow_util``; if that moves,
    answers False."""
    try:
        from tensorflow.python.framework import ops as tf_ops
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # pragma: no cover - TensorFlow reorganised its internals
        return False
    return bool(control_flow_util.GraphOrParentsInXlaContext(tf_ops.get_default_graph()))
