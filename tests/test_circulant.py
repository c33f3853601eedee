"""CirculantDense / CirculantConv2D: numpy references, structure by brute force, Keras plumbing."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from circulant_reference import conv_reference, dense_reference

import keras_normed  # noqa: F401 - registers "normed" and the layers
from keras_normed.layers import CirculantConv2D, CirculantDense
from keras_normed.ops import fft


def random_kernel(layer, seed=0):
    rng = np.random.default_rng(seed)
    k = rng.standard_normal(layer.kernel.shape)
    layer.kernel.assign(k.astype(layer.kernel.dtype))
    return k


# --- CirculantDense -----------------------------------------------------------------------------

@pytest.mark.parametrize("n_in,units,b", [(12, 8, 4), (10, 13, 5), (7, 7, 7)])
def test_dense_layer_matches_reference(n_in, units, b):
    layer = CirculantDense(units, b, activation="relu", bias_initializer="ones", dtype="float64")
    x = np.random.default_rng(1).standard_normal((2, 3, n_in))  # rank 3 input
    y = np.asarray(layer(x))
    assert layer.kernel.shape == (fft.num_blocks(n_in, b), fft.num_blocks(units, b), b)
    k = np.asarray(layer.kernel)
    ref = np.maximum(x @ dense_reference(k, n_in, units) + 1.0, 0.0)
    np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-10)
    assert layer.compute_output_shape((None, 3, n_in)) == (None, 3, units)


def test_dense_argument_errors():
    with pytest.raises(ValueError, match="block_size"):
        CirculantDense(4, 0)
    with pytest.raises(TypeError, match="block_size"):
        CirculantDense(4, 2.5)
    with pytest.raises(ValueError, match="units"):
        CirculantDense(-1, 2)
    layer = CirculantDense(4, 9)
    with pytest.raises(ValueError, match="block_size"):
        layer.build((None, 8))
    assert not layer.weights  # nothing created
    layer = CirculantDense(4, 2)
    layer(np.ones((1, 6), "float32"))
    with pytest.raises(ValueError, match="6"):
        layer(np.ones((1, 8), "float32"))  # wrong feature count after build
    with pytest.raises(ValueError):
        layer(np.ones((6,), "float32"))  # rank 1


def test_normed_std_uses_effective_fan_in():
    # The paper's net (c): 3136 -> 1568 with one block of 1568: kernel (2, 1, 1568).
    layer = CirculantDense(1568, 1568)
    layer.build((None, 3136))
    k = np.asarray(layer.kernel)
    assert k.shape == (2, 1, 1568)
    # He on fan_in = 3136; the kernel tensor's shape-based fan_in would give sqrt(2 / 2).
    assert abs(k.std() / np.sqrt(2 / 3136) - 1) < 0.06


def brute_force_structure(layer, n_in_shape):
    """fan_in/fan_out/sharing/uniform of T from float64 basis probes (bias off)."""
    n_in = int(np.prod(n_in_shape))
    basis = np.eye(n_in).reshape((n_in,) + tuple(n_in_shape))
    saved = np.asarray(layer.kernel)
    # traced once under TensorFlow; reads the kernel variable each call
    apply = tf.function(layer.__call__) if keras.backend.backend() == "tensorflow" else layer

    def matrix():
        return np.asarray(apply(basis)).reshape(n_in, -1).T  # T: outputs x inputs

    t = matrix()
    nz = np.abs(t) > 1e-12
    uses = []
    for idx in np.ndindex(saved.shape):
        e = np.zeros(saved.shape)
        e[idx] = 1.0
        layer.kernel.assign(e)
        uses.append(int((np.abs(matrix()) > 1e-12).sum()))
    layer.kernel.assign(saved)
    row, col = nz.sum(axis=1), nz.sum(axis=0)
    uniform = bool(row.min() == row.max() and min(uses) == max(uses))
    return (int(row.max()), int(col.max()), nz.sum() / saved.size, uniform, sum(uses) / len(uses),
            t.shape)


@pytest.mark.parametrize("n_in,units,b", [(8, 12, 4), (7, 5, 3)])
def test_dense_structure_brute_force(n_in, units, b):
    layer = CirculantDense(units, b, use_bias=False, kernel_initializer="random_normal",
                           dtype="float64")
    layer.build((None, n_in))
    random_kernel(layer)
    fan_in, fan_out, sharing, uniform, mean_uses, t_shape = brute_force_structure(layer, (n_in,))
    s = layer.normed_structure((None, n_in))
    assert (s.fan_in, s.fan_out, s.uniform, s.shape) == (fan_in, fan_out, uniform, t_shape)
    assert s.sharing == pytest.approx(sharing) == pytest.approx(mean_uses)
    assert layer.normed_fans(layer.kernel.shape) == (n_in, units)
    if n_in % b == 0 and units % b == 0:
        assert s.sharing == b and s.uniform


# --- CirculantConv2D ----------------------------------------------------------------------------

@pytest.mark.parametrize("c_in,filters,b,stride,padding", [
    (4, 6, 2, 1, "valid"), (5, 7, 3, 2, "same"), (6, 6, 6, 1, "same")])
def test_conv_layer_matches_reference(c_in, filters, b, stride, padding):
    layer = CirculantConv2D(filters, (3, 2), b, strides=stride, padding=padding,
                            bias_initializer="ones", dtype="float64")
    x = np.random.default_rng(2).standard_normal((2, 7, 6, c_in))
    y = np.asarray(layer(x))
    k = np.asarray(layer.kernel)
    assert k.shape == (3, 2, fft.num_blocks(c_in, b), fft.num_blocks(filters, b), b)
    w = np.stack([np.stack([dense_reference(k[u, v], c_in, filters) for v in range(2)])
                  for u in range(3)])
    np.testing.assert_allclose(y, conv_reference(x, w, stride, padding) + 1.0, atol=1e-10)
    assert layer.compute_output_shape((None, 7, 6, c_in)) == y.shape[:0] + (None,) + y.shape[1:]


def test_conv_errors():
    with pytest.raises(ValueError, match="padding"):
        CirculantConv2D(4, 3, 2, padding="causal")
    layer = CirculantConv2D(4, 3, 16)
    with pytest.raises(ValueError, match="block_size"):
        layer.build((None, 8, 8, 3))
    layer = CirculantConv2D(4, 3, 2)
    layer(np.ones((1, 5, 5, 4), "float32"))
    with pytest.raises(ValueError):
        layer(np.ones((1, 5, 5, 6), "float32"))  # wrong channel count
    with pytest.raises(ValueError):
        layer(np.ones((1, 5, 4), "float32"))  # wrong rank


@pytest.mark.parametrize("c_in,filters,b,stride,padding", [
    (4, 4, 2, 1, "valid"), (3, 5, 2, 1, "same"), (4, 4, 4, 2, "same")])
def test_conv_structure_brute_force(c_in, filters, b, stride, padding):
    layer = CirculantConv2D(filters, 3, b, strides=stride, padding=padding, use_bias=False,
                            kernel_initializer="random_normal", dtype="float64")
    shape = (5, 5, c_in)
    layer.build((None,) + shape)
    random_kernel(layer)
    fan_in, fan_out, sharing, uniform, mean_uses, t_shape = brute_force_structure(layer, shape)
    s = layer.normed_structure((None,) + shape)
    assert (s.fan_in, s.fan_out, s.uniform, s.shape) == (fan_in, fan_out, uniform, t_shape)
    assert s.sharing == pytest.approx(sharing) == pytest.approx(mean_uses)
    assert layer.normed_fans(layer.kernel.shape) == (9 * c_in, 9 * filters)


# --- Keras plumbing (both layers) ---------------------------------------------------------------

def small_model(dtype=None):
    inputs = keras.Input((6, 6, 4))
    h = CirculantConv2D(8, 2, 4, padding="same", activation="relu", dtype=dtype)(inputs)
    h = keras.layers.Flatten()(h)
    h = CirculantDense(10, 32, dtype=dtype)(h)
    return keras.Model(inputs, keras.layers.Activation("linear", dtype="float32")(h))


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision(policy):
    x = np.random.default_rng(3).standard_normal((4, 6, 6, 4)).astype("float32")
    ref_model = small_model()
    model = small_model(policy)
    model.set_weights(ref_model.get_weights())
    for layer in model.layers[1:4:2]:
        assert layer.kernel.dtype == "float32"
    half = policy.split("_")[1]
    assert model.layers[1](x).dtype == half
    assert model.layers[3](np.ones((2, 288), "float32")).dtype == half
    ref = np.asarray(ref_model(x))
    np.testing.assert_allclose(np.asarray(model(x)), ref, atol=0.05 * np.abs(ref).max())


@pytest.mark.tensorflow
def test_jit_fit_dynamic_batch_and_save(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((20, 6, 6, 4)).astype("float32")
    y = rng.integers(0, 10, 20)
    model = small_model()
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=True)
    before = [w.copy() for w in model.get_weights()]
    hist = model.fit(x, y, batch_size=10, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights()))
    # Dynamic batch: one function traced with an unknown batch size serves any batch (the
    # XLA variant is exercised in test_periodic.py).
    serve = tf.function(model.__call__,
                        input_signature=[tf.TensorSpec((None, 6, 6, 4), tf.float32)])
    assert serve(x[:3]).shape == (3, 10)
    expected = np.asarray(model(x))
    np.testing.assert_allclose(serve(x).numpy(), expected, atol=1e-5)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(x)), expected, atol=1e-6)


def test_get_config_round_trip():
    for layer in (CirculantDense(6, 3, activation="tanh", use_bias=False,
                                 kernel_regularizer="l2", name="cd"),
                  CirculantConv2D(6, (3, 1), 3, strides=2, padding="same", name="cc")):
        config = layer.get_config()
        clone = type(layer).from_config(config)
        assert clone.get_config() == config
        assert config["kernel_initializer"]["class_name"] == "Normed"


def test_jax_backend_subprocess():
    pytest.importorskip("jax")
    code = ("import numpy as np, keras_normed; from keras_normed.layers import CirculantDense;"
            "print(CirculantDense(4, 2)(np.ones((2, 6), 'float32')).shape)")
    env = dict(os.environ, KERAS_BACKEND="jax")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "(2, 4)" in out.stdout


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_conv_refuses_an_image_smaller_than_its_valid_kernel(data_format):
    shape = (2, 5, 5, 4) if data_format == "channels_last" else (2, 4, 5, 5)
    with pytest.raises(ValueError, match=r"height x width \(5, 5\) is smaller than the \(7, 7\)"):
        CirculantConv2D(8, 7, block_size=4, data_format=data_format)(np.zeros(shape, "float32"))
    with pytest.raises(ValueError, match="padding='same'"):
        CirculantConv2D(8, 3, block_size=4, dilation_rate=3, data_format=data_format)(
            keras.Input(shape[1:]))
    layer = CirculantConv2D(8, 7, block_size=4, padding="same", data_format=data_format)
    assert tuple(layer(np.zeros(shape, "float32")).shape) == (
        (2, 5, 5, 8) if data_format == "channels_last" else (2, 8, 5, 5))


def test_conv_refuses_a_smaller_image_than_it_was_built_on():
    """Checked at each call, not only at build: a layer built on 8x8 returned an empty output
    on a 2x2 image (every form but the dense one); with unknown sizes in a TensorFlow graph the
    check runs with the graph."""
    layer = CirculantConv2D(4, 3, block_size=2)
    layer(np.ones((1, 8, 8, 4), "float32"))
    with pytest.raises(ValueError, match=r"\(2, 2\) is smaller than the \(3, 3\) kernel"):
        layer(np.ones((1, 2, 2, 4), "float32"))
    model = keras.Sequential([keras.Input((None, None, 4)), layer])
    assert model.predict(np.ones((2, 5, 5, 4), "float32"), verbose=0).shape == (2, 3, 3, 4)
    with pytest.raises(Exception, match="smaller than the \\(3, 3\\) kernel"):
        model.predict(np.ones((2, 2, 2, 4), "float32"), verbose=0)


def test_layer_arguments_of_the_wrong_type_are_type_errors_and_shown_as_given():
    from keras_normed.layers import PeriodicConv2D

    with pytest.raises(TypeError, match=r"`kernel_size` must be a positive int.*got '3'"):
        CirculantConv2D(8, "3", block_size=4)
    with pytest.raises(ValueError, match=r"`padding` must be 'valid' or 'same', got 3\."):
        CirculantConv2D(8, 3, block_size=4, padding=3)
    assert CirculantConv2D(8, 3, block_size=4, padding="SAME").padding == "same"
    assert PeriodicConv2D(4, 3, method="FFT").method == "fft"
    with pytest.raises(ValueError, match="`method` must be one of"):
        PeriodicConv2D(4, 3, method=1)
