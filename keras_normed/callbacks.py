"""Keras callbacks: thin wrappers over the package's model-level functions."""

from __future__ import annotations

import keras

__all__ = ["NormedScaling", "LSUVInit"]


class NormedScaling(keras.callbacks.Callback):
    """Applies :func:`keras_normed.rescale` once, at the start of the first training.

    A thin wrapper: all the logic (probe or analytic rule, the rescaled mark saved with the
    model, refusing trained or loaded weights) is in :func:`keras_normed.rescale`, so a second
    ``fit`` or a reloaded rescaled model is a no-op. ``report`` holds the last report.

    Example::

        model.fit(x, y, callbacks=[NormedScaling(data=(x[:256], y[:256]))])

    Args:
        data: probe batch ``(x, y)``, or ``None`` for the analytic rule.
        verbose: print the per-layer table.
        **kwargs: passed to :func:`keras_normed.rescale` (``force``, ``tol``, ``max_iter``,
            ``rule``, ``loss``, ``optimizer``). The model's compiled optimizer and loss are the
            defaults.
    """

    def __init__(self, data=None, verbose: bool = False, **kwargs):
        super().__init__()
        self.data = data
        self.verbose = verbose
        self.kwargs = kwargs
        self.report = None
        self.calls = 0

    def on_train_begin(self, logs=None):
        from keras_normed.scaling import rescale

        self.calls += 1
        self.report = rescale(self.model, self.data, verbose=self.verbose, **self.kwargs)


class LSUVInit(keras.callbacks.Callback):
    """Applies :func:`keras_normed.lsuv` once, at the start of the first training.

    A thin wrapper: later ``fit`` calls with the same callback do not re-initialize.
    ``report`` holds the :class:`keras_normed.engine.Report`.

    Example::

        model.fit(x, y, callbacks=[LSUVInit(x[:256], seed=0)])

    Args:
        x_batch: the batch LSUV measures variances on.
        **kwargs: passed to :func:`keras_normed.lsuv` (``tol``, ``max_iter``, ``seed``,
            ``verbose``).
    """

    def __init__(self, x_batch, **kwargs):
        super().__init__()
        self.x_batch = x_batch
        self.kwargs = kwargs
        self.report = None

    def on_train_begin(self, logs=None):
        from keras_normed.data_driven import lsuv

        if self.report is None:
            self.report = lsuv(self.model, self.x_batch, **self.kwargs)


