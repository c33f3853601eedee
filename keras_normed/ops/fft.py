"""FFT kernels: block-circulant products (CirCNN) and periodic (circular) 2-D convolution.

One import for the ops of :mod:`~keras_normed.ops.circulant`, :mod:`~keras_normed.ops.periodic`
and :mod:`~keras_normed.ops.dispatch` (method choice, cost model). Everything is written with
``keras.ops`` only, so the layers that call it run on the TensorFlow, JAX and PyTorch backends.

Mixed precision: FFTs accept only float32/float64, so float16/bfloat16 operands are cast to
float32 around the transform and the result is cast back to the input's dtype. Integer and bool
inputs compute in the kernel's float dtype (never cast back to an integer); complex inputs raise
``TypeError``.

Layout and sizes: the 2-D ops take ``data_format`` explicitly (default ``"channels_last"``) and
never read ``keras.config.image_data_format()``; height and width may be unknown until run time.
"""

from keras_normed.geometry import conv_output_length
from keras_normed.ops.circulant import (
    circulant_conv2d,
    circulant_conv2d_dense,
    circulant_matmul,
    circulant_to_dense,
    num_blocks,
)
from keras_normed.ops.dispatch import (
    circulant_conv2d_method,
    compiled_by_xla,
    periodic_conv2d_cost,
    periodic_conv2d_method,
)
from keras_normed.ops.periodic import periodic_conv2d

__all__ = [
    "circulant_conv2d",
    "circulant_conv2d_dense",
    "circulant_conv2d_method",
    "compiled_by_xla",
    "circulant_matmul",
    "circulant_to_dense",
    "conv_output_length",
    "num_blocks",
    "periodic_conv2d",
    "periodic_conv2d_cost",
    "periodic_conv2d_method",
]
