"""Initializations that look at a batch of data: LSUV and data-dependent init.

Both functions walk the top-level layers of a built Sequential or Functional model in forward
order and rescale every layer that has a kernel (``Dense``, convolutions, the package's own
layers, and :class:`~keras_normed.layers.WeightNormalization`, whose length ``g`` is rescaled
instead of its direction ``v``).

Statistics come from model calls made *outside* any replica context on the whole batch, so
under ``tf.distribute`` (e.g. ``MirroredStrategy``) they are the statistics of the full batch,
the same on every replica, and the weights are assigned once from cross-replica context, which
writes the same value to every replica's copy. Call the functions outside
``strategy.run`` (inside ``strategy.scope()`` is fine).

On any error every weight is restored to its value before the call: the functions either
succeed or leave the model as it was.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, List, Optional, Union

import keras
import numpy as np
from keras.src.layers.convolutional.base_conv import BaseConv

__all__ = ["lsuv", "data_dependent_init", "InitReport"]

_TINY_VARIANCE = 1e-20


@dataclasses.dataclass
class InitReport:
    """What an initialization did, one row per rescaled layer.

    Attributes:
        method: ``"lsuv"`` or ``"data_dependent"``.
        layers: one dict per layer (``name``, and per method: ``iterations``, ``variance``
            (final output variance), ``converged``; or ``scale``, ``change_rate``).
        between_layer: for the data-dependent init, the spread ``max/min`` of the layers'
            change rates before and after the between-layer step.
        output_change: relative change of the model output made by the between-layer step
            (0 up to rounding for a positively homogeneous chain such as Dense/Conv + ReLU).
    """

    method: str
    layers: List[dict]
    between_layer: Optional[dict] = None
    output_change: Optional[float] = None

    @property
    def converged(self) -> bool:
        return all(row.get("converged", True) for row in self.layers)

    def __str__(self) -> str:
        lines = [f"{self.method} init of {len(self.layers)} layers"]
        for row in self.layers:
            lines.append("  " + ", ".join(f"{k}={_fmt(v)}" for k, v in row.items()))
        if self.between_layer:
            lines.append("  between-layer: " + ", ".join(
                f"{k}={_fmt(v)}" for k, v in self.between_layer.items()))
        return "\n".join(lines)


def _fmt(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class _Target:
    """A layer to rescale: the variable to scale per output unit, its bias, its activation."""

    def __init__(self, layer):
        self.layer = layer
        self.name = layer.name
        inner = getattr(layer, "layer", None)
        if hasattr(layer, "normalized_kernel") and inner is not None:  # WeightNormalization
            self.holder = inner
            self.direction = inner.kernel  # v: orthonormalized by LSUV, never rescaled
            self.scale = layer.g  # length: one entry per output unit
            self.per_unit = True
        else:
            self.holder = layer
            self.direction = layer.kernel
            self.scale = layer.kernel
            # Column scaling means "per output unit" only where the last kernel axis is the
            # output channel axis; other kernels (e.g. circulant) get one scalar per layer.
            self.per_unit = isinstance(layer, (keras.layers.Dense, BaseConv))
        bias = getattr(self.holder, "bias", None)
        self.bias = bias if getattr(self.holder, "use_bias", bias is not None) else None
        if self.bias is not None and tuple(self.bias.shape) != (self.units(),):
            self.bias = None

    def units(self) -> int:
        return int(self.direction.shape[-1])

    def multiply(self, factor) -> None:
        """Scale the layer's output (before the bias) by ``factor`` (scalar or per unit)."""
        value = keras.ops.convert_to_numpy(self.scale)
        factor = np.asarray(factor, dtype=np.float64)
        if factor.ndim and not self.per_unit:
            raise ValueError(f"Layer {self.name!r} can only be rescaled by one scalar.")
        self.scale.assign((value * factor).astype(value.dtype))

    def preactivation(self, inputs):
        """The layer's output with its activation switched off (pre-activation)."""
        activation = getattr(self.holder, "activation", None)
        if activation is None:
            return self.layer(inputs)
        try:
            self.holder.activation = keras.activations.linear
            return self.layer(inputs)
        finally:
            self.holder.activation = activation


