"""The loss, its gradients at given kernel values, and an optimizer's first step on copies:
nothing here assigns a model variable (``model.stateless_call``, scratch variables).
"""

from __future__ import annotations

import concurrent.futures
import math
import warnings
from typing import Any, Callable, List, Optional, Sequence, Tuple

import keras
import numpy as np

from keras_normed import _keras_compat as compat
from keras_normed.engine.data import Batch

__all__ = ["Loss", "RandomLabelLoss", "resolve_loss", "default_loss", "resolve_optimizer",
           "loss_and_gradients", "optimizer_steps", "step_exponent", "step_norms_and_exponent",
           "norms", "predict", "outside_distribution", "clips_globally"]


class Loss:
    """The loss of a batch, as ``fit`` computes it: ``compiled``, the model's own
    ``compute_loss`` run statelessly; else the sum over outputs of ``per_output`` (one Keras loss
    per output, given or :func:`default_loss`), weighted by ``sample_weight``."""

    def __init__(self, compiled: bool, per_output: Optional[list] = None, description: str = ""):
        self.compiled = compiled
        self.per_output = per_output or []
        self.description = description

    def __call__(self, model, trainable, non_trainable, batch: Batch, y_pred):
        if self.compiled:
            metrics = [keras.ops.convert_to_tensor(v) for v in model.metrics_variables]
            value, _ = model.stateless_compute_loss(
                trainable, non_trainable, metrics, x=batch.x, y=batch.y, y_pred=y_pred,
                sample_weight=batch.sample_weight, training=True)
            return value
        preds = keras.tree.flatten(y_pred)
        needed = [fn is not None for fn in self.per_output]
        targets = _targets_in_output_order(model, batch.y, len(preds), needed=needed)
        weights = batch.sample_weight
        if isinstance(weights, (dict, list, tuple)):  # one per output, as fit takes them
            weights = _targets_in_output_order(model, weights, len(preds), "sample_weight",
                                               needed=[False] * len(preds))
        else:
            weights = [weights] * len(preds)
        return sum((fn(y, p, sample_weight=w) for fn, y, p, w in
                    zip(self.per_output, targets, preds, weights) if fn is not None), 0.0)


class RandomLabelLoss(Loss):
    """A loss without targets: every output read as logits over its last axis against labels
    drawn uniformly from ``seed`` (softmax cross-entropy; sigmoid for one unit, or for an
    output of one value per row), the mean over the other axes, summed over outputs: a
    classifier's loss at chance. An output that is already probabilities (nonnegative rows
    summing to 1; one unit strictly inside (0, 1)) is read as a softmax's or a sigmoid's, not
    squashed twice. Its gradient ``softmax(y) - one_hot`` has the part common to every row
    that a draw with large outputs gets (a zero-mean random projection lacks it, and measured
    no better than the analytic rule on the circulant net (d): docs/results.md)."""

    def __init__(self, seed: int = 0):
        super().__init__(False, description="cross-entropy against random labels (rule='noise')")
        self.seed = seed

    def __call__(self, model, trainable, non_trainable, batch: Batch, y_pred):
        rng = np.random.default_rng(self.seed)
        total = 0.0
        for pred in keras.tree.flatten(y_pred):
            shape = tuple(int(d) for d in pred.shape)
            pred = keras.ops.cast(pred, "float32")
            # An output that already is a softmax or a sigmoid is read as probabilities, in a
            # traceable select (JAX traces this; Keras's own logits shortcut is TF-only).
            if len(shape) < 2 or shape[-1] == 1:
                labels = rng.integers(0, 2, shape).astype("float32")
                fn, units = keras.ops.binary_crossentropy, 2
                probs = keras.ops.all((pred > 0) & (pred < 1))
            else:
                labels = rng.integers(0, shape[-1], shape[:-1])
                fn, units = keras.ops.sparse_categorical_crossentropy, shape[-1]
                probs = keras.ops.all(pred >= 0) & keras.ops.all(
                    keras.ops.abs(keras.ops.sum(pred, axis=-1) - 1.0) < 1e-2)
            with warnings.catch_warnings():  # Keras warns of the branch the select drops
                warnings.filterwarnings("ignore", message=".*received `from_logits=True`")
                as_logits = fn(labels, pred, from_logits=True)
            # The dropped branch gets a harmless input: Keras divides probabilities by their
            # sum, and a 0/0 there (an all-zero ReLU row) would turn its zero gradient to NaN.
            safe = keras.ops.where(probs, pred, keras.ops.full_like(pred, 1.0 / units))
            value = keras.ops.where(probs, fn(labels, safe, from_logits=False), as_logits)
            total = total + keras.ops.mean(value)
        return total


