"""Block-circulant products kept in the frequency domain, forward and backward (CirCNN).

The forms of :mod:`keras_normed.ops.circulant` let the backend differentiate through
``rfft``/``irfft``, transposes and strided views; here the backward pass is written by hand
in the frequency domain too, where the adjoint of a circulant product is a circulant product
with the conjugate spectrum:

- ``y = irfft(X K)`` with ``X = rfft(x)``, ``K = rfft(k)`` (per block pair, ``.`` a product
  per frequency) has ``dx = irfft(G conj(K))`` and ``dk = irfft(conj(X) G)`` with
  ``G = rfft(dy)``: the gradient of the kernel is the circular cross-correlation of ``x``
  with ``dy``, summed over the batch in the frequency domain before its one ``irfft``.
- Each input is transformed once (its spectrum ``X`` is reused by all output blocks and kept
  for the kernel gradient), each kernel once per call (its spectrum is reused by the
  backward pass).
- Convolution: the ``kh x kw`` taps are spatial shifts, which commute with the FFT over
  channels: the spectra of the pixels are convolved per frequency, in plain TensorFlow as one
  depthwise convolution (its own SAME padding, its kernel gradient TensorFlow's), under XLA and
  on the other backends as shifted views of the once-padded spectra times the tap's spectrum
  (XLA's CPU depthwise convolution is slow). ``dx`` is the same sum over the flipped taps
  with ``conj(K)``, ``dk[u, v] = sum conj(shift(X)) G``.

The spectra are complex tensors of the backend (``tf.signal`` / ``jnp.fft`` /
``torch.fft``); everything else is ``keras.ops``, with ``keras.ops.custom_gradient`` (so
TensorFlow's ``tf.custom_gradient`` and JAX's ``jax.custom_gradient``). Timings and the
profile: docs/performance.md.
"""

from __future__ import annotations

import functools

from keras import backend, ops

from keras_normed.ops._common import (
    circulant_sizes,
    conv_args,
    fft_dtype,
    image_sizes,
    real_operands,
)
from keras_normed.ops.dispatch import compiled_by_xla

__all__ = ["ceinsum", "circulant_conv2d_freq", "circulant_matmul_freq", "cmatmul", "irfft",
           "rfft"]


def _native():
    """The backend's numpy-like namespace: ``keras.ops.matmul``/``einsum`` compute complex128
    in complex64 on TensorFlow, so the complex contractions and FFTs call the backend."""
    name = backend.backend()
    if name == "tensorflow":
        import tensorflow as tf

        return tf.experimental.numpy
    if name == "jax":
        import jax.numpy as jnp

        return jnp
    if name == "torch":
        import torch

        return torch
    raise NotImplementedError(f"No complex contraction or FFT for backend {name!r}.")


def _fft(op: str, x, n: int):
    if backend.backend() == "tensorflow":
        import tensorflow as tf

        return getattr(tf.signal, op)(x, fft_length=[n])
    return getattr(_native().fft, op)(x, n=n)


def rfft(x, n: int):
    """Spectrum ``(..., n // 2 + 1)`` (complex) of the last axis of real ``x`` (length ``n``)."""
    return _fft("rfft", x, n)


def irfft(z, n: int):
    """Real signal ``(..., n)`` of the half spectrum ``z`` (inverse of :func:`rfft`)."""
    return _fft("irfft", z, n)


def cmatmul(a, b, adjoint_a: bool = False, adjoint_b: bool = False):
    """Batched complex ``a @ b``, ``adjoint_*``: conjugate-transpose the last two axes first."""
    if backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.linalg.matmul(a, b, adjoint_a=adjoint_a, adjoint_b=adjoint_b)
    np_ = _native()
    if adjoint_a:
        a = np_.conj(np_.swapaxes(a, -1, -2))
    if adjoint_b:
        b = np_.conj(np_.swapaxes(b, -1, -2))
    return np_.matmul(a, b)


def ceinsum(equation: str, *operands):
    """``einsum`` in the operands' complex dtype (see :func:`cmatmul`)."""
    return _native().einsum(equation, *operands)


def _pad_axis(x, axis: int, before: int, after: int):
    if before == 0 and after == 0:
        return x
    pad = [[0, 0]] * len(x.shape)
    pad[axis] = [before, after]
    return ops.pad(x, pad)


def _upstream(args, upstream):
    """The upstream gradient, however ``keras.ops.custom_gradient`` passes it."""
    return args[0] if upstream is None else upstream


# ---------------------------------------------------------------------------------------------
# Dense: y = x @ W, W block-circulant


