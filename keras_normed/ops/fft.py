"""FFT kernels: block-circulant products (CirCNN) and periodic (circular) 2-D convolution, one
import for :mod:`~keras_normed.ops.circulant`, :mod:`~keras_normed.ops.periodic` and
:mod:`~keras_normed.ops.dispatch`. Written with ``keras.ops`` only (any backend); dtypes,
layouts and run-time sizes as docs/layers.md says.
"""

from keras_normed.geometry import conv_output_length
from keras_normed.ops import circulant, dispatch, periodic
from keras_normed.ops.circulant import *  # noqa: F403 - re-exported: their __all__
from keras_normed.ops.dispatch import *  # noqa: F403
from keras_normed.ops.periodic import *  # noqa: F403

__all__ = ["conv_output_length", *circulant.__all__, *dispatch.__all__, *periodic.__all__]
