"""Delta-orthogonal initialization for convolutions (Xiao et al., ICML 2018), and the mean-field
critical point of tanh networks that it is meant to be used at (docs/delta_orthogonal.md)."""

from __future__ import annotations

import math
from typing import NamedTuple

import keras
import numpy as np

from keras_normed import _keras_compat as compat
from keras_normed.initializers.normed import SeededInitializer, check_number, check_positive


@keras.saving.register_keras_serializable(package="keras_normed", name="DeltaOrthogonal")
class DeltaOrthogonal(SeededInitializer):
    """Delta-orthogonal kernels: an orthogonal channel mixer at the spatial centre, zero elsewhere.

    For a kernel of shape ``(*k, c_in, c_out)`` (Conv1D/2D/3D) with ``c_out >= c_in``::

        W[centre, :, :] = gain * H,   H H^T = I_{c_in}  (H random orthogonal, c_in x c_out)
        W[x, :, :]      = 0           for every other spatial offset x,

    ``centre = (k - 1) // 2`` per axis; every singular value of the convolution's Jacobian is
    ``gain``. Use ``cp = tanh_critical_point(sigma_b2)``: ``gain=cp.sigma_w``, biases' std
    ``cp.sigma_b``.

    Example:
        >>> sw2, sb2, _ = keras_normed.initializers.tanh_critical_point(sigma_b2=1e-4)
        >>> layer = keras.layers.Conv2D(
        ...     32, 3, padding="same", activation="tanh",
        ...     kernel_initializer=DeltaOrthogonal(gain=math.sqrt(sw2), seed=0),
        ...     bias_initializer=keras.initializers.RandomNormal(stddev=math.sqrt(sb2), seed=1))
        >>> y = layer(np.ones((1, 8, 8, 16), "float32"))   # 16 <= 32 input channels

    Args:
        gain: multiplicative factor (``sigma_w`` of the mean-field theory).
        seed: an int, a ``keras.random.SeedGenerator`` or ``None``, as Keras's initializers.

    Reference: L. Xiao et al., "Dynamical Isometry and a Mean Field Theory of CNNs: How to Train
    10,000-Layer Vanilla Convolutional Neural Networks", ICML 2018 (Algorithm 2).
    """

    def __init__(self, gain: float = 1.0, seed=None):
        self.gain = check_positive("gain", gain)
        super().__init__(seed=seed)

    def __call__(self, shape, dtype=None):
        shape = tuple(int(s) for s in shape)
        if len(shape) < 3:
            raise ValueError(
                "DeltaOrthogonal needs a convolution kernel of shape (*kernel_size, c_in, c_out) "
                f"with 1-3 spatial axes; got shape {shape}. For Dense kernels use "
                "keras.initializers.Orthogonal.")
        layer, _ = compat.building_layer() or (None, None)
        if layer is not None and hasattr(layer, "block_size"):
            # A block-circulant kernel (k..., P, Q, b) is not (k..., c_in, c_out).
            raise ValueError(
                f"DeltaOrthogonal builds a plain convolution kernel (*kernel_size, c_in, c_out); "
                f"{type(layer).__name__} {layer.name!r} stores circulant blocks of shape "
                f"{shape}. Use it on Conv1D/2D/3D or PeriodicConv2D, and Normed here.")
        if layer is not None and "Depthwise" in type(layer).__name__:
            raise ValueError(
                f"DeltaOrthogonal builds a plain convolution kernel (*kernel_size, c_in, c_out); "
                f"{type(layer).__name__} {layer.name!r} has one filter bank per channel "
                f"(*kernel_size, channels, depth_multiplier) = {shape}, with no channel mixing "
                "to make orthogonal. Use it on Conv1D/2D/3D or PeriodicConv2D.")
        *kernel_size, c_in, c_out = shape
        if c_out < c_in:
            raise ValueError(
                f"DeltaOrthogonal needs filters (c_out={c_out}) >= input channels (c_in={c_in}) "
                "for the centre tap to have orthonormal rows; use at least as many filters as "
                "input channels, or another initializer for this layer.")
        centre = keras.initializers.Orthogonal(gain=self.gain, seed=self.seed)(
            (c_in, c_out), dtype=dtype)
        centre = keras.ops.reshape(centre, (1,) * len(kernel_size) + (c_in, c_out))
        pads = [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel_size] + [(0, 0), (0, 0)]
        return keras.ops.pad(centre, pads)

    def get_config(self):
        return {**super().get_config(), "gain": self.gain}


