"""rescale(rule="noise"): the probe rule on a drawn U(0, 1) batch, its outputs read as logits
against random labels; no data, the same in every process, refusals that say what to pass."""

import keras
import numpy as np
import pytest

import keras_normed
from examples.paper.networks import paper_net
from keras_normed import engine
from keras_normed.layers import CirculantDense


def _weights(model):
    return [np.array(keras.ops.convert_to_numpy(w)) for w in model.weights]


def _assert_unchanged(before, model):
    for a, b in zip(before, _weights(model)):
        np.testing.assert_array_equal(a, b)


def test_noise_rule_is_the_probe_rule_on_its_batch_and_random_labels():
    """Reference: the probe rule on the same U(0, 1) rows with the same random labels and
    Keras's own sparse cross-entropy from logits: the same scales."""
    a, b = (paper_net("d", "normed", seed=3, size="tiny") for _ in range(2))
    x = np.random.default_rng(0).uniform(0.0, 1.0, (256, 8, 8, 1)).astype("float32")
    y = np.random.default_rng(0).integers(0, 10, 256)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    noise = keras_normed.rescale(a, rule="noise", move="all")
    probe = keras_normed.rescale(b, (x, y), loss=loss, rule="probe", move="all")
    assert noise.applied and noise.rule == "noise"
    assert set(noise.scales) == set(probe.scales)
    for path, c in probe.scales.items():
        assert noise.scales[path] == pytest.approx(c, rel=1e-4)
    for wa, wb in zip(_weights(a), _weights(b)):
        np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=1e-7)


def test_noise_rule_keeps_the_function_sees_the_draw_and_is_deterministic():
    x = np.random.default_rng(5).uniform(size=(16, 8, 8, 1)).astype("float32")
    scales = []
    for seed in (1, 1, 2):
        model = paper_net("c", "normed", seed=seed, size="tiny")
        before = keras.ops.convert_to_numpy(model(x))
        report = keras_normed.rescale(model, rule="noise")
        assert report.applied and report.summary["check"] == "kept by construction"
        np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), before, rtol=1e-4,
                                   atol=1e-5 * np.abs(before).max())
        assert report.spread_after <= 1.5 < report.spread_before
        scales.append(report.scales)
    assert scales[0] == scales[1]  # the same draw: the same batch, the same scales
    # Another draw, other scales: the analytic rule's would be equal for both seeds.
    assert any(abs(scales[0][k] / scales[2][k] - 1) > 1e-3 for k in scales[0])


def test_noise_rule_on_dict_and_list_inputs():
    for as_dict in (True, False):
        a, b = keras.Input((6,), name="a"), keras.Input((4,), name="b")
        h = keras.layers.Concatenate()([
            keras.layers.Dense(8, activation="relu", kernel_initializer="normed")(a),
            CirculantDense(8, block_size=4, activation="relu", kernel_initializer="normed")(
                keras.layers.Dense(8, kernel_initializer="normed")(b))])
        out = keras.layers.Dense(3, kernel_initializer=keras_normed.initializers.Normed(
            "linear"))(h)
        model = keras.Model({"a": a, "b": b} if as_dict else [a, b], out)
        report = keras_normed.rescale(model, rule="noise", check="always")
        assert report.applied and report.summary["output_change"] < 1e-5


class _Sub(keras.Model):
    def __init__(self):
        super().__init__()
        self.d = keras.layers.Dense(4, kernel_initializer="normed")

    def call(self, x):
        return self.d(x)


@pytest.mark.parametrize("case", ["subclassed", "int input", "unknown size", "data", "loss",
                                  "bad rule"])
