"""WeightNormalization wrapper and the Arpit et al. (2019) initialization."""

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_normed  # noqa: F401 - registers the serializables
from keras_normed.initializers import arpit_init
from keras_normed.initializers.weight_norm import residual_branch_ends
from keras_normed.layers import WeightNormalization

RNG = np.random.default_rng(0)


def _random_g(layer, seed=1):
    g = np.random.default_rng(seed).uniform(0.5, 2.0, size=layer.g.shape)
    layer.g.assign(g.astype(layer.g.dtype))
    return g


def _np(tensor):
    return np.asarray(keras.ops.convert_to_numpy(tensor))


def test_dense_equals_inner_layer_with_normalized_kernel():
    x = RNG.normal(size=(5, 7)).astype("float32")
    wn = WeightNormalization(keras.layers.Dense(4, activation="relu"))
    wn(x)
    g = _random_g(wn)
    v = _np(wn.layer.kernel).astype(np.float64)
    b = RNG.normal(size=4)
    wn.layer.bias.assign(b.astype("float32"))
    w = g * v / np.linalg.norm(v, axis=0)
    expected = np.maximum(x @ w + b, 0)
    np.testing.assert_allclose(_np(wn(x)), expected, rtol=1e-5, atol=1e-5)


def test_conv_equals_inner_layer_with_normalized_kernel():
    x = RNG.normal(size=(2, 6, 6, 3)).astype("float32")
    wn = WeightNormalization(keras.layers.Conv2D(5, 3, padding="same", activation="tanh"))
    wn(x)
    g = _random_g(wn)
    v = _np(wn.layer.kernel).astype(np.float64)
    w = g * v / np.sqrt((v ** 2).sum(axis=(0, 1, 2)))
    ref = keras.layers.Conv2D(5, 3, padding="same", activation="tanh")
    ref(x)
    ref.set_weights([w.astype("float32"), _np(wn.layer.bias)])
    np.testing.assert_allclose(_np(wn(x)), _np(ref(x)), rtol=1e-5, atol=1e-5)
    # ||w_i|| = g_i for every output unit, whatever v is.
    k = _np(wn.normalized_kernel())
    np.testing.assert_allclose(np.sqrt((k ** 2).sum(axis=(0, 1, 2))), g, rtol=1e-5)


@pytest.mark.parametrize("dilation", [1, 2])
def test_causal_conv1d_equals_inner_layer_with_normalized_kernel(dilation):
    x = RNG.normal(size=(2, 9, 3)).astype("float32")
    wn = WeightNormalization(keras.layers.Conv1D(4, 3, padding="causal", dilation_rate=dilation))
    wn(x)
    g = _random_g(wn)
    wn.layer.bias.assign(RNG.normal(size=(4,)).astype("float32"))
    v = _np(wn.layer.kernel).astype(np.float64)
    w = g * v / np.sqrt((v ** 2).sum(axis=(0, 1)))
    ref = keras.layers.Conv1D(4, 3, padding="causal", dilation_rate=dilation)
    ref(x)
    ref.set_weights([w.astype("float32"), _np(wn.layer.bias)])
    out = _np(wn(x))
    assert out.shape == (2, 9, 4)
    np.testing.assert_allclose(out, _np(ref(x)), rtol=1e-5, atol=1e-5)


def test_default_g_starts_as_unwrapped_layer():
    x = RNG.normal(size=(3, 4)).astype("float32")
    wn = WeightNormalization(keras.layers.Dense(3))
    y = _np(wn(x))
    ref = x @ _np(wn.layer.kernel) + _np(wn.layer.bias)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(wn.g), np.linalg.norm(_np(wn.layer.kernel), axis=0),
                               rtol=1e-5)


@pytest.mark.tensorflow
def test_gradient_matches_finite_differences():
    x = RNG.normal(size=(3, 4))
    c = RNG.normal(size=(3, 2))
    wn = WeightNormalization(keras.layers.Dense(2, activation="tanh", dtype="float64"),
                             dtype="float64")
    wn(x)
    assert wn.g.dtype == "float64" and wn.layer.kernel.dtype == "float64"
    _random_g(wn)
    if True:

        def loss():
            return tf.reduce_sum(wn(x) * c)

        with tf.GradientTape() as tape:
            value = loss()
        grads = tape.gradient(value, [wn.g, wn.layer.kernel])
        eps = 1e-6
        for var, grad in zip([wn.g, wn.layer.kernel], grads):
            base = var.numpy().copy()
            numeric = np.zeros_like(base)
            for idx in np.ndindex(base.shape):
                for sign in (1, -1):
                    bumped = base.copy()
                    bumped[idx] += sign * eps
                    var.assign(bumped)
                    numeric[idx] += sign * loss().numpy() / (2 * eps)
            var.assign(base)
            np.testing.assert_allclose(grad.numpy(), numeric, rtol=1e-6, atol=1e-8)


