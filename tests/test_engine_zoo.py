"""Every model-level function x every model shape, on the one engine.

Function preservation is checked against the model's own output before and after (an
independent forward pass, not the engine's report); growth is re-measured on a second batch.
"""

import math
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_normed
from keras_normed import Normed
from keras_normed.callbacks import LSUVInit, NormedScaling
from keras_normed.layers import WeightNormalization

L = keras.layers
N_IN = 16


def _n(seed, nonlinearity="relu"):
    return Normed(nonlinearity, seed=seed)


def sequential():
    return keras.Sequential([keras.Input((N_IN,)),
                             L.Dense(32, activation="relu", kernel_initializer=_n(1)),
                             L.Dense(64, activation="relu", kernel_initializer=_n(2)),
                             L.Dense(10, kernel_initializer=_n(3, "linear"))])


def dict_inputs():
    a = keras.Input((8,), name="a")
    b = keras.Input((N_IN,), name="b")
    h = L.Concatenate()([L.Dense(8, activation="relu", kernel_initializer=_n(1))(a),
                         L.Dense(24, activation="relu", kernel_initializer=_n(2))(b)])
    return keras.Model({"a": a, "b": b}, L.Dense(10, kernel_initializer=_n(3, "linear"))(h))


def two_outputs():
    x = keras.Input((N_IN,))
    h = L.Dense(32, activation="relu", kernel_initializer=_n(1))(x)
    cls = L.Dense(10, kernel_initializer=_n(2, "linear"), name="cls")(h)
    g = L.Dense(8, activation="relu", kernel_initializer=_n(4))(h)
    reg = L.Dense(1, kernel_initializer=_n(3, "linear"), name="reg")(g)
    return keras.Model(x, {"cls": cls, "reg": reg})


def nested():
    inner = keras.Sequential([keras.Input((32,)),
                              L.Dense(32, activation="relu", kernel_initializer=_n(5)),
                              L.Dense(48, activation="relu", kernel_initializer=_n(6))])
    x = keras.Input((N_IN,))
    h = L.Dense(32, activation="relu", kernel_initializer=_n(1))(x)
    return keras.Model(x, L.Dense(10, kernel_initializer=_n(3, "linear"))(inner(h)))


def tied():
    x = keras.Input((N_IN,))
    h = L.Dense(16, activation="relu", kernel_initializer=_n(1))(x)
    shared = L.Dense(16, activation="relu", kernel_initializer=_n(2))
    for _ in range(4):
        h = shared(h)
    return keras.Model(x, L.Dense(10, kernel_initializer=_n(3, "linear"))(h))


def residual():
    x = keras.Input((N_IN,))
    h = L.Dense(32, activation="relu", kernel_initializer=_n(1))(x)
    for b in range(3):
        r = L.Dense(32 * (b + 1), activation="relu", kernel_initializer=_n(10 + b))(h)
        r = L.Dense(32, kernel_initializer=_n(20 + b, "linear"))(r)
        h = L.ReLU()(L.Add()([h, r]))
    return keras.Model(x, L.Dense(10, kernel_initializer=_n(3, "linear"))(h))


def batchnorm():
    x = keras.Input((N_IN,))
    h = L.ReLU()(L.BatchNormalization()(L.Dense(32, kernel_initializer=_n(1))(x)))
    h = L.Dense(64, activation="relu", kernel_initializer=_n(2))(h)
    return keras.Model(x, L.Dense(10, kernel_initializer=_n(3, "linear"))(h))


def frozen():
    model = sequential()
    model.layers[1].trainable = False
    return model


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.d1 = L.Dense(32, activation="relu", kernel_initializer=_n(1))
        self.d2 = L.Dense(64, activation="relu", kernel_initializer=_n(2))
        self.d3 = L.Dense(32, kernel_initializer=_n(4, "linear"))
        self.out = L.Dense(10, kernel_initializer=_n(3, "linear"))

    def call(self, x):
        h = self.d1(x)
        return self.out(keras.ops.relu(h + self.d3(self.d2(h))))


def subclassed():
    model = Subclassed()
    model(np.zeros((2, N_IN), "float32"))
    return model


ZOO = {f.__name__: f for f in (sequential, dict_inputs, two_outputs, nested, tied, residual,
                                batchnorm, frozen, subclassed)}
# Layers called more than once: LSUV and the data-dependent init refuse them.
SHARED = {"tied"}


def data(name, n=128, seed=0):
    rng = np.random.default_rng(seed)
    if name == "dict_inputs":
        x = {"a": rng.standard_normal((n, 8)).astype("float32"),
             "b": rng.standard_normal((n, N_IN)).astype("float32")}
    else:
        x = rng.standard_normal((n, N_IN)).astype("float32")
    y = rng.integers(0, 10, n)
    if name == "two_outputs":
        y = {"cls": y, "reg": rng.standard_normal((n, 1)).astype("float32")}
    return x, y


