"""The one place that knows a layer's linear structure: the ``fan_in``, ``fan_out``, ``sharing``
and ``uniform`` of the effective operator ``y = T(theta) x`` of its kernel (docs/structure.md).

Reference: H. Yang, X. Ding, R. Chan, H. Hu, Y. Peng, T. Zeng, "A new initialization method
based on normed statistical spaces in deep networks", Inverse Problems and Imaging 15(1), 2021.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Callable, Dict, Optional, Sequence, Tuple

import keras

from keras_normed import _keras_compat as compat
from keras_normed.geometry import LinearStructure

__all__ = ["LinearStructure", "bind_initializer", "built_input_shape", "declares_structure",
           "kernel_fans", "layer_structure", "register_structure", "shape_fans",
           "weight_structures"]


@dataclasses.dataclass(frozen=True)
class _Rule:
    fans: Callable[..., Tuple[int, int]]
    structure: Callable[..., LinearStructure]
    weights: Optional[Tuple[str, ...]] = None  # None: one weight, no `weight` argument


_REGISTRY: Dict[type, _Rule] = {}  # looked up along the MRO: subclasses inherit


def register_structure(layer_cls: type, fans: Callable[..., Tuple[int, int]],
                       structure: Callable[..., LinearStructure],
                       weights: Optional[Sequence[str]] = None) -> None:
    """Declare the structure of a layer class that cannot implement the protocol itself
    (example: docs/structure.md).

    Args:
        layer_cls: the layer class (subclasses inherit the rule; a later call replaces it).
        fans: ``fans(layer, kernel_shape) -> (fan_in, fan_out)`` from the configuration and
            kernel shape only (it runs inside ``build``); ``None``: a kernel it does not take.
        structure: ``structure(layer, input_shape) -> LinearStructure`` (batch axis included).
        weights: the weights described, main first, for layers with several kernels: both
            functions then get a ``weight=name`` keyword (``None`` in ``fans`` when unknown).
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
    return next((_REGISTRY[cls] for cls in type(layer).__mro__ if cls in _REGISTRY), None)


def _takes_weight(fn) -> bool:
    # The multi-kernel protocol (a `weight` keyword) is optional.
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "weight" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def shape_fans(shape: Sequence[int]) -> Tuple[int, int]:
    """Fans of a bare kernel shape as ``keras.initializers`` computes them: ``fan_in =
    prod(shape[:-2]) * shape[-2]``, ``fan_out = prod(shape[:-2]) * shape[-1]``, ``(n, n)`` for a
    vector, ``(1, 1)`` for a scalar."""
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2:
        return (shape[0], shape[0]) if shape else (1, 1)
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def kernel_fans(layer, kernel_shape: Sequence[int],
                weight: Optional[str] = None) -> Tuple[int, int]:
    """Effective ``(fan_in, fan_out)`` of ``layer``'s kernel of shape ``kernel_shape`` from the
    layer's configuration only (it runs inside ``build``), for convolutions the interior fans:
    ``kernel_fans(keras.layers.Conv2D(8, 3, strides=2), (3, 3, 4, 8)) == (36, 32)``. Falls back
    to :func:`shape_fans` for an unknown layer or ``weight`` or a shape the rule does not take.

    Args:
        layer: the layer owning the kernel, or ``None``.
        kernel_shape: the kernel's shape.
        weight: the weight's name (``"kernel"``, ``"depthwise_kernel"``, ...), when known;
            without it a layer with several kernels is told by the shape.
    """
    kernel_shape = tuple(int(s) for s in kernel_shape)
    method, rule, fans = getattr(layer, "normed_fans", None), _rule(layer), None
    if method is not None:
        fans = method(kernel_shape, **({"weight": weight} if weight is not None
                                       and _takes_weight(method) else {}))
    elif rule is not None and rule.weights is None:
        fans = rule.fans(layer, kernel_shape)
    elif rule is not None and (weight is None or weight in rule.weights):
        fans = rule.fans(layer, kernel_shape, weight=weight)
    return shape_fans(kernel_shape) if fans is None else (int(fans[0]), int(fans[1]))


