"""Convolution geometry, the package's one copy: how Keras pads and strides one axis, and the
per-axis counts of the effective operator ``T`` (never built; docs/structure.md)."""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence, Tuple

import numpy as np

__all__ = ["Axis", "LinearStructure", "assemble", "conv_axis", "conv_output_length",
           "conv_padding", "interior_reach", "transpose_axis"]


@dataclasses.dataclass(frozen=True)
class LinearStructure:
    """Structure of the effective linear operator ``T`` of a layer's kernel.

    Attributes:
        fan_in: largest number of nonzeros in a row of ``T``.
        fan_out: largest number of nonzeros in a column of ``T``.
        sharing: ``nnz(T) / n_params``, the mean number of entries one parameter fills.
        uniform: every row has ``fan_in`` nonzeros and every parameter fills ``sharing`` entries.
        n_params: number of kernel parameters.
        weight: attribute name of the weight described (``"kernel"`` for most layers).
        shape: ``(rows, columns)`` of ``T`` for one sample, or ``None`` when not given.
    """

    fan_in: int
    fan_out: int
    sharing: float
    uniform: bool
    n_params: int
    weight: str = "kernel"
    shape: Optional[Tuple[int, int]] = None

    @property
    def nnz(self) -> float:
        """Number of nonzero entries of ``T``."""
        return self.sharing * self.n_params


def conv_padding(n: int, k: int, stride: int, padding: str,
                 dilation: int = 1) -> Tuple[int, int, int]:
    """``(output length, cells padded before, after)`` of one axis of length ``n`` as
    ``keras.ops.conv`` pads it: ``"valid"`` none (length <= 0 for an input shorter than the
    dilated kernel); ``"same"`` ``ceil(n / stride)`` outputs, the odd cell after; ``"causal"``
    ``k_eff - 1`` cells before."""
    k_eff = (k - 1) * dilation + 1
    if padding == "valid":
        return (n - k_eff) // stride + 1, 0, 0
    m = -(-n // stride)
    if padding == "same":
        total = max((m - 1) * stride + k_eff - n, 0)
        return m, total // 2, total - total // 2
    if padding == "causal":
        return m, k_eff - 1, 0
    raise ValueError(f"Unsupported padding {padding!r}; expected 'valid', 'same' or 'causal'.")


def conv_output_length(n: int, k: int, stride: int, padding: str, dilation: int = 1) -> int:
    """Spatial output length of a Keras-style convolution (0 for an empty ``"valid"`` one)."""
    return max(0, conv_padding(n, k, stride, padding, dilation)[0])


@dataclasses.dataclass(frozen=True)
class Axis:
    """Counts of ``T`` along one spatial axis."""

    rows: np.ndarray  # per output position: taps landing inside the input
    cols: np.ndarray  # per input position: (output, tap) pairs reaching it
    uses: np.ndarray  # per tap: outputs it serves


def _axis(n_in: int, n_out: int, k: int, s: int, d: int, pad: int) -> Axis:
    i = np.arange(n_out)[:, None] * s + np.arange(k)[None, :] * d - pad
    valid = (i >= 0) & (i < n_in)
    return Axis(rows=valid.sum(axis=1), cols=np.bincount(i[valid], minlength=n_in),
                uses=valid.sum(axis=0))


def conv_axis(n: int, k: int, stride: int, padding: str, dilation: int = 1) -> Axis:
    """One axis of a forward convolution of an input of length ``n``."""
    m, before, _ = conv_padding(n, k, stride, padding, dilation)
    if m <= 0:
        raise ValueError(f"An input of length {n} is shorter than the dilated kernel "
                         f"({(k - 1) * dilation + 1}) under 'valid' padding: the output is "
                         "empty.")
    return _axis(n, m, k, stride, dilation, before)


def transpose_axis(n: int, k: int, stride: int, padding: str, dilation: int = 1,
                   output_padding: Optional[int] = None) -> Axis:
    """One axis of a transposed convolution of an input of length ``n``: the adjoint of the
    forward one from the output length to ``n``, so rows and columns swap."""
    k_eff = (k - 1) * dilation + 1
    if padding == "valid":
        op = max(k_eff, stride) - k_eff if output_padding is None else output_padding
        m, pad = (n - 1) * stride + k_eff + op, 0
    elif padding == "same":
        m = n * stride if output_padding is None else \
            (n - 1) * stride + k_eff - 2 * (k_eff // 2) + output_padding
        pad = max((n - 1) * stride + k_eff - m, 0) // 2
    else:
        raise ValueError(f"Unsupported padding {padding!r}; expected 'valid' or 'same'.")
    fwd = _axis(m, n, k, stride, dilation, pad)
    return Axis(rows=fwd.cols, cols=fwd.rows, uses=fwd.uses)


def interior_reach(k: int, stride: int, dilation: int = 1) -> int:
    """Outputs an interior input reaches along one axis: the most taps ``t`` in ``[0, k)``
    sharing a residue ``t*d mod s`` (``ceil(k / s)`` for dilation 1)."""
    return int(np.bincount((np.arange(k) * dilation) % stride, minlength=stride).max())


def assemble(axes: Sequence[Axis], cin_per_row: int, cout_per_col: int, n_params: int,
             shape: Tuple[int, int], positions: int = 1, weight: str = "kernel"
             ) -> LinearStructure:
    """A :class:`LinearStructure` from per-axis counts, the input channels one output sees, the
    output channels one input reaches, the kernel's parameters, the ``(rows, columns)`` of ``T``
    and the positions the kernel is applied at independently (Dense over a sequence)."""
    prod = math.prod
    fan_in = prod(int(a.rows.max()) for a in axes) * cin_per_row
    fan_out = prod(int(a.cols.max()) for a in axes) * cout_per_col
    rows_even = prod(int(a.rows.min()) for a in axes) == prod(int(a.rows.max()) for a in axes)
    uses_even = prod(int(a.uses.min()) for a in axes) == prod(int(a.uses.max()) for a in axes)
    # Every parameter fills (sum over its taps of uses) entries per position.
    nnz = prod(int(a.uses.sum()) for a in axes) * positions * (
        n_params // max(1, prod(len(a.uses) for a in axes)))
    return LinearStructure(fan_in=int(fan_in), fan_out=int(fan_out), sharing=nnz / n_params,
                           uniform=bool(rows_even and uses_even and fan_in > 0),
                           n_params=int(n_params), weight=weight,
                           shape=(int(shape[0]), int(shape[1])))