def compiled(name):
    model = ZOO[name]()
    losses = ({"cls": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
               "reg": "mse"} if name == "two_outputs"
              else keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.compile(keras.optimizers.SGD(0.01), losses)
    return model


def flat(out):
    return np.concatenate([np.ravel(keras.ops.convert_to_numpy(t)).astype(np.float64)
                           for t in keras.tree.flatten(out)])


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def weights(model):
    return [np.array(keras.ops.convert_to_numpy(w)) for w in model.weights]


def assert_unchanged(model, before):
    for w0, w1 in zip(before, weights(model)):
        np.testing.assert_array_equal(w0, w1)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_rescale_keeps_function_and_equalizes_growth(name):
    model = compiled(name)
    x, y = data(name)
    x2, y2 = data(name, seed=1)
    out0 = flat(model(x, training=True))
    spread0 = keras_normed.growth_report(model, x2, y2).spread
    report = keras_normed.rescale(model, (x, y), move="all")
    assert report.applied
    change = rel(flat(model(x, training=True)), out0)
    if name == "batchnorm":  # invariant up to BN's epsilon; the report says so
        assert change < 1e-2 and any("epsilon" in n for n in report.notes)
    else:
        assert report.homogeneous, report.notes
        assert change < 1e-5, change
        # Keras's own layers, read exactly: kept by construction, not measured; a subclassed
        # model's traced call is measured.
        if name == "subclassed":
            assert report.summary["check"] == "measured"
            assert report.output_change == pytest.approx(change, rel=0.1, abs=1e-7)
        else:
            assert report.summary["check"] == "kept by construction"
            assert report.output_change is None
    spread1 = keras_normed.growth_report(model, x2, y2).spread
    # Frozen kernels do not count: growth_report lists trainable kernels only.
    assert spread1 < spread0
    if report.spread_allowed < 1.2:  # the constraints allow equal growth
        assert spread1 <= 1.5, (spread0, spread1)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_rescale_analytic_keeps_function(name):
    model = ZOO[name]()
    x, _ = data(name)
    out0 = flat(model(x, training=True))
    report = keras_normed.rescale(model, move="all")
    assert report.applied and report.rule == "analytic"
    tol = 1e-2 if name == "batchnorm" else 1e-5
    assert rel(flat(model(x, training=True)), out0) < tol


def test_rescale_counts_uses_and_keeps_frozen_kernels():
    model = tied()
    report = keras_normed.rescale(model, data("tied"))
    assert [row.uses for row in report.rows] == [1, 4, 1]
    # The product of scales along the one path, the tied layer counted 4 times, is 1.
    c = list(report.scales.values())
    assert c[0] * c[1] ** 4 * c[2] == pytest.approx(1.0, rel=1e-6)
    model = frozen()
    before = keras.ops.convert_to_numpy(model.layers[1].kernel).copy()
    report = keras_normed.rescale(model, data("frozen"))
    assert len(report.rows) == 2 and model.layers[1].kernel.path not in report.scales
    np.testing.assert_array_equal(before, keras.ops.convert_to_numpy(model.layers[1].kernel))


def test_auto_move_equalizes_only_where_parameters_are_shared():
    """The default ``move="auto"``: a plain net keeps its draw bit for bit (every scale 1, the
    report says "structured" ran); a layer called more than once, or a circulant layer, makes
    every layer move ("all"), as ``move="all"`` does."""
    model = compiled("sequential")
    before = weights(model)
    report = keras_normed.rescale(model, data("sequential"))
    assert report.applied and report.summary["move"] == "structured"
    assert list(report.scales.values()) == [1.0] * 3
    assert_unchanged(model, before)
    assert not keras_normed.rescale(model, data("sequential")).applied  # marked as rescaled
    assert keras_normed.rescale(sequential()).summary["move"] == "structured"  # analytic too
    circulant = keras.Sequential([
        keras.Input((N_IN,)), keras_normed.layers.CirculantDense(
            32, 8, activation="relu", use_bias=False, kernel_initializer=_n(1)),
        L.Dense(10, use_bias=False, kernel_initializer=_n(3, "linear"))])
    for make, name in ((tied, "tied"), (lambda: circulant, "sequential")):
        x, y = data(name)
        auto = keras_normed.rescale(make(), (x, y))
        assert auto.summary["move"] == "all" and auto.spread_after <= 1.5
        if name == "tied":
            explicit = keras_normed.rescale(make(), (x, y), move="all")
            np.testing.assert_allclose(list(auto.scales.values()),
                                       list(explicit.scales.values()), rtol=1e-6)
    with pytest.raises(ValueError, match="'auto', 'all' or 'structured'"):
        keras_normed.rescale(sequential(), move="some")


def _circulant_net(circulant):
    return keras.Sequential([keras.Input((N_IN,)),
                             L.Dense(32, activation="relu", kernel_initializer=_n(1)), circulant,
                             L.Dense(10, kernel_initializer=_n(3, "linear"))])


def test_auto_move_reads_sharing_from_the_whole_model():
    """A trainable structured layer counts whatever its initializer or state; a frozen one does
    not; a graph that cannot be read shows no tying, and the report says so."""
    from keras_normed.layers import CirculantDense

    x, y = data("sequential")
    he = _circulant_net(CirculantDense(32, 8, activation="relu", kernel_initializer="he_normal"))
    report = keras_normed.rescale(he, (x, y))
    assert report.summary["move"] == "all" and "circulant" in report.summary["move_reason"]
    assert report.spread_after <= 1.5 and len(report.rows) == 2
    base = _circulant_net(CirculantDense(32, 8, activation="relu", kernel_initializer=_n(2)))
    keras_normed.rescale(base, (x, y))  # the circulant is rescaled; fresh plain layers around it
    inputs = keras.Input((N_IN,))
    h = L.Dense(32, activation="relu", kernel_initializer=_n(4))(base.layers[1](
        base.layers[0](inputs)))
    grown = keras.Model(inputs, L.Dense(10, kernel_initializer=_n(5, "linear"))(h))
    report = keras_normed.rescale(grown, (x, y))
    assert report.summary["move"] == "all" and len(report.rows) == 2
    assert report.spread_after < report.spread_before
    frozen_circ = CirculantDense(32, 8, activation="relu", kernel_initializer=_n(2))
    frozen_net = _circulant_net(frozen_circ)
    frozen_circ.trainable = False
    report = keras_normed.rescale(frozen_net, (x, y))
    assert report.summary["move"] == "structured" and set(report.scales.values()) == {1.0}
    model = Untraceable()
    model(x)
    report = keras_normed.rescale(model, (x, y))
    assert report.summary["move"] == "structured" and "cannot be read" in report.summary[
        "move_reason"]
    # WeightNormalization hands on its inner layer's structure: a wrapped Dense is plain.
    wrapped = keras.Sequential([keras.Input((N_IN,)), WeightNormalization(
        L.Dense(32, activation="relu", kernel_initializer=_n(1))),
        L.Dense(10, kernel_initializer=_n(3, "linear"))])
    report = keras_normed.rescale(wrapped, (x, y))
    assert report.summary["move"] == "structured", report.summary["move_reason"]


@pytest.mark.parametrize("name", sorted(ZOO))
def test_normed_scaling_callback_in_fit(name):
    model = compiled(name)
    x, y = data(name)
    callback = NormedScaling(data=(x, y))
    model.fit(x, y, batch_size=64, epochs=1, verbose=0, callbacks=[callback])
    assert callback.report.applied
    assert all(np.all(np.isfinite(w)) for w in weights(model))


def test_callbacks_build_a_model_without_an_input_on_their_own_batch():
    """``fit`` builds such a model on its first batch only after ``on_train_begin``; the
    callbacks build it on theirs (uint8 images through a Rescaling layer, as users have)."""
    x = np.random.default_rng(0).integers(0, 256, (64, 8, 8, 1)).astype("uint8")
    y = np.arange(64) % 3

    def unbuilt():
        model = keras.Sequential([
            L.Rescaling(1 / 255.0), L.Conv2D(4, 3, activation="relu", kernel_initializer=_n(1)),
            L.Flatten(), L.Dense(3, kernel_initializer=_n(2, "linear"))])
        model.compile(keras.optimizers.SGD(0.01),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    model, callback = unbuilt(), NormedScaling(data=(x[:32], y[:32]), move="all")
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[callback])
    assert callback.report.applied and callback.report.output_change < 1e-5
    assert callback.report.spread_after < callback.report.spread_before
    model, callback = unbuilt(), LSUVInit(x[:32], seed=0)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[callback])
    assert callback.report.applied and callback.report.converged
    model, callback = unbuilt(), NormedScaling()  # no batch of its own (the analytic rule)
    if keras.backend.backend() == "tensorflow":  # fit builds after on_train_begin: say so
        with pytest.raises(ValueError, match="not built.*Input"):
            model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    else:  # JAX's fit builds the model before on_train_begin
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
        assert callback.report.applied


def _preactivation_variances(model, x):
    """Each kernel layer's output variance with its activation off, on the input it gets in
    a normal forward pass."""
    from keras_normed import _keras_compat as compat

    layers = [layer for layer in compat.all_layers(model)
              if isinstance(layer, L.Dense) and layer.trainable]
    with compat.captured_calls(layers) as record:
        model(x)
    out = {}
    for layer in layers:
        activation = layer.activation
        try:
            layer.activation = keras.activations.linear
            z = layer(*record[id(layer)][0][0])
        finally:
            layer.activation = activation
        out[layer.name] = float(np.var(keras.ops.convert_to_numpy(z)))
    return out


@pytest.mark.parametrize("name", sorted(ZOO))
def test_lsuv_targets_or_refuses(name):
    model = ZOO[name]()
    x, _ = data(name)
    before = weights(model)
    if name in SHARED:
        with pytest.raises(ValueError, match="more than once"):
            keras_normed.lsuv(model, x, seed=0)
        assert_unchanged(model, before)
        return
    report = keras_normed.lsuv(model, x, tol=0.05, seed=0)
    assert report.converged
    if name == "batchnorm":
        return  # later layers see BN's output: variances are of the layers' own outputs
    for layer_name, var in _preactivation_variances(model, x).items():
        assert abs(var - 1.0) < 0.05, (layer_name, var)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_data_dependent_init_targets_or_refuses(name):
    model = ZOO[name]()
    x, y = data(name)
    before = weights(model)
    if name in SHARED:
        with pytest.raises(ValueError, match="more than once"):
            keras_normed.data_dependent_init(model, x, y, seed=0)
        assert_unchanged(model, before)
        return
    out0 = flat(model(x))
    report = keras_normed.data_dependent_init(model, x, y, seed=0, between_layer_iters=0)
    assert len(report.rows) >= 2
    for layer_name, var in _preactivation_variances(model, x).items():
        if name != "batchnorm":
            assert var == pytest.approx(1.0, rel=0.05), layer_name
    out1 = flat(model(x))
    report = keras_normed.data_dependent_init(model, x, y, seed=0, within_layer=False,
                                              between_layer_iters=3)
    between = report.between_layer
    assert between["spread_after"] <= between["spread_before"] * (1 + 1e-6)
    if report.homogeneous:
        assert rel(flat(model(x)), out1) < 1e-4
    assert out0.shape == out1.shape