def _has_kernel(layer) -> bool:
    kernel = getattr(layer, "kernel", None)
    if hasattr(layer, "normalized_kernel") and hasattr(getattr(layer, "layer", None), "kernel"):
        return True
    return isinstance(kernel, keras.Variable) and kernel.trainable


def _targets(model) -> List[_Target]:
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model, got {type(model).__name__}.")
    if not model.built:
        raise ValueError("`model` is not built: call it on data or build it first.")
    targets = [_Target(layer) for layer in model.layers if _has_kernel(layer)]
    if not targets:
        raise ValueError("`model` has no layer with a kernel to initialize.")
    return targets


def _check_batch(x_batch, arg: str = "x_batch"):
    """Validate a batch (array, tensor, or a list/dict of them) and return it as numpy."""
    if x_batch is None:
        raise ValueError(f"`{arg}` is None; pass a batch of at least 2 examples.")
    leaves = keras.tree.flatten(x_batch)
    arrays = [np.asarray(keras.ops.convert_to_numpy(leaf)) for leaf in leaves]
    if not arrays:
        raise ValueError(f"`{arg}` is empty; pass a batch of at least 2 examples.")
    for a in arrays:
        if a.ndim == 0 or a.shape[0] == 0:
            raise ValueError(f"`{arg}` is empty; pass a batch of at least 2 examples.")
        if a.shape[0] < 2:
            raise ValueError(
                f"`{arg}` has a batch of one example: a variance needs at least 2; pass a "
                "larger batch (e.g. 64-256 examples).")
        if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
            raise ValueError(f"`{arg}` contains NaN or inf values; clean the batch first.")
    if isinstance(x_batch, (list, tuple, dict)):
        return keras.tree.pack_sequence_as(x_batch, arrays)
    return arrays[0]


class _Restore:
    """Snapshot every weight; restore them all if the block raises."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.values = [keras.ops.convert_to_numpy(w) for w in self.model.weights]
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            for w, value in zip(self.model.weights, self.values):
                w.assign(value)
        return False


def _input_fn(model, target: _Target) -> Callable:
    """Callable giving the target layer's input for a model input batch (full batch)."""
    try:
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        sub = keras.Model(inputs, target.layer.input)
    except Exception as err:  # noqa: BLE001 - shared or unconnected layers
        raise ValueError(
            f"Cannot tell the input of layer {target.name!r} (shared layer or a model that "
            "is not Sequential/Functional). Use a Sequential or Functional model.") from err
    return lambda x: sub(x, training=False)


def _stats(values, per_unit: bool):
    """Mean and variance per output unit (last axis) or overall, in float64."""
    z = np.asarray(keras.ops.convert_to_numpy(values), dtype=np.float64)
    if not np.all(np.isfinite(z)):
        raise FloatingPointError("non-finite")
    if per_unit:
        z = z.reshape(-1, z.shape[-1])
        return z.mean(axis=0), z.var(axis=0)
    return np.float64(z.mean()), np.float64(z.var())


def _zero_variance_error(name: str, method: str) -> ValueError:
    return ValueError(
        f"{method}: the output of layer {name!r} has zero variance on this batch (dead units "
        "or constant input), so it cannot be scaled to unit variance. Use a batch with "
        "varied examples, or check the layers before it.")


def _nonfinite_error(name: str, method: str) -> ValueError:
    return ValueError(
        f"{method}: the output of layer {name!r} is NaN or inf on this batch; check the "
        "inputs' range and the weights of the layers before it.")


