"""keras-normed: structure-aware initialization and block-circulant FFT layers for Keras 3.

Importing the package registers every public object as a serializable Keras object
(``"keras_normed>ClassName"``) and the string aliases ``"normed"``, ``"delta_orthogonal"`` and
``"random_walk"`` (and the class names ``"Normed"``, ``"DeltaOrthogonal"``, ``"RandomWalk"``, as
``keras.initializers.get("HeNormal")`` works), so ``kernel_initializer="normed"`` works in any
Keras layer.
"""

# First, before Keras loads TensorFlow: when this process is the `keras-normed` command, keep
# TensorFlow's start-up log lines off the screen (keras_normed/_quiet.py; a no-op otherwise).
from keras_normed import _quiet  # isort: skip

import keras

from keras_normed import (
    callbacks,
    diagnostics,
    engine,
    initializers,
    keras_rules,  # noqa: F401 - registers Keras's layer families in structure
    layers,
    scaling,
    structure,
)
from keras_normed.data_driven import data_dependent_init, lsuv
from keras_normed.diagnostics import growth_report
from keras_normed.initializers import Normed
from keras_normed.materialize import materialize  # the function shadows its module's name
from keras_normed.scaling import rescale

__version__ = "0.1.0"

# `register_keras_serializable` registers "keras_normed>Name" only; the bare aliases need an
# entry of their own in the global custom objects: the snake_case names and the class names.
_ALIASES = {}
for _cls, _snake in ((Normed, "normed"), (initializers.DeltaOrthogonal, "delta_orthogonal"),
                     (initializers.RandomWalk, "random_walk")):
    _ALIASES[_snake] = _cls
    _ALIASES[_cls.__name__] = _cls
del _cls, _snake
keras.saving.get_custom_objects().update(_ALIASES)
_quiet.end()

__all__ = [
    "Normed",
    "rescale",
    "materialize",
    "lsuv",
    "data_dependent_init",
    "growth_report",
    "callbacks",
    "diagnostics",
    "engine",
    "initializers",
    "layers",
    "scaling",
    "structure",
    "__version__",
]
