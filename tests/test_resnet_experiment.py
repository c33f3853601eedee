"""The `resnet` and `datainit` commands, in their --quick variants, through the CLI."""

import json
import math
import os

import numpy as np
import pytest

from keras_normed import cli
from keras_normed.experiments import datainit, resnet


def test_resnet_quick(tmp_path):
    out = str(tmp_path / "resnet")
    assert cli.main(["resnet", "--quick", "--source", "sklearn", "--out", out]) == 0
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


def test_unknown_init_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--inits"):
        cli.main(["datainit", "--quick", "--inits", "he,nope", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="Unknown init"):
        resnet.initialize(None, "nope", np.zeros((2, 28, 28, 1)), 0)


def test_summary_counts_diverged_runs_instead_of_averaging_them():
    from keras_normed.experiments import resnet

    runs = {"a": [{"losses": [2.0, 1.0], "test_accuracy": 0.8},
                  {"losses": [2.0, 0.5], "test_accuracy": 0.9}],
            "b": [{"losses": [3.0, float("nan")], "test_accuracy": 0.1},
                  {"losses": [3.0, 1.5], "test_accuracy": 0.5}]}
    rows = {r["init"]: r for r in resnet.summarize(runs, window=1)}
    assert rows["a"]["final_loss"] == 0.75 and rows["a"]["diverged"] == 0
    assert rows["b"]["final_loss"] == 1.5 and rows["b"]["final_loss_std"] == 0.0
    assert rows["b"]["diverged"] == 1
    table = resnet.markdown_table(list(rows.values()))
    assert "| b | 3 | 1.500 +- 0.000 | 30.0% | 1 |" in table
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
