"""keras-normed: structure-aware initialization and block-circulant FFT layers for Keras 3.
Importing it registers every public object with Keras (``"keras_normed>ClassName"``) and the
initializers' aliases, so ``kernel_initializer="normed"`` works in any Keras layer.
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

# `register_keras_serializable` registers "keras_normed>Name" only: the bare aliases (snake_case
# and class names, as keras.initializers.get("HeNormal") works) need their own entries.
_ALIASES = {"normed": Normed, "delta_orthogonal": initializers.DeltaOrthogonal,
            "random_walk": initializers.RandomWalk}
keras.saving.get_custom_objects().update(
    {**_ALIASES, **{cls.__name__: cls for cls in _ALIASES.values()}})
_quiet.end()

__all__ = ["Normed", "rescale", "materialize", "lsuv", "data_dependent_init", "growth_report",
           "callbacks", "diagnostics", "engine", "initializers", "layers", "scaling", "structure",
           "__version__"]
