"""keras_normed.rescale and the NormedScaling callback: equal growth, safety, marks."""

import math
import warnings

import keras
import numpy as np
import pytest

import keras_normed
from examples.paper.networks import paper_net, residual_net
from keras_normed import scaling
from keras_normed.callbacks import NormedScaling
from keras_normed.diagnostics import growth_report
from keras_normed.initializers import Normed


def _batch(n, seed, side=8):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, side, side, 1)).astype("float32")
    # Labels tied to the input, so gradients carry a coherent signal as with real digits.
    y = (x.reshape(n, -1)[:, :10].argmax(-1)).astype("int32")
    return x, y


def _np(tensor):
    return np.asarray(keras.ops.convert_to_numpy(tensor))


def _kernels(model):
    return [keras.ops.convert_to_numpy(v).copy() for v in model.weights]


def _assert_same(before, model):
    for a, b in zip(before, _kernels(model)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("net", ["a", "b", "c", "d"])
def test_probe_equalizes_growth_on_paper_like_nets(net):
    model = paper_net(net, "normed", seed=1, size="tiny")
    x, y = _batch(128, 0)
    base = {w.path: keras.ops.convert_to_numpy(w) for w in model.weights}
    logits = keras.ops.convert_to_numpy(model(x))
    report = keras_normed.rescale(model, (x, y), move="all")
    assert report.applied and report.rule == "probe"
    assert report.spread_after <= 1.5
    assert math.exp(np.mean(np.log(list(report.scales.values())))) == pytest.approx(1, rel=1e-6)
    for path, c in report.scales.items():
        w = next(v for v in model.weights if v.path == path)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(w), base[path] * c, rtol=1e-5)
    # ReLU + max-pool + zero biases: positively homogeneous, so the function is unchanged.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), logits, rtol=2e-3,
                               atol=1e-5 * np.abs(logits).max())
    # Independent re-measurement on the probe batch.
    assert growth_report(model, x, y).spread <= 1.5


def test_growth_equal_on_another_batch():
    model = paper_net("a", "normed", seed=2, size="tiny")
    x, y = _batch(256, 1)
    keras_normed.rescale(model, (x, y), move="all")
    x2, y2 = _batch(256, 2)
    assert growth_report(model, x2, y2).spread < 2.0
    # He's spread depends on the draw (1.2 to 4.4 over these seeds and the two backends'
    # generators); some draw of it is far from equal growth.
    he = [growth_report(paper_net("a", "he", seed=s, size="tiny"), x2, y2).spread
          for s in (2, 3, 4)]
    assert max(he) > 2.0, he


def test_residual_batchnorm_net():
    model = residual_net("normed", seed=0)
    x, y = _batch(64, 3)
    report = keras_normed.rescale(model, (x, y), move="all")
    assert report.applied and report.spread_after <= 1.5
    assert len(report.layers) == 6  # stem, 2 x 2 block convs, head