def test_float_class_labels_get_cross_entropy():
    model = sequential()
    x, y = data("sequential")
    report = keras_normed.data_dependent_init(model, x, y.astype("float32"), seed=0)
    assert "SparseCategoricalCrossentropy" in report.loss


@pytest.mark.parametrize("name", ["tied", "nested", "subclassed", "two_outputs"])
def test_growth_report_on_any_model(name):
    model = compiled(name)
    report = keras_normed.growth_report(model, *data(name))
    assert len(report.rows) == len([w for w in model.trainable_weights if "kernel" in w.path])
    assert all(math.isfinite(r.act_var) for r in report.rows)
    if name == "tied":
        assert [r.uses for r in report.rows] == [1, 4, 1]


def test_fresh_layer_rescaled_around_a_rescaled_model():
    base = sequential()
    x, y = data("sequential")
    keras_normed.rescale(base, (x, y))
    old = weights(base)
    inputs = keras.Input((N_IN,))
    h = base(inputs)
    out = L.Dense(5, kernel_initializer=_n(9, "linear"))(L.ReLU()(h))
    model = keras.Model(inputs, out)
    report = keras_normed.rescale(model, (x, y % 5))
    assert report.applied and [r.path.split("/")[0] for r in report.rows] == [
        model.layers[-1].name]
    for w0, w1 in zip(old, weights(base)):
        np.testing.assert_array_equal(w0, w1)
    assert not keras_normed.rescale(model, (x, y % 5)).applied


class _Batches(keras.utils.PyDataset):
    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def __len__(self):
        return 2

    def __getitem__(self, i):
        return self.x[i * 64:(i + 1) * 64], self.y[i * 64:(i + 1) * 64]


def test_data_as_fit_takes_it():
    x, y = data("sequential")
    reference = sequential()
    keras_normed.rescale(reference, (x[:64], y[:64]))
    expected = weights(reference)
    forms = {
        "dataset": tf.data.Dataset.from_tensor_slices((x, y)).batch(64),
        "pydataset": _Batches(x, y),
        "sample_weight": (x[:64], y[:64], np.ones(64, "float32")),
        "list": [x[:64], y[:64]],
    }
    for label, form in forms.items():
        model = sequential()
        keras_normed.rescale(model, form)
        for w0, w1 in zip(expected, weights(model)):
            np.testing.assert_allclose(w1, w0, rtol=1e-5, atol=1e-7, err_msg=label)
    model = dict_inputs()
    xd, yd = data("dict_inputs")
    ds = tf.data.Dataset.from_tensor_slices((xd, yd)).batch(32)
    assert keras_normed.rescale(model, ds).applied


@pytest.mark.parametrize("bad, match", [
    (None, "None"),
    ("x.npy", "string"),
    ("unbatched", "unbatched"),
    ("x_only", "needs targets"),
    ("wrong_count", "input"),
    ("generator", "iterator"),
    ("empty_dataset", "empty"),
    ("mismatched", "batch sizes"),
    ("four", "sequence of 4"),
])
def test_refused_data_says_what_to_pass(bad, match):
    model = dict_inputs() if bad == "wrong_count" else sequential()
    x, y = data("sequential")
    cases = {
        None: None,
        "x.npy": "x.npy",
        "unbatched": tf.data.Dataset.from_tensor_slices((x, y)),
        "x_only": x,
        "wrong_count": ([x], y),
        "generator": (b for b in [(x, y)]),
        "empty_dataset": tf.data.Dataset.from_tensor_slices((x, y)).batch(8).take(0),
        "mismatched": (x, y[:10]),
        "four": (x, y, y, y),
    }
    before = weights(model)
    with pytest.raises((ValueError, TypeError), match=match) as info:
        if bad is None:
            keras_normed.growth_report(model, None)
        else:
            keras_normed.rescale(model, cases[bad], rule="probe")
    assert "data" in str(info.value) and "Pass" in str(info.value)
    assert_unchanged(model, before)
    for fn in (lambda: keras_normed.lsuv(model, "x.npy"),
               lambda: keras_normed.data_dependent_init(model, x[:1])):
        with pytest.raises((ValueError, TypeError), match="x_batch"):
            fn()
        assert_unchanged(model, before)


def test_lsuv_callback_on_nested_model():
    model = nested()
    x, y = data("nested")
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callback = LSUVInit(x, seed=0)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    # The nested Sequential's two kernels are initialized too.
    assert len(callback.report.rows) == 4


def test_arpit_init_on_nested_weight_norm():
    inner = keras.Sequential([keras.Input((32,)),
                              WeightNormalization(L.Dense(32, activation="relu"))])
    x = keras.Input((N_IN,))
    h = WeightNormalization(L.Dense(32, activation="relu"))(x)
    model = keras.Model(x, WeightNormalization(L.Dense(4))(inner(h)))
    report = keras_normed.initializers.arpit_init(model, seed=0)
    assert report.method == "arpit" and len(report.rows) == 3
    assert [round(r.g, 6) for r in report.rows] == [round(math.sqrt(2 * 16 / 32), 6),
                                                    round(math.sqrt(2.0), 6),
                                                    round(math.sqrt(32 / 4), 6)]


def test_freshness_from_the_draw_itself():
    """The initializer keeps a fingerprint of its draw: a SeedGenerator seed (which cannot
    redraw) is rescaled, an assigned kernel is refused, weights unchanged."""
    gen = keras.random.SeedGenerator(3)
    model = keras.Sequential([keras.Input((N_IN,)),
                              L.Dense(32, activation="relu", kernel_initializer=Normed(seed=gen)),
                              L.Dense(10, kernel_initializer=Normed("linear", seed=gen))])
    x, y = data("sequential")
    assert keras_normed.rescale(model, (x, y)).applied
    model = sequential()
    model.layers[0].kernel.assign(model.layers[0].kernel * 1.001)
    before = weights(model)
    with pytest.raises(ValueError, match="differ.*force=True"):
        keras_normed.rescale(model, (x, y))
    assert_unchanged(model, before)


@pytest.mark.parametrize("optimizer", [keras.optimizers.SGD(0.1, momentum=0.9),
                                       keras.optimizers.Adam(0.01),
                                       keras.optimizers.AdamW(0.01, weight_decay=0.1),
                                       keras.optimizers.Lamb(0.01)])
def test_first_step_fused_equals_per_variable(optimizer):
    from keras_normed import engine

    rng = np.random.default_rng(0)
    values = [rng.standard_normal((4, 3)), rng.standard_normal((5,))]
    grads = [rng.standard_normal((4, 3)), 100 * rng.standard_normal((5,))]
    steps = engine.optimizer_steps(optimizer, grads, values)
    one_by_one = [engine.optimizer_steps(optimizer, [g], [v])[0] for g, v in zip(grads, values)]
    for s, ref in zip(steps, one_by_one):
        np.testing.assert_allclose(s, ref, rtol=1e-5, atol=1e-7)
    assert engine.step_exponent(optimizer, grads, values) == (
        2.0 if isinstance(optimizer, keras.optimizers.SGD) else 1.0)


