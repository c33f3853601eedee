"""Layers of keras-normed: block-circulant, periodic and weight-normalized."""

from keras_normed.layers.circulant import CirculantConv2D, CirculantDense
from keras_normed.layers.periodic import PeriodicConv2D
from keras_normed.layers.weight_norm import WeightNormalization

__all__ = ["CirculantDense", "CirculantConv2D", "PeriodicConv2D", "WeightNormalization"]
