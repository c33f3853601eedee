"""Per-layer growth diagnostics: what the normed method equalizes, measured on a real batch.

For every layer with a kernel, :func:`growth_report` gives

- ``act_var``: variance of the layer's output on the batch (forward signal; Functional and
  Sequential models only, NaN for subclassed ones),
- ``grad_var``: variance of the entries of ``dL/dW`` (backward signal reaching the kernel),
- ``growth``: relative growth of the layer's operator under one step of the optimizer,
  ``r = ||step||_T / ||W||_T`` with ``||theta||_T = ||T(theta)||_F = sqrt(sharing) ||theta||``
  (a fresh copy of the optimizer takes the step; the model is not changed).

``spread = max(growth) / min(growth)`` is the number Yang et al. (2021) ask to keep small: He and
Xavier leave it over 100 on networks with shared parameters; :func:`keras_normed.rescale` brings it
to ~1.

Example::

    report = growth_report(model, x[:256], y[:256], optimizer=keras.optimizers.SGD(0.01))
    print(report)             # table
    report.as_dict()          # JSON-ready
    report.plot("growth.png")
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, Optional

import keras
import numpy as np

from keras_normed import scaling

__all__ = ["GrowthRow", "GrowthReport", "growth_report"]


@dataclasses.dataclass
class GrowthRow:
    """One layer of a :class:`GrowthReport`."""

    path: str
    kind: str
    fan_in: int
    sharing: float
    act_var: float
    grad_var: float
    growth: float


@dataclasses.dataclass
class GrowthReport:
    """Per-layer table returned by :func:`growth_report`."""

    rows: List[GrowthRow]
    loss: float
    optimizer: str

    @property
    def spread(self) -> float:
        """``max(growth) / min(growth)`` over layers."""
        g = [r.growth for r in self.rows if r.growth > 0]
        return max(g) / min(g) if g else float("nan")

    def as_dict(self) -> Dict[str, Any]:
        return {"loss": self.loss, "optimizer": self.optimizer, "spread": self.spread,
                "layers": [dataclasses.asdict(r) for r in self.rows]}

    def __str__(self) -> str:
        lines = [f"growth report ({self.optimizer}): loss {self.loss:.4g}, "
                 f"growth spread {self.spread:.4g}",
                 f"{'layer':<34}{'kind':<18}{'fan_in':>8}{'sharing':>10}{'act var':>11}"
                 f"{'grad var':>11}{'growth':>11}"]
        for r in self.rows:
            lines.append(f"{r.path[-33:]:<34}{r.kind[:17]:<18}{r.fan_in:>8}{r.sharing:>10.4g}"
                         f"{r.act_var:>11.4g}{r.grad_var:>11.4g}{r.growth:>11.4g}")
        return "\n".join(lines)

    def plot(self, path: str, title: Optional[str] = None) -> str:
        """Bar charts (log scale) of the three columns per layer, saved as a PNG at ``path``."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = [r.path.rsplit("/", 2)[-2] if "/" in r.path else r.path for r in self.rows]
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
        for ax, key, label in zip(axes, ("act_var", "grad_var", "growth"),
                                  ("activation variance", "gradient variance",
                                   "relative growth r")):
            vals = [getattr(r, key) for r in self.rows]
            ax.bar(range(len(vals)), vals)
            ax.set_yscale("log")
            ax.set_xticks(range(len(vals)))
            ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
            ax.set_title(label)
        fig.suptitle(title or f"growth spread {self.spread:.3g}")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


def _kernel_layers(model) -> List[Any]:
    seen = []
    for layer in scaling._all_layers(model):  # noqa: SLF001 - same walk as rescale
        kernel = getattr(layer, "kernel", None)
        if layer is not model and kernel is not None and getattr(kernel, "trainable", False):
            seen.append(layer)
    return seen


def _activation_variances(model, layers, x) -> List[float]:
    try:
        probe = keras.Model(model.inputs, [layer.output for layer in layers])
    except Exception:  # noqa: BLE001 - subclassed models have no symbolic outputs
        return [float("nan")] * len(layers)
    outs = probe(x, training=False)
    if not isinstance(outs, (list, tuple)):
        outs = [outs]
    return [float(np.var(keras.ops.convert_to_numpy(o))) for o in outs]


def growth_report(model, x, y, optimizer=None, loss=None, training: bool = True
                  ) -> GrowthReport:
    """Forward variance, gradient variance and one-step relative growth of every kernel.

    Args:
        model: a built Keras model.
        x, y: a real batch.
        optimizer: whose first step defines growth (default: compiled one, else SGD(0.01)).
        loss: default: compiled loss, else sparse categorical cross-entropy.
        training: run the forward pass of the step in training mode.
    """
    scaling._check_built(model)  # noqa: SLF001
    layers = _kernel_layers(model)
    if not layers:
        raise ValueError(f"Model {model.name!r} has no layer with a trainable kernel.")
    structures = [scaling.kernel_structure(layer) for layer in layers]
    optimizer = scaling._default_optimizer(model, optimizer)  # noqa: SLF001
    m = scaling.measure_growth(model, (x, y), [layer.kernel for layer in layers],
                               optimizer=optimizer, loss=loss, training=training,
                               structures=structures)
    act = _activation_variances(model, layers, keras.ops.convert_to_tensor(x))
    rows = []
    for layer, st, g, r, a in zip(layers, structures, m["grads"], m["growth"], act):
        fan_in = st.fan_in if st is not None else int(np.prod(layer.kernel.shape[:-1]))
        rows.append(GrowthRow(layer.kernel.path, type(layer).__name__, int(fan_in),
                              float(st.sharing) if st is not None else math.nan, float(a),
                              float(np.var(g)), float(r)))
    try:
        name = f"{type(optimizer).__name__}(lr={float(optimizer.learning_rate):.3g})"
    except (TypeError, ValueError):  # a learning-rate schedule
        name = type(optimizer).__name__
    return GrowthReport(rows, float(m["loss"]), name)
