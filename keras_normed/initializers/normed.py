"""The normed initialization (Yang, Ding, Chan, Hu, Peng, Zeng, IPI 2021), layer-local part, and
the seeded, structure-aware base the package's initializers share: the variance comes from the
fans of the layer's *effective* operator ``T`` (:mod:`keras_normed.structure`), which the
package's layers hand over and Keras's own layers leave to be found (see docs/normed.md).
"""

from __future__ import annotations

import copy
import functools
import math
import numbers
import warnings
from typing import Optional, Sequence, Tuple

import keras
import ml_dtypes
import numpy as np

from keras_normed import _keras_compat as compat
from keras_normed import structure

__all__ = ["Normed", "EffectiveVarianceScaling", "GAINS", "SeededInitializer",
           "StructuredInitializer", "check_seed", "check_positive", "parse_bool"]

_DISTRIBUTIONS = ("truncated_normal", "normal", "uniform")
_MODES = ("fan_in", "fan_out", "fan_avg")
# Normed's distribution -> keras.initializers.VarianceScaling's name for it ("normal" means
# truncated there).
_KERAS_DISTRIBUTION = {"truncated_normal": "truncated_normal", "normal": "untruncated_normal",
                       "uniform": "uniform"}
# Largest draw in units of the std: truncated at 2 std of the untruncated normal whose std is
# std / 0.8796 (Keras's truncation correction); uniform on [-sqrt(3) std, sqrt(3) std]; an
# untruncated normal reaches 10 std with probability ~1e-23 per value.
_DRAW_BOUND = {"truncated_normal": 2.0 / 0.87962566103423978, "normal": 10.0,
               "uniform": math.sqrt(3.0)}

# Gains that keep the forward variance of y = act(T x) constant (He et al. 2015; the values
# follow torch.nn.init.calculate_gain, with "gelu"/"silu" taken as ReLU-like).
GAINS = {"linear": 1.0, "identity": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3.0,
         **dict.fromkeys(("relu", "gelu", "silu", "swish", "elu"), math.sqrt(2.0)),
         "leaky_relu": math.sqrt(2.0 / (1.0 + 0.2**2)),  # Keras's default slope 0.2
         "selu": 0.75}


def check_positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number, got {value!r} of type "
                        f"{type(value).__name__}.")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"`{name}` must be a positive finite number, got {value!r}.")
    return value


