"""The one engine under every model-level step (``rescale``, ``NormedScaling``, ``lsuv``,
``LSUVInit``, ``data_dependent_init``, ``growth_report``, ``arpit_init``).

It owns the walk of a model (nested models, shared layers and their number of uses, frozen
weights; :mod:`.graph`), the data as ``model.fit`` takes it (:mod:`.data`), the loss and its
gradients and an optimizer's first step on copies (:mod:`.grad`), assignment with rollback and
agreement between replicas (:mod:`.state`), the function-keeping constraints and their
least-squares solution (:mod:`.solve`), and one report type (:mod:`.report`).
"""

from keras_normed.engine.data import Batch, as_batch
from keras_normed.engine.grad import (
                                       Loss,
                                       default_loss,
                                       loss_and_gradients,
                                       norms,
                                       optimizer_steps,
                                       outside_distribution,
                                       predict,
                                       resolve_loss,
                                       resolve_optimizer,
                                       step_exponent,
                                       step_norms_and_exponent,
)
from keras_normed.engine.graph import KernelSite, ScaleConstraints, kernel_sites, scale_constraints
from keras_normed.engine.report import Report, Row, spread
from keras_normed.engine.solve import equalize, norm, relative_change
from keras_normed.engine.state import Transaction, agree

__all__ = ["Batch", "as_batch", "KernelSite", "ScaleConstraints", "kernel_sites",
           "scale_constraints", "Loss", "default_loss", "loss_and_gradients", "norms",
           "optimizer_steps", "outside_distribution", "predict", "resolve_loss",
           "resolve_optimizer", "step_exponent", "step_norms_and_exponent", "Report", "Row",
           "spread", "equalize", "norm", "relative_change", "Transaction", "agree"]
