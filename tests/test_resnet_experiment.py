"""The `resnet` and `datainit` commands, in their --quick variants, through the CLI; the
divergence rule they share with `compare`; resnet's defaults against its documentation."""

import argparse
import json
import math
import os
import shlex

import numpy as np
import pytest

from examples.paper import __main__ as cli
from examples.paper import datainit, resnet


def test_resnet_quick(tmp_path):
    out = str(tmp_path / "resnet")
    assert cli.main(["resnet", "--quick", "--source", "sklearn", "--output", out]) == 0
    with open(os.path.join(out, "resnet.json")) as f:
        result = json.load(f)
    assert [row["init"] for row in result["rows"]] == list(resnet.INITS)
    assert os.path.getsize(os.path.join(out, "resnet.png")) > 1000
    runs = result["runs"]
    assert all(len(r[0]["losses"]) == 5 for r in runs.values())
    for init in ("arpit", "salimans"):
        assert all(math.isfinite(v) for v in runs[init][0]["losses"]), init


def test_resnet_model_structure():
    model = resnet.build_model(blocks=3, width=8, init="arpit", seed=0)
    from keras_normed.initializers.weight_norm import residual_branch_ends

    assert residual_branch_ends(model) == [f"block{b}_b" for b in range(3)]


def test_datainit_quick(tmp_path):
    out = str(tmp_path / "datainit")
    # --out: the old spelling, kept as a hidden alias of --output.
    assert cli.main(["datainit", "--quick", "--source", "sklearn", "--out", out,
                     "--no-plot"]) == 0
    with open(os.path.join(out, "datainit.json")) as f:
        result = json.load(f)
    assert [row["init"] for row in result["rows"]] == list(datainit.INITS)
    for row in result["rows"]:
        assert math.isfinite(row["final_loss"])
        assert len(row["steps_to_threshold"]) == 1  # one seed
    for init, seeds in result["runs"].items():
        run = seeds[0]
        assert run["steps_to_threshold"] == datainit.steps_to(run["losses"], 1.0, 5), init


def test_steps_to_threshold():
    losses = [3.0] * 5 + [0.5] * 30
    # The 5-step mean (15 - 2.5 k) / 5 falls below 1 after k = 5 low steps.
    assert datainit.steps_to(losses, 1.0, window=5) == 10
    assert datainit.steps_to([2.0] * 10, 1.0, window=5) is None


def test_unknown_init_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["datainit", "--quick", "--inits", "he,nope", "--output", str(tmp_path)])
    assert exc.value.code == 2
    assert "argument --inits" in capsys.readouterr().err
    assert not os.listdir(tmp_path)
    with pytest.raises(ValueError, match="Unknown init"):
        resnet.initialize(None, "nope", np.zeros((2, 28, 28, 1)), 0)


def test_summary_counts_diverged_runs_instead_of_averaging_them():
    from examples.paper import resnet

    runs = {"a": [{"losses": [2.0, 1.0], "test_accuracy": 0.8},
                  {"losses": [2.0, 0.5], "test_accuracy": 0.9}],
            "b": [{"losses": [3.0, float("nan")], "test_accuracy": 0.1},
                  {"losses": [3.0, 1.5], "test_accuracy": 0.5}]}
    rows = {r["init"]: r for r in resnet.summarize(runs, window=1)}
    assert rows["a"]["final_loss"] == 0.75 and rows["a"]["diverged"] == 0
    assert rows["b"]["final_loss"] == 1.5 and rows["b"]["final_loss_std"] == 0.0
    assert rows["b"]["diverged"] == 1
    table = resnet.markdown_table(list(rows.values()))
    assert "| b | 3 | 1.500 +- 0.000 | 30.0% | 1/2 |" in table
    dead = resnet.summarize({"c": [{"losses": [1.0, float("inf")], "test_accuracy": 0.1}]}, 1)
    assert "every run diverged" in resnet.markdown_table(dead)


