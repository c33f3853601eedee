"""Random-walk initialization (Sussillo & Abbott, 2014)."""

from __future__ import annotations

import math
from typing import Optional

import keras

from keras_normed import structure
from keras_normed.initializers.normed import SeededInitializer, check_positive

NONLINEARITIES = ("linear", "relu", "tanh")
# Sussillo & Abbott give closed forms for linear and ReLU layers only; for tanh the constant is
# numerical: ~1.15 (their section 2.3 as quoted by TensorFlow's uniform_unit_scaling docs; our
# own 100-layer, width-100 simulation gives zero drift at g ~ 1.16, -2.1 at g = 1.1).
TANH_GAIN = 1.15


def random_walk_gain(nonlinearity: str, n: int) -> float:
    """The scale ``g`` of Sussillo & Abbott (2014) for layers of width ``n``.

    - linear: ``g = exp(1 / (2 N))``,
    - ReLU:   ``g = sqrt(2) * exp(1.2 / (max(N, 6) - 2.4))``,
    - tanh:   ``g = 1.15`` (numerical, no closed form).

    With ``W ~ N(0, g^2 / N)`` these make ``E[ln(|delta_{d}|^2 / |delta_{d+1}|^2)] = 0``: the log
    of the back-propagated gradient norm performs an *unbiased* random walk across layers.
    """
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(
            f"Unknown `nonlinearity` {nonlinearity!r}; expected one of {NONLINEARITIES}, "
            "or pass `gain=` explicitly.")
    n = int(n)
    if n < 1:
        raise ValueError(f"The layer width `n` must be >= 1, got {n}.")
    if nonlinearity == "linear":
        return math.exp(1.0 / (2.0 * n))
    if nonlinearity == "relu":
        return math.sqrt(2.0) * math.exp(1.2 / (max(n, 6) - 2.4))
    return TANH_GAIN


@keras.saving.register_keras_serializable(package="keras_normed", name="RandomWalk")
class RandomWalk(SeededInitializer):
    """Gaussian weights scaled so the log gradient norm is an unbiased random walk over depth.

    ``W ~ N(0, g^2 / N)`` with ``N`` the layer's fan-in (read from :mod:`keras_normed.structure`,
    so structured layers use their effective fan-in) and ``g`` from :func:`random_walk_gain`:

    - linear: ``g = exp(1 / (2N))``,
    - ReLU: ``g = sqrt(2) exp(1.2 / (max(N, 6) - 2.4))``,
    - tanh: ``g = 1.15`` (numerical; no closed form in the paper).

    Back-propagation multiplies the error by ``W^T D`` at every layer (``D`` the diagonal of
    ``phi'``). With ``g = 1`` (Glorot for square linear layers) or ``g = sqrt(2)`` (He for ReLU)
    the mean of ``ln |W^T D delta|^2 / |delta|^2`` is slightly negative (``~ -1/N`` for linear,
    ``~ -2.4/N`` for ReLU), so over ``D`` layers the gradient shrinks by ``exp(-c D / N)``; the
    corrections above cancel that drift, leaving a walk whose variance grows like ``D / N``.

    Example:
        >>> layer = keras.layers.Dense(100, activation="relu",
        ...                            kernel_initializer=RandomWalk("relu", seed=0))
        >>> y = layer(np.ones((2, 100), "float32"))

    Args:
        nonlinearity: "linear", "relu" or "tanh": the activation after the layer.
        gain: explicit ``g``; overrides the formula.
        seed: as Keras's random initializers: an int (same values at every call and in every
            process), a ``keras.random.SeedGenerator`` (new values at every call), or ``None``
            (an int drawn once at construction; ``get_config`` keeps None).

    Reference: D. Sussillo, L. F. Abbott, "Random Walk Initialization for Training Very Deep
    Feedforward Networks", arXiv:1412.6558, 2014.
    """

    def __init__(self, nonlinearity: str = "linear", gain: Optional[float] = None,
                 seed=None):
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(
                f"Unknown `nonlinearity` {nonlinearity!r}; expected one of {NONLINEARITIES}, "
                "or pass `gain=` explicitly.")
        self.nonlinearity = nonlinearity
        self.gain = None if gain is None else check_positive("gain", gain)
        super().__init__(seed=seed)

    def __call__(self, shape, dtype=None):
        found = structure.building_layer()
        layer = found[0] if found is not None else None
        fan_in, _ = structure.kernel_fans(layer, shape)
        n = max(1, int(fan_in))
        g = self.gain if self.gain is not None else random_walk_gain(self.nonlinearity, n)
        return keras.random.normal(shape, stddev=g / math.sqrt(n), dtype=dtype, seed=self.seed)

    def get_config(self):
        base_config = super().get_config()
        config = {"nonlinearity": self.nonlinearity, "gain": self.gain}
        return {**base_config, **config}
