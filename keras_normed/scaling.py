"""Model-level, layer-consistent scales: the between-layer part of the normed method.

Yang et al. (2021) ask that the *growth of parameters* be consistent between layers, measured in
a norm on the parameter space. Here the norm is the statistical one,
``||theta||_T = ||T(theta)||_F`` (``= sqrt(sharing) * ||theta||`` under uniform sharing), and the
growth of layer ``l`` is its relative change under one optimizer step,

    r_l = ||step(W_l)||_T / ||W_l||_T.

:func:`rescale` multiplies each kernel initialized by :class:`~keras_normed.initializers.Normed`
by a factor ``c_l`` chosen so that all ``r_l`` become equal, with ``prod_l c_l = 1`` (log-mean 1):
for positively homogeneous networks (ReLU, max-pool, zero biases) this keeps the function computed
at initialization, and only redistributes the scale between layers.

Two rules:

- ``"probe"`` (``data=(x, y)`` given): measure ``r_l`` with a gradient tape on the probe batch and
  the optimizer's own first step (a fresh copy of the optimizer is applied to copies of the
  kernels: SGD's step is ``lr * g``; Adam-like steps are ``~ lr * sign(g)``). In a homogeneous net
  ``r_l`` scales as ``c_l ** -p`` with ``p = 2`` for gradient-proportional steps and ``p = 1`` for
  sign-like steps (``p`` is measured by stepping with ``g`` and ``2 g``). So
  ``c_l = (r_l / geomean(r)) ** (1 / p)``; measure and rescale again until
  ``max(r) / min(r) <= tol`` (non-homogeneous parts make the law approximate).
- ``"analytic"`` (no data): with independent uses of each parameter, SGD gives
  ``r_l**2 ~ lr**2 v_delta v_x * sharing_l * fan_in_l / gain**2``, hence
  ``c_l = (sharing_l fan_in_l / geomean(sharing fan_in)) ** (1/4)``; a sign-like step gives
  ``r_l = lr / std_l ~ sqrt(fan_in_l)``, hence ``c_l = (fan_in_l / geomean(fan_in)) ** (1/2)``.

The model is marked as rescaled in each Normed initializer's config (``rescaled=True``, and the
factor in ``scale``), which is saved with the model: calling :func:`rescale` again, e.g. from the
:class:`~keras_normed.callbacks.NormedScaling` callback of a second ``fit`` or after loading a
``.keras`` file, is a no-op. Weights that were trained (``optimizer.iterations > 0``) or that no
longer equal what their initializer draws (loaded, assigned, trained) are refused unless
``force=True``. Every value is computed before the first assignment, so a failing call leaves
all weights unchanged.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import warnings
from typing import Any, Dict, List, Optional, Sequence

import keras
import numpy as np

from keras_normed import structure
from keras_normed.initializers.normed import Normed

__all__ = ["LayerScale", "ScalingReport", "rescale", "normed_layers", "is_rescaled",
           "kernel_structure", "measure_growth"]


# --------------------------------------------------------------------------------------------
# Structure of Keras's own layers (used when keras_normed.structure has no rule for them).


def kernel_structure(layer) -> Optional[structure.LinearStructure]:
    """:func:`keras_normed.structure.layer_structure` of a built layer, or ``None`` when the
    layer has no kernel of known structure or its input shape is not fully known."""
    shape = structure.built_input_shape(layer)
    if shape is None:
        return None
    try:
        return structure.layer_structure(layer, shape)
    except ValueError:
        # Unknown spatial sizes (e.g. a conv on variable-size images): no sharing to measure.
        return None


# --------------------------------------------------------------------------------------------
# The report.


@dataclasses.dataclass
class LayerScale:
    """One row of a :class:`ScalingReport`."""

    path: str
    kind: str
    fan_in: int
    sharing: float
    n_params: int
    growth_before: float
    growth_after: float
    scale: float


@dataclasses.dataclass
class ScalingReport:
    """What :func:`rescale` computed and did.

    ``growth_*`` are measured ``r_l`` (rule ``"probe"``) or the analytic prediction normalized to
    log-mean 1 (rule ``"analytic"``); ``spread = max / min`` over layers.
    """

    rule: str
    applied: bool
    reason: str = ""
    layers: List[LayerScale] = dataclasses.field(default_factory=list)
    iterations: int = 0
    exponent: float = 2.0
    tol: float = 1.5

    @property
    def spread_before(self) -> float:
        return _spread([row.growth_before for row in self.layers])

    @property
    def spread_after(self) -> float:
        return _spread([row.growth_after for row in self.layers])

    @property
    def scales(self) -> Dict[str, float]:
        return {row.path: row.scale for row in self.layers}

    def as_dict(self) -> Dict[str, Any]:
        return {"rule": self.rule, "applied": self.applied, "reason": self.reason,
                "iterations": self.iterations, "exponent": self.exponent, "tol": self.tol,
                "spread_before": self.spread_before, "spread_after": self.spread_after,
                "layers": [dataclasses.asdict(row) for row in self.layers]}

    def __str__(self) -> str:
        head = (f"normed rescale ({self.rule}): applied={self.applied}"
                + (f" ({self.reason})" if self.reason else "")
                + f", iterations={self.iterations}, exponent p={self.exponent:.2f}, "
                f"spread {self.spread_before:.3g} -> {self.spread_after:.3g}")
        lines = [head, f"{'layer':<34}{'kind':<18}{'fan_in':>8}{'sharing':>10}"
                       f"{'r before':>11}{'r after':>11}{'scale':>9}"]
        for r in self.layers:
            lines.append(f"{r.path[-33:]:<34}{r.kind[:17]:<18}{r.fan_in:>8}{r.sharing:>10.4g}"
                         f"{r.growth_before:>11.4g}{r.growth_after:>11.4g}{r.scale:>9.4g}")
        return "\n".join(lines)


def _spread(values: Sequence[float]) -> float:
    vals = [v for v in values if v > 0 and math.isfinite(v)]
    return max(vals) / min(vals) if vals else float("nan")


def _geomean(values) -> float:
    return float(np.exp(np.mean(np.log(np.asarray(values, dtype=np.float64)))))


# --------------------------------------------------------------------------------------------
# Walking the model.


def _all_layers(model) -> List[Any]:
    if hasattr(model, "_flatten_layers"):
        return list(model._flatten_layers(include_self=True, recursive=True))
    return [model]


def normed_layers(model) -> List[Any]:
    """Every (nested, deduplicated) layer whose trainable kernel was initialized by
    :class:`Normed` (frozen kernels do not grow and are left alone)."""
    return [layer for layer in _all_layers(model)
            if isinstance(getattr(layer, "kernel_initializer", None), Normed)
            and getattr(layer, "kernel", None) is not None and layer.kernel.trainable]


def is_rescaled(model) -> bool:
    """Whether :func:`rescale` was applied (read from the saved Normed initializer configs)."""
    return any(layer.kernel_initializer.rescaled for layer in normed_layers(model))


def _check_built(model) -> None:
    unbuilt = [layer.name for layer in _all_layers(model) if not layer.built]
    if unbuilt:
        raise ValueError(
            f"Model {model.name!r} is not built (unbuilt layers: {unbuilt[:5]}). Build it first: "
            "give it an Input, call it on a batch, or call `model.build(input_shape)`.")


def _fresh_weights_mismatch(layers) -> List[str]:
    """Layers whose kernel differs from what its Normed initializer draws."""
    bad = []
    for layer in layers:
        kernel = layer.kernel
        init = layer.kernel_initializer
        expected = keras.ops.convert_to_numpy(init.sample(kernel.shape, kernel.dtype, layer))
        actual = keras.ops.convert_to_numpy(kernel)
        if actual.shape != expected.shape or not np.allclose(actual, expected, rtol=1e-5,
                                                             atol=1e-7):
            bad.append(kernel.path)
    return bad


# --------------------------------------------------------------------------------------------
# Measuring growth.


def _resolve_loss(model, loss, y_pred_sample):
    if loss is None:
        loss = getattr(model, "loss", None)
    if loss is None:
        # Integer labels and a probability or logit output: sparse categorical cross-entropy.
        p = keras.ops.convert_to_numpy(y_pred_sample)
        probs = p.ndim == 2 and p.min() >= 0 and np.allclose(p.sum(-1), 1.0, atol=1e-3)
        return keras.losses.SparseCategoricalCrossentropy(from_logits=not probs)
    if isinstance(loss, str):
        return keras.losses.get(loss)
    if callable(loss):
        return loss
    raise TypeError(f"`loss` must be a Keras loss, a loss name or a callable, got {loss!r}.")


def _first_batch(data):
    if isinstance(data, (tuple, list)):
        if len(data) < 2:
            raise ValueError("`data` must be a probe batch `(x, y)`; got a sequence of length "
                             f"{len(data)}.")
        x, y = data[0], data[1]
    else:
        try:
            batch = next(iter(data))
        except TypeError as err:
            raise TypeError("`data` must be `(x, y)` arrays or an iterable of `(x, y)` "
                            f"batches, got {type(data).__name__}.") from err
        except StopIteration as err:
            raise ValueError("`data` is an empty iterable: give a probe batch `(x, y)`.") from err
        x, y = batch[0], batch[1]
    n_x, n_y = int(keras.ops.shape(x)[0]), int(keras.ops.shape(y)[0])
    if n_x == 0 or n_x != n_y:
        raise ValueError(f"The probe batch `data` must hold the same positive number of inputs "
                         f"and targets; got {n_x} inputs and {n_y} targets.")
    return x, y


def _training_kwargs(model, training: bool) -> Dict[str, bool]:
    # Subclassed models may define call(x) without a `training` argument.
    return {"training": training} if getattr(model, "_call_has_training_arg", True) else {}


def _clone_optimizer(optimizer):
    return optimizer.__class__.from_config(optimizer.get_config())


def _optimizer_steps(optimizer, grads, values) -> List[np.ndarray]:
    """The first step a fresh copy of ``optimizer`` takes from ``values`` given ``grads``."""

    def step():
        opt = _clone_optimizer(optimizer)
        variables = [keras.Variable(np.asarray(v), trainable=True, name=f"probe_{i}")
                     for i, v in enumerate(values)]
        opt.apply_gradients(list(zip([keras.ops.convert_to_tensor(g) for g in grads],
                                     variables)))
        return [keras.ops.convert_to_numpy(var) - np.asarray(v)
                for var, v in zip(variables, values)]

    return _outside_distribution(step)


def _outside_distribution(fn):
    """Run ``fn`` outside any ``tf.distribute`` scope.

    The probe step works on scratch copies; created inside a strategy scope they would be
    mirrored, and applying an optimizer to them outside replica context fails. TensorFlow keeps
    the strategy stack per thread, so a worker thread sees none.
    """
    if keras.backend.backend() != "tensorflow":
        return fn()
    import tensorflow as tf

    if not tf.distribute.has_strategy():
        return fn()
    out: dict = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - re-raised in the calling thread
            out["error"] = err

    worker = threading.Thread(target=target)
    worker.start()
    worker.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def _gradients(model, kernels, values, x, y, loss_fn, training):
    """Gradients of the loss w.r.t. ``kernels`` when they hold ``values`` (stateless)."""
    if keras.backend.backend() != "tensorflow":
        raise NotImplementedError("The probe rule needs the TensorFlow backend; use "
                                  "rule='analytic' on other backends.")
    import tensorflow as tf

    by_id = {id(k): i for i, k in enumerate(kernels)}
    trainable = [tf.convert_to_tensor(v) for v in model.trainable_variables]
    watched = []
    for j, var in enumerate(model.trainable_variables):
        if id(var) in by_id:
            trainable[j] = tf.convert_to_tensor(values[by_id[id(var)]], dtype=var.dtype)
            watched.append((by_id[id(var)], j))
    non_trainable = [tf.convert_to_tensor(v) for v in model.non_trainable_variables]
    with tf.GradientTape() as tape:
        for _, j in watched:
            tape.watch(trainable[j])
        y_pred, _ = model.stateless_call(trainable, non_trainable, x,
                                         **_training_kwargs(model, training))
        loss_value = keras.ops.mean(loss_fn(y, y_pred))
    grads = tape.gradient(loss_value, [trainable[j] for _, j in watched])
    out: List[Optional[np.ndarray]] = [None] * len(kernels)
    for (i, _), g in zip(watched, grads):
        out[i] = np.zeros(np.shape(values[i]), np.float32) if g is None else g.numpy()
    return float(loss_value), out, y_pred


def measure_growth(model, data, kernels=None, values=None, *, optimizer=None, loss=None,
                   training: bool = True, structures=None) -> Dict[str, Any]:
    """Relative growth ``r_l = ||step||_T / ||W_l||_T`` of ``kernels`` under one optimizer step.

    Args:
        model: a built Keras model.
        data: probe batch ``(x, y)``.
        kernels: variables to measure (default: the Normed kernels).
        values: values to measure them at (default: their current values); nothing is assigned.
        optimizer: whose first step to use (default: the compiled one, else ``SGD(0.01)``).
        loss: default the compiled loss, else sparse categorical cross-entropy.
        training: call the model in training mode (batch statistics, dropout).
        structures: the :class:`~keras_normed.structure.LinearStructure` of each kernel, for the
            ``T``-norm (default ``sharing = 1``: the ratio does not depend on it when uniform).

    Returns a dict with ``growth`` (list), ``loss``, ``grads`` and ``steps``.
    """
    if kernels is None:
        kernels = [layer.kernel for layer in normed_layers(model)]
    if values is None:
        values = [keras.ops.convert_to_numpy(k) for k in kernels]
    optimizer = _default_optimizer(model, optimizer)
    x, y = _first_batch(data)
    x = keras.ops.convert_to_tensor(x)
    loss_fn = loss
    if loss is None or isinstance(loss, str):
        loss_fn = _resolve_loss(model, loss, model(x[:2], **_training_kwargs(model, False)))
    loss_value, grads, _ = _gradients(model, kernels, values, x, y, loss_fn, training)
    if not math.isfinite(loss_value) or not all(np.all(np.isfinite(g)) for g in grads):
        raise ValueError(f"The probe batch gives a non-finite loss ({loss_value}) or gradient; "
                         "check `data` and `loss`.")
    steps = _optimizer_steps(optimizer, grads, values)
    growth = []
    for i, (step, value) in enumerate(zip(steps, values)):
        share = 1.0 if structures is None or structures[i] is None else structures[i].sharing
        norm_w = math.sqrt(share) * float(np.linalg.norm(value))
        growth.append(math.sqrt(share) * float(np.linalg.norm(step)) / max(norm_w, 1e-30))
    return {"growth": growth, "loss": loss_value, "grads": grads, "steps": steps}


def _default_optimizer(model, optimizer):
    if optimizer is None:
        optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return keras.optimizers.SGD(learning_rate=0.01)
    if isinstance(optimizer, str):
        return keras.optimizers.get(optimizer)
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise TypeError(f"`optimizer` must be a Keras optimizer or its name, got {optimizer!r}.")
    return optimizer


def _step_exponent(optimizer, grads, values) -> float:
    """``p`` in ``r ~ c**-p``: 2 if the step is proportional to the gradient, 1 if sign-like."""
    s1 = _optimizer_steps(optimizer, grads, values)
    s2 = _optimizer_steps(optimizer, [2.0 * g for g in grads], values)
    n1 = math.sqrt(sum(float(np.sum(s ** 2)) for s in s1))
    n2 = math.sqrt(sum(float(np.sum(s ** 2)) for s in s2))
    if n1 <= 0:
        return 2.0
    return float(np.clip(1.0 + math.log2(max(n2 / n1, 1e-12)), 1.0, 2.0))


# --------------------------------------------------------------------------------------------
# The model-level step.


def rescale(model, data=None, *, optimizer=None, loss=None, force: bool = False,
            rule: str = "auto", tol: float = 1.5, max_iter: int = 6, training: bool = True,
            analytic_form: str = "fan", verbose: bool = False) -> ScalingReport:
    """Layer-consistent rescaling of the Normed-initialized kernels of a built model.

    ``W_l <- c_l W_l`` with ``geomean(c) = 1`` so that the relative growth
    ``r_l = ||step(W_l)||_T / ||W_l||_T`` of every layer is the same (see the module docstring
    for both rules and their derivation).

    Example:

    >>> model = keras_normed.experiments.networks.paper_net("c")
    >>> report = keras_normed.rescale(model, (x[:256], y[:256]))
    >>> print(report)          # per-layer fan_in, sharing, growth before/after, scale

    Args:
        model: a built Keras model (Sequential, Functional, subclassed; nested models and layers
            are walked recursively). Only layers with ``kernel_initializer`` a
            :class:`~keras_normed.initializers.Normed` are rescaled; biases are left as they are
            (zero at initialization by default).
        data: probe batch ``(x, y)`` (or an iterable of batches: the first one is used); selects
            the ``"probe"`` rule. Without it the ``"analytic"`` rule is used.
        optimizer: the optimizer whose first step defines growth (default: the compiled one,
            else ``SGD(learning_rate=0.01)``). A fresh copy is used; its state is not touched.
        loss: default the compiled loss, else sparse categorical cross-entropy (``from_logits``
            guessed from the output: probabilities or logits).
        force: rescale even if the model is already rescaled, trained or its kernels differ from
            their initial draw.
        rule: ``"auto"`` (probe if ``data`` else analytic), ``"probe"`` or ``"analytic"``.
        tol: target spread ``max(r) / min(r)`` of the probe rule.
        max_iter: most measure/rescale rounds of the probe rule.
        analytic_form: load of the analytic rule for gradient-proportional steps: ``"fan"``
            (``fan_in**2 / (n_params gain**2)``, default) or ``"sharing"``
            (``sharing * fan_in``, the first derivation; kept for comparison).
        training: run the probe forward pass in training mode.
        verbose: print the report.

    Returns:
        A :class:`ScalingReport` (``applied=False`` with a ``reason`` when it was a no-op).

    Raises:
        ValueError: unbuilt model, bad arguments, trained or loaded weights (without
            ``force``), a non-finite probe loss. Weights are unchanged whenever it raises.
    """
    if rule not in ("auto", "probe", "analytic"):
        raise ValueError(f"Invalid `rule` {rule!r}; expected 'auto', 'probe' or 'analytic'.")
    if analytic_form not in ("fan", "sharing"):
        raise ValueError(f"Invalid `analytic_form` {analytic_form!r}; expected 'fan' or "
                         "'sharing'.")
    if rule == "probe" and data is None:
        raise ValueError("rule='probe' needs a probe batch: pass `data=(x, y)`.")
    if not (isinstance(tol, (int, float)) and tol >= 1.0):
        raise ValueError(f"`tol` must be a number >= 1 (a max/min spread), got {tol!r}.")
    if not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"`max_iter` must be a positive int, got {max_iter!r}.")
    if rule == "auto":
        rule = "probe" if data is not None else "analytic"
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(f"`model` must be a Keras model or layer, got {type(model).__name__}.")
    _check_built(model)
    layers = normed_layers(model)
    if not layers:
        return _done(ScalingReport(rule, False, "no layer has a Normed kernel_initializer"),
                     verbose)
    if not force and is_rescaled(model):
        return _done(ScalingReport(rule, False, "already rescaled (force=True to redo)"),
                     verbose)
    if not force:
        model_opt = getattr(model, "optimizer", None)
        iterations = getattr(model_opt, "iterations", None) if model_opt is not None else None
        if iterations is not None and int(keras.ops.convert_to_numpy(iterations)) > 0:
            raise ValueError(
                f"Model {model.name!r} was already trained ({int(iterations)} optimizer steps); "
                "rescaling now would change a trained function. Rescale before `fit`, or pass "
                "force=True.")
        changed = _fresh_weights_mismatch(layers)
        if changed:
            raise ValueError(
                f"Kernels {changed[:4]} differ from their Normed initializer's draw (trained, "
                "assigned or loaded from a file); refusing to rescale them. Pass force=True to "
                "rescale anyway.")

    kernels = [layer.kernel for layer in layers]
    structures = []
    for layer in layers:
        found = kernel_structure(layer)
        if found is None:
            fan_in, _ = structure.kernel_fans(layer, layer.kernel.shape)
            found = structure.LinearStructure(fan_in, fan_in, 1.0, False,
                                              int(np.prod(layer.kernel.shape)))
        structures.append(found)
    base = [keras.ops.convert_to_numpy(k).astype(np.float64) for k in kernels]
    optimizer = _default_optimizer(model, optimizer)

    if rule == "analytic":
        report = _analytic(layers, structures, optimizer, base, analytic_form)
    else:
        report = _probe(model, layers, kernels, structures, base, data, optimizer, loss,
                        training, tol, max_iter)

    # Everything is computed: assign (and roll back if an assignment fails).
    new_values = [b * row.scale for b, row in zip(base, report.layers)]
    old = [keras.ops.convert_to_numpy(k) for k in kernels]
    old_inits = [layer.kernel_initializer for layer in layers]
    try:
        for layer, kernel, value, row in zip(layers, kernels, new_values, report.layers):
            kernel.assign(value.astype(kernel.dtype))
            layer.kernel_initializer = _marked(layer.kernel_initializer, row.scale)
    except Exception:
        for layer, kernel, value, init in zip(layers, kernels, old, old_inits):
            kernel.assign(value)
            layer.kernel_initializer = init
        raise
    report.applied = True
    return _done(report, verbose)


def _done(report: ScalingReport, verbose: bool) -> ScalingReport:
    if verbose:
        print(report)
    return report


def _marked(init: Normed, factor: float) -> Normed:
    """A copy of ``init`` carrying the layer's factor and the rescaled mark (same draw)."""
    return init.rescaled_copy(float(factor))