@pytest.mark.parametrize("optimizer", [
    keras.optimizers.SGD(0.1),
    keras.optimizers.SGD(0.1, momentum=0.9),
    keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
    keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.3, 1, 0.5)),
    keras.optimizers.SGD(0.1, weight_decay=0.5),
    keras.optimizers.SGD(0.1, clipnorm=0.01)])
def test_step_norms_equal_the_optimizers_own_step(optimizer):
    # Plain SGD's step norms come from a closed form; the reference runs the optimizer.
    from keras_normed import engine

    rng = np.random.default_rng(1)
    values = [rng.standard_normal((4, 3)), rng.standard_normal((5,))]
    grads = [rng.standard_normal((4, 3)), 10 * rng.standard_normal((5,))]
    found, p = engine.step_norms_and_exponent(optimizer, grads, values)
    steps = engine.optimizer_steps(optimizer, grads, values)
    np.testing.assert_allclose(found, [np.linalg.norm(s) for s in steps], rtol=1e-5)
    assert p == engine.step_exponent(optimizer, grads, values)
    assert optimizer.iterations.numpy() == 0  # the given optimizer never steps


@pytest.mark.parametrize("make", [lambda: keras.optimizers.SGD(0.05, global_clipnorm=1e-2),
                                  lambda: keras.optimizers.Adam(1e-3, global_clipnorm=1e-2)],
                         ids=["sgd", "adam"])
