"""The loss, its gradients at given kernel values, and an optimizer's first step on copies.

Nothing here assigns a model variable: gradients come from ``model.stateless_call`` with the
values substituted, and the optimizer's step is taken by a fresh copy of it on scratch
variables.
"""

from __future__ import annotations

import math
import threading
from typing import Any, Callable, List, Optional, Sequence, Tuple

import keras
import numpy as np

from keras_normed import _keras_compat as compat
from keras_normed.engine.data import Batch

__all__ = ["Loss", "resolve_loss", "default_loss", "resolve_optimizer", "loss_and_gradients",
           "optimizer_steps", "step_exponent", "step_norms_and_exponent", "norms", "predict",
           "outside_distribution"]


class Loss:
    """The loss of a batch, as ``fit`` computes it.

    ``compiled``: the model's own ``compute_loss`` (loss per output, loss weights,
    regularization), run statelessly. Otherwise ``per_output`` holds one Keras loss per output
    (given, or :func:`default_loss`), summed over outputs, weighted by ``sample_weight``.
    """

    def __init__(self, compiled: bool, per_output: Optional[list] = None, description: str = ""):
        self.compiled = compiled
        self.per_output = per_output or []
        self.description = description

    def __call__(self, model, trainable, non_trainable, batch: Batch, y_pred):
        if self.compiled:
            metrics = [keras.ops.convert_to_tensor(v) for v in model.metrics_variables]
            value, _ = model.stateless_compute_loss(trainable, non_trainable, metrics,
                                                    x=batch.x, y=batch.y, y_pred=y_pred,
                                                    sample_weight=batch.sample_weight,
                                                    training=True)
            return value
        preds = keras.tree.flatten(y_pred)
        targets = _targets_in_output_order(model, batch.y, len(preds))
        weights = batch.sample_weight
        if isinstance(weights, (dict, list, tuple)):  # one per output, as fit takes them
            weights = _targets_in_output_order(model, weights, len(preds), "sample_weight")
        else:
            weights = [weights] * len(preds)
        total = 0.0
        for fn, y, p, w in zip(self.per_output, targets, preds, weights):
            total = total + fn(y, p, sample_weight=w)
        return total


def _targets_in_output_order(model, y, n: int, what: str = "y") -> list:
    if isinstance(y, dict):
        names = list(getattr(model, "output_names", None) or [])
        missing = [k for k in names if k not in y]
        if missing:
            raise ValueError(f"`{what}` has no entries for outputs {missing} of model "
                             f"{model.name!r}; give one per output.")
        return [y[k] for k in names]
    flat = keras.tree.flatten(y)
    if len(flat) != n:
        raise ValueError(f"`{what}` holds {len(flat)} array(s) for {n} model output(s); give "
                         "one per output.")
    return flat


def default_loss(y, y_pred) -> keras.losses.Loss:
    """The loss used when none is compiled or given, chosen from one output and its target.

    - class indices (integer labels, or floats holding whole numbers) of shape ``(n,)`` or
      ``(n, 1)`` for an output of ``k > 1`` units: sparse categorical cross-entropy;
    - one-hot or probability rows of the output's shape: categorical cross-entropy;
    - anything else: mean squared error.

    ``from_logits`` is read from the output: rows of non-negative values summing to 1 are
    probabilities, anything else logits.
    """
    y = np.asarray(y)
    p = np.asarray(keras.ops.convert_to_numpy(y_pred), dtype=np.float64)
    units = p.shape[-1] if p.ndim >= 2 else 1
    probabilities = p.ndim >= 2 and p.min() >= 0 and np.allclose(p.sum(-1), 1.0, atol=1e-3)
    whole = np.issubdtype(y.dtype, np.integer) or (
        np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)) and y.min() >= 0)
    index_shaped = y.ndim == p.ndim - 1 or (y.ndim == p.ndim and y.shape[-1] == 1)
    if units > 1 and whole and index_shaped and y.max(initial=0) < units:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=not probabilities)
    if units > 1 and y.shape == p.shape and y.min() >= 0 and np.allclose(y.sum(-1), 1.0,
                                                                           atol=1e-3):
        return keras.losses.CategoricalCrossentropy(from_logits=not probabilities)
    return keras.losses.MeanSquaredError()