def test_datainit_heads():
    """'flatten' feeds every pixel of the last maps to the logits, 'gap' their channel means."""
    import keras

    flat = datainit.build_model(4, 4, 0, head="flatten")
    gap = datainit.build_model(4, 4, 0, head="gap")
    assert flat.layers[-1].kernel.shape == (7 * 7 * 8, 10)
    assert gap.layers[-1].kernel.shape == (8, 10)
    assert isinstance(gap.layers[-2], keras.layers.GlobalAveragePooling2D)
    with pytest.raises(ValueError, match="head"):
        datainit.build_model(4, 4, 0, head="max")


# ----------------------------------------------------------------------------- divergence rule


def _curve(first, factor, n=50, nan_at=None):
    """A loss curve from ``first`` that ends at ``first * factor`` (geometric), NaN at
    ``nan_at``."""
    values = [first * factor ** (i / (n - 1)) for i in range(n)]
    if nan_at is not None:
        values[nan_at] = float("nan")
    return values


def test_divergence_rule_on_synthetic_curves():
    from examples.paper.divergence import GROWTH, is_diverged

    assert GROWTH == 100.0
    assert not is_diverged(_curve(2.3, 0.1))  # trains
    assert not is_diverged(_curve(2.3, 1.0))  # flat: not diverged (compare calls it dead)
    assert not is_diverged(_curve(2.3, 99.0))  # grew, but less than 100-fold
    assert is_diverged(_curve(2.3, 100.0))  # 100-fold: the threshold itself counts
    assert is_diverged(_curve(7.5, 1e3))
    spike = _curve(2.3, 0.1)
    spike[10] = 2.3 * 150  # blew up, then came back: still diverged
    assert is_diverged(spike)
    assert is_diverged(_curve(2.3, 0.1, nan_at=3))
    assert is_diverged([2.3, float("inf"), 1.0])
    assert is_diverged([])
    # Only compare asks for the "dead at chance" test as well.
    assert is_diverged(_curve(2.3, 1.0), dead_loss=2.2)
    assert not is_diverged(_curve(2.3, 0.1), dead_loss=2.2)


def test_resnet_datainit_and_compare_share_the_rule():
    from examples.paper import compare

    grown = _curve(2.0, 200.0)  # finite, but 200-fold
    fine = _curve(2.0, 0.1)
    assert compare.is_diverged(grown, compare.smooth(grown, 0.9))
    assert not compare.is_diverged(fine, compare.smooth(fine, 0.9))
    runs = {"a": [{"losses": grown, "test_accuracy": 0.1},
                  {"losses": fine, "test_accuracy": 0.9}]}
    (row,) = resnet.summarize(runs, window=5)
    assert row["diverged"] == 1
    # A finite blown-up run stays in the mean (only non-finite values are left out).
    assert row["final_loss"] == pytest.approx(np.mean([np.mean(grown[-5:]),
                                                       np.mean(fine[-5:])]))


# ----------------------------------------------------------------------------- defaults


def _parse(module, argv):
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser.parse_args(argv)


def test_resnet_defaults_are_the_documented_training_setting():
    """docs/weight_norm.md reports the command below as training (and width 32 with lr 0.01 as
    diverging for every init): the defaults must be that command's setting."""
    doc = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "weight_norm.md")
    with open(doc, encoding="utf-8") as f:
        text = f.read()
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines)
              if line.startswith("python -m examples.paper resnet --")]
    assert starts, "no `python -m examples.paper resnet` command in docs/weight_norm.md"
    i = starts[0]
    command = lines[i]
    while command.endswith("\\"):
        i += 1
        command = command[:-1] + " " + lines[i].strip()
    argv = shlex.split(command)[4:]  # after "python -m examples.paper resnet"
    if "--data-dir" in argv:  # a folder of the machine it ran on
        k = argv.index("--data-dir")
        del argv[k:k + 2]
    documented = _parse(resnet, argv)
    defaults = _parse(resnet, [])
    for key in ("blocks", "width", "steps", "batch_size", "lr", "momentum", "seeds", "inits"):
        assert getattr(defaults, key) == getattr(documented, key), key
    assert (defaults.width, defaults.lr) != (32, 0.01)