def test_global_clipnorm_growth_is_the_real_first_step(make):
    """``global_clipnorm`` clips by the norm over every trainable gradient, biases included:
    the growth of each kernel is that of a real ``train_on_batch`` step (it read 0.45 of it
    when the clip's norm took in the exponent's samples and left the biases out)."""
    x, y = data("sequential")
    model = sequential()
    model.compile(make(), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    report = keras_normed.growth_report(model, x, y)
    kernels = [layer.kernel for layer in model.layers]
    before = [keras.ops.convert_to_numpy(k).copy() for k in kernels]
    model.train_on_batch(x, y)
    real = [np.linalg.norm(keras.ops.convert_to_numpy(k) - b) / np.linalg.norm(b)
            for k, b in zip(kernels, before)]
    np.testing.assert_allclose(report.column("growth"), real, rtol=2e-3)


def test_norms_on_host_and_on_the_backend_agree_with_numpy(monkeypatch):
    from keras_normed import engine
    from keras_normed.engine import grad

    rng = np.random.default_rng(2)
    arrays = [rng.standard_normal((64, 33)), 3 * rng.standard_normal((7,)),
              rng.standard_normal((2, 3, 4))]
    dtypes = ["float32", "float64", "float16"]
    tensors = [keras.ops.convert_to_tensor(a, dtype=d) for a, d in zip(arrays, dtypes)]
    expected = [np.linalg.norm(np.asarray(a, d).astype(np.float64))
                for a, d in zip(arrays, dtypes)]
    assert all(grad._on_host(t) for t in tensors)  # this CI has no accelerator
    np.testing.assert_allclose(engine.norms(tensors), expected, rtol=1e-5)
    # The backend's own reduction, taken for tensors on an accelerator, gives the same.
    monkeypatch.setattr(grad, "_on_host", lambda t: False)
    np.testing.assert_allclose(engine.norms(tensors), expected, rtol=1e-5)


class ResBlock(keras.layers.Layer):
    """A layer made of layers: its own call holds a residual constraint."""

    def __init__(self, seed, **kwargs):
        super().__init__(**kwargs)
        self.d1 = L.Dense(48, activation="relu", kernel_initializer=_n(seed))
        self.d2 = L.Dense(32, kernel_initializer=_n(seed + 1, "linear"))

    def call(self, h):
        return keras.ops.relu(h + self.d2(self.d1(h)))


class Twice(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.d = L.Dense(32, activation="relu", kernel_initializer=_n(7))

    def call(self, h):
        return self.d(self.d(h))


class TiedByKernel(keras.Model):
    """Reads a kernel outside its layer's call: invisible to the graph."""

    def __init__(self):
        super().__init__()
        self.d1 = L.Dense(32, activation="relu", kernel_initializer=_n(1))
        self.d2 = L.Dense(32, activation="relu", kernel_initializer=_n(2))
        self.out = L.Dense(10, kernel_initializer=_n(3, "linear"))

    def call(self, x):
        h = self.d2(self.d1(x))
        return self.out(keras.ops.relu(keras.ops.matmul(h, keras.ops.transpose(self.d2.kernel))))


def _raw_relu(x):
    """The backend's own relu, not keras.ops: a symbolic trace cannot read it."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.nn.relu(x)
    return tf.nn.relu(x)


class Untraceable(keras.Model):
    def __init__(self):
        super().__init__()
        self.d1 = L.Dense(32, activation="relu", kernel_initializer=_n(1))
        self.d2 = L.Dense(32, kernel_initializer=_n(2, "linear"))
        self.out = L.Dense(10, kernel_initializer=_n(3, "linear"))

    def call(self, x):
        h = self.d1(x)
        return self.out(_raw_relu(h + self.d2(h)))


class DictInput(keras.Model):
    def __init__(self):
        super().__init__()
        self.da = L.Dense(16, activation="relu", kernel_initializer=_n(1))
        self.db = L.Dense(16, activation="relu", kernel_initializer=_n(2))
        self.out = L.Dense(10, kernel_initializer=_n(3, "linear"))

    def call(self, x):
        return self.out(keras.ops.concatenate([self.da(x["a"]), self.db(x["b"])], axis=-1))


def _with(layer):
    x = keras.Input((N_IN,))
    h = L.Dense(32, activation="relu", kernel_initializer=_n(1))(x)
    return keras.Model(x, L.Dense(10, kernel_initializer=_n(3, "linear"))(layer(h)))


@pytest.mark.parametrize("build", [lambda: _with(ResBlock(20)), lambda: _with(Twice()),
                                   lambda: DictInput()], ids=["block", "twice", "dict"])
def test_layers_made_of_layers_and_traced_dicts_keep_the_function(build):
    model = build()
    x, y = data("dict_inputs" if isinstance(model, DictInput) else "sequential")
    out0 = flat(model(x, training=True))
    report = keras_normed.rescale(model, (x, y), move="all")
    assert report.applied and report.homogeneous
    assert rel(flat(model(x, training=True)), out0) < 1e-5


@pytest.mark.parametrize("cls", [TiedByKernel, Untraceable])
def test_unreadable_use_of_kernels_is_refused(cls):
    model = cls()
    x, y = data("sequential")
    model(x)
    before = weights(model)
    with pytest.raises(ValueError, match="Refused|refused"):
        keras_normed.rescale(model, (x, y), move="all")
    assert_unchanged(model, before)
    if cls is Untraceable:  # no batch to check the output with: refused up front
        with pytest.raises(ValueError, match="cannot be read"):
            keras_normed.rescale(model)
        assert_unchanged(model, before)


def test_output_check_runs_on_the_whole_batch_or_not_at_all(monkeypatch):
    """A measured check runs on the whole probe batch (here with an op across rows, centering
    over the batch); a graph of Keras's own layers read exactly is not run again."""
    from keras_normed import scaling

    x_in = keras.Input((N_IN,))
    h = L.Dense(32, activation="relu", kernel_initializer=_n(1))(x_in)
    h = L.Dense(32, activation="relu", kernel_initializer=_n(2))(
        h - keras.ops.mean(h, axis=0, keepdims=True))
    model = keras.Model(x_in, L.Dense(10, kernel_initializer=_n(3, "linear"))(h))
    sizes, predict = [], scaling.engine.predict
    monkeypatch.setattr(scaling.engine, "predict",
                        lambda m, b, t=False: sizes.append(b.size) or predict(m, b, t))
    x, y = data("sequential")
    out0 = flat(model(x, training=True))
    report = keras_normed.rescale(model, (x, y), move="all", check="always")
    assert sizes == [len(x)]  # the whole batch: a sample of rows can miss a change
    change = rel(flat(model(x, training=True)), out0)
    assert report.applied and report.homogeneous and change < 1e-5
    assert report.output_change == pytest.approx(change, rel=0.1, abs=1e-7)
    sizes.clear()  # check="auto": Keras's own layers, read exactly, are not run again
    report = keras_normed.rescale(compiled("sequential"), (x, y), move="all")
    assert sizes == [] and report.summary["check"] == "kept by construction"


def _hidden_use(wrap):
    """``d1``'s kernel used inside ``wrap`` (a Lambda or a user's layer) at the input, where
    no note marks it: the graph sees one use of ``d1``."""
    x_in = keras.Input((N_IN,))
    d1 = L.Dense(32, activation="relu", kernel_initializer=_n(1))
    h1 = d1(x_in)
    h0 = wrap(lambda x: keras.ops.relu(keras.ops.matmul(x, d1.kernel)))(x_in)
    return keras.Model(x_in, L.Dense(10, kernel_initializer=_n(3, "linear"))(
        L.Multiply()([h0, h1])))


class _UserLambda(keras.layers.Layer):
    def __init__(self, fn, **kwargs):
        super().__init__(**kwargs)
        self.fn = fn

    def call(self, x):
        return self.fn(x)


@pytest.mark.parametrize("wrap", [L.Lambda, _UserLambda], ids=["lambda", "user_layer"])
def test_a_kernel_used_in_code_the_graph_does_not_read_is_measured_and_refused(wrap):
    """check='auto' skips the output check only for Keras's own layers; a Lambda's or a user
    layer's call may use a kernel where the graph does not show: measured, and refused."""
    model = _hidden_use(wrap)
    x, y = data("sequential")
    before = weights(model)
    with pytest.raises(ValueError, match="outside its layer's call"):
        keras_normed.rescale(model, (x, y), move="all")
    assert_unchanged(model, before)


def test_check_option_is_validated():
    x, y = data("sequential")
    with pytest.raises(ValueError, match="Invalid `check` 'never'"):
        keras_normed.rescale(compiled("sequential"), (x, y), check="never")
    with pytest.raises(ValueError, match="check='always' measures the output on the probe"):
        keras_normed.rescale(compiled("sequential"), check="always")
    with pytest.raises(ValueError, match="check='always'"):
        keras_normed.callbacks.NormedScaling(check="always")


@pytest.mark.parametrize("power", ["square", "times_itself", "sqrt_of_square"])
def test_homogeneous_powers_keep_the_function(power):
    """``ops.square(h)`` is ``h * h`` (degree 2), ``ops.sqrt`` degree 1/2: both read exactly
    (``sqrt(square(h))`` of a linear layer: no zeros, so a finite gradient)."""
    x_in = keras.Input((N_IN,))
    h = L.Dense(32, kernel_initializer=_n(1, "linear"))(x_in)
    h = {"square": keras.ops.square, "times_itself": lambda t: t * t,
         "sqrt_of_square": lambda t: keras.ops.sqrt(keras.ops.square(t))}[power](h)
    h = L.Dense(32, activation="relu", kernel_initializer=_n(2))(h)
    model = keras.Model(x_in, L.Dense(10, kernel_initializer=_n(3, "linear"))(h))
    x, y = data("sequential")
    out0 = flat(model(x, training=True))
    report = keras_normed.rescale(model, (x, y), move="all")
    assert report.applied and report.homogeneous, report.notes
    assert rel(flat(model(x, training=True)), out0) < 1e-5
    assert report.spread_after < 1.5


def test_constants_and_attention_are_noted_and_warned():
    x_in = keras.Input((N_IN,))
    h = L.Dense(32, activation="relu", kernel_initializer=_n(1))(x_in)
    h = L.Dense(32, activation="relu", kernel_initializer=_n(2))(keras.ops.add(h, 1.0))
    model = keras.Model(x_in, L.Dense(10, kernel_initializer=_n(3, "linear"))(h))
    with pytest.warns(RuntimeWarning, match="constant"):
        report = keras_normed.rescale(model, data("sequential"), move="all")
    assert any("constant" in n for n in report.notes)
    # With dropout MultiHeadAttention computes its softmax itself: noted, measured, warned.
    seq = keras.Input((6, N_IN))
    att = L.MultiHeadAttention(2, 8, dropout=0.1, kernel_initializer="normed")(seq, seq)
    model = keras.Model(seq, L.Dense(10, kernel_initializer=_n(3, "linear"))(L.Flatten()(att)))
    x = np.random.default_rng(0).standard_normal((64, 6, N_IN)).astype("float32")
    with pytest.warns(RuntimeWarning, match="not positively homogeneous"):
        keras_normed.rescale(model, (x, np.zeros(64, "int64")), move="all")


def test_attention_keeps_its_function_with_query_and_key_moving_oppositely():
    """softmax(q k^T) v is kept where q and k scale oppositely and the output follows v; read
    as not homogeneous, q, k and v were tied, the output moved 6-30 % (a new-user trial)."""
    keras.utils.set_random_seed(0)
    seq = keras.Input((6, N_IN))
    h = L.Dense(16, activation="relu", kernel_initializer=_n(1))(seq)
    att = L.MultiHeadAttention(2, 8, kernel_initializer="normed", name="mha")(h, h)
    model = keras.Model(seq, L.Dense(10, kernel_initializer=_n(3, "linear"))(L.Flatten()(att)))
    x = np.random.default_rng(0).standard_normal((64, 6, N_IN)).astype("float32")
    before = keras.ops.convert_to_numpy(model(x))
    report = keras_normed.rescale(model, (x, np.arange(64) % 10), move="all")
    assert not report.notes and report.output_change < 1e-5
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), before, rtol=1e-4,
                               atol=1e-5 * np.abs(before).max())
    scales = {path.split("/")[-2]: c for path, c in report.scales.items()}
    dense = report.scales[model.layers[1].kernel.path]
    assert scales["query"] * scales["key"] * dense**2 == pytest.approx(1.0, rel=1e-6)
    assert abs(math.log(scales["query"] / scales["key"])) > 1e-3  # they move apart
    assert report.spread_after < report.spread_before / 2


def test_a_recurrent_layer_keeps_its_input_scale():
    """A GRU between Dense layers let the scales through as if equivariant: 0.24 moved."""
    keras.utils.set_random_seed(0)
    seq = keras.Input((6, N_IN))
    h = L.Dense(16, activation="relu", kernel_initializer=_n(1))(seq)
    h = L.Dense(16, activation="relu", kernel_initializer=_n(2))(h)
    out = L.Dense(10, kernel_initializer=_n(3, "linear"))(L.GRU(8)(h))
    model = keras.Model(seq, out)
    x = np.random.default_rng(0).standard_normal((64, 6, N_IN)).astype("float32")
    before = keras.ops.convert_to_numpy(model(x))
    report = keras_normed.rescale(model, (x, np.arange(64) % 10), move="all")
    assert report.output_change < 1e-5 and any("GRU" in n for n in report.notes)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), before, atol=1e-5)
    first, second = (report.scales[model.layers[i].kernel.path] for i in (1, 2))
    assert first * second == pytest.approx(1.0, rel=1e-6)


