"""`python -m examples.paper depth --quick`: table, JSON and PNG are produced, and the measured
signal propagation shows the papers' claims at depth 50."""

import argparse
import json
import math
import os

import pytest

from examples.paper import depth


def _args(tmp_path, *extra):
    parser = argparse.ArgumentParser()
    depth.add_arguments(parser)
    return parser.parse_args(["--output", str(tmp_path), *extra])


def test_quick_run(tmp_path, capsys):
    assert depth.run(_args(tmp_path, "--quick", "--steps", "5", "--train-depth", "10",
                                "--inits", "delta_orthogonal,glorot,he")) == 0
    out = capsys.readouterr().out
    assert "delta_orthogonal" in out and "D=50" in out and "test acc" in out
    assert os.path.getsize(tmp_path / "depth.png") > 10_000
    with open(tmp_path / "depth.json") as f:
        res = json.load(f)
    assert res["config"]["depths"] == [10, 50]
    init = res["init"]
    for name in ("delta_orthogonal", "glorot", "he"):
        for key in ("signal_ratio", "grad_ratio"):
            assert all(math.isfinite(v) and v > 0 for v in init[name][key].values())
        assert len(init[name]["signal_curve"]) == 51
        assert len(res["train"][name]["loss"]) == 5
    # Dynamical isometry at the critical point: after 50 tanh layers, delta-orthogonal keeps the
    # signal and the Jacobian's gradient norm within a factor 2 ...
    delta = init["delta_orthogonal"]
    assert 0.5 <= delta["signal_ratio"]["50"] <= 2.0
    assert 0.5 <= delta["grad_ratio"]["50"] <= 2.0
    # ... while He (sigma_w^2 = 2, chaotic phase, chi ~ 1.1 per layer) explodes the gradient and
    # Glorot (sigma_w^2 = 1 but Gaussian, with zero-padding losses) lets both decay.
    assert init["he"]["grad_ratio"]["50"] > 4.0
    assert init["glorot"]["signal_ratio"]["50"] < 0.25
    assert init["glorot"]["grad_ratio"]["50"] < 0.25
    for name, ratio in (("he", init["he"]["grad_ratio"]["50"]),
                        ("glorot", init["glorot"]["grad_ratio"]["50"])):
        assert abs(math.log(ratio)) > 2 * abs(math.log(delta["grad_ratio"]["50"])), name
    # --merge recombines runs made per initializer.
    merged_dir = tmp_path / "merged"
    assert depth.run(_args(merged_dir, "--merge", str(tmp_path / "depth.json"))) == 0
    assert "delta_orthogonal" in capsys.readouterr().out
    with open(merged_dir / "depth.json") as f:
        assert json.load(f)["init"].keys() == init.keys()


@pytest.mark.parametrize("argv,option", [(["--inits", "lecun"], "--inits"),
                                         (["--depths", "a,b"], "--depths"),
                                         (["--depths", "0,10"], "--depths")])
def test_bad_options(tmp_path, capsys, argv, option):
    with pytest.raises(SystemExit) as exc:
        _args(tmp_path, *argv)
    assert exc.value.code == 2
    assert f"argument {option}:" in capsys.readouterr().err
    assert not os.listdir(tmp_path)


def test_bad_options_given_programmatically(tmp_path):
    args = _args(tmp_path)
    args.inits = "he,lecun"
    with pytest.raises(ValueError, match="--inits"):
        depth.run(args)
    args = _args(tmp_path)
    args.depths = "a,b"
    with pytest.raises(ValueError, match="--depths"):
        depth.run(args)


@pytest.mark.slow
def test_delta_orthogonal_trains_200_layers_where_glorot_and_he_do_not():
    """Xiao et al.'s claim at depth 200 on MNIST (3-4 minutes on 2 cores): 100 SGD steps of a
    200-layer vanilla tanh CNN reach > 50% test accuracy with delta-orthogonal kernels at the
    critical point, while Glorot and He stay at chance (< 20%)."""
    from examples.paper.data import load_digits

    data = load_digits("auto", None, n_train=8000, n_test=1000, seed=0)
    acc = {}
    for name in ("delta_orthogonal", "glorot", "he"):
        r = depth.train(name, 200, data, steps=100, width=16, batch_size=64, lr=0.001,
                        momentum=0.9, seed=0, sigma_b2=1e-6, jit=True)
        acc[name] = r["test_acc"]
    assert acc["delta_orthogonal"] > 0.5, acc
    assert acc["glorot"] < 0.2 and acc["he"] < 0.2, acc


@pytest.mark.slow
def test_delta_orthogonal_trains_1000_layers_where_the_others_do_not():
    """The same at depth 1,000 (docs/depth.md; about 25 minutes on 2 idle cores, 4 GiB): 200
    SGD steps at lr 2e-4 (the step shrinks with depth: every layer's update adds up in the
    output) reach > 80% test accuracy with delta-orthogonal kernels; Keras' orthogonal, Glorot
    and He stay at chance (< 20%) or diverge (He: NaN by step 3). Also checks that the step
    records its compile and step times."""
    from examples.paper.data import load_digits

    data = load_digits("auto", None, n_train=8000, n_test=2000, seed=0)
    acc = {}
    for name in ("delta_orthogonal", "orthogonal", "glorot", "he"):
        r = depth.train(name, 1000, data, steps=200, width=16, batch_size=64, lr=2e-4,
                        momentum=0.9, seed=0, sigma_b2=1e-6, jit=True)
        assert r["first_step_seconds"] > 0 and r["step_seconds"] > 0, r
        acc[name] = r["test_acc"] if not r["diverged"] else 0.0  # NaN when diverged
    assert acc["delta_orthogonal"] > 0.8, acc
    assert all(acc[n] < 0.2 for n in ("orthogonal", "glorot", "he")), acc
