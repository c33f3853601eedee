"""Random-walk initialization (Sussillo & Abbott, 2014; docs/random_walk.md)."""

from __future__ import annotations

import math
import numbers
from typing import Optional

import keras

from keras_normed.initializers.normed import StructuredInitializer, check_positive

NONLINEARITIES = ("linear", "relu", "tanh")
# No closed form for tanh: ~1.15 numerically (Sussillo & Abbott, section 2.3; docs/random_walk.md).
TANH_GAIN = 1.15


def _check_nonlinearity(nonlinearity) -> str:
    # Case-insensitive, as Normed's and Keras's activation names are.
    nonlinearity = nonlinearity.lower() if isinstance(nonlinearity, str) else nonlinearity
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"Unknown `nonlinearity` {nonlinearity!r}; expected one of "
                         f"{NONLINEARITIES}, or pass `gain=` explicitly.")
    return nonlinearity


def random_walk_gain(nonlinearity: str, n: int) -> float:
    """The scale ``g`` of Sussillo & Abbott (2014) for layers of width ``n``.

    - linear: ``g = exp(1 / (2 N))``,
    - ReLU:   ``g = sqrt(2) * exp(1.2 / (max(N, 6) - 2.4))``,
    - tanh:   ``g = 1.15`` (numerical, no closed form).

    With ``W ~ N(0, g^2 / N)`` the log gradient norm is an *unbiased* random walk over depth.
    """
    nonlinearity = _check_nonlinearity(nonlinearity)
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise (ValueError if isinstance(n, numbers.Integral) else TypeError)(
            f"The layer width `n` must be an integer >= 1, got {n!r}.")
    n = int(n)
    if nonlinearity == "linear":
        return math.exp(1.0 / (2.0 * n))
    if nonlinearity == "relu":
        return math.sqrt(2.0) * math.exp(1.2 / (max(n, 6) - 2.4))
    return TANH_GAIN


@keras.saving.register_keras_serializable(package="keras_normed", name="RandomWalk")
class RandomWalk(StructuredInitializer):
    """Gaussian weights scaled so the log gradient norm is an unbiased random walk over depth.

    ``W ~ N(0, g^2 / N)``, ``N`` the layer's effective fan-in and ``g`` from
    :func:`random_walk_gain`: it cancels the drift ``~ -c / N`` per layer that Glorot and He leave.

    Example:
        >>> layer = keras.layers.Dense(100, activation="relu",
        ...                            kernel_initializer=RandomWalk("relu", seed=0))
        >>> y = layer(np.ones((2, 100), "float32"))

    Args:
        nonlinearity: "linear", "relu" or "tanh": the activation after the layer.
        gain: explicit ``g``; overrides the formula.
        seed: an int, a ``keras.random.SeedGenerator`` or ``None``, as Keras's initializers.

    Reference: D. Sussillo, L. F. Abbott, "Random Walk Initialization for Training Very Deep
    Feedforward Networks", arXiv:1412.6558, 2014.
    """

    distribution = "normal"

    def __init__(self, nonlinearity: str = "linear", gain: Optional[float] = None, seed=None):
        self.nonlinearity = _check_nonlinearity(nonlinearity)
        self.gain = None if gain is None else check_positive("gain", gain)
        super().__init__(seed=seed)

    def stddev(self, shape, layer=None, weight=None) -> float:
        n = int(self.fan(shape, layer, weight))
        g = self.gain if self.gain is not None else random_walk_gain(self.nonlinearity, n)
        return g / math.sqrt(n)

    def get_config(self):
        return {**super().get_config(), "nonlinearity": self.nonlinearity, "gain": self.gain}
