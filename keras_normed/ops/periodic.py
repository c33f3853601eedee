"""Periodic (circular) 2-D convolution, direct (wrap-pad by a gather) or by a 2-D FFT made of
``keras.ops``'s 1-D ``rfft`` and complex ``fft`` (docs/layers.md)."""

from __future__ import annotations

import numpy as np
from keras import backend, ops

from keras_normed.ops._common import conv, freq_contract, image_sizes, real_operands, size
from keras_normed.ops.dispatch import periodic_conv2d_method

__all__ = ["periodic_conv2d"]


def _wrap_index(n, before: int, after: int):
    """Indices ``-before .. n + after - 1`` modulo ``n`` (int32; ``n`` static or run-time)."""
    if isinstance(n, int):
        return ops.convert_to_tensor(np.arange(-before, n + after) % n, dtype="int32")
    n = ops.cast(n, "int32")
    return ops.mod(ops.arange(-before, n + after, dtype="int32"), n)


def _periodic_direct(x, kernel, data_format: str):
    kh, kw = int(kernel.shape[0]), int(kernel.shape[1])
    ha, wa = (1, 2) if data_format == "channels_last" else (2, 3)
    ch, cw = (kh - 1) // 2, (kw - 1) // 2
    rows = _wrap_index(size(x, ha), ch, kh - 1 - ch)
    cols = _wrap_index(size(x, wa), cw, kw - 1 - cw)
    xp = ops.take(ops.take(x, rows, axis=ha), cols, axis=wa)
    return conv(xp, kernel, data_format, strides=1, padding="valid")


def _torus_placement(n, k: int, center: int, dtype):
    """``(n, k)`` 0/1 matrix ``E[a, u] = [a == (center - u) mod n]``: ``E @ t`` puts tap ``u``
    at ``(center - u) mod n``, summing taps that wrap onto one place."""
    if isinstance(n, int):
        e = np.arange(n)[:, None] == (center - np.arange(k))[None, :] % n
        return ops.convert_to_tensor(e.astype(dtype))
    n = ops.cast(n, "int32")
    target = ops.mod(center - ops.arange(k, dtype="int32"), n)
    return ops.cast(ops.equal(ops.arange(n, dtype="int32")[:, None], target[None, :]), dtype)


def _periodic_kernel_grid(kernel, h, w):
    """The (flipped) kernel on the ``H x W`` torus, ``G[(ch - u) mod H, (cw - v) mod W] +=
    kernel[u, v]``, so that the correlation is the circular convolution ``x * G``."""
    kh, kw = int(kernel.shape[0]), int(kernel.shape[1])
    dtype = backend.standardize_dtype(kernel.dtype)
    eh = _torus_placement(h, kh, (kh - 1) // 2, dtype)
    ew = _torus_placement(w, kw, (kw - 1) // 2, dtype)
    g = ops.einsum("au,uvio->avio", eh, kernel)
    return ops.einsum("bv,avio->abio", ew, g)  # (H, W, C_in, C_out)


def _periodic_fft(x, kernel):
    """Periodic convolution of ``x`` ``(N, C_in, H, W)``; returns ``(N, C_out, H, W)``."""
    h, w = size(x, 2), size(x, 3)
    c_in, c_out, wf = int(x.shape[1]), int(kernel.shape[3]), w // 2 + 1

    def fft2(z):  # rfft over W, then complex fft over H (moved to the last axis)
        zr, zi = ops.rfft(z, fft_length=w)
        return ops.fft((ops.transpose(zr, (0, 1, 3, 2)), ops.transpose(zi, (0, 1, 3, 2))))

    xr, xi = fft2(x)  # (N, C, Wf, H)
    gr, gi = fft2(ops.transpose(_periodic_kernel_grid(kernel, h, w), (2, 3, 0, 1)))  # (C, O, ..)
    # Contract channels per frequency: (N, C, Wf, H) x (C, O, Wf, H) -> (N, O, Wf, H).
    yr, yi = freq_contract(*(ops.reshape(z, (-1, c_in, wf * h)) for z in (xr, xi)),
                           *(ops.reshape(z, (c_in, c_out, wf * h)) for z in (gr, gi)))
    # Inverse fft over H as conj(fft(conj(z))) / H, then irfft over W.
    yr, yi = ops.fft((ops.reshape(yr, (-1, c_out, wf, h)), -ops.reshape(yi, (-1, c_out, wf, h))))
    n = ops.cast(h, yr.dtype)
    return ops.irfft((ops.transpose(yr / n, (0, 1, 3, 2)), ops.transpose(-yi / n, (0, 1, 3, 2))),
                     fft_length=w)  # (N, O, H, W)


def periodic_conv2d(x, kernel, method: str = "auto", data_format: str = "channels_last"):
    """Convolution with periodic (circular) padding, of the input's spatial size:
    ``y[n, i, j] = sum_{u, v} x[n, (i + u - ch) mod H, (j + v - cw) mod W] @ kernel[u, v]``,
    ``ch = (kh - 1) // 2``, ``cw = (kw - 1) // 2`` (taps that wrap onto one pixel add up).

    Args:
        x: ``(N, H, W, C_in)`` or ``(N, C_in, H, W)``, ``H`` and ``W`` possibly run-time sizes;
            integer and bool inputs compute in the kernel's float dtype, complex ones raise
            ``TypeError``.
        kernel: ``(kh, kw, C_in, C_out)``.
        method: ``"direct"`` (wrap-pad by a gather, then a valid ``keras.ops.conv``),
            ``"fft"`` (2-D real FFT) or ``"auto"`` (:func:`periodic_conv2d_method`).
        data_format: ``"channels_last"`` or ``"channels_first"`` (not the global setting).
    """
    x, kernel, out_dtype, dt = real_operands(x, kernel)
    if method not in ("auto", "fft", "direct"):
        raise ValueError(f"`method` must be 'auto', 'fft' or 'direct', got {method!r}.")
    h, w, x_c = image_sizes(x, data_format)
    if len(kernel.shape) != 4:
        raise ValueError(f"`kernel` must have rank 4, (kh, kw, C_in, C_out), got shape "
                         f"{tuple(kernel.shape)}.")
    kh, kw, c_in, c_out = (int(d) for d in kernel.shape)
    if x_c != c_in:
        raise ValueError(f"`x` has {x_c} channels, but `kernel` of shape {tuple(kernel.shape)} "
                         f"takes C_in = {c_in} (data_format={data_format!r}): pass `x` with "
                         f"{c_in} channels.")
    if method == "auto":
        method = periodic_conv2d_method(h, w, kh, kw, c_in, c_out)
    if method == "direct":
        return _periodic_direct(x, ops.cast(kernel, out_dtype), data_format)
    x = ops.cast(x, dt)
    if data_format == "channels_last":
        x = ops.transpose(x, (0, 3, 1, 2))
    y = _periodic_fft(x, ops.cast(kernel, dt))
    if data_format == "channels_last":
        y = ops.transpose(y, (0, 2, 3, 1))
    return ops.cast(y, out_dtype)