def _missing_outputs(model, y) -> Tuple[list, list]:
    """The model's output names, and those a dict ``y`` has no key for."""
    names = list(getattr(model, "output_names", None) or [])
    return names, ([k for k in names if k not in y] if isinstance(y, dict) else [])


def _targets_in_output_order(model, y, n: int, what: str = "y",
                              needed: Optional[List[bool]] = None) -> list:
    """``y`` as a list in output order; a dict may lack the outputs not ``needed`` (None)."""
    if isinstance(y, dict):
        names, missing = _missing_outputs(model, y)
        if needed is not None:
            missing = [k for k, need in zip(names, needed) if need and k in missing]
        if missing:
            raise ValueError(f"`{what}` has no entries for outputs {missing} of model "
                             f"{model.name!r}; give one per output.")
        unknown = [k for k in y if k not in names]
        if unknown or not names:
            raise ValueError(
                f"`{what}` has keys {unknown} that are not output names of model {model.name!r} "
                f"(its outputs: {names or 'unnamed'}); key a dict by output name, or give one "
                "value or a list in output order.")
        return [y.get(k) for k in names]
    flat = keras.tree.flatten(y)
    if len(flat) != n:
        raise ValueError(f"`{what}` holds {len(flat)} array(s) for {n} model output(s); give "
                         "one per output.")
    return flat


def default_loss(y, y_pred) -> keras.losses.Loss:
    """The loss used when none is compiled or given, chosen from one output and its target:
    sparse categorical cross-entropy for class indices (integers, or whole floats) of shape
    ``(n,)`` or ``(n, 1)`` for ``k > 1`` units; categorical cross-entropy for one-hot or
    probability rows; else mean squared error. ``from_logits`` unless the output's rows are
    non-negative and sum to 1.
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


def _as_loss(item, where: str) -> keras.losses.Loss:
    if isinstance(item, str):
        try:
            item = keras.losses.get(item)
        except ValueError as err:
            raise ValueError(f"`loss`{where}: unknown loss name {item!r}; pass a Keras loss "
                             "name, a keras.losses.Loss or a callable (y_true, y_pred).") from err
    if isinstance(item, keras.losses.Loss):
        return item
    if callable(item):
        return _FunctionLoss(item)
    raise TypeError(f"`loss`{where} must be a Keras loss, a loss name or a callable "
                    f"(y_true, y_pred), got {item!r}.")


class _FunctionLoss(keras.losses.Loss):
    """A plain ``(y_true, y_pred)`` given the reduction and ``sample_weight`` of a Keras loss."""

    def __init__(self, fn):
        super().__init__(name=getattr(fn, "__name__", "loss"))
        self.fn = fn

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred)


def resolve_loss(model, batch: Batch, loss=None) -> Loss:
    """``loss`` given (one for every output, a list in output order or a dict by output name),
    else the compiled one, else :func:`default_loss` per output (a :class:`Loss` is kept)."""
    if isinstance(loss, Loss):
        return loss
    if loss is None and getattr(model, "loss", None) is not None \
            and hasattr(model, "stateless_compute_loss"):
        return Loss(True, description="compiled")
    preds = keras.tree.flatten(predict(model, Batch(_head(batch.x)), training=False))
    if batch.y is None:
        raise ValueError("This step needs targets: pass `(x, y)`.")
    if loss is None:
        targets = _targets_in_output_order(model, batch.y, len(preds))
        fns = [default_loss(_head(y), p) for y, p in zip(targets, preds)]
        return Loss(False, fns, "default: " + ", ".join(type(f).__name__ for f in fns))
    if isinstance(loss, (dict, list, tuple)):  # one per output, as compile takes them; a
        # dict may leave outputs out (they get no loss, and need no target)
        items = _targets_in_output_order(model, loss, len(preds), "loss",
                                         needed=[False] * len(preds))
        fns = [None if item is None else _as_loss(item, f"[{i}]")
               for i, item in enumerate(items)]
        if not any(fns):
            raise ValueError("`loss` is a dict with no key: key a loss by an output name.")
    else:
        fns = [_as_loss(loss, "")] * len(preds)
    _targets_in_output_order(model, batch.y, len(preds), needed=[f is not None for f in fns])
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
    # Mixed precision's wrapper unscales gradients of a scaled loss; ours are of the loss itself,
    # so the step is its inner optimizer's (stepping the wrapper also fails under JAX tracing).
    while isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = optimizer.inner_optimizer
    return optimizer


def _tensors(x):
    return keras.tree.map_structure(keras.ops.convert_to_tensor, x)


def _variable_values(model) -> Tuple[list, list]:
    return ([keras.ops.convert_to_tensor(v) for v in model.trainable_variables],
            [keras.ops.convert_to_tensor(v) for v in model.non_trainable_variables])


def predict(model, batch: Batch, training: bool = False):
    """The model's output on ``batch.x`` (no state is updated)."""
    kwargs = {"training": training} if compat.call_takes_training(model) else {}
    if not model.non_trainable_variables:  # nothing a call could update: the fast path
        return model(_tensors(batch.x), **kwargs)
    y_pred, _ = model.stateless_call(*_variable_values(model), _tensors(batch.x), **kwargs)
    return y_pred


