"""Data-dependent init (Krähenbühl et al. 2016): within-layer and between-layer steps."""

import keras
import numpy as np
import pytest
from reference_grad import value_and_gradients

import keras_normed
from keras_normed.layers import WeightNormalization

RNG = np.random.default_rng(0)


def _mlp(seed=0, depth=5, wn=False):
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((10,))]
    for _ in range(depth):
        dense = keras.layers.Dense(16, activation="relu",
                                   kernel_initializer=keras.initializers.RandomNormal(0, 0.05))
        layers.append(WeightNormalization(dense) if wn else dense)
    layers.append(keras.layers.Dense(4))
    return keras.Sequential(layers)


def _kernel_and_bias(layer):
    if isinstance(layer, WeightNormalization):
        return _np(layer.normalized_kernel()), _np(layer.layer.bias)
    return _np(layer.kernel), _np(layer.bias)


def _np(tensor):
    return np.asarray(keras.ops.convert_to_numpy(tensor))


def _numpy_preactivations(model, x):
    h = x.astype(np.float64)
    out = []
    for layer in model.layers:
        k, b = _kernel_and_bias(layer)
        z = h @ k.astype(np.float64) + b
        out.append(z)
        inner = getattr(layer, "layer", layer)
        h = np.maximum(z, 0) if inner.activation is keras.activations.relu else z
    return out


@pytest.mark.parametrize("wn", [False, True])
def test_within_layer_gives_zero_mean_unit_variance_per_unit(wn):
    model = _mlp(wn=wn)
    x = RNG.normal(size=(128, 10)).astype("float32")
    keras_normed.data_dependent_init(model, x, between_layer_iters=0)
    for z in _numpy_preactivations(model, x):
        np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-4)
        np.testing.assert_allclose(z.std(axis=0), 1, rtol=1e-3)


def _change_rates(model, x, y):
    loss = keras.losses.MeanSquaredError()
    variables = [layer.kernel for layer in model.layers]
    _, grads, _ = value_and_gradients(model, variables, lambda out: loss(y, out), x)
    return np.array([np.sum(g.astype(np.float64) ** 2)
                     / np.sum(_np(v).astype(np.float64) ** 2)
                     for g, v in zip(grads, variables)])


def test_between_layer_equalizes_change_rates_and_keeps_the_function():
    model = _mlp()
    x = RNG.normal(size=(128, 10)).astype("float32")
    y = RNG.normal(size=(128, 4)).astype("float32")
    keras_normed.data_dependent_init(model, x, between_layer_iters=0)
    before = _change_rates(model, x, y)
    out_before = _np(model(x))
    report = keras_normed.data_dependent_init(model, x, y, within_layer=False,
                                              between_layer_iters=4, alpha=1.0)
    after = _change_rates(model, x, y)
    assert before.max() / before.min() > 2  # there was something to equalize
    assert after.max() / after.min() < 1.05, after
    assert report.between_layer["spread_after"] == pytest.approx(after.max() / after.min(),
                                                                 rel=1e-3)
    # ReLU is positively homogeneous: rescaling W_k by r and W_{k+1} by 1/r keeps the output.
    np.testing.assert_allclose(_np(model(x)), out_before, rtol=1e-4, atol=1e-4)
    assert report.output_change < 1e-4


def test_random_targets_depend_on_seed_only():
    x = RNG.normal(size=(64, 10)).astype("float32")
    a, b, c = _mlp(0), _mlp(0), _mlp(0)
    keras_normed.data_dependent_init(a, x, seed=5, between_layer_iters=2)
    keras_normed.data_dependent_init(b, x, seed=5, between_layer_iters=2)
    keras_normed.data_dependent_init(c, x, seed=6, between_layer_iters=2)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)
    assert not all(np.allclose(wa, wc) for wa, wc in zip(a.get_weights(), c.get_weights()))


def test_integer_labels_use_cross_entropy():
    model = _mlp()
    x = RNG.normal(size=(64, 10)).astype("float32")
    labels = RNG.integers(0, 4, size=64)
    report = keras_normed.data_dependent_init(model, x, labels, between_layer_iters=3)
    assert report.between_layer["spread_after"] < report.between_layer["spread_before"]
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


@pytest.mark.parametrize("batch, message", [
    (np.zeros((0, 10), "float32"), "empty"),
    (np.ones((1, 10), "float32"), "batch of one"),
    (np.array([[np.inf] * 10] * 3, "float32"), "NaN or inf"),
    (np.ones((6, 10), "float32"), "zero variance"),
])
def test_bad_batches_raise_and_leave_weights_unchanged(batch, message):
    model = _mlp()
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=message):
        keras_normed.data_dependent_init(model, batch)
    for w0, w1 in zip(before, model.get_weights()):
        np.testing.assert_array_equal(w0, w1)


def test_argument_errors():
    model = _mlp()
    x = RNG.normal(size=(8, 10)).astype("float32")
    with pytest.raises(ValueError, match="alpha"):
        keras_normed.data_dependent_init(model, x, alpha=0)
    with pytest.raises(ValueError, match="std"):
        keras_normed.data_dependent_init(model, x, std=-1)
    with pytest.raises(ValueError, match="between_layer_iters"):
        keras_normed.data_dependent_init(model, x, between_layer_iters=-1)
    class OneBatch(keras.utils.PyDataset):
        def __len__(self):
            return 1

        def __getitem__(self, i):
            return x, np.zeros(8, "float32")

    with pytest.raises(TypeError, match="a dataset brings its own targets"):
        keras_normed.data_dependent_init(model, OneBatch(), np.zeros(8))
