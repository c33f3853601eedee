"""FFT kernels, one import for :mod:`~keras_normed.ops.circulant`,
:mod:`~keras_normed.ops.periodic` and :mod:`~keras_normed.ops.dispatch` (docs/layers.md)."""

from keras_normed.geometry import conv_output_length
from keras_normed.ops import circulant, dispatch, periodic
from keras_normed.ops.circulant import *  # noqa: F403 - re-exported: their __all__
from keras_normed.ops.dispatch import *  # noqa: F403
from keras_normed.ops.periodic import *  # noqa: F403

__all__ = ["conv_output_length", *circulant.__all__, *dispatch.__all__, *periodic.__all__]
