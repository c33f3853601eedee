"""The normed initialization (Yang, Ding, Chan, Hu, Peng, Zeng, IPI 2021), layer-local part.

A layer's kernel ``theta`` acts through an effective linear operator ``y = T(theta) x``. He and
Xavier read the fans from the kernel tensor's shape, which is wrong as soon as parameters are
shared in a non-convolutional way (block-circulant, periodic convolutions, ...). :class:`Normed`
reads the fans of ``T`` itself from :mod:`keras_normed.structure` and draws

    std = scale * gain / sqrt(fan),   fan = fan_in | fan_out | (fan_in + fan_out) / 2 of T

so every layer starts with the He/Xavier-correct variance of its *effective* operator. The
between-layer part of the method (equal growth of parameters measured in the norm
``||theta||_T = ||T(theta)||_F``) needs the whole model and lives in
:func:`keras_normed.rescale`; it stores its per-layer factor in ``scale`` and sets ``rescaled``.
"""

from __future__ import annotations

import math
import numbers
import random
from typing import Optional, Sequence, Tuple

import keras

from keras_normed import structure

__all__ = ["Normed", "GAINS"]

_DISTRIBUTIONS = ("truncated_normal", "normal", "uniform")
_MODES = ("fan_in", "fan_out", "fan_avg")
# Std of a unit normal truncated at +-2 std, as keras.initializers.VarianceScaling uses.
_TRUNCATION_CORRECTION = 0.87962566103423978

# Gains that keep the forward variance of y = act(T x) constant (He et al. 2015; the values
# follow torch.nn.init.calculate_gain, with "gelu"/"silu" taken as ReLU-like).
GAINS = {
    "linear": 1.0,
    "identity": 1.0,
    "sigmoid": 1.0,
    "tanh": 5.0 / 3.0,
    "relu": math.sqrt(2.0),
    "gelu": math.sqrt(2.0),
    "silu": math.sqrt(2.0),
    "swish": math.sqrt(2.0),
    "elu": math.sqrt(2.0),
    "leaky_relu": math.sqrt(2.0 / (1.0 + 0.2**2)),  # Keras's default slope 0.2
    "selu": 0.75,
}


def _check_positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number, got {value!r} of type "
                        f"{type(value).__name__}.")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"`{name}` must be a positive finite number, got {value!r}.")
    return value


