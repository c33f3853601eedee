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


def _unit_stats(layer, x):
    """Per-channel mean and std of ``layer``'s pre-activation on ``x``, by its own call."""
    activation, layer.activation = layer.activation, keras.activations.linear
    try:
        z = _np(layer(x)).astype(np.float64)
    finally:
        layer.activation = activation
    axis = 1 if getattr(layer, "data_format", None) == "channels_first" else -1
    z = np.moveaxis(z, axis, -1).reshape(-1, z.shape[axis])
    return z.mean(axis=0), z.std(axis=0)


_LAYERS = {  # (layer, input shape); each output unit is one kernel slice, however laid out
    "einsum": (lambda: keras.layers.EinsumDense("abc,cd->abd", (6, 7), bias_axes="d",
                                                activation="relu"), (6, 8)),
    "conv2d_transpose": (lambda: keras.layers.Conv2DTranspose(5, 3, strides=2,
                                                              activation="relu"), (8, 8, 3)),
    "conv1d_transpose": (lambda: keras.layers.Conv1DTranspose(4, 3, strides=2), (10, 3)),
    "depthwise2d": (lambda: keras.layers.DepthwiseConv2D(3, depth_multiplier=2,
                                                         activation="relu"), (8, 8, 3)),
    "depthwise1d": (lambda: keras.layers.DepthwiseConv1D(3, depth_multiplier=3), (10, 4)),
}
if keras.backend.backend() != "tensorflow":  # TensorFlow's CPU convolutions are NHWC only
    _LAYERS.update({
        "conv2d_channels_first": (lambda: keras.layers.Conv2D(
            5, 3, data_format="channels_first"), (3, 8, 8)),
        "transpose_channels_first": (lambda: keras.layers.Conv2DTranspose(
            5, 3, data_format="channels_first"), (3, 8, 8)),
        "depthwise_channels_first": (lambda: keras.layers.DepthwiseConv2D(
            3, depth_multiplier=2, data_format="channels_first"), (3, 8, 8))})


@pytest.mark.parametrize("name", sorted(_LAYERS))
def test_within_layer_finds_each_unit_in_its_kernel(name):
    """Transposed and depthwise kernels, an EinsumDense and channels_first convolutions: every
    output channel at mean 0 and std 1 (a channels_first conv once crashed, or with as many
    columns as channels would have been standardized along the wrong axis)."""
    make, shape = _LAYERS[name]
    model = keras.Sequential([keras.Input(shape), make(), keras.layers.Flatten(),
                              keras.layers.Dense(4)])
    x = RNG.normal(size=(64, *shape)).astype("float32")
    report = keras_normed.data_dependent_init(model, x, seed=0, between_layer_iters=0)
    mean, std = _unit_stats(model.layers[0], x)
    np.testing.assert_allclose(mean, 0, atol=1e-4)
    np.testing.assert_allclose(std, 1, rtol=1e-3)
    assert report.summary["scalar_scale"] == []


def test_other_einsum_equations_get_one_scale_and_are_named():
    model = keras.Sequential([keras.Input((6, 8)), keras.layers.EinsumDense("abc,cd->adb", (7, 6),
                                                                             name="e"),
                              keras.layers.Flatten(), keras.layers.Dense(4)])
    x = RNG.normal(size=(64, 6, 8)).astype("float32")
    report = keras_normed.data_dependent_init(model, x, seed=0, between_layer_iters=0)
    z = _np(model.layers[0](x)).astype(np.float64)
    assert z.std() == pytest.approx(1, rel=1e-3)
    assert report.summary["scalar_scale"] == [model.layers[0].kernel.path]


