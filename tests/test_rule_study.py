"""examples/paper/rule_study.py: the least-change solve and the capped step on a paper net."""

import argparse

import numpy as np
import pytest

from examples.paper import compare, networks, rule_study


def test_least_change_solves_the_capped_problem():
    log_r = np.log([1e-4, 7e-4, 3e-3, 2e-3])
    mean = log_r.mean()
    # cap at the geometric mean: every growth equal to it (move="all")
    x = rule_study.least_change(log_r, mean, 2.0)
    assert abs(x.sum()) < 1e-9 and np.allclose(log_r - 2 * x, mean)
    # a loose cap: nothing moves
    assert np.allclose(rule_study.least_change(log_r, mean + 10, 2.0), 0, atol=1e-9)
    # in between: the bound holds, the sum is zero, and the layers below the cap share one
    # scale (the least squares part)
    cap = mean + np.log(2)
    x = rule_study.least_change(log_r, cap, 2.0)
    assert abs(x.sum()) < 1e-9 and np.all(log_r - 2 * x <= cap + 1e-9)
    free = log_r - 2 * x < cap - 1e-9
    assert free.any() and np.ptp(x[free]) < 1e-9
    with pytest.raises(ValueError, match="infeasible"):
        rule_study.least_change(log_r, mean - 1, 2.0)


def test_capped_step_keeps_the_function_and_bounds_the_growth():
    rng = np.random.default_rng(0)
    x = rng.random((32, 8, 8, 1)).astype("float32")
    probe = (x, rng.integers(0, 10, 32))
    spec, mode = compare.initialization("normed", 0)
    model = networks.paper_net("a", kernel_initializer=spec, seed=0, size="tiny")
    before = np.asarray(model(x))
    args = argparse.Namespace(rule="cap", kappa=2.0, rabs=0.0, tau=1.0)
    report = rule_study.step_for(args)(model, mode, probe,
                                       compare.make_optimizer("momentum")).as_dict()
    after = np.asarray(model(x))
    assert np.linalg.norm(after - before) <= 1e-5 * np.linalg.norm(before)
    growth = np.array([row["growth_after"] for row in report["layers"]])
    scales = np.array([row["scale"] for row in report["layers"]])
    g = np.exp(np.mean(np.log([row["growth_before"] for row in report["layers"]])))
    assert np.all(growth <= 2.0 * g * (1 + 1e-6)) and abs(np.log(scales).sum()) < 1e-6
    assert np.ptp(np.log(growth)) > 0.1  # not move="all": the layers below the cap keep ratios