def test_a_missing_target_is_named():
    model = two_outputs()
    model.compile(keras.optimizers.SGD(0.01), loss={
        "cls": keras.losses.SparseCategoricalCrossentropy(from_logits=True), "reg": "mse"})
    x, y = data("two_outputs")
    before = weights(model)
    with pytest.raises(ValueError, match=r"y has no key for output\(s\) \['reg'\]"):
        keras_normed.rescale(model, (x, {"cls": y["cls"]}))
    assert_unchanged(model, before)


def test_data_shapes_checked_against_the_model():
    model = two_outputs()
    x, y = data("two_outputs")
    before = weights(model)
    bad = {"cls": np.eye(5)[y["cls"] % 5], "reg": y["reg"]}
    with pytest.raises(ValueError, match=r"y\['cls'\] has shape \(128, 5\)"):
        keras_normed.rescale(model, (x, bad))
    with pytest.raises(ValueError, match="x has shape"):
        keras_normed.rescale(model, (x[:, :8], y))
    with pytest.raises(ValueError, match=r"y\['cls'\] holds class indices from 100 to 109, "
                                         r"but the output it is for has 10 units"):
        keras_normed.rescale(model, (x, {"cls": y["cls"] % 10 + 100, "reg": y["reg"]}))
    assert_unchanged(model, before)
    dict_model = dict_inputs()  # a dict input of the wrong width is named by its key
    xd, yd = data("dict_inputs")
    before = weights(dict_model)
    with pytest.raises(ValueError, match=r"`data`: x\['b'\] has shape \(128, 8\), but input "
                                         r"'b' expects \(None, 16\)"):
        keras_normed.rescale(dict_model, ({"a": xd["a"], "b": xd["a"]}, yd))
    assert_unchanged(dict_model, before)
    # Per-output sample weights on an uncompiled model, and nested Python lists.
    sw = {"cls": np.ones(128, "float32"), "reg": np.full(128, 0.5, "float32")}
    assert keras_normed.rescale(model, (x, y, sw)).applied
    model = sequential()
    xs, ys = data("sequential")
    assert keras_normed.rescale(model, (xs.tolist(), ys.tolist())).applied


def test_loss_per_output_given_as_compile_takes_it():
    x, y = data("two_outputs")
    sce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    for loss in ({"cls": sce, "reg": "mse"}, [sce, "mse"]):
        assert keras_normed.rescale(two_outputs(), (x, y), loss=loss).applied
    model = two_outputs()
    before = weights(model)
    with pytest.raises(ValueError, match="`loss` holds 1"):
        keras_normed.rescale(model, (x, y), loss=[sce])
    with pytest.raises(ValueError, match="unknown loss name"):
        keras_normed.rescale(model, (x, y), loss="no_such_loss")
    assert_unchanged(model, before)


def test_other_normed_weights_are_reported_as_left():
    model = keras.Sequential([
        keras.Input((8, 8, 3)),
        L.SeparableConv2D(4, 3, depthwise_initializer="normed", pointwise_initializer="normed",
                          activation="relu"),
        L.Flatten(), L.Dense(10, kernel_initializer="normed")])
    x = np.random.default_rng(0).standard_normal((32, 8, 8, 3)).astype("float32")
    report = keras_normed.rescale(model, (x, np.arange(32) % 10))
    assert len(report.left) == 2 and "depthwise_initializer" in str(report)
    with pytest.raises(TypeError, match="`verbose`"):
        keras_normed.rescale(sequential(), data("sequential"), verbose="yes")


def test_move_structured_keeps_plain_layers_together():
    from keras_normed.layers import CirculantDense

    plain = sequential()
    x, y = data("sequential")
    report = keras_normed.rescale(plain, (x, y), move="structured")
    assert list(report.scales.values()) == pytest.approx([1.0, 1.0, 1.0])  # He exactly
    model = keras.Sequential([keras.Input((N_IN,)),
                              L.Dense(32, activation="relu", kernel_initializer=_n(1)),
                              CirculantDense(64, block_size=32, activation="relu"),
                              L.Dense(10, kernel_initializer=_n(3, "linear"))])
    out0 = flat(model(x, training=True))
    report = keras_normed.rescale(model, (x, y), move="structured")
    c = list(report.scales.values())
    assert c[0] == pytest.approx(c[2]) and c[1] != pytest.approx(c[0])
    assert c[0] * c[1] * c[2] == pytest.approx(1.0, rel=1e-6)
    assert rel(flat(model(x, training=True)), out0) < 1e-5
    with pytest.raises(ValueError, match="`move`"):
        keras_normed.rescale(sequential(), (x, y), move="shared")


def test_no_kernel_skipped_silently():
    """A SeparableConv2D's depthwise and pointwise kernels: rows of growth_report, `left`
    entries of lsuv and data_dependent_init (never silently skipped)."""
    def model():
        return keras.Sequential([
            keras.Input((8, 8, 4)),
            L.SeparableConv2D(8, 3, padding="same", activation="relu", name="sep"),
            L.DepthwiseConv2D(3, padding="same", activation="relu", name="dw"),
            L.Conv2D(8, 3, activation="relu"), L.Flatten(), L.Dense(10)])
    x = np.random.default_rng(0).standard_normal((32, 8, 8, 4)).astype("float32")
    report = keras_normed.growth_report(model(), x, np.arange(32) % 10)
    rows = {r.path.split("/", 1)[1]: r for r in report.rows}
    assert list(rows)[:3] == ["sep/depthwise_kernel", "sep/pointwise_kernel", "dw/kernel"]
    assert (rows["sep/depthwise_kernel"].fan_in, rows["sep/pointwise_kernel"].fan_in) == (9, 4)
    assert all(r.growth > 0 for r in report.rows) and report.left == []
    for fn in (keras_normed.lsuv, keras_normed.data_dependent_init):
        left = fn(model(), x).left
        assert [entry.split(":")[0] for entry in left] == ["sep.depthwise_kernel",
                                                           "sep.pointwise_kernel"], left


def test_custom_weight_with_its_own_normed_initializer_is_listed():
    """A custom layer's weight `w` drawn by its own Normed `w_initializer`: not rescaled (only
    kernels are), and said so in `left`; a BatchNormalization's gamma/beta are not listed."""
    class Scaled(L.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.w_initializer = keras_normed.Normed("linear", seed=3)

        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1], shape[-1]), initializer=self.w_initializer)

        def call(self, x):
            return keras.ops.matmul(x, self.w)

    model = keras.Sequential([keras.Input((8,)), Scaled(name="scaled"),
                              L.Dense(8, "relu", kernel_initializer=_n(1)),
                              L.BatchNormalization(),
                              L.Dense(4, kernel_initializer=_n(2, "linear"))])
    x = np.random.default_rng(0).standard_normal((32, 8)).astype("float32")
    left = keras_normed.rescale(model, (x, np.arange(32) % 4)).summary["left"]
    assert [entry.split(":")[0] for entry in left] == ["scaled.w"], left
    assert [e.split(":")[0] for e in keras_normed.lsuv(model, x, seed=0).left] == ["scaled.w"]


