"""Block-circulant layers (CirCNN, Ding et al., MICRO 2017; docs/layers.md)."""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import keras

from keras_normed import geometry
from keras_normed.geometry import LinearStructure
from keras_normed.layers._base import ImageLayout, WeightArgs, resolve_data_format
from keras_normed.ops._common import check_positive_int, int_pair
from keras_normed.ops.circulant import circulant_conv2d, num_blocks
from keras_normed.ops.freq import circulant_matmul_freq

__all__ = ["CirculantConv2D", "CirculantDense"]


def _check_block_size(block_size: int, n_in: int, n_out: int, in_name: str) -> None:
    if block_size > max(n_in, n_out):
        raise ValueError(
            f"`block_size`={block_size} is larger than both the {in_name} ({n_in}) and the "
            f"output size ({n_out}); use a `block_size` <= {max(n_in, n_out)}.")


@keras.saving.register_keras_serializable(package="keras_normed")
class CirculantDense(WeightArgs, keras.layers.Layer):
    """Dense layer whose ``n_in x units`` weight matrix is block-circulant (CirCNN).

    ``y = activation(x @ W + bias)``, output block ``q`` of ``x @ W`` being
    ``sum_p C(kernel[p, q]) x_p``, ``C(c)[i, j] = c[(i - j) mod b]``; kernel
    ``(ceil(n_in / b), ceil(units / b), b)``, ``b`` times fewer parameters than ``Dense``;
    computed by FFTs. Inputs: rank >= 2, features last, any real dtype.

    Args:
        units: output width.
        block_size: size ``b`` of the circulant blocks, ``<= max(n_in, units)``.
        activation, use_bias, initializers, regularizers, constraints: as ``keras.layers.Dense``.

    Example: ``CirculantDense(64, block_size=16)`` on 128 features has an ``(8, 4, 16)`` kernel.
    Reference: C. Ding et al., "CirCNN", MICRO 2017.
    """

    def __init__(self, units: int, block_size: int, activation=None, use_bias: bool = True,
                 kernel_initializer="normed", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.units = check_positive_int(units, "units")
        self.block_size = check_positive_int(block_size, "block_size")
        self._set_weight_args(activation, use_bias, kernel_initializer, bias_initializer,
                              kernel_regularizer, bias_regularizer, kernel_constraint,
                              bias_constraint)
        self.input_spec = keras.layers.InputSpec(min_ndim=2)
        self.n_in: Optional[int] = None

    def kernel_shape_for(self, n_in: int) -> Tuple[int, int, int]:
        b = self.block_size
        return (num_blocks(n_in, b), num_blocks(self.units, b), b)

    def build(self, input_shape):
        if input_shape[-1] is None:
            raise ValueError("The last axis (features) of the input to CirculantDense must be "
                             f"defined; got input shape {tuple(input_shape)}.")
        n_in = int(input_shape[-1])
        if n_in == 0:
            raise ValueError(f"CirculantDense {self.name!r}: the input has no features (input "
                             f"shape {tuple(input_shape)}); pass at least one.")
        _check_block_size(self.block_size, n_in, self.units, "input size")
        self.n_in = n_in  # read by normed_fans while the kernel is initialized
        self._add_kernel_and_bias(self.kernel_shape_for(n_in), self.units)
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: n_in})

    def call(self, inputs):
        y = circulant_matmul_freq(self._real_inputs(inputs), self.kernel, self.units)
        return self._finish(y)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def normed_fans(self, kernel_shape: Sequence[int]) -> Tuple[int, int]:
        """``(n_in, units)``: each output sees every input."""
        n_in = self.n_in if self.n_in is not None else int(kernel_shape[0]) * self.block_size
        return n_in, self.units

    def normed_structure(self, input_shape) -> LinearStructure:
        n_in = int(input_shape[-1])
        n_params, b = math.prod(self.kernel_shape_for(n_in)), self.block_size
        return LinearStructure(fan_in=n_in, fan_out=self.units,  # nnz = n_in * units
                               sharing=n_in * self.units / n_params,
                               uniform=n_in % b == 0 and self.units % b == 0,
                               n_params=n_params, shape=(self.units, n_in))

    def get_config(self):
        return {**super().get_config(), "units": self.units, "block_size": self.block_size,
                **self._weight_config()}


