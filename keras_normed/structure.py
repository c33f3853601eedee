"""The one place that knows a layer's linear structure.

Every layer whose kernel acts linearly on its input can be written ``y = T(theta) x`` with a
matrix ``T`` that is linear in the parameters ``theta``: ``T`` maps one flattened input sample
to one flattened output sample (rows are outputs). Initializers and the model-level scaling
need four numbers about ``T``, and read them only from here:

- ``fan_in``: the largest number of nonzeros in a row of ``T`` (inputs one output sees),
- ``fan_out``: the largest number of nonzeros in a column of ``T`` (outputs one input reaches),
- ``sharing``: ``nnz(T) / n_params``, how many entries of ``T`` one kernel parameter fills on
  average,
- ``uniform``: every row has exactly ``fan_in`` nonzeros *and* every parameter fills the same
  number of entries (the "conditions on T" of Yang et al. 2021).

Two levels are provided:

- :func:`kernel_fans` needs only the layer's configuration and the kernel shape, so an
  initializer can call it while the layer is still being built. For convolutions it gives the
  fans of the *interior* (outputs whose window lies inside the input): exact there, an upper
  bound at the borders.
- :func:`layer_structure` needs the layer's input shape as well and returns the exact
  :class:`LinearStructure`, borders included. Counts are computed per spatial axis in closed
  form (``T`` is never built), so a 56x56x64 convolution takes well under a millisecond.

Layers with several kernels (``SeparableConv2D``: a depthwise and a pointwise kernel) are
described one weight at a time: each weight's ``T`` is the linear map from that weight's own
input to its own output. ``layer_structure(layer)`` returns the first (main) one,
``layer_structure(layer, weight=name)`` a given one, :func:`weight_structures` all of them.

Third-party layers declare their structure by implementing two methods (the protocol)::

    class MyLayer(keras.layers.Layer):
        def normed_fans(self, kernel_shape) -> tuple[int, int]:
            ...
        def normed_structure(self, input_shape) -> LinearStructure:
            ...

or by calling :func:`register_structure` for a class they cannot edit. Either method may take
an extra ``weight`` keyword (the weight's name) to describe several kernels; such a layer lists
their names in a ``normed_weights`` attribute. See ``docs/structure.md``.

Reference: H. Yang, X. Ding, R. Chan, H. Hu, Y. Peng, T. Zeng, "A new initialization method
based on normed statistical spaces in deep networks", Inverse Problems and Imaging 15(1), 2021.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Callable, Dict, Optional, Sequence, Tuple

import keras
import numpy as np

__all__ = [
    "LinearStructure",
    "built_input_shape",
    "building_layer",
    "kernel_fans",
    "layer_structure",
    "register_structure",
    "shape_fans",
    "weight_structures",
]


@dataclasses.dataclass(frozen=True)
class LinearStructure:
    """Structure of the effective linear operator ``T`` of a layer's kernel.

    Attributes:
        fan_in: largest number of nonzeros in a row of ``T``.
        fan_out: largest number of nonzeros in a column of ``T``.
        sharing: mean number of entries of ``T`` filled by one kernel parameter
            (``nnz(T) / n_params``).
        uniform: every row of ``T`` has ``fan_in`` nonzeros and every parameter fills
            exactly ``sharing`` entries.
        n_params: number of kernel parameters.
        weight: attribute name of the weight described (``"kernel"`` for most layers).
        shape: ``(rows, columns)`` of ``T`` for one sample (output size, input size), or
            ``None`` when not given.

    Example:
        >>> s = LinearStructure(fan_in=27, fan_out=27, sharing=49.0, uniform=True, n_params=81)
        >>> s.nnz
        3969.0
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


FansFn = Callable[..., Tuple[int, int]]
StructureFn = Callable[..., LinearStructure]


@dataclasses.dataclass(frozen=True)
class _Rule:
    fans: FansFn
    structure: StructureFn
    # Names of the weights described, main first; None: one weight, rule functions take no
    # `weight` argument.
    weights: Optional[Tuple[str, ...]] = None


# layer class -> _Rule; looked up along the MRO so subclasses inherit.
_REGISTRY: Dict[type, _Rule] = {}