def circulant_matmul_freq(x, kernel, units: int = None):
    """Same result as :func:`keras_normed.ops.circulant.circulant_matmul` (``x @ W`` with ``W``
    block-circulant, kernel ``(P, Q, b)``), with the backward pass in the frequency domain.

    Forward: one ``rfft`` per input block, ``Y[m, q] = sum_p X[m, p] K[p, q]`` per frequency
    (a complex batched matmul, the frequencies as its batch axis), one ``irfft`` per output
    block. Backward: ``G = rfft(dy)``, ``dx = irfft(sum_q G[q] conj(K[p, q]))``,
    ``dk = irfft(sum_m conj(X[m, p]) G[m, q])``; ``X`` and ``K`` are those of the forward.
    float16/bfloat16 compute in float32, float64 in float64; integer inputs as
    ``circulant_matmul``.
    """
    x, kernel, out_dtype = real_operands(x, kernel)
    p, q, b, units = circulant_sizes(x.shape[-1], kernel, units, "units")
    n_in = int(x.shape[-1])
    dt = fft_dtype(out_dtype, kernel.dtype)
    lead = ops.shape(x)[:-1]
    x2 = ops.reshape(ops.cast(x, dt), (-1, n_in))
    y = _dense_product(p, q, b, n_in, units)(x2, ops.cast(kernel, dt))
    return ops.cast(ops.reshape(y, tuple(lead) + (units,)), out_dtype)


def _by_freq(z):
    """``(A, B, F) -> (F, A, B)``: the frequencies as the batch axis of a matmul."""
    return ops.transpose(z, (2, 0, 1))


@functools.cache
def _dense_product(p: int, q: int, b: int, n_in: int, units: int):
    """``(M, n_in), (P, Q, b) -> (M, units)`` with its frequency-domain gradient."""

    @ops.custom_gradient
    def product(x2, kernel):
        xf = _by_freq(rfft(ops.reshape(_pad_axis(x2, 1, 0, p * b - n_in), (-1, p, b)), b))
        xs = ops.concatenate([ops.real(xf), ops.imag(xf)], axis=-1)  # (F, M, 2P)
        kf = _by_freq(rfft(kernel, b))  # (F, P, Q)
        kr, ki = ops.real(kf), ops.imag(kf)
        # [xr, xi] @ [[kr, ki], [-ki, kr]] = [yr, yi]: one real matmul per frequency
        ks = ops.concatenate([ops.concatenate([kr, ki], axis=-1),
                              ops.concatenate([-ki, kr], axis=-1)], axis=-2)  # (F, 2P, 2Q)
        ys = ops.matmul(xs, ks)  # (F, M, 2Q)
        y = irfft(_complex(ops.transpose(ys[..., :q], (1, 2, 0)),
                           ops.transpose(ys[..., q:], (1, 2, 0))), b)  # (M, Q, b)
        y = ops.reshape(y, (-1, q * b))[:, :units]

        def grad(*args, upstream=None):
            dy = _upstream(args, upstream)
            dy = ops.reshape(_pad_axis(dy, 1, 0, q * b - units), (-1, q, b))
            gf = _by_freq(rfft(dy, b))  # (F, M, Q)
            gs = ops.concatenate([ops.real(gf), ops.imag(gf)], axis=-1)  # (F, M, 2Q)
            # G conj(K)^T in the real form: the transpose of the forward's real matrix
            dxs = ops.matmul(gs, ops.transpose(ks, (0, 2, 1)))  # (F, M, 2P)
            dx = irfft(_complex(ops.transpose(dxs[..., :p], (1, 2, 0)),
                                ops.transpose(dxs[..., p:], (1, 2, 0))), b)
            dx = ops.reshape(dx, (-1, p * b))[:, :n_in]
            c = ops.matmul(ops.transpose(xs, (0, 2, 1)), gs)  # (F, 2P, 2Q): [xr; xi]^T [gr, gi]
            dkr = c[:, :p, :q] + c[:, p:, q:]  # conj(X)^T G, real and imaginary parts
            dki = c[:, :p, q:] - c[:, p:, :q]
            dk = irfft(_complex(ops.transpose(dkr, (1, 2, 0)), ops.transpose(dki, (1, 2, 0))), b)
            return dx, dk

        return y, grad

    return product


# ---------------------------------------------------------------------------------------------
# Convolution, stride 1: the taps as shifts of the spectra


