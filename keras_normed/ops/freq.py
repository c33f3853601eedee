"""Block-circulant products kept in the frequency domain, forward and backward (CirCNN), with
the backward pass written by hand: the adjoint of a circulant product is a circulant product
with the conjugate spectrum. ``y = irfft(X K)`` (``X = rfft(x)``, ``K = rfft(k)``, a product
per frequency and block pair) has ``dx = irfft(G conj(K))`` and ``dk = irfft(conj(X) G)``,
``G = rfft(dy)``; the spectra of the forward are reused. In a convolution the taps are spatial
shifts, which commute with the FFT over channels: the spectra are convolved per frequency (one
depthwise convolution in plain TensorFlow; shifted views under XLA, whose CPU depthwise
convolution is slow, and on the other backends), ``dx`` over the flipped taps with ``conj(K)``,
``dk[u, v] = sum conj(shift(X)) G``. The spectra are the backend's complex tensors, the rest
``keras.ops`` with ``keras.ops.custom_gradient``. Timings: docs/performance.md.
"""

from __future__ import annotations

import functools
import importlib
import operator

from keras import backend, ops

from keras_normed.ops._common import (
    check_output_size,
    circulant_sizes,
    conv_args,
    image_sizes,
    pad_axis,
    real_operands,
)
from keras_normed.ops.dispatch import compiled_by_xla

__all__ = ["ceinsum", "circulant_conv2d_freq", "circulant_matmul_freq", "cmatmul", "irfft",
           "rfft"]


# keras.ops.matmul/einsum compute complex128 in complex64 on TensorFlow: the backend's own.
_NATIVE = {"tensorflow": "tensorflow.experimental.numpy", "jax": "jax.numpy", "torch": "torch"}


def _native():
    name = backend.backend()
    if name not in _NATIVE:
        raise NotImplementedError(f"No complex contraction or FFT for backend {name!r}.")
    return importlib.import_module(_NATIVE[name])


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


def _complex(re, im):
    if backend.backend() == "jax":
        return re + 1j * im
    return importlib.import_module(backend.backend()).complex(re, im)  # tf.complex, torch.complex


def _upstream(args, upstream):
    """The upstream gradient, however ``keras.ops.custom_gradient`` passes it."""
    return args[0] if upstream is None else upstream


def circulant_matmul_freq(x, kernel, units: int = None):
    """:func:`keras_normed.ops.circulant.circulant_matmul` (``x @ W``, kernel ``(P, Q, b)``, same
    dtypes) with the backward pass in the frequency domain: ``Y[m, q] = sum_p X[m, p] K[p, q]``
    per frequency (one batched matmul), ``dx = irfft(sum_q G[q] conj(K[p, q]))``,
    ``dk = irfft(sum_m conj(X[m, p]) G[m, q])``."""
    x, kernel, out_dtype, dt = real_operands(x, kernel)
    p, q, b, units = circulant_sizes(x.shape[-1], kernel, units, "units")
    n_in = int(x.shape[-1])
    lead = ops.shape(x)[:-1]
    x2 = ops.reshape(ops.cast(x, dt), (-1, n_in))
    y = _dense_product(p, q, b, n_in, units)(x2, ops.cast(kernel, dt))
    return ops.cast(ops.reshape(y, tuple(lead) + (units,)), out_dtype)


def _real_form(z, blocks: int, b: int):
    """``(M, blocks * b) -> (F, M, 2 * blocks)``: the block spectra's real, then imaginary parts."""
    zf = ops.transpose(rfft(ops.reshape(z, (-1, blocks, b)), b), (2, 0, 1))
    return ops.concatenate([ops.real(zf), ops.imag(zf)], axis=-1)


def _irfft_parts(re, im, b: int):
    """``irfft(re + i im)`` of parts ``(F, A, B)``, as ``(A, B, b)``."""
    return irfft(_complex(ops.transpose(re, (1, 2, 0)), ops.transpose(im, (1, 2, 0))), b)


def _from_real_form(zs, blocks: int, b: int):
    """The inverse of :func:`_real_form`: ``(F, M, 2 * blocks) -> (M, blocks * b)``."""
    return ops.reshape(_irfft_parts(zs[..., :blocks], zs[..., blocks:], b), (-1, blocks * b))