def _as_loss(item, where: str):
    if isinstance(item, str):
        try:
            return _wrapped(keras.losses.get(item))
        except ValueError as err:
            raise ValueError(f"`loss`{where}: unknown loss name {item!r}; pass a Keras loss "
                             "name, a keras.losses.Loss or a callable (y_true, y_pred).") from err
    if callable(item):
        return _wrapped(item)
    raise TypeError(f"`loss`{where} must be a Keras loss, a loss name or a callable "
                    f"(y_true, y_pred), got {item!r}.")


def _wrapped(fn):
    """A Keras ``Loss`` (reduction, ``sample_weight``) around a plain ``(y_true, y_pred)``."""
    if isinstance(fn, keras.losses.Loss):
        return fn
    return _FunctionLoss(fn)


class _FunctionLoss(keras.losses.Loss):
    def __init__(self, fn):
        super().__init__(name=getattr(fn, "__name__", "loss"))
        self.fn = fn

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred)


def resolve_loss(model, batch: Batch, loss=None) -> Loss:
    """``loss`` given (one for every output, a list in output order or a dict by output name),
    else the compiled one, else :func:`default_loss` per output."""
    if loss is None and getattr(model, "loss", None) is not None \
            and hasattr(model, "stateless_compute_loss"):
        return Loss(True, description="compiled")
    preds = keras.tree.flatten(predict(model, Batch(_head(batch.x)), training=False))
    if batch.y is None:
        raise ValueError("This step needs targets: pass `(x, y)`.")
    targets = _targets_in_output_order(model, batch.y, len(preds))
    if loss is None:
        fns = [default_loss(_head(y), p) for y, p in zip(targets, preds)]
        return Loss(False, fns, "default: " + ", ".join(type(f).__name__ for f in fns))
    if isinstance(loss, (dict, list, tuple)):  # one per output, as compile takes them
        fns = [_as_loss(item, f"[{i}]") for i, item in
               enumerate(_targets_in_output_order(model, loss, len(preds), "loss"))]
    else:
        fns = [_as_loss(loss, "")] * len(preds)
    return Loss(False, fns, "given")


def _head(x, n: int = 8):
    return keras.tree.map_structure(lambda a: a[:n], x)


def resolve_optimizer(model, optimizer=None):
    """The optimizer whose first step defines growth: given, else compiled, else SGD(0.01)."""
    if optimizer is None:
        optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return keras.optimizers.SGD(learning_rate=0.01)
    if isinstance(optimizer, str):
        try:
            return keras.optimizers.get(optimizer)
        except ValueError as err:
            raise ValueError(f"`optimizer`: unknown optimizer name {optimizer!r}; pass a name "
                             "such as 'sgd' or 'adam', or a keras.optimizers.Optimizer.") from err
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise TypeError(f"`optimizer` must be a keras.optimizers.Optimizer or its name, got "
                        f"{optimizer!r}.")
    return optimizer


def _training_kwargs(model, training: bool) -> dict:
    return {"training": training} if compat.call_takes_training(model) else {}


def _tensors(x):
    return keras.tree.map_structure(keras.ops.convert_to_tensor, x)


def predict(model, batch: Batch, training: bool = False):
    """The model's output on ``batch.x`` (no state is updated)."""
    if not model.non_trainable_variables:  # nothing a call could update: the fast path
        return model(_tensors(batch.x), **_training_kwargs(model, training))
    trainable = [keras.ops.convert_to_tensor(v) for v in model.trainable_variables]
    non_trainable = [keras.ops.convert_to_tensor(v) for v in model.non_trainable_variables]
    y_pred, _ = model.stateless_call(trainable, non_trainable, _tensors(batch.x),
                                     **_training_kwargs(model, training))
    return y_pred


