"""What the package's layers share (private module): argument checks, the Dense-like weight
arguments (initializers, regularizers, constraints, bias, activation) and the image layout."""

from __future__ import annotations

from typing import Tuple

import keras
from keras import ops

__all__ = ["ImageLayout", "WeightArgs", "check_positive_int", "int_pair",
           "resolve_data_format"]


def check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"`{name}` must be a positive int, got {value!r}.")
    value = int(value.__index__())
    if value <= 0:
        raise ValueError(f"`{name}` must be a positive int, got {value}.")
    return value


def resolve_data_format(value) -> str:
    """``None`` -> ``keras.config.image_data_format()``, read once (at construction, as
    ``keras.layers.Conv2D`` does): a layer's layout must not follow later global changes."""
    if value is None:
        return keras.config.image_data_format()
    if not isinstance(value, str) or value.lower() not in ("channels_last", "channels_first"):
        raise ValueError(
            f"`data_format` must be 'channels_last' (inputs (N, H, W, C)), 'channels_first' "
            f"(inputs (N, C, H, W)) or None (keras.config.image_data_format()), got {value!r}.")
    return value.lower()


def int_pair(value, name: str) -> Tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    value = tuple(value)
    if len(value) != 2:
        raise ValueError(f"`{name}` must be an int or a pair of ints, got {value!r}.")
    return tuple(check_positive_int(v, name) for v in value)


class WeightArgs:
    """Shared handling of the Dense-like initializer/regularizer/constraint arguments."""

    def _set_weight_args(self, activation, use_bias, kernel_initializer, bias_initializer,
                         kernel_regularizer, bias_regularizer, kernel_constraint,
                         bias_constraint):
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)

    def _weight_config(self) -> dict:
        s = keras.saving.serialize_keras_object
        return {
            "activation": s(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": s(self.kernel_initializer),
            "bias_initializer": s(self.bias_initializer),
            "kernel_regularizer": s(self.kernel_regularizer),
            "bias_regularizer": s(self.bias_regularizer),
            "activity_regularizer": s(self.activity_regularizer),
            "kernel_constraint": s(self.kernel_constraint),
            "bias_constraint": s(self.bias_constraint),
        }

    def _add_kernel_and_bias(self, kernel_shape, n_out: int):
        self.kernel = self.add_weight(
            name="kernel", shape=kernel_shape, initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias", shape=(n_out,), initializer=self.bias_initializer,
                regularizer=self.bias_regularizer, constraint=self.bias_constraint)

    def _check_real(self, dtype) -> str:
        dtype = keras.backend.standardize_dtype(dtype)
        if "complex" in dtype or dtype == "string":
            raise TypeError(
                f"{type(self).__name__} {self.name!r} takes real inputs (float, int or bool), "
                f"got `inputs` of dtype {dtype}. Its weights are real and the imaginary part "
                "would be dropped: pass the real and imaginary parts as separate features "
                "(e.g. concatenated on the channel axis), or `keras.ops.real(x)`.")
        return dtype

    def _real_inputs(self, inputs):
        """``inputs`` in the compute dtype: Keras layers compute in it whatever the input dtype
        (integer images would otherwise give truncated outputs); complex inputs are refused."""
        if self._check_real(inputs.dtype) != self.compute_dtype:
            inputs = ops.cast(inputs, self.compute_dtype)
        return inputs

    def compute_output_spec(self, inputs, *args, **kwargs):
        # The symbolic path (keras.Input) does not run call(): refuse complex inputs here too.
        self._check_real(inputs.dtype)
        return super().compute_output_spec(inputs, *args, **kwargs)

    def _finish(self, y, channels_first: bool = False):
        if self.bias is not None:
            # (N, C, H, W): the bias broadcasts over the two trailing spatial axes.
            y = ops.add(y, ops.reshape(self.bias, (-1, 1, 1)) if channels_first else self.bias)
        if self.activation is not None:
            y = self.activation(y)
        return y


class ImageLayout:
    """Axes of a 2-D image layer's input under its ``data_format``."""

    @property
    def _channel_axis(self) -> int:
        return -1 if self.data_format == "channels_last" else 1

    def _hwc(self, input_shape):
        """``(H, W, C)`` of an input shape in this layer's layout."""
        if self.data_format == "channels_last":
            return input_shape[1], input_shape[2], input_shape[3]
        return input_shape[2], input_shape[3], input_shape[1]

    def _built_channels(self, input_shape) -> int:
        """The input's channel count, which ``build`` needs known."""
        c_in = input_shape[self._channel_axis]
        if c_in is None:
            raise ValueError(
                f"The channel axis of the input to {type(self).__name__} must be defined; got "
                f"input shape {tuple(input_shape)} (data_format={self.data_format!r}).")
        return int(c_in)
