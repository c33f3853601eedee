"""Weight normalization (Salimans & Kingma, NeurIPS 2016) as a Keras wrapper layer."""

from __future__ import annotations

import math
import numbers

import keras
import numpy as np
from keras import ops

from keras_normed import _keras_compat

__all__ = ["WeightNormalization"]


def _is_supported(layer) -> bool:
    # Conv1D/2D/3D subclass BaseConv; transposed, depthwise and separable ones do not.
    return isinstance(layer, keras.layers.Dense) or _keras_compat.is_conv(layer)


def _describe(value) -> str:
    text = repr(value)
    text = text if len(text) <= 80 else text[:77] + "..."
    return f"{text} (type {type(value).__name__})"


def _check_epsilon(epsilon) -> float:
    if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real):
        raise TypeError(
            f"`epsilon` must be a non-negative float (added to ||v||^2 under the square root), "
            f"got {_describe(epsilon)}. Pass e.g. epsilon=1e-12 (the default) or 0.")
    epsilon = float(epsilon)
    if not (math.isfinite(epsilon) and epsilon >= 0):
        raise ValueError(
            f"`epsilon` must be a finite float >= 0 (added to ||v||^2 under the square root), "
            f"got {epsilon!r}. Pass e.g. epsilon=1e-12 (the default) or 0.")
    return epsilon


def _check_g_initializer(g_initializer):
    """``None`` for ``"norm"`` (g = ||v|| at build time), else the Keras initializer."""
    if isinstance(g_initializer, str) and g_initializer == "norm":
        return None
    try:
        return keras.initializers.get(g_initializer)
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"`g_initializer` must be 'norm' or a Keras initializer (name, config or "
            f"instance, e.g. 'ones'), got {_describe(g_initializer)}.") from err