def loss_and_gradients(model, batch: Batch, variables: Sequence[Any], values: Sequence[Any],
                       loss: Loss, training: bool = True, return_output: bool = False,
                       as_numpy: bool = True) -> Tuple[Any, ...]:
    """The loss and its gradient with respect to ``variables``, evaluated with ``variables``
    holding ``values`` (arrays or backend tensors; the model is not changed); with
    ``return_output`` also the model's output of that forward pass. Gradients are float64
    arrays, or with ``as_numpy=False`` backend tensors (zeros where a variable gets none).

    The forward pass is ``model.stateless_call`` with the values substituted, on every backend;
    only the differentiation is the backend's own: ``tf.GradientTape`` on TensorFlow,
    ``jax.value_and_grad`` on JAX, ``torch.autograd.grad`` on PyTorch (not run by this
    project's CI: ``make test-torch`` where torch is installed).
    """
    name = keras.backend.backend()
    if name not in _GRADIENTS:
        raise NotImplementedError(
            f"Gradients are implemented for the TensorFlow, JAX and PyTorch backends, not "
            f"KERAS_BACKEND={name!r}; use rule='analytic' (no gradients) there.")
    position = {id(v): i for i, v in enumerate(variables)}
    slots = {}  # index in `variables` -> index in model.trainable_variables
    for j, var in enumerate(model.trainable_variables):
        i = position.get(id(var))
        if i is not None:
            slots[i] = j
    missing = [variables[i].path for i in range(len(variables)) if i not in slots]
    if missing:
        raise ValueError(f"Variables {missing[:4]} are not trainable variables of model "
                         f"{model.name!r}.")
    value, grads, y_pred = _GRADIENTS[name](model, batch, variables, values, loss, training,
                                            [slots[i] for i in range(len(variables))])
    out = []
    for g, v in zip(grads, values):
        if g is None:
            g = keras.ops.zeros(keras.ops.shape(v), "float32")
        out.append(np.asarray(keras.ops.convert_to_numpy(g), np.float64) if as_numpy else g)
    if return_output:
        return float(value), out, y_pred
    return float(value), out


def _substituted(model, variables, values, slots):
    """The model's trainable values with ``values`` at ``slots`` (backend tensors), and the
    non-trainable ones."""
    trainable = [keras.ops.convert_to_tensor(v) for v in model.trainable_variables]
    for var, value, j in zip(variables, values, slots):
        trainable[j] = keras.ops.convert_to_tensor(value, dtype=var.dtype)
    non_trainable = [keras.ops.convert_to_tensor(v) for v in model.non_trainable_variables]
    return trainable, non_trainable


def _forward_loss(model, batch, loss, training, trainable, non_trainable, x):
    y_pred, _ = model.stateless_call(trainable, non_trainable, x,
                                     **_training_kwargs(model, training))
    value = loss(model, trainable, non_trainable, batch, y_pred)
    return keras.ops.mean(keras.ops.cast(value, "float32")), y_pred


def _tensorflow_gradients(model, batch, variables, values, loss, training, slots):
    import tensorflow as tf

    trainable, non_trainable = _substituted(model, variables, values, slots)
    watched = [trainable[j] for j in slots]
    x = _tensors(batch.x)
    with tf.GradientTape() as tape:
        tape.watch(watched)
        value, y_pred = _forward_loss(model, batch, loss, training, trainable, non_trainable, x)
    return value, tape.gradient(value, watched), y_pred


def _jax_gradients(model, batch, variables, values, loss, training, slots):
    import jax

    trainable, non_trainable = _substituted(model, variables, values, slots)
    x = _tensors(batch.x)

    def fn(watched):
        current = list(trainable)
        for j, value in zip(slots, watched):
            current[j] = value
        return _forward_loss(model, batch, loss, training, current, non_trainable, x)

    (value, y_pred), grads = jax.value_and_grad(fn, has_aux=True)(
        [trainable[j] for j in slots])
    return value, grads, y_pred