def test_noise_rule_refusals_say_what_to_pass_and_change_nothing(case):
    if case == "subclassed":
        model = _Sub()
        model(np.zeros((2, 3), "float32"))
    elif case == "int input":
        i = keras.Input((5,), dtype="int32")
        h = keras.layers.Flatten()(keras.layers.Embedding(10, 4)(i))
        model = keras.Model(i, keras.layers.Dense(3, kernel_initializer="normed")(h))
    else:
        i = keras.Input((None, None, 1) if case == "unknown size" else (8, 8, 1))
        h = keras.layers.Conv2D(4, 3, kernel_initializer="normed")(i)
        model = keras.Model(i, keras.layers.GlobalMaxPooling2D()(h))
    before = _weights(model)
    kwargs = {"rule": "noise"}
    if case == "data":
        kwargs["data"] = (np.zeros((4, 8, 8, 1), "float32"), np.zeros((4, 4), "float32"))
    if case == "loss":
        kwargs["loss"] = "mse"
    if case == "bad rule":
        kwargs["rule"] = "Noise"
    expected = {"subclassed": "has none .a subclassed model.*data=",
                "int input": "dtype 'int32'.*data=", "unknown size": "None beyond the batch",
                "data": "leave `data`", "loss": "no `loss`", "bad rule": "'noise'"}[case]
    with pytest.raises(ValueError, match=expected):
        keras_normed.rescale(model, **kwargs)
    _assert_unchanged(before, model)


def test_noise_batch_and_random_label_loss():
    i = keras.Input((3, 2), dtype="float16")
    model = keras.Model(i, keras.layers.Dense(2)(i))
    batch = engine.noise_batch(model, size=5, seed=1)
    assert batch.x.shape == (5, 3, 2) and batch.x.dtype == np.float16 and batch.y is None
    assert 0.0 <= batch.x.min() and batch.x.max() <= 1.0
    np.testing.assert_array_equal(batch.x, engine.noise_batch(model, size=5, seed=1).x)
    # Two outputs, (2, 3, 4) logits and (2, 1) one unit: numpy's cross-entropies.
    logits = np.random.default_rng(7).standard_normal((2, 3, 4))
    one = np.array([[0.3], [-1.2]])
    rng = np.random.default_rng(4)
    labels, bits = rng.integers(0, 4, (2, 3)), rng.integers(0, 2, (2, 1))
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ce = -np.take_along_axis(log_p, labels[..., None], -1).mean()
    bce = np.mean(np.log1p(np.exp(-one)) + (1 - bits) * one)
    value = engine.RandomLabelLoss(seed=4)(
        model, None, None, batch, [keras.ops.convert_to_tensor(t.astype("float32"))
                                   for t in (logits, one)])
    assert float(keras.ops.convert_to_numpy(value)) == pytest.approx(ce + bce, rel=1e-5)
    # One value per row (a squeezed output): one unit, not a class axis over the rows.
    rows = np.array([0.5, -2.0, 1.5])
    bits = np.random.default_rng(4).integers(0, 2, 3)
    value = engine.RandomLabelLoss(seed=4)(model, None, None, batch,
                                           keras.ops.convert_to_tensor(rows.astype("float32")))
    expected = np.mean(np.log1p(np.exp(-rows)) + (1 - bits) * rows)
    assert float(keras.ops.convert_to_numpy(value)) == pytest.approx(expected, rel=1e-5)


