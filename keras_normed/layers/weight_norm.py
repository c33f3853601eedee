"""Weight normalization (Salimans & Kingma, NeurIPS 2016) as a Keras wrapper layer."""

from __future__ import annotations

import keras
from keras import ops
from keras.src.layers.convolutional.base_conv import BaseConv

__all__ = ["WeightNormalization"]


def _is_supported(layer) -> bool:
    # Conv1D/2D/3D subclass BaseConv; transposed, depthwise and separable ones do not.
    return isinstance(layer, (keras.layers.Dense, BaseConv))


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
        epsilon: added to ``||v||^2`` under the square root, so a zero column gives no NaN.

    Example:

    >>> layer = WeightNormalization(keras.layers.Dense(3, activation="relu"))
    >>> y = layer(np.ones((2, 4), "float32"))
    >>> layer.g.shape
    (3,)

    To initialize a whole network as Arpit et al. (2019) propose, see
    :func:`keras_normed.initializers.weight_norm.arpit_init`.

    Reference: T. Salimans, D. P. Kingma, "Weight Normalization: A Simple Reparameterization
    to Accelerate Training of Deep Neural Networks", NeurIPS 2016.
    """

    def __init__(self, layer, g_initializer="norm", epsilon: float = 1e-12, **kwargs):
        if not isinstance(layer, keras.layers.Layer) or not _is_supported(layer):
            raise TypeError(
                "`layer` must be a keras.layers.Dense or Conv1D/Conv2D/Conv3D layer, got "
                f"{type(layer).__name__}. Wrap those layers, or use a plain layer instead."
            )
        if getattr(layer, "data_format", "channels_last") != "channels_last" and not isinstance(
                layer, keras.layers.Dense):
            raise ValueError("WeightNormalization supports data_format='channels_last' only.")
        if not epsilon >= 0:
            raise ValueError(f"`epsilon` must be >= 0, got {epsilon!r}.")
        super().__init__(layer, **kwargs)
        self.g_initializer = g_initializer
        self._g_initializer = None if g_initializer == "norm" else keras.initializers.get(
            g_initializer)
        self.epsilon = float(epsilon)

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

    def _v_norm(self):
        v = self.layer.kernel
        axes = tuple(range(len(v.shape) - 1))
        return ops.sqrt(ops.sum(ops.square(v), axis=axes) + self.epsilon)

    def normalized_kernel(self):
        """The effective kernel ``g * v / ||v||`` (same shape as ``v``)."""
        v = ops.convert_to_tensor(self.layer.kernel)
        return v * (ops.convert_to_tensor(self.g) / self._v_norm())

    def call(self, inputs):
        inner = self.layer
        kernel = ops.cast(self.normalized_kernel(), inner.compute_dtype)
        inputs = ops.cast(inputs, inner.compute_dtype)
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
