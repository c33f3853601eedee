"""Per-layer growth diagnostics (docs/normed.md): forward variance, gradient variance and
one-step relative growth ``||step||_T / ||W||_T`` of every kernel, measured on a real batch.

Example:
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
    ...                           keras.layers.Dense(4)])
    >>> x, y = np.random.rand(512, 8), np.random.rand(512, 4)
    >>> report = growth_report(model, x[:256], y[:256], optimizer=keras.optimizers.SGD(0.01))
    >>> table = str(report)           # print(report): one row per kernel
    >>> summary = report.as_dict()    # JSON-ready
    >>> report.plot("growth.png")     # needs matplotlib
    'growth.png'
"""

from __future__ import annotations

import math

import keras
import numpy as np

from keras_normed import _keras_compat as compat
from keras_normed import engine, scaling, structure
from keras_normed.engine import Report, Row

__all__ = ["growth_report"]


def _activation_variances(model, layers, x) -> dict:
    """``{id(layer): variance of its outputs}`` of an inference-mode call on ``x``."""
    with compat.captured_calls(layers) as record:
        kwargs = {"training": False} if compat.call_takes_training(model) else {}
        model(keras.tree.map_structure(keras.ops.convert_to_tensor, x), **kwargs)
    out = {}
    for layer in layers:
        try:
            values = [np.ravel(keras.ops.convert_to_numpy(t)).astype(np.float64)
                      for _, _, o in record[id(layer)] for t in keras.tree.flatten(o)]
        except (TypeError, ValueError):  # traced: a recurrent cell called inside JAX's scan
            values = []
        out[id(layer)] = float(np.var(np.concatenate(values))) if values else math.nan
    return out


def growth_report(model, x, y=None, optimizer=None, loss=None, training: bool = True) -> Report:
    """Forward variance, gradient variance and one-step relative growth of every kernel.

    Args:
        model: a built Keras model (any kind: several inputs/outputs, nested, subclassed).
        x, y: a batch; or ``x`` alone holding data as ``model.fit`` takes it.
        optimizer: whose first step defines growth (default: compiled one, else SGD(0.01)).
        loss: default: compiled loss, else :func:`keras_normed.engine.default_loss`.
        training: run the forward pass of the step in training mode.

    Returns:
        A :class:`~keras_normed.engine.Report` (method ``"growth"``): per layer ``act_var``,
        ``grad_var``, ``growth`` (``act_var`` is NaN where the outputs are only traced: a
        recurrent cell under JAX); ``spread``, ``loss`` and ``optimizer`` in the summary.
    """
    scaling.check_built(model)
    if not isinstance(training, bool):
        raise TypeError(f"`training` must be True or False, got {training!r}.")
    batch = engine.as_batch(model, x if y is None else (x, y), need_y=True,
                            arg="x" if y is None else "x, y")
    sites = [s for s in engine.kernel_sites(model, every=True) if s.trainable]
    if not sites:
        raise ValueError(f"Model {model.name!r} has no layer with a trainable kernel.")
    variables = [s.variable for s in sites]
    constraints = engine.scale_constraints(model, variables, batch.x, training=training)
    optimizer = engine.resolve_optimizer(model, optimizer)
    m = scaling.measure_growth(model, batch, variables, optimizer=optimizer, loss=loss,
                               training=training)
    layers = list({id(s.layer): s.layer for s in sites}.values())  # a SeparableConv: 2 sites
    act = _activation_variances(model, layers, batch.x)
    rows = []
    for site, use, grads, growth in zip(sites, constraints.uses, m["grads"], m["growth"]):
        layer, var = site.layer, site.variable
        st = scaling.kernel_structure(layer) if var is getattr(layer, "kernel", None) else None
        if st is None:
            fan_in, sharing = structure.kernel_fans(layer, var.shape, var.name)[0], math.nan
        else:
            fan_in, sharing = st.fan_in, float(st.sharing)
        rows.append(Row(site.path, site.kind, use, int(fan_in), sharing, int(np.prod(var.shape)),
                        {"act_var": act[id(layer)], "grad_var": float(np.var(grads)),
                         "growth": float(growth)}))
    try:
        name = f"{type(optimizer).__name__}(lr={float(optimizer.learning_rate):.3g})"
    except (TypeError, ValueError):  # a learning-rate schedule
        name = type(optimizer).__name__
    left = engine.weights_left(model, lambda *_: "not measured", variables)
    return Report("growth", False, rows=rows,
                  summary={"loss": float(m["loss"]), "optimizer": name, "left": left})
