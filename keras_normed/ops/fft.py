"""FFT kernels: block-circulant products (CirCNN) and periodic (circular) 2-D convolution.

Everything here is written with ``keras.ops`` only, so the layers that call it run on the
TensorFlow, JAX and PyTorch backends. ``keras.ops`` has ``rfft``/``irfft`` over the last axis
(real and imaginary parts as a tuple) and a complex ``fft``, but no ``rfft2``/``ifft``: the 2-D
transforms are composed from 1-D ones, and the inverse complex FFT uses
``ifft(z) = conj(fft(conj(z))) / n``.

Conventions
-----------
*Circulant block.* ``C(c)`` is the ``b x b`` circulant matrix with first column ``c``:
``C(c)[i, j] = c[(i - j) mod b]``, so ``C(c) x`` is the circular convolution ``c * x`` and
``FFT(C(c) x) = FFT(c) . FFT(x)``.

*Block-circulant matrix.* A kernel of shape ``(P, Q, b)`` defines the ``n_in x units`` matrix
``W`` (applied as ``y = x @ W``, like ``keras.layers.Dense``) whose output block ``q`` is
``y_q = sum_p C(kernel[p, q]) x_p``. When ``n_in`` or ``units`` is not a multiple of ``b`` the
input is zero-padded to ``P * b`` and the output truncated to ``units`` (CirCNN's choice).

*Periodic convolution.* ``y[i, j] = sum_{u, v} x[(i + u - ch) mod H, (j + v - cw) mod W] @
kernel[u, v]`` with ``ch = (kh - 1) // 2``, ``cw = (kw - 1) // 2``; a kernel larger than the
input wraps around (aliasing: taps landing on the same pixel add up).

Mixed precision: FFTs accept only float32/float64, so float16/bfloat16 operands are cast to
float32 around the transform and the result is cast back to the input's dtype. Integer and bool
inputs compute in the kernel's float dtype (never cast back to an integer); complex inputs raise
``TypeError``.

Layout and sizes: the 2-D ops take ``data_format`` explicitly (default ``"channels_last"``) and
never read ``keras.config.image_data_format()``; height and width may be unknown until run time.

Reference: C. Ding et al., "CirCNN: accelerating and compressing deep neural networks using
block-circulant weight matrices", MICRO 2017.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import numpy as np
from keras import backend, ops

__all__ = [
    "circulant_conv2d",
    "circulant_conv2d_dense",
    "circulant_conv2d_method",
    "compiled_by_xla",
    "circulant_matmul",
    "circulant_to_dense",
    "conv_output_length",
    "num_blocks",
    "periodic_conv2d",
    "periodic_conv2d_cost",
    "periodic_conv2d_method",
]

_FFT_DTYPES = ("float32", "float64")


def num_blocks(n: int, block_size: int) -> int:
    """Number of blocks of size ``block_size`` covering ``n`` features (zero-padded)."""
    return -(-int(n) // int(block_size))


def _fft_dtype(*dtypes) -> str:
    """float64 if any operand dtype is float64, else float32 (FFTs reject half precision)."""
    return "float64" if "float64" in {backend.standardize_dtype(d) for d in dtypes} else "float32"


def _real_operands(x, kernel, name: str = "x"):
    """``(x, kernel, dtype)``: both as tensors and the floating dtype the result is given in.

    A float input keeps its dtype. Integer and bool inputs compute in the kernel's float dtype
    (``floatx()`` if the kernel is not float either): the result must not be cast back to an
    integer (truncation) nor the kernel cast down to one. Complex inputs are refused: the
    kernels are real and the FFTs here take real data, so the imaginary part would be lost.
    """
    x = ops.convert_to_tensor(x)
    kernel = ops.convert_to_tensor(kernel)
    dtype = backend.standardize_dtype(x.dtype)
    if "complex" in dtype or dtype == "string":
        raise TypeError(
            f"`{name}` must be a real (float, int or bool) tensor, got dtype {dtype}. The "
            "kernel is real and the imaginary part would be dropped: pass the real and "
            "imaginary parts separately (e.g. as extra channels) or `keras.ops.real(x)`.")
    if not backend.is_float_dtype(dtype):
        k_dtype = backend.standardize_dtype(kernel.dtype)
        dtype = k_dtype if backend.is_float_dtype(k_dtype) else backend.floatx()
        x = ops.cast(x, dtype)
    return x, kernel, dtype


_DATA_FORMATS = ("channels_last", "channels_first")


def _check_data_format(data_format) -> str:
    if data_format not in _DATA_FORMATS:
        raise ValueError(
            f"`data_format` must be 'channels_last' (N, H, W, C) or 'channels_first' "
            f"(N, C, H, W), got {data_format!r}.")
    return data_format


def _spatial_sizes(x, data_format: str):
    """Static ``(H, W)`` as ints, or ``None`` for an axis unknown at trace time."""
    axes = (1, 2) if data_format == "channels_last" else (2, 3)
    return tuple(None if x.shape[a] is None else int(x.shape[a]) for a in axes)


def _size(x, axis: int):
    """Length of ``axis``: a Python int when static, else a scalar tensor (run time)."""
    n = x.shape[axis]
    return int(n) if n is not None else ops.shape(x)[axis]


def _conv(x, kernel, data_format: str, **kwargs):
    """``keras.ops.conv`` run in channels_last: TensorFlow's CPU convolution rejects NCHW
    (eagerly for float64, in any ``tf.function``), so channels_first inputs are transposed
    around it. The layout is passed explicitly, never read from the global setting."""
    if data_format == "channels_first":
        x = ops.transpose(x, (0, 2, 3, 1))
    y = ops.conv(x, kernel, data_format="channels_last", **kwargs)
    return ops.transpose(y, (0, 3, 1, 2)) if data_format == "channels_first" else y


def _pad_last(x, target: int):
    n = x.shape[-1]
    if n == target:
        return x
    pad = [[0, 0]] * (len(x.shape) - 1) + [[0, target - n]]
    return ops.pad(x, pad)


def _freq_contract(xr, xi, kr, ki):
    """Complex multiply-accumulate over input blocks, all frequencies in one batched matmul.

    ``xr, xi``: ``(M, P, F)``; ``kr, ki``: ``(P, Q, F)``. Returns ``(yr, yi)`` of shape
    ``(M, Q, F)`` with ``y[m, q, f] = sum_p x[m, p, f] * k[p, q, f]`` (complex).

    The complex product is written as one real matmul per frequency,
    ``[xr, xi] @ [[kr, ki], [-ki, kr]] = [yr, yi]``, batched over the ``F`` frequencies.
    Measured fastest of the alternatives (see docs/layers.md). For tiny contractions
    (``P * Q <= 16``, e.g. one output block) a broadcast multiply and sum over ``P`` avoids the
    transposes and measured faster.
    """
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


def _kernel_spectrum(kernel, block_size: int):
    """``rfft`` of every circulant block's first column: ``(..., b) -> (..., b // 2 + 1)``."""
    return ops.rfft(kernel, fft_length=block_size)