@keras.saving.register_keras_serializable(package="keras_normed")
class CirculantConv2D(ImageLayout, WeightArgs, keras.layers.Layer):
    """2-D convolution whose channel-mixing matrix is block-circulant (CirCNN).

    ``y[n, i, j] = activation(sum_{u, v} x[n, i*s + u*d, j*s + v*d] @ W[u, v] + bias)``, every
    ``W[u, v]`` block-circulant as in :class:`CirculantDense`; kernel
    ``(kh, kw, ceil(C_in / b), ceil(filters / b), b)``. Inputs of any real dtype; height and
    width may be unknown.

    Args:
        filters: output channels.
        kernel_size: int or pair.
        block_size: circulant block size ``b``, ``<= max(C_in, filters)``.
        strides, padding ("valid" or "same"), dilation_rate: as ``keras.layers.Conv2D``.
        activation, use_bias, initializers, regularizers, constraints: as ``Conv2D``.
        data_format: ``"channels_last"``, ``"channels_first"`` or ``None`` (the global default,
            read at construction).

    Example: ``CirculantConv2D(256, 3, block_size=256)`` on 256 channels: a ``(3, 3, 1, 1, 256)``
    kernel. Reference: C. Ding et al., "CirCNN", MICRO 2017.
    """

    def __init__(self, filters: int, kernel_size, block_size: int, strides=1,
                 padding: str = "valid", dilation_rate=1, activation=None,
                 use_bias: bool = True, kernel_initializer="normed", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, data_format=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.filters = check_positive_int(filters, "filters")
        self.kernel_size = int_pair(kernel_size, "kernel_size")
        self.block_size = check_positive_int(block_size, "block_size")
        self.data_format = resolve_data_format(data_format)
        self.strides = int_pair(strides, "strides")
        self.dilation_rate = int_pair(dilation_rate, "dilation_rate")
        if self.strides != (1, 1) and self.dilation_rate != (1, 1):
            raise ValueError("`strides` > 1 together with `dilation_rate` > 1 is not supported "
                             "(as in keras.layers.Conv2D); set one of them to 1.")
        if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
            raise ValueError(f"`padding` must be 'valid' or 'same', got {padding!r}.")
        self.padding = padding.lower()
        self._set_weight_args(activation, use_bias, kernel_initializer, bias_initializer,
                              kernel_regularizer, bias_regularizer, kernel_constraint,
                              bias_constraint)
        self.input_spec = keras.layers.InputSpec(ndim=4)
        self.c_in: Optional[int] = None

    def kernel_shape_for(self, c_in: int) -> Tuple[int, int, int, int, int]:
        b = self.block_size
        return self.kernel_size + (num_blocks(c_in, b), num_blocks(self.filters, b), b)

    def build(self, input_shape):
        c_in = self._built_channels(input_shape)
        _check_block_size(self.block_size, c_in, self.filters, "input channel count")
        self.compute_output_shape(input_shape)  # refuses an image smaller than the kernel
        self.c_in = c_in
        self._add_kernel_and_bias(self.kernel_shape_for(c_in), self.filters)
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={self._channel_axis: c_in})

    def call(self, inputs):
        # Each call's own size (the op checks a size known only when the graph runs).
        self.compute_output_shape(tuple(inputs.shape))
        y = circulant_conv2d(self._real_inputs(inputs), self.kernel, self.filters, self.strides,
                             self.padding, self.dilation_rate, data_format=self.data_format)
        return self._finish(y, self.data_format == "channels_first")

    def compute_output_shape(self, input_shape):
        self._check_not_empty(input_shape)
        ho, wo = (None if n is None else geometry.conv_output_length(n, k, s, self.padding, d)
                  for n, k, s, d in zip(self._hwc(input_shape)[:2], self.kernel_size,
                                        self.strides, self.dilation_rate))
        if (ho is not None and ho < 1) or (wo is not None and wo < 1):
            raise ValueError(
                f"{type(self).__name__} {self.name!r}: an input of height x width "
                f"{tuple(self._hwc(input_shape)[:2])} is smaller than the {self.kernel_size} "
                f"kernel (dilation {self.dilation_rate}) with padding='valid'; pass a larger "
                "input or padding='same'.")
        if self.data_format == "channels_first":
            return (input_shape[0], self.filters, ho, wo)
        return (input_shape[0], ho, wo, self.filters)

    def normed_fans(self, kernel_shape: Sequence[int]) -> Tuple[int, int]:
        """Like a ``Conv2D`` with a dense channel matrix: ``kh*kw*C_in`` and ``kh*kw*filters``."""
        kh, kw = self.kernel_size
        c_in = self.c_in if self.c_in is not None else int(kernel_shape[2]) * self.block_size
        return kh * kw * c_in, kh * kw * self.filters

    def normed_structure(self, input_shape) -> LinearStructure:
        h, w, c_in = self._known_hwc(input_shape)
        n_params = math.prod(self.kernel_shape_for(c_in))
        # Per spatial axis: in-range taps of every output, outputs one input reaches.
        ah, aw = (geometry.conv_axis(n, k, s, self.padding, d) for n, k, s, d in zip(
            (h, w), self.kernel_size, self.strides, self.dilation_rate))
        nnz = int(ah.rows.sum()) * int(aw.rows.sum()) * c_in * self.filters
        full = all((a.rows == k).all() for a, k in zip((ah, aw), self.kernel_size))
        uniform = full and c_in % self.block_size == 0 and self.filters % self.block_size == 0
        return LinearStructure(fan_in=int(ah.rows.max() * aw.rows.max()) * c_in,
                               fan_out=int(ah.cols.max() * aw.cols.max()) * self.filters,
                               sharing=nnz / n_params, uniform=bool(uniform), n_params=n_params,
                               shape=(len(ah.rows) * len(aw.rows) * self.filters, h * w * c_in))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "block_size": self.block_size, "strides": self.strides, "padding": self.padding,
                "dilation_rate": self.dilation_rate, "data_format": self.data_format,
                **self._weight_config()}
