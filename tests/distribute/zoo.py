"""Every public object of keras_normed, gathered into small models for the deployment tests.

Used by tests/test_saving.py, test_export.py, test_distribute.py and their subprocess scripts
(imported by path: ``sys.path.insert(0, <this folder>)``). Objects are looked up by name, so an
object that has not landed yet is reported by :func:`missing` and left out of the models; once
it exists it is used automatically (and ``test_every_public_object_is_covered`` fails if a public
object appears that this module does not know).
"""

from __future__ import annotations

import importlib

import keras
import numpy as np

# Public objects this module knows how to put into a model (or to round-trip on its own).
INITIALIZERS = ("Normed", "DeltaOrthogonal", "RandomWalk", "EffectiveVarianceScaling")
ALIASES = ("normed", "delta_orthogonal", "random_walk")
LAYERS = ("CirculantDense", "CirculantConv2D", "PeriodicConv2D", "WeightNormalization")
FUNCTIONS = ("rescale", "lsuv", "data_dependent_init", "arpit_init")
CALLBACKS = ("NormedScaling", "LSUVInit", "GrowthMonitor")
KNOWN = INITIALIZERS + LAYERS + FUNCTIONS + CALLBACKS

# Public names that are not Keras objects to save (helpers, constants, modules, reports).
NOT_SAVED = {
    "initializers", "layers", "structure", "callbacks", "ops", "serving",
    "__version__", "GAINS", "CriticalPoint", "critical_sigma_w", "tanh_critical_point",
    "random_walk_gain", "data_driven", "engine", "scaling", "diagnostics", "cli",
    "growth_report", "materialize",
}

_MODULES = ("keras_normed", "keras_normed.layers", "keras_normed.initializers",
            "keras_normed.callbacks")

INPUT_SHAPE = (8, 8, 2)
N_CLASSES = 10


def find(name: str):
    """The public object ``name`` from the package's modules, or None if it does not exist."""
    for module_name in _MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if hasattr(module, name):
            return getattr(module, name)
    return None


def missing(names=KNOWN):
    return [n for n in names if find(n) is None]


def public_names():
    """Every name in the ``__all__`` of the package's public modules."""
    names = set()
    for module_name in _MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        names.update(getattr(module, "__all__", ()))
    return names


def initializer_instances(seed: int = 0):
    """One configured instance of every existing initializer class, by class name."""
    out = {}
    if find("Normed"):
        out["Normed"] = find("Normed")("tanh", mode="fan_avg", distribution="uniform",
                                       seed=seed, scale=1.5)
    if find("DeltaOrthogonal"):
        out["DeltaOrthogonal"] = find("DeltaOrthogonal")(gain=1.2, seed=seed + 1)
    if find("RandomWalk"):
        out["RandomWalk"] = find("RandomWalk")("relu", seed=seed + 2)
    if find("EffectiveVarianceScaling"):
        out["EffectiveVarianceScaling"] = find("EffectiveVarianceScaling")(2.0, "fan_in",
                                                                           seed=seed + 3)
    return out


def _init(name: str, seed: int, fallback="normed", **kwargs):
    cls = find(name)
    return cls(seed=seed, **kwargs) if cls is not None else fallback


def build_zoo(seed: int = 0, dtype=None, input_name: str = "pixels") -> keras.Model:
    """A functional model holding every existing layer and initializer of the package.

    Every initializer class is used with a seed, and every string alias once. Ends in a float32
    ``Dense`` so that mixed-precision variants still export float32 logits.
    """
    k = keras.layers
    inp = keras.Input(INPUT_SHAPE, name=input_name)
    x = k.Conv2D(4, 3, padding="same", activation="tanh", dtype=dtype,
                 kernel_initializer=_init("DeltaOrthogonal", seed), name="conv_delta")(inp)
    x = k.Conv2D(4, 3, padding="same", activation="relu", dtype=dtype,
                 kernel_initializer=_alias("delta_orthogonal"), name="conv_alias")(x)
    if find("PeriodicConv2D"):
        x = find("PeriodicConv2D")(4, 3, kernel_initializer=_init("Normed", seed + 1),
                                   activation="relu", dtype=dtype, name="periodic")(x)
    if find("CirculantConv2D"):
        x = find("CirculantConv2D")(8, 3, block_size=4, padding="same", activation="relu",
                                    kernel_initializer="normed", dtype=dtype,
                                    name="circulant_conv")(x)
    x = k.Flatten(name="flatten")(x)
    if find("CirculantDense"):
        x = find("CirculantDense")(32, block_size=8, activation="relu", dtype=dtype,
                                   kernel_initializer=_init("Normed", seed + 2),
                                   name="circulant_dense")(x)
    x = k.Dense(16, activation="relu", dtype=dtype, name="dense_walk",
                kernel_initializer=_init("RandomWalk", seed + 3, nonlinearity="relu"))(x)
    x = k.Dense(16, activation="relu", dtype=dtype, name="dense_walk_alias",
                kernel_initializer=_alias("random_walk"))(x)
    if find("WeightNormalization"):
        x = find("WeightNormalization")(
            k.Dense(16, activation="relu", kernel_initializer="normed", dtype=dtype,
                    name="weight_norm_inner"),
            dtype=dtype, name="weight_norm")(x)
    out = k.Dense(N_CLASSES, kernel_initializer=_init("Normed", seed + 4, nonlinearity="linear"),
                  dtype="float32", name="logits")(x)
    return keras.Model(inp, out, name="zoo")


def _alias(name: str):
    return name if name in keras.saving.get_custom_objects() else "glorot_uniform"


def zoo_layer_names(model: keras.Model):
    """Class names of the package's layers present in ``model``."""
    return sorted({type(layer).__name__ for layer in model.layers
                   if type(layer).__module__.startswith("keras_normed")})


def data(n: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n,) + INPUT_SHAPE).astype("float32")
    y = rng.integers(0, N_CLASSES, size=(n,)).astype("int32")
    return x, y