def circulant_matmul(x, kernel, units: int = None):
    """Product ``x @ W`` with ``W`` the block-circulant matrix defined by ``kernel``.

    ``y_q = sum_p C(kernel[p, q]) x_p`` computed as one ``rfft`` per input block, a complex
    multiply-accumulate over input blocks for every frequency, and one ``irfft`` per output
    block: ``O(n log b)`` per row instead of ``O(n_in * units)``.

    Args:
        x: tensor ``(..., n_in)``, any rank >= 1; features on the last axis.
        kernel: tensor ``(P, Q, b)`` with ``P = ceil(n_in / b)``.
        units: output width (``<= Q * b``); defaults to ``Q * b``.

    Returns:
        Tensor ``(..., units)`` in the dtype of ``x`` when it is float; integer and bool inputs
        give the kernel's float dtype (never a truncated integer). Complex ``x``: ``TypeError``.

    Example:
        >>> import numpy as np
        >>> k = np.random.rand(2, 1, 3).astype("float32")
        >>> x = np.random.rand(4, 6).astype("float32")
        >>> y = circulant_matmul(x, k)          # == x @ circulant_to_dense(k, 6, 3)
    """
    x, kernel, out_dtype = _real_operands(x, kernel)
    p, q, b = (int(d) for d in kernel.shape)
    units = q * b if units is None else int(units)
    n_in = x.shape[-1]
    if n_in is None or num_blocks(n_in, b) != p:
        raise ValueError(
            f"Input feature size {n_in} does not match the kernel: a kernel of shape "
            f"{tuple(kernel.shape)} takes ceil(n_in / {b}) == {p} input blocks."
        )
    dt = _fft_dtype(out_dtype, kernel.dtype)
    x = ops.cast(x, dt)
    kernel = ops.cast(kernel, dt)
    lead = ops.shape(x)[:-1]
    xb = ops.reshape(_pad_last(x, p * b), (-1, p, b))
    xr, xi = ops.rfft(xb, fft_length=b)
    kr, ki = _kernel_spectrum(kernel, b)
    yr, yi = _freq_contract(xr, xi, kr, ki)
    y = ops.irfft((yr, yi), fft_length=b)  # (M, Q, b)
    y = ops.reshape(y, (-1, q * b))[:, :units]
    y = ops.reshape(y, tuple(lead) + (units,))
    return ops.cast(y, out_dtype)


