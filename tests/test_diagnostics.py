"""growth_report against an independent autodiff computation (tests/reference_grad.py)."""

import json

import keras
import numpy as np
import pytest
from reference_grad import value_and_gradients

from examples.paper.networks import paper_net
from keras_normed.diagnostics import growth_report


@pytest.fixture(scope="module")
def setup():
    model = paper_net("a", "he", seed=3, size="tiny")
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(64, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 10, 64).astype("int32")
    kernels = [model.get_layer(n).kernel for n in ("conv1", "conv2", "fc1", "logits")]
    loss, grads, logits = value_and_gradients(
        model, kernels, lambda logits: keras.ops.mean(
            keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)), x)
    weights = [keras.ops.convert_to_numpy(k) for k in kernels]
    return model, x, y, loss, grads, weights, logits


def test_sgd_growth_matches_manual_step(setup):
    model, x, y, loss, grads, weights, logits = setup
    report = growth_report(model, x, y, optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    assert [r.path for r in report.rows] == ["conv1/kernel", "conv2/kernel", "fc1/kernel",
                                             "logits/kernel"]
    assert report.loss == pytest.approx(loss, rel=1e-5)
    for row, g, w in zip(report.rows, grads, weights):
        assert row.growth == pytest.approx(0.1 * np.linalg.norm(g) / np.linalg.norm(w),
                                           rel=1e-4)
        assert row.grad_var == pytest.approx(np.var(g), rel=1e-4)
    assert report.rows[-1].act_var == pytest.approx(np.var(logits), rel=1e-4)
    growth = [r.growth for r in report.rows]
    assert report.spread == pytest.approx(max(growth) / min(growth))
    # Dense: one use per parameter; 'same' 3x3 conv on 8x8: (22/3)^2 uses on average.
    assert report.rows[2].sharing == 1.0
    assert report.rows[0].sharing == pytest.approx((22 / 3) ** 2)


def test_adam_growth_matches_manual_first_step(setup):
    model, x, y, _, grads, weights, _ = setup
    report = growth_report(model, x, y, optimizer=keras.optimizers.Adam(1e-3))
    b2, eps = 0.999, 1e-7
    for row, g, w in zip(report.rows, grads, weights):
        step = 1e-3 * np.sqrt(1 - b2) * g / (np.sqrt(1 - b2) * np.abs(g) + eps)
        assert row.growth == pytest.approx(np.linalg.norm(step) / np.linalg.norm(w), rel=1e-3)


def test_report_forms(setup, tmp_path):
    model, x, y, *_ = setup
    report = growth_report(model, x, y)
    d = report.as_dict()
    json.dumps(d)
    assert len(d["layers"]) == 4 and d["spread"] == report.spread
    text = str(report)
    assert "fc1/kernel" in text and "growth spread" in text
    path = report.plot(str(tmp_path / "growth.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_plot_takes_the_columns_each_report_has(setup, tmp_path):
    """A rescale or lsuv report has other columns than growth_report's: the default plots
    those (it crashed inside matplotlib); a key a report lacks is named."""
    import keras_normed

    _, x, y, *_ = setup
    report = keras_normed.rescale(paper_net("a", "normed", seed=3, size="tiny"), (x, y),
                                  move="all")
    path = report.plot(str(tmp_path / "rescale.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match=r"`keys`.*\['growth_before', 'growth_after', 'scale'\]"):
        report.plot(str(tmp_path / "x.png"), keys=["act_var"])
    with pytest.raises(ValueError, match="`keys`"):
        report.plot(str(tmp_path / "x.png"), keys="scale")
    assert not (tmp_path / "x.png").exists()


def test_separable_conv_report_is_json():
    """Its sharing is not one number (two kernels): None in the dict, not NaN."""
    model = keras.Sequential([keras.Input((10, 10, 3)), keras.layers.SeparableConv2D(8, 3),
                              keras.layers.Flatten(), keras.layers.Dense(5)])
    rng = np.random.default_rng(0)
    report = growth_report(model, rng.standard_normal((16, 10, 10, 3)).astype("float32"),
                           rng.integers(0, 5, 16))
    text = json.dumps(report.as_dict(), allow_nan=False)
    assert '"sharing": null' in text


def test_long_paths_keep_their_end_readable():
    from keras_normed.engine import Report, Row

    text = str(Report("growth", rows=[Row("sequential/depthwise_conv2d/kernel", "Dense"),
                                      Row("a" * 40, "Dense")]))
    assert ".../depthwise_conv2d/kernel " in text and "equential" not in text
    assert "..." + "a" * 30 + " " in text


def test_report_table_never_cuts_a_column_name():
    from keras_normed.engine import Report, Row

    report = Report("rescale", True, rows=[
        Row("m/weight_normalization/kernel", "WeightNormalization", 1, 4, 1.0, 16,
            {"growth_before": 0.1, "growth_after": 0.2, "scale": 1.5})])
    header, row = str(report).splitlines()[1:3]
    for name in ("growth_before", "growth_after", "scale", "sharing"):
        assert f" {name}" in header
    assert "WeightNormalization " in row
    # each value ends where its column name ends
    assert header.index("growth_after") + len("growth_after") == row.index("0.2") + len("0.2")


def test_gradient_accumulation_measures_the_applied_step():
    """A fresh copy of an accumulating optimizer only accumulates on its first call: growth was
    0 for every layer (rescale refused: "no gradient"). The applied step is the mean gradient's,
    the same as without accumulation on one batch."""
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 16)).astype("float32"), np.arange(64) % 4

    def growth(**kwargs):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, activation="relu"),
                                  keras.layers.Dense(4)])
        model.compile(keras.optimizers.SGD(0.01, **kwargs),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return [r.growth for r in growth_report(model, x, y).rows]

    accumulated = growth(gradient_accumulation_steps=3)
    assert min(accumulated) > 0
    np.testing.assert_allclose(accumulated, growth(), rtol=1e-5)
