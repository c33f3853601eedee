"""Initializers of keras-normed; Xavier/Glorot, He, LeCun and Orthogonal are Keras's own."""

from keras_normed.initializers.delta_orthogonal import (
    CriticalPoint,
    DeltaOrthogonal,
    critical_sigma_w,
    tanh_critical_point,
)
from keras_normed.initializers.normed import EffectiveVarianceScaling, Normed
from keras_normed.initializers.random_walk import RandomWalk, random_walk_gain
from keras_normed.initializers.weight_norm import arpit_init

__all__ = ["Normed", "EffectiveVarianceScaling", "DeltaOrthogonal", "CriticalPoint",
           "critical_sigma_w", "tanh_critical_point", "RandomWalk", "random_walk_gain",
           "arpit_init"]