def lsuv(model: keras.Model, x_batch: Any, tol: float = 0.1, max_iter: int = 10,
         seed: Optional[int] = None, verbose: bool = False) -> InitReport:
    """Layer-sequential unit-variance (LSUV) initialization, in place.

    1. Pre-initialize every kernel with an orthonormal matrix (``keras.initializers.Orthogonal``
       on the kernel's 2-D reshape ``(prod(shape[:-1]), shape[-1])``), biases zero.
    2. Layer by layer in forward order, with ``z`` the layer's pre-activation output on
       ``x_batch``, repeat ``W <- W / sqrt(Var(z))`` until ``|Var(z) - 1| < tol`` or
       ``max_iter`` steps. For a WeightNormalization layer ``g`` is rescaled.

    Args:
        model: a built Sequential or Functional model.
        x_batch: a batch of inputs (at least 2 examples, all finite).
        tol: tolerance on the output variance.
        max_iter: most rescaling steps per layer.
        seed: seed of the orthonormal matrices (one seed per layer derived from it).
        verbose: print one line per layer.

    Returns:
        An :class:`InitReport`; ``report.converged`` says whether every layer met ``tol``.

    Raises:
        ValueError: empty batch, batch of one, NaN/inf inputs, a layer whose output has zero
            variance or is not finite. Weights are left unchanged.

    Example:

    >>> report = keras_normed.lsuv(model, x_train[:256], seed=0)

    Reference: D. Mishkin, J. Matas, "All you need is a good init", ICLR 2016.
    """
    if not (tol > 0 and math.isfinite(tol)):
        raise ValueError(f"`tol` must be a positive number, got {tol!r}.")
    if int(max_iter) < 1:
        raise ValueError(f"`max_iter` must be >= 1, got {max_iter!r}.")
    targets = _targets(model)
    x = _check_batch(x_batch)
    from keras_normed.initializers.weight_norm import layer_seeds

    seeds = layer_seeds(seed, len(targets))
    rows = []
    with _Restore(model):
        for t, layer_seed in zip(targets, seeds):
            shape = tuple(t.direction.shape)
            flat = (int(np.prod(shape[:-1])), shape[-1]) if len(shape) > 1 else (1, shape[0])
            ortho = keras.initializers.Orthogonal(seed=layer_seed)(flat, dtype="float32")
            value = np.reshape(keras.ops.convert_to_numpy(ortho), shape)
            t.direction.assign(value.astype(keras.ops.convert_to_numpy(t.direction).dtype))
            if t.scale is not t.direction:
                t.scale.assign(np.ones(t.scale.shape, dtype=t.scale.dtype))
            if t.bias is not None:
                t.bias.assign(np.zeros(t.bias.shape, dtype=t.bias.dtype))
        for t in targets:
            inputs = _input_fn(model, t)(x)  # earlier layers are final: compute once
            var = None
            iterations = 0
            for iterations in range(max_iter + 1):
                try:
                    _, var = _stats(t.preactivation(inputs), per_unit=False)
                except FloatingPointError:
                    raise _nonfinite_error(t.name, "lsuv") from None
                if var <= _TINY_VARIANCE:
                    raise _zero_variance_error(t.name, "lsuv")
                if abs(var - 1.0) < tol or iterations == max_iter:
                    break
                t.multiply(1.0 / math.sqrt(var))
            row = {"name": t.name, "iterations": iterations, "variance": float(var),
                   "converged": bool(abs(var - 1.0) < tol)}
            rows.append(row)
            if verbose:
                print(f"lsuv: {t.name}: variance {var:.4f} after {iterations} steps")
    return InitReport("lsuv", rows)


def _loss_fn(model, loss, y, output):
    if loss is not None:
        return keras.losses.get(loss)
    y_arr = np.asarray(y)
    if np.issubdtype(y_arr.dtype, np.integer) and output.shape[-1] > 1 and (
            y_arr.ndim == len(output.shape) - 1):
        last = model.layers[-1]
        softmax = getattr(last, "activation", None) is keras.activations.softmax or (
            isinstance(last, keras.layers.Softmax))
        return keras.losses.SparseCategoricalCrossentropy(from_logits=not softmax)
    return keras.losses.MeanSquaredError()


