"""Structure rules for Keras's own layer families, registered into :mod:`keras_normed.structure`
when the package is imported (``keras_normed/__init__.py`` imports this module; structure itself
never imports it).

Dense, EinsumDense, Embedding, Conv1D/2D/3D, DepthwiseConv1D/2D, SeparableConv1D/2D and
Conv1D/2D/3DTranspose: fans from the configuration and kernel shape, exact structure from the
input shape through the per-axis counts of :mod:`keras_normed.geometry`.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import keras

from keras_normed.geometry import (
    LinearStructure,
    assemble,
    conv_axis,
    interior_reach,
    transpose_axis,
)
from keras_normed.structure import register_structure

__all__ = ["register_keras_layers"]


def _spatial(layer, input_shape, rank: int) -> Tuple[Tuple[int, ...], int]:
    """Spatial sizes and channel count of ``input_shape`` (batch axis included)."""
    if len(input_shape) != rank + 2:
        raise ValueError(
            f"Layer {layer.name!r} expects an input of rank {rank + 2} (batch, {rank} spatial, "
            f"channels); got `input_shape={input_shape}`."
        )
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        spatial, channels = input_shape[2:], input_shape[1]
    else:
        spatial, channels = input_shape[1:-1], input_shape[-1]
    if any(d is None for d in spatial) or channels is None:
        raise ValueError(
            f"Layer {layer.name!r} needs known spatial sizes and channels; got "
            f"`input_shape={input_shape}`. Pass `input_shape=` with concrete sizes."
        )
    return tuple(int(d) for d in spatial), int(channels)


def _padding(layer) -> str:
    padding = layer.padding
    if not isinstance(padding, str):
        raise ValueError(f"Layer {layer.name!r}: explicit padding {padding!r} is not "
                         "supported; use 'valid', 'same' or 'causal'.")
    return padding.lower()


def _dense_fans(layer, kernel_shape, weight=None):
    if len(kernel_shape) != 2:
        return None
    return kernel_shape[0], kernel_shape[-1]


def _dense_structure(layer, input_shape, weight="kernel"):
    """``y = x W`` on the last axis, applied independently at every leading position."""
    if input_shape[-1] is None or any(d is None for d in input_shape[1:-1]):
        raise ValueError(f"Layer {layer.name!r} needs known non-batch sizes; got "
                         f"`input_shape={input_shape}`. Pass `input_shape=` with concrete sizes.")
    n_in, n_out = int(input_shape[-1]), int(layer.units)
    positions = math.prod(input_shape[1:-1])
    return assemble([], n_in, n_out, n_in * n_out, positions=positions,
                      n_rows=positions * n_out, n_cols=positions * n_in)


def _conv_fans(layer, kernel_shape, weight=None):
    """Kernel ``(k..., C_in / groups, C_out)``."""
    if len(kernel_shape) != layer.rank + 2:
        return None
    groups = int(getattr(layer, "groups", 1))
    spatial = kernel_shape[:-2]
    reach = math.prod(interior_reach(k, s, d) for k, s, d
                      in zip(spatial, layer.strides, layer.dilation_rate))
    return math.prod(kernel_shape[:-1]), reach * kernel_shape[-1] // groups


def _conv_structure(layer, input_shape, weight="kernel"):
    spatial, c_in = _spatial(layer, input_shape, layer.rank)
    groups, c_out = int(layer.groups), int(layer.filters)
    padding = _padding(layer)
    axes = [conv_axis(n, k, s, padding, d) for n, k, s, d
            in zip(spatial, layer.kernel_size, layer.strides, layer.dilation_rate)]
    n_params = math.prod(layer.kernel_size) * (c_in // groups) * c_out
    return assemble(axes, c_in // groups, c_out // groups, n_params,
                      n_rows=math.prod(len(a.rows) for a in axes) * c_out,
                      n_cols=math.prod(spatial) * c_in)


def _depthwise_fans(kernel_shape, layer):
    """Kernel ``(k..., C_in, depth_multiplier)``: each output sees one input channel."""
    spatial = kernel_shape[:-2]
    reach = math.prod(interior_reach(k, s, d) for k, s, d
                      in zip(spatial, layer.strides, layer.dilation_rate))
    return math.prod(spatial), reach * kernel_shape[-1]


def _depthwise_axes(layer, spatial):
    padding = _padding(layer)
    return [conv_axis(n, k, s, padding, d) for n, k, s, d
            in zip(spatial, layer.kernel_size, layer.strides, layer.dilation_rate)]


def _depthwise_structure_of(axes, spatial, c_in, dm, weight):
    n_params = math.prod(len(a.uses) for a in axes) * c_in * dm
    return assemble(axes, 1, dm, n_params, weight=weight,
                      n_rows=math.prod(len(a.rows) for a in axes) * c_in * dm,
                      n_cols=math.prod(spatial) * c_in)


def _depthwise_conv_fans(layer, kernel_shape, weight=None):
    if len(kernel_shape) != layer.rank + 2:
        return None
    return _depthwise_fans(kernel_shape, layer)


def _depthwise_conv_structure(layer, input_shape, weight="kernel"):
    spatial, c_in = _spatial(layer, input_shape, layer.rank)
    axes = _depthwise_axes(layer, spatial)
    return _depthwise_structure_of(axes, spatial, c_in, int(layer.depth_multiplier), weight)


_SEPARABLE_WEIGHTS = ("depthwise_kernel", "pointwise_kernel")


def _separable_fans(layer, kernel_shape, weight=None):
    """Depthwise kernel ``(k..., C_in, dm)``, pointwise ``(1..., C_in * dm, filters)``."""
    if len(kernel_shape) != layer.rank + 2:
        return None
    if weight is None:
        weight = _separable_weight_by_shape(layer, kernel_shape)
    if weight == "depthwise_kernel":
        return _depthwise_fans(kernel_shape, layer)
    return kernel_shape[-2], kernel_shape[-1]


def _separable_weight_by_shape(layer, kernel_shape) -> str:
    spatial = tuple(kernel_shape[:-2])
    is_depthwise = (spatial == tuple(layer.kernel_size)
                    and kernel_shape[-1] == layer.depth_multiplier)
    is_pointwise = all(k == 1 for k in spatial) and kernel_shape[-1] == layer.filters
    if is_depthwise and is_pointwise:
        # Same shapes (1x1 kernel, dm == filters == 1): the depthwise kernel is built first.
        return "pointwise_kernel" if hasattr(layer, "depthwise_kernel") else "depthwise_kernel"
    return "depthwise_kernel" if is_depthwise else "pointwise_kernel"


def _separable_structure(layer, input_shape, weight="depthwise_kernel"):
    """Depthwise: input -> (C_in * dm) intermediate channels with the layer's strides,
    padding and dilation; pointwise: a 1x1 convolution of that intermediate."""
    spatial, c_in = _spatial(layer, input_shape, layer.rank)
    dm = int(layer.depth_multiplier)
    axes = _depthwise_axes(layer, spatial)
    if weight == "depthwise_kernel":
        return _depthwise_structure_of(axes, spatial, c_in, dm, weight)
    positions = math.prod(len(a.rows) for a in axes)
    c_mid, c_out = c_in * dm, int(layer.filters)
    return assemble([], c_mid, c_out, c_mid * c_out, positions=positions, weight=weight,
                      n_rows=positions * c_out, n_cols=positions * c_mid)


def _transpose_fans(layer, kernel_shape, weight=None):
    """Kernel ``(k..., filters, C_in)``: an output sees ``ceil(k/s)`` taps per axis."""
    if len(kernel_shape) != layer.rank + 2:
        return None
    spatial = kernel_shape[:-2]
    reach = math.prod(interior_reach(k, s, d) for k, s, d
                      in zip(spatial, layer.strides, layer.dilation_rate))
    return reach * kernel_shape[-1], math.prod(spatial) * kernel_shape[-2]


def _transpose_structure(layer, input_shape, weight="kernel"):
    spatial, c_in = _spatial(layer, input_shape, layer.rank)
    c_out = int(layer.filters)
    padding = _padding(layer)
    out_pad = layer.output_padding or (None,) * layer.rank
    axes = [transpose_axis(n, k, s, padding, d, op) for n, k, s, d, op
            in zip(spatial, layer.kernel_size, layer.strides, layer.dilation_rate, out_pad)]
    n_params = math.prod(layer.kernel_size) * c_in * c_out
    return assemble(axes, c_in, c_out, n_params,
                      n_rows=math.prod(len(a.rows) for a in axes) * c_out,
                      n_cols=math.prod(spatial) * c_in)


def _embedding_fans(layer, kernel_shape, weight=None):
    """A one-hot input has one active entry per token: each output is one parameter."""
    if len(kernel_shape) != 2:
        return None
    return 1, kernel_shape[-1]


def _embedding_structure(layer, input_shape, weight="embeddings"):
    """The lookup as a linear map of the one-hot input (``P`` tokens x ``V`` classes) to the
    ``P x D`` output: ``T[(p, d), (p, v)] = E[v, d]``. ``fan_in`` counts *active* inputs: a
    row has ``V`` nonzeros but a one-hot token activates exactly one of them, so it is 1."""
    if any(d is None for d in input_shape[1:]):
        raise ValueError(f"Layer {layer.name!r} needs a known sequence length; got "
                         f"`input_shape={input_shape}`. Pass `input_shape=` with concrete sizes.")
    vocab, dim = int(layer.input_dim), int(layer.output_dim)
    positions = math.prod(input_shape[1:])
    return LinearStructure(fan_in=1, fan_out=dim, sharing=float(positions), uniform=True,
                           n_params=vocab * dim, weight="embeddings",
                           shape=(positions * dim, positions * vocab))


def _einsum_specs(layer, ndim: Optional[int] = None) -> Tuple[str, str, str]:
    """(input, kernel, output) index strings of an EinsumDense, with ``...`` spelled out as
    fresh letters when ``ndim`` (the input rank) is given, dropped otherwise."""
    equation = layer.equation.replace(" ", "")
    lhs, out = equation.split("->")
    x, w = lhs.split(",")
    if "..." in equation:
        n_ell = 0 if ndim is None else ndim - len(x.replace("...", ""))
        free = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in equation][:n_ell]
        ell = "".join(free)
        x, w, out = x.replace("...", ell), w.replace("...", ell), out.replace("...", ell)
    return x, w, out


def _einsum_fans(layer, kernel_shape, weight=None):
    """``fan_in``: product of the summed input axes (those not in the output); ``fan_out``:
    product of the output axes not in the input. Summed axes absent from the kernel are not
    known before build and count as 1."""
    x, w, out = _einsum_specs(layer)
    if len(kernel_shape) != len(w):
        return None
    size = dict(zip(w, kernel_shape))
    fan_in = math.prod(size.get(c, 1) for c in x if c not in out)
    fan_out = math.prod(size.get(c, 1) for c in out if c not in x)
    return fan_in, fan_out


def _einsum_structure(layer, input_shape, weight="kernel"):
    """``T[y, x]`` is nonzero exactly when the indices shared by ``x`` and ``y`` agree, so every
    count is a product of axis sizes and the structure is always uniform."""
    x, w, out = _einsum_specs(layer, len(input_shape))
    if any(d is None for d in input_shape[1:]):
        raise ValueError(f"Layer {layer.name!r} needs known non-batch sizes; got "
                         f"`input_shape={input_shape}`. Pass `input_shape=` with concrete sizes.")
    # Every kernel axis is an input or an output axis: sizes come from the two shapes.
    out_shape = tuple(layer.compute_output_shape(input_shape))
    size = {c: int(d) for c, d in zip(out[1:], out_shape[1:]) if d is not None}
    size.update({c: int(d) for c, d in zip(x[1:], input_shape[1:])})
    size[x[0]] = 1  # the batch axis: T describes one sample
    n_params = math.prod(size[c] for c in w)
    union = set(x) | set(out)
    nnz = math.prod(size[c] for c in union)
    return LinearStructure(
        fan_in=math.prod(size[c] for c in x if c not in out),
        fan_out=math.prod(size[c] for c in out if c not in x),
        sharing=nnz / n_params, uniform=True, n_params=n_params,
        shape=(math.prod(size[c] for c in out), math.prod(size[c] for c in x)))


def register_keras_layers() -> None:
    """Register the rules of Keras's layer families (those this Keras has)."""
    L = keras.layers
    table = [
        # (classes, fans, structure, weights)
        (("Dense",), _dense_fans, _dense_structure, ("kernel",)),
        (("EinsumDense",), _einsum_fans, _einsum_structure, ("kernel",)),
        (("Embedding",), _embedding_fans, _embedding_structure, ("embeddings",)),
        (("Conv1D", "Conv2D", "Conv3D"), _conv_fans, _conv_structure, ("kernel",)),
        (("DepthwiseConv1D", "DepthwiseConv2D"), _depthwise_conv_fans,
         _depthwise_conv_structure, ("kernel",)),
        (("SeparableConv1D", "SeparableConv2D"), _separable_fans, _separable_structure,
         _SEPARABLE_WEIGHTS),
        (("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"), _transpose_fans,
         _transpose_structure, ("kernel",)),
    ]
    for names, fans, struct, weights in table:
        for name in names:
            cls = getattr(L, name, None)
            if cls is not None:  # absent from older Keras versions
                register_structure(cls, fans, struct, weights=weights)


register_keras_layers()
