"""The normed initialization (Yang, Ding, Chan, Hu, Peng, Zeng, IPI 2021)."""

from __future__ import annotations

import math
import random
from typing import Optional

import keras

from keras_normed import structure

_DISTRIBUTIONS = ("truncated_normal", "normal", "uniform")
# Std of a unit normal truncated at +-2 std, as keras.initializers.VarianceScaling uses.
_TRUNCATION_CORRECTION = 0.87962566103423978


def _gain_for(nonlinearity: str) -> float:
    gains = {"linear": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3.0, "relu": math.sqrt(2.0),
             "gelu": math.sqrt(2.0), "selu": 0.75}
    if nonlinearity not in gains:
        raise ValueError(
            f"Unknown nonlinearity {nonlinearity!r}; expected one of {sorted(gains)} "
            "or pass `gain=` explicitly."
        )
    return gains[nonlinearity]


@keras.saving.register_keras_serializable(package="keras_normed", name="Normed")
class Normed(keras.initializers.Initializer):
    """Structure-aware initializer: variance from the layer's *effective* operator.

    ``std = gain / sqrt(fan_in)`` where ``fan_in`` is the number of nonzeros in a row of the
    layer's effective matrix ``T`` (see :mod:`keras_normed.structure`), not the kernel tensor's
    shape. Called with a bare shape outside a layer, it falls back to shape-based fans like
    ``keras.initializers.HeNormal``.

    Args:
        nonlinearity: activation the layer feeds ("relu", "linear", "tanh", ...); sets the gain.
        gain: explicit gain; overrides ``nonlinearity``.
        distribution: "truncated_normal", "normal" or "uniform".
        seed: int for reproducible values, or ``None``.

    Reference: H. Yang et al., "A new initialization method based on normed statistical spaces
    in deep networks", Inverse Problems and Imaging 15(1), 2021.
    """

    def __init__(self, nonlinearity: str = "relu", gain: Optional[float] = None,
                 distribution: str = "truncated_normal", seed: Optional[int] = None):
        if distribution not in _DISTRIBUTIONS:
            raise ValueError(
                f"Invalid `distribution` {distribution!r}; expected one of {_DISTRIBUTIONS}."
            )
        if gain is not None and not (math.isfinite(gain) and gain > 0):
            raise ValueError(f"`gain` must be a positive finite number, got {gain!r}.")
        self.nonlinearity = nonlinearity
        self.gain = gain
        self._gain = float(gain) if gain is not None else _gain_for(nonlinearity)
        self.distribution = distribution
        self.seed = seed
        # As Keras does: None draws a fixed int now, so repeated calls give the same values
        # while get_config keeps None.
        self._seed = int(seed) if seed is not None else random.randint(1, 2**31 - 1)

    def __call__(self, shape, dtype=None):
        found = structure.building_layer()
        layer = found[0] if found is not None else None
        fan_in, _ = structure.kernel_fans(layer, shape)
        std = self._gain / math.sqrt(max(1, fan_in))
        seed = self._seed
        if self.distribution == "truncated_normal":
            return keras.random.truncated_normal(
                shape, stddev=std / _TRUNCATION_CORRECTION, dtype=dtype, seed=seed)
        if self.distribution == "normal":
            return keras.random.normal(shape, stddev=std, dtype=dtype, seed=seed)
        limit = math.sqrt(3.0) * std
        return keras.random.uniform(shape, -limit, limit, dtype=dtype, seed=seed)

    def get_config(self):
        return {"nonlinearity": self.nonlinearity, "gain": self.gain,
                "distribution": self.distribution, "seed": self.seed}