def test_batchnorm_moving_statistics_follow_the_kernel_scale():
    """A kernel before BatchNormalization is free in training mode; its moving statistics are
    scaled with it, so inference (``predict``) keeps its function too, exactly (``var +
    epsilon`` scales by ``c**2``), after a few training-mode updates as well."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 16)).astype("float32")
    y = rng.integers(0, 10, 64)
    model = keras.Sequential([
        keras.Input((16,)), keras.layers.Dense(32, kernel_initializer=Normed(seed=1)),
        keras.layers.BatchNormalization(), keras.layers.ReLU(),
        keras.layers.Dense(32, activation="relu", kernel_initializer=Normed(seed=2)),
        keras.layers.Dense(10, kernel_initializer=Normed("linear", seed=3))])
    bn = model.layers[1]
    bn.moving_mean.assign(rng.standard_normal(32).astype("float32"))  # as after some steps
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, 32).astype("float32"))
    mean0, var0 = (keras.ops.convert_to_numpy(v) for v in (bn.moving_mean, bn.moving_variance))
    before = keras.ops.convert_to_numpy(model(x, training=False))
    report = keras_normed.rescale(model, (x, y), move="all")
    c = report.scales[model.layers[0].kernel.path]
    assert report.applied and abs(c - 1.0) > 0.05
    assert report.summary["moving_statistics"] == [bn.name]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_mean), c * mean0, rtol=1e-5)
    # var + epsilon scales by c**2 (var alone left inference 1.8e-3 off through 4 BN layers).
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_variance),
                               c**2 * (var0 + bn.epsilon) - bn.epsilon, rtol=1e-5)
    after = keras.ops.convert_to_numpy(model(x, training=False))
    change = np.linalg.norm(after - before) / np.linalg.norm(before)
    assert change < 1e-5, change


def test_separable_conv_is_read_as_a_linear_layer():
    """SeparableConv2D has depthwise and pointwise kernels but no `kernel`: linear with a zero
    bias, it is homogeneous (no note), as DepthwiseConv2D is."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((32, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 4, 32)
    for middle in (keras.layers.SeparableConv2D(8, 3), keras.layers.DepthwiseConv2D(3)):
        model = keras.Sequential([
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(6, 3, activation="relu", kernel_initializer=Normed(seed=1)),
            middle, keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(4, kernel_initializer=Normed("linear", seed=2))])
        report = keras_normed.rescale(model, (x, y), check="always")
        assert report.applied and report.notes == [], (type(middle).__name__, report.notes)
        assert report.output_change < 1e-5


def test_adam_sign_step_exponent():
    model = paper_net("c", "normed", seed=0, size="tiny")
    x, y = _batch(128, 4)
    report = keras_normed.rescale(model, (x, y), optimizer=keras.optimizers.Adam(1e-3))
    assert report.exponent == pytest.approx(1.0, abs=0.05)
    assert report.spread_after <= 1.5
    sgd = keras_normed.rescale(paper_net("c", "normed", seed=0, size="tiny"), (x, y))
    assert sgd.exponent == pytest.approx(2.0, abs=0.01)


def test_analytic_rule_matches_formula():
    # Tiny net (c): 8x8x1 input; 'same' 3x3 convs 1->4 on 8x8 and 4->16 on 4x4 (a tap is used by
    # 7, 8, 7 resp. 3, 4, 3 positions per axis), circulant 64 -> 32 (block 32: 64 parameters),
    # dense 32 -> 10 (linear gain 1; the others ReLU gain sqrt(2)).
    fan_in = np.array([9, 36, 64, 32.0])
    n_params = np.array([36, 576, 64, 320.0])
    gain2 = np.array([2, 2, 2, 1.0])
    sharing = np.array([(22 / 3) ** 2, (10 / 3) ** 2, 32.0, 1.0])

    def expected(load):
        return (load / np.exp(np.mean(np.log(load)))) ** 0.25

    report = keras_normed.rescale(paper_net("c", "normed", seed=0, size="tiny"))
    assert report.rule == "analytic" and report.applied
    np.testing.assert_allclose(list(report.scales.values()),
                               expected(fan_in**2 / n_params / gain2), rtol=1e-6)
    assert [r.sharing for r in report.layers] == pytest.approx(list(sharing))
    with pytest.raises(TypeError, match="analytic_form"):  # the superseded form is gone
        keras_normed.rescale(paper_net("c", "normed", seed=0, size="tiny"),
                             analytic_form="sharing")
    adam = keras_normed.rescale(paper_net("c", "normed", seed=0, size="tiny"),
                                optimizer=keras.optimizers.Adam(1e-3))
    load = fan_in / gain2
    np.testing.assert_allclose(list(adam.scales.values()),
                               (load / np.exp(np.mean(np.log(load)))) ** 0.5, rtol=1e-3)


