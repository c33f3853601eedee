"""LSUV (Mishkin & Matas 2016): unit output variance, orthonormal start, errors, callback."""

import keras
import numpy as np
import pytest

import keras_normed
from keras_normed.callbacks import LSUVInit
from keras_normed.layers import WeightNormalization

RNG = np.random.default_rng(0)


def _cnn(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((8, 8, 2)),
        keras.layers.Conv2D(6, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(6, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(16, activation="relu"),
        WeightNormalization(keras.layers.Dense(12, activation="relu")),
        keras.layers.Dense(5),
    ])


def _weights(model):
    return [w.copy() for w in model.get_weights()]


def _preactivations(model, x):
    """Each kernel layer's pre-activation, recomputed in numpy from its input and weights."""
    out = {}
    h = x.astype(np.float64)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            k, b = (w.astype(np.float64) for w in layer.get_weights())
            pad = np.pad(h, ((0, 0), (1, 1), (1, 1), (0, 0)))
            patches = np.stack([pad[:, i:i + h.shape[1], j:j + h.shape[2], :]
                                for i in range(3) for j in range(3)], axis=3)
            z = np.einsum("nhwpc,pco->nhwo", patches, k.reshape(9, k.shape[2], -1)) + b
            out[layer.name] = z
            h = np.maximum(z, 0)
        elif isinstance(layer, (keras.layers.Dense, WeightNormalization)):
            if isinstance(layer, WeightNormalization):
                k = _np(layer.normalized_kernel()).astype(np.float64)
                b = _np(layer.layer.bias).astype(np.float64)
                relu = True
            else:
                k, b = (w.astype(np.float64) for w in layer.get_weights())
                relu = layer.activation is keras.activations.relu
            z = h @ k + b
            out[layer.name] = z
            h = np.maximum(z, 0) if relu else z
        elif isinstance(layer, keras.layers.MaxPooling2D):
            n, hh, ww, c = h.shape
            h = h.reshape(n, hh // 2, 2, ww // 2, 2, c).max(axis=(2, 4))
        elif isinstance(layer, keras.layers.Flatten):
            h = h.reshape(len(h), -1)
    return out


def test_every_layer_has_unit_variance_within_tol():
    model = _cnn()
    x = RNG.uniform(size=(64, 8, 8, 2)).astype("float32")
    report = keras_normed.lsuv(model, x, tol=0.05, seed=0)
    assert report.converged and len(report.layers) == 5
    for name, z in _preactivations(model, x).items():
        assert abs(z.var() - 1.0) < 0.05, (name, z.var())
    # g of the WeightNormalization is what lsuv set there: not reported as left alone
    assert not [text for text in report.summary["left"] if ".g:" in text]
    dd = keras_normed.data_dependent_init(_cnn(), x, seed=0)
    assert not [text for text in dd.summary["left"] if ".g:" in text]
    for layer in model.layers:  # biases are zero
        bias = getattr(getattr(layer, "layer", layer), "bias", None)
        if bias is not None:
            np.testing.assert_array_equal(_np(bias), 0)


def test_orthonormal_start_is_only_rescaled():
    model = _cnn()
    x = RNG.uniform(size=(64, 8, 8, 2)).astype("float32")
    keras_normed.lsuv(model, x, seed=0)
    k = _np(model.layers[4].kernel).astype(np.float64)  # Dense 96 -> 16
    gram = k.T @ k
    # Orthonormal columns times one scalar: W^T W = c I.
    np.testing.assert_allclose(gram, gram[0, 0] * np.eye(16), atol=1e-5 * gram[0, 0])
    wn = model.layers[5]
    v = _np(wn.layer.kernel)
    np.testing.assert_allclose(v.T @ v, np.eye(12), atol=1e-5)  # v orthonormal, g rescaled
    assert np.allclose(_np(wn.g), _np(wn.g)[0])


def test_same_seed_same_weights():
    x = RNG.uniform(size=(32, 8, 8, 2)).astype("float32")
    a, b, c = _cnn(0), _cnn(1), _cnn(2)
    keras_normed.lsuv(a, x, seed=3)
    keras_normed.lsuv(b, x, seed=3)
    keras_normed.lsuv(c, x, seed=4)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-6, atol=1e-7)
    assert not np.allclose(_np(a.layers[0].kernel), _np(c.layers[0].kernel))


@pytest.mark.parametrize("batch, message", [
    (np.zeros((0, 8, 8, 2), "float32"), "empty"),
    (np.ones((1, 8, 8, 2), "float32"), "batch of one"),
    (np.full((4, 8, 8, 2), np.nan, "float32"), "NaN or inf"),
    (np.zeros((4, 8, 8, 2), "float32"), "zero variance"),
    (np.ones((4, 8, 8, 2), "float32"), "zero variance"),  # only units and borders differ
    (np.repeat(RNG.uniform(size=(1, 8, 8, 2)).astype("float32"), 4, axis=0), "identical"),
])
def test_bad_batches_raise_and_leave_weights_unchanged(batch, message):
    model = _cnn()
    before = _weights(model)
    with pytest.raises(ValueError, match=message):
        keras_normed.lsuv(model, batch, seed=0)
    for w0, w1 in zip(before, model.get_weights()):
        np.testing.assert_array_equal(w0, w1)


def test_argument_errors():
    model = _cnn()
    x = RNG.uniform(size=(8, 8, 8, 2)).astype("float32")
    with pytest.raises(ValueError, match="tol"):
        keras_normed.lsuv(model, x, tol=0)
    with pytest.raises(ValueError, match="max_iter"):
        keras_normed.lsuv(model, x, max_iter=0)
    with pytest.raises(TypeError, match="keras.Model"):
        keras_normed.lsuv(model.layers[0], x)


def test_callback_runs_once_at_train_begin():
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3)])
    model.compile("sgd", "mse")
    x = RNG.normal(size=(32, 6)).astype("float32")
    y = RNG.normal(size=(32, 3)).astype("float32")
    callback = LSUVInit(x, seed=0)
    model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[callback])
    assert callback.report is not None and callback.report.converged
    first = callback.report
    weights = _weights(model)
    model.fit(x, y, epochs=0, verbose=0, callbacks=[callback])
    assert callback.report is first
    for w0, w1 in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(w0, w1)


