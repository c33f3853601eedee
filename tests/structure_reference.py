"""Brute-force reference for :mod:`keras_normed.structure`: build ``T`` by probing the layer.

``T`` maps one flattened input sample to one flattened output sample (rows are outputs). It is
found by feeding the layer every basis input with a random, zero-free kernel; the entries each
kernel parameter fills are found by setting the kernel to each basis vector ``e_k`` in turn
(``T`` is linear in the kernel, so ``T(e_k)`` holds exactly the entries parameter ``k`` fills).
Nothing here reads :mod:`keras_normed.structure`: it only runs the layer.

Use small layers (a few hundred inputs and parameters): the cost is one forward pass of a
batch of ``n_inputs`` basis inputs per kernel parameter. Layers in ``float64`` give exact
zeros; FFT-based layers leave rounding noise, which ``tol`` (relative to the largest entry)
absorbs.

Example::

    layer = keras.layers.Conv2D(3, 3, padding="same", dtype="float64")
    brute_force_structure(layer, (None, 6, 6, 2))   # -> (fan_in, fan_out, sharing, uniform)
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import keras
import numpy as np

__all__ = ["brute_force_structure", "brute_force_matrix"]

Result = Tuple[int, int, float, bool]
_SEPARABLE = (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)


def _default_tol(dtype) -> float:
    return 1e-9 if np.dtype(dtype) == np.float64 else 1e-4


def _find_variable(layer, weight: str):
    found = [v for v in layer.weights if v.name == weight or v.path.endswith("/" + weight)]
    if len(found) != 1:
        raise ValueError(f"Layer {layer.name!r} has {len(found)} weights named {weight!r}; "
                         f"weights: {[v.path for v in layer.weights]}.")
    return found[0]


def _ensure_built(layer, sample_shape) -> None:
    if not layer.built:
        layer.build((None,) + tuple(sample_shape))


class _Linearized:
    """Context: the layer's activation set to linear and its weights restored on exit."""

    def __init__(self, layer):
        self.layer = layer

    def __enter__(self):
        self.saved = [np.array(v.numpy()) for v in self.layer.weights]
        self.activation = getattr(self.layer, "activation", None)
        if self.activation is not None:
            self.layer.activation = keras.activations.linear
        return self

    def __exit__(self, *exc):
        for v, value in zip(self.layer.weights, self.saved):
            v.assign(value)
        if self.activation is not None:
            self.layer.activation = self.activation
        return False


def _compiled(layer):
    """The layer's forward pass, traced once under TensorFlow (Keras compiles grouped and
    some other convolutions with XLA at every eager call, which is slow); reads the current
    variable values at every call."""
    if keras.backend.backend() != "tensorflow":
        return layer
    import tensorflow as tf

    return tf.function(lambda x: layer(x), reduce_retracing=True)