def _torch_gradients(model, batch, variables, values, loss, training, slots):
    # Written against Keras's torch backend (stateless_call, autograd.grad) but not run by
    # this project's CI, whose machines have no torch: `make test-torch` runs the suite there.
    import torch

    trainable, non_trainable = _substituted(model, variables, values, slots)
    watched = [trainable[j].detach().requires_grad_(True) for j in slots]
    for j, tensor in zip(slots, watched):
        trainable[j] = tensor
    x = _tensors(batch.x)
    with torch.enable_grad():
        value, y_pred = _forward_loss(model, batch, loss, training, trainable, non_trainable,
                                      x)
        grads = torch.autograd.grad(value, watched, allow_unused=True)
    return value.detach(), grads, keras.tree.map_structure(
        lambda t: t.detach() if hasattr(t, "detach") else t, y_pred)


_GRADIENTS = {"tensorflow": _tensorflow_gradients, "jax": _jax_gradients,
              "torch": _torch_gradients}


def outside_distribution(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` outside any ``tf.distribute`` scope: scratch variables made inside a
    strategy scope would be mirrored, and an optimizer applied to them outside replica context
    fails. TensorFlow keeps the strategy stack per thread, so a worker thread sees none."""
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


# Optimizers whose step treats every entry on its own (no per-tensor norms or shapes, as in
# Lamb, Adafactor or Muon): their first step on many variables equals one step on all the
# entries concatenated, which costs one variable instead of one per kernel.
_ELEMENTWISE = ("SGD", "Adam", "AdamW", "Adamax", "Nadam", "RMSprop", "Adagrad", "Adadelta",
                "Ftrl", "Lion")


def _fusable(optimizer) -> bool:
    config = optimizer.get_config()
    return (type(optimizer).__name__ in _ELEMENTWISE
            and type(optimizer).__module__.startswith("keras")
            and config.get("clipnorm") is None
            and not config.get("exclude_from_weight_decay"))


def _step_tensors(optimizer, grads: Sequence[Any], values: Sequence[Any], fuse: bool = True
                  ) -> list:
    """The first step of a fresh copy of ``optimizer``, as backend tensors (float32). Elementwise
    optimizers step once on all entries concatenated: one variable, no host copies."""
    ops = keras.ops
    grads, values = [_f32(g) for g in grads], [_f32(v) for v in values]
    if fuse and _fusable(optimizer) and len(values) > 1:
        sizes = [int(np.prod(ops.shape(v))) for v in values]
        flat, = _step_tensors(optimizer, [_flat(grads)], [_flat(values)])
        parts = ops.split(flat, [int(i) for i in np.cumsum(sizes)[:-1]])
        return [ops.reshape(p, ops.shape(v)) for p, v in zip(parts, values)]

    def step():
        opt = optimizer.__class__.from_config(optimizer.get_config())
        variables = [keras.Variable(v, trainable=True, name=f"probe_{i}")
                     for i, v in enumerate(values)]
        opt.apply_gradients(list(zip(grads, variables)))
        return [ops.subtract(ops.convert_to_tensor(var), v) for var, v in zip(variables, values)]

    return outside_distribution(step)


def optimizer_steps(optimizer, grads: Sequence[Any], values: Sequence[Any]
                    ) -> List[np.ndarray]:
    """The first step a fresh copy of ``optimizer`` takes from ``values`` given ``grads``
    (arrays or backend tensors), as float64 arrays."""
    return [np.asarray(keras.ops.convert_to_numpy(t), np.float64)
            for t in _step_tensors(optimizer, grads, values)]


def norms(tensors: Sequence[Any]) -> np.ndarray:
    """The Euclidean norm of each tensor (arrays or backend tensors), computed on the backend
    in float32: one host copy of ``len(tensors)`` scalars."""
    if not tensors:
        return np.zeros(0)
    # A sum per tensor: faster than one segment sum over their concatenation on TF's CPU.
    squares = keras.ops.stack([keras.ops.sum(keras.ops.square(_f32(t))) for t in tensors])
    return np.sqrt(np.asarray(keras.ops.convert_to_numpy(squares), np.float64))


def _f32(t):
    t = keras.ops.convert_to_tensor(t)
    return t if keras.backend.standardize_dtype(t.dtype) == "float32" else keras.ops.cast(
        t, "float32")


def _flat(tensors: Sequence[Any]):
    return keras.ops.concatenate([keras.ops.reshape(t, (-1,)) for t in tensors])


def _exponent_probe(flat_g, flat_v):
    # About 8k entries spread over every tensor: two strided slices of the concatenations
    # (one slice per tensor costs more than the whole optimizer step at 100 layers).
    stride = max(1, int(flat_g.shape[0]) // 8192)
    sample_g, sample_v = flat_g[::stride], flat_v[::stride]
    return [sample_g, 2.0 * sample_g], [sample_v, sample_v]


def _exponent(n1: float, n2: float) -> float:
    """The exponent from the norms of the steps taken with ``g`` and ``2 g``."""
    if not (n1 > 0 and math.isfinite(n1) and math.isfinite(n2)):
        return 2.0  # a non-finite step is refused by the caller
    p = float(np.clip(1.0 + math.log2(max(n2 / n1, 1e-12)), 1.0, 2.0))
    for exact in (1.0, 2.0):  # float32 rounding of the two steps
        if abs(p - exact) < 1e-3:
            return exact
    return p


def _sgd_first_step(optimizer) -> Optional[float]:
    """``f`` with first step ``-f g`` for Keras's own SGD when nothing but the step touches
    the weights (no decay, clipping, accumulation or loss scaling), else ``None``. Momentum
    starts at zero, so the first step is ``-lr g``, and ``-(1 + momentum) lr g`` with Nesterov:
    no optimizer needs to run (a tenth of ``rescale``'s time on a 100-layer MLP)."""
    if type(optimizer) is not keras.optimizers.SGD:
        return None
    config = optimizer.get_config()
    if any(config.get(key) for key in ("weight_decay", "clipnorm", "clipvalue", "global_clipnorm",
                                       "gradient_accumulation_steps")):
        return None
    if config.get("loss_scale_factor") not in (None, 1, 1.0):
        return None
    lr = config["learning_rate"]
    if isinstance(lr, dict):  # a schedule, at step 0
        lr = keras.optimizers.schedules.deserialize(lr)(0)
    lr = float(keras.ops.convert_to_numpy(lr))
    return lr * (1.0 + config["momentum"] if config["nesterov"] else 1.0)


def step_norms_and_exponent(optimizer, grads: Sequence[Any], values: Sequence[Any]
                            ) -> Tuple[np.ndarray, float]:
    """The norm of each variable's first step and :func:`step_exponent`, in one optimizer apply
    on the backend: what the growth needs, without copying the steps to the host."""
    factor = _sgd_first_step(optimizer)
    if factor is not None:
        return factor * norms(grads), 2.0
    ops = keras.ops
    grads, values = [_f32(g) for g in grads], [_f32(v) for v in values]
    flat_g, flat_v = _flat(grads), _flat(values)
    pair_g, pair_v = _exponent_probe(flat_g, flat_v)
    if not (_fusable(optimizer) and len(values) > 1):
        found = norms(_step_tensors(optimizer, grads + pair_g, values + pair_v))
        return found[:-2], _exponent(*found[-2:])
    # The flat copies are the one variable of the step, beside the exponent's two samples;
    # the steps' norms are taken on its slices (no reshape back).
    step, step_1, step_2 = _step_tensors(optimizer, [flat_g] + pair_g, [flat_v] + pair_v,
                                         fuse=False)
    sizes = [int(np.prod(ops.shape(v))) for v in values]
    found = norms(ops.split(step, [int(i) for i in np.cumsum(sizes)[:-1]]) + [step_1, step_2])
    return found[:-2], _exponent(*found[-2:])


def step_exponent(optimizer, grads: Sequence[Any], values: Sequence[Any]) -> float:
    """``p`` in ``growth ~ c**-p`` after ``W -> c W``: 2 for a step proportional to the
    gradient (SGD, momentum), 1 for a sign-like step (Adam's first step). Measured on a sample
    of the entries by stepping with ``g`` and ``2 g`` (as two variables of one apply)."""
    pair_g, pair_v = _exponent_probe(_flat([_f32(g) for g in grads]),
                                     _flat([_f32(v) for v in values]))
    return _exponent(*norms(_step_tensors(optimizer, pair_g, pair_v)))
