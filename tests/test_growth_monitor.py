"""GrowthMonitor: growth during training, equal to growth_report, without side effects."""

import glob
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_normed
from keras_normed import Normed
from keras_normed.callbacks import GrowthMonitor


def _model():
    model = keras.Sequential([
        keras.Input((12,)),
        keras.layers.Dense(32, activation="relu", kernel_initializer=Normed(seed=1)),
        keras.layers.BatchNormalization(),
        keras.layers.Dropout(0.2, seed=0),
        keras.layers.Dense(4, kernel_initializer=Normed("linear", seed=2)),
    ])
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 12)).astype("float32"), rng.integers(0, 4, n)


def _state(model):
    return [np.array(keras.ops.convert_to_numpy(v))
            for v in model.weights + list(model.optimizer.variables)]


def test_values_equal_growth_report_and_event_files(tmp_path):
    model = _model()
    x, y = _data()
    probe = _data(32, seed=1)
    expected = keras_normed.growth_report(model, *probe)
    monitor = GrowthMonitor(probe, every=4, log_dir=tmp_path / "logs")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[monitor])
    assert [h["step"] for h in monitor.history] == [0, 4, 8]
    first = monitor.history[0]
    assert first["growth_spread"] == pytest.approx(expected.spread, rel=1e-6)
    for row in expected.rows:
        assert first[f"growth/{row.path}"] == pytest.approx(row.growth, rel=1e-6)
    assert monitor.history[2]["growth_spread"] != pytest.approx(first["growth_spread"])
    files = glob.glob(os.path.join(tmp_path, "logs", "events.out.tfevents*"))
    assert files
    tags = {}
    for event in tf.compat.v1.train.summary_iterator(files[0]):
        for value in event.summary.value:
            tags.setdefault(value.tag, []).append(event.step)
    assert tags["growth_spread"] == [0, 4, 8]
    assert {t for t in tags if t.startswith("growth/")} == {f"growth/{r.path}"
                                                           for r in expected.rows}


def test_measuring_changes_neither_model_nor_optimizer():
    model = _model()
    x, y = _data()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # optimizer state is not empty
    before = _state(model)
    monitor = GrowthMonitor(_data(32, seed=1), every=1)
    monitor.set_model(model)
    logs = {}
    monitor.on_train_batch_end(0, logs)
    assert "growth_spread" in logs and len(monitor.history) == 1
    for a, b in zip(before, _state(model)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("every, error", [(0, ValueError), (-1, ValueError), (2.5, TypeError),
                                          ("10", TypeError), (True, TypeError)])
def test_bad_every(every, error):
    with pytest.raises(error, match="`every`"):
        GrowthMonitor(_data(), every=every)
    assert GrowthMonitor(_data(), every=np.int64(3)).every == 3  # a numpy int is an int


def test_a_file_as_log_dir_is_refused_at_construction(tmp_path):
    path = tmp_path / "events.txt"
    path.write_text("not a folder")
    with pytest.raises(ValueError, match="`log_dir` .* is a file, not a folder"):
        GrowthMonitor(_data(), every=5, log_dir=path)


def test_data_without_targets_is_refused_at_construction():
    x, _ = _data()
    with pytest.raises(ValueError, match=r"holds inputs only \(one array of shape \(64, 12\)"):
        GrowthMonitor(x, every=5)


def test_docs_figure_script_quick(tmp_path):
    """examples/growth_monitor_figure.py (the docs' figure): quick variant on bundled digits;
    rescaled normed starts at spread ~1, He and Glorot above it."""
    import importlib.util
    import json
    import pathlib

    path = pathlib.Path(__file__).parents[1] / "examples" / "growth_monitor_figure.py"
    spec = importlib.util.spec_from_file_location("growth_monitor_figure", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "gm.png"
    assert module.main(["--quick", "--source", "sklearn", "--n-train", "200", "--every", "2",
                        "--output", str(out)]) == 0
    curves = json.loads((tmp_path / "gm.json").read_text())
    assert out.stat().st_size > 1000 and set(curves) == {"he", "glorot", "normed"}
    assert curves["normed"][0][1] < 1.5 < min(curves["he"][0][1], curves["glorot"][0][1])


def test_bad_data_is_named_before_training_changes_anything():
    with pytest.raises(ValueError, match="`data` is None"):
        GrowthMonitor(None)
    model = _model()
    x, y = _data()
    before = _state(model)
    for bad, message in (((x[:, :5], y), r"`GrowthMonitor\(data=\.\.\.\)`: x has shape"),
                         (x, r"`GrowthMonitor\(data=\.\.\.\)` holds inputs only")):
        with pytest.raises(ValueError, match=message):
            model.fit(x, y, epochs=1, verbose=0, callbacks=[GrowthMonitor(bad, every=1)])
        assert all(np.array_equal(a, b) for a, b in zip(before, _state(model)))


def test_steps_per_execution_labels_the_real_steps():
    """Callbacks run every 4 steps: a measurement at the first callback at or after each
    multiple of ``every``, labelled with the optimizer's step (it counted callback calls)."""
    model = _model()
    model.compile(keras.optimizers.SGD(0.05), keras.losses.SparseCategoricalCrossentropy(
        from_logits=True), steps_per_execution=4)
    x, y = _data()
    monitor = GrowthMonitor(_data(32, seed=1), every=3)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False, callbacks=[monitor])
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 16
    assert [h["step"] for h in monitor.history] == [0, 4, 8, 12, 16]
    assert monitor.history[-1]["growth_spread"] == pytest.approx(
        keras_normed.growth_report(model, *_data(32, seed=1)).spread, rel=1e-5)


def test_uneven_epochs_and_resumed_models_are_labelled_with_real_steps():
    """10 steps an epoch run 4 at a time: Keras reports the short last run as a whole one, so
    labels drifted past the steps taken (20 steps labelled up to 24); a new monitor on a model
    that has trained goes on from its step (it started again at 0)."""
    model = _model()
    model.compile(keras.optimizers.SGD(0.05), keras.losses.SparseCategoricalCrossentropy(
        from_logits=True), steps_per_execution=4)
    x, y = _data(40)
    monitor = GrowthMonitor(_data(32, seed=1), every=5)
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False, callbacks=[monitor])
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 20
    assert [h["step"] for h in monitor.history] == [0, 8, 10, 18, 20]
    resumed = GrowthMonitor(_data(32, seed=1), every=5)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False, callbacks=[resumed])
    assert [h["step"] for h in resumed.history] == [20, 28, 30]


