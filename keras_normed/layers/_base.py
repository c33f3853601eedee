"""What the package's layers share: argument checks, Dense-like weight arguments, image layout."""

from __future__ import annotations

import keras
from keras import ops

from keras_normed import structure


def resolve_data_format(value) -> str:
    """``value`` checked; ``None`` is the global default read now, as ``Conv2D`` does."""
    if value is None:
        return keras.config.image_data_format()
    if not isinstance(value, str) or value.lower() not in ("channels_last", "channels_first"):
        raise ValueError(
            f"`data_format` must be 'channels_last' (inputs (N, H, W, C)), 'channels_first' "
            f"(inputs (N, C, H, W)) or None (keras.config.image_data_format()), got {value!r}.")
    return value.lower()


# The Dense-like weight arguments in the layers' argument order, each with its Keras module.
_WEIGHT_ARGS = [(f"{weight}_{kind}", module) for kind, module in (
    ("initializer", keras.initializers), ("regularizer", keras.regularizers),
    ("constraint", keras.constraints)) for weight in ("kernel", "bias")]


class RealInputs:
    """Refuses complex inputs, eagerly and on the symbolic path."""

    def _check_real(self, dtype) -> str:
        dtype = keras.backend.standardize_dtype(dtype)
        if "complex" in dtype or dtype == "string":
            fix = ("Its weights are real and the imaginary part would be dropped: pass the real "
                   "and imaginary parts as separate features (e.g. concatenated on the channel "
                   "axis), or `keras.ops.real(x)`." if "complex" in dtype else
                   "Turn strings into numbers first (e.g. keras.layers.StringLookup).")
            raise TypeError(
                f"{type(self).__name__} {self.name!r} takes real inputs (float, int or bool), "
                f"got `inputs` of dtype {dtype}. {fix}")
        return dtype

    def compute_output_spec(self, inputs, *args, **kwargs):
        # The symbolic path (keras.Input) does not run call(): refuse complex inputs here too.
        self._check_real(inputs.dtype)
        return super().compute_output_spec(inputs, *args, **kwargs)


class WeightArgs(RealInputs):
    """Shared handling of the Dense-like initializer/regularizer/constraint arguments."""

    def _set_weight_args(self, activation, use_bias, *weight_args):
        """``activation``, ``use_bias`` and the six arguments named in ``_WEIGHT_ARGS``."""
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        for (name, module), value in zip(_WEIGHT_ARGS, weight_args):
            setattr(self, name, module.get(value))

    def _weight_config(self) -> dict:
        names = ("activation", "activity_regularizer", *(name for name, _ in _WEIGHT_ARGS))
        return {"use_bias": self.use_bias, **{
            name: keras.saving.serialize_keras_object(getattr(self, name)) for name in names}}

    def _add_kernel_and_bias(self, kernel_shape, n_out: int):
        def add(name, shape):  # the initializer is handed this layer and the weight's name
            init = structure.bind_initializer(getattr(self, f"{name}_initializer"), self, name)
            return self.add_weight(name=name, shape=shape, initializer=init,
                                   regularizer=getattr(self, f"{name}_regularizer"),
                                   constraint=getattr(self, f"{name}_constraint"))

        self.kernel = add("kernel", kernel_shape)
        self.bias = add("bias", (n_out,)) if self.use_bias else None

    def _real_inputs(self, inputs):
        # Cast as Keras layers do: integer images would otherwise give truncated outputs.
        if self._check_real(inputs.dtype) != self.compute_dtype:
            inputs = ops.cast(inputs, self.compute_dtype)
        return inputs

    def _finish(self, y, channels_first: bool = False):
        if self.bias is not None and channels_first:
            # (N, C, H, W): the bias broadcasts over the two trailing spatial axes. Subtracted
            # negated (exact): TensorFlow's ops.add reads a (C, 1, 1) operand as an NHWC bias
            # where W == C, and added it along the width.
            y = ops.subtract(y, ops.negative(ops.reshape(self.bias, (-1, 1, 1))))
        elif self.bias is not None:
            y = ops.add(y, self.bias)
        if self.activation is not None:
            y = self.activation(y)
        return y


class ImageLayout:
    """Axes of a 2-D image layer's input under its ``data_format``."""

    @property
    def _channel_axis(self) -> int:
        return -1 if self.data_format == "channels_last" else 1

    def _hwc(self, input_shape):
        if self.data_format == "channels_last":
            return input_shape[1], input_shape[2], input_shape[3]
        return input_shape[2], input_shape[3], input_shape[1]

    def _known_hwc(self, input_shape):
        # The structure counts taps per output position: it needs the image size.
        hwc = self._hwc(input_shape)
        if any(d is None for d in hwc):
            raise ValueError(
                f"{type(self).__name__} {self.name!r}: its structure (sharing) needs a known "
                f"height, width and channels; got input shape {tuple(input_shape)}. Build it on "
                "a fixed image size to have it measured.")
        return tuple(int(d) for d in hwc)

    def _built_channels(self, input_shape) -> int:
        c_in = input_shape[self._channel_axis]
        if c_in is None or int(c_in) == 0:
            raise ValueError(
                f"The channel axis of the input to {type(self).__name__} must be defined and "
                f"nonzero; got input shape {tuple(input_shape)} "
                f"(data_format={self.data_format!r}).")
        return int(c_in)

    def _check_not_empty(self, input_shape) -> None:
        if 0 in self._hwc(input_shape)[:2]:
            raise ValueError(
                f"{type(self).__name__} {self.name!r}: an empty image, height x width "
                f"{tuple(self._hwc(input_shape)[:2])} (input shape {tuple(input_shape)}); pass "
                "an image of at least one pixel.")
