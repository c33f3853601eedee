"""Initializations that look at a batch of data: LSUV and data-dependent init (docs/lsuv.md,
docs/data_dependent.md). Both walk the layers with a trainable kernel in forward order, refuse
layers called more than once, and restore every weight on error.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, List, Optional, Tuple, Union

import keras
import numpy as np

from keras_normed import _keras_compat as compat
from keras_normed import engine
from keras_normed.engine import Report, Row
from keras_normed.initializers.normed import parse_bool
from keras_normed.initializers.weight_norm import assign_orthogonal, host_seed, layer_seeds
from keras_normed.scaling import check_number

__all__ = ["lsuv", "data_dependent_init"]

_TINY_VARIANCE = 1e-20


class _Target:
    """A layer to rescale: the variable to scale per output unit, its bias, its activation."""

    def __init__(self, layer, wrapper=None):
        self.layer = wrapper or layer  # what the model calls
        self.holder = layer  # the layer with the kernel, bias and activation
        self.name, self.path = self.layer.name, layer.kernel.path
        # A WeightNormalization's direction v is never rescaled: its length g is.
        self.direction = layer.kernel
        self.scale = layer.kernel if wrapper is None else wrapper.g
        # A factor per output unit, shaped to broadcast on the scaled variable (g is one axis of
        # units); None: one scalar.
        axes = (-1,) if wrapper is not None else _unit_axes(layer)
        shape = tuple(self.scale.shape)
        self.factor_shape = None if axes is None else (
            tuple(shape[a] for a in axes) + (1,) * (-axes[-1] - 1))
        self.per_unit = axes is not None
        # The axis of the layer's output that holds its units.
        self.unit_axis = 1 if getattr(layer, "data_format", None) == "channels_first" else -1
        # A circulant layer's kernel ends in its block size: count units by what it outputs.
        units = math.prod(self.factor_shape) if axes else (
            getattr(layer, "units", None) or getattr(layer, "filters", None) or shape[-1])
        bias = getattr(layer, "bias", None)
        per_unit_bias = bias is not None and tuple(bias.shape) == (units,)
        self.bias = bias if per_unit_bias and getattr(layer, "use_bias", True) else None

    def multiply(self, factor) -> None:
        """Scale the layer's output (before the bias) by ``factor`` (a scalar or per unit)."""
        value = keras.ops.convert_to_numpy(self.scale)
        factor = np.asarray(factor, dtype=np.float64)
        if factor.ndim:
            factor = factor.reshape(self.factor_shape)
        self.scale.assign((value * factor).astype(value.dtype))

    def preactivation(self, args, kwargs):
        """The layer's output on its recorded call, activation off."""
        activation = getattr(self.holder, "activation", None)
        kwargs = {k: v for k, v in kwargs.items() if k != "training"}
        if activation is None:
            return self.layer(*args, **kwargs)
        try:
            self.holder.activation = keras.activations.linear
            return self.layer(*args, **kwargs)
        finally:
            self.holder.activation = activation


_TRANSPOSED = (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose,
               keras.layers.Conv3DTranspose)
_DEPTHWISE = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)


def _unit_axes(layer) -> Optional[Tuple[int, ...]]:
    """The axes of ``layer.kernel`` that index its output units, in their order; None where
    the units are not kernel slices (a circulant layer's), or not known: one scalar then."""
    if isinstance(layer, _TRANSPOSED):  # (..., filters, in)
        return (-2,)
    if isinstance(layer, _DEPTHWISE):  # (..., in, multiplier): unit c * multiplier + m
        return (-2, -1)
    if isinstance(layer, keras.layers.Dense) or compat.is_conv(layer) or (
            isinstance(layer, keras.layers.EinsumDense) and _einsum_unit_last(layer.equation)):
        return (-1,)
    return None