@functools.cache
def _dense_product(p: int, q: int, b: int, n_in: int, units: int):
    """``(M, n_in), (P, Q, b) -> (M, units)`` with its frequency-domain gradient."""

    @ops.custom_gradient
    def product(x2, kernel):
        xs = _real_form(pad_axis(x2, 1, 0, p * b - n_in), p, b)  # (F, M, 2P)
        kf = ops.transpose(rfft(kernel, b), (2, 0, 1))  # (F, P, Q)
        kr, ki = ops.real(kf), ops.imag(kf)
        # [xr, xi] @ [[kr, ki], [-ki, kr]] = [yr, yi]: one real matmul per frequency
        ks = ops.concatenate([ops.concatenate([kr, ki], axis=-1),
                              ops.concatenate([-ki, kr], axis=-1)], axis=-2)  # (F, 2P, 2Q)
        y = _from_real_form(ops.matmul(xs, ks), q, b)[:, :units]

        def grad(*args, upstream=None):
            gs = _real_form(pad_axis(_upstream(args, upstream), 1, 0, q * b - units), q, b)
            # G conj(K)^T in the real form: the transpose of the forward's real matrix
            dx = _from_real_form(ops.matmul(gs, ops.transpose(ks, (0, 2, 1))), p, b)[:, :n_in]
            c = ops.matmul(ops.transpose(xs, (0, 2, 1)), gs)  # (F, 2P, 2Q): [xr; xi]^T [gr, gi]
            # conj(X)^T G, real and imaginary parts
            return dx, _irfft_parts(c[:, :p, :q] + c[:, p:, q:], c[:, :p, q:] - c[:, p:, :q], b)

        return y, grad

    return product


def circulant_conv2d_freq(x, kernel, filters: int = None, padding: str = "valid",
                          dilation_rate=1, data_format: str = "channels_last"):
    """:func:`keras_normed.ops.circulant.circulant_conv2d` at stride 1, forward and backward
    in the frequency domain: ``y = irfft(sum_{u, v} shift_{u dh, v dw}(X) K[u, v])`` (see the
    module). Batch, height and width may be unknown until run time. ``padding``: ``"valid"``
    or ``"same"``; ``dilation_rate``: int or pair; ``data_format`` as ``circulant_conv2d``."""
    x, kernel, out_dtype, dt = real_operands(x, kernel)
    c_in = image_sizes(x, data_format)[2]
    kh, kw, p, q, b, filters = circulant_sizes(c_in, kernel, filters, "filters")
    _, padding, dilation = conv_args(1, padding, dilation_rate)
    x = check_output_size(x, data_format, (kh, kw), padding, dilation)
    if data_format == "channels_first":
        x = ops.transpose(x, (0, 2, 3, 1))
    depthwise = backend.backend() == "tensorflow" and not compiled_by_xla()
    product = _conv_product(p, q, b, c_in, filters, (kh, kw), dilation, padding, depthwise)
    y = product(ops.cast(x, dt), ops.cast(kernel, dt))
    if data_format == "channels_first":
        y = ops.transpose(y, (0, 3, 1, 2))
    return ops.cast(y, out_dtype)


def _shift(z, top: int, left: int, th: int, tw: int):
    """``z[:, top : top + H - th, left : left + W - tw]``."""
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
    """The tap sum ``(N, Hp, Wp, A, F), (kh, kw, A, R, F) -> (N, Ho, Wo, R, F)`` and the input of
    its one depthwise convolution, of multiplier 1 (TensorFlow's CPU kernel is ~4x slower with 2):
    channels ``(part, r, a, f)`` ``[zr, zr, zi, zi]`` against ``[kr, ki, -ki, kr]``."""
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
    """The vjp of ``g`` through ``depthwise_conv(z, k)`` to ``k`` of ``shape`` (TensorFlow's
    DepthwiseConv2dNativeBackpropFilter has no keras.ops form)."""
    import tensorflow as tf

    k = tf.zeros(shape, z.dtype)
    with tf.GradientTape() as tape:  # the unused forward is pruned in graphs
        tape.watch(k)
        y = ops.depthwise_conv(z, k, 1, padding, "channels_last", dilation)
    return tape.gradient(y, k, output_gradients=g)