def test_callback_with_the_noise_rule_rescales_before_the_first_step():
    from keras_normed.callbacks import NormedScaling

    model = paper_net("c", "normed", seed=4, size="tiny")
    model.compile(keras.optimizers.SGD(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    twin = paper_net("c", "normed", seed=4, size="tiny")
    expected = keras_normed.rescale(twin, rule="noise").scales
    callback = NormedScaling(rule="noise")
    x = np.random.default_rng(0).uniform(size=(8, 8, 8, 1)).astype("float32")
    model.fit(x, np.zeros(8, "int32"), epochs=1, batch_size=8, verbose=0,
              callbacks=[callback])
    assert callback.report.applied and callback.report.rule == "noise"
    assert callback.report.scales == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("head", ["softmax", "sigmoid"])
def test_a_probability_head_is_read_as_the_logits_it_squashes(head):
    """A softmax (sigmoid) head gives the scales of the same net ending in its logits. Before,
    the probabilities were squashed again on JAX and under mixed precision (the trial measured
    a head's growth at 0.07-0.09 of its twin's), and matched only through Keras's TF-only
    logits shortcut in float32."""
    units = 10 if head == "softmax" else 1
    models = []
    for activation in (head, None):
        i = keras.Input((12,))
        h = keras.layers.Dense(16, activation="relu", name="trunk",
                               kernel_initializer=keras_normed.initializers.Normed(seed=1))(i)
        h = CirculantDense(16, block_size=4, activation="relu", name="circ",
                           kernel_initializer=keras_normed.initializers.Normed(seed=2))(h)
        out = keras.layers.Dense(units, activation=activation, name="head",
                                 kernel_initializer=keras_normed.initializers.Normed(
                                     "linear", seed=3))(h)
        models.append(keras.Model(i, out))
    probs, logits = (keras_normed.rescale(m, rule="noise").scales for m in models)
    assert probs == pytest.approx(logits, rel=1e-4)


def test_callback_refuses_a_loss_with_the_noise_rule_at_construction():
    """Before, `NormedScaling(rule="noise", loss="mse")` was taken and refused only in `fit`
    (`data=` with it was refused at construction)."""
    from keras_normed.callbacks import NormedScaling

    with pytest.raises(ValueError, match="no `loss`"):
        NormedScaling(rule="noise", loss="mse")
    with pytest.raises(ValueError, match="leave `data`"):
        NormedScaling(rule="noise", data=(np.zeros((2, 3)), np.zeros(2)))


def test_callback_without_data_on_a_model_fit_has_not_built_says_what_to_do():
    """TensorFlow's `fit` builds a model without an Input after `on_train_begin`: without data
    the callback cannot build it (JAX's `fit` builds it first, so there it runs)."""
    from keras_normed.callbacks import NormedScaling

    model = keras.Sequential([keras.layers.Dense(4, "relu", kernel_initializer="normed"),
                              keras.layers.Dense(2, kernel_initializer="normed")])
    model.compile("sgd", "mse")
    x, y = np.ones((8, 3), "float32"), np.zeros((8, 2), "float32")
    callback = NormedScaling(rule="noise")
    if keras.backend.backend() == "tensorflow":
        with pytest.raises(ValueError, match="not built when training begins.*model.build"):
            model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    else:
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
        assert callback.report.rule == "noise"


def test_noise_batch_checks_its_arguments_and_names_unnamed_inputs_as_users_do():
    model = keras.Sequential([keras.Input((None, 2)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="the model's input has shape"):
        engine.noise_batch(model)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    for kwargs in ({"size": 0}, {"size": 2.5}, {"size": True}, {"seed": -1}, {"seed": "a"}):
        arg = next(iter(kwargs))
        with pytest.raises(ValueError, match=f"`{arg}` must be an int"):
            engine.noise_batch(model, **kwargs)


def test_noise_report_names_its_loss_and_a_zero_step_is_not_blamed_on_the_data():
    model = paper_net("c", "normed", seed=0, size="tiny")
    report = keras_normed.rescale(model, rule="noise")
    assert "random labels" in report.summary["loss"]
    model = paper_net("c", "normed", seed=0, size="tiny")
    before = _weights(model)
    with pytest.raises(ValueError, match="learning rate of 0"):
        keras_normed.rescale(model, rule="noise", optimizer=keras.optimizers.SGD(0.0))
    _assert_unchanged(before, model)


def _gradient(fn, x):
    if keras.backend.backend() == "jax":
        import jax

        return np.asarray(jax.grad(fn)(x))
    import tensorflow as tf

    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = fn(x)
    return tape.gradient(value, x).numpy()


def test_random_label_loss_gradient_is_finite_for_zero_rows_and_matches_softmax_ce():
    """An all-zero output row (a dead ReLU head) sums to 0: the probability branch, dropped by
    the select, divided 0 by 0 and its NaN leaked into the gradient."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    batch = engine.Batch(np.zeros((4, 2), "float32"))
    loss = engine.RandomLabelLoss(seed=2)
    pred = np.zeros((4, 3), "float32")
    pred[1] = [0.5, -1.0, 2.0]
    grad = _gradient(lambda t: loss(model, None, None, batch, t), pred)
    labels = np.random.default_rng(2).integers(0, 3, 4)
    p = np.exp(pred) / np.exp(pred).sum(-1, keepdims=True)
    np.testing.assert_allclose(grad, (p - np.eye(3)[labels]) / 4, rtol=1e-5, atol=1e-7)
