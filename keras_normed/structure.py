"""The one place that knows a layer's linear structure.

Every layer whose kernel acts linearly on its input can be written ``y = T(theta) x`` with a
matrix ``T`` that is linear in the parameters ``theta``. Initializers and the model-level scaling
need four numbers about ``T``, and read them only from here:

- ``fan_in``: nonzeros in one row of ``T`` (how many inputs one output sees),
- ``fan_out``: nonzeros in one column of ``T`` (how many outputs one input reaches),
- ``sharing``: how many entries of ``T`` each kernel parameter fills, on average,
- ``uniform``: whether every row has ``fan_in`` nonzeros and every parameter fills exactly
  ``sharing`` entries (the "conditions on T" of Yang et al. 2021).

Two levels are provided:

- :func:`kernel_fans` needs only the layer's configuration and the kernel shape, so an
  initializer can call it while the layer is still being built;
- :func:`layer_structure` needs the layer's input shape as well (sharing depends on the spatial
  size of a convolution's output) and returns a full :class:`LinearStructure`.

Third-party layers declare their structure by implementing two methods (the protocol)::

    class MyLayer(keras.layers.Layer):
        def normed_fans(self, kernel_shape) -> tuple[int, int]:
            ...
        def normed_structure(self, input_shape) -> LinearStructure:
            ...

or by calling :func:`register_structure` for a class they cannot edit.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional, Sequence, Tuple

__all__ = [
    "LinearStructure",
    "kernel_fans",
    "layer_structure",
    "register_structure",
    "shape_fans",
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
    """

    fan_in: int
    fan_out: int
    sharing: float
    uniform: bool
    n_params: int
    weight: str = "kernel"

    @property
    def nnz(self) -> float:
        """Number of nonzero entries of ``T``."""
        return self.sharing * self.n_params


FansFn = Callable[[object, Sequence[int]], Tuple[int, int]]
StructureFn = Callable[[object, Sequence[Optional[int]]], LinearStructure]

# layer class -> (fans rule, structure rule); looked up along the MRO so subclasses inherit.
_REGISTRY: dict = {}


def register_structure(layer_cls: type, fans: FansFn, structure: StructureFn) -> None:
    """Declare the structure of a layer class that cannot implement the protocol itself.

    Args:
        layer_cls: the layer class (subclasses inherit the rule).
        fans: ``fans(layer, kernel_shape) -> (fan_in, fan_out)``.
        structure: ``structure(layer, input_shape) -> LinearStructure``.
    """
    _REGISTRY[layer_cls] = (fans, structure)


def _rule(layer):
    for cls in type(layer).__mro__:
        if cls in _REGISTRY:
            return _REGISTRY[cls]
    return None


def shape_fans(shape: Sequence[int]) -> Tuple[int, int]:
    """Fans from a bare kernel shape, as ``keras.initializers`` computes them.

    The last two axes are (input, output) channels and any leading axes are a receptive field.
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


def kernel_fans(layer, kernel_shape: Sequence[int]) -> Tuple[int, int]:
    """Effective ``(fan_in, fan_out)`` of ``layer``'s kernel of shape ``kernel_shape``.

    Falls back to :func:`shape_fans` when ``layer`` is ``None`` or of an unknown kind.
    """
    if layer is not None:
        if hasattr(layer, "normed_fans"):
            return tuple(int(f) for f in layer.normed_fans(tuple(kernel_shape)))
        rule = _rule(layer)
        if rule is not None:
            return tuple(int(f) for f in rule[0](layer, tuple(kernel_shape)))
    return shape_fans(kernel_shape)


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


def layer_structure(layer, input_shape: Optional[Sequence[Optional[int]]] = None):
    """Full :class:`LinearStructure` of a built layer, or ``None`` if the layer has no kernel
    of known linear structure.

    Args:
        layer: a Keras layer.
        input_shape: the input shape including the batch axis; defaults to the shape the layer
            was built with.
    """
    if input_shape is None:
        input_shape = built_input_shape(layer)
    if input_shape is None:
        raise ValueError(
            f"Layer {layer.name!r} is not built, so its input shape is unknown. "
            "Build it (call it on data or build the model) or pass `input_shape`."
        )
    input_shape = tuple(input_shape)
    if hasattr(layer, "normed_structure"):
        return layer.normed_structure(input_shape)
    rule = _rule(layer)
    if rule is None:
        return None
    return rule[1](layer, input_shape)


def building_layer(max_depth: int = 48):
    """The Keras layer whose ``add_weight`` is running on this thread, or ``None``.

    Keras calls an initializer as ``initializer(shape, dtype)`` with no reference to the layer.
    Variables are created synchronously inside ``Layer.add_weight`` (except inside a stateless
    scope, where creation is deferred), so the layer is found on the call stack. Returns
    ``(layer, weight_name)`` or ``None``.
    """
    import inspect

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