@functools.cache
def _conv_product(p, q, b, c_in, filters, size, dilation, padding, depthwise):
    """``(N, H, W, C_in), (kh, kw, P, Q, b) -> (N, Ho, Wo, filters)`` with its gradient: the
    sums over taps as one depthwise convolution (``depthwise``) or as shifted views."""
    (kh, kw), (dh, dw) = size, dilation
    th, tw = (kh - 1) * dh, (kw - 1) * dw  # the padding a 'same' output needs, per axis
    pads = (th // 2, th - th // 2, tw // 2, tw - tw // 2) if padding == "same" else (0,) * 4
    pt, pb, pl, pr = pads
    taps = [(u, v) for u in range(kh) for v in range(kw)]
    same = depthwise and any(pads)  # TensorFlow's own SAME padding (stride 1) is ours
    # dx pads (th - pt, th - pb): TensorFlow's SAME too when th and tw are even
    same_dx = same and th % 2 == 0 and tw % 2 == 0
    dw_padding, dw_padding_dx = ("same" if s else "valid" for s in (same, same_dx))

    def spectra(z, blocks, channels):
        z = pad_axis(z, 3, 0, blocks * b - channels)
        s = ops.shape(z)
        return rfft(ops.reshape(z, (s[0], s[1], s[2], blocks, b)), b)

    def signal(z, channels):
        z = irfft(z, b)
        s = ops.shape(z)
        return ops.reshape(z, (s[0], s[1], s[2], s[3] * s[4]))[..., :channels]

    def tap_sum(z, k, padding="valid"):  # (N, Hp, Wp, A, F), (kh, kw, A, R, F) -> (N, Ho, Wo, R, F)
        if depthwise:
            return _depthwise(z, k, dilation, padding)
        terms = (_mix(_shift(z, u * dh, v * dw, th, tw), k[u, v]) for u, v in taps)
        return functools.reduce(operator.add, terms), None

    @ops.custom_gradient
    def product(x, kernel):
        xs = spectra(x, p, c_in)  # (N, H, W, P, F)
        if not same:  # the depthwise convolution's own 'same' padding is ours: no padded copy
            xs = pad_axis(pad_axis(xs, 1, pt, pb), 2, pl, pr)
        ks = rfft(kernel, b)  # (kh, kw, P, Q, F)
        y, z = tap_sum(xs, ks, dw_padding)
        y = signal(y, filters)

        def grad(*args, upstream=None):
            g = spectra(_upstream(args, upstream), q, filters)  # (N, Ho, Wo, Q, F)
            gp = g if same_dx else pad_axis(pad_axis(g, 1, th - pt, th - pb), 2, tw - pl, tw - pr)
            # the flipped taps, one axis at a time (Keras 3.11's TensorFlow flip takes one)
            kc = ops.conj(ops.flip(ops.flip(ops.transpose(ks, (0, 1, 3, 2, 4)), 0), 1))
            dx = signal(tap_sum(gp, kc, dw_padding_dx)[0], c_in)
            if depthwise:  # the upstream of the channels (part, q, p, f): [gr, gi, gr, gi]
                gr, gi = (ops.repeat(t, p, axis=3) if p > 1 else t
                          for t in (ops.real(g), ops.imag(g)))
                g4 = ops.concatenate([gr, gi, gr, gi], axis=3)
                s, f = ops.shape(g4), b // 2 + 1
                d = _depthwise_kernel_grad(z, ops.reshape(g4, (s[0], s[1], s[2], -1)),
                                           (kh, kw, 4 * q * p * f, 1), dilation, dw_padding)
                d = ops.reshape(d, (kh, kw, 4, q, p, f))  # conj(X) G, real and imaginary:
                dk = ops.transpose(_complex(d[:, :, 0] + d[:, :, 3], d[:, :, 1] - d[:, :, 2]),
                                   (0, 1, 3, 2, 4))
            else:
                dk = ops.stack([_tap_gradient(_shift(xs, u * dh, v * dw, th, tw), g)
                                for u, v in taps], axis=0)
            return dx, irfft(ops.reshape(dk, (kh, kw, p, q, -1)), b)

        return y, grad

    return product