def test_unsupported_layers_are_refused():
    with pytest.raises(TypeError, match="Dense or Conv"):
        WeightNormalization(keras.layers.Conv2DTranspose(3, 3))
    with pytest.raises(TypeError, match="Dense or Conv"):
        WeightNormalization("dense")


def test_from_config_leaves_the_given_config_as_it_was():
    config = WeightNormalization(keras.layers.Dense(3), epsilon=1e-6).get_config()
    copy = json.loads(json.dumps(config))
    first, second = (WeightNormalization.from_config(config) for _ in range(2))
    assert config == copy
    assert first.epsilon == second.epsilon == 1e-6 and first.layer.units == 3


def test_keras_round_trip(tmp_path):
    inputs = keras.Input((8, 8, 1))
    h = WeightNormalization(keras.layers.Conv2D(4, 3, activation="relu"), g_initializer="ones")(
        inputs)
    h = keras.layers.Flatten()(h)
    outputs = WeightNormalization(keras.layers.Dense(3))(h)
    model = keras.Model(inputs, outputs)
    arpit_init(model, seed=0)
    x = RNG.normal(size=(2, 8, 8, 1)).astype("float32")
    config = model.layers[1].get_config()
    assert config["layer"]["class_name"] == "Conv2D"
    assert config["g_initializer"]["class_name"] == "Ones"
    clone = WeightNormalization.from_config(config)
    assert isinstance(clone.layer, keras.layers.Conv2D) and clone.layer.filters == 4
    path = str(tmp_path / "wn.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.layers[1], WeightNormalization)
    np.testing.assert_allclose(_np(loaded(x)), _np(model(x)), rtol=1e-6, atol=1e-6)


def _plain(depth, width):
    inputs = keras.Input((width,))
    h = inputs
    for _ in range(depth):
        h = WeightNormalization(keras.layers.Dense(width, activation="relu"))(h)
    model = keras.Model(inputs, h)
    return model


def _norm_ratio(model, x, start=None):
    y = _np(model(x))
    ref = x if start is None else start
    return float(np.linalg.norm(y, axis=1).mean() / np.linalg.norm(ref, axis=1).mean())


def test_arpit_init_preserves_norm_through_50_plain_relu_layers():
    width, depth = 256, 50
    x = RNG.normal(size=(64, width)).astype("float32")
    model = _plain(depth, width)
    log_ratios = []
    for seed in range(3):
        info = arpit_init(model, seed=seed)
        log_ratios.append(math.log(_norm_ratio(model, x)))
    # Hidden ReLU layer, n_in = n_out: g = sqrt(2 n_in / n_out) = sqrt(2).
    assert all(abs(row.g - math.sqrt(2)) < 1e-12 for row in info.rows)
    v = _np(model.layers[1].layer.kernel)
    np.testing.assert_allclose(v.T @ v, np.eye(width), atol=1e-5)  # orthogonal directions
    # Mean field: E log ratio = 0. At finite width the per-layer ratio fluctuates by a few %
    # (std ~ 1/sqrt(width)), a random walk of about sqrt(depth)*0.04 ~ 0.3 in log after
    # 50 layers: every seed within a factor 3, their geometric mean within a factor 2.
    assert all(abs(r) < math.log(3) for r in log_ratios), log_ratios
    assert abs(np.mean(log_ratios)) < math.log(2), log_ratios
    # The common proxy g = 1 (unit-norm weight vectors) halves the squared norm per layer.
    for layer in model.layers[1:]:
        layer.g.assign(np.ones(layer.g.shape, "float32"))
    assert _norm_ratio(model, x) < 1e-5


def test_arpit_g_for_changing_widths_and_linear_output():
    inputs = keras.Input((20,))
    h = WeightNormalization(keras.layers.Dense(80, activation="relu"))(inputs)
    out = WeightNormalization(keras.layers.Dense(5))(h)
    model = keras.Model(inputs, out)
    gs = {row["name"]: row.g for row in arpit_init(model, seed=0).rows}
    assert gs[model.layers[1].name] == pytest.approx(math.sqrt(2 * 20 / 80))
    assert gs[model.layers[2].name] == pytest.approx(math.sqrt(80 / 5))


def _resnet(blocks, width):
    inputs = keras.Input((width,))
    h = WeightNormalization(keras.layers.Dense(width), name="stem")(inputs)
    for _ in range(blocks):
        b = WeightNormalization(keras.layers.Dense(width, activation="relu"))(h)
        b = WeightNormalization(keras.layers.Dense(width))(b)
        h = keras.layers.Add()([h, b])
    return keras.Model(inputs, h)


def test_arpit_residual_scaling_keeps_50_blocks_bounded():
    width, blocks = 64, 50
    x = RNG.normal(size=(256, width)).astype("float32")
    model = _resnet(blocks, width)
    ends = residual_branch_ends(model)
    assert len(ends) == blocks and "stem" not in ends
    info = arpit_init(model, seed=0)
    assert info.residual_blocks == blocks
    # The stem is orthogonal with g = 1, so its output has the input's norm.
    ratio = _norm_ratio(model, x)
    # ||h_B||^2 ~ (1 + 1/B)^B ||h_0||^2 <= e ||h_0||^2.
    assert 1.0 < ratio < 1.5 * math.sqrt(math.e), ratio
    arpit_init(model, residual_blocks=1, seed=0)  # unscaled branches: 2^(B/2) growth
    assert _norm_ratio(model, x) > 1e4


def test_arpit_init_errors():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="no WeightNormalization"):
        arpit_init(model)
    model = _resnet(2, 4)
    with pytest.raises(ValueError, match="branch_ends"):
        arpit_init(model, branch_ends=["nope"])
    with pytest.raises(TypeError, match=r"`branch_ends` must be a list.*pass \['b0'\]"):
        arpit_init(model, branch_ends="b0")
    with pytest.raises(TypeError, match="`model` must be a keras.Model, got str"):
        arpit_init("x")


