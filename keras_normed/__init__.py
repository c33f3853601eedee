"""keras-normed: structure-aware initialization and block-circulant FFT layers for Keras 3.

Importing the package registers every public object as a serializable Keras object, and the
string aliases (``"normed"``, ...) with ``keras.initializers.get``.
"""

import keras

from keras_normed import initializers, layers, structure
from keras_normed.initializers import Normed

__version__ = "0.1.0"

# `register_keras_serializable` registers "keras_normed>Name" only; the bare aliases need an
# entry of their own in the global custom objects.
_ALIASES = {
    "normed": Normed,
}
keras.saving.get_custom_objects().update(_ALIASES)

__all__ = ["Normed", "initializers", "layers", "structure", "__version__"]