def data_dependent_init(model: keras.Model, x_batch: Any, y_batch: Any = None, *,
                        loss: Union[str, Callable, None] = None, within_layer: bool = True,
                        between_layer_iters: int = 10, alpha: float = 0.5,
                        mean: float = 0.0, std: float = 1.0, seed: Optional[int] = None,
                        verbose: bool = False) -> InitReport:
    """Data-dependent initialization of Krähenbühl et al. (ICLR 2016), in place.

    Starting from the model's current (random) weights:

    1. *Within-layer*: layer by layer in forward order, each output unit ``i`` of the
       pre-activation ``z_i`` (statistics over batch and spatial positions) gets mean ``mean``
       and standard deviation ``std``: ``W[..., i] <- W[..., i] * std / sigma_i`` and
       ``b_i <- mean - (mu_i - b_i) * std / sigma_i``. This is also the data-dependent
       init of weight normalization (Salimans & Kingma 2016), where ``g`` is scaled.
    2. *Between-layer*: with ``C_k = ||dL/dW_k||^2 / ||W_k||^2`` the change rate of layer
       ``k`` (``L``: the loss on ``y_batch``, or a mean-squared loss on random normal targets),
       ``W_k, b_k <- r_k W_k, r_k b_k`` and ``W_{k+1} <- W_{k+1} / r_k`` for every layer but
       the last. For a chain of layers joined by positively homogeneous functions (ReLU,
       max-pooling, flatten) the network function is unchanged while ``C_k`` is multiplied by
       ``(r_{k-1} / r_k)^4`` exactly, so ``log r_k = alpha/4 * sum_{j<=k} (log C_j - mean_j
       log C_j)`` equalizes the change rates (``alpha = 1``: in one step; their geometric
       mean is invariant). Repeated ``between_layer_iters`` times with the damping ``alpha``
       for networks that are only approximately homogeneous.

    Args:
        model: a built Sequential or Functional model (TensorFlow backend for gradients).
        x_batch: a batch of inputs (at least 2 examples, all finite).
        y_batch: targets for the loss; ``None`` draws random normal targets (``seed``).
        loss: a Keras loss (name or callable); by default sparse categorical cross-entropy
            for integer labels, else mean squared error.
        within_layer: run step 1.
        between_layer_iters: iterations of step 2 (0 skips it).
        alpha: damping exponent of step 2, in (0, 1].
        mean, std: target statistics of step 1.
        seed: seed of the random targets.
        verbose: print the change rates.

    Returns:
        An :class:`InitReport` (per layer: scale of step 1 and final change rate; the spread
        ``max C_k / min C_k`` before and after step 2; the relative output change of step 2).

    Raises:
        ValueError: bad batch or arguments, zero-variance or non-finite layer outputs.
        Weights are left unchanged.

    Reference: P. Krähenbühl, C. Doersch, J. Donahue, T. Darrell, "Data-dependent
    Initializations of Convolutional Neural Networks", ICLR 2016.
    """
    if not (std > 0 and math.isfinite(std)) or not math.isfinite(mean):
        raise ValueError(f"`std` must be positive and `mean` finite, got {std!r}, {mean!r}.")
    if not 0 < alpha <= 1:
        raise ValueError(f"`alpha` must be in (0, 1], got {alpha!r}.")
    if int(between_layer_iters) < 0:
        raise ValueError(f"`between_layer_iters` must be >= 0, got {between_layer_iters!r}.")
    targets = _targets(model)
    x = _check_batch(x_batch)
    if y_batch is not None:
        y_batch = _check_batch(y_batch, "y_batch")
    rows = [{"name": t.name} for t in targets]
    report = InitReport("data_dependent", rows)
    with _Restore(model):
        if within_layer:
            for t, row in zip(targets, rows):
                inputs = _input_fn(model, t)(x)
                try:
                    mu, var = _stats(t.preactivation(inputs), per_unit=t.per_unit)
                except FloatingPointError:
                    raise _nonfinite_error(t.name, "data_dependent_init") from None
                if np.any(var <= _TINY_VARIANCE):
                    raise _zero_variance_error(t.name, "data_dependent_init")
                if not t.per_unit:
                    mu = np.full(t.units(), mu)
                scale = std / np.sqrt(var)
                t.multiply(scale)
                if t.bias is not None:
                    b = keras.ops.convert_to_numpy(t.bias).astype(np.float64)
                    t.bias.assign((mean - (mu - b) * scale).astype(t.bias.dtype))
                row["scale"] = float(np.mean(scale))
        if between_layer_iters and len(targets) > 1:
            _between_layer(model, targets, x, y_batch, loss, int(between_layer_iters),
                           alpha, seed, report, verbose)
    return report