def _circulant_index(block_size: int) -> np.ndarray:
    """``idx[j, i] = (i - j) mod b``: entry ``(j, i)`` of ``C(c)^T`` is ``c[idx[j, i]]``."""
    r = np.arange(block_size)
    return (r[None, :] - r[:, None]) % block_size


def circulant_to_dense(kernel, n_in: int, units: int):
    """Materialise the ``(n_in, units)`` matrix ``W`` of a block-circulant kernel.

    ``W[p * b + j, q * b + i] = kernel[p, q, (i - j) mod b]`` (then cropped to
    ``n_in x units``), so that ``x @ W == circulant_matmul(x, kernel, units)``. Works on
    kernels with leading axes too: ``(..., P, Q, b) -> (..., n_in, units)``. Differentiable
    (a gather); a reference for tests and the "materialise" baseline of benchmarks.
    """
    kernel = ops.convert_to_tensor(kernel)
    *lead, p, q, b = (int(d) for d in kernel.shape)
    idx = ops.convert_to_tensor(_circulant_index(b).reshape(-1), dtype="int32")
    w = ops.take(kernel, idx, axis=-1)  # (..., P, Q, b*b) laid out as [j, i]
    w = ops.reshape(w, tuple(lead) + (p, q, b, b))
    nl = len(lead)
    perm = tuple(range(nl)) + (nl, nl + 2, nl + 1, nl + 3)  # (..., P, j, Q, i)
    w = ops.reshape(ops.transpose(w, perm), tuple(lead) + (p * b, q * b))
    return w[..., : int(n_in), : int(units)]


IntPair = Union[int, Sequence[int]]


def _pair(v: IntPair) -> Tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    return tuple(int(a) for a in v)


