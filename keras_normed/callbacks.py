"""Keras callbacks: thin wrappers over the package's model-level functions."""

from __future__ import annotations

import importlib.util
import inspect
import math
import numbers
import os
import warnings

import keras

# Looked up at call time (``scaling.rescale``, not ``rescale``): a patched function is the one run.
from keras_normed import data_driven, diagnostics, engine, scaling
from keras_normed.initializers.weight_norm import host_seed

__all__ = ["NormedScaling", "LSUVInit", "GrowthMonitor"]


def _check_kwargs(owner: str, fn, kwargs: dict, own=()) -> dict:
    # At construction rather than at `fit`: name the first keyword that `fn` does not take.
    takes = [p for p in inspect.signature(fn).parameters if p not in ("model", *own)]
    for key in kwargs:
        if key not in takes:
            raise TypeError(f"{owner}: unknown keyword argument `{key}`={kwargs[key]!r}; pass "
                            f"only arguments of {fn.__name__}: {', '.join(takes)}.")
    return kwargs


def _skip_trained(owner: str, model, method: str, quiet: bool = False):
    """A not-applied report, with a warning, for a model whose optimizer has taken steps (a
    resumed fit, BackupAndRestore's restore): an init callback leaves trained weights alone,
    whatever its place in the callback list. None for a model not trained yet."""
    steps = engine.steps_taken(model)
    if not steps:
        return None
    reason = f"already trained ({steps} optimizer steps): weights left as they are"
    if not quiet:
        warnings.warn(f"{owner}: model {model.name!r} {reason} (a resumed or restored fit).",
                      stacklevel=3)
    return engine.Report(method, False, reason)


def _build_on(model, data, arg: str, need_y: bool) -> None:
    """``fit`` builds a model without an Input on its first batch, after ``on_train_begin``:
    build it here as that batch would, on the first rows of the callback's own batch."""
    if model.built:
        return
    if data is None:
        raise ValueError(
            f"Model {model.name!r} is not built when training begins (TensorFlow's `fit` builds "
            "it on its first batch, after the callbacks start), and the callback has no "
            f"`{arg}` to build it on. Give the model an Input, call `model.build(input_shape)`, "
            f"or pass `{arg}`.")
    x = engine.as_batch(model, data, need_y=need_y, arg=arg).x
    model(keras.tree.map_structure(lambda a: a[:2], x))


class NormedScaling(keras.callbacks.Callback):
    """Applies :func:`keras_normed.rescale` at the start of every training (later ones, and a
    reloaded rescaled model, are no-ops as ``rescale`` decides); a model whose optimizer has
    taken steps (a resumed fit, or one ``BackupAndRestore`` restored, in any order of the
    callbacks) is left as it is, with a warning unless it was rescaled (``force=True``
    rescales it); ``report``: the last report.

    Example:
        >>> model = keras.Sequential([
        ...     keras.Input((8,)), keras.layers.Dense(16, "relu", kernel_initializer="normed"),
        ...     keras.layers.Dense(4, kernel_initializer="normed")])
        >>> model.compile("sgd", "mse")
        >>> x, y = np.random.rand(512, 8), np.random.rand(512, 4)
        >>> history = model.fit(x, y, callbacks=[NormedScaling(data=(x[:256], y[:256]))],
        ...                     verbose=0)

    Args:
        data: probe batch ``(x, y)``, or ``None`` for the analytic rule (or, with
            ``rule="noise"``, the probe rule on drawn inputs). A model without an Input is
            built on it first, as ``fit`` would build it on its first batch.
        verbose: print the per-layer table.
        **kwargs: passed to :func:`keras_normed.rescale` (``move``, ``rule``, ``force``,
            ``tol``, ``max_iter``, ``training``, ``max_output_change``, ``check``, ``loss``,
            ``optimizer``; the loss and optimizer by default the compiled ones).
    """

    def __init__(self, data=None, verbose: bool = False, **kwargs):
        super().__init__()
        self.data = data
        self.verbose = verbose
        self.kwargs = _check_kwargs("NormedScaling", scaling.rescale, kwargs, ("data", "verbose"))
        scaling.check_options(data=data, verbose=verbose, **{
            k: v for k, v in kwargs.items() if k != "optimizer"})
        self.report = None
        self.calls = 0

    def on_train_begin(self, logs=None):
        self.calls += 1
        _build_on(self.model, self.data, "data", need_y=True)
        # A rescaled model is rescale's own no-op ("already rescaled").
        skipped = None if self.kwargs.get("force") or scaling.is_rescaled(self.model) else \
            _skip_trained("NormedScaling", self.model, "rescale",
                          quiet=not scaling.normed_layers(self.model))
        self.report = skipped or scaling.rescale(self.model, self.data, verbose=self.verbose,
                                                 **self.kwargs)


