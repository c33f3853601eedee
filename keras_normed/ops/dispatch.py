"""Which algorithm an FFT op takes, here and now: the rules of ``method="auto"`` and the cost
model behind them (the measurements they rest on are in docs/performance.md)."""

from __future__ import annotations

import math
from typing import Optional, Tuple

from keras import backend

from keras_normed import _keras_compat
from keras_normed.ops._common import IntPair, int_pair

__all__ = ["DENSE_MAX_ENTRIES", "DEPTHWISE_MAX_Q", "FREQ_MAX_Q", "circulant_conv2d_method",
           "compiled_by_xla", "periodic_conv2d_cost", "periodic_conv2d_method"]

FREQ_MAX_Q = 1  # most output blocks for the "freq" form (stride 1)
DEPTHWISE_MAX_Q = 8  # most output blocks for the "depthwise" form
DENSE_MAX_ENTRIES = 2 ** 24  # largest kernel the "dense" form materialises: 64 MB in float32


def circulant_conv2d_method(q: int, strides: IntPair = 1, dilation_rate: IntPair = 1,
                            dense_entries: Optional[int] = None,
                            static_size: bool = True) -> str:
    """The form ``circulant_conv2d(method="auto")`` takes for ``Q`` output blocks, here and now:
    ``"patches"`` for strides and dilation both above 1; else ``"freq"`` at stride 1 with
    ``Q <= FREQ_MAX_Q``; else ``"depthwise"`` for ``Q <= 8``, equal strides and not
    :func:`compiled_by_xla`; else ``"dense"`` for a kernel of at most ``2**24`` entries
    (``dense_entries``; ``None``: small) or unknown sizes (``static_size=False``); else
    ``"patches"``."""
    (sh, sw), (dh, dw) = int_pair(strides, "strides"), int_pair(dilation_rate, "dilation_rate")
    if max(sh, sw) > 1 and max(dh, dw) > 1:
        return "patches"
    if (sh, sw) == (1, 1) and q <= FREQ_MAX_Q:
        return "freq"
    if q <= DEPTHWISE_MAX_Q and sh == sw and not compiled_by_xla():
        return "depthwise"
    if dense_entries is None or dense_entries <= DENSE_MAX_ENTRIES or not static_size:
        return "dense"
    return "patches"


def compiled_by_xla() -> bool:
    """Whether the ops being built now will be compiled by XLA: always on JAX, inside
    ``tf.function(jit_compile=True)`` on TensorFlow, never on PyTorch."""
    name = backend.backend()
    return name == "jax" or (name == "tensorflow" and _keras_compat.in_xla_context())


def periodic_conv2d_cost(height: int, width: int, kh: int, kw: int, c_in: int,
                         c_out: int) -> Tuple[float, float]:
    """Estimated per-image cost ``(direct, fft)`` of a periodic convolution, in flop-like units:
    ``direct = H W kh kw C_in C_out``; ``fft = 5 (C_in + C_out) H W log2(H W)`` (transforms)
    ``+ 4 H (W/2 + 1) C_in C_out`` (products; the kernel's transform is left out)."""
    hw = height * width
    direct = float(hw * kh * kw * c_in * c_out)
    transforms = 5.0 * (c_in + c_out) * hw * math.log2(max(hw, 2))
    return direct, transforms + 4.0 * height * (width // 2 + 1) * c_in * c_out


def periodic_conv2d_method(height: Optional[int], width: Optional[int], kh: int, kw: int,
                           c_in: int, c_out: int) -> str:
    """The ``"auto"`` rule: ``"fft"`` when the kernel is larger than 3x3 or the FFT's estimated
    cost (:func:`periodic_conv2d_cost`) is under half the direct one, else ``"direct"``; with
    the height or width unknown (``None``) only the kernel size decides."""
    if kh * kw > 9:
        return "fft"
    if height is None or width is None:
        return "direct"
    direct, cost = periodic_conv2d_cost(height, width, kh, kw, c_in, c_out)
    return "fft" if 2.0 * cost < direct else "direct"
