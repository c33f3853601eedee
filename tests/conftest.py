import os
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# The paper runners live in the clone's examples/ (not installed): tests import examples.paper.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
# JAX computes in float32 unless x64 is on: the float64 tests (layers checked against numpy to
# 1e-10) then mean float64 as on TensorFlow. Set before anything imports JAX. Models at the
# default float32 are unaffected (Keras's floatx decides their dtype, not JAX's default).
if os.environ["KERAS_BACKEND"] == "jax":
    os.environ.setdefault("JAX_ENABLE_X64", "1")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``tensorflow`` (SavedModel, TFLite, tf.distribute, tf.data, tf.function)
    are skipped when ``KERAS_BACKEND`` names another backend (``make test`` runs the suite a
    second time with ``KERAS_BACKEND=jax``)."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        return
    skip = pytest.mark.skip(reason=f"needs the TensorFlow backend (KERAS_BACKEND={backend})")
    for item in items:
        if item.get_closest_marker("tensorflow") is not None:
            item.add_marker(skip)