def test_never_twice_and_mark_saved(tmp_path):
    model = paper_net("a", "normed", seed=0, size="tiny")
    x, y = _batch(64, 5)
    assert keras_normed.rescale(model, (x, y)).applied
    assert scaling.is_rescaled(model)
    before = _kernels(model)
    second = keras_normed.rescale(model, (x, y))
    assert not second.applied and "already" in second.reason
    _assert_same(before, model)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert scaling.is_rescaled(loaded)
    before = _kernels(loaded)
    assert not keras_normed.rescale(loaded, (x, y)).applied
    _assert_same(before, loaded)


def test_refuses_trained_weights_unless_forced():
    model = paper_net("a", "normed", seed=0, size="tiny")
    x, y = _batch(32, 6)
    model.compile(keras.optimizers.SGD(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    before = _kernels(model)
    with pytest.raises(ValueError, match="trained"):
        keras_normed.rescale(model, (x, y))
    _assert_same(before, model)
    assert keras_normed.rescale(model, (x, y), force=True).applied


def test_refuses_assigned_or_loaded_weights(tmp_path):
    x, y = _batch(32, 7)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(16, activation="relu",
                                                 kernel_initializer="normed"),
                              keras.layers.Dense(10, kernel_initializer="normed")])
    path = str(tmp_path / "fresh.keras")
    model.save(path)
    loaded = keras.models.load_model(path)  # same weights, but not its initializer's draw
    before = _kernels(loaded)
    with pytest.raises(ValueError, match="differ"):
        keras_normed.rescale(loaded, (x, y))
    _assert_same(before, loaded)
    assert keras_normed.rescale(loaded, (x, y), force=True).applied
    w = model.layers[1].kernel
    w.assign(w * 1.01)
    with pytest.raises(ValueError, match="differ"):
        keras_normed.rescale(model)


@keras.saving.register_keras_serializable("test_scaling")
class Subclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(16, activation="relu", kernel_initializer="normed")
        self.head = keras.layers.Dense(10, kernel_initializer="normed")

    def call(self, x):
        return self.head(self.hidden(keras.ops.reshape(x, (-1, 64))))