def register_structure(layer_cls: type, fans: FansFn, structure: StructureFn,
                       weights: Optional[Sequence[str]] = None) -> None:
    """Declare the structure of a layer class that cannot implement the protocol itself.

    Args:
        layer_cls: the layer class (subclasses inherit the rule; a later call replaces it).
        fans: ``fans(layer, kernel_shape) -> (fan_in, fan_out)``, from the configuration and
            kernel shape only (it runs while the layer is being built); ``None`` for a shape
            that is not a kernel it describes (then :func:`shape_fans` is used).
        structure: ``structure(layer, input_shape) -> LinearStructure``; ``input_shape``
            includes the batch axis.
        weights: names of the weights described, main first, for layers with several
            kernels. When given, both functions are called with an extra ``weight=name``
            keyword (``weight=None`` in ``fans`` when the caller does not know the name).

    Example:
        >>> class Scale(keras.layers.Layer):  # y = x * w, one weight per feature
        ...     def build(self, input_shape):
        ...         self.kernel = self.add_weight(shape=(input_shape[-1],))
        ...     def call(self, x):
        ...         return x * self.kernel
        >>> register_structure(
        ...     Scale, lambda layer, shape: (1, 1),
        ...     lambda layer, s: LinearStructure(1, 1, math.prod(s[1:-1]), True, s[-1]))
    """
    if not isinstance(layer_cls, type):
        raise TypeError(f"`layer_cls` must be a class, got {layer_cls!r}.")
    if not callable(fans) or not callable(structure):
        raise TypeError("`fans` and `structure` must be callables: "
                        "fans(layer, kernel_shape) and structure(layer, input_shape).")
    if weights is not None:
        weights = tuple(str(w) for w in weights)
        if not weights:
            raise ValueError("`weights` must name at least one weight, or be None.")
    _REGISTRY[layer_cls] = _Rule(fans, structure, weights)


def _rule(layer) -> Optional[_Rule]:
    for cls in type(layer).__mro__:
        if cls in _REGISTRY:
            return _REGISTRY[cls]
    return None


def _takes_weight(fn) -> bool:
    """Whether ``fn`` accepts a ``weight`` keyword (the optional multi-kernel protocol)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "weight" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def shape_fans(shape: Sequence[int]) -> Tuple[int, int]:
    """Fans from a bare kernel shape, as ``keras.initializers`` computes them.

    The last two axes are (input, output) channels and any leading axes are a receptive field:
    ``fan_in = prod(shape[:-2]) * shape[-2]``, ``fan_out = prod(shape[:-2]) * shape[-1]``; a
    vector gives ``(n, n)`` and a scalar ``(1, 1)``.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def kernel_fans(layer, kernel_shape: Sequence[int],
                weight: Optional[str] = None) -> Tuple[int, int]:
    """Effective ``(fan_in, fan_out)`` of ``layer``'s kernel of shape ``kernel_shape``.

    Needs only the layer's configuration, so it can run inside ``build``. For convolutions
    these are the interior fans: ``fan_in = prod(kernel) * C_in / groups`` and ``fan_out`` the
    number of outputs one interior input reaches (``prod(ceil(k / s)) * C_out / groups`` for
    dilation 1); exact away from the borders, an upper bound at them.

    Args:
        layer: the layer owning the kernel, or ``None``.
        kernel_shape: the kernel's shape.
        weight: the weight's name (``"kernel"``, ``"depthwise_kernel"``, ...), when known;
            without it a layer with several kernels is told by the shape.

    Falls back to :func:`shape_fans` when ``layer`` is ``None`` or of an unknown kind, when
    ``weight`` names a weight the layer's rule does not describe, or when the rule returns
    ``None`` (the built-in rules do for a shape that is not their kernel's, e.g. a bias).

    Example:
        >>> conv = keras.layers.Conv2D(8, 3, strides=2)
        >>> kernel_fans(conv, (3, 3, 4, 8))
        (36, 32)
    """
    kernel_shape = tuple(int(s) for s in kernel_shape)
    if layer is not None:
        method = getattr(layer, "normed_fans", None)
        if method is not None:
            if weight is not None and _takes_weight(method):
                return _as_fans(method(kernel_shape, weight=weight))
            return _as_fans(method(kernel_shape))
        rule = _rule(layer)
        fans = None
        if rule is not None and rule.weights is None:
            fans = rule.fans(layer, kernel_shape)
        elif rule is not None and (weight is None or weight in rule.weights):
            fans = rule.fans(layer, kernel_shape, weight=weight)
        if fans is not None:
            return _as_fans(fans)
    return shape_fans(kernel_shape)


def _as_fans(fans) -> Tuple[int, int]:
    fan_in, fan_out = fans
    return int(fan_in), int(fan_out)