@keras.saving.register_keras_serializable(package="keras_normed", name="Normed")
class Normed(keras.initializers.Initializer):
    """Structure-aware initializer: variance from the layer's *effective* operator ``T``.

    Formula: ``std = scale * gain / sqrt(fan)``, ``fan`` taken from ``T(theta)``:

    - ``fan_in`` = nonzeros in a row of ``T`` (Dense: ``n_in``; Conv ``k x k`` over ``C``
      channels: ``k*k*C``; block-circulant ``n_in -> n_out``: ``n_in``; periodic 55x55 conv on one
      channel: 3025), read with :func:`keras_normed.structure.kernel_fans` from the layer being
      built (found by :func:`keras_normed.structure.building_layer`), not from the kernel's shape;
    - ``gain`` from ``nonlinearity`` (``sqrt(2)`` for ReLU: He; ``1`` for linear with
      ``mode="fan_avg"``: Xavier/Glorot), or given explicitly;
    - ``scale`` = 1 until :func:`keras_normed.rescale` sets the layer-consistent factor.

    Called with a bare shape outside a layer (``Normed()((3, 3, 16, 32))``), there is no layer
    to ask, so the fans fall back to the kernel shape exactly as ``keras.initializers.HeNormal``
    computes them (last two axes = input/output channels, leading axes = receptive field).

    Example:

    >>> layer = keras.layers.Dense(64, kernel_initializer="normed")
    >>> init = Normed("tanh", mode="fan_avg", distribution="uniform", seed=1)

    Args:
        nonlinearity: activation the layer feeds; one of :data:`GAINS`. Sets the gain.
        gain: explicit positive gain; overrides ``nonlinearity``.
        mode: ``"fan_in"`` (He, forward variance), ``"fan_out"`` (backward variance) or
            ``"fan_avg"`` (Xavier/Glorot compromise).
        distribution: ``"truncated_normal"`` (truncated at 2 std, std corrected as Keras does),
            ``"normal"`` or ``"uniform"``.
        seed: int for reproducible values (same seed, same weights), or ``None`` (a random int
            is drawn once, so repeated calls of one instance agree; ``get_config`` keeps None).
        scale: extra factor on the std, written by :func:`keras_normed.rescale`.
        rescaled: set by :func:`keras_normed.rescale`; saved in the layer's config, so a saved
            and reloaded model is known to be rescaled already.

    Reference: H. Yang, X. Ding, R. Chan, H. Hu, Y. Peng, T. Zeng, "A new initialization method
    based on normed statistical spaces in deep networks", Inverse Problems and Imaging 15(1),
    147-158, 2021.
    """

    def __init__(self, nonlinearity: str = "relu", gain: Optional[float] = None,
                 mode: str = "fan_in", distribution: str = "truncated_normal",
                 seed: Optional[int] = None, scale: float = 1.0, rescaled: bool = False):
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
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise TypeError(f"`seed` must be an int or None, got {seed!r}.")
        self.nonlinearity = nonlinearity
        self.gain = None if gain is None else _check_positive("gain", gain)
        self.mode = mode
        self.distribution = distribution
        self.seed = None if seed is None else int(seed)
        self.scale = _check_positive("scale", scale)
        self.rescaled = bool(rescaled)
        # As Keras does: None draws a fixed int now, so repeated calls give the same values.
        self._seed = self.seed if self.seed is not None else random.randint(1, 2**31 - 1)

    @property
    def effective_gain(self) -> float:
        """The gain used: ``gain`` if given, else ``GAINS[nonlinearity]``."""
        return self.gain if self.gain is not None else GAINS[self.nonlinearity.lower()]

    def fans(self, shape: Sequence[int], layer=None) -> Tuple[int, int]:
        """``(fan_in, fan_out)`` of the effective operator (shape-based if ``layer`` is None)."""
        return structure.kernel_fans(layer, shape)

    def stddev(self, shape: Sequence[int], layer=None) -> float:
        """The std this initializer gives a kernel of ``shape`` in ``layer``."""
        fan_in, fan_out = self.fans(shape, layer)
        fan = {"fan_in": fan_in, "fan_out": fan_out,
               "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        return self.scale * self.effective_gain / math.sqrt(max(1.0, fan))

    def sample(self, shape: Sequence[int], dtype=None, layer=None):
        """Draw the values for ``shape`` with the fans of ``layer`` given explicitly.

        ``__call__`` is ``sample(shape, dtype, layer=<the layer being built>)``; this lets
        :func:`keras_normed.rescale` regenerate a layer's initial kernel to check that the
        weights were not trained or loaded since.
        """
        shape = tuple(int(s) for s in shape)
        std = self.stddev(shape, layer)
        if self.distribution == "truncated_normal":
            return keras.random.truncated_normal(
                shape, stddev=std / _TRUNCATION_CORRECTION, dtype=dtype, seed=self._seed)
        if self.distribution == "normal":
            return keras.random.normal(shape, stddev=std, dtype=dtype, seed=self._seed)
        limit = math.sqrt(3.0) * std
        return keras.random.uniform(shape, -limit, limit, dtype=dtype, seed=self._seed)

    def __call__(self, shape, dtype=None):
        found = structure.building_layer()
        return self.sample(shape, dtype, layer=found[0] if found is not None else None)

    def get_config(self):
        return {"nonlinearity": self.nonlinearity, "gain": self.gain, "mode": self.mode,
                "distribution": self.distribution, "seed": self.seed, "scale": self.scale,
                "rescaled": self.rescaled}
