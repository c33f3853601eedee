"""Layers of keras-normed."""

__all__: list = []

from keras_normed.layers.weight_norm import WeightNormalization  # noqa: E402

__all__ += ["WeightNormalization"]

from keras_normed.layers.circulant import CirculantConv2D, CirculantDense  # noqa: E402
from keras_normed.layers.periodic import PeriodicConv2D  # noqa: E402

__all__ += ["CirculantConv2D", "CirculantDense", "PeriodicConv2D"]