def _tiny(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((32, 8, 8, 1)).astype("float32")
    spec, mode = compare.initialization("normed-all", 0)
    return networks.paper_net("a", kernel_initializer=spec, seed=0, size="tiny"), mode, x, \
        (x, rng.integers(0, 10, 32))


def test_output_gain_step_scales_the_logits_by_the_gain():
    model, mode, x, probe = _tiny()
    before = np.asarray(model(x))
    args = argparse.Namespace(rule="output-gain", gain=2 ** 0.5)
    rule_study.step_for(args)(model, mode, probe, compare.make_optimizer("momentum"))
    after = np.asarray(model(x))  # a chain: rescale keeps the draw-times-gain function
    np.testing.assert_allclose(after, 2 ** 0.5 * before, rtol=1e-4, atol=1e-6)


def test_synthetic_step_measures_on_noise_not_on_the_data():
    model, mode, x, probe = _tiny()
    twin, _, _, _ = _tiny()
    args = argparse.Namespace(rule="synthetic")
    opt = compare.make_optimizer("momentum")
    noise = rule_study.step_for(args)(model, mode, probe, opt).as_dict()
    data = compare.apply_rescale(twin, mode, probe, opt).as_dict()
    scales = [[row["scale"] for row in r["layers"]] for r in (noise, data)]
    assert abs(np.log(scales[0]).sum()) < 1e-6 and not np.allclose(*scales, rtol=1e-3)
    # the same data-free probe whatever the data
    other = _tiny()[0]
    again = rule_study.step_for(args)(other, mode, (x[::-1], probe[1]), opt).as_dict()
    assert np.allclose([row["scale"] for row in again["layers"]], scales[0], rtol=1e-5)


def test_output_rule_equalizes_each_layers_output_change_and_keeps_the_function():
    model, mode, x, probe = _tiny()
    before = np.asarray(model(x))
    opt = compare.make_optimizer("momentum")
    args = argparse.Namespace(rule="output")
    report = rule_study.step_for(args)(model, mode, probe, opt).as_dict()
    assert np.linalg.norm(np.asarray(model(x)) - before) <= 1e-5 * np.linalg.norm(before)
    kernels = [v for v in model.trainable_variables if v.path in
               {row["path"] for row in report["layers"]}]
    changes = rule_study.output_changes(model, kernels, probe, opt)
    assert np.ptp(np.log(changes)) < 1e-3  # equal output changes: the law is exact on a chain
    growth = [row["growth_after"] for row in report["layers"]]
    assert np.ptp(np.log(growth)) > 0.1  # ... which is not equal parameter growth


def test_uniform_noise_probe_is_nonnegative_and_differs_from_normal_noise(monkeypatch):
    import keras_normed

    model, mode, x, probe = _tiny()
    twin = _tiny()[0]
    opt = compare.make_optimizer("momentum")
    seen, real = [], keras_normed.rescale

    def spy(model, data=None, **kwargs):
        seen.append(np.asarray(data[0]))
        return real(model, data=data, **kwargs)

    monkeypatch.setattr(keras_normed, "rescale", spy)
    for m, noise in ((model, "uniform"), (twin, "normal")):
        rule_study.step_for(argparse.Namespace(rule="synthetic", noise=noise))(m, mode, probe, opt)
    assert seen[0].min() >= 0.0 and seen[0].max() <= 1.0 and seen[1].min() < 0.0
    assert seen[0].shape == seen[1].shape == x.shape
    assert not np.allclose(seen[0], x)  # not the data


def test_mean_scales_gives_every_seed_the_same_scales(tmp_path):
    import json

    def compare_json(paths, *per_run):
        return json.dumps({"runs": [{"net": "a", "init": "normed", "rescale": {"layers": [
            {"path": p, "scale": s} for p, s in zip(paths, scales)]}} for scales in per_run]})

    path = tmp_path / "compare.json"
    path.write_text(compare_json(("k1", "k2"), (2.0, 0.5), (8.0, 0.125)))
    assert rule_study.mean_scales(str(path), "a") == pytest.approx({"k1": 4.0, "k2": 0.25})
    with pytest.raises(ValueError, match="no 'normed' run of net 'b'"):
        rule_study.mean_scales(str(path), "b")
    # On the net: each seed's kernels end at that seed's draw times the same mean scales.
    rng = np.random.default_rng(0)
    probe = (rng.random((32, 8, 8, 1)).astype("float32"), rng.integers(0, 10, 32))
    spec, mode = compare.initialization("normed-all", 0)
    args = argparse.Namespace(rule="mean-scales", scales_from=str(path))
    for seed in (0, 1):
        model = networks.paper_net("a", kernel_initializer=spec, seed=seed, size="tiny")
        kernels = [layer.kernel for layer in model.layers if hasattr(layer, "kernel")]
        draw = [np.asarray(k) for k in kernels]
        paths = [k.path for k in kernels]
        targets = np.exp(np.random.default_rng(seed).normal(size=len(paths)))
        path.write_text(compare_json(paths, targets * 2, targets / 2))
        report = rule_study.step_for(args)(model, mode, probe,
                                           compare.make_optimizer("momentum")).as_dict()
        assert [row["scale"] for row in report["layers"]] == pytest.approx(list(targets))
        for kernel, w0, c in zip(kernels, draw, targets):
            np.testing.assert_allclose(np.asarray(kernel), w0 * c, rtol=1e-5, atol=1e-8)