class LSUVInit(keras.callbacks.Callback):
    """Applies :func:`keras_normed.lsuv` once, at the start of the first training, unless the
    model's optimizer has taken steps already (a resumed or restored fit: left as it is, with a
    warning); ``report`` holds its :class:`keras_normed.engine.Report`. Weights loaded into a
    fresh model (``load_weights``, no optimizer steps) would be set again: leave it out then.

    Example:
        >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
        ...                           keras.layers.Dense(4)])
        >>> model.compile("sgd", "mse")
        >>> x, y = np.random.rand(512, 8), np.random.rand(512, 4)
        >>> history = model.fit(x, y, callbacks=[LSUVInit(x[:256], seed=0)], verbose=0)

    Args:
        x_batch: the batch LSUV measures variances on (a model without an Input is built on
            it first).
        **kwargs: for :func:`keras_normed.lsuv` (``tol``, ``max_iter``, ``seed``, ``verbose``).
    """

    def __init__(self, x_batch, **kwargs):
        super().__init__()
        self.x_batch = x_batch
        self.kwargs = _check_kwargs("LSUVInit", data_driven.lsuv, kwargs, ("x_batch", "force"))
        # Bad numbers are said now, not when fit starts (lsuv's own checks, on what is given).
        if "tol" in self.kwargs:
            scaling.check_number("tol", self.kwargs["tol"], 0, open_low=True)
        if "max_iter" in self.kwargs:
            scaling.check_number("max_iter", self.kwargs["max_iter"], 1, integer=True)
        seed = self.kwargs.get("seed")
        if seed is not None and not isinstance(seed, keras.random.SeedGenerator):
            host_seed(seed)  # a bad seed is said now (a generator is not drawn from here)
        self.report = None

    def on_train_begin(self, logs=None):
        if self.report is None:
            _build_on(self.model, self.x_batch, "x_batch", need_y=False)
            self.report = _skip_trained("LSUVInit", self.model, "lsuv") or data_driven.lsuv(
                self.model, self.x_batch, **self.kwargs)


