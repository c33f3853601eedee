"""Block-circulant products (CirCNN), dense and 2-D convolution: a kernel ``(P, Q, b)`` defines
the ``n_in x units`` matrix ``W`` with output blocks ``y_q = sum_p C(kernel[p, q]) x_p``,
``C(c)[i, j] = c[(i - j) mod b]`` (so ``FFT(C(c) x) = FFT(c) . FFT(x)``); inputs zero-padded
to ``P * b``, outputs truncated (docs/layers.md).

Reference: C. Ding et al., "CirCNN: accelerating and compressing deep neural networks using
block-circulant weight matrices", MICRO 2017.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from keras_normed.geometry import conv_padding
from keras_normed.ops._common import (
    IntPair,
    check_output_size,
    check_positive_int,
    circulant_sizes,
    conv,
    conv_args,
    freq_contract,
    image_sizes,
    pad_axis,
    real_operands,
)
from keras_normed.ops.dispatch import circulant_conv2d_method
from keras_normed.ops.freq import circulant_conv2d_freq

__all__ = ["circulant_conv2d", "circulant_conv2d_dense", "circulant_matmul",
           "circulant_to_dense", "num_blocks"]


def num_blocks(n: int, block_size: int) -> int:
    """Number of blocks of size ``block_size`` covering ``n`` features (zero-padded)."""
    return -(-int(n) // int(block_size))


def circulant_matmul(x, kernel, units: int = None):
    """``x @ W`` with ``W`` the block-circulant matrix of ``kernel``
    (``x @ circulant_to_dense(kernel, n_in, units)``) in ``O(n log b)`` per row.

    Args:
        x: tensor ``(..., n_in)``, any rank >= 1; features on the last axis.
        kernel: tensor ``(P, Q, b)`` with ``P = ceil(n_in / b)``.
        units: output width (``<= Q * b``); defaults to ``Q * b``.

    Returns:
        Tensor ``(..., units)`` in the dtype of ``x`` when it is float, else the kernel's float
        dtype. Complex ``x``: ``TypeError``.
    """
    x, kernel, out_dtype, dt = real_operands(x, kernel)
    p, q, b, units = circulant_sizes(x.shape[-1], kernel, units, "units")
    lead = ops.shape(x)[:-1]
    x = pad_axis(ops.cast(x, dt), -1, 0, p * b - int(x.shape[-1]))
    xr, xi = ops.rfft(ops.reshape(x, (-1, p, b)), fft_length=b)
    kr, ki = ops.rfft(ops.cast(kernel, dt), fft_length=b)
    y = ops.irfft(freq_contract(xr, xi, kr, ki), fft_length=b)
    y = ops.reshape(ops.reshape(y, (-1, q * b))[:, :units], tuple(lead) + (units,))
    return ops.cast(y, out_dtype)


def circulant_to_dense(kernel, n_in: int, units: int):
    """The ``(n_in, units)`` matrix ``W`` of a block-circulant kernel, a differentiable gather:
    ``W[p * b + j, q * b + i] = kernel[p, q, (i - j) mod b]``, cropped;
    ``(..., P, Q, b) -> (..., n_in, units)``."""
    kernel = ops.convert_to_tensor(kernel)
    if len(kernel.shape) < 3:
        raise ValueError(f"`kernel` must have rank >= 3, (..., P, Q, b), got shape "
                         f"{tuple(kernel.shape)}.")
    *lead, p, q, b = (int(d) for d in kernel.shape)
    n_in, units = check_positive_int(n_in, "n_in"), check_positive_int(units, "units")
    if num_blocks(n_in, b) != p or units > q * b:
        raise ValueError(
            f"`kernel` of shape {tuple(kernel.shape)} holds a matrix of {(p - 1) * b + 1} to "
            f"{p * b} rows and at most {q * b} columns, got `n_in`={n_in}, `units`={units}.")
    # idx[j, i] = (i - j) mod b: entry (j, i) of C(c)^T is c[idx[j, i]].
    idx = ops.convert_to_tensor(((np.arange(b)[None, :] - np.arange(b)[:, None]) % b)
                                .reshape(-1), dtype="int32")
    w = ops.reshape(ops.take(kernel, idx, axis=-1), tuple(lead) + (p, q, b, b))  # [.., j, i]
    nl = len(lead)
    perm = tuple(range(nl)) + (nl, nl + 2, nl + 1, nl + 3)  # (..., P, j, Q, i)
    w = ops.reshape(ops.transpose(w, perm), tuple(lead) + (p * b, q * b))
    return w[..., : int(n_in), : int(units)]


def circulant_conv2d(x, kernel, filters: int = None, strides: IntPair = 1,
                     padding: str = "valid", dilation_rate: IntPair = 1, method: str = "auto",
                     data_format: str = "channels_last"):
    """2-D convolution whose channel-mixing matrix at every kernel position is block-circulant
    (CirCNN's): ``y[n, i, j] = sum_{u, v} x[n, i*s + u*d, j*s + v*d] @ W[u, v]`` with
    ``W[u, v] = circulant_to_dense(kernel[u, v], C_in, filters)``.

    Args:
        x: ``(N, H, W, C_in)`` or ``(N, C_in, H, W)``; integer and bool inputs compute in the
            kernel's float dtype, complex ones raise ``TypeError``.
        kernel: ``(kh, kw, P, Q, b)`` with ``P = ceil(C_in / b)``.
        filters: output channels (``<= Q * b``); defaults to ``Q * b``.
        strides, padding, dilation_rate: as ``keras.ops.conv`` (``"valid"``/``"same"``).
        method: ``"auto"`` (:func:`~keras_normed.ops.dispatch.circulant_conv2d_method`),
            ``"depthwise"`` (the spectra convolved by one depthwise convolution), ``"patches"``
            (their shifted views, one matmul per frequency; needs a static height and width),
            ``"dense"`` (:func:`circulant_conv2d_dense`) or ``"freq"``
            (:func:`~keras_normed.ops.freq.circulant_conv2d_freq` at stride 1, else
            ``"dense"``); all give the same result (docs/layers.md).
        data_format: ``"channels_last"`` or ``"channels_first"`` (not the global setting).
    """
    x, kernel, out_dtype, dt = real_operands(x, kernel)
    h, w, c_in = image_sizes(x, data_format)
    kh, kw, p, q, b, filters = circulant_sizes(c_in, kernel, filters, "filters")
    (sh, sw), padding, (dh, dw) = conv_args(strides, padding, dilation_rate)
    x = check_output_size(x, data_format, (kh, kw), padding, (dh, dw))
    if method not in ("auto", "depthwise", "patches", "dense", "freq"):
        raise ValueError(
            f"`method` must be 'auto', 'depthwise', 'patches', 'dense' or 'freq', got {method!r}.")
    static = h is not None and w is not None
    both = max(sh, sw) > 1 and max(dh, dw) > 1
    if method == "auto":
        method = circulant_conv2d_method(q, (sh, sw), (dh, dw), kh * kw * c_in * filters,
                                         static_size=static)
    elif method in ("depthwise", "dense", "freq") and both:
        raise ValueError(f"method={method!r} does not support strides and dilation both > 1.")
    if method == "depthwise" and sh != sw:  # TensorFlow's depthwise convolution refuses them
        raise ValueError(f"method='depthwise' needs equal `strides`, got {(sh, sw)}: use "
                         "method='auto', 'dense' or 'patches'.")
    if method == "patches" and not static:
        raise ValueError(
            f"method='patches' needs a known height and width, got input shape "
            f"{tuple(x.shape)}. "
            + ("With strides and dilation both > 1 no other form applies: give the input a "
               "static spatial size, or set strides or dilation_rate to 1." if both else
               "Use method='auto', 'depthwise' or 'dense', which work with unknown sizes."))
    if method == "freq" and (sh, sw) == (1, 1):  # stride 1: the taps as shifts of the spectra
        return circulant_conv2d_freq(x, kernel, filters, padding, (dh, dw), data_format)
    if method in ("dense", "freq"):  # "freq" with strides > 1: the materialised kernel
        return circulant_conv2d_dense(x, kernel, filters, (sh, sw), padding, (dh, dw),
                                      data_format=data_format)
    x, kernel = ops.cast(x, dt), ops.cast(kernel, dt)
    if data_format == "channels_first":
        x = ops.transpose(x, (0, 2, 3, 1))  # the FFT runs over the channel blocks, last axis
    xb = pad_axis(x, -1, 0, p * b - c_in)
    kr, ki = ops.rfft(kernel, fft_length=b)  # (kh, kw, P, Q, F)
    if method == "depthwise":
        s = ops.shape(xb)
        xr, xi = ops.rfft(ops.reshape(xb, (s[0], s[1], s[2], p, b)), fft_length=b)
        yr, yi = _depthwise_contract(xr, xi, kr, ki, (sh, sw), padding, (dh, dw))
    else:
        (ho, pt, pb), (wo, pl, pr) = (conv_padding(n, k, st, padding, d)
                                      for n, k, st, d in ((h, kh, sh, dh), (w, kw, sw, dw)))
        if padding == "same":
            xb = ops.pad(xb, [[0, 0], [pt, pb], [pl, pr], [0, 0]])
        xr, xi = ops.rfft(ops.reshape(xb, (-1, h + pt + pb, w + pl + pr, p, b)), fft_length=b)
        yr, yi = _patch_contract(xr, xi, kr, ki, (ho, wo), (sh, sw), (dh, dw))
    y = ops.irfft((yr, yi), fft_length=b)  # (N, Ho, Wo, Q, b)
    s = ops.shape(y)
    y = ops.reshape(y, (s[0], s[1], s[2], q * b))[..., :filters]
    if data_format == "channels_first":
        y = ops.transpose(y, (0, 3, 1, 2))
    return ops.cast(y, out_dtype)


def _patch_contract(xr, xi, kr, ki, out_hw, strides, dilation):
    """``y[m, q, f] = sum_{u, v, p} x[shift_uv(m), p, f] k[u, v, p, q, f]`` (complex, in parts
    ``(N, H, W, P, F)`` -> ``(N, Ho, Wo, Q, F)``): the shifted views stacked, one batched matmul
    per frequency."""
    kh, kw, p, q, f = (int(d) for d in kr.shape)
    (ho, wo), (sh, sw), (dh, dw) = out_hw, strides, dilation

    def patches(z):
        views = [
            z[:, u * dh: u * dh + (ho - 1) * sh + 1: sh, v * dw: v * dw + (wo - 1) * sw + 1: sw]
            for u in range(kh) for v in range(kw)
        ]  # each (N, Ho, Wo, P, F)
        return ops.reshape(ops.stack(views, axis=3), (-1, kh * kw * p, f))

    k2 = (ops.reshape(kr, (kh * kw * p, q, f)), ops.reshape(ki, (kh * kw * p, q, f)))
    yr, yi = freq_contract(patches(xr), patches(xi), *k2)
    return ops.reshape(yr, (-1, ho, wo, q, f)), ops.reshape(yi, (-1, ho, wo, q, f))


def _depthwise_contract(xr, xi, kr, ki, strides, padding, dilation):
    """:func:`_patch_contract` as one depthwise convolution, for run-time sizes too: channels
    ``(f, p, re/im)`` each get ``2 Q`` outputs (``re -> [kr, ki]``, ``im -> [-ki, kr]``), summed
    over ``(p, re/im)``. Zero pixels have a zero spectrum: padding the spectra pads the input."""
    kh, kw, p, q, f = (int(d) for d in kr.shape)
    s = ops.shape(xr)
    z = ops.stack([xr, xi], axis=-1)  # (N, H, W, P, F, 2)
    z = ops.reshape(ops.transpose(z, (0, 1, 2, 4, 3, 5)), (s[0], s[1], s[2], f * p * 2))
    from_re = ops.concatenate([kr, ki], axis=3)  # (kh, kw, P, 2Q, F)
    from_im = ops.concatenate([-ki, kr], axis=3)
    k = ops.transpose(ops.stack([from_re, from_im], axis=3), (0, 1, 5, 2, 3, 4))
    k = ops.reshape(k, (kh, kw, f * p * 2, 2 * q))  # (kh, kw, F*P*2, 2Q)
    y = ops.depthwise_conv(z, k, strides=strides, padding=padding, dilation_rate=dilation,
                           data_format="channels_last")
    s = ops.shape(y)
    y = ops.sum(ops.reshape(y, (s[0], s[1], s[2], f, 2 * p, 2 * q)), axis=4)  # (.., F, 2Q)
    y = ops.transpose(y, (0, 1, 2, 4, 3))  # (N, Ho, Wo, 2Q, F)
    return y[..., :q, :], y[..., q:, :]


def circulant_conv2d_dense(x, kernel, filters: int = None, strides: IntPair = 1,
                           padding: str = "valid", dilation_rate: IntPair = 1,
                           data_format: str = "channels_last"):
    """:func:`circulant_conv2d` by materialising the ``(kh, kw, C_in, filters)`` kernel (a
    differentiable gather), then ``keras.ops.conv``."""
    x, kernel, out_dtype, _ = real_operands(x, kernel)
    c_in = image_sizes(x, data_format)[2]
    filters = circulant_sizes(c_in, kernel, filters, "filters")[-1]
    strides, padding, dilation_rate = conv_args(strides, padding, dilation_rate)
    x = check_output_size(x, data_format, tuple(kernel.shape[:2]), padding, dilation_rate)
    dense = ops.cast(circulant_to_dense(kernel, c_in, filters), out_dtype)
    return conv(x, dense, data_format, strides=strides, padding=padding,
                 dilation_rate=dilation_rate)