def _check_built_dtype(layer, policy) -> None:
    """A wrapped layer that already has weights cannot take a policy with another variable
    dtype: its variables would stay in the old one."""
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
class WeightNormalization(keras.layers.Wrapper):
    """Weight normalization of a ``Dense`` or ``Conv1D/2D/3D`` layer.

    Each output unit ``i`` of the wrapped layer uses the kernel column

        ``w_i = g_i * v_i / ||v_i||``

    where ``v`` (the wrapped layer's own ``kernel`` variable) sets the direction and the
    trainable vector ``g`` (one entry per output unit) sets the length: ``||w_i|| = g_i``
    exactly, whatever ``v`` is. The bias and activation of the wrapped layer are kept.

    Args:
        layer: a ``keras.layers.Dense`` or convolution (``Conv1D``, ``Conv2D``, ``Conv3D``)
            layer; transposed, depthwise and separable convolutions are not supported.
        g_initializer: ``"norm"`` (default) sets ``g = ||v||`` at build time, so the wrapper
            starts as the unwrapped layer; any Keras initializer (e.g. ``"ones"``) is
            used as given.
        epsilon: a float >= 0 added to ``||v||^2`` under the square root. The sum is also
            floored at the smallest normal float, so even ``epsilon=0`` gives a zero column
            ``w_i = 0`` (not NaN). The norm is computed in float32 (float64 for float64
            variables), also under float16 policies.
        dtype: the dtype policy of the wrapper *and* of the wrapped layer (applied to it, as
            for Keras's own wrappers), e.g. ``"mixed_float16"``: float16 compute and output,
            float32 variables (``g`` included). Not given: the wrapped layer's policy is used.
            A wrapped layer that is already built must have matching variable dtypes.

    Example:

    >>> layer = WeightNormalization(keras.layers.Dense(3, activation="relu"))
    >>> y = layer(np.ones((2, 4), "float32"))
    >>> tuple(layer.g.shape)
    (3,)

    To initialize a whole network as Arpit et al. (2019) propose, see
    :func:`keras_normed.initializers.weight_norm.arpit_init`.

    Reference: T. Salimans, D. P. Kingma, "Weight Normalization: A Simple Reparameterization
    to Accelerate Training of Deep Neural Networks", NeurIPS 2016.
    """

    def __init__(self, layer, g_initializer="norm", epsilon: float = 1e-12, **kwargs):
        if not isinstance(layer, keras.layers.Layer) or not _is_supported(layer):
            raise TypeError(
                "`layer` must be a keras.layers.Dense or Conv1D/Conv2D/Conv3D layer instance, "
                f"got {_describe(layer)}. Wrap one of those layers (e.g. "
                "WeightNormalization(keras.layers.Dense(64))), or use a plain layer instead."
            )
        if getattr(layer, "data_format", "channels_last") != "channels_last" and not isinstance(
                layer, keras.layers.Dense):
            raise ValueError(
                "WeightNormalization supports data_format='channels_last' only, got `layer` "
                f"with data_format={layer.data_format!r}; build the wrapped layer with "
                "data_format='channels_last'.")
        self.epsilon = _check_epsilon(epsilon)
        self._g_initializer = _check_g_initializer(g_initializer)
        # One dtype policy for wrapper and wrapped layer (else the symbolic output dtype, from
        # the wrapper, and the eager one, from the inner layer, differ): the wrapper's `dtype`
        # when given, else the wrapped layer's.
        explicit_dtype = kwargs.get("dtype") is not None
        if not explicit_dtype:
            kwargs["dtype"] = layer.dtype_policy
        super().__init__(layer, **kwargs)
        if explicit_dtype:
            _check_built_dtype(layer, self.dtype_policy)
            layer.dtype_policy = self.dtype_policy
        self.g_initializer = g_initializer

    # The wrapped layer's kernel plays the role of v.
    @property
    def v(self):
        return self.layer.kernel

    def _units(self) -> int:
        return int(self.layer.kernel.shape[-1])

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)
        units = self._units()
        self.g = self.add_weight(name="g", shape=(units,), initializer="ones",
                                 trainable=True, dtype=self.layer.kernel.dtype)
        if self._g_initializer is None:
            self.g.assign(ops.convert_to_numpy(self._v_norm()))
        else:
            self.g.assign(self._g_initializer((units,), dtype=self.g.dtype))
        self.built = True

    def _norm_dtype(self) -> str:
        # The norm is taken in float32 at least: in float16 the squares underflow (a column
        # with entries below ~2e-4 would get norm 0, and epsilon=1e-12 is 0 in float16).
        dtype = keras.backend.standardize_dtype(self.layer.kernel.dtype)
        return "float64" if dtype == "float64" else "float32"

    def _v_norm(self):
        dtype = self._norm_dtype()
        v = ops.cast(self.layer.kernel, dtype)
        axes = tuple(range(len(v.shape) - 1))
        squares = ops.sum(ops.square(v), axis=axes) + self.epsilon
        # Floor at the dtype's smallest normal number: with epsilon=0 a zero column gives
        # 0 / sqrt(tiny) = 0 (a zero kernel column), not 0 / 0 = NaN.
        return ops.sqrt(ops.maximum(squares, float(np.finfo(dtype).tiny)))

    def normalized_kernel(self):
        """The effective kernel ``g * v / ||v||`` (same shape and dtype as ``v``)."""
        dtype = self._norm_dtype()
        v = ops.cast(self.layer.kernel, dtype)
        w = v * (ops.cast(self.g, dtype) / self._v_norm())
        return ops.cast(w, self.layer.kernel.dtype)

    def _check_real(self, dtype) -> None:
        dtype = keras.backend.standardize_dtype(dtype)
        if "complex" in dtype:
            raise TypeError(
                f"WeightNormalization {self.name!r} takes real inputs, got `inputs` of dtype "
                f"{dtype}; casting would drop the imaginary part. Pass the real and imaginary "
                "parts as separate features, or `keras.ops.real(x)`.")

    def compute_output_spec(self, inputs, *args, **kwargs):
        self._check_real(inputs.dtype)  # the symbolic path does not run call()
        return super().compute_output_spec(inputs, *args, **kwargs)

    def call(self, inputs):
        inner = self.layer
        self._check_real(inputs.dtype)
        kernel = ops.cast(self.normalized_kernel(), inner.compute_dtype)
        inputs = ops.cast(inputs, inner.compute_dtype)  # integer inputs too, as Dense/Conv
        if isinstance(inner, keras.layers.Dense):
            outputs = ops.matmul(inputs, kernel)
        else:
            outputs = inner.convolution_op(inputs, kernel)
        if inner.use_bias:
            outputs = ops.add(outputs, ops.cast(inner.bias, inner.compute_dtype))
        if inner.activation is not None:
            outputs = inner.activation(outputs)
        return outputs

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    # Structure for keras_normed.structure: the effective operator is the wrapped layer's.
    def normed_fans(self, kernel_shape):
        from keras_normed import structure

        return structure.kernel_fans(self.layer, kernel_shape)

    def normed_structure(self, input_shape):
        from keras_normed import structure

        return structure.layer_structure(self.layer, input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"g_initializer": self.g_initializer if self._g_initializer is None
                       else keras.initializers.serialize(self._g_initializer),
                       "epsilon": self.epsilon})
        return config