def test_reloaded_subclassed_model_is_refused_and_says_why(tmp_path):
    """A subclassed model's layers are built again by its __init__ on loading: the mark of the
    rescale is lost, so the loaded kernels are refused (not rescaled twice), weights unchanged,
    and the message says that such a model needs no rescale; after a fit, so is the model."""
    x, y = _batch(32, 9)
    model = Subclassed()
    model(x[:2])
    model.compile(keras.optimizers.SGD(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert keras_normed.rescale(model, (x, y)).applied
    path = str(tmp_path / "sub.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert not scaling.is_rescaled(loaded)  # the mark did not survive: why it is refused
    before = _kernels(loaded)
    with pytest.raises(ValueError, match="need no rescale.*subclassed"):
        keras_normed.rescale(loaded, (x, y))
    _assert_same(before, loaded)
    model.fit(x, y, epochs=1, verbose=0)
    model.save(path)
    loaded = keras.models.load_model(path)
    before = _kernels(loaded)
    with pytest.raises(ValueError, match="NormedScaling leaves it"):
        keras_normed.rescale(loaded, (x, y))
    callback = NormedScaling((x, y))  # resuming with the callback: it leaves the model alone
    callback.set_model(loaded)
    with pytest.warns(UserWarning, match="already trained"):
        callback.on_train_begin()
    assert not callback.report.applied
    _assert_same(before, loaded)


def test_left_names_depthwise_kernels_and_tells_cells_apart():
    """A DepthwiseConv's `kernel` drawn by a Normed `depthwise_initializer` is not rescaled and
    is named in `left` (it was skipped silently); two LSTMs' cells (both `lstm_cell`) by path."""
    x, y = _batch(32, 10)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(4, 3, activation="relu", kernel_initializer="normed"),
        keras.layers.DepthwiseConv2D(3, activation="relu", depthwise_initializer="normed",
                                     name="dw"),
        keras.layers.Flatten(), keras.layers.Dense(10, kernel_initializer="normed")])
    dw = _np(model.get_layer("dw").kernel)
    left = keras_normed.rescale(model, (x, y), move="all").summary["left"]
    assert [entry.split(":")[0] for entry in left] == ["dw.kernel"], left
    assert "depthwise_initializer is Normed" in left[0]
    np.testing.assert_array_equal(_np(model.get_layer("dw").kernel), dw)
    rnn = keras.Sequential([keras.Input((5, 4)), keras.layers.LSTM(6, return_sequences=True,
                                                                   name="a"),
                            keras.layers.LSTM(6, name="b"), keras.layers.Dense(3)])
    report = growth_report(rnn, np.ones((8, 5, 4), "float32") * np.arange(8)[:, None, None],
                           np.arange(8) % 3)
    assert [e.split(":")[0] for e in report.summary["left"]] == [
        "a/lstm_cell.recurrent_kernel", "b/lstm_cell.recurrent_kernel"]


def test_failed_call_leaves_weights_unchanged(monkeypatch):
    model = paper_net("c", "normed", seed=0, size="tiny")
    x, y = _batch(64, 8)
    before = _kernels(model)
    inits = [layer.kernel_initializer for layer in scaling.normed_layers(model)]
    bad_x = x.copy()
    bad_x[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        keras_normed.rescale(model, (bad_x, y))
    _assert_same(before, model)
    # A failure in the middle of the assignments is rolled back too.
    calls = {"n": 0}
    real = keras_normed.Normed.rescaled_copy

    def failing(init, factor):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("injected")
        return real(init, factor)

    monkeypatch.setattr(keras_normed.Normed, "rescaled_copy", failing)
    with pytest.raises(RuntimeError, match="injected"):
        keras_normed.rescale(model, (x, y))
    _assert_same(before, model)
    assert [layer.kernel_initializer for layer in scaling.normed_layers(model)] == inits
    assert not scaling.is_rescaled(model)


def test_bad_input():
    unbuilt = keras.Sequential([keras.layers.Dense(4, kernel_initializer="normed")])
    with pytest.raises(ValueError, match="not built"):
        keras_normed.rescale(unbuilt)
    model = paper_net("a", "normed", seed=0, size="tiny")
    with pytest.raises(ValueError, match="rule"):
        keras_normed.rescale(model, rule="magic")
    with pytest.raises(ValueError, match="probe"):
        keras_normed.rescale(model, rule="probe")
    with pytest.raises(ValueError, match="tol"):
        keras_normed.rescale(model, tol=0.5)
    he = paper_net("a", "he", seed=0, size="tiny")
    assert not keras_normed.rescale(he).applied  # nothing initialized by Normed


def test_callback_rescales_once_across_two_fits():
    model = paper_net("a", "normed", seed=0, size="tiny")
    x, y = _batch(64, 9)
    model.compile(keras.optimizers.SGD(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    applied = []
    original = scaling.rescale

    def spy(*args, **kwargs):
        report = original(*args, **kwargs)
        applied.append(report.applied)
        return report

    cb = NormedScaling(data=(x, y))
    import keras_normed.scaling as mod

    mod.rescale = spy
    try:
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[cb])
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[cb])
    finally:
        mod.rescale = original
    assert applied == [True, False] and cb.calls == 2
    assert scaling.is_rescaled(model)


class BlockLayer(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.inner = keras.layers.Dense(16, activation="relu", kernel_initializer=Normed(seed=1))

    def call(self, x):
        return self.inner(x)


class SubModel(keras.Model):
    def __init__(self):
        super().__init__()
        self.flat = keras.layers.Flatten()
        self.block = BlockLayer()
        self.nested = keras.Sequential([keras.layers.Dense(16, activation="relu",
                                                           kernel_initializer=Normed(seed=2))])
        self.head = keras.layers.Dense(10, kernel_initializer=Normed("linear", seed=3))

    def call(self, x, training=None):
        return self.head(self.nested(self.block(self.flat(x))))


def test_subclassed_and_nested_models():
    model = SubModel()
    x, y = _batch(128, 10)
    model(x)
    report = keras_normed.rescale(model, (x, y), move="all")
    assert len(report.layers) == 3 and report.applied
    assert report.spread_after <= 1.5


def test_paper_net_shapes():
    from keras_normed.scaling import kernel_structure

    a = paper_net("a", "he")
    assert tuple(a.get_layer("fc1").kernel.shape) == (3136, 64)
    b = paper_net("b", "normed")
    st = kernel_structure(b.get_layer("periodic"))
    assert (st.fan_in, st.sharing) == (55 * 55, 56 * 56)
    assert tuple(b.get_layer("logits").kernel.shape) == (3136, 10)
    c = paper_net("c", "normed", softmax=True)
    st = kernel_structure(c.get_layer("circulant"))
    assert (st.fan_in, st.fan_out, st.sharing) == (3136, 1568, 1568)
    assert c.output.shape[-1] == 10
    d = paper_net("d", "glorot")
    assert tuple(d.get_layer("fc1").kernel.shape) == (12544, 64)
    assert d.get_layer("circ_conv2").output.shape[1:] == (7, 7, 256)


def test_callbacks_refuse_unknown_keywords_at_construction():
    from keras_normed.callbacks import GrowthMonitor, LSUVInit

    x, y = _batch(8, 1)
    for make, fn in ((lambda: NormedScaling(data=(x, y), bogus=1), "rescale"),
                     (lambda: LSUVInit(x, bogus=1), "lsuv"),
                     (lambda: GrowthMonitor((x, y), bogus=1), "growth_report")):
        with pytest.raises(TypeError, match=rf"unknown keyword argument `bogus`=1; pass only "
                                            rf"arguments of {fn}: "):
            make()
    assert NormedScaling(data=(x, y), tol=1.2, rule="probe").kwargs == {"tol": 1.2,
                                                                        "rule": "probe"}
    # values too, as rescale checks them, before any fit
    for kwargs, error, match in (({"tol": -1}, ValueError, "`tol`"),
                                 ({"move": "some"}, ValueError, "`move`"),
                                 ({"force": "yes"}, TypeError, "`force`")):
        with pytest.raises(error, match=match):
            NormedScaling(data=(x, y), **kwargs)
    for kwargs, error, match in (({"tol": -1}, ValueError, "`tol`"),
                                 ({"max_iter": 2.5}, TypeError, "`max_iter`")):
        with pytest.raises(error, match=match):
            LSUVInit(x, **kwargs)
    with pytest.raises(ValueError, match="needs a probe batch"):
        NormedScaling(rule="probe")


def test_loss_that_does_not_fit_the_targets_is_said_in_the_users_terms():
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(3, kernel_initializer="normed")])
    x, y = _batch(8, 1)
    y = y % 3
    before = _kernels(model)
    with pytest.raises(ValueError, match=r"loss on the batch could not be computed.*y \(8,\)"):
        keras_normed.rescale(model, (x, y.astype("float32")), loss="mse")
    with pytest.raises(ValueError, match="not output names"):
        keras_normed.rescale(model, (x, y), loss={"zz": "mse"})
    with pytest.raises(ValueError, match="all sample weights 0"):
        keras_normed.rescale(model, (x, y, np.zeros(len(y))))
    for a, b in zip(before, _kernels(model)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="`training`"):
        growth_report(model, x, y, training="x")


def test_huge_inputs_refused_without_a_numpy_warning():
    model = keras.Sequential([keras.Input((4,)),
                              keras.layers.Dense(3, kernel_initializer="normed")])
    before = _kernels(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(ValueError, match="non-finite loss"):
            keras_normed.rescale(model, (np.full((8, 4), 1e30, "float32"), np.zeros((8, 3))))
    _assert_same(before, model)


def test_max_output_change_refuses_a_larger_change_and_restores_the_weights():
    def tanh_net():
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(
            16, activation="tanh", kernel_initializer=keras_normed.Normed(seed=1)),
            keras.layers.Dense(16, activation="relu", kernel_initializer=keras_normed.Normed(
                seed=2)), keras.layers.Dense(3, kernel_initializer=keras_normed.Normed(seed=3))])

    rng = np.random.default_rng(0)
    probe = (3 * rng.standard_normal((64, 4)).astype("float32"), np.zeros((64, 3), "float32"))
    model = tanh_net()
    before = _kernels(model)
    with pytest.warns(RuntimeWarning, match="not positively homogeneous"):
        change = keras_normed.rescale(tanh_net(), probe, move="all").output_change
    assert change > 1e-3
    with pytest.raises(ValueError, match=r"changed by .* > max_output_change=0.001.*tanh"):
        keras_normed.rescale(model, probe, max_output_change=1e-3, move="all")
    _assert_same(before, model)
    assert not scaling.is_rescaled(model)
    with pytest.warns(RuntimeWarning):
        report = keras_normed.rescale(model, probe, max_output_change=10 * change, move="all")
    assert report.applied and report.output_change == pytest.approx(change, rel=1e-3)
    for bad, err in ((-1.0, ValueError), ("0.1", TypeError)):
        with pytest.raises(err, match="max_output_change"):
            keras_normed.rescale(tanh_net(), probe, max_output_change=bad)
    with pytest.raises(ValueError, match="max_output_change.*probe batch"):
        NormedScaling(max_output_change=0.1)


