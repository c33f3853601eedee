"""Equal growth as well as the function-keeping constraints allow: one least-squares solve."""

from __future__ import annotations

import math
from typing import Tuple

import numpy as np

__all__ = ["null_space", "equalize", "norm", "relative_change"]


def null_space(rows: np.ndarray, n: int) -> np.ndarray:
    """An orthonormal basis (columns) of ``{a : rows @ a = 0}`` in ``R^n``."""
    if rows.size == 0:
        return np.eye(n)
    _, sing, vt = np.linalg.svd(rows, full_matrices=True)
    rank = int(np.sum(sing > 1e-9 * max(1.0, float(sing.max(initial=0.0)))))
    return vt[rank:].T


def equalize(log_growth: np.ndarray, rows: np.ndarray, exponent: float) -> Tuple[np.ndarray, float]:
    """Log-scales ``a`` with ``rows @ a = 0`` making ``log_growth - exponent * a`` as equal as
    possible, and the growth spread ``max/min`` left: the minimum-norm minimizer of
    ``sum_l (log r_l - p a_l - K)**2`` over ``a = N z`` (``N``: null space of ``rows``), free ``K``.
    """
    log_growth = np.asarray(log_growth, np.float64)
    n = log_growth.size
    basis = null_space(np.asarray(rows, np.float64).reshape(-1, n), n)
    b = log_growth - log_growth.mean()
    if basis.shape[1] == 0:
        return np.zeros(n), float(math.exp(np.ptp(b))) if n else 1.0
    # The normal equations of [p N, 1] [z; K] = b (N orthonormal, u = N^T 1) by hand:
    # p z = N^T b - u K and (n - u.u) K = 1.b - u.N^T b; when 1 lies in N's span K is free
    # (K = 0, the minimum norm). In einsum, not BLAS (slow next to TensorFlow's threads).
    u = np.einsum("ik,i->k", basis, np.ones(n))
    nb = np.einsum("ik,i->k", basis, b)
    level = (b.sum() - float(u @ nb)) / (n - float(u @ u) + 1e-9 * n)
    z = (nb - u * level) / exponent
    a = np.einsum("ik,k->i", basis, z)
    return a, float(math.exp(np.ptp(b - exponent * a - level)))


def norm(x) -> float:
    """Euclidean norm of all entries, in float64 (``einsum``, not BLAS: see docs/performance.md)."""
    flat = np.ravel(np.asarray(x, np.float64))
    return math.sqrt(float(np.einsum("i,i->", flat, flat)))


def relative_change(before, after) -> float:
    """``||after - before|| / ||before||`` over every tensor of two output structures."""
    import keras

    b = np.concatenate([np.ravel(keras.ops.convert_to_numpy(t)).astype(np.float64)
                        for t in keras.tree.flatten(before)])
    a = np.concatenate([np.ravel(keras.ops.convert_to_numpy(t)).astype(np.float64)
                        for t in keras.tree.flatten(after)])
    return norm(a - b) / max(norm(b), 1e-30)