def loss_and_gradients(model, batch: Batch, variables: Sequence[Any], values: Sequence[Any],
                       loss: Loss, training: bool = True, return_output: bool = False,
                       as_numpy: bool = True) -> Tuple[Any, ...]:
    """The loss and its gradient with respect to ``variables`` holding ``values`` (arrays or
    backend tensors; the model is not changed), and with ``return_output`` the model's output.
    Gradients are float64 arrays, or with ``as_numpy=False`` backend tensors (zeros where a
    variable gets none). The forward pass is ``model.stateless_call``; the differentiation is
    the backend's own: ``tf.GradientTape``, ``jax.value_and_grad`` or ``torch.autograd.grad``
    (not run by this project's CI: ``make test-torch`` where torch is installed).
    """
    name = keras.backend.backend()
    if name not in _GRADIENTS:
        raise NotImplementedError(
            f"Gradients are implemented for the TensorFlow, JAX and PyTorch backends, not "
            f"KERAS_BACKEND={name!r}; use rule='analytic' (no gradients) there.")
    slot = {id(var): j for j, var in enumerate(model.trainable_variables)}
    missing = [var.path for var in variables if id(var) not in slot]
    if missing:
        raise ValueError(f"Variables {missing[:4]} are not trainable variables of model "
                         f"{model.name!r}.")
    slots = [slot[id(var)] for var in variables]
    trainable, non_trainable = _variable_values(model)
    for var, value, j in zip(variables, values, slots):
        trainable[j] = keras.ops.convert_to_tensor(value, dtype=var.dtype)
    x = _tensors(batch.x)
    kwargs = {"training": training} if compat.call_takes_training(model) else {}

    def forward(current):
        y_pred, _ = model.stateless_call(current, non_trainable, x, **kwargs)
        value = loss(model, current, non_trainable, batch, y_pred)
        return keras.ops.mean(keras.ops.cast(value, "float32")), y_pred

    try:
        value, grads, y_pred = _GRADIENTS[name](forward, trainable, slots)
    except Exception as err:  # noqa: BLE001 - a backend's shape error, said in the user's terms
        shapes = keras.tree.map_structure(lambda a: tuple(np.shape(a)), (batch.x, batch.y))
        _, missing = _missing_outputs(model, batch.y)
        raise ValueError(
            f"The model's loss on the batch could not be computed ({type(err).__name__}: "
            f"{str(err).strip().splitlines()[0][:300]}). Check that the targets fit the model's "
            f"outputs and the loss ({loss.description or 'given'}): x has shapes {shapes[0]}, "
            f"y {shapes[1]}." + (f" y has no key for output(s) {missing}: pass a target for "
                                 "each output the loss uses." if missing else "")) from err
    grads = [keras.ops.zeros(keras.ops.shape(v), "float32") if g is None else g
             for g, v in zip(grads, values)]
    if as_numpy:
        grads = [np.asarray(keras.ops.convert_to_numpy(g), np.float64) for g in grads]
    return (float(value), grads, y_pred) if return_output else (float(value), grads)


def _tensorflow_gradients(forward, trainable, slots):
    import tensorflow as tf

    watched = [trainable[j] for j in slots]
    with tf.GradientTape() as tape:
        tape.watch(watched)
        value, y_pred = forward(trainable)
    return value, tape.gradient(value, watched), y_pred