def built_input_shape(layer) -> Optional[Tuple[Optional[int], ...]]:
    """The input shape a built layer was built with, or ``None`` if it cannot be told."""
    shapes = getattr(layer, "_build_shapes_dict", None)
    if shapes:
        shape = next(iter(shapes.values()))
        if shape is not None:
            return tuple(shape)
    try:
        return tuple(layer.input.shape)
    except Exception:  # noqa: BLE001 - not called on a symbolic input: shape unknown
        return None


def _described_weights(layer) -> Optional[Tuple[str, ...]]:
    if hasattr(layer, "normed_structure"):
        names = getattr(layer, "normed_weights", None)
        return tuple(names) if names else None
    rule = _rule(layer)
    return None if rule is None else rule.weights


def layer_structure(layer, input_shape: Optional[Sequence[Optional[int]]] = None,
                    weight: Optional[str] = None) -> Optional[LinearStructure]:
    """Full :class:`LinearStructure` of a built layer, or ``None`` if the layer has no kernel
    of known linear structure (pooling, activations, normalization, unknown layers).

    Args:
        layer: a Keras layer.
        input_shape: the input shape including the batch axis (its value is ignored);
            defaults to the shape the layer was built with.
        weight: which kernel to describe, for layers with several (``"depthwise_kernel"`` or
            ``"pointwise_kernel"`` of a ``SeparableConv2D``); defaults to the main one.

    Raises:
        ValueError: the input shape is unknown or lacks a needed size, or ``weight`` is not
            one of the weights the layer's rule describes.

    Example:
        >>> conv = keras.layers.Conv2D(8, 3, padding="same")
        >>> layer_structure(conv, (None, 5, 5, 2)).sharing  # each axis: (4 + 5 + 4) / 3 uses
        18.77777777777778
    """
    if not hasattr(layer, "normed_structure") and _rule(layer) is None:
        return None
    if input_shape is None:
        input_shape = built_input_shape(layer)
    if input_shape is None:
        raise ValueError(
            f"Layer {layer.name!r} is not built, so its input shape is unknown. "
            "Build it (call it on data or build the model) or pass `input_shape`."
        )
    input_shape = tuple(None if d is None else int(d) for d in input_shape)
    names = _described_weights(layer)
    if weight is not None and names is not None and weight not in names:
        raise ValueError(
            f"Layer {layer.name!r} ({type(layer).__name__}) describes weights {list(names)}, "
            f"not `weight={weight!r}`."
        )
    method = getattr(layer, "normed_structure", None)
    if method is not None:
        if names is not None and _takes_weight(method):
            found = method(input_shape, weight=weight or names[0])
        else:
            found = method(input_shape)
    else:
        rule = _rule(layer)
        if rule.weights is None:
            found = rule.structure(layer, input_shape)
        else:
            found = rule.structure(layer, input_shape, weight=weight or rule.weights[0])
    if weight is not None and names is None and found is not None and found.weight != weight:
        raise ValueError(
            f"Layer {layer.name!r} ({type(layer).__name__}) describes its weight "
            f"{found.weight!r}, not `weight={weight!r}`."
        )
    return found


def weight_structures(layer, input_shape: Optional[Sequence[Optional[int]]] = None
                      ) -> Dict[str, LinearStructure]:
    """Structure of every kernel of ``layer``, by weight name, main first; ``{}`` for a layer
    of unknown structure.

    Example:
        >>> sep = keras.layers.SeparableConv2D(8, 3, depth_multiplier=2)
        >>> sorted(weight_structures(sep, (None, 7, 7, 3)))
        ['depthwise_kernel', 'pointwise_kernel']
    """
    names = _described_weights(layer)
    if names is None:
        found = layer_structure(layer, input_shape)
        return {} if found is None else {found.weight: found}
    return {name: layer_structure(layer, input_shape, weight=name) for name in names}


def building_layer(max_depth: int = 48):
    """The Keras layer whose ``add_weight`` is running on this thread, or ``None``.

    Keras calls an initializer as ``initializer(shape, dtype)`` with no reference to the layer.
    Variables are created synchronously inside ``Layer.add_weight`` (except inside a stateless
    scope, where creation is deferred), so the layer is found on the call stack. Returns
    ``(layer, weight_name)`` or ``None``.
    """
    from keras import layers as keras_layers

    frame = inspect.currentframe()
    name = None
    try:
        frame = frame.f_back if frame is not None else None
        depth = 0
        while frame is not None and depth < max_depth:
            owner = frame.f_locals.get("self")
            if frame.f_code.co_name == "__init__" and name is None:
                local_name = frame.f_locals.get("name")
                if isinstance(local_name, str):
                    name = local_name
            if frame.f_code.co_name == "add_weight" and isinstance(owner, keras_layers.Layer):
                return owner, name
            frame = frame.f_back
            depth += 1
        return None
    finally:
        del frame