def _between_layer(model, targets, x, y, loss, iters, alpha, seed, report, verbose):
    import tensorflow as tf

    out0 = np.asarray(keras.ops.convert_to_numpy(model(x, training=False)), np.float64)
    if y is None:
        y = np.random.default_rng(seed).standard_normal(out0.shape).astype("float32")
    loss_fn = _loss_fn(model, loss, y, out0)
    variables = [t.scale for t in targets]
    trainable = list(model.trainable_variables)
    position = {id(v): i for i, v in enumerate(trainable)}
    missing = [t.name for t, v in zip(targets, variables) if id(v) not in position]
    if missing:
        raise ValueError(f"data_dependent_init: layers {missing} are not trainable.")

    def change_rates():
        # Differentiate a stateless call with respect to tensors read in cross-replica
        # context: distributed variables have no handle there, and the full batch is used.
        values = [tf.convert_to_tensor(v) for v in trainable]
        fixed = [tf.convert_to_tensor(v) for v in model.non_trainable_variables]
        with tf.GradientTape() as tape:
            tape.watch(values)
            out, _ = model.stateless_call(values, fixed, x, training=False)
            value = loss_fn(y, out)
        grads = tape.gradient(value, [values[position[id(v)]] for v in variables])
        rates = []
        for t, g, v in zip(targets, grads, variables):
            g = np.asarray(keras.ops.convert_to_numpy(g), np.float64) if g is not None else None
            w = np.asarray(keras.ops.convert_to_numpy(v), np.float64)
            if g is None or not np.all(np.isfinite(g)) or not np.sum(w * w) > 0:
                raise ValueError(
                    f"data_dependent_init: layer {t.name!r} gets no finite gradient from the "
                    "loss; check the loss and the targets.")
            rates.append(float(np.sum(g * g) / np.sum(w * w)))
        return np.asarray(rates)

    rates = change_rates()
    if np.any(rates <= 0):
        raise ValueError("data_dependent_init: a layer has zero gradient (dead units?).")
    before = float(rates.max() / rates.min())
    for _ in range(iters):
        # C_k is multiplied by (r_{k-1} / r_k)^4 exactly, so the log-rates become equal when
        # log r_k = sum_{j <= k} (log C_j - mean log C) / 4 (zero for the last layer).
        deviation = np.log(rates) - np.mean(np.log(rates))
        r = np.exp(alpha / 4.0 * np.cumsum(deviation))
        r[-1] = 1.0  # the last layer has no successor to compensate it
        for k, t in enumerate(targets):
            t.multiply(r[k] / (r[k - 1] if k else 1.0))
            if t.bias is not None:
                b = keras.ops.convert_to_numpy(t.bias)
                t.bias.assign((b * r[k]).astype(b.dtype))
        rates = change_rates()
        if verbose:
            print("data_dependent_init: change-rate spread", float(rates.max() / rates.min()))
    out1 = np.asarray(keras.ops.convert_to_numpy(model(x, training=False)), np.float64)
    report.output_change = float(np.linalg.norm(out1 - out0) / max(np.linalg.norm(out0), 1e-30))
    report.between_layer = {"spread_before": before,
                            "spread_after": float(rates.max() / rates.min()),
                            "iterations": iters}
    for row, rate in zip(report.layers, rates):
        row["change_rate"] = float(rate)