def test_a_model_within_tol_reports_what_the_constraints_allow():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(
        16, activation="relu", kernel_initializer=keras_normed.Normed(seed=1)),
        keras.layers.Dense(16, activation="relu", kernel_initializer=keras_normed.Normed(seed=2)),
        keras.layers.Dense(3, kernel_initializer=keras_normed.Normed("linear", seed=3))])
    rng = np.random.default_rng(0)
    probe = (rng.standard_normal((64, 8)).astype("float32"), np.arange(64) % 3)
    first = keras_normed.rescale(model, probe, move="all")
    other = (rng.standard_normal((64, 8)).astype("float32"), np.arange(64) % 3)
    # within tol there: no solve runs
    again = keras_normed.rescale(model, other, force=True, move="all")
    assert again.iterations == 0 and 1.01 < again.spread_before <= 1.5
    assert again.spread_allowed == pytest.approx(1.0, abs=1e-6)  # a chain allows equal growth
    assert first.spread_allowed == pytest.approx(1.0, abs=1e-6)


def test_a_forced_analytic_rescale_finds_its_own_scales():
    """The analytic rule starts from the draw moved by the scales already applied
    (``r -> r c**-p``): a forced second call moves nothing (it used to take the square root of
    the scales again, call after call)."""
    model = paper_net("c", "normed", seed=0, size="tiny")
    first = keras_normed.rescale(model)
    assert max(abs(math.log(c)) for c in first.scales.values()) > 0.1
    assert "predicted (not measured) growth spread" in str(first)
    again = keras_normed.rescale(model, force=True)
    np.testing.assert_allclose(list(again.scales.values()), 1.0, atol=1e-9)
    assert again.spread_before == pytest.approx(first.spread_after, rel=1e-9)


