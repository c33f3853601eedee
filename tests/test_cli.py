"""Tests of the command-line tool (keras_normed.cli) and the offline demo."""

import re
import sys

import pytest

from keras_normed import cli


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in cli.COMMANDS:
        assert command in out
    assert "Train a block-circulant network" in out  # the demo's summary, read without import


@pytest.mark.parametrize("argv", [["no-such-command"], [], ["demo", "--no-such-option"],
                                  ["demo", "--epochs", "many"], ["bench", "--sizes", "0"]])
def test_bad_command_or_option_exits_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_command_help_shows_its_options(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ("--source", "--data-dir", "--epochs", "--batch-size", "--seed",
                   "--block-size"):
        assert option in out


def test_every_command_module_has_the_protocol():
    import importlib

    for name, module in cli.COMMANDS.items():
        mod = importlib.import_module(module)
        assert callable(mod.add_arguments) and callable(mod.run), name


def test_python_dash_m_runs_the_cli(monkeypatch, capsys):
    """``python -m keras_normed`` (run in-process: a subprocess would re-import TensorFlow)."""
    import runpy

    monkeypatch.setattr(sys, "argv", ["keras_normed", "nope"])
    with pytest.raises(SystemExit) as exc:
        runpy.run_module("keras_normed", run_name="__main__")
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def _independent_param_counts(block_size: int):
    """count_params of the two demo networks built directly with Keras, and by formula."""
    import keras

    from keras_normed.layers import CirculantDense

    def count(hidden):
        model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), hidden,
                                  keras.layers.Dense(10)])
        return model.count_params()

    circ = count(CirculantDense(512, block_size))
    dense = count(keras.layers.Dense(512))
    # ceil(784 / b) x (512 / b) blocks of b parameters, + biases, + the 512 -> 10 head.
    assert circ == -(-784 // block_size) * (512 // block_size) * block_size + 512 + 5130
    assert dense == 784 * 512 + 512 + 5130
    return circ, dense


def test_demo_one_epoch_on_offline_digits(capsys):
    code = cli.main(["demo", "--epochs", "1", "--source", "sklearn", "--block-size", "64",
                     "--seed", "0"])
    assert code == 0
    out = capsys.readouterr().out
    assert "scikit-learn" in out  # says which data it used
    rows = {}
    for line in out.splitlines():
        m = re.match(r"^(circulant|dense)\s+.*?\s([\d,]+)\s+([\d,]+)\s+([\d.]+)\s+([\d.]+)$",
                     line)
        if m:
            rows[m.group(1)] = (int(m.group(2).replace(",", "")), float(m.group(4)))
    assert set(rows) == {"circulant", "dense"}, out
    circ, dense = _independent_param_counts(64)
    assert rows["circulant"][0] == circ
    assert rows["dense"][0] == dense
    for name, (_, accuracy) in rows.items():
        assert 0.2 < accuracy <= 1.0, (name, accuracy)


def test_demo_rejects_bad_values():
    from keras_normed.experiments.demo import run_demo

    with pytest.raises(ValueError, match="epochs"):
        run_demo(source="sklearn", epochs=0)
    with pytest.raises(ValueError, match="block_size"):
        run_demo(source="sklearn", block_size=0)