def bind_initializer(initializer, layer, weight: str):
    """``initializer`` bound to ``layer``'s weight ``weight`` when it has ``normed_bind(layer,
    weight)``, else unchanged: what the package's layers pass ``add_weight``."""
    bind = getattr(initializer, "normed_bind", None)
    return initializer if bind is None else bind(layer, weight)


def built_input_shape(layer) -> Optional[Tuple[Optional[int], ...]]:
    """The input shape a built layer was built with, or ``None`` if it cannot be told."""
    shape = compat.build_input_shape(layer)
    if shape is not None:
        return shape
    try:
        return tuple(layer.input.shape)
    except Exception:  # noqa: BLE001 - not called on a symbolic input: shape unknown
        return None


def declares_structure(layer) -> bool:
    """Whether ``layer`` declares a structure of its own (circulant, periodic): not a wrapper
    that hands on its inner layer's (``WeightNormalization``), whose inner layer is asked."""
    return hasattr(layer, "normed_structure") and not isinstance(layer, keras.layers.Wrapper)


def _described_weights(layer) -> Optional[Tuple[str, ...]]:
    if hasattr(layer, "normed_structure"):
        names = getattr(layer, "normed_weights", None)
        return tuple(names) if names else None
    rule = _rule(layer)
    return None if rule is None else rule.weights


def layer_structure(layer, input_shape: Optional[Sequence[Optional[int]]] = None,
                    weight: Optional[str] = None) -> Optional[LinearStructure]:
    """Full :class:`LinearStructure` of a built layer, or ``None`` for a layer without a kernel
    of known linear structure. ``layer_structure(keras.layers.Conv2D(8, 3, padding="same"),
    (None, 5, 5, 2))`` has ``sharing`` 18.78, ``((4 + 5 + 4) / 3) ** 2`` (taps used per axis).

    Args:
        layer: a Keras layer.
        input_shape: the input shape with the batch axis; defaults to the built one.
        weight: which kernel, for layers with several (``"pointwise_kernel"`` of a
            ``SeparableConv2D``); defaults to the main one.

    Raises:
        ValueError: the input shape is unknown or lacks a needed size, or ``weight`` is not
            described.
    """
    method, rule = getattr(layer, "normed_structure", None), _rule(layer)
    if method is None and rule is None:
        return None
    if input_shape is None:
        input_shape = built_input_shape(layer)
    if input_shape is None:
        raise ValueError(
            f"Layer {layer.name!r} is not built, so its input shape is unknown. "
            "Build it (call it on data or build the model) or pass `input_shape`.")
    input_shape = tuple(None if d is None else int(d) for d in input_shape)
    names = _described_weights(layer)
    if weight is not None and names is not None and weight not in names:
        raise ValueError(
            f"Layer {layer.name!r} ({type(layer).__name__}) describes weights {list(names)}, "
            f"not `weight={weight!r}`.")
    if method is not None:
        found = (method(input_shape, weight=weight or names[0])
                 if names is not None and _takes_weight(method) else method(input_shape))
    elif rule.weights is None:
        found = rule.structure(layer, input_shape)
    else:
        found = rule.structure(layer, input_shape, weight=weight or rule.weights[0])
    if weight is not None and names is None and found is not None and found.weight != weight:
        raise ValueError(
            f"Layer {layer.name!r} ({type(layer).__name__}) describes its weight "
            f"{found.weight!r}, not `weight={weight!r}`.")
    return found


def weight_structures(layer, input_shape: Optional[Sequence[Optional[int]]] = None
                      ) -> Dict[str, LinearStructure]:
    """Structure of every kernel of ``layer`` by weight name, main first (``{}``: unknown)."""
    names = _described_weights(layer)
    if names is None:
        found = layer_structure(layer, input_shape)
        return {} if found is None else {found.weight: found}
    return {name: layer_structure(layer, input_shape, weight=name) for name in names}
