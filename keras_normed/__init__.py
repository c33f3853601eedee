"""keras-normed: structure-aware initialization and block-circulant FFT layers for Keras 3.

Importing the package registers every public object as a serializable Keras object
(``"keras_normed>ClassName"``) and the string aliases ``"normed"``, ``"delta_orthogonal"`` and
``"random_walk"``, so ``kernel_initializer="normed"`` works in any Keras layer.
"""

# First, before Keras loads TensorFlow: when this process is the `keras-normed` command, keep
# TensorFlow's start-up log lines off the screen (keras_normed/_quiet.py; a no-op otherwise).
from keras_normed import _quiet  # isort: skip

import keras

from keras_normed import callbacks, diagnostics, initializers, layers, scaling, structure
from keras_normed.data_driven import data_dependent_init, lsuv
from keras_normed.diagnostics import growth_report
from keras_normed.initializers import Normed
from keras_normed.scaling import rescale

__version__ = "0.1.0"

# `register_keras_serializable` registers "keras_normed>Name" only; the bare aliases need an
# entry of their own in the global custom objects.
_ALIASES = {
    "normed": Normed,
    "delta_orthogonal": initializers.DeltaOrthogonal,
    "random_walk": initializers.RandomWalk,
}
keras.saving.get_custom_objects().update(_ALIASES)
_quiet.end()

__all__ = [
    "Normed",
    "rescale",
    "lsuv",
    "data_dependent_init",
    "growth_report",
    "callbacks",
    "diagnostics",
    "initializers",
    "layers",
    "scaling",
    "structure",
    "__version__",
]
