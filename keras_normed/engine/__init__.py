"""The one engine under every model-level step (``rescale``, ``NormedScaling``, ``lsuv``,
``LSUVInit``, ``data_dependent_init``, ``growth_report``, ``arpit_init``): the walk of a model
(:mod:`.graph`), data as ``model.fit`` takes it (:mod:`.data`), loss, gradients and an
optimizer's first step on copies (:mod:`.grad`), rollback and agreement between replicas
(:mod:`.state`), the function-keeping solve (:mod:`.solve`), one report (:mod:`.report`).
"""

from keras_normed.engine import grad
from keras_normed.engine.data import Batch, as_batch, noise_batch
from keras_normed.engine.grad import *  # noqa: F403 - re-exported: its __all__
from keras_normed.engine.graph import (
    KernelSite,
    ScaleConstraints,
    kernel_sites,
    scale_constraints,
    weight_label,
    weights_left,
)
from keras_normed.engine.report import NonFiniteError, Report, Row, spread
from keras_normed.engine.solve import equalize, norm, relative_change
from keras_normed.engine.state import Transaction, agree, steps_taken

__all__ = ["Batch", "as_batch", "noise_batch", "KernelSite", "ScaleConstraints", "kernel_sites",
           "scale_constraints", *grad.__all__, "NonFiniteError", "Report", "Row", "spread",
           "equalize", "norm", "relative_change", "Transaction", "agree", "steps_taken",
           "weight_label", "weights_left"]
