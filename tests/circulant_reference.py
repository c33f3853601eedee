"""Numpy references for the block-circulant layers and ops: the dense matrix of a circulant
kernel built with ``scipy.linalg.circulant``, and a direct convolution loop. Nothing here calls
:mod:`keras_normed`."""

import numpy as np
import scipy.linalg


def dense_reference(kernel, n_in, units):
    """W with y = x @ W: block (p, q) of W^T is scipy.linalg.circulant(kernel[p, q])."""
    p, q, b = kernel.shape
    w = np.zeros((p * b, q * b), kernel.dtype)
    for i in range(p):
        for j in range(q):
            w[i * b:(i + 1) * b, j * b:(j + 1) * b] = scipy.linalg.circulant(kernel[i, j]).T
    return w[:n_in, :units]


def conv_reference(x, w, stride=1, padding="valid", dilation=1):
    """Direct (cross-correlation) convolution in numpy, TF's SAME padding; ``stride`` an int
    or a pair."""
    kh, kw = w.shape[:2]
    sh, sw = (stride, stride) if np.isscalar(stride) else stride
    if padding == "same":
        pads = []
        for n, k, s in zip(x.shape[1:3], (kh, kw), (sh, sw)):
            out = -(-n // s)
            total = max((out - 1) * s + (k - 1) * dilation + 1 - n, 0)
            pads.append((total // 2, total - total // 2))
        x = np.pad(x, [(0, 0), pads[0], pads[1], (0, 0)])
    h, wd = x.shape[1:3]
    ho = (h - (kh - 1) * dilation - 1) // sh + 1
    wo = (wd - (kw - 1) * dilation - 1) // sw + 1
    y = np.zeros((x.shape[0], ho, wo, w.shape[3]), x.dtype)
    for u in range(kh):
        for v in range(kw):
            patch = x[:, u * dilation: u * dilation + (ho - 1) * sh + 1: sh,
                      v * dilation: v * dilation + (wo - 1) * sw + 1: sw]
            y += patch @ w[u, v]
    return y