def _analytic(layers, structures, optimizer, base, form: str = "fan") -> ScalingReport:
    grads = [np.random.default_rng(0).standard_normal(b.shape) for b in base]
    p = _step_exponent(optimizer, grads, base)
    gains = [layer.kernel_initializer.effective_gain * layer.kernel_initializer.scale
             for layer in layers]
    if p <= 1.5:  # sign-like step: r = lr * sqrt(n) / ||W|| = lr / std ~ sqrt(fan_in) / gain
        load = [st.fan_in / g**2 for st, g in zip(structures, gains)]
    elif form == "fan":  # r**2 ~ fan_in * rms(grad)**2 / gain**2, rms(grad)**2 ~ fan_in / n
        load = [st.fan_in**2 / st.n_params / g**2 for st, g in zip(structures, gains)]
    else:  # "sharing": the first derivation (independent uses, per-unit backward variance)
        load = [st.sharing * st.fan_in for st in structures]
    gm = _geomean(load)
    rows = []
    for layer, st, v in zip(layers, structures, load):
        c = (v / gm) ** (1.0 / (2.0 * p))
        before = math.sqrt(v / gm)
        rows.append(LayerScale(layer.kernel.path, type(layer).__name__, int(st.fan_in),
                               float(st.sharing), int(st.n_params), before, before / c**p, c))
    return ScalingReport("analytic", False, reason=f"form={form}", layers=rows, iterations=1,
                         exponent=p)