class CriticalPoint(NamedTuple):
    """A point ``(sigma_w^2, sigma_b^2)`` on the order-to-chaos line, with its fixed point."""

    sigma_w2: float
    sigma_b2: float
    q_star: float

    @property
    def sigma_w(self) -> float:
        return math.sqrt(self.sigma_w2)

    @property
    def sigma_b(self) -> float:
        return math.sqrt(self.sigma_b2)


_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(201)
_WEIGHTS = _WEIGHTS / math.sqrt(2.0 * math.pi)  # E[f(z)], z ~ N(0, 1)


def _tanh_moments(q: float):
    """``E[tanh(x)^2]`` and ``E[tanh'(x)^2]`` for ``x ~ N(0, q)`` (201-point Gauss-Hermite)."""
    tanh2 = np.tanh(math.sqrt(max(q, 0.0)) * _NODES) ** 2
    return float(np.sum(_WEIGHTS * tanh2)), float(np.sum(_WEIGHTS * (1.0 - tanh2) ** 2))


def tanh_critical_point(sigma_b2: float = 1e-4) -> CriticalPoint:
    """The mean-field critical ``(sigma_w^2, sigma_b^2)`` of a tanh network for a bias variance.

    There the fixed point ``q*`` of ``q = sigma_w^2 E[tanh(sqrt(q) z)^2] + sigma_b^2`` has
    ``chi = sigma_w^2 E[tanh'(sqrt(q*) z)^2] = 1`` (Poole et al. 2016; Schoenholz et al. 2017):
    ``sigma_w^2 = 1 / E[tanh'^2]``, ``sigma_b^2 = q - E[tanh^2] / E[tanh'^2]`` (bisection on q).

    Example: ``tanh_critical_point(1e-4)`` has ``sigma_w2`` 1.086 and ``q_star`` 0.0457.

    Args:
        sigma_b2: variance of the biases, >= 0.

    Returns:
        ``CriticalPoint(sigma_w2, sigma_b2, q_star)``.
    """
    check_number("sigma_b2", sigma_b2, 0.0)
    if sigma_b2 == 0:
        return CriticalPoint(1.0, 0.0, 0.0)

    def bias_on_line(q: float) -> float:
        tanh2, dtanh2 = _tanh_moments(q)
        return q - tanh2 / dtanh2

    lo, hi = 0.0, 1.0
    while bias_on_line(hi) < sigma_b2:
        hi *= 2.0
        if hi > 1e6:
            raise ValueError(f"`sigma_b2`={sigma_b2} is too large: no critical point found.")
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if bias_on_line(mid) < sigma_b2:
            lo = mid
        else:
            hi = mid
    q = 0.5 * (lo + hi)
    return CriticalPoint(1.0 / _tanh_moments(q)[1], float(sigma_b2), q)


def critical_sigma_w(sigma_b: float, nonlinearity: str = "tanh") -> float:
    """``sigma_w`` at the order-to-chaos transition for bias std ``sigma_b`` (only ``"tanh"``)."""
    if nonlinearity != "tanh":
        raise ValueError(f"`nonlinearity` must be 'tanh', got {nonlinearity!r}.")
    return tanh_critical_point(float(check_number("sigma_b", sigma_b, 0)) ** 2).sigma_w
