"""Helpers the FFT ops share (private module): operand dtypes, layouts, argument checks and the
frequency-domain contraction, in ``keras.ops``."""

from __future__ import annotations

import numbers
from typing import Optional, Sequence, Tuple, Union

from keras import backend, ops

from keras_normed import _keras_compat as compat

IntPair = Union[int, Sequence[int]]


def real_operands(x, kernel):
    """``(x, kernel, dtype, fft_dtype)``: the tensors, the result's dtype (a float input's own,
    else the kernel's float dtype or ``floatx()``) and the FFTs' (float64 if an operand is, else
    float32: FFTs reject half precision). Complex inputs are refused."""
    x = ops.convert_to_tensor(x)
    kernel = ops.convert_to_tensor(kernel)
    dtype = backend.standardize_dtype(x.dtype)
    if "complex" in dtype or dtype == "string":
        raise TypeError(
            f"`x` must be a real (float, int or bool) tensor, got dtype {dtype}. The "
            "kernel is real and the imaginary part would be dropped: pass the real and "
            "imaginary parts separately (e.g. as extra channels) or `keras.ops.real(x)`.")
    k_dtype = backend.standardize_dtype(kernel.dtype)
    if not backend.is_float_dtype(dtype):
        dtype = k_dtype if backend.is_float_dtype(k_dtype) else backend.floatx()
        x = ops.cast(x, dtype)
    return x, kernel, dtype, "float64" if "float64" in (dtype, k_dtype) else "float32"


def image_sizes(x, data_format: str) -> Tuple[Optional[int], Optional[int], Optional[int]]:
    """``(H, W, C)`` of a rank-4 image in ``data_format`` (both checked), ``None`` where known
    only at run time."""
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(
            f"`data_format` must be 'channels_last' (N, H, W, C) or 'channels_first' "
            f"(N, C, H, W), got {data_format!r}.")
    if len(x.shape) != 4:
        raise ValueError(f"`x` must have rank 4, got shape {tuple(x.shape)}.")
    h, w, c = x.shape[1:] if data_format == "channels_last" else (*x.shape[2:], x.shape[1])
    if 0 in (h, w, c):
        raise ValueError(f"`x` of shape {tuple(x.shape)} has an empty height, width or channel "
                         f"axis (data_format={data_format!r}); pass at least one of each.")
    return tuple(None if d is None else int(d) for d in (h, w, c))


def size(x, axis: int):
    """Length of ``axis``: a Python int when static, else a scalar tensor (run time)."""
    n = x.shape[axis]
    return int(n) if n is not None else ops.shape(x)[axis]


def conv(x, kernel, data_format: str, **kwargs):
    """``keras.ops.conv`` in channels_last (TensorFlow's CPU convolution rejects NCHW)."""
    if data_format == "channels_first":
        x = ops.transpose(x, (0, 2, 3, 1))
    y = ops.conv(x, kernel, data_format="channels_last", **kwargs)
    return ops.transpose(y, (0, 3, 1, 2)) if data_format == "channels_first" else y


def pad_axis(x, axis: int, before: int, after: int):
    if before == 0 and after == 0:
        return x
    pad = [[0, 0]] * len(x.shape)
    pad[axis] = [before, after]
    return ops.pad(x, pad)


def freq_contract(xr, xi, kr, ki):
    """``y[m, q, f] = sum_p x[m, p, f] k[p, q, f]`` (complex, in real and imaginary parts) as
    ``(yr, yi)``: one real matmul ``[xr, xi] @ [[kr, ki], [-ki, kr]]`` per frequency, or for
    ``P * Q <= 16`` a broadcast multiply and sum."""
    p, q = kr.shape[0], kr.shape[1]
    if p * q <= 16:
        xr, xi = xr[:, :, None], xi[:, :, None]  # (M, P, 1, F) against (P, Q, F)
        return (ops.sum(xr * kr - xi * ki, axis=1), ops.sum(xr * ki + xi * kr, axis=1))
    xs = ops.transpose(ops.concatenate([xr, xi], axis=1), (2, 0, 1))  # (F, M, 2P)
    top = ops.concatenate([kr, ki], axis=1)  # (P, 2Q, F)
    bottom = ops.concatenate([-ki, kr], axis=1)
    ks = ops.transpose(ops.concatenate([top, bottom], axis=0), (2, 0, 1))  # (F, 2P, 2Q)
    ys = ops.transpose(ops.matmul(xs, ks), (1, 2, 0))  # (M, 2Q, F)
    return ys[:, :q], ys[:, q:]


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)  # numpy ints too


