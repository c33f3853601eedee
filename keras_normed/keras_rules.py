"""Structure rules for Keras's own layer families, registered into :mod:`keras_normed.structure`
when the package is imported (structure never imports this module). Formulas: docs/structure.md.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import keras

from keras_normed import geometry
from keras_normed.geometry import LinearStructure, assemble
from keras_normed.structure import register_structure

__all__ = ["register_keras_layers"]


def _spatial(layer, input_shape, rank: int) -> Tuple[Tuple[int, ...], int]:
    if len(input_shape) != rank + 2:
        raise ValueError(
            f"Layer {layer.name!r} expects an input of rank {rank + 2} (batch, {rank} spatial, "
            f"channels); got `input_shape={input_shape}`.")
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        spatial, channels = input_shape[2:], input_shape[1]
    else:
        spatial, channels = input_shape[1:-1], input_shape[-1]
    if any(d is None for d in spatial) or channels is None:
        raise ValueError(
            f"Layer {layer.name!r} needs known spatial sizes and channels; got "
            f"`input_shape={input_shape}`. Pass `input_shape=` with concrete sizes.")
    return tuple(int(d) for d in spatial), int(channels)


def _known(layer, input_shape, what: str = "known non-batch sizes") -> None:
    if any(d is None for d in input_shape[1:]):
        raise ValueError(f"Layer {layer.name!r} needs {what}; got "
                         f"`input_shape={input_shape}`. Pass `input_shape=` with concrete sizes.")


def _axes(layer, spatial, transposed: bool = False):
    padding = layer.padding
    if not isinstance(padding, str):
        raise ValueError(f"Layer {layer.name!r}: explicit padding {padding!r} is not "
                         "supported; use 'valid', 'same' or 'causal'.")
    args = zip(spatial, layer.kernel_size, layer.strides, layer.dilation_rate)
    if transposed:
        out_pad = layer.output_padding or (None,) * layer.rank
        return [geometry.transpose_axis(n, k, s, padding.lower(), d, op)
                for (n, k, s, d), op in zip(args, out_pad)]
    return [geometry.conv_axis(n, k, s, padding.lower(), d) for n, k, s, d in args]


def _reach(layer, spatial) -> int:  # outputs an interior input reaches, over the kernel's axes
    return math.prod(geometry.interior_reach(k, s, d)
                     for k, s, d in zip(spatial, layer.strides, layer.dilation_rate))


def _conv_like(axes, spatial, c_in, cin_per_row, cout_per_col, c_out, n_params,
               weight="kernel"):
    return assemble(axes, cin_per_row, cout_per_col, n_params, weight=weight, shape=(
        math.prod(len(a.rows) for a in axes) * c_out, math.prod(spatial) * c_in))


def _dense_fans(layer, kernel_shape, weight=None):
    return (kernel_shape[0], kernel_shape[-1]) if len(kernel_shape) == 2 else None


def _pointwise(n_in: int, n_out: int, positions: int, weight: str = "kernel"):
    """``y = x W`` on the channel axis, applied independently at ``positions`` positions."""
    return assemble([], n_in, n_out, n_in * n_out, (positions * n_out, positions * n_in),
                    positions, weight)


def _dense_structure(layer, input_shape, weight="kernel"):
    _known(layer, input_shape)
    return _pointwise(int(input_shape[-1]), int(layer.units), math.prod(input_shape[1:-1]))


def _conv_fans(layer, kernel_shape, weight=None):  # kernel (k..., C_in / groups, C_out)
    if len(kernel_shape) != layer.rank + 2:
        return None
    reach = _reach(layer, kernel_shape[:-2])
    return math.prod(kernel_shape[:-1]), reach * kernel_shape[-1] // int(layer.groups)


def _conv_structure(layer, input_shape, weight="kernel"):
    spatial, c_in = _spatial(layer, input_shape, layer.rank)
    groups, c_out = int(layer.groups), int(layer.filters)
    n_params = math.prod(layer.kernel_size) * (c_in // groups) * c_out
    return _conv_like(_axes(layer, spatial), spatial, c_in, c_in // groups, c_out // groups,
                      c_out, n_params)


def _depthwise_fans(layer, kernel_shape, weight=None):  # kernel (k..., C_in, dm)
    if len(kernel_shape) != layer.rank + 2:
        return None
    return math.prod(kernel_shape[:-2]), _reach(layer, kernel_shape[:-2]) * kernel_shape[-1]


def _depthwise_structure(layer, input_shape, weight="kernel"):
    spatial, c_in = _spatial(layer, input_shape, layer.rank)
    dm = int(layer.depth_multiplier)
    axes = _axes(layer, spatial)
    n_params = math.prod(len(a.uses) for a in axes) * c_in * dm
    return _conv_like(axes, spatial, c_in, 1, dm, c_in * dm, n_params, weight)


def _separable_fans(layer, kernel_shape, weight=None):
    # depthwise kernel (k..., C_in, dm), pointwise (1..., C_in * dm, filters): without the
    # weight's name, told by the shape
    if len(kernel_shape) != layer.rank + 2:
        return None
    if weight is None:
        depthwise = (tuple(kernel_shape[:-2]) == tuple(layer.kernel_size)
                     and kernel_shape[-1] == layer.depth_multiplier)
        weight = "depthwise_kernel" if depthwise else "pointwise_kernel"
    if weight == "depthwise_kernel":
        return _depthwise_fans(layer, kernel_shape)
    return kernel_shape[-2], kernel_shape[-1]


def _separable_structure(layer, input_shape, weight="depthwise_kernel"):
    if weight == "depthwise_kernel":
        return _depthwise_structure(layer, input_shape, weight)
    # the pointwise kernel: a 1x1 convolution of the depthwise output (C_in * dm channels)
    spatial, c_in = _spatial(layer, input_shape, layer.rank)
    positions = math.prod(len(a.rows) for a in _axes(layer, spatial))
    return _pointwise(c_in * int(layer.depth_multiplier), int(layer.filters), positions, weight)


def _transpose_fans(layer, kernel_shape, weight=None):  # kernel (k..., filters, C_in)
    if len(kernel_shape) != layer.rank + 2:
        return None
    spatial = kernel_shape[:-2]
    return _reach(layer, spatial) * kernel_shape[-1], math.prod(spatial) * kernel_shape[-2]


def _transpose_structure(layer, input_shape, weight="kernel"):
    spatial, c_in = _spatial(layer, input_shape, layer.rank)
    c_out = int(layer.filters)
    return _conv_like(_axes(layer, spatial, transposed=True), spatial, c_in, c_in, c_out,
                      c_out, math.prod(layer.kernel_size) * c_in * c_out)


def _embedding_fans(layer, kernel_shape, weight=None):  # one active (one-hot) input per token
    return (1, kernel_shape[-1]) if len(kernel_shape) == 2 else None


def _embedding_structure(layer, input_shape, weight="embeddings"):
    # the lookup as a linear map of the one-hot input (P tokens x V classes) to the P x D output
    _known(layer, input_shape, "a known sequence length")
    vocab, dim = int(layer.input_dim), int(layer.output_dim)
    positions = math.prod(input_shape[1:])
    return LinearStructure(fan_in=1, fan_out=dim, sharing=float(positions), uniform=True,
                           n_params=vocab * dim, weight="embeddings",
                           shape=(positions * dim, positions * vocab))


def _einsum_specs(layer, ndim: Optional[int] = None) -> Tuple[str, str, str]:
    """(input, kernel, output) index strings, ``...`` spelled out for an input of rank ``ndim``."""
    equation = layer.equation.replace(" ", "")
    lhs, out = equation.split("->")
    x, w = lhs.split(",")
    if "..." in equation:
        n_ell = 0 if ndim is None else ndim - len(x.replace("...", ""))
        ell = "".join([c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in equation][:n_ell])
        x, w, out = x.replace("...", ell), w.replace("...", ell), out.replace("...", ell)
    return x, w, out


def _only_in(size, axes, other) -> int:
    """Product of the sizes of ``axes`` absent from ``other`` (1 for a size not known)."""
    return math.prod(size.get(c, 1) for c in axes if c not in other)


def _einsum_fans(layer, kernel_shape, weight=None):
    # fan_in: the summed input axes; fan_out: the output axes not in the input
    x, w, out = _einsum_specs(layer)
    if len(kernel_shape) != len(w):
        return None
    size = dict(zip(w, kernel_shape))
    return _only_in(size, x, out), _only_in(size, out, x)


def _einsum_structure(layer, input_shape, weight="kernel"):
    # T[y, x] is nonzero where the indices x and y share agree: counts are products of sizes
    x, w, out = _einsum_specs(layer, len(input_shape))
    _known(layer, input_shape)
    # Every kernel axis is an input or an output axis: sizes come from the two shapes.
    out_shape = tuple(layer.compute_output_shape(input_shape))
    size = {c: int(d) for c, d in zip(out[1:], out_shape[1:]) if d is not None}
    size.update({c: int(d) for c, d in zip(x[1:], input_shape[1:])})
    size[x[0]] = 1  # the batch axis: T describes one sample
    n_params = math.prod(size[c] for c in w)
    nnz = math.prod(size[c] for c in set(x) | set(out))
    return LinearStructure(
        fan_in=_only_in(size, x, out), fan_out=_only_in(size, out, x),
        sharing=nnz / n_params, uniform=True, n_params=n_params,
        shape=(math.prod(size[c] for c in out), math.prod(size[c] for c in x)))


_RULES = [  # (classes, fans, structure, weights)
    (("Dense",), _dense_fans, _dense_structure, ("kernel",)),
    (("EinsumDense",), _einsum_fans, _einsum_structure, ("kernel",)),
    (("Embedding",), _embedding_fans, _embedding_structure, ("embeddings",)),
    (("Conv1D", "Conv2D", "Conv3D"), _conv_fans, _conv_structure, ("kernel",)),
    (("DepthwiseConv1D", "DepthwiseConv2D"), _depthwise_fans, _depthwise_structure,
     ("kernel",)),
    (("SeparableConv1D", "SeparableConv2D"), _separable_fans, _separable_structure,
     ("depthwise_kernel", "pointwise_kernel")),
    (("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"), _transpose_fans,
     _transpose_structure, ("kernel",)),
]


def register_keras_layers() -> None:
    """Register the rules of Keras's layer families."""
    for names, fans, struct, weights in _RULES:
        for name in names:
            register_structure(getattr(keras.layers, name), fans, struct, weights=weights)


register_keras_layers()
