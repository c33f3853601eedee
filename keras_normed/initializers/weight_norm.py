"""Robust initialization of weight-normalized networks (Arpit et al. 2019; docs/weight_norm.md)."""

from __future__ import annotations

import math
import random
from typing import Iterable, List, Optional

import keras
import numpy as np

from keras_normed import _keras_compat as compat
from keras_normed import engine, structure

__all__ = ["arpit_init", "assign_orthogonal", "host_seed", "layer_seeds",
           "residual_branch_ends", "weight_norm_layers"]


def host_seed(seed) -> int:
    """``seed`` as an int >= 0 for NumPy: given, drawn from a SeedGenerator, or for ``None`` from
    Python's ``random``, which ``keras.utils.set_random_seed`` seeds (as Keras's own unseeded
    initializers draw theirs): reproducible under a global seed."""
    if seed is None:
        return random.randint(1, 2**31 - 2)
    if isinstance(seed, keras.random.SeedGenerator):
        seed = int(keras.ops.convert_to_numpy(keras.random.randint((), 0, 2**31 - 1, seed=seed)))
    integer = isinstance(seed, (int, np.integer)) and not isinstance(seed, bool)
    if integer and seed >= 0:
        return int(seed)
    raise (ValueError if integer else TypeError)(
        f"`seed` must be None, an int >= 0 or a keras.random.SeedGenerator, got {seed!r} "
        f"({type(seed).__name__}). Pass e.g. seed=0.")


def layer_seeds(seed, n: int) -> List[int]:
    """``n`` independent int seeds from ``seed`` by ``numpy.random.SeedSequence`` (random for
    ``None``): seeds ``s`` and ``s + 1`` share no layer seed."""
    states = np.random.SeedSequence(host_seed(seed)).generate_state(max(n, 1))
    return [int(s % (2**31 - 1)) + 1 for s in states[:n]]


def assign_orthogonal(variable, seed: int) -> None:
    """Set ``variable`` to ``keras.initializers.Orthogonal(seed=seed)`` on its 2-D reshape."""
    shape = tuple(variable.shape)
    ortho = keras.initializers.Orthogonal(seed=seed)((int(np.prod(shape[:-1])), shape[-1]),
                                                     dtype="float32")
    dtype = keras.ops.convert_to_numpy(variable).dtype
    variable.assign(np.reshape(keras.ops.convert_to_numpy(ortho), shape).astype(dtype))


def _is_wn(layer) -> bool:
    return hasattr(layer, "normalized_kernel") and hasattr(layer, "g")


def weight_norm_layers(model) -> List[keras.layers.Layer]:
    """The model's weight-normalized layers in forward order (nested models included)."""
    found = [layer for layer in compat.all_layers(model) if _is_wn(layer)]
    if not found:
        return []
    order = engine.scale_constraints(model, [layer.g for layer in found], training=False).order
    return [found[i] for i in order]


def residual_branch_ends(model) -> List[str]:
    """Names of the weight-normalized layers whose output goes only into an ``Add`` layer: the
    ends of residual branches."""
    return [layer.name for layer in compat.all_layers(model)
            if _is_wn(layer) and isinstance(_only_consumer(layer), keras.layers.Add)]


def _only_consumer(layer):
    consumers = compat.consumers(layer)
    return consumers[0] if len(consumers) == 1 else None


def _relu_follows(layer) -> bool:
    nxt = _only_consumer(layer)
    relu = keras.activations.relu
    return (getattr(layer.layer, "activation", None) is relu or isinstance(nxt, keras.layers.ReLU)
            or isinstance(nxt, keras.layers.Activation) and nxt.activation is relu)


def arpit_init(model: keras.Model, residual_blocks: Optional[int] = None,
               branch_ends: Optional[Iterable[str]] = None, seed: Optional[int] = None):
    """Initialize every WeightNormalization layer of ``model`` as Arpit et al. (2019), in place.

    ``v`` orthogonal, bias zero, ``g = gain * sqrt(fan_in / fan_out)``, ``gain = sqrt(2)`` before a
    ReLU and 1 otherwise, divided by ``sqrt(residual_blocks)`` on each residual branch's end.

    Args:
        model: a built model containing :class:`~keras_normed.layers.WeightNormalization`.
        residual_blocks: the number of residual blocks; ``None``: the branch ends found.
        branch_ends: names of the layers ending a residual branch; ``None``: found.
        seed: seed of the orthogonal directions (one derived per layer).

    Returns:
        A :class:`~keras_normed.engine.Report` (method ``"arpit"``): ``g`` and ``gain`` per
        layer, ``branch_ends`` and ``residual_blocks`` in the summary.

    Example:

    >>> from keras_normed.layers import WeightNormalization
    >>> model = keras.Sequential([
    ...     keras.Input((8,)), WeightNormalization(keras.layers.Dense(16, activation="relu")),
    ...     WeightNormalization(keras.layers.Dense(4))])
    >>> report = arpit_init(model, seed=0)  # plain or residual weight-normalized network

    Reference: D. Arpit, V. Campos, Y. Bengio, "How to Initialize your Network? Robust
    Initialization for WeightNorm & ResNets", NeurIPS 2019.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model, got {type(model).__name__}.")
    if not model.built:
        raise ValueError("`model` is not built: call it on data or build it first.")
    if isinstance(branch_ends, (str, bytes)):
        raise TypeError(f"`branch_ends` must be a list of layer names, got the string "
                        f"{branch_ends!r}; pass [{branch_ends!r}].")
    layers = weight_norm_layers(model)
    if not layers:
        raise ValueError("`model` has no WeightNormalization layer; wrap its Dense/Conv "
                         "layers with keras_normed.layers.WeightNormalization.")
    ends = list(branch_ends) if branch_ends is not None else residual_branch_ends(model)
    names = {layer.name for layer in layers}
    unknown = [name for name in ends if name not in names]
    if unknown:
        raise ValueError(f"`branch_ends` names no WeightNormalization layer: {unknown}.")
    blocks = len(ends) if residual_blocks is None else int(residual_blocks)
    if ends and blocks < 1:
        raise ValueError(f"`residual_blocks` must be >= 1 for a residual net, got {blocks}.")
    rows = []
    with engine.Transaction([w for layer in layers for w in layer.weights]):
        for layer, layer_seed in zip(layers, layer_seeds(seed, len(layers))):
            assign_orthogonal(layer.layer.kernel, layer_seed)
            fan_in, fan_out = structure.shape_fans(layer.layer.kernel.shape)
            gain2 = 2.0 if _relu_follows(layer) else 1.0
            g = math.sqrt(gain2 * fan_in / fan_out)
            if layer.name in ends:
                g /= math.sqrt(blocks)
            layer.g.assign(np.full(layer.g.shape, g, dtype=layer.g.dtype))
            if layer.layer.use_bias:
                layer.layer.bias.assign(np.zeros(layer.layer.bias.shape, layer.layer.bias.dtype))
            rows.append(engine.Row(layer.g.path, type(layer.layer).__name__, 1, int(fan_in),
                                   values={"g": g, "gain": math.sqrt(gain2),
                                           "branch_end": layer.name in ends}))
    return engine.Report("arpit", True, rows=rows,
                         summary={"branch_ends": ends, "residual_blocks": blocks})