def test_g_is_the_norm_when_keras_builds_by_tracing():
    """g = ||v|| was assigned after the variable was made, from a NumPy read of the norm: where
    Keras builds by tracing (a Sequential without Input at fit, a custom layer without build
    holding the wrapper) that failed on both backends. Now g's initializer is the norm."""
    class Holder(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.wn = WeightNormalization(keras.layers.Dense(8, kernel_initializer="normed"))

        def call(self, x):
            return self.wn(x)

    holder = Holder()
    inputs = keras.Input((6,))
    keras.Model(inputs, holder(inputs))
    sequential = keras.Sequential([WeightNormalization(keras.layers.Dense(4))])
    sequential.compile("sgd", "mse")
    x = np.random.default_rng(0).normal(size=(8, 6)).astype("float32")
    sequential.evaluate(x, np.zeros((8, 4), "float32"), verbose=0)  # builds, no step
    for wn in (holder.wn, sequential.layers[0]):
        v = keras.ops.convert_to_numpy(wn.layer.kernel).astype(np.float64)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(wn.g), np.sqrt((v**2).sum(0)),
                                   rtol=1e-6)


def test_from_config_takes_another_dtype():
    """Cloning to another dtype (clone_function with from_config): the inner layer was rebuilt
    from its build_config in the old dtype, then refused as built with other weights."""
    inputs = keras.Input((6, 6, 3))
    model = keras.Model(inputs, WeightNormalization(keras.layers.Conv2D(4, 3))(inputs))
    clone = keras.models.clone_model(model, clone_function=lambda layer: (
        layer.__class__.from_config({**layer.get_config(), "dtype": "bfloat16"})))
    assert {keras.backend.standardize_dtype(v.dtype) for v in clone.weights} == {"bfloat16"}
    wn = clone.layers[-1]
    v = keras.ops.convert_to_numpy(keras.ops.cast(wn.layer.kernel, "float32")).astype(np.float64)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.ops.cast(wn.g, "float32")),
                               np.sqrt((v**2).sum((0, 1, 2))), rtol=1e-2)