def _einsum_unit_last(equation: str) -> bool:
    """Whether the output's last axis is the kernel's last, and not summed over or taken from
    the input (``"abc,cd->abd"``)."""
    inputs, _, output = equation.replace(" ", "").partition("->")
    x, _, kernel = inputs.partition(",")
    return bool(output and kernel) and kernel[-1] == output[-1] and output[-1] not in x


def _targets(model, method: str) -> List[_Target]:
    """Every layer with a trainable kernel, in forward order; shared layers refused."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model, got {type(model).__name__}.")
    if not model.built:
        raise ValueError("`model` is not built: call it on data or build it first.")
    wrappers = {id(layer.layer): layer for layer in compat.all_layers(model)
                if hasattr(layer, "normalized_kernel") and hasattr(layer, "layer")}
    sites = [s for s in engine.kernel_sites(model) if s.trainable and not _recurrent(s.layer)]
    if not sites:
        raise ValueError("`model` has no layer with a trainable kernel to initialize (a "
                         "recurrent cell's kernels are left as drawn).")
    targets = [_Target(s.layer, wrappers.get(id(s.layer))) for s in sites]
    constraints = engine.scale_constraints(model, [t.scale for t in targets], training=False)
    uses = constraints.uses
    shared = [(t.name, u) for t, u in zip(targets, uses) if u is not None and u > 1]
    if shared:
        raise ValueError(
            f"{method}: layers {shared} (name, calls) are called more than once (weight tying): "
            "one kernel cannot give each call its own output statistics. Initialize a model "
            "without shared layers (or untie them for initialization) and copy the weights.")
    return [targets[i] for i in constraints.order if uses[i] is None or uses[i] > 0]


def _recurrent(layer) -> bool:
    return hasattr(layer, "state_size")  # an RNN cell: its output per step mixes its state


def _refuse_trained(model, method: str, force) -> None:
    steps = engine.steps_taken(model)
    if steps and not parse_bool("force", force):
        raise ValueError(
            f"{method}: model {model.name!r} was already trained ({steps} optimizer steps); "
            "initializing it now would replace the trained weights. Call it before `fit`, or "
            "pass force=True to re-initialize anyway.")


def _left(model, method: str, targets: List[_Target]) -> List[str]:
    cells = [f"{engine.weight_label(model, s.layer, s.variable, 'kernel')}: {method} leaves "
             "recurrent cells as drawn (their output per step mixes their state)"
             for s in engine.kernel_sites(model, _recurrent) if s.trainable]
    # A WeightNormalization's g is what the method scales: not left.
    return cells + engine.weights_left(
        model, lambda *_: f"{method} sets each layer's `kernel` only; left as it is",
        done=[t.scale for t in targets])


def _layer_input(model, target: _Target, x):
    """The arguments ``target`` is called with in a forward pass of ``model`` on ``x``."""
    kwargs = {"training": False} if compat.call_takes_training(model) else {}
    with compat.captured_calls([target.layer]) as record:
        model(keras.tree.map_structure(keras.ops.convert_to_tensor, x), **kwargs)
    calls = record[id(target.layer)]
    if not calls:
        raise ValueError(f"Layer {target.name!r} is not called when the model runs on the "
                         "batch; it cannot be initialized from data.")
    return calls[0][:2]  # the first call's (args, kwargs)


def _stats(t: _Target, args, kwargs, per_unit: bool, method: str, centered: bool = False):
    """Mean and variance of ``t``'s pre-activation output, per output unit or overall;
    ``centered``: the means per unit and the variance about them (one scale, biases per unit)."""
    z = np.asarray(keras.ops.convert_to_numpy(t.preactivation(args, kwargs)), dtype=np.float64)
    if not np.all(np.isfinite(z)):
        raise ValueError(
            f"{method}: the output of layer {t.name!r} is NaN or inf on this batch; check the "
            "inputs' range and the weights of the layers before it.")
    # Identical examples leave only the spread between units and positions: not a variance
    # over data (LSUV's overall variance would still be positive).
    same_examples = np.all(z.reshape(z.shape[0], -1).var(axis=0) <= _TINY_VARIANCE)
    units = np.moveaxis(z, t.unit_axis, -1).reshape(-1, z.shape[t.unit_axis])
    if centered:
        mean, var = units.mean(axis=0), units.var(axis=0).mean()
    else:
        z = units if per_unit else z.reshape(-1)
        mean, var = z.mean(axis=0), z.var(axis=0)
    if same_examples or np.any(var <= _TINY_VARIANCE):
        raise ValueError(
            f"{method}: the output of layer {t.name!r} has zero variance on this batch (dead "
            "units, constant input or identical examples), so it cannot be scaled to unit "
            "variance. Use a batch "
            "with varied examples, or check the layers before it.")
    return mean, var


def lsuv(model: keras.Model, x_batch: Any, tol: float = 0.1, max_iter: int = 10,
         seed: Optional[int] = None, verbose: bool = False, force: bool = False) -> Report:
    """Layer-sequential unit-variance (LSUV) initialization, in place (docs/lsuv.md).

    Every kernel is set orthonormal (``keras.initializers.Orthogonal`` on its 2-D reshape),
    biases zero; then layer by layer in forward order ``W <- W / sqrt(Var(z))`` (``z``: the
    pre-activation output on ``x_batch``; ``g`` for WeightNormalization) until
    ``|Var(z) - 1| < tol`` or ``max_iter`` steps.

    Args:
        model: a built model (any kind); layers called more than once are refused.
        x_batch: a batch of inputs as ``model.fit`` takes ``x`` (at least 2 examples).
        tol: tolerance on the output variance.
        max_iter: most rescaling steps per layer.
        seed: seed of the orthonormal matrices: None, an int >= 0 or a SeedGenerator.
        verbose: print one line per layer.
        force: re-initialize a model whose optimizer has taken steps (refused by default:
            its trained weights would be replaced).

    Returns:
        A :class:`~keras_normed.engine.Report` (method ``"lsuv"``): per layer ``iterations``,
        ``variance``, ``converged`` (``report.converged``: all are); ``report.left``: the
        weights other than kernels, left as they were.

    Raises:
        ValueError: bad batch, a layer output of zero variance or not finite (weights kept).

    Example:

    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
    ...                           keras.layers.Dense(4)])
    >>> x_train = np.random.default_rng(0).normal(size=(512, 8))
    >>> report = keras_normed.lsuv(model, x_train[:256], seed=0)

    Reference: D. Mishkin, J. Matas, "All you need is a good init", ICLR 2016.
    """
    check_number("tol", tol, 0, open_low=True)
    check_number("max_iter", max_iter, 1, integer=True)
    _refuse_trained(model, "lsuv", force)
    targets = _targets(model, "lsuv")
    seeds = layer_seeds(seed, len(targets))
    x = engine.as_batch(model, x_batch, need_y=False, arg="x_batch", min_size=2).x
    rows = []
    with engine.Transaction(model.weights):
        for t, layer_seed in zip(targets, seeds):
            assign_orthogonal(t.direction, layer_seed)
            if t.scale is not t.direction:
                t.scale.assign(np.ones(t.scale.shape, dtype=t.scale.dtype))
            if t.bias is not None:
                t.bias.assign(np.zeros(t.bias.shape, dtype=t.bias.dtype))
        for t in targets:
            args, kwargs = _layer_input(model, t, x)  # earlier layers are final: once
            for iterations in range(max_iter + 1):  # max_iter >= 1: runs at least once
                _, var = _stats(t, args, kwargs, False, "lsuv")
                if abs(var - 1.0) < tol or iterations == max_iter:
                    break
                t.multiply(1.0 / math.sqrt(var))
            rows.append(Row(t.path, type(t.layer).__name__, 1, values={
                "iterations": iterations, "variance": float(var),
                "converged": bool(abs(var - 1.0) < tol)}))
            if verbose:
                print(f"lsuv: {t.name}: variance {var:.4f} after {iterations} steps")
    return Report("lsuv", True, rows=rows,
                  summary={"tol": tol, "left": _left(model, "lsuv", targets)})


def data_dependent_init(model: keras.Model, x_batch: Any, y_batch: Any = None, *,
                        loss: Union[str, Callable, None] = None, within_layer: bool = True,
                        between_layer_iters: int = 10, alpha: float = 0.5,
                        mean: float = 0.0, std: float = 1.0, seed: Optional[int] = None,
                        verbose: bool = False, force: bool = False) -> Report:
    """Data-dependent initialization, in place, from the model's current weights
    (docs/data_dependent.md).

    1. *Within-layer*, in forward order, per output unit ``i`` of the pre-activation (``g`` for
       weight normalization): ``W[..., i] <- W[..., i] * std / sigma_i``,
       ``b_i <- mean - (mu_i - b_i) * std / sigma_i``.
    2. *Between-layer*: the change rates ``C_k = ||dL/dW_k||^2 / ||W_k||^2`` are equalized by
       function-keeping kernel scales ``exp(a_k)`` (``C_k`` scales by ``exp(-4 a_k)``),
       ``between_layer_iters`` times, damped by ``alpha``.

    Args:
        model, x_batch: as in :func:`lsuv`.
        y_batch: targets; ``None`` draws random normal targets (``seed``) with a squared loss.
        loss: a Keras loss (default: the compiled loss, else
            :func:`keras_normed.engine.default_loss` per output).
        within_layer: run step 1.
        between_layer_iters: iterations of step 2 (0 skips it).
        alpha: damping exponent of step 2, in (0, 1].
        mean, std: target statistics of step 1.
        seed: seed of the random targets.
        verbose: print the change rates.
        force: as in :func:`lsuv`.

    Returns:
        A :class:`~keras_normed.engine.Report` (method ``"data_dependent"``): per layer the
        scale of step 1 and the final change rate; the spread ``max C_k / min C_k`` before and
        after step 2 and its relative output change; ``summary["mean_not_set"]``: layers
        without a bias per unit, whose mean step 1 cannot set (warned).

    Raises:
        ValueError: bad batch or arguments, layer outputs of zero variance or not finite.

    Reference: P. Krähenbühl, C. Doersch, J. Donahue, T. Darrell, "Data-dependent
    Initializations of Convolutional Neural Networks", ICLR 2016.
    """
    check_number("std", std, 0, open_low=True)
    check_number("mean", mean, -math.inf)
    check_number("alpha", alpha, 0, 1, open_low=True)
    check_number("between_layer_iters", between_layer_iters, 0, integer=True)
    within_layer = parse_bool("within_layer", within_layer)
    _refuse_trained(model, "data_dependent_init", force)
    seed = host_seed(seed)
    targets = _targets(model, "data_dependent_init")
    if y_batch is not None and (hasattr(x_batch, "element_spec")
                                or isinstance(x_batch, keras.utils.PyDataset)):
        raise TypeError(
            f"`x_batch` is a {type(x_batch).__name__} and `y_batch` is given too: a dataset "
            "brings its own targets. Pass the dataset alone (its first batch, (x, y), is used), "
            "or arrays as x_batch and y_batch.")
    data = x_batch if y_batch is None else (x_batch, y_batch)
    batch = engine.as_batch(model, data, need_y=False, arg="x_batch" if y_batch is None
                            else "x_batch, y_batch", min_size=2)
    rows = [Row(t.path, type(t.layer).__name__, 1) for t in targets]
    no_bias = [t.path for t in targets if t.bias is None]
    report = Report("data_dependent", True, rows=rows,
                    summary={"left": _left(model, "data_dependent_init", targets),
                             "scalar_scale": [t.path for t in targets if not t.per_unit],
                             "mean_not_set": no_bias})
    if within_layer and no_bias:
        warnings.warn(f"data_dependent_init: {no_bias[:4]} have no bias per output unit "
                      f"(use_bias=False?): their outputs get std {std} but keep their own mean, "
                      f"not mean={mean} (report.summary['mean_not_set']).", stacklevel=2)
    with engine.Transaction(model.weights):
        if within_layer:
            for t, row in zip(targets, rows):
                args, kwargs = _layer_input(model, t, batch.x)
                mu, var = _stats(t, args, kwargs, t.per_unit, "data_dependent_init",
                                 centered=not t.per_unit and t.bias is not None)
                scale = std / np.sqrt(var)
                t.multiply(scale)
                if t.bias is not None:
                    b = keras.ops.convert_to_numpy(t.bias).astype(np.float64)
                    t.bias.assign((mean - (mu - b) * scale).astype(t.bias.dtype))
                row.values["scale"] = float(np.mean(scale))
        if between_layer_iters and len(targets) > 1:
            _between_layer(model, targets, batch, loss, int(between_layer_iters), alpha, seed,
                           report, verbose)
    return report


def _between_layer(model, targets, batch, loss, iters, alpha, seed, report, verbose):
    out0 = engine.predict(model, batch)
    random_targets = batch.y is None
    if random_targets:
        rng = np.random.default_rng(seed)
        y = keras.tree.map_structure(
            lambda o: rng.standard_normal(tuple(o.shape)).astype("float32"), out0)
        batch = engine.Batch(batch.x, y)
        what = "mean_squared_error" if loss is None else "the given loss"
        loss = loss if loss is not None else "mean_squared_error"
    loss_fn = engine.resolve_loss(model, batch, loss)
    if random_targets:
        loss_fn.description = f"{what} against random normal targets (no y_batch)"
    variables = [t.scale for t in targets]
    constraints = engine.scale_constraints(model, variables, batch.x, training=False)
    forms = np.asarray(constraints.output_forms)  # in the order of `variables`

    def change_rates():
        values = [np.asarray(keras.ops.convert_to_numpy(v), np.float64) for v in variables]
        _, grads = engine.loss_and_gradients(model, batch, variables, values, loss_fn,
                                             training=False)
        rates = []
        for t, g, w in zip(targets, grads, values):
            if not np.all(np.isfinite(g)) or not engine.norm(w) ** 2 > 0:
                raise ValueError(
                    f"data_dependent_init: layer {t.name!r} gets no finite gradient from the "
                    "loss; check the loss and the targets.")
            rates.append(float(engine.norm(g) ** 2 / engine.norm(w) ** 2))
        return np.asarray(rates)

    rates = change_rates()
    if np.any(rates <= 0):
        raise ValueError("data_dependent_init: a layer has zero gradient (dead units?).")
    before = float(rates.max() / rates.min())
    for _ in range(iters):  # C_k scales by c_k^-4 (biases scaled with their outputs)
        a = alpha * engine.equalize(np.log(rates), constraints.rows, 4.0)[0]
        for t, form, ak in zip(targets, forms, a):
            t.multiply(math.exp(ak))
            if t.bias is not None:
                b = keras.ops.convert_to_numpy(t.bias)
                t.bias.assign((b * math.exp(float(form @ a))).astype(b.dtype))
        rates = change_rates()
        if verbose:
            print("data_dependent_init: change-rate spread", float(rates.max() / rates.min()))
    report.summary.update(
        output_change=engine.relative_change(out0, engine.predict(model, batch)),
        between_layer={"spread_before": before, "spread_after": float(rates.max() / rates.min()),
                       "iterations": iters, "constraints": constraints.rows.shape[0]},
        notes=constraints.notes, loss=loss_fn.description)
    for row, rate in zip(report.rows, rates):
        row.values["change_rate"] = float(rate)