def conv_output_length(n: int, k: int, stride: int, padding: str, dilation: int) -> int:
    """Spatial output length of a Keras-style convolution (``"valid"`` or ``"same"``)."""
    if padding == "same":
        return -(-n // stride)
    return max(0, (n - (k - 1) * dilation - 1) // stride + 1)


def _same_pads(n: int, k: int, stride: int, dilation: int) -> Tuple[int, int]:
    """TensorFlow's SAME padding (extra row at the end), as keras.ops.conv does."""
    out = -(-n // stride)
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - n, 0)
    return total // 2, total - total // 2


# Most output blocks for which circulant_conv2d takes the depthwise form (_depthwise_contract).
_DEPTHWISE_MAX_Q = 8
# Largest materialised kernel (entries) the "dense" form may build: 64 MB in float32.
_DENSE_MAX_ENTRIES = 2 ** 24


def circulant_conv2d(x, kernel, filters: int = None, strides: IntPair = 1,
                     padding: str = "valid", dilation_rate: IntPair = 1, method: str = "auto",
                     data_format: str = "channels_last"):
    """2-D convolution whose channel-mixing matrix at every kernel position is block-circulant:
    ``y[n, i, j] = sum_{u, v} x[n, i*s + u*d, j*s + v*d] @ W[u, v]`` with
    ``W[u, v] = circulant_to_dense(kernel[u, v], C_in, filters)`` (CirCNN's convolution).

    Computed in the frequency domain of the channel blocks: ``rfft`` of each input block of
    ``b`` channels (once per pixel, not once per patch), a spatial convolution of the spectra
    that is independent for every frequency, then one ``irfft`` per output block. The middle
    step has two forms (``method``):

    - ``"depthwise"``: one depthwise convolution over ``(frequency, input block, re/im)``
      channels with ``2 Q`` outputs each, summed over the input blocks. No patch copies, so
      its gradient is cheap; its intermediate grows with ``P * Q``.
    - ``"patches"``: the ``kh * kw`` shifted views of the spectrum stacked as extra input
      blocks and contracted per frequency by one batched matmul.

    A third, ``"dense"``, skips the FFTs: it materialises the ``(kh, kw, C_in, filters)``
    kernel (:func:`circulant_conv2d_dense`) and runs an ordinary convolution; the parameters
    stay compressed, the compute is that of ``Conv2D``.

    ``"auto"`` asks :func:`circulant_conv2d_method`. Measured (fwd+bwd, TF CPU, 3x3 'same',
    batch 32; docs/performance.md): without XLA, 7 x 7 x 256 block 256 27.7 ms (depthwise)
    against 98.1 (patches), 14 x 14 x 256 block 256 85.3 against 386.4, block 16 (``Q = 16``)
    604 against 423; under XLA on CPU the depthwise gradient takes seconds (XLA's CPU grouped
    convolution); the dense form costs about one ``Conv2D`` everywhere, less than patches.

    Height and width may be unknown until run time (``None`` in the static shape, e.g. a
    ``SavedModel`` serving any image size): ``"depthwise"`` and ``"dense"`` work with them;
    ``"patches"`` needs them static, so ``"auto"`` takes ``"dense"`` instead of it there, and
    ``method="patches"`` (or strides and dilation both > 1, which only it supports) raises.

    Args:
        x: ``(N, H, W, C_in)`` (``"channels_last"``) or ``(N, C_in, H, W)``
            (``"channels_first"``). Integer and bool inputs compute in the kernel's float dtype;
            complex ones raise ``TypeError``.
        kernel: ``(kh, kw, P, Q, b)`` with ``P = ceil(C_in / b)``.
        filters: output channels (``<= Q * b``); defaults to ``Q * b``.
        strides, padding, dilation_rate: as ``keras.ops.conv`` (``"valid"``/``"same"``).
        method: ``"auto"``, ``"depthwise"``, ``"patches"`` or ``"dense"`` (same result).
        data_format: ``"channels_last"`` (default) or ``"channels_first"``; explicit, never
            read from ``keras.config.image_data_format()``. The output uses the same layout.
    """
    x, kernel, out_dtype = _real_operands(x, kernel)
    data_format = _check_data_format(data_format)
    kh, kw, p, q, b = (int(d) for d in kernel.shape)
    filters = q * b if filters is None else int(filters)
    sh, sw = _pair(strides)
    dh, dw = _pair(dilation_rate)
    padding = padding.lower()
    if padding not in ("valid", "same"):
        raise ValueError(f"`padding` must be 'valid' or 'same', got {padding!r}.")
    if method not in ("auto", "depthwise", "patches", "dense"):
        raise ValueError(
            f"`method` must be 'auto', 'depthwise', 'patches' or 'dense', got {method!r}.")
    if len(x.shape) != 4:
        raise ValueError(f"`x` must have rank 4, got shape {tuple(x.shape)}.")
    c_in = x.shape[-1 if data_format == "channels_last" else 1]
    if c_in is None or num_blocks(c_in, b) != p:
        raise ValueError(
            f"Input channel count {c_in} does not match the kernel: a kernel of shape "
            f"{tuple(kernel.shape)} takes ceil(C_in / {b}) == {p} channel blocks."
        )
    c_in = int(c_in)
    h, w = _spatial_sizes(x, data_format)
    static = h is not None and w is not None
    both = max(sh, sw) > 1 and max(dh, dw) > 1
    if method == "auto":
        method = circulant_conv2d_method(q, (sh, sw), (dh, dw), kh * kw * c_in * filters,
                                         static_size=static)
    elif method in ("depthwise", "dense") and both:
        raise ValueError(f"method={method!r} does not support strides and dilation both > 1.")
    if method == "patches" and not static:
        raise ValueError(
            f"method='patches' needs a known height and width, got input shape "
            f"{tuple(x.shape)}. "
            + ("With strides and dilation both > 1 no other form applies: give the input a "
               "static spatial size, or set strides or dilation_rate to 1." if both else
               "Use method='auto', 'depthwise' or 'dense', which work with unknown sizes."))
    if method == "dense":
        return circulant_conv2d_dense(x, kernel, filters, (sh, sw), padding, (dh, dw),
                                      data_format=data_format)
    dt = _fft_dtype(out_dtype, kernel.dtype)
    x = ops.cast(x, dt)
    kernel = ops.cast(kernel, dt)
    if data_format == "channels_first":
        x = ops.transpose(x, (0, 2, 3, 1))  # the FFT runs over the channel blocks, last axis
    xb = _pad_last(x, p * b)
    kr, ki = _kernel_spectrum(kernel, b)  # (kh, kw, P, Q, F)
    if method == "depthwise":
        s = ops.shape(xb)
        xr, xi = ops.rfft(ops.reshape(xb, (s[0], s[1], s[2], p, b)), fft_length=b)
        yr, yi = _depthwise_contract(xr, xi, kr, ki, (sh, sw), padding, (dh, dw))
    else:
        if padding == "same":
            (pt, pb), (pl, pr) = _same_pads(h, kh, sh, dh), _same_pads(w, kw, sw, dw)
            xb = ops.pad(xb, [[0, 0], [pt, pb], [pl, pr], [0, 0]])
            h, w = h + pt + pb, w + pl + pr
        ho = conv_output_length(h, kh, sh, "valid", dh)
        wo = conv_output_length(w, kw, sw, "valid", dw)
        xr, xi = ops.rfft(ops.reshape(xb, (-1, h, w, p, b)), fft_length=b)
        yr, yi = _patch_contract(xr, xi, kr, ki, (ho, wo), (sh, sw), (dh, dw))
    y = ops.irfft((yr, yi), fft_length=b)  # (N, Ho, Wo, Q, b)
    s = ops.shape(y)
    y = ops.reshape(y, (s[0], s[1], s[2], q * b))[..., :filters]
    if data_format == "channels_first":
        y = ops.transpose(y, (0, 3, 1, 2))
    return ops.cast(y, out_dtype)


def circulant_conv2d_method(q: int, strides: IntPair = 1, dilation_rate: IntPair = 1,
                            dense_entries: Optional[int] = None,
                            static_size: bool = True) -> str:
    """The form ``circulant_conv2d(method="auto")`` takes for ``Q`` output blocks, here and now.

    Strides and dilation both above 1 (which ``keras.ops.conv`` and ``depthwise_conv`` reject):
    ``"patches"``. Else ``"depthwise"`` when ``Q <= 8`` and the op will not be compiled by XLA
    (see :func:`compiled_by_xla`); else ``"dense"`` when the materialised kernel has at most
    ``2**24`` entries (``dense_entries = kh * kw * C_in * filters``; ``None``: unknown, taken as
    small) or the height and width are unknown (``static_size=False``: the patches form needs
    them); else ``"patches"``.
    """
    (sh, sw), (dh, dw) = _pair(strides), _pair(dilation_rate)
    if max(sh, sw) > 1 and max(dh, dw) > 1:
        return "patches"
    if q <= _DEPTHWISE_MAX_Q and not compiled_by_xla():
        return "depthwise"
    if dense_entries is None or dense_entries <= _DENSE_MAX_ENTRIES or not static_size:
        return "dense"
    return "patches"


def compiled_by_xla() -> bool:
    """Whether the ops being built now will be compiled by XLA: always on the JAX backend; on
    TensorFlow, inside ``tf.function(jit_compile=True)`` (``model.compile(jit_compile=True)``);
    never on PyTorch. Reads TensorFlow's XLA context through its internal
    ``control_flow_util``; if that moves, answers False (the faster form without XLA)."""
    name = backend.backend()
    if name == "jax":
        return True
    if name != "tensorflow":
        return False
    from keras_normed import _keras_compat

    return _keras_compat.in_xla_context()


def _patch_contract(xr, xi, kr, ki, out_hw, strides, dilation):
    """``y[m, q, f] = sum_{u, v, p} x[shift_uv(m), p, f] k[u, v, p, q, f]`` (complex) by stacking
    the shifted views of the spectra ``(N, H, W, P, F)`` and one batched matmul per frequency.
    Needs static ``out_hw``. Returns ``(yr, yi)`` of shape ``(N, Ho, Wo, Q, F)``."""
    kh, kw, p, q, f = (int(d) for d in kr.shape)
    (ho, wo), (sh, sw), (dh, dw) = out_hw, strides, dilation

    def patches(z):
        views = [
            z[:, u * dh: u * dh + (ho - 1) * sh + 1: sh, v * dw: v * dw + (wo - 1) * sw + 1: sw]
            for u in range(kh) for v in range(kw)
        ]  # each (N, Ho, Wo, P, F)
        return ops.reshape(ops.stack(views, axis=3), (-1, kh * kw * p, f))

    k2 = (ops.reshape(kr, (kh * kw * p, q, f)), ops.reshape(ki, (kh * kw * p, q, f)))
    yr, yi = _freq_contract(patches(xr), patches(xi), *k2)
    return ops.reshape(yr, (-1, ho, wo, q, f)), ops.reshape(yi, (-1, ho, wo, q, f))


def _depthwise_contract(xr, xi, kr, ki, strides, padding, dilation):
    """The same contraction as :func:`_patch_contract`, as one depthwise convolution.

    Channels ``(f, p, re/im)`` of the spectra ``(N, H, W, P, F)`` each get ``2 Q`` outputs, the
    complex product written as ``re -> [kr, ki]`` and ``im -> [-ki, kr]``; summing over
    ``(p, re/im)`` gives ``[yr, yi]``. ``padding`` goes to the convolution: zero pixels have a
    zero spectrum, so padding the spectra equals padding the input. Works with height and width
    unknown until run time. Returns ``(yr, yi)`` of shape ``(N, Ho, Wo, Q, F)``.
    """
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
    """Same result as :func:`circulant_conv2d`, by materialising the ``(kh, kw, C_in,
    filters)`` kernel (a differentiable gather) and calling ``keras.ops.conv`` (any height and
    width; ``data_format`` as in :func:`circulant_conv2d`)."""
    x, kernel, out_dtype = _real_operands(x, kernel)
    data_format = _check_data_format(data_format)
    b = int(kernel.shape[-1])
    filters = int(kernel.shape[-2]) * b if filters is None else int(filters)
    c_in = x.shape[-1 if data_format == "channels_last" else 1]
    dense = ops.cast(circulant_to_dense(kernel, c_in, filters), out_dtype)
    return _conv(x, dense, data_format, strides=strides, padding=padding,
                 dilation_rate=dilation_rate)


# ---------------------------------------------------------------------------------------------
# Periodic convolution


def periodic_conv2d_cost(height: int, width: int, kh: int, kw: int, c_in: int,
                         c_out: int) -> Tuple[float, float]:
    """Estimated per-image cost ``(direct, fft)`` of a periodic convolution, in flop-like units.

    ``direct = H W kh kw C_in C_out`` multiply-adds. ``fft = 5 (C_in + C_out) H W log2(H W)``
    for the forward and inverse transforms of inputs and outputs plus ``4 H (W/2 + 1) C_in
    C_out`` for the complex products (the kernel's transform is shared by the batch and left
    out). See :func:`periodic_conv2d_method` for the rule built on it.
    """
    hw = height * width
    direct = float(hw * kh * kw * c_in * c_out)
    fft = 5.0 * (c_in + c_out) * hw * math.log2(max(hw, 2)) + 4.0 * height * (
        width // 2 + 1) * c_in * c_out
    return direct, fft


def periodic_conv2d_method(height: Optional[int], width: Optional[int], kh: int, kw: int,
                           c_in: int, c_out: int) -> str:
    """The ``"auto"`` rule: ``"fft"`` when the kernel is larger than 3x3 (``kh * kw > 9``) or
    the FFT's estimated cost (:func:`periodic_conv2d_cost`) is under half the direct cost,
    else ``"direct"``. With the height or width unknown (``None``: known only at run time) the
    cost cannot be estimated and only the kernel-size test decides.

    Calibrated by forward+backward timings under XLA on CPU (batch 64, docs/layers.md): the
    direct convolution is inefficient for few channels and large kernels (55x55 on 56x56,
    one channel: 73 s against 24 ms), and wins only for small kernels with many channels
    (3x3, 32 -> 32 on 28x28: 340 ms against 463 ms).
    """
    if kh * kw > 9:
        return "fft"
    if height is None or width is None:
        return "direct"
    direct, cost = periodic_conv2d_cost(height, width, kh, kw, c_in, c_out)
    return "fft" if 2.0 * cost < direct else "direct"


def _wrap_index(n, before: int, after: int):
    """Indices ``-before .. n + after - 1`` modulo ``n`` (int32), for a static or run-time
    ``n``; several wraps when ``before`` or ``after`` exceed ``n``."""
    if isinstance(n, int):
        return ops.convert_to_tensor(np.arange(-before, n + after) % n, dtype="int32")
    n = ops.cast(n, "int32")
    return ops.mod(ops.arange(-before, n + after, dtype="int32"), n)


def _periodic_direct(x, kernel, data_format: str):
    kh, kw = int(kernel.shape[0]), int(kernel.shape[1])
    ha, wa = (1, 2) if data_format == "channels_last" else (2, 3)
    ch, cw = (kh - 1) // 2, (kw - 1) // 2
    # Wrap padding by a gather handles any kernel size (several wraps when kernel > input).
    rows = _wrap_index(_size(x, ha), ch, kh - 1 - ch)
    cols = _wrap_index(_size(x, wa), cw, kw - 1 - cw)
    xp = ops.take(ops.take(x, rows, axis=ha), cols, axis=wa)
    return _conv(xp, kernel, data_format, strides=1, padding="valid")


def _complex_mul(ar, ai, br, bi):
    return ar * br - ai * bi, ar * bi + ai * br


def _fft_last(zr, zi):
    return ops.fft((zr, zi))


def _ifft_last(zr, zi):
    n = ops.cast(_size(zr, -1), zr.dtype)
    yr, yi = ops.fft((zr, -zi))
    return yr / n, -yi / n


def _torus_placement(n, k: int, center: int, dtype):
    """``(n, k)`` 0/1 matrix ``E[a, u] = [a == (center - u) mod n]`` for a static or run-time
    ``n``: ``E @ t`` puts tap ``u`` of ``t`` at ``(center - u) mod n``, summing taps that wrap
    onto the same position (a kernel longer than the input)."""
    if isinstance(n, int):
        e = np.arange(n)[:, None] == (center - np.arange(k))[None, :] % n
        return ops.convert_to_tensor(e.astype(dtype))
    n = ops.cast(n, "int32")
    target = ops.mod(center - ops.arange(k, dtype="int32"), n)
    return ops.cast(ops.equal(ops.arange(n, dtype="int32")[:, None], target[None, :]), dtype)


def _periodic_kernel_grid(kernel, h, w):
    """Place the (flipped) kernel on the ``H x W`` torus: ``G[(ch - u) mod H, (cw - v) mod W]
    += kernel[u, v]``, so that the correlation above is the circular convolution ``x * G``.
    Two small matmuls with 0/1 placement matrices, so ``H`` and ``W`` may be run-time sizes."""
    kh, kw = int(kernel.shape[0]), int(kernel.shape[1])
    dtype = backend.standardize_dtype(kernel.dtype)
    eh = _torus_placement(h, kh, (kh - 1) // 2, dtype)
    ew = _torus_placement(w, kw, (kw - 1) // 2, dtype)
    g = ops.einsum("au,uvio->avio", eh, kernel)
    return ops.einsum("bv,avio->abio", ew, g)  # (H, W, C_in, C_out)


def _periodic_fft(x, kernel):
    """Periodic convolution of ``x`` in ``(N, C_in, H, W)`` layout; returns ``(N, C_out, H,
    W)``. ``H`` and ``W`` may be run-time sizes."""
    h, w = _size(x, 2), _size(x, 3)
    c_in, c_out = int(x.shape[1]), int(kernel.shape[3])
    g = _periodic_kernel_grid(kernel, h, w)
    # 2-D rfft = rfft over W, then complex fft over H; H is moved to the last axis.
    xr, xi = ops.rfft(x, fft_length=w)  # (N, C, H, Wf)
    xr, xi = _fft_last(ops.transpose(xr, (0, 1, 3, 2)), ops.transpose(xi, (0, 1, 3, 2)))
    gr, gi = ops.rfft(ops.transpose(g, (2, 3, 0, 1)), fft_length=w)  # (C, O, H, Wf)
    gr, gi = _fft_last(ops.transpose(gr, (0, 1, 3, 2)), ops.transpose(gi, (0, 1, 3, 2)))
    # Contract channels per frequency: (N, C, Wf, H) x (C, O, Wf, H) -> (N, O, Wf, H).
    if c_in == 1 and c_out == 1:
        yr, yi = _complex_mul(xr, xi, gr, gi)
    else:
        wf = w // 2 + 1
        nf = wf * h
        xr2 = ops.reshape(xr, (-1, c_in, nf))
        xi2 = ops.reshape(xi, (-1, c_in, nf))
        yr, yi = _freq_contract(xr2, xi2, ops.reshape(gr, (c_in, c_out, nf)),
                                ops.reshape(gi, (c_in, c_out, nf)))
        yr = ops.reshape(yr, (-1, c_out, wf, h))
        yi = ops.reshape(yi, (-1, c_out, wf, h))
    yr, yi = _ifft_last(yr, yi)  # over H
    return ops.irfft((ops.transpose(yr, (0, 1, 3, 2)), ops.transpose(yi, (0, 1, 3, 2))),
                     fft_length=w)  # (N, O, H, W)


def periodic_conv2d(x, kernel, method: str = "auto", data_format: str = "channels_last"):
    """Convolution with periodic (circular) padding; output of the input's spatial size.

    ``y[n, i, j] = sum_{u, v} x[n, (i + u - ch) mod H, (j + v - cw) mod W] @ kernel[u, v]``,
    ``ch = (kh - 1) // 2``, ``cw = (kw - 1) // 2``. Kernels larger than the input wrap around
    (taps on the same pixel add up). Height and width may be unknown until run time (both
    methods handle it; ``"auto"`` then decides from the kernel size alone).

    Args:
        x: ``(N, H, W, C_in)`` (``"channels_last"``) or ``(N, C_in, H, W)``
            (``"channels_first"``). Integer and bool inputs compute in the kernel's float dtype;
            complex ones raise ``TypeError``.
        kernel: ``(kh, kw, C_in, C_out)``.
        method: ``"direct"`` (wrap-pad by a gather, then a valid ``keras.ops.conv``),
            ``"fft"`` (2-D real FFT, products per frequency, inverse FFT) or ``"auto"``
            (:func:`periodic_conv2d_method` decides from the shapes).
        data_format: ``"channels_last"`` (default) or ``"channels_first"``; explicit, never
            read from ``keras.config.image_data_format()``. The output uses the same layout.
    """
    x, kernel, out_dtype = _real_operands(x, kernel)
    if method not in ("auto", "fft", "direct"):
        raise ValueError(f"`method` must be 'auto', 'fft' or 'direct', got {method!r}.")
    data_format = _check_data_format(data_format)
    kh, kw, c_in, c_out = (int(d) for d in kernel.shape)
    if len(x.shape) != 4:
        raise ValueError(f"`x` must have rank 4, got shape {tuple(x.shape)}.")
    x_c = x.shape[-1 if data_format == "channels_last" else 1]
    if x_c != c_in:
        raise ValueError(f"Input channel count {x_c} does not match the kernel's C_in = {c_in} "
                         f"(kernel shape {tuple(kernel.shape)}, data_format={data_format!r}).")
    h, w = _spatial_sizes(x, data_format)
    if method == "auto":
        method = periodic_conv2d_method(h, w, kh, kw, c_in, c_out)
    if method == "direct":
        return _periodic_direct(x, ops.cast(kernel, out_dtype), data_format)
    dt = _fft_dtype(out_dtype, kernel.dtype)
    x = ops.cast(x, dt)
    if data_format == "channels_last":
        x = ops.transpose(x, (0, 3, 1, 2))
    y = _periodic_fft(x, ops.cast(kernel, dt))
    if data_format == "channels_last":
        y = ops.transpose(y, (0, 2, 3, 1))
    return ops.cast(y, out_dtype)
