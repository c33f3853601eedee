"""One seed handling for every initializer of the package, as Keras's own random initializers.

Normed, DeltaOrthogonal and RandomWalk subclass Keras's ``RandomInitializer``: an int seed is
stateless (same values at every call and in every process), a ``keras.random.SeedGenerator``
gives new values at every call, ``None`` draws an int once while ``get_config`` keeps None.
Floats, bools and ints outside the backend's seed range fail at construction, naming ``seed``.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras.src.initializers.random_initializers import RandomInitializer

from keras_normed.initializers import DeltaOrthogonal, Normed, RandomWalk

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (class, extra kwargs, kernel shape)
CASES = {
    "Normed": (Normed, {"nonlinearity": "tanh"}, (6, 5)),
    "DeltaOrthogonal": (DeltaOrthogonal, {"gain": 1.2}, (3, 3, 2, 4)),
    "RandomWalk": (RandomWalk, {"nonlinearity": "relu"}, (6, 5)),
}


def _draw(init, shape):
    return keras.ops.convert_to_numpy(init(shape))


@pytest.mark.parametrize("name", sorted(CASES))
def test_is_a_keras_random_initializer(name):
    cls, kwargs, _ = CASES[name]
    init = cls(seed=3, **kwargs)
    assert isinstance(init, RandomInitializer)
    config = init.get_config()
    assert config["seed"] == 3 and list(config)[0] == "seed"  # {**base_config, **config}
    for key, value in kwargs.items():
        assert config[key] == value


@pytest.mark.parametrize("name", sorted(CASES))
def test_seed_generator_gives_new_values_and_round_trips(name):
    cls, kwargs, shape = CASES[name]
    init = cls(seed=keras.random.SeedGenerator(11), **kwargs)
    first, second = _draw(init, shape), _draw(init, shape)
    assert not np.allclose(first, second)  # the generator advances, as in Keras
    again = keras.initializers.deserialize(keras.initializers.serialize(init))
    assert isinstance(again, cls) and isinstance(again.seed, keras.random.SeedGenerator)
    # A fresh generator with the same seed starts where the original started.
    np.testing.assert_array_equal(_draw(again, shape), first)


@pytest.mark.parametrize("name", sorted(CASES))
def test_unseeded_repeats_and_keeps_none_in_config(name):
    cls, kwargs, shape = CASES[name]
    init = cls(**kwargs)
    np.testing.assert_array_equal(_draw(init, shape), _draw(init, shape))
    assert init.get_config()["seed"] is None
    assert isinstance(init.seed, int)


@pytest.mark.parametrize("name", sorted(CASES))
def test_numpy_int_seed_is_an_int_seed(name):
    cls, kwargs, shape = CASES[name]
    np.testing.assert_array_equal(_draw(cls(seed=np.int64(5), **kwargs), shape),
                                  _draw(cls(seed=5, **kwargs), shape))


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("seed,error,words", [
    (1.7, TypeError, ["`seed`", "1.7", "float"]),
    (2.0, TypeError, ["`seed`", "float"]),
    (True, TypeError, ["`seed`", "bool"]),
    ("3", TypeError, ["`seed`", "str"]),
    (2**70, ValueError, ["`seed`", str(2**70), keras.backend.backend()]),
    (-(2**64), ValueError, ["`seed`"]),
])
def test_bad_seed_fails_at_construction(name, seed, error, words):
    cls, kwargs, _ = CASES[name]
    with pytest.raises(error) as info:
        cls(seed=seed, **kwargs)
    for word in words:
        assert word in str(info.value)


@pytest.mark.tensorflow
def test_largest_int64_seed_draws():
    # Keras's HeNormal(seed=2**70) constructs and fails only when drawing; the package's
    # initializers accept exactly the range the backend draws with.
    assert np.isfinite(_draw(Normed(seed=2**63 - 1), (3, 3))).all()
    assert np.isfinite(_draw(Normed(seed=-5), (3, 3))).all()


SUBPROCESS = r"""
import json, sys
import keras
from keras_normed.initializers import DeltaOrthogonal, Normed, RandomWalk
out = {
    "Normed": Normed("tanh", seed=21)((6, 5)),
    "DeltaOrthogonal": DeltaOrthogonal(gain=1.2, seed=21)((3, 3, 2, 4)),
    "RandomWalk": RandomWalk("relu", seed=21)((6, 5)),
    "layer": keras.layers.Dense(4, kernel_initializer=Normed(seed=21)),
}
out["layer"].build((None, 7))
out["layer"] = out["layer"].kernel
print("RESULT " + json.dumps({k: keras.ops.convert_to_numpy(v).tolist() for k, v in out.items()}))
"""


def test_same_int_seed_same_weights_in_another_process():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND=keras.backend.backend(),
               CUDA_VISIBLE_DEVICES="", PYTHONPATH=ROOT, PYTHONHASHSEED="123")
    proc = subprocess.run([sys.executable, "-c", SUBPROCESS], capture_output=True, text=True,
                          env=env, timeout=300, cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    other = json.loads(lines[-1][len("RESULT "):])
    here = {
        "Normed": _draw(Normed("tanh", seed=21), (6, 5)),
        "DeltaOrthogonal": _draw(DeltaOrthogonal(gain=1.2, seed=21), (3, 3, 2, 4)),
        "RandomWalk": _draw(RandomWalk("relu", seed=21), (6, 5)),
    }
    layer = keras.layers.Dense(4, kernel_initializer=Normed(seed=21))
    layer.build((None, 7))
    here["layer"] = keras.ops.convert_to_numpy(layer.kernel)
    for key, value in here.items():
        np.testing.assert_array_equal(np.asarray(other[key], "float32"), value, err_msg=key)
