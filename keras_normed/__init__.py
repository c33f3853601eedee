"""keras-normed: structure-aware initialization and block-circulant FFT layers for Keras 3.

Importing the package registers every public object as a serializable Keras object, and the
string aliases (``"normed"``, ...) with ``keras.initializers.get``.
"""

import keras

from keras_normed import initializers, layers, structure
from keras_normed.data_driven import data_dependent_init, lsuv
from keras_normed.initializers import Normed

__version__ = "0.1.0"

# `register_keras_serializable` registers "keras_normed>Name" only; the bare aliases need an
# entry of their own in the global custom objects.
_ALIASES = {
    "normed": Normed,
    "delta_orthogonal": initializers.DeltaOrthogonal,
    "random_walk": initializers.RandomWalk,
}
keras.saving.get_custom_objects().update(_ALIASES)

__all__ = ["Normed", "initializers", "layers", "structure", "__version__"]
__all__ += ["lsuv", "data_dependent_init"]
from keras_normed import diagnostics, scaling  # noqa: E402
from keras_normed.scaling import rescale  # noqa: E402

__all__ += ["rescale", "scaling", "diagnostics"]
