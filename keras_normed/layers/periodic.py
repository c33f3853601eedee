"""``PeriodicConv2D``: convolution with periodic (circular) padding (docs/layers.md)."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import keras

from keras_normed.geometry import LinearStructure
from keras_normed.layers._base import ImageLayout, WeightArgs, resolve_data_format
from keras_normed.ops import dispatch
from keras_normed.ops._common import check_positive_int, int_pair
from keras_normed.ops.periodic import periodic_conv2d

__all__ = ["PeriodicConv2D"]

_METHODS = ("auto", "fft", "direct")


@keras.saving.register_keras_serializable(package="keras_normed")
class PeriodicConv2D(ImageLayout, WeightArgs, keras.layers.Layer):
    """2-D convolution with periodic padding; output of the input's size.

    ``y[n, i, j] = activation(sum_{u, v} x[n, (i + u - ch) mod H, (j + v - cw) mod W]
    @ kernel[u, v] + bias)``, ``ch = (kh - 1) // 2``, ``cw = (kw - 1) // 2``; kernel
    ``(kh, kw, C_in, filters)`` as ``Conv2D``'s. Inputs of any real dtype; height and width may
    be unknown.

    Args:
        filters: output channels.
        kernel_size: int or pair.
        strides: only 1 is supported.
        method: ``"direct"`` (wrap-pad, then a valid convolution), ``"fft"`` or ``"auto"``
            (:func:`~keras_normed.ops.dispatch.periodic_conv2d_method`).
        activation, use_bias, initializers, regularizers, constraints: as ``Conv2D``.
        data_format: ``"channels_last"``, ``"channels_first"`` or ``None`` (the global default,
            read at construction).

    Example: ``PeriodicConv2D(1, 55)`` on ``(2, 56, 56, 1)`` inputs gives ``(2, 56, 56, 1)``.
    Reference: H. Yang et al., "A new initialization method based on normed statistical spaces
    in deep networks", Inverse Problems and Imaging 15(1), 2021.
    """

    def __init__(self, filters: int, kernel_size, strides=1, method: str = "auto",
                 activation=None, use_bias: bool = True, kernel_initializer="normed",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 data_format=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.filters = check_positive_int(filters, "filters")
        self.kernel_size = int_pair(kernel_size, "kernel_size")
        self.strides = int_pair(strides, "strides")
        if self.strides != (1, 1):
            raise ValueError(f"PeriodicConv2D supports only `strides`=1, got {self.strides}; "
                             "add a pooling layer after it to downsample.")
        if not isinstance(method, str) or method.lower() not in _METHODS:
            raise ValueError(f"`method` must be one of {_METHODS}, got {method!r}.")
        self.method = method.lower()
        self.data_format = resolve_data_format(data_format)
        self._set_weight_args(activation, use_bias, kernel_initializer, bias_initializer,
                              kernel_regularizer, bias_regularizer, kernel_constraint,
                              bias_constraint)
        self.input_spec = keras.layers.InputSpec(ndim=4)
        self.c_in: Optional[int] = None

    def build(self, input_shape):
        self.c_in = self._built_channels(input_shape)
        self._add_kernel_and_bias(self.kernel_size + (self.c_in, self.filters), self.filters)
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={self._channel_axis: self.c_in})

    def resolved_method(self, input_shape) -> str:
        """``"fft"`` or ``"direct"``: what ``method`` resolves to for this input shape."""
        if self.method != "auto":
            return self.method
        h, w, c_in = (None if d is None else int(d) for d in self._hwc(input_shape))
        return dispatch.periodic_conv2d_method(h, w, *self.kernel_size, c_in, self.filters)

    def call(self, inputs):
        y = periodic_conv2d(self._real_inputs(inputs), self.kernel,
                            self.resolved_method(inputs.shape), data_format=self.data_format)
        return self._finish(y, self.data_format == "channels_first")

    def compute_output_shape(self, input_shape):
        self._check_not_empty(input_shape)
        shape = list(input_shape)
        shape[self._channel_axis] = self.filters
        return tuple(shape)

    def normed_fans(self, kernel_shape: Sequence[int]) -> Tuple[int, int]:
        """``kh*kw*C_in`` and ``kh*kw*filters`` (exact when the kernel fits in the input)."""
        kh, kw, c_in, c_out = (int(d) for d in kernel_shape)
        return kh * kw * c_in, kh * kw * c_out

    def normed_structure(self, input_shape) -> LinearStructure:
        """Uniform; ``sharing = H*W`` when the kernel fits in the input, less for a larger one."""
        h, w, c_in = self._known_hwc(input_shape)
        kh, kw = self.kernel_size
        n_params = kh * kw * c_in * self.filters
        rh, rw = min(kh, h), min(kw, w)  # distinct pixels one output sees per axis
        nnz = h * w * rh * rw * c_in * self.filters
        return LinearStructure(fan_in=rh * rw * c_in, fan_out=rh * rw * self.filters,
                               sharing=nnz / n_params, uniform=True, n_params=n_params,
                               shape=(h * w * self.filters, h * w * c_in))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "method": self.method, "data_format": self.data_format,
                **self._weight_config()}