def test_a_loss_dict_may_leave_outputs_out():
    """As `compile` takes it: outputs without a key in a `loss` dict get no loss and need no
    target (growth_report demanded a target for each); their kernels then get no gradient:
    rescale keeps their scale and says so (it refused, until a trial showed `fit` trains
    such a model)."""
    inp = keras.Input((8,))
    h = L.Dense(16, activation="relu", kernel_initializer=_n(1))(inp)
    model = keras.Model(inp, {"cls": L.Dense(4, name="cls", kernel_initializer=_n(2))(h),
                              "reg": L.Dense(1, name="reg", kernel_initializer=_n(3))(h)})
    x = np.random.default_rng(0).standard_normal((32, 8)).astype("float32")
    y = np.arange(32) % 4
    sce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    report = keras_normed.growth_report(model, x, {"cls": y}, loss={"cls": sce})
    growth = {r.path: r.growth for r in report.rows}
    assert growth["reg/kernel"] == 0 and growth["cls/kernel"] > 0
    both = keras_normed.growth_report(model, x, {"cls": y, "reg": np.zeros((32, 1))},
                                      loss={"cls": sce, "reg": "mse"})
    assert {r.path: r.growth for r in both.rows}["cls/kernel"] == pytest.approx(
        growth["cls/kernel"], rel=1e-5)  # the reg loss's gradient does not reach cls
    with pytest.raises(ValueError, match="no entries for outputs \\['cls'\\]"):
        keras_normed.growth_report(model, x, {"reg": y}, loss={"cls": sce})
    reg = keras.ops.convert_to_numpy(model.get_layer("reg").kernel)
    with pytest.warns(RuntimeWarning, match="an output the loss leaves out"):
        report = keras_normed.rescale(model, (x, {"cls": y}), loss={"cls": sce}, move="all")
    assert report.summary["no_gradient"] == ["reg/kernel"]
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.get_layer("reg").kernel), reg)


def test_dict_model_keyed_as_fit_takes_it():
    """x keyed by the keys of the model's input dict (as `fit` takes it), not the Inputs'
    names; a missing key is named with what is expected."""
    a, b = keras.Input((8,), name="a"), keras.Input((3,), name="b")
    h = L.Concatenate()([a, b])
    out = L.Dense(4, kernel_initializer=_n(1, "linear"))(L.Dense(8, "relu",
                                                                kernel_initializer=_n(2))(h))
    rng = np.random.default_rng(0)
    x = {"img": rng.standard_normal((32, 8)).astype("float32"),
         "meta": rng.standard_normal((32, 3)).astype("float32")}
    y = np.arange(32) % 4
    model = keras.Model({"img": a, "meta": b}, out)
    before = weights(model)
    with pytest.raises(ValueError, match=r"missing \['meta'\]\. Key"):
        keras_normed.rescale(model, ({"img": x["img"]}, y))
    with pytest.raises(ValueError, match=r"missing \['meta'\], and \['c'\] name no input"):
        keras_normed.lsuv(model, {"img": x["img"], "c": x["meta"]}, seed=0)
    assert_unchanged(model, before)
    assert keras_normed.rescale(model, (x, y)).applied
    assert len(keras_normed.growth_report(model, x, y).rows) == 2
    assert keras_normed.lsuv(model, x, seed=0).converged
    assert keras_normed.data_dependent_init(model, x).applied


def test_input_named_as_the_user_knows_it():
    model = keras.Sequential([keras.Input((N_IN,)), L.Dense(4)])
    with pytest.raises(ValueError, match=r"x has shape \(8, 3\), but the model's input "
                                         r"expects \(None, 16\)") as info:
        keras_normed.lsuv(model, np.ones((8, 3), "float32"))
    assert "keras_tensor" not in str(info.value)
    model = keras.Sequential([keras.Input((N_IN,), name="pixels"), L.Dense(4)])
    with pytest.raises(ValueError, match="input 'pixels' expects"):
        keras_normed.lsuv(model, np.ones((8, 3), "float32"))


