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

This module holds the public API and the registry; the counting is in
:mod:`keras_normed.geometry` and the rules for Keras's own layers in
:mod:`keras_normed.keras_rules` (registered when the package is imported). Two levels are
provided:

- :func:`kernel_fans` needs only the layer's configuration and the kernel shape, so an
  initializer can call it while the layer is still being built. For convolutions it gives the
  fans of the *interior* (outputs whose window lies inside the input): exact there, an upper
  bound at the borders.
- :func:`layer_structure` needs the layer's input shape as well and returns the exact
  :class:`LinearStructure`, borders included. Counts are computed per spatial axis in closed
  form (``T`` is never built).

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

from keras_normed import _keras_compat as compat
from keras_normed.geometry import LinearStructure

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
    shape = compat.build_input_shape(layer)
    if shape is not None:
        return shape
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
    import keras

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
            if frame.f_code.co_name == "add_weight" and isinstance(owner, keras.layers.Layer):
                return owner, name
            frame = frame.f_back
            depth += 1
        return None
    finally:
        del frame