def test_output_change_is_none_where_nothing_was_checked():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(
        8, activation="relu", kernel_initializer="normed"), keras.layers.Dense(
        3, kernel_initializer="normed")])
    analytic = keras_normed.rescale(model)
    assert analytic.applied and analytic.output_change is None
    again = keras_normed.rescale(model)
    assert not again.applied and again.output_change is None


@pytest.mark.tensorflow  # JAX's relu selects 0 where sqrt's derivative is infinite: finite there
def test_infinite_gradient_with_a_finite_loss_is_said_as_such():
    x_in = keras.Input((4,))
    h = keras.layers.Dense(8, activation="relu", kernel_initializer="normed")(x_in)
    out = keras.layers.Dense(3, kernel_initializer="normed")(keras.ops.sqrt(h))
    model = keras.Model(x_in, out)
    x = np.random.default_rng(0).standard_normal((16, 4)).astype("float32")
    before = _kernels(model)
    with pytest.raises(ValueError, match=r"finite loss \(.*\) but a non-finite gradient.*sqrt"):
        keras_normed.rescale(model, (x, np.zeros((16, 3), "float32")))
    _assert_same(before, model)


@pytest.mark.parametrize("make", [
    lambda: keras_normed.layers.CirculantConv2D(8, 3, block_size=4, activation="relu",
                                                use_bias=False, kernel_initializer="normed"),
    lambda: keras_normed.layers.PeriodicConv2D(8, 3, activation="relu", use_bias=False,
                                               kernel_initializer="normed")])
