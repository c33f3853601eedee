"""The normed initialization (Yang et al., IPI 2021), layer-local part, and the seeded,
structure-aware base of the package's initializers (docs/normed.md, docs/structure.md)."""

from __future__ import annotations

import copy
import functools
import math
import numbers
import warnings
from typing import Optional, Sequence

import keras
import ml_dtypes
import numpy as np

from keras_normed import _keras_compat as compat
from keras_normed import structure

__all__ = ["Normed", "EffectiveVarianceScaling", "GAINS", "SeededInitializer",
           "StructuredInitializer", "check_seed", "check_positive", "parse_bool"]

_DISTRIBUTIONS = ("truncated_normal", "normal", "uniform")
_MODES = ("fan_in", "fan_out", "fan_avg")
# Keras's VarianceScaling calls the truncated normal "normal".
_KERAS_DISTRIBUTION = {"truncated_normal": "truncated_normal", "normal": "untruncated_normal",
                       "uniform": "uniform"}
# Largest draw in units of the std: Keras truncates at 2 std of a normal of std std / 0.8796;
# uniform reaches sqrt(3) std; an untruncated normal 10 std with probability ~1e-23 per value.
_DRAW_BOUND = {"truncated_normal": 2.0 / 0.87962566103423978, "normal": 10.0,
               "uniform": math.sqrt(3.0)}

# Gains that keep the forward variance of y = act(T x) constant (He et al. 2015; the values
# follow torch.nn.init.calculate_gain, with "gelu"/"silu" taken as ReLU-like).
GAINS = {"linear": 1.0, "identity": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3.0, "selu": 0.75,
         **dict.fromkeys(("relu", "gelu", "silu", "swish", "elu"), math.sqrt(2.0)),
         "leaky_relu": math.sqrt(2.0 / (1.0 + 0.2**2))}  # Keras's default slope 0.2


def _check_choice(name: str, value, choices) -> str:
    value = value.lower() if isinstance(value, str) else value  # as Keras reads `padding`
    if value not in choices:
        raise ValueError(f"Invalid `{name}` {value!r}; expected one of {choices}.")
    return value


def check_positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number, got {value!r} of type "
                        f"{type(value).__name__}.")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"`{name}` must be a positive finite number, got {value!r}.")
    return value


def check_number(name: str, value: float, low: float, high: float = math.inf, *,
                 integer: bool = False, open_low: bool = False) -> float:
    """``value`` if it is a finite number (an int where ``integer``) within the bounds, else a
    TypeError or ValueError naming ``name``, what it got and the range to pass."""
    what = "an int" if integer else ("a number" if low > -math.inf else "a finite number")
    bound = "" if low == -math.inf else f" {'>' if open_low else '>='} {low}"
    bound += "" if high == math.inf else f" and <= {high}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral if integer
                                                 else numbers.Real):
        raise TypeError(f"`{name}` must be {what}{bound}, got {value!r} ({type(value).__name__}).")
    above_low = value > low if open_low else value >= low
    if not (math.isfinite(value) and above_low and value <= high):
        raise ValueError(f"`{name}` must be {what}{bound}, got {value!r}.")
    return value


def parse_bool(name: str, value) -> bool:
    """``value`` as a bool: a bool, or ``"true"``/``"false"`` in any case (as a hand-edited
    config may hold); anything else is an error, since ``bool("false")`` is True."""
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
    """``seed`` checked: ``None``, an int in the backend's seed range (refused now, not at the
    first draw as in Keras), a ``keras.random.SeedGenerator`` or its config (a dict)."""
    if seed is None or isinstance(seed, (keras.random.SeedGenerator, dict)):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"`seed` must be an int, None or a keras.random.SeedGenerator, got "
                        f"{seed!r} of type {type(seed).__name__}. Pass an int (e.g. seed=1).")
    # int32 backends reinterpret the bits of a uint32 seed.
    low, high = {"int64": (-(2**63), 2**63 - 1), "uint32": (0, 2**32 - 1)}.get(
        compat.random_seed_dtype(), (-(2**31), 2**32 - 1))
    if not low <= int(seed) <= high:
        raise ValueError(
            f"`seed` must be an int in [{low}, {high}] (the seeds the {keras.backend.backend()} "
            f"backend's random ops accept), got {seed}. Pass a smaller int, e.g. seed % 2**32.")
    return int(seed)


class SeededInitializer(compat.RandomInitializer):
    """Keras's ``RandomInitializer`` with a checked seed: an int (the same values at every call
    and in every process), a ``keras.random.SeedGenerator`` (new values at every call) or
    ``None`` (an int drawn once; ``get_config`` keeps None)."""

    def __init__(self, seed=None):
        super().__init__(seed=check_seed(seed))
        if not isinstance(self.seed, (int, keras.random.SeedGenerator)):
            raise TypeError(f"`seed` must deserialize to a keras.random.SeedGenerator, got "
                            f"{type(self.seed).__name__}.")