def test_callback_leaves_a_trained_model_alone(tmp_path):
    """A fit resumed from a file (or restored by BackupAndRestore) starts with optimizer steps
    taken: LSUVInit set the trained weights again (loss 0.28 -> 1.06, no word); now it warns
    and leaves them. A bad seed is said at construction, not at fit."""
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3)])
    model.compile("sgd", "mse")
    x = RNG.normal(size=(32, 6)).astype("float32")
    y = RNG.normal(size=(32, 3)).astype("float32")
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[LSUVInit(x, seed=0)])
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    callback = LSUVInit(x, seed=0)
    callback.set_model(loaded)
    with pytest.warns(UserWarning, match="already trained \\(4 optimizer steps\\)"):
        callback.on_train_begin()
    assert not callback.report.applied
    for w0, w1 in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(w0, w1)
    with pytest.raises(ValueError, match="`seed`"):
        LSUVInit(x, seed=-3)


@pytest.mark.parametrize("method", ["lsuv", "data_dependent_init"])
def test_no_seed_follows_the_global_seed(method):
    """seed=None draws from what keras.utils.set_random_seed seeds, as Keras's unseeded
    initializers do (two runs under one global seed gave different weights)."""
    x = RNG.normal(size=(64, 8)).astype("float32")
    runs = []
    for global_seed in (0, 0, 1):
        keras.utils.set_random_seed(global_seed)
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                                  keras.layers.Dense(4)])
        getattr(keras_normed, method)(model, x)
        runs.append(model.get_weights())
    for w0, w1 in zip(runs[0], runs[1]):
        np.testing.assert_array_equal(w0, w1)
    assert not np.array_equal(runs[0][0], runs[2][0])


def _np(tensor):
    return np.asarray(keras.ops.convert_to_numpy(tensor))


_MIRRORED_SCRIPT = r"""
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, keras_normed
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
x = np.random.default_rng(0).normal(size=(64, 6)).astype("float32")
with strategy.scope():
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3)])
    report = keras_normed.lsuv(model, x, tol=0.01, seed=0)
    keras_normed.data_dependent_init(model, x, between_layer_iters=0)
k, b = model.layers[0].get_weights()
z0 = x @ k + b
with strategy.scope():
    dd = keras_normed.data_dependent_init(model, x, within_layer=False, between_layer_iters=2,
                                          seed=0)
assert dd.output_change < 1e-4, dd.output_change
for w in model.weights:
    values = [v.numpy() for v in w.value.values] if hasattr(w.value, "values") else [w.numpy()]
    assert len(values) == 2, "not mirrored"
    np.testing.assert_array_equal(values[0], values[1])
# Full-batch statistics: the first layer's pre-activation has mean 0, std 1 on all 64 examples.
np.testing.assert_allclose(z0.mean(0), 0, atol=1e-4)
np.testing.assert_allclose(z0.std(0), 1, rtol=1e-3)
print("OK", report.converged)
"""


@pytest.mark.tensorflow
@pytest.mark.slow
def test_mirrored_strategy_full_batch_and_identical_replicas():
    import os
    import subprocess
    import sys

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")
    proc = subprocess.run([sys.executable, "-c", _MIRRORED_SCRIPT], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK True" in proc.stdout


@pytest.mark.parametrize("seed, error", [("a", TypeError), (1.5, TypeError), (True, TypeError),
                                         (-1, ValueError)])
def test_bad_seed_named_and_weights_kept(seed, error):
    model = _cnn()
    x = RNG.uniform(size=(8, 8, 8, 2)).astype("float32")
    before = _weights(model)
    for fn in (keras_normed.lsuv, keras_normed.data_dependent_init):
        with pytest.raises(error, match="`seed` must be None, an int >= 0 or a keras.random"):
            fn(model, x, seed=seed)
        for w0, w1 in zip(before, model.get_weights()):
            np.testing.assert_array_equal(w0, w1)
    assert keras_normed.lsuv(model, x, seed=keras.random.SeedGenerator(1)).converged