# --------------------------------------------------------------------------------------------
# Counting along one spatial axis.
#
# A convolution along one axis pairs output j with input i = j*s + t*d - pad through tap t
# (at most one tap per (j, i) pair). Along several axes the pairs multiply, so row counts,
# column counts and tap uses of the full T are outer products of the per-axis ones; the
# channels add a constant factor. Hence min/max/sum over T are products of per-axis
# min/max/sum, and T is never built.


@dataclasses.dataclass(frozen=True)
class _Axis:
    rows: np.ndarray  # per output position: taps landing inside the input
    cols: np.ndarray  # per input position: (output, tap) pairs reaching it
    uses: np.ndarray  # per tap: outputs it serves


def _axis(n_in: int, n_out: int, k: int, s: int, d: int, pad: int) -> _Axis:
    i = np.arange(n_out)[:, None] * s + np.arange(k)[None, :] * d - pad
    valid = (i >= 0) & (i < n_in)
    return _Axis(rows=valid.sum(axis=1), cols=np.bincount(i[valid], minlength=n_in),
                 uses=valid.sum(axis=0))


def _conv_axis(n: int, k: int, s: int, d: int, padding: str) -> _Axis:
    """One axis of a forward convolution of an input of length ``n``, as TF/Keras pad it."""
    k_eff = (k - 1) * d + 1
    if padding == "valid":
        m, pad = (n - k_eff) // s + 1, 0
    elif padding == "same":
        m = -(-n // s)
        pad = max((m - 1) * s + k_eff - n, 0) // 2  # the extra padded cell goes after
    elif padding == "causal":
        m, pad = -(-n // s), k_eff - 1  # Conv1D pads k_eff - 1 cells before, then 'valid'
    else:
        raise ValueError(f"Unsupported padding {padding!r}; expected 'valid', 'same' or "
                         "'causal'.")
    if m <= 0:
        raise ValueError(f"An input of length {n} is shorter than the dilated kernel "
                         f"({k_eff}) under 'valid' padding: the output is empty.")
    return _axis(n, m, k, s, d, pad)


def _transpose_axis(n: int, k: int, s: int, d: int, padding: str,
                    output_padding: Optional[int]) -> _Axis:
    """One axis of a transposed convolution of an input of length ``n``.

    It is the adjoint of a forward convolution from the output length ``m`` to ``n`` (TF's
    ``conv_transpose`` is the gradient of ``conv``), so rows and columns swap.
    """
    k_eff = (k - 1) * d + 1
    if padding == "valid":
        op = max(k_eff, s) - k_eff if output_padding is None else output_padding
        m = (n - 1) * s + k_eff + op
        pad = 0
    elif padding == "same":
        m = n * s if output_padding is None else (n - 1) * s + k_eff - 2 * (k_eff // 2) + \
            output_padding
        pad = max((n - 1) * s + k_eff - m, 0) // 2
    else:
        raise ValueError(f"Unsupported padding {padding!r}; expected 'valid' or 'same'.")
    fwd = _axis(m, n, k, s, d, pad)
    return _Axis(rows=fwd.cols, cols=fwd.rows, uses=fwd.uses)


def _interior_reach(k: int, s: int, d: int) -> int:
    """Outputs an interior input reaches along one axis: the most taps ``t`` in ``[0, k)``
    sharing a residue ``t*d mod s`` (``ceil(k / s)`` for dilation 1)."""
    return int(np.bincount((np.arange(k) * d) % s, minlength=s).max())


def _structure(axes: Sequence[_Axis], cin_per_row: int, cout_per_col: int, n_params: int,
               positions: int = 1, channel_entries: int = 1, weight: str = "kernel",
               n_rows: Optional[int] = None, n_cols: Optional[int] = None) -> LinearStructure:
    """Assemble a structure from per-axis counts and channel factors.

    Args:
        axes: the spatial axes.
        cin_per_row: input channels one output channel sees.
        cout_per_col: output channels one input channel reaches.
        n_params: kernel parameters.
        positions: extra positions the kernel is applied at independently (Dense over a
            sequence): multiplies nnz.
        channel_entries: (output channel, input channel) pairs per parameter per position.
    """
    prod = math.prod
    fan_in = prod(int(a.rows.max()) for a in axes) * cin_per_row
    fan_out = prod(int(a.cols.max()) for a in axes) * cout_per_col
    rows_even = prod(int(a.rows.min()) for a in axes) == prod(int(a.rows.max()) for a in axes)
    uses_even = prod(int(a.uses.min()) for a in axes) == prod(int(a.uses.max()) for a in axes)
    # Every parameter fills (sum over its taps of uses) entries per position and channel pair.
    nnz = prod(int(a.uses.sum()) for a in axes) * positions * channel_entries * (
        n_params // max(1, prod(len(a.uses) for a in axes)))
    shape = None
    if n_rows is not None and n_cols is not None:
        shape = (int(n_rows), int(n_cols))
    return LinearStructure(fan_in=int(fan_in), fan_out=int(fan_out), sharing=nnz / n_params,
                           uniform=bool(rows_even and uses_even and fan_in > 0),
                           n_params=int(n_params), weight=weight, shape=shape)


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


# --------------------------------------------------------------------------------------------
# The rules for Keras's own layers.


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
    return _structure([], n_in, n_out, n_in * n_out, positions=positions,
                      n_rows=positions * n_out, n_cols=positions * n_in)


def _conv_fans(layer, kernel_shape, weight=None):
    """Kernel ``(k..., C_in / groups, C_out)``."""
    if len(kernel_shape) != layer.rank + 2:
        return None
    groups = int(getattr(layer, "groups", 1))
    spatial = kernel_shape[:-2]
    reach = math.prod(_interior_reach(k, s, d) for k, s, d
                      in zip(spatial, layer.strides, layer.dilation_rate))
    return math.prod(kernel_shape[:-1]), reach * kernel_shape[-1] // groups


def _conv_structure(layer, input_shape, weight="kernel"):
    spatial, c_in = _spatial(layer, input_shape, layer.rank)
    groups, c_out = int(layer.groups), int(layer.filters)
    padding = _padding(layer)
    axes = [_conv_axis(n, k, s, d, padding) for n, k, s, d
            in zip(spatial, layer.kernel_size, layer.strides, layer.dilation_rate)]
    n_params = math.prod(layer.kernel_size) * (c_in // groups) * c_out
    return _structure(axes, c_in // groups, c_out // groups, n_params,
                      n_rows=math.prod(len(a.rows) for a in axes) * c_out,
                      n_cols=math.prod(spatial) * c_in)


def _depthwise_fans(kernel_shape, layer):
    """Kernel ``(k..., C_in, depth_multiplier)``: each output sees one input channel."""
    spatial = kernel_shape[:-2]
    reach = math.prod(_interior_reach(k, s, d) for k, s, d
                      in zip(spatial, layer.strides, layer.dilation_rate))
    return math.prod(spatial), reach * kernel_shape[-1]


def _depthwise_axes(layer, spatial):
    padding = _padding(layer)
    return [_conv_axis(n, k, s, d, padding) for n, k, s, d
            in zip(spatial, layer.kernel_size, layer.strides, layer.dilation_rate)]


def _depthwise_structure_of(axes, spatial, c_in, dm, weight):
    n_params = math.prod(len(a.uses) for a in axes) * c_in * dm
    return _structure(axes, 1, dm, n_params, weight=weight,
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
    return _structure([], c_mid, c_out, c_mid * c_out, positions=positions, weight=weight,
                      n_rows=positions * c_out, n_cols=positions * c_mid)


def _transpose_fans(layer, kernel_shape, weight=None):
    """Kernel ``(k..., filters, C_in)``: an output sees ``ceil(k/s)`` taps per axis."""
    if len(kernel_shape) != layer.rank + 2:
        return None
    spatial = kernel_shape[:-2]
    reach = math.prod(_interior_reach(k, s, d) for k, s, d
                      in zip(spatial, layer.strides, layer.dilation_rate))
    return reach * kernel_shape[-1], math.prod(spatial) * kernel_shape[-2]


def _transpose_structure(layer, input_shape, weight="kernel"):
    spatial, c_in = _spatial(layer, input_shape, layer.rank)
    c_out = int(layer.filters)
    padding = _padding(layer)
    out_pad = layer.output_padding or (None,) * layer.rank
    axes = [_transpose_axis(n, k, s, d, padding, op) for n, k, s, d, op
            in zip(spatial, layer.kernel_size, layer.strides, layer.dilation_rate, out_pad)]
    n_params = math.prod(layer.kernel_size) * c_in * c_out
    return _structure(axes, c_in, c_out, n_params,
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


def _register_builtins() -> None:
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


_register_builtins()