def check_positive_int(value, name: str) -> int:
    if not _is_int(value):
        raise TypeError(f"`{name}` must be a positive int, got {value!r}.")
    if value <= 0:
        raise ValueError(f"`{name}` must be a positive int, got {value}.")
    return int(value)


def int_pair(value, name: str) -> Tuple[int, int]:
    """``value`` (a positive int or a pair of them) as a pair of Python ints."""
    msg = f"`{name}` must be a positive int or a pair of them, got {value!r}."
    try:
        if isinstance(value, str):
            raise TypeError(msg)
        pair = (value, value) if _is_int(value) else tuple(value)
    except TypeError:  # not iterable: a float, None, ...
        raise TypeError(msg) from None
    if len(pair) != 2:
        raise ValueError(msg)
    return tuple(check_positive_int(v, name) for v in pair)


def conv_args(strides, padding, dilation_rate) -> Tuple[Tuple[int, int], str, Tuple[int, int]]:
    """``(strides, padding, dilation_rate)`` of a convolution op, checked and normalised."""
    if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
        raise ValueError(f"`padding` must be 'valid' or 'same', got {padding!r}.")
    return int_pair(strides, "strides"), padding.lower(), int_pair(dilation_rate, "dilation_rate")


def circulant_sizes(x_size, kernel, units, units_name: str) -> Tuple[int, ...]:
    """The kernel's shape ``(P, Q, b)`` or ``(kh, kw, P, Q, b)`` and the output width (``units``,
    default ``Q * b``), checked against ``x_size``, the input's feature or channel count (which
    fixes the blocks: ``None`` is refused)."""
    rank = 3 if units_name == "units" else 5
    if len(kernel.shape) != rank:
        raise ValueError(
            f"`kernel` must have rank {rank}, {'(P, Q, b)' if rank == 3 else '(kh, kw, P, Q, b)'}"
            f", got shape {tuple(kernel.shape)}.")
    *_, p, q, b = shape = tuple(int(d) for d in kernel.shape)
    if x_size is None or -(-int(x_size) // b) != p:
        what = "features (last axis)" if rank == 3 else "channels"
        raise ValueError(
            f"`x` has {x_size} {what}, but `kernel` of shape {shape} takes ceil(n / {b}) == {p} "
            f"input blocks: pass `x` with {(p - 1) * b + 1} to {p * b} {what}.")
    units = q * b if units is None else check_positive_int(units, units_name)
    if units > q * b:
        raise ValueError(f"`{units_name}` must be at most Q * b = {q * b} for `kernel` of shape "
                         f"{shape}, got {units}: pass a kernel with more output blocks.")
    return (*shape, units)


def check_output_size(x, data_format: str, kernel_hw: Tuple[int, int], padding: str,
                      dilation: Tuple[int, int]):
    """``x``, refused where ``"valid"`` padding leaves no output (TensorFlow's convolution
    returns uninitialised memory there): now for a known size, when the graph runs for a size
    known only then."""
    if padding != "valid":
        return x
    msg = (f"`x`: an input of height x width {image_sizes(x, data_format)[:2]} is smaller than "
           f"the {tuple(kernel_hw)} kernel (dilation {tuple(dilation)}) with padding='valid'; "
           "pass a larger input or padding='same'.")
    axes = (1, 2) if data_format == "channels_last" else (2, 3)
    for axis, k, d in zip(axes, kernel_hw, dilation):
        need, n = (k - 1) * d + 1, x.shape[axis]
        if n is not None and int(n) < need:
            raise ValueError(msg)
        x = compat.assert_size_at_least(x, axis, need, msg)
    return x