def parse_bool(name: str, value) -> bool:
    """``value`` as a bool: a bool (Python or NumPy), or the string ``"true"``/``"false"`` in
    any case (as a hand-edited config or a .keras file may hold). Anything else is an error:
    ``bool("false")`` is True, which would silently flip the meaning."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if not isinstance(value, str):
        raise TypeError(f"`{name}` must be a bool (True or False), got {value!r} of type "
                        f"{type(value).__name__}.")
    if value.strip().lower() not in ("true", "false"):
        raise ValueError(f"`{name}` must be a bool or the string 'true' or 'false', got "
                         f"{value!r}. Pass {name}=True or {name}=False.")
    return value.strip().lower() == "true"


def check_seed(seed):
    """Validate a ``seed`` argument: ``None``, an int in the backend's seed range, a
    ``keras.random.SeedGenerator``, or a serialized SeedGenerator (a dict, from a config).

    Unlike ``keras.initializers.HeNormal``, which accepts ``seed=2**70`` and fails only when
    drawing ("out-of-range integer"), an out-of-range int fails here, at construction.
    """
    if seed is None or isinstance(seed, (keras.random.SeedGenerator, dict)):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            f"`seed` must be an int, None or a keras.random.SeedGenerator, got {seed!r} of type "
            f"{type(seed).__name__}. Pass an int (e.g. seed=1) for reproducible values.")
    # int32 backends reinterpret the bits of a uint32 seed.
    low, high = {"int64": (-(2**63), 2**63 - 1), "uint32": (0, 2**32 - 1)}.get(
        compat.random_seed_dtype(), (-(2**31), 2**32 - 1))
    if not low <= int(seed) <= high:
        raise ValueError(
            f"`seed` must be an int in [{low}, {high}] (the seeds the {keras.backend.backend()} "
            f"backend's random ops accept), got {seed}. Pass a smaller int, e.g. seed % 2**32.")
    return int(seed)


class SeededInitializer(compat.RandomInitializer):
    """Seed handling shared by the package's initializers: Keras's ``RandomInitializer``.

    ``seed`` is an int (stateless: every call returns the same values, in every process), a
    ``keras.random.SeedGenerator`` (stateful: every call advances it and returns new values), or
    ``None`` (an int is drawn once at construction, so repeated calls agree, while
    ``get_config()["seed"]`` stays None). The value to draw with is ``self.seed`` (an int or the
    generator), as in Keras; :func:`check_seed` rejects floats, bools and out-of-range ints.
    """

    def __init__(self, seed=None):
        super().__init__(seed=check_seed(seed))
        if not isinstance(self.seed, (int, keras.random.SeedGenerator)):
            raise TypeError(f"`seed` must deserialize to a keras.random.SeedGenerator, got "
                            f"{type(self.seed).__name__}.")


class StructuredInitializer(SeededInitializer):
    """A seeded initializer whose std comes from the fans of the layer's effective operator:
    it draws ``stddev(shape, layer, weight) * u``, ``u`` the unit-std draw of
    ``keras.initializers.VarianceScaling`` for :attr:`distribution`, seeded by ``self.seed``.

    The package's layers hand the layer and the weight's name over (they pass ``add_weight``
    :meth:`normed_bind`'s callable); for Keras's own layers they are found on the call stack
    (also for variables whose initialization Keras deferred, as in a subclassed model built by
    its call); a bare call uses the shape's fans, as ``keras.initializers`` does, and so does a
    deferred variable whose layer is not found, with a warning once per initializer
    (docs/structure.md).
    """

    distribution = "truncated_normal"
    mode = "fan_in"

    def fans(self, shape: Sequence[int], layer=None, weight=None) -> Tuple[int, int]:
        """``(fan_in, fan_out)`` of the effective operator (shape-based if ``layer`` is None)."""
        return structure.kernel_fans(layer, shape, weight)

    def fan(self, shape: Sequence[int], layer=None, weight=None) -> float:
        """The fan :attr:`mode` names, at least 1."""
        fan_in, fan_out = self.fans(shape, layer, weight)
        return max(1.0, {"fan_in": fan_in, "fan_out": fan_out,
                         "fan_avg": (fan_in + fan_out) / 2.0}[self.mode])

    def stddev(self, shape: Sequence[int], layer=None, weight=None) -> float:
        """The std this initializer gives a kernel of ``shape`` in ``layer``."""
        raise NotImplementedError

    def normed_bind(self, layer, weight: str):
        """This initializer for ``layer``'s weight ``weight``: a ``(shape, dtype)`` callable
        that hands the layer over (what the package's layers pass to ``add_weight``)."""
        return functools.partial(self, layer=layer, weight=weight)

    def sample(self, shape: Sequence[int], dtype=None, layer=None, weight=None):
        """Draw the values for ``shape`` with the fans of ``layer`` given explicitly (no
        search for the layer, nothing remembered)."""
        shape = tuple(int(s) for s in shape)
        std = self.stddev(shape, layer, weight)
        self._check_representable(std, shape, dtype)
        # VarianceScaling's std is sqrt(scale / fan_in) with fan_in read from the shape: with
        # scale = that fan_in it is exactly 1 (every Keras 3 version).
        fan = float(max(1, structure.shape_fans(shape)[0]))
        unit = keras.initializers.VarianceScaling(
            fan, "fan_in", _KERAS_DISTRIBUTION[self.distribution], seed=self.seed)
        return unit(shape, dtype=dtype) * std

    def _check_representable(self, std: float, shape, dtype) -> None:
        """A hook: :class:`Normed` refuses a std its dtype cannot hold."""

    def __call__(self, shape, dtype=None, layer=None, weight=None):
        if layer is None:
            found = compat.building_layer()
            layer, weight = found or (None, None)
            if found is not None and layer is None and not self.__dict__.get("_warned"):
                self._warned = True
                warnings.warn(
                    f"{type(self).__name__}: variable {weight!r} is initialized after its "
                    "layer's add_weight returned (Keras deferred it: created in a stateless "
                    "scope, as when a subclassed model is built by a call), so its layer is "
                    f"unknown and its fans are read from the shape {tuple(shape)}, as "
                    "keras.initializers does (exact for Dense and stride-1 Conv kernels only). "
                    "Build the layers first (layer.build(input_shape)) for the fans of their "
                    "effective operator.", stacklevel=2)
        return self.sample(shape, dtype, layer, weight)


def _fingerprint(array: np.ndarray) -> tuple:
    flat = array.reshape(-1).astype(np.float64)
    picks = flat[:: max(1, flat.size // 16)][:16]
    return array.shape, np.concatenate([[flat.sum(), np.square(flat).sum()], picks])


@keras.saving.register_keras_serializable(package="keras_normed", name="Normed")
class Normed(StructuredInitializer):
    """Structure-aware initializer: variance from the layer's *effective* operator ``T``.

    Formula: ``std = scale * gain / sqrt(fan)``, ``fan`` taken from ``T(theta)``:
    ``fan_in`` = nonzeros in a row of ``T`` (Dense: ``n_in``; Conv ``k x k`` over ``C``
    channels: ``k*k*C``; block-circulant ``n_in -> n_out``: ``n_in``; periodic 55x55 conv on one
    channel: 3025), from :func:`keras_normed.structure.kernel_fans` of the kernel's layer (see
    :class:`StructuredInitializer`), not from the kernel's shape; ``gain`` from
    ``nonlinearity`` (``sqrt(2)`` for ReLU: He; ``1`` for linear with ``mode="fan_avg"``:
    Xavier/Glorot); ``scale`` = 1 until :func:`keras_normed.rescale` sets the layer-consistent
    factor. On a bare shape ``Normed(seed=s)`` equals ``keras.initializers.HeNormal(seed=s)``.

    Example: ``keras.layers.Dense(64, kernel_initializer="normed")``, or
    ``Normed("tanh", mode="fan_avg", distribution="uniform", seed=1)``.

    Args:
        nonlinearity: activation the layer feeds; one of :data:`GAINS`. Sets the gain.
        gain: explicit positive gain; overrides ``nonlinearity``.
        mode: ``"fan_in"`` (He, forward variance), ``"fan_out"`` (backward variance) or
            ``"fan_avg"`` (Xavier/Glorot compromise).
        distribution: ``"truncated_normal"`` (truncated at 2 std, std corrected as Keras does),
            ``"normal"`` or ``"uniform"``.
        seed: an int (reproducible), a ``keras.random.SeedGenerator`` (new values at every
            call) or ``None`` (an int drawn once; ``get_config`` keeps None).
        scale: extra factor on the std, written by :func:`keras_normed.rescale`; draws that
            would overflow or underflow the kernel's dtype are an error.
        rescaled: set by :func:`keras_normed.rescale` and saved in the config; a bool, or the
            string ``"true"``/``"false"`` (any case).

    Reference: H. Yang, X. Ding, R. Chan, H. Hu, Y. Peng, T. Zeng, "A new initialization method
    based on normed statistical spaces in deep networks", Inverse Problems and Imaging 15(1),
    147-158, 2021.
    """

    def __init__(self, nonlinearity: str = "relu", gain: Optional[float] = None,
                 mode: str = "fan_in", distribution: str = "truncated_normal",
                 seed=None, scale: float = 1.0, rescaled: bool = False):
        if not isinstance(nonlinearity, str):
            raise TypeError(f"`nonlinearity` must be a string, got {nonlinearity!r}.")
        if gain is None and nonlinearity.lower() not in GAINS:
            raise ValueError(f"Unknown `nonlinearity` {nonlinearity!r}; expected one of "
                             f"{sorted(GAINS)}, or pass `gain=` explicitly.")
        if mode not in _MODES:
            raise ValueError(f"Invalid `mode` {mode!r}; expected one of {_MODES}.")
        if distribution not in _DISTRIBUTIONS:
            raise ValueError(
                f"Invalid `distribution` {distribution!r}; expected one of {_DISTRIBUTIONS}.")
        self.nonlinearity = nonlinearity
        self.gain = None if gain is None else check_positive("gain", gain)
        self.mode = mode
        self.distribution = distribution
        self.scale = self._check_scale(check_positive("scale", scale))
        self.rescaled = parse_bool("rescaled", rescaled)
        super().__init__(seed=seed)

    def _check_scale(self, scale: float) -> float:
        """``scale`` such that the largest draw (fan 1, float64) is finite."""
        per_unit = self.effective_gain * _DRAW_BOUND[self.distribution]
        if not math.isfinite(scale * per_unit):
            raise ValueError(
                f"`scale`={scale!r} is too large: with gain {self.effective_gain:.4g} the "
                f"{self.distribution} draws would reach {scale * per_unit!r}. Pass a `scale` "
                f"below {float(np.finfo('float64').max) / per_unit:.3g} (far lower for a "
                "float32 kernel, whose largest value is 3.4e38).")
        return scale

    @property
    def effective_gain(self) -> float:
        """The gain used: ``gain`` if given, else ``GAINS[nonlinearity]``."""
        return self.gain if self.gain is not None else GAINS[self.nonlinearity.lower()]

    @property
    def draw_seed(self):
        """What the draws are seeded with: the int (drawn at construction when ``seed=None``)
        or the ``keras.random.SeedGenerator``. :meth:`rescaled_copy` keeps it."""
        return self.seed

    def stddev(self, shape: Sequence[int], layer=None, weight=None) -> float:
        """The std this initializer gives a kernel of ``shape`` in ``layer``."""
        return self.scale * self.effective_gain / math.sqrt(self.fan(shape, layer, weight))

    def _check_representable(self, std: float, shape, dtype) -> None:
        """Refuse a std whose draws overflow ``dtype`` (inf weights) or underflow it (zeros)."""
        name = keras.backend.standardize_dtype(dtype or keras.backend.floatx())
        if "float" not in name:
            return  # Keras's random ops refuse non-float dtypes with their own message
        info = ml_dtypes.finfo(name)  # np.finfo, plus bfloat16 (a dependency of Keras)
        bound = std * _DRAW_BOUND[self.distribution]
        if bound > float(info.max):
            raise ValueError(
                f"`scale`={self.scale!r} is too large for a {name} kernel of shape {shape}: "
                f"std {std:.4g}, draws up to {bound:.4g}, above the largest {name} "
                f"({float(info.max):.4g}); they would be inf. Pass a `scale` below "
                f"{self.scale * float(info.max) / bound:.4g}, or a wider dtype.")
        if std < float(info.tiny):
            raise ValueError(
                f"`scale`={self.scale!r} is too small for a {name} kernel of shape {shape}: "
                f"std {std:.4g} is below the smallest normal {name} ({float(info.tiny):.4g}), "
                f"so the weights would be (nearly) zero. Pass a `scale` above "
                f"{self.scale * float(info.tiny) / std:.4g}.")

    def __call__(self, shape, dtype=None, layer=None, weight=None):
        values = super().__call__(shape, dtype, layer, weight)
        # What was drawn, so that `drew` can later tell an untouched kernel from a trained,
        # assigned or loaded one without drawing again (a SeedGenerator cannot redraw).
        try:
            array = np.asarray(keras.ops.convert_to_numpy(values))
        except Exception:  # noqa: BLE001 - drawn inside a traced function: nothing to keep
            return values
        self.__dict__.setdefault("_draws", []).append(_fingerprint(array))
        return values

    def drew(self, value) -> Optional[bool]:
        """Whether ``value`` is what this initializer drew in this process for a kernel of its
        shape: ``True``/``False``, or ``None`` when it drew nothing of that shape here (a
        copy made by :meth:`rescaled_copy` or :meth:`from_config`, or a draw inside a traced
        function). Compared on a fingerprint (sums and sampled entries), to ``rtol=1e-5``."""
        array = np.asarray(keras.ops.convert_to_numpy(value))
        same_shape = [fp for fp in self.__dict__.get("_draws", []) if fp[0] == array.shape]
        if not same_shape:
            return None
        mine = _fingerprint(array)
        return any(np.allclose(fp[1], mine[1], rtol=1e-5, atol=1e-7) for fp in same_shape)

    def rescaled_copy(self, factor: float) -> Normed:
        """A copy with ``scale = self.scale * factor`` and ``rescaled=True`` that draws the
        same underlying values (it keeps :attr:`draw_seed`): ``rescaled_copy(c).sample(shape,
        layer=l)`` equals ``c * self.sample(shape, layer=l)``. Used by :func:`keras_normed.rescale`.
        """
        factor = check_positive("factor", factor)
        new = copy.copy(self)  # shares the seed (int or generator) and the config's seed
        try:
            new.scale = self._check_scale(check_positive("scale", self.scale * factor))
        except ValueError as err:
            raise ValueError(f"`factor`={factor!r} times scale {self.scale!r}: {err}") from None
        new.rescaled = True
        new._draws = []  # the copy's draws are `factor` times these
        return new

    def get_config(self):
        return {**super().get_config(), "nonlinearity": self.nonlinearity, "gain": self.gain,
                "mode": self.mode, "distribution": self.distribution, "scale": self.scale,
                "rescaled": self.rescaled}


@keras.saving.register_keras_serializable(package="keras_normed",
                                          name="EffectiveVarianceScaling")
class EffectiveVarianceScaling(StructuredInitializer):
    """Keras's ``VarianceScaling`` (truncated normal) with the fans of the *effective* operator.

    ``std = sqrt(scale / n)``, ``n`` = ``fan_in``, ``fan_out`` or ``(fan_in + fan_out) / 2`` of
    the layer's effective matrix from :func:`keras_normed.structure.kernel_fans` (shape-based
    outside a layer, where it equals ``keras.initializers.VarianceScaling``). ``scale=1,
    mode="fan_avg"`` is GlorotNormal and ``scale=2, mode="fan_in"`` HeNormal, both made fair to
    shared and circulant kernels (the baselines of the paper's comparison). Seeds as
    :class:`SeededInitializer`: give each layer its own int seed.

    Example: ``EffectiveVarianceScaling(2.0, "fan_in", seed=0)`` (He on the effective fans).
    """

    def __init__(self, scale: float = 1.0, mode: str = "fan_avg", seed=None):
        if mode not in _MODES:
            raise ValueError(f"Invalid `mode` {mode!r}; expected one of {_MODES}.")
        self.scale = check_positive("scale", scale)
        self.mode = mode
        super().__init__(seed=seed)

    def stddev(self, shape: Sequence[int], layer=None, weight=None) -> float:
        return math.sqrt(self.scale / self.fan(shape, layer, weight))

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "mode": self.mode}