def _probe(model, layers, kernels, structures, base, data, optimizer, loss, training, tol,
           max_iter) -> ScalingReport:
    x, y = _first_batch(data)
    x = keras.ops.convert_to_tensor(x)
    loss_fn = loss
    if loss is None or isinstance(loss, str):
        loss_fn = _resolve_loss(model, loss, model(x[:2], **_training_kwargs(model, False)))
    probe = (x, y)
    scales = np.ones(len(base))
    first = None
    p = 2.0
    it = 0
    for it in range(max_iter + 1):
        values = [b * c for b, c in zip(base, scales)]
        m = measure_growth(model, probe, kernels, values, optimizer=optimizer, loss=loss_fn,
                           training=training, structures=structures)
        r = np.asarray(m["growth"])
        if first is None:
            first = r
            p = _step_exponent(optimizer, m["grads"], values)
        if np.any(r <= 0):
            dead = [kernels[i].path for i in np.flatnonzero(r <= 0)]
            raise ValueError(f"Layers {dead} get no gradient on the probe batch (dead units or "
                             "disconnected); their growth cannot be equalized.")
        if r.max() / r.min() <= tol or it == max_iter:
            break
        step = (r / _geomean(r)) ** (1.0 / p)
        scales = scales * step
        scales = scales / _geomean(scales)
    if r.max() / r.min() > tol:
        warnings.warn(f"normed rescale: growth spread {r.max() / r.min():.3g} > tol={tol} after "
                      f"{max_iter} rounds.", stacklevel=3)
    rows = [LayerScale(k.path, type(layer).__name__, int(st.fan_in), float(st.sharing),
                       int(st.n_params), float(r0), float(r1), float(c))
            for layer, k, st, r0, r1, c in zip(layers, kernels, structures, first, r, scales)]
    return ScalingReport("probe", False, layers=rows, iterations=it, exponent=p, tol=tol)