class StructuredInitializer(SeededInitializer):
    """A seeded initializer drawing ``stddev(shape, layer, weight)`` times a unit-std draw of
    :attr:`distribution`, the std from the fans of the layer's effective operator: the layer is
    handed over (:meth:`normed_bind`) or found on the call stack; a bare call uses the shape's
    fans, as ``keras.initializers`` does (docs/structure.md)."""

    distribution = "truncated_normal"
    mode = "fan_in"

    def fan(self, shape: Sequence[int], layer=None, weight=None) -> float:
        """The effective operator's fan that :attr:`mode` names, at least 1."""
        fan_in, fan_out = structure.kernel_fans(layer, shape, weight)
        return max(1.0, {"fan_in": fan_in, "fan_out": fan_out,
                         "fan_avg": (fan_in + fan_out) / 2.0}[self.mode])

    def stddev(self, shape: Sequence[int], layer=None, weight=None) -> float:
        """The std this initializer gives a kernel of ``shape`` in ``layer``."""
        raise NotImplementedError

    def normed_bind(self, layer, weight: str):
        """A ``(shape, dtype)`` callable for ``layer``'s weight ``weight``, for ``add_weight``."""
        return functools.partial(self, layer=layer, weight=weight)

    def sample(self, shape: Sequence[int], dtype=None, layer=None, weight=None):
        """Draw for ``shape`` with the fans of ``layer`` as given (no search, nothing kept)."""
        shape = tuple(int(s) for s in shape)
        if dtype is not None and not keras.backend.is_float_dtype(
                keras.backend.standardize_dtype(dtype)):
            raise ValueError(f"{type(self).__name__} draws floats: `dtype` must be a float dtype "
                             f"(e.g. 'float32'), got {dtype!r}.")
        std = self.stddev(shape, layer, weight)
        self._check_representable(std, shape, dtype)
        # VarianceScaling's std is sqrt(scale / fan_in of the shape): 1 with scale = that fan_in.
        fan = float(max(1, structure.shape_fans(shape)[0]))
        unit = keras.initializers.VarianceScaling(
            fan, "fan_in", _KERAS_DISTRIBUTION[self.distribution], seed=self.seed)
        return unit(shape, dtype=dtype) * std

    def _check_representable(self, std: float, shape, dtype) -> None:
        pass  # Normed refuses a std its dtype cannot hold

    def __call__(self, shape, dtype=None, layer=None, weight=None):
        if layer is None:
            found = compat.building_layer()
            layer, weight = found or (None, None)
            if found is not None and layer is None and not self.__dict__.get("_warned"):
                self._warned = True
                warnings.warn(
                    f"{type(self).__name__}: variable {weight!r} is initialized after its layer's "
                    "add_weight returned (Keras deferred it: created in a stateless scope, as in "
                    "a subclassed model built by a call), so its fans are read from the shape "
                    f"{tuple(shape)} (exact for Dense and stride-1 Conv kernels only). Build the "
                    "layers first (layer.build(input_shape)) for effective fans.", stacklevel=2)
        return self.sample(shape, dtype, layer, weight)