def test_a_shuffled_dataset_gives_one_fixed_batch():
    """Read once: each measurement read the dataset again, a new shuffle's first batch; with
    all sample weights 0 (the weights never move) the spread moved from 1.28 to 1.66."""
    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(4)])  # no dropout: nothing random but the data
    model.compile(keras.optimizers.SGD(0.05), keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    x, y = _data(256)
    probe = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(256).batch(64)
    monitor = GrowthMonitor(probe, every=2)
    model.fit(x, y, sample_weight=np.zeros(256, "float32"), batch_size=32, epochs=1, verbose=0,
              callbacks=[monitor])
    spreads = [h["growth_spread"] for h in monitor.history]
    assert len(spreads) == 5 and max(spreads) == pytest.approx(min(spreads), rel=1e-6)


def test_the_first_measurement_sees_normed_scaling_in_any_order():
    from keras_normed.callbacks import NormedScaling

    x, y = _data()
    spreads = []
    for first in (True, False):
        model = _model()
        monitor = GrowthMonitor(_data(32, seed=1), every=100)
        scaling = NormedScaling(data=(x, y), move="all")
        model.fit(x, y, batch_size=64, epochs=1, verbose=0,
                  callbacks=[monitor, scaling] if first else [scaling, monitor])
        assert scaling.report.applied
        spreads.append(monitor.history[0]["growth_spread"])
    assert spreads[0] == pytest.approx(spreads[1], rel=1e-6)


def _first_growth(history):
    return [h[next(k for k in h if k.startswith("growth/"))] for h in history]


def test_a_learning_rate_schedule_is_read_at_the_current_step():
    """A fresh copy of the optimizer restarted the schedule: the growth of a rate halved at
    every step was logged at the first rate all along (0.016 where 6e-5 was right)."""
    x, y = _data()
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
    model = _model()
    model.compile(keras.optimizers.SGD(schedule), keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    monitor = GrowthMonitor(_data(32, seed=1), every=2, training=False)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False, callbacks=[monitor])
    assert [h["step"] for h in monitor.history] == [0, 2, 4]
    # The same weights measured with SGD at the scheduled rate of the last step.
    expected = keras_normed.growth_report(model, *_data(32, seed=1), training=False,
                                          optimizer=keras.optimizers.SGD(0.1 * 0.5 ** 4))
    assert _first_growth(monitor.history)[-1] == pytest.approx(expected.rows[0].growth, rel=1e-5)
    assert _first_growth(monitor.history)[-1] < 0.2 * _first_growth(monitor.history)[0]


def test_accumulated_gradients_are_measured_once_every_applied_steps():
    """With gradient_accumulation_steps=2 every batch was measured, labels 1, 2, 3 twice."""
    x, y = _data()
    model = _model()
    model.compile(keras.optimizers.SGD(0.05, gradient_accumulation_steps=2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    monitor = GrowthMonitor(_data(32, seed=1), every=2)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[monitor])
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 4
    assert [h["step"] for h in monitor.history] == [0, 2, 4]


def test_a_diverging_model_is_logged_as_nan_and_training_goes_on():
    """The monitor stopped `fit` with an error blaming the data once the model diverged."""
    rng = np.random.default_rng(0)
    x, y = 1e3 * rng.standard_normal((64, 12)).astype("float32"), rng.integers(0, 4, 64)
    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(4)])
    model.compile(keras.optimizers.SGD(1e6), keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    monitor = GrowthMonitor((x[:32], y[:32]), every=1)
    with pytest.warns(UserWarning, match="diverged by step") as caught:
        history = model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[monitor])
    assert sum("diverged" in str(w.message) for w in caught) == 1
    assert len(history.history["loss"]) == 1 and len(monitor.history) == 9
    assert np.isfinite(monitor.history[0]["growth_spread"])
    assert np.isnan(monitor.history[-1]["growth_spread"])
    assert set(monitor.history[-1]) == set(monitor.history[0])


def test_a_bad_optimizer_is_refused_at_construction_and_a_model_without_input_is_built():
    with pytest.raises(ValueError, match="unknown optimizer name 'nope'"):
        GrowthMonitor(_data(32), optimizer="nope")
    model = keras.Sequential([keras.layers.Dense(8, activation="relu"), keras.layers.Dense(4)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    monitor = GrowthMonitor(_data(32, seed=1), every=4)
    x, y = _data()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[monitor])
    assert [h["step"] for h in monitor.history] == [0, 4]


def test_a_negative_learning_rate_gives_the_growth_of_its_steps_size():
    model = _model()
    x, y = _data(32)
    up = keras_normed.growth_report(model, x, y, optimizer=keras.optimizers.SGD(-0.1))
    down = keras_normed.growth_report(model, x, y, optimizer=keras.optimizers.SGD(0.1))
    assert [r.growth for r in up.rows] == pytest.approx([r.growth for r in down.rows])
    assert all(r.growth > 0 for r in up.rows)