@pytest.mark.parametrize("method", ["lsuv", "data_dependent_init"])
def test_recurrent_cells_are_left_and_named(method):
    """An LSTM/GRU cell is called per step: it is left as drawn and said so; the Dense after it
    is still set (both methods once crashed on a cell's tuple output)."""
    model = keras.Sequential([keras.Input((10, 8)),
                              keras.layers.LSTM(16, return_sequences=True, name="lstm"),
                              keras.layers.GRU(8, name="gru"), keras.layers.Dense(4, name="head")])
    x = RNG.normal(size=(64, 10, 8)).astype("float32")
    cells = [v for v in model.weights if "cell" in v.path]
    before = [_np(v) for v in cells]
    report = getattr(keras_normed, method)(model, x, seed=0)
    assert [r.path for r in report.rows] == [model.get_layer("head").kernel.path]
    for v, b in zip(cells, before):
        np.testing.assert_array_equal(_np(v), b)
    left = [entry.split(":")[0] for entry in report.summary["left"]]
    assert left == ["lstm/lstm_cell.kernel", "gru/gru_cell.kernel",
                    "lstm/lstm_cell.recurrent_kernel", "gru/gru_cell.recurrent_kernel"], left
    head = model.get_layer("head")
    z = _np(keras.Sequential(model.layers[:2])(x)).astype(np.float64) @ _np(head.kernel) \
        + _np(head.bias)
    if method == "lsuv":
        assert z.var() == pytest.approx(1, abs=0.1)
    else:
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


def test_circulant_layers_biases_are_found_and_set():
    """The bias of a circulant layer (kernel (P, Q, b), bias (units,)) was not recognised: LSUV
    left it at 1, the data-dependent init left its units' means at 1.0 instead of `mean`."""
    from keras_normed.layers import CirculantDense

    x = 3 * RNG.standard_normal((64, 16)).astype("float32") + 1

    def model():
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input((16,)), CirculantDense(
            8, block_size=4, bias_initializer="ones", name="circ"), keras.layers.Dense(3)])

    m = model()
    keras_normed.lsuv(m, x, seed=0)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(m.get_layer("circ").bias), 0.0)
    m = model()
    report = keras_normed.data_dependent_init(m, x, between_layer_iters=0, mean=0.5, std=2.0)
    assert report.summary["scalar_scale"] == [m.get_layer("circ").kernel.path]
    z = np.asarray(keras.Model(m.inputs[0], m.get_layer("circ").output)(x), np.float64)
    np.testing.assert_allclose(z.mean(axis=0), 0.5, atol=1e-4)
    np.testing.assert_allclose(np.sqrt(z.var(axis=0).mean()), 2.0, rtol=1e-4)


def test_a_layer_without_bias_is_named_and_warned_about():
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, use_bias=False),
                          keras.layers.Dense(3)])
    x = 3 * RNG.standard_normal((64, 16)).astype("float32") + 1
    with pytest.warns(UserWarning, match="keep their own mean, not mean=0.5"):
        report = keras_normed.data_dependent_init(m, x, between_layer_iters=0, mean=0.5)
    assert report.summary["mean_not_set"] == [m.layers[0].kernel.path]


def test_trained_models_are_refused_unless_forced_and_options_are_checked():
    m = _mlp()
    x = RNG.standard_normal((32, 10)).astype("float32")
    y = RNG.standard_normal((32, 4)).astype("float32")
    m.compile(keras.optimizers.SGD(0.01), "mse")
    m.fit(x, y, epochs=1, verbose=0)
    before = [np.array(keras.ops.convert_to_numpy(w)) for w in m.weights]
    for fn in (keras_normed.lsuv, keras_normed.data_dependent_init):
        with pytest.raises(ValueError, match="already trained .* force=True"):
            fn(m, x)
    for a, b in zip(before, m.weights):
        np.testing.assert_array_equal(a, keras.ops.convert_to_numpy(b))
    keras_normed.lsuv(m, x, force=True, seed=0)
    assert not np.array_equal(before[0], keras.ops.convert_to_numpy(m.weights[0]))
    with pytest.raises(ValueError, match="`within_layer`"):
        keras_normed.data_dependent_init(_mlp(), x, within_layer="no")
    report = keras_normed.data_dependent_init(_mlp(), x, between_layer_iters=1, seed=0)
    assert report.summary["loss"].startswith("mean_squared_error against random normal targets")