class GrowthMonitor(keras.callbacks.Callback):
    """Per-layer growth ``r_l`` and its spread ``max/min``, measured during training.

    :func:`keras_normed.growth_report` on the fixed batch ``data`` before the first training
    step (after every callback's ``on_train_begin``, so the scales of a ``NormedScaling`` in
    any place of the list are in) and every ``every`` steps (the model and optimizer are
    unchanged), into the batch ``logs`` (``growth_spread``, ``growth/<kernel path>``),
    ``history`` (one dict a measurement, with its ``step``) and, with ``log_dir``,
    TensorBoard scalars (docs/normed.md). ``data`` is read once (a shuffled dataset's first
    batch then stays the batch). Steps are the optimizer's ``iterations``: a resumed model's
    labels go on from its own step. With ``steps_per_execution > 1`` callbacks run every few
    steps: a measurement is taken at the first one at or after each multiple of ``every``, and
    labelled with the step it was taken at; with ``gradient_accumulation_steps=k``, ``k``
    batches make one step. A learning-rate schedule is read at the optimizer's current step. A
    model that diverges (non-finite loss on ``data`` after training began) is logged as NaN,
    with one warning, and training goes on.

    Example:
        >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
        ...                           keras.layers.Dense(4)])
        >>> model.compile("sgd", "mse")
        >>> x, y = np.random.rand(512, 8), np.random.rand(512, 4)
        >>> monitor = GrowthMonitor((x[:256], y[:256]), every=5, log_dir="logs/growth")
        >>> history = model.fit(x, y, callbacks=[monitor], verbose=0)
        >>> spreads = [h["growth_spread"] for h in monitor.history]

    Args:
        data: the batch to measure on, as ``model.fit`` takes data (with targets).
        every: measure every this many training steps (a positive int).
        log_dir: folder for TensorBoard event files (TensorFlow backend), or None.
        **kwargs: for :func:`keras_normed.growth_report` (``optimizer``, ``loss``, ``training``).
    """

    def __init__(self, data, every: int = 100, log_dir=None, **kwargs):
        super().__init__()
        if isinstance(every, bool) or not isinstance(every, numbers.Integral):
            raise TypeError(f"`every` must be a positive int (training steps), got {every!r}.")
        if every < 1:
            raise ValueError(f"`every` must be a positive int (training steps), got {every!r}.")
        if log_dir is not None and not isinstance(log_dir, (str, bytes, os.PathLike)):
            raise TypeError(f"`log_dir` must be a folder path or None, got {log_dir!r}.")
        if log_dir is not None and os.path.exists(log_dir) and not os.path.isdir(log_dir):
            raise ValueError(f"`log_dir` {os.fsdecode(log_dir)!r} is a file, not a folder; pass "
                             "a folder for the TensorBoard event files (created if missing).")
        if data is None:
            raise ValueError("GrowthMonitor: `data` is None; pass the batch to measure on, "
                             "with targets, as `model.fit` takes it: `(x, y)`.")
        if hasattr(data, "shape"):  # one array: inputs without targets
            raise ValueError("`GrowthMonitor(data=...)` holds inputs only (one array of shape "
                             f"{tuple(data.shape)}); pass the batch with its targets: `(x, y)`.")
        self.data = data
        self.every = int(every)
        self.log_dir = None if log_dir is None else str(log_dir)
        self.kwargs = _check_kwargs("GrowthMonitor", diagnostics.growth_report, kwargs, ("x", "y"))
        if self.kwargs.get("optimizer") is not None:  # a bad one is said now, not at `fit`
            engine.resolve_optimizer(None, self.kwargs["optimizer"])
        self.history: list = []
        self._batch = None
        self.step = self._start = self._batches = self._epoch_start = 0
        self._accumulate = 1
        self._diverged = False  # said once
        self._writer = None

    def on_train_begin(self, logs=None):
        if self.log_dir is not None and self._writer is None:
            if keras.backend.backend() != "tensorflow":
                raise ValueError("GrowthMonitor(log_dir=...) writes TensorBoard files with "
                                 "tf.summary: use the TensorFlow backend, or log_dir=None.")
            if importlib.util.find_spec("tensorboard") is None:
                raise ValueError("GrowthMonitor(log_dir=...) needs the tensorboard package "
                                 "(`pip install tensorboard`, or the package's [tensorboard] "
                                 "extra); or pass log_dir=None.")
            import tensorflow as tf

            self._writer = tf.summary.create_file_writer(self.log_dir)
        _build_on(self.model, self.data, "data", need_y=True)
        self._probe()  # bad data is said before any step
        # Batches are counted here and the step read only when measuring (under JAX reading
        # the model syncs its state); k accumulated batches make one applied step.
        self._start = self.step = engine.steps_taken(self.model)
        self._batches = self._epoch_start = 0
        self._accumulate = int(getattr(engine.resolve_optimizer(self.model),
                                       "gradient_accumulation_steps", None) or 1)

    def on_train_batch_begin(self, batch, logs=None):
        if not self.history:  # every on_train_begin has run by now
            self._measure(logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = self._batches = self._applied_batches()

    def on_train_batch_end(self, batch, logs=None):
        # ``batch``: the epoch's index of the last step run (``steps_per_execution`` at a time;
        # Keras counts a short last run as a whole one), so the label is read when measuring.
        seen = max(self._epoch_start + int(batch) + 1, self._batches + 1)
        before, after = (self._start + n // self._accumulate for n in (self._batches, seen))
        self._batches = seen
        if after // self.every > before // self.every:
            self.step = engine.steps_taken(self.model)
            self._batches = self._applied_batches()
            self._measure(logs)

    def _applied_batches(self) -> int:
        # The batches of this fit, from the steps taken: a short last run is not a whole one.
        return (engine.steps_taken(self.model) - self._start) * self._accumulate

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.flush()

    def _probe(self) -> engine.Batch:
        if self._batch is None:  # read once: a shuffled dataset would give another batch
            self._batch = engine.as_batch(self.model, self.data, need_y=True,
                                          arg="GrowthMonitor(data=...)")
        return self._batch

    def _measure(self, logs) -> None:
        try:
            report = diagnostics.growth_report(self.model, self._probe(), **self.kwargs)
        except engine.NonFiniteError as err:
            if not self.history:  # before any step: the batch, not the training
                raise
            # Diverged: say so once, log NaN, and let training (and its own callbacks) go on.
            if not self._diverged:
                warnings.warn(f"GrowthMonitor: the model has diverged by step {self.step} "
                              f"(on `data`: {str(err).split(';')[0]}); its growth is logged "
                              "as NaN.", stacklevel=2)
            self._diverged, report = True, None
        if report is None:
            values = {key: math.nan for key in self.history[-1] if key != "step"}
        else:
            values = {"growth_spread": float(report.spread)}
            values.update({f"growth/{row.path}": float(row.growth) for row in report.rows})
        self.history.append({"step": self.step, **values})
        if logs is not None:
            logs.update(values)
        if self._writer is not None:
            import tensorflow as tf

            with self._writer.as_default(step=self.step):
                for tag, value in values.items():
                    tf.summary.scalar(tag, value)