def _jax_gradients(forward, trainable, slots):
    import jax

    def fn(watched):
        current = list(trainable)
        for j, value in zip(slots, watched):
            current[j] = value
        return forward(current)

    (value, y_pred), grads = jax.value_and_grad(fn, has_aux=True)([trainable[j] for j in slots])
    return value, grads, y_pred


def _torch_gradients(forward, trainable, slots):
    # Not run by this project's CI, whose machines have no torch: `make test-torch` runs it.
    import torch

    watched = [trainable[j].detach().requires_grad_(True) for j in slots]
    for j, tensor in zip(slots, watched):
        trainable[j] = tensor
    with torch.enable_grad():
        value, y_pred = forward(trainable)
        grads = torch.autograd.grad(value, watched, allow_unused=True)
    return value.detach(), grads, keras.tree.map_structure(
        lambda t: t.detach() if hasattr(t, "detach") else t, y_pred)


_GRADIENTS = {"tensorflow": _tensorflow_gradients, "jax": _jax_gradients, "torch": _torch_gradients}


def outside_distribution(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` outside any ``tf.distribute`` scope: scratch variables made inside a
    strategy scope would be mirrored, and an optimizer applied to them outside replica context
    fails. TensorFlow keeps the strategy stack per thread, so a worker thread sees none."""
    if keras.backend.backend() != "tensorflow":
        return fn()
    import tensorflow as tf

    if not tf.distribute.has_strategy():
        return fn()
    with concurrent.futures.ThreadPoolExecutor(1) as worker:
        return worker.submit(fn).result()  # re-raises fn's error here


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
    """The first step of a fresh copy of ``optimizer``, as float32 backend tensors. Elementwise
    optimizers step once on all entries concatenated: one variable, no host copies."""
    ops = keras.ops
    grads, values = [_f32(g) for g in grads], [_f32(v) for v in values]
    if fuse and _fusable(optimizer) and len(values) > 1:
        flat, = _step_tensors(optimizer, [_flat(grads)], [_flat(values)])
        return [ops.reshape(p, ops.shape(v)) for p, v in zip(_split(flat, values), values)]

    def step():
        # The step that is applied: accumulating k batches applies their mean gradient once,
        # where a fresh copy's first call would only accumulate (a zero step).
        opt = optimizer.__class__.from_config(
            {**_config_now(optimizer), "gradient_accumulation_steps": None})
        variables = [keras.Variable(v, trainable=True, name=f"probe_{i}")
                     for i, v in enumerate(values)]
        opt.apply_gradients(list(zip(grads, variables)))
        return [ops.subtract(ops.convert_to_tensor(var), v) for var, v in zip(variables, values)]

    return outside_distribution(step)


def optimizer_steps(optimizer, grads: Sequence[Any], values: Sequence[Any]) -> List[np.ndarray]:
    """The first step a fresh copy of ``optimizer`` takes from ``values`` given ``grads``
    (arrays or backend tensors), as float64 arrays."""
    return [np.asarray(keras.ops.convert_to_numpy(t), np.float64)
            for t in _step_tensors(optimizer, grads, values)]


def norms(tensors: Sequence[Any]) -> np.ndarray:
    """The Euclidean norm of each tensor (arrays or backend tensors), in float32: by numpy where
    every tensor is in host memory, else on the backend (one host copy of the scalars)."""
    if not tensors:
        return np.zeros(0)
    if all(_on_host(t) for t in tensors):  # no device copy: numpy's dot, ~10x fewer eager ops
        try:
            flat = [np.asarray(t).astype(np.float32, copy=False).ravel() for t in tensors]
            with np.errstate(over="ignore", invalid="ignore"):  # inf is the caller's to report
                return np.sqrt([float(np.dot(a, a)) for a in flat])
        except (TypeError, ValueError, RuntimeError, NotImplementedError):  # symbolic: no values
            pass
    # A sum per tensor: faster than one segment sum over their concatenation on TF's CPU.
    squares = keras.ops.stack([keras.ops.sum(keras.ops.square(_f32(t))) for t in tensors])
    return np.sqrt(np.asarray(keras.ops.convert_to_numpy(squares), np.float64))


def _on_host(t) -> bool:
    """Whether a backend tensor lives in host memory (a CPU device), not in a traced function."""
    if isinstance(t, np.ndarray):
        return True
    if callable(getattr(t, "devices", None)):  # JAX
        try:
            return all(d.platform == "cpu" for d in t.devices())
        except Exception:  # noqa: BLE001 - a tracer has no devices
            return False
    return "cpu" in str(getattr(t, "device", "")).lower()  # TF's device string, torch.device


def _f32(t):
    t = keras.ops.convert_to_tensor(t)
    return t if keras.backend.standardize_dtype(t.dtype) == "float32" else keras.ops.cast(
        t, "float32")


def _flat(tensors: Sequence[Any]):
    return keras.ops.concatenate([keras.ops.reshape(t, (-1,)) for t in tensors])


def _split(flat, like: Sequence[Any]) -> list:
    """``flat`` cut into pieces of the sizes of the tensors ``like``."""
    sizes = [int(np.prod(keras.ops.shape(t))) for t in like]
    return keras.ops.split(flat, [int(i) for i in np.cumsum(sizes)[:-1]])


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
    return float(round(p)) if abs(p - round(p)) < 1e-3 else p  # float32 rounding of the steps


def _sgd_first_step(optimizer) -> Optional[float]:
    """``f`` with first step ``-f g`` for Keras's own SGD when nothing but the step touches
    the weights (no decay, clipping, accumulation or loss scaling), else ``None``. Momentum
    starts at zero, so the first step is ``-lr g``, and ``-(1 + momentum) lr g`` with Nesterov:
    no optimizer needs to run (a tenth of ``rescale``'s time on a 100-layer MLP)."""
    if type(optimizer) is not keras.optimizers.SGD:
        return None
    config = _config_now(optimizer)
    if any(config.get(key) for key in ("weight_decay", "clipnorm", "clipvalue", "global_clipnorm",
                                       "gradient_accumulation_steps")):
        return None
    if config.get("loss_scale_factor") not in (None, 1, 1.0):
        return None
    lr = abs(config["learning_rate"])  # growth is a ratio of norms, also for gradient ascent
    return lr * (1.0 + config["momentum"] if config["nesterov"] else 1.0)


def _config_now(optimizer) -> dict:
    """``optimizer``'s config with a learning-rate schedule replaced by its rate at the
    optimizer's current step (a fresh copy would restart the schedule)."""
    config = optimizer.get_config()
    config["learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    return config


def clips_globally(optimizer) -> bool:
    """Whether ``optimizer`` clips by the norm over all its gradients (``global_clipnorm``):
    its step on a variable then depends on every variable's gradient, biases included."""
    return bool(optimizer.get_config().get("global_clipnorm"))


def step_norms_and_exponent(optimizer, grads: Sequence[Any], values: Sequence[Any]
                            ) -> Tuple[np.ndarray, float]:
    """The norm of each variable's first step and :func:`step_exponent`, in one optimizer apply
    on the backend (no host copies of the steps). Under ``global_clipnorm`` pass every
    variable the real step clips together (:func:`clips_globally`)."""
    factor = _sgd_first_step(optimizer)
    if factor is not None:
        return factor * norms(grads), 2.0
    grads, values = [_f32(g) for g in grads], [_f32(v) for v in values]
    flat_g, flat_v = _flat(grads), _flat(values)
    pair_g, pair_v = _exponent_probe(flat_g, flat_v)
    if clips_globally(optimizer):  # the exponent's samples apart: not in the clipped norm
        steps = _step_tensors(optimizer, grads, values) + _step_tensors(optimizer, pair_g, pair_v)
    elif _fusable(optimizer) and len(values) > 1:
        # The flat copies are the one variable of the step, beside the exponent's two samples;
        # the steps' norms are taken on its slices (no reshape back).
        step, *pair = _step_tensors(optimizer, [flat_g] + pair_g, [flat_v] + pair_v, fuse=False)
        steps = _split(step, values) + pair
    else:
        steps = _step_tensors(optimizer, grads + pair_g, values + pair_v)
    found = norms(steps)
    return found[:-2], _exponent(*found[-2:])


def step_exponent(optimizer, grads: Sequence[Any], values: Sequence[Any]) -> float:
    """``p`` in ``growth ~ c**-p`` after ``W -> c W``: 2 for a step proportional to the
    gradient (SGD, momentum), 1 for a sign-like step (Adam's first step). Measured on a sample
    of the entries by stepping with ``g`` and ``2 g`` (as two variables of one apply)."""
    pair_g, pair_v = _exponent_probe(_flat([_f32(g) for g in grads]),
                                     _flat([_f32(v) for v in values]))
    return _exponent(*norms(_step_tensors(optimizer, pair_g, pair_v)))
