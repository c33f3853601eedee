"""Weight normalization (Salimans & Kingma, NeurIPS 2016) as a Keras wrapper layer."""

from __future__ import annotations

import math
import numbers

import keras
import numpy as np
from keras import ops

from keras_normed import _keras_compat, structure
from keras_normed.layers._base import RealInputs

__all__ = ["WeightNormalization"]


def _describe(value) -> str:
    text = repr(value)
    text = text if len(text) <= 80 else text[:77] + "..."
    return f"{text} (type {type(value).__name__})"


def _check_epsilon(epsilon) -> float:
    if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real):
        raise TypeError("`epsilon` must be a non-negative float (added to ||v||^2 under the "
                        f"square root), got {_describe(epsilon)}. Pass e.g. epsilon=1e-12.")
    epsilon = float(epsilon)
    if not (math.isfinite(epsilon) and epsilon >= 0):
        raise ValueError("`epsilon` must be a finite float >= 0 (added to ||v||^2 under the "
                         f"square root), got {epsilon!r}. Pass e.g. epsilon=1e-12 or 0.")
    return epsilon


def _check_g_initializer(g_initializer):
    """``None`` for ``"norm"`` (g = ||v|| at build time), else the Keras initializer."""
    if isinstance(g_initializer, str) and g_initializer.lower() == "norm":
        return None
    try:
        return keras.initializers.get(g_initializer)
    except (ValueError, TypeError) as err:
        raise ValueError("`g_initializer` must be 'norm' or a Keras initializer (name, config or "
                         f"instance, e.g. 'ones'), got {_describe(g_initializer)}.") from err


def _check_built_dtype(layer, policy) -> None:
    # A built layer's variables would stay in their old dtype.
    if not layer.built:
        return
    wrong = sorted({keras.backend.standardize_dtype(w.dtype) for w in layer.weights}
                   - {policy.variable_dtype})
    if wrong:
        raise ValueError(
            f"`dtype`={policy.name!r} asks for {policy.variable_dtype} variables, but the "
            f"wrapped `layer` {layer.name!r} is already built with {', '.join(wrong)} weights. "
            "Pass an unbuilt layer, or a `dtype` with the same variable dtype.")