def brute_force_matrix(layer, input_shape: Sequence[Optional[int]], weight: str = "kernel",
                       seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """``(T, T_params)``: ``T`` (outputs x inputs) with a random zero-free kernel, and
    ``T_params`` of shape ``(n_params, outputs, inputs)`` with ``T_params[k] = T(e_k)``.

    Biases and other weights are left as they are: ``T x = f(x) - f(0)`` for an affine ``f``.
    """
    sample_shape = tuple(int(d) for d in input_shape[1:])
    _ensure_built(layer, sample_shape)
    var = _find_variable(layer, weight)
    dtype = np.dtype(keras.backend.standardize_dtype(var.dtype))
    n_in = math.prod(sample_shape)
    basis = np.eye(n_in, dtype=dtype).reshape((n_in,) + sample_shape)
    rng = np.random.default_rng(seed)
    with _Linearized(layer):
        forward = _compiled(layer)
        offset = np.asarray(forward(np.zeros_like(basis)))  # same shape: one trace

        def probe() -> np.ndarray:
            out = np.asarray(forward(basis)) - offset
            return out.reshape(n_in, -1).T  # rows: outputs

        shape = tuple(var.shape)
        n_params = math.prod(shape)
        # Positive entries: sums of several parameters in one entry cannot cancel.
        var.assign(rng.uniform(0.5, 1.5, size=shape).astype(dtype))
        full = probe()
        per_param = np.empty((n_params,) + full.shape, dtype=full.dtype)
        for k in range(n_params):
            e_k = np.zeros(n_params, dtype=dtype)
            e_k[k] = 1.0
            var.assign(e_k.reshape(shape))
            per_param[k] = probe()
    return full, per_param


def _counts(full: np.ndarray, per_param: np.ndarray, tol: float) -> Result:
    scale = max(float(np.abs(full).max()), 1e-300)
    nonzero = np.abs(full) > tol * scale
    rows = nonzero.sum(axis=1)
    cols = nonzero.sum(axis=0)
    uses = (np.abs(per_param) > tol * scale).reshape(len(per_param), -1).sum(axis=1)
    fan_in, fan_out = int(rows.max()), int(cols.max())
    uniform = bool(np.all(rows == fan_in) and np.all(uses == uses[0]))
    return fan_in, fan_out, float(nonzero.sum()) / len(per_param), uniform


def brute_force_structure(layer, input_shape: Sequence[Optional[int]], weight: str = "kernel",
                          tol: Optional[float] = None, seed: int = 0) -> Result:
    """``(fan_in, fan_out, sharing, uniform)`` of ``layer``'s weight ``weight``, by probing.

    Args:
        layer: a layer whose output is affine in its input and linear in the weight (use
            ``dtype="float64"`` for exact zeros). Built on ``input_shape`` if not built.
            Its activation is bypassed and its weights are restored afterwards.
        input_shape: the input shape including the batch axis (its value is ignored).
        weight: the weight's name. A ``SeparableConv*`` layer takes ``"depthwise_kernel"``
            (the map input -> intermediate) or ``"pointwise_kernel"`` (intermediate ->
            output); an ``Embedding`` takes ``"embeddings"`` and is probed with token inputs.
        tol: entries below ``tol * max|T|`` count as zero; defaults to 1e-9 for float64
            layers, 1e-4 otherwise.
        seed: seed of the random kernel.
    """
    if isinstance(layer, keras.layers.Embedding):
        return _embedding_reference(layer, input_shape, seed)
    _ensure_built(layer, tuple(int(d) for d in input_shape[1:]))
    if isinstance(layer, _SEPARABLE) and weight in ("depthwise_kernel", "pointwise_kernel"):
        layer, input_shape = _separable_part(layer, input_shape, weight)
    sample_shape = tuple(int(d) for d in input_shape[1:])
    _ensure_built(layer, sample_shape)
    full, per_param = brute_force_matrix(layer, input_shape, weight, seed)
    if tol is None:
        tol = _default_tol(full.dtype)
    return _counts(full, per_param, tol)


def _separable_part(layer, input_shape, weight):
    """A separable layer whose composite map is just the part of ``layer`` that ``weight``
    acts in: the other kernel is set to the identity.

    Depthwise part: a clone with ``filters = C_in * dm`` and an identity pointwise kernel.
    Pointwise part: a clone with a 1x1, stride-1, multiplier-1 depthwise kernel of ones, fed
    the intermediate shape.
    """
    config = layer.get_config()
    config.update(use_bias=False, activation=None, dtype="float64", name=None)
    rank = len(input_shape) - 2
    channels_first = config.get("data_format") == "channels_first"
    c_in = int(input_shape[1] if channels_first else input_shape[-1])
    dm = int(config["depth_multiplier"])
    if weight == "depthwise_kernel":
        config["filters"] = c_in * dm
        part = type(layer).from_config(config)
        sample = tuple(int(d) for d in input_shape[1:])
        _ensure_built(part, sample)
        part.pointwise_kernel.assign(np.eye(c_in * dm).reshape((1,) * rank + (c_in * dm,) * 2))
        return part, input_shape
    out_shape = layer.compute_output_shape(tuple(input_shape))
    spatial = out_shape[2:] if channels_first else out_shape[1:-1]
    mid = (None, c_in * dm) + tuple(spatial) if channels_first else \
        (None,) + tuple(spatial) + (c_in * dm,)
    config.update(kernel_size=1, strides=1, padding="valid", dilation_rate=1,
                  depth_multiplier=1)
    part = type(layer).from_config(config)
    _ensure_built(part, mid[1:])
    part.depthwise_kernel.assign(np.ones((1,) * rank + (c_in * dm, 1)))
    return part, mid


def _embedding_reference(layer, input_shape, seed) -> Result:
    """Probe an Embedding with token sequences; ``T`` acts on the one-hot encoding.

    ``fan_in`` counts the input *positions* (one-hot groups) an output depends on: a one-hot
    group has one active entry, so this is the number of active inputs an output sees.
    ``fan_out``: outputs that change when the token at one position changes. Uses of
    ``E[v, d]``: outputs that change with it, summed over the inputs "every token is v'"
    (each changed output there is the entry of column (position, v')).
    """
    seq_shape = tuple(int(d) for d in input_shape[1:])
    _ensure_built(layer, seq_shape)
    var = _find_variable(layer, "embeddings")
    vocab, dim = (int(d) for d in var.shape)
    n_pos = math.prod(seq_shape)
    rng = np.random.default_rng(seed)
    with _Linearized(layer):
        # Distinct entries: changing a token changes every output of its position.
        values = rng.permutation(vocab * dim).reshape(vocab, dim) / (vocab * dim) + 0.5
        var.assign(values.astype(np.dtype(keras.backend.standardize_dtype(var.dtype))))

        def run(tokens: np.ndarray) -> np.ndarray:  # (batch, n_pos) -> (batch, n_pos * dim)
            out = np.asarray(layer(tokens.reshape((-1,) + seq_shape)))
            return out.reshape(len(tokens), -1)

        base = rng.integers(0, vocab, size=n_pos)
        changed = np.repeat(base[None], n_pos * vocab, axis=0)
        changed[np.arange(n_pos * vocab), np.repeat(np.arange(n_pos), vocab)] = \
            np.tile(np.arange(vocab), n_pos)
        outs = run(changed).reshape(n_pos, vocab, -1)  # token v at position q, rest base
        # Output o depends on position q when some token at q changes it.
        influence = (outs != run(base[None])[None]).any(axis=1)  # (q, outputs)
        rows = influence.sum(axis=0)
        # Column (q, v): outputs that differ between token v at q and some other token.
        cols = np.array([(outs[q, v][None] != outs[q]).any(axis=0).sum()
                         for q in range(n_pos) for v in range(vocab)])
        constant = np.repeat(np.arange(vocab)[:, None], n_pos, axis=1)
        reference = run(constant)
        uses = []
        for v in range(vocab):
            for d in range(dim):
                bumped = values.copy()
                bumped[v, d] += 1.0
                var.assign(bumped.astype(values.dtype))
                uses.append(int((run(constant) != reference).sum()))
                var.assign(values)
    uses = np.array(uses)
    nnz = int(cols.sum())
    fan_in = int(rows.max())
    uniform = bool(np.all(rows == fan_in) and np.all(uses == uses[0]))
    return fan_in, int(cols.max()), nnz / (vocab * dim), uniform