def circulant_conv2d_freq(x, kernel, filters: int = None, padding: str = "valid",
                          dilation_rate=1, data_format: str = "channels_last"):
    """:func:`keras_normed.ops.circulant.circulant_conv2d` at stride 1, forward and backward
    in the frequency domain: ``y = irfft(sum_{u, v} shift_{u dh, v dw}(X) K[u, v])`` (see the
    module). Batch, height and width may be unknown until run time. ``padding``: ``"valid"``
    or ``"same"``; ``dilation_rate``: int or pair; ``data_format`` as ``circulant_conv2d``."""
    x, kernel, out_dtype = real_operands(x, kernel)
    c_in = image_sizes(x, data_format)[2]
    kh, kw, p, q, b, filters = circulant_sizes(c_in, kernel, filters, "filters")
    _, padding, (dh, dw) = conv_args(1, padding, dilation_rate)
    if data_format == "channels_first":
        x = ops.transpose(x, (0, 2, 3, 1))
    th, tw = (kh - 1) * dh, (kw - 1) * dw  # padding a 'same' output needs, per axis
    pads = (th // 2, th - th // 2, tw // 2, tw - tw // 2) if padding == "same" else (0,) * 4
    dt = fft_dtype(out_dtype, kernel.dtype)
    # One depthwise convolution in plain TensorFlow; shifted views under XLA (its CPU
    # depthwise convolution is slow) and on the other backends.
    depthwise = backend.backend() == "tensorflow" and not compiled_by_xla()
    product = _conv_product(p, q, b, int(c_in), filters, (kh, kw), (dh, dw), pads, depthwise)
    y = product(ops.cast(x, dt), ops.cast(kernel, dt))
    if data_format == "channels_first":
        y = ops.transpose(y, (0, 3, 1, 2))
    return ops.cast(y, out_dtype)


def _shift(z, top: int, left: int, th: int, tw: int):
    """``z[:, top : top + H', left : left + W']`` with ``H' = H - th``, ``W' = W - tw``."""
    return z[:, top: top - th if top < th else None, left: left - tw if left < tw else None]


def _mix(z, k):
    """``(N, H, W, P, F) x (P, Q, F) -> (N, H, W, Q, F)``, a sum over ``P`` per frequency."""
    p, q = int(k.shape[0]), int(k.shape[1])
    if p == 1:
        return z * k[0]  # (N, H, W, 1, F) * (Q, F)
    if q == 1:
        return ops.sum(z * k[:, 0], axis=-2, keepdims=True)
    return ceinsum("nhwpf,pqf->nhwqf", z, k)


def _tap_gradient(z, g):
    """``sum over (n, i, j) of conj(z) g``: ``(N, H, W, P, F), (N, H, W, Q, F) -> (P, Q, F)``.
    With one block each way, in real arithmetic (XLA's complex reductions measured slower)."""
    if int(z.shape[3]) * int(g.shape[3]) > 1:
        return ceinsum("nhwpf,nhwqf->pqf", ops.conj(z), g)
    zr, zi, gr, gi = ops.real(z), ops.imag(z), ops.real(g), ops.imag(g)
    re = ops.sum(zr * gr + zi * gi, axis=(0, 1, 2))
    im = ops.sum(zr * gi - zi * gr, axis=(0, 1, 2))
    return _complex(re, im)[:, None]  # (1, 1, F)


def _depthwise(z, k, dilation, padding="valid"):
    """The tap sum of the shift form, ``(N, Hp, Wp, A, F), (kh, kw, A, R, F) -> (N, Ho, Wo, R,
    F)``, as one depthwise convolution of multiplier 1 (TensorFlow's CPU kernel is ~4x slower
    with 2): channels ``(part, r, a, f)`` ``[zr, zr, zi, zi]`` against ``[kr, ki, -ki, kr]``,
    the result's halves summed, then ``a``. Also returns the depthwise input."""
    kh, kw, a, r, f = (int(d) for d in k.shape)
    s, zr, zi = ops.shape(z), ops.real(z), ops.imag(z)
    z = ops.reshape(ops.concatenate([zr] * (2 * r) + [zi] * (2 * r), axis=3),
                    (s[0], s[1], s[2], 4 * r * a * f))
    k = ops.transpose(k, (0, 1, 3, 2, 4))
    kr, ki = ops.real(k), ops.imag(k)
    k = ops.reshape(ops.concatenate([kr, ki, -ki, kr], axis=2), (kh, kw, 4 * r * a * f, 1))
    y = ops.depthwise_conv(z, k, 1, padding, "channels_last", dilation)
    y = y[..., :2 * r * a * f] + y[..., 2 * r * a * f:]  # (part, r, a, f): [re, im]
    s = ops.shape(y)
    y = ops.reshape(y, (s[0], s[1], s[2], 2 * r, a, f))
    y = ops.sum(y, axis=4) if a > 1 else ops.reshape(y, (s[0], s[1], s[2], 2 * r, f))
    return _complex(y[:, :, :, :r], y[:, :, :, r:]), z


def _depthwise_kernel_grad(z, g, shape, dilation, padding):
    """The vjp of ``g`` through ``depthwise_conv(z, k)`` to ``k`` of ``shape``:
    TensorFlow's DepthwiseConv2dNativeBackpropFilter (no keras.ops form)."""
    import tensorflow as tf

    k = tf.zeros(shape, z.dtype)
    with tf.GradientTape() as tape:  # the unused forward is pruned in graphs
        tape.watch(k)
        y = ops.depthwise_conv(z, k, 1, padding, "channels_last", dilation)
    return tape.gradient(y, k, output_gradients=g)


def _complex(re, im):
    """The complex tensor ``re + i im`` of the backend."""
    name = backend.backend()
    if name == "tensorflow":
        import tensorflow as tf

        return tf.complex(re, im)
    if name == "torch":
        import torch

        return torch.complex(re, im)
    return re + 1j * im


@functools.cache
def _conv_product(p, q, b, c_in, filters, size, dilation, pads, depthwise):
    """``(N, H, W, C_in), (kh, kw, P, Q, b) -> (N, Ho, Wo, filters)`` with its gradient: the
    sums over taps as one depthwise convolution (``depthwise``) or as shifted views."""
    (kh, kw), (dh, dw), (pt, pb, pl, pr) = size, dilation, pads
    th, tw = (kh - 1) * dh, (kw - 1) * dw
    taps = [(u, v) for u in range(kh) for v in range(kw)]
    same = depthwise and any(pads)  # pads are TensorFlow's SAME ones (stride 1)
    # dx pads (th - pt, th - pb): TensorFlow's SAME too when th and tw are even
    same_dx = same and th % 2 == 0 and tw % 2 == 0
    padding, padding_dx = ("same" if s else "valid" for s in (same, same_dx))

    def spectra(z, blocks, channels):
        z = _pad_axis(z, 3, 0, blocks * b - channels)
        s = ops.shape(z)
        return rfft(ops.reshape(z, (s[0], s[1], s[2], blocks, b)), b)

    def signal(z, channels):
        z = irfft(z, b)
        s = ops.shape(z)
        return ops.reshape(z, (s[0], s[1], s[2], s[3] * s[4]))[..., :channels]

    def tap_sum(z, k, padding="valid"):  # (N, Hp, Wp, A, F), (kh, kw, A, R, F) -> (N, Ho, Wo, R, F)
        if depthwise:
            return _depthwise(z, k, dilation, padding)
        y = None
        for u, v in taps:
            term = _mix(_shift(z, u * dh, v * dw, th, tw), k[u, v])
            y = term if y is None else y + term
        return y, None

    @ops.custom_gradient
    def product(x, kernel):
        xs = spectra(x, p, c_in)  # (N, H, W, P, F)
        if not same:  # the depthwise convolution's own 'same' padding is ours: no padded copy
            xs = _pad_axis(_pad_axis(xs, 1, pt, pb), 2, pl, pr)
        ks = rfft(kernel, b)  # (kh, kw, P, Q, F)
        y, z = tap_sum(xs, ks, padding)
        y = signal(y, filters)

        def grad(*args, upstream=None):
            g = spectra(_upstream(args, upstream), q, filters)  # (N, Ho, Wo, Q, F)
            gp = g if same_dx else _pad_axis(_pad_axis(g, 1, th - pt, th - pb), 2, tw - pl, tw - pr)
            # the flipped taps, one axis at a time (Keras 3.11's TensorFlow flip takes one)
            kc = ops.conj(ops.flip(ops.flip(ops.transpose(ks, (0, 1, 3, 2, 4)), 0), 1))
            dx = signal(tap_sum(gp, kc, padding_dx)[0], c_in)
            if depthwise:  # the upstream of the channels (part, q, p, f): [gr, gi, gr, gi]
                gr, gi = (ops.repeat(t, p, axis=3) if p > 1 else t
                          for t in (ops.real(g), ops.imag(g)))
                g4 = ops.concatenate([gr, gi, gr, gi], axis=3)
                s, f = ops.shape(g4), b // 2 + 1
                d = _depthwise_kernel_grad(z, ops.reshape(g4, (s[0], s[1], s[2], -1)),
                                           (kh, kw, 4 * q * p * f, 1), dilation, padding)
                d = ops.reshape(d, (kh, kw, 4, q, p, f))  # conj(X) G, real and imaginary:
                dk = ops.transpose(_complex(d[:, :, 0] + d[:, :, 3], d[:, :, 1] - d[:, :, 2]),
                                   (0, 1, 3, 2, 4))
            else:
                dk = ops.stack([_tap_gradient(_shift(xs, u * dh, v * dw, th, tw), g)
                                for u, v in taps], axis=0)
            return dx, irfft(ops.reshape(dk, (kh, kw, p, q, -1)), b)

        return y, grad

    return product