def test_structured_conv_on_images_of_unknown_size(make):
    # The sharing of a circulant or periodic conv depends on the image size: unknown, the
    # layer is measured by its fans, as Conv2D is, and its structure says why.
    layer = make()
    model = keras.Sequential([keras.Input((None, None, 3)), layer,
                              keras.layers.GlobalMaxPooling2D(),
                              keras.layers.Dense(10, use_bias=False, kernel_initializer="normed")])
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 9, 9, 3)).astype("float32"), rng.integers(0, 10, 16)
    before = np.asarray(model(x))
    report = keras_normed.rescale(model, (x, y))
    after = np.asarray(model(x))
    assert report.applied and np.linalg.norm(after - before) < 1e-5 * np.linalg.norm(before)
    assert report.spread_after < 1.5
    assert np.isnan(keras_normed.growth_report(model, x, y).rows[0].sharing)
    with pytest.raises(ValueError, match="known height, width"):
        keras_normed.structure.layer_structure(layer)


def test_kernels_without_gradient_keep_their_scale_and_the_others_are_equalized():
    """A loss dict that leaves an output out (as compile's may) was refused whenever that
    head had Normed kernels: "get no gradient ... cannot be equalized"."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((32, 16)).astype("float32"), rng.integers(0, 5, 32)
    keras.utils.set_random_seed(0)
    L = keras.layers
    i = keras.Input((16,))
    h = L.Dense(16, activation="relu", kernel_initializer="normed")(i)
    cls = L.Dense(5, kernel_initializer=Normed("linear"), name="cls")(
        L.Dense(16, activation="relu", kernel_initializer="normed", name="c1")(h))
    aux = L.Dense(1, kernel_initializer=Normed("linear"), name="aux")(
        L.Dense(8, activation="relu", kernel_initializer="normed", name="a1")(h))
    model = keras.Model(i, {"cls": cls, "aux": aux})
    loss = {"cls": keras.losses.SparseCategoricalCrossentropy(from_logits=True)}
    before = model(x)
    with pytest.warns(RuntimeWarning, match="get no gradient on the probe batch"):
        report = keras_normed.rescale(model, (x, {"cls": y}), loss=loss, move="all")
    dead = {model.get_layer(n).kernel.path for n in ("a1", "aux")}
    assert set(report.summary["no_gradient"]) == dead
    assert all(report.scales[p] == 1.0 for p in dead)
    assert report.spread_after < report.spread_before
    assert report.spread_after == pytest.approx(report.summary["spread_allowed"], rel=1e-3)
    after = model(x)
    for key in before:
        np.testing.assert_allclose(after[key], before[key], rtol=1e-5, atol=1e-6)
    growth = keras_normed.growth_report(model, x, {"cls": y}, loss=loss)
    live = [r.growth for r in growth.rows if r.path not in dead]
    assert max(live) / min(live) == pytest.approx(report.spread_after, rel=1e-3)