def _fingerprint(array: np.ndarray) -> tuple:
    flat = array.reshape(-1).astype(np.float64)
    picks = flat[:: max(1, flat.size // 16)][:16]
    return array.shape, np.concatenate([[flat.sum(), np.square(flat).sum()], picks])


@keras.saving.register_keras_serializable(package="keras_normed", name="Normed")
class Normed(StructuredInitializer):
    """Structure-aware initializer: variance from the layer's *effective* operator ``T``.

    Formula: ``std = scale * gain / sqrt(fan)``, ``fan`` from ``T`` rather than the kernel's
    shape (:func:`keras_normed.structure.kernel_fans`): ``fan_in`` = nonzeros in a row of ``T``
    (Dense: ``n_in``; Conv ``k x k`` over ``C`` channels: ``k*k*C``; block-circulant: ``n_in``).
    ``scale`` is 1 until :func:`keras_normed.rescale` sets it. On a bare shape
    ``Normed(seed=s)`` equals ``keras.initializers.HeNormal(seed=s)``.

    Example: ``keras.layers.Dense(64, kernel_initializer="normed")``.

    Args:
        nonlinearity: activation the layer feeds; one of :data:`GAINS`. Sets the gain.
        gain: explicit positive gain; overrides ``nonlinearity``.
        mode: ``"fan_in"`` (He), ``"fan_out"`` or ``"fan_avg"`` (Xavier/Glorot).
        distribution: ``"truncated_normal"``, ``"normal"`` or ``"uniform"``.
        seed: an int, a ``keras.random.SeedGenerator`` or ``None`` (:class:`SeededInitializer`).
        scale: extra factor on the std, set by :func:`keras_normed.rescale`.
        rescaled: set by :func:`keras_normed.rescale`; a bool or ``"true"``/``"false"``.

    Reference: H. Yang, X. Ding, R. Chan, H. Hu, Y. Peng, T. Zeng, "A new initialization method
    based on normed statistical spaces in deep networks", Inverse Probl. Imaging 15(1), 2021.
    """

    def __init__(self, nonlinearity: str = "relu", gain: Optional[float] = None,
                 mode: str = "fan_in", distribution: str = "truncated_normal",
                 seed=None, scale: float = 1.0, rescaled: bool = False):
        if not isinstance(nonlinearity, str):
            raise TypeError(f"`nonlinearity` must be a string, got {nonlinearity!r}.")
        if gain is None and nonlinearity.lower() not in GAINS:
            raise ValueError(f"Unknown `nonlinearity` {nonlinearity!r}; expected one of "
                             f"{sorted(GAINS)}, or pass `gain=` explicitly.")
        self.mode = _check_choice("mode", mode, _MODES)
        self.distribution = _check_choice("distribution", distribution, _DISTRIBUTIONS)
        self.nonlinearity = nonlinearity
        self.gain = None if gain is None else check_positive("gain", gain)
        self.scale = self._check_scale(check_positive("scale", scale))
        self.rescaled = parse_bool("rescaled", rescaled)
        super().__init__(seed=seed)

    def _check_scale(self, scale: float) -> float:
        # The largest draw (fan 1, float64) must be finite.
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
        """The int or ``keras.random.SeedGenerator`` the draws use (copies keep it)."""
        return self.seed

    def stddev(self, shape: Sequence[int], layer=None, weight=None) -> float:
        return self.scale * self.effective_gain / math.sqrt(self.fan(shape, layer, weight))

    def _check_representable(self, std: float, shape, dtype) -> None:
        # Draws that overflow ``dtype`` would be inf, a std below its smallest normal ~zero.
        name = keras.backend.standardize_dtype(dtype or keras.backend.floatx())
        if "float" not in name:
            return  # Keras's random ops refuse non-float dtypes with their own message
        info = ml_dtypes.finfo(name)  # np.finfo, plus bfloat16 (a dependency of Keras)
        largest, tiny = float(info.max), float(info.tiny)
        bound = std * _DRAW_BOUND[self.distribution]
        if bound > largest:
            raise ValueError(
                f"`scale`={self.scale!r} is too large for a {name} kernel of shape {shape}: std "
                f"{std:.4g}, draws up to {bound:.4g}, would be inf (above {largest:.4g}). Pass a "
                f"`scale` below {self.scale * largest / bound:.4g}, or a wider dtype.")
        if std < tiny:
            raise ValueError(
                f"`scale`={self.scale!r} is too small for a {name} kernel of shape {shape}: std "
                f"{std:.4g} is below the smallest normal {name} ({tiny:.4g}), so the weights "
                f"would be ~zero. Pass a `scale` above {self.scale * tiny / std:.4g}.")

    def __call__(self, shape, dtype=None, layer=None, weight=None):
        values = super().__call__(shape, dtype, layer, weight)
        # Kept for `drew`: a SeedGenerator cannot redraw to tell an untouched kernel.
        try:
            array = np.asarray(keras.ops.convert_to_numpy(values))
        except Exception:  # noqa: BLE001 - drawn inside a traced function: nothing to keep
            return values
        self.__dict__.setdefault("_draws", []).append(_fingerprint(array))
        return values

    def drew(self, value) -> Optional[bool]:
        """Whether ``value`` is what this initializer drew in this process (to ``rtol=1e-5``);
        ``None`` when it drew nothing of that shape here (a copy, or a traced draw)."""
        array = np.asarray(keras.ops.convert_to_numpy(value))
        same_shape = [fp for fp in self.__dict__.get("_draws", []) if fp[0] == array.shape]
        if not same_shape:
            return None
        mine = _fingerprint(array)
        return any(np.allclose(fp[1], mine[1], rtol=1e-5, atol=1e-7) for fp in same_shape)

    def rescaled_copy(self, factor: float) -> Normed:
        """A copy with ``scale * factor`` and ``rescaled=True`` drawing the same underlying values:
        ``rescaled_copy(c).sample(shape, layer=l) == c * self.sample(shape, layer=l)``."""
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


@keras.saving.register_keras_serializable(package="keras_normed", name="EffectiveVarianceScaling")
class EffectiveVarianceScaling(StructuredInitializer):
    """Keras's ``VarianceScaling`` (truncated normal) with the fans of the *effective* operator.

    ``std = sqrt(scale / n)``, ``n`` = ``fan_in``, ``fan_out`` or ``(fan_in + fan_out) / 2`` from
    :func:`keras_normed.structure.kernel_fans`: ``scale=1, mode="fan_avg"`` is GlorotNormal and
    ``scale=2, mode="fan_in"`` HeNormal, made fair to shared and circulant kernels.

    Example: ``EffectiveVarianceScaling(2.0, "fan_in", seed=0)`` (He on the effective fans).
    """

    def __init__(self, scale: float = 1.0, mode: str = "fan_avg", seed=None):
        self.mode = _check_choice("mode", mode, _MODES)
        self.scale = check_positive("scale", scale)
        super().__init__(seed=seed)

    def stddev(self, shape: Sequence[int], layer=None, weight=None) -> float:
        return math.sqrt(self.scale / self.fan(shape, layer, weight))

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "mode": self.mode}