@keras.saving.register_keras_serializable(package="keras_normed", name="WeightNormalization")
class WeightNormalization(RealInputs, keras.layers.Wrapper):
    """Weight normalization of a ``Dense`` or ``Conv1D/2D/3D`` layer.

    Output unit ``i`` uses the kernel column ``w_i = g_i * v_i / ||v_i||``: ``v`` (the wrapped
    layer's ``kernel``) sets the direction, the trainable ``g`` the length; the wrapped layer's
    bias and activation are kept (docs/weight_norm.md).

    Args:
        layer: a channels_last ``keras.layers.Dense`` or ``Conv1D``/``Conv2D``/``Conv3D`` layer.
        g_initializer: ``"norm"`` (``g = ||v||`` at build time: the wrapper starts as the
            unwrapped layer) or a Keras initializer (e.g. ``"ones"``).
        epsilon: a float >= 0 added to ``||v||^2`` under the square root.
        dtype: the dtype policy of the wrapper and the wrapped layer (default: the wrapped
            layer's); a wrapped layer already built must have its variable dtype.

    Example:

    >>> layer = WeightNormalization(keras.layers.Dense(3, activation="relu"))
    >>> y = layer(np.ones((2, 4), "float32"))
    >>> tuple(layer.g.shape)
    (3,)

    A whole network as Arpit et al. (2019): :func:`keras_normed.initializers.arpit_init`.
    Reference: T. Salimans, D. P. Kingma, "Weight Normalization", NeurIPS 2016.
    """

    def __init__(self, layer, g_initializer="norm", epsilon: float = 1e-12, **kwargs):
        if not isinstance(layer, keras.layers.Dense) and not _keras_compat.is_conv(layer):
            raise TypeError(
                "`layer` must be a keras.layers.Dense or Conv1D/Conv2D/Conv3D layer instance, "
                f"got {_describe(layer)}. Wrap one of those layers (e.g. WeightNormalization("
                "keras.layers.Dense(64))), or use a plain layer instead.")
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            raise ValueError(
                "WeightNormalization supports data_format='channels_last' only, got `layer` with "
                f"data_format={layer.data_format!r}; wrap one with data_format='channels_last'.")
        self.epsilon = _check_epsilon(epsilon)
        self._g_initializer = _check_g_initializer(g_initializer)
        # One dtype policy for both, else the symbolic and eager output dtypes differ.
        explicit_dtype = kwargs.get("dtype") is not None
        if not explicit_dtype:
            kwargs["dtype"] = layer.dtype_policy
        super().__init__(layer, **kwargs)
        if explicit_dtype:
            _check_built_dtype(layer, self.dtype_policy)
            layer.dtype_policy = self.dtype_policy
        self.g_initializer = g_initializer

    @property
    def v(self):
        """The direction ``v``: the wrapped layer's kernel."""
        return self.layer.kernel

    def build(self, input_shape):
        inner = self.layer
        if not inner.built:  # its kernel initializer handed the wrapped layer, as ours are
            init = inner.kernel_initializer
            inner.kernel_initializer = structure.bind_initializer(init, inner, "kernel")
            try:
                inner.build(input_shape)
            finally:
                inner.kernel_initializer = init
        units = int(inner.kernel.shape[-1])

        def v_norm(shape, dtype=None):
            # As an initializer, not an assign after: Keras runs initializers where values are
            # concrete, also when it builds the model by tracing it (an assign there was lost,
            # and reading the norm to NumPy failed).
            return ops.cast(self._v_norm()[1], dtype)

        self.g = self.add_weight(name="g", shape=(units,), trainable=True,
                                 initializer=self._g_initializer or v_norm,
                                 dtype=inner.kernel.dtype)
        self.built = True

    def _v_norm(self):
        """``v`` in the norm's dtype, and ``||v||`` per output unit."""
        # float32 at least: in float16 entries below ~2e-4 square to 0, as epsilon=1e-12 is.
        is_f64 = keras.backend.standardize_dtype(self.layer.kernel.dtype) == "float64"
        dtype = "float64" if is_f64 else "float32"
        v = ops.cast(self.layer.kernel, dtype)
        squares = ops.sum(ops.square(v), axis=tuple(range(len(v.shape) - 1))) + self.epsilon
        # Floored at the smallest normal number: a zero column gives 0 / sqrt(tiny) = 0, not NaN.
        return v, ops.sqrt(ops.maximum(squares, float(np.finfo(dtype).tiny)))

    def normalized_kernel(self):
        """The effective kernel ``g * v / ||v||`` (same shape and dtype as ``v``)."""
        v, norm = self._v_norm()
        return ops.cast(v * (ops.cast(self.g, v.dtype) / norm), self.layer.kernel.dtype)

    def call(self, inputs):
        inner = self.layer
        self._check_real(inputs.dtype)
        kernel = ops.cast(self.normalized_kernel(), inner.compute_dtype)
        inputs = ops.cast(inputs, inner.compute_dtype)  # integer inputs too, as Dense/Conv
        if isinstance(inner, keras.layers.Dense):
            outputs = ops.matmul(inputs, kernel)
        elif inner.padding == "causal":  # Conv1D's own call pads the past, then runs "valid"
            left = inner.dilation_rate[0] * (inner.kernel_size[0] - 1)
            outputs = ops.conv(ops.pad(inputs, [[0, 0], [left, 0], [0, 0]]), kernel,
                               strides=list(inner.strides), padding="valid",
                               dilation_rate=inner.dilation_rate, data_format=inner.data_format)
        else:
            outputs = inner.convolution_op(inputs, kernel)
        if inner.use_bias:
            outputs = ops.add(outputs, ops.cast(inner.bias, inner.compute_dtype))
        if inner.activation is not None:
            outputs = inner.activation(outputs)
        return outputs

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def normed_fans(self, kernel_shape):
        return structure.kernel_fans(self.layer, kernel_shape)

    def normed_structure(self, input_shape):
        return structure.layer_structure(self.layer, input_shape)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # Keras's Wrapper.from_config pops "layer" from the dict it is given: leave the caller's.
        # Given another dtype than its layer's (a clone to bfloat16), the layer is built by the
        # wrapper's own build (same variables, same order), not from its build_config: built in
        # the old dtype, it was refused.
        config, inner = dict(config), config.get("layer")
        if isinstance(inner, dict) and "dtype" in config \
                and config["dtype"] != inner.get("config", {}).get("dtype"):
            config["layer"] = {k: v for k, v in inner.items() if k != "build_config"}
        return super().from_config(config, custom_objects=custom_objects)

    def get_config(self):
        g_init = self.g_initializer
        if self._g_initializer is not None:
            g_init = keras.initializers.serialize(self._g_initializer)
        return {**super().get_config(), "g_initializer": g_init, "epsilon": self.epsilon}