def test_a_loss_scale_optimizer_steps_as_its_inner_optimizer():
    # Mixed precision compiles a LossScaleOptimizer; the probe's gradients are of the unscaled
    # loss, so the growth is the inner SGD's (stepping the wrapper also failed under JAX).
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((32, 8)).astype("float32"), rng.integers(0, 4, 32)
    reports = []
    for opt in (keras.optimizers.SGD(0.01),
                keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.01))):
        model = keras.Sequential([keras.Input((8,)),
                                  L.Dense(16, activation="relu", kernel_initializer=_n(1)),
                                  L.Dense(4, kernel_initializer=_n(2, "linear"))])
        model.compile(opt, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        reports.append(keras_normed.rescale(model, (x, y)))
    for key in ("growth_before", "scale"):
        np.testing.assert_allclose(reports[1].column(key), reports[0].column(key), rtol=1e-5)


def test_weight_normalization_inside_time_distributed():
    """The direction v of a WeightNormalization held by a TimeDistributed was read as scaling
    the output: move="all" changed the function by 0.75 and was refused ("a kernel used outside
    its layer's call"); read as bare, only g scales it."""
    inputs = keras.Input((4, 16))
    wn = WeightNormalization(L.Dense(32, activation="relu", kernel_initializer=_n(1)))
    h = L.Flatten()(L.TimeDistributed(wn)(inputs))
    model = keras.Model(inputs, L.Dense(3, kernel_initializer=_n(2, "linear"))(h))
    x = np.random.default_rng(0).standard_normal((64, 4, 16)).astype("float32")
    out0 = flat(model(x))
    report = keras_normed.rescale(model, (x, np.arange(64) % 3), move="all")
    assert report.applied and report.summary["output_change"] < 1e-5
    assert rel(flat(model(x)), out0) < 1e-5


def _mid(build):
    """``Dense(relu) -> build(h) -> Dense(linear)``: a middle part read from the graph."""
    def make():
        x_in = keras.Input((N_IN,))
        h = L.Dense(32, activation="relu", kernel_initializer=_n(1))(x_in)
        return keras.Model(x_in, L.Dense(10, kernel_initializer=_n(3, "linear"))(build(h)))
    return make


def _clipped(t):  # a user's activation that is named relu
    return keras.activations.relu(t, max_value=0.3)


def _dense(**kwargs):
    kwargs.setdefault("activation", "relu")
    return L.Dense(32, kernel_initializer=_n(2, "linear"), **kwargs)


class _ReadsKernelInCall(keras.Model):
    """A functional model whose own `call` uses a kernel beyond its graph."""

    def call(self, inputs, training=None):
        out = super().call(inputs, training=training)
        return out * keras.ops.sqrt(keras.ops.sum(keras.ops.square(self.layers[1].kernel)))


def _functional_subclass():
    x_in = keras.Input((N_IN,))
    h = L.Dense(32, activation="relu", kernel_initializer=_n(1))(x_in)
    return _ReadsKernelInCall(x_in, L.Dense(10, kernel_initializer=_n(3, "linear"))(h))


# Each once kept by construction by the walk while the output moved (a new-user trial):
# now noted (a warning with the measured change) or measured and refused.
MISREAD = {
    "relu_layer_max_value": _mid(lambda h: L.Activation(L.ReLU(max_value=0.3))(
        _dense(activation=None)(h))),
    "own_fn_named_relu": _mid(lambda h: _dense(activation=_clipped)(h)),
    "spectral_norm": _mid(lambda h: L.SpectralNormalization(_dense())(h)),
    "weight_norm_tanh": _mid(lambda h: WeightNormalization(_dense(activation="tanh"))(h)),
    "weight_norm_bias": _mid(lambda h: WeightNormalization(_dense(
        bias_initializer=keras.initializers.Constant(0.5)))(h)),
    "dot_normalized": _mid(lambda h: L.Multiply()([
        _dense()(h), L.Dot(axes=1, normalize=True)([_dense()(h), _dense()(h)])])),
    "add_tensor_constant": _mid(lambda h: keras.ops.add(
        _dense(activation=None)(h), keras.ops.convert_to_tensor(0.5))),
    "add_layer_constant": _mid(lambda h: L.Add()([
        _dense(activation=None)(h), keras.ops.ones((1, 32))])),
    "add_variable": _mid(lambda h: keras.ops.add(
        _dense(activation=None)(h), keras.Variable(np.full((32,), 0.5, "float32")))),
    "where_constant": _mid(lambda h: keras.ops.where(np.arange(32) % 2 == 0, _dense()(h), 1.0)),
    "pad_constant": _mid(lambda h: keras.ops.pad(_dense()(h), [[0, 0], [2, 2]],
                                                 constant_values=1.0)),
    "max_initial": _mid(lambda h: (lambda t: L.Concatenate()([
        t, keras.ops.max(t, axis=-1, keepdims=True, initial=2.0)]))(_dense()(h))),
    "cast_to_int": _mid(lambda h: (lambda t: L.Concatenate()([
        t, keras.ops.cast(keras.ops.cast(t * 3.0, "int32"), "float32")]))(_dense()(h))),
    "functional_subclass": _functional_subclass,
    "weight_norm_epsilon": _mid(lambda h: WeightNormalization(
        L.Dense(32, activation="relu", kernel_initializer=_n(2)), epsilon=1.0)(h)),
    "relu_subclass_as_activation": _mid(lambda h: L.Activation(_TanhReLU())(
        _dense(activation=None)(h))),
    "float8_cast": _mid(lambda h: (lambda t: L.Concatenate()([t, keras.ops.cast(
        keras.ops.cast(t, "float8_e4m3fn"), "float32")]))(_dense()(h))),
    "call_set_on_instance": lambda: _patched(_mid(lambda h: _dense()(h))()),
    "time_distributed_tanh": _mid(lambda h: L.Flatten()(L.TimeDistributed(
        _dense(activation="tanh"))(L.Reshape((2, 16))(h)))),
    "reads_moving_statistics": _mid(lambda h: (lambda bn: keras.ops.multiply(
        bn(_dense(activation=None)(h)), bn.moving_variance))(
            L.BatchNormalization(epsilon=0, center=False, scale=False))),
    "bfloat16_cast": _mid(lambda h: (lambda t: L.Concatenate()([t, keras.ops.cast(
        keras.ops.cast(t, "bfloat16"), "float32")]))(_dense()(h))),
}


class _TanhDense(L.Dense):
    def call(self, inputs, training=None):
        return keras.ops.tanh(super().call(inputs))


def test_without_data_a_call_read_by_assumption_is_named():
    """The analytic rule measures nothing: a layer of the user's own (here a Dense subclass
    adding tanh) is read by assumption, so a rescale that moves it warns and names it; a
    wrapper's inner tanh is noted."""
    for build, match in ((_mid(lambda h: _TanhDense(32, kernel_initializer=_n(2))(h)),
                          "without a probe batch.*tanh_dense"),
                         (MISREAD["time_distributed_tanh"], "not positively homogeneous")):
        with pytest.warns(RuntimeWarning, match=match):
            keras_normed.rescale(build(), move="all")


def _multiply_by_kernel():
    x_in = keras.Input((N_IN,))
    h = L.Dense(32, activation="relu", kernel_initializer=_n(1))(x_in)
    d2 = L.Dense(32, activation="relu", kernel_initializer=_n(2))
    g = d2(keras.ops.mean(x_in, axis=-1, keepdims=True))  # d2.kernel: (1, 32)
    m = L.Multiply()([h, d2.kernel])
    return keras.Model(x_in, L.Dense(10, kernel_initializer=_n(3, "linear"))(
        L.Concatenate()([m, g])))


def test_batch_norm_in_inference_mode_is_free_as_in_training():
    """``training=False``: BN uses its moving statistics, which follow its input's scale, so
    it is scale-invariant up to epsilon there too (it was read as passing the scale on, which
    counted the scale twice: 0.59 moved)."""
    x, y = data("sequential")
    model = batchnorm()
    model(x, training=True)  # moving statistics away from (0, 1)
    out0 = flat(model(x, training=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # epsilon's note
        report = keras_normed.rescale(model, (x, y), move="all", training=False, force=True)
    assert report.applied and report.summary["moving_statistics"]
    assert rel(flat(model(x, training=False)), out0) < 1e-2


class _TanhReLU(L.ReLU):
    def call(self, inputs):
        return keras.ops.tanh(inputs)


def _patched(model):
    """A model whose `call` is replaced on the instance (Keras's class reads as exact)."""
    call = model.call
    model.call = lambda *args, **kwargs: keras.ops.tanh(call(*args, **kwargs))
    return model


# Read exactly (kept by construction), and kept: a cast to bool is h != 0 (no scale); an
# einsum that reads one kernel twice has it twice in its form.
def _einsum_twice():
    x_in = keras.Input((N_IN,))
    d = L.Dense(32, activation="relu", kernel_initializer=_n(1))
    h = d(keras.ops.pad(x_in, [[0, 0], [0, 16]]))
    h = keras.ops.einsum("bi,ij,jk->bk", h, d.kernel, d.kernel)
    return keras.Model(x_in, L.Dense(10, kernel_initializer=_n(3, "linear"))(h))


KEPT = {
    "multiply_layer_by_kernel": _multiply_by_kernel,
    "bool_cast": _mid(lambda h: (lambda t: L.Concatenate()([t, keras.ops.cast(
        keras.ops.cast(t, "bool"), "float32")]))(_dense()(h))),
    "einsum_kernel_twice": _einsum_twice,
}


@pytest.mark.parametrize("name", sorted(KEPT))
def test_read_exactly_and_kept(name):
    model = KEPT[name]()
    x, y = data("sequential")
    out0 = flat(model(x, training=True))
    report = keras_normed.rescale(model, (x, y), move="all")
    assert report.summary["check"] == "kept by construction"
    assert report.spread_after <= 1.05 * report.summary["spread_allowed"]
    assert rel(flat(model(x, training=True)), out0) < 1e-5


def test_alpha_dropout_in_training_mode_is_noted():
    model = _mid(lambda h: L.AlphaDropout(0.2)(_dense()(h)))()
    report = keras_normed.rescale(model, data("sequential"), move="all")
    assert report.summary["check"] == "measured"
    assert any("AlphaDropout in training mode" in n for n in report.notes)


@pytest.mark.parametrize("name", sorted(MISREAD))
def test_no_graph_that_moves_the_output_is_kept_by_construction(name):
    """check='auto' skips the measurement only where the graph proves the function kept: for
    each of these the output is measured, and a change is either noted (and warned with the
    measured value) or refused with the weights restored."""
    model = MISREAD[name]()
    x, y = data("sequential")
    out0 = flat(model(x, training=True))
    before = weights(model)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            report = keras_normed.rescale(model, (x, y), move="all")
    except ValueError as err:
        assert "refused" in str(err).lower()
        assert_unchanged(model, before)
        return
    change = rel(flat(model(x, training=True)), out0)
    assert report.summary["check"] == "measured", (name, change)
    assert report.output_change == pytest.approx(change, rel=0.1, abs=1e-7)
    if change > 1e-3:
        assert report.notes and any(f"changed by {report.output_change:.3g}" in str(w.message)
                                    for w in caught)


def test_a_mask_carries_no_scale():
    """``Embedding(mask_zero=True)`` hands a boolean mask to the next layers: it was read as an
    input whose scale must equal the data's, which froze every kernel after it (scales 1, the
    spread left as it was, without a note)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 20, (64, 6)).astype("int32")
    x[:, 4:] = 0
    y = np.arange(64) % 10
    x_in = keras.Input((6,), dtype="int32")
    h = L.Embedding(20, 16, mask_zero=True)(x_in)
    h = L.GlobalAveragePooling1D()(L.Dense(16, activation="relu", kernel_initializer=_n(1))(h))
    model = keras.Model(x_in, L.Dense(10, kernel_initializer=_n(3, "linear"))(h))
    out0 = flat(model(x))
    report = keras_normed.rescale(model, (x, y), move="all")
    assert report.applied and report.homogeneous
    assert report.spread_before > 1.5 and report.spread_after < 1.01
    assert min(report.scales.values()) < 0.95
    assert rel(flat(model(x)), out0) < 1e-5
