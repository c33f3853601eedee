"""Tests of the command-line tools: ``keras-normed`` (keras_normed.cli: bench) and
``python -m examples.paper`` (the paper's experiments, same dispatcher), and the offline demo."""

import argparse
import os
import re
import subprocess
import sys

import pytest

from examples.paper import __main__ as paper_cli
from keras_normed import cli

# Every command of both tools -> its module; a command's tool and its name in messages.
COMMANDS = {**cli.COMMANDS, **paper_cli.COMMANDS}


def main(argv):
    """Run a command (or ``--help``) with the tool it belongs to."""
    return (cli.main if argv and argv[0] in cli.COMMANDS else paper_cli.main)(argv)


def prog(command):
    return f"{cli.PROG if command in cli.COMMANDS else paper_cli.PROG} {command}"


def command_parser(command):
    import importlib

    return cli._command_parser(prog(command), importlib.import_module(COMMANDS[command]))


@pytest.mark.parametrize("tool", [cli, paper_cli])
def test_help_lists_every_command(tool, capsys):
    with pytest.raises(SystemExit) as exc:
        tool.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in tool.COMMANDS:
        assert command in out
    if tool is paper_cli:
        assert "Train a block-circulant network" in out  # the demo's summary, read w/o import
    summaries = out.split("commands:\n")[1].split("\n\n")[0].splitlines()
    assert len(summaries) == len(tool.COMMANDS)
    for line in summaries:  # a complete first sentence, not a cut one
        assert line.rstrip().endswith("."), line


@pytest.mark.parametrize("argv", [["no-such-command"], [], ["demo", "--no-such-option"],
                                  ["demo", "--epochs", "many"], ["bench", "--sizes", "0"]])
def test_bad_command_or_option_exits_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_an_output_of_the_wrong_kind_is_refused_before_the_run(tmp_path, capsys):
    """A long run must not fail at its end for its --output: a folder where a file goes, or a
    file where a folder goes, is refused at once (exit 2, one line naming --output)."""
    a_file = tmp_path / "f.json"
    a_file.write_text("{}")
    for argv in (["bench", "--quick", "--output", str(tmp_path)],
                 ["datainit", "--quick", "--output", str(a_file)],
                 ["growth", "--output", str(tmp_path)]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2, argv
        assert "argument --output" in capsys.readouterr().err, argv
    # A path under a file, or where no folder can be made: the run crashed at its end.
    for output, says in ((a_file / "x.json", "is a file, not a folder"),
                         ("/proc/no-such-folder/x.json", "cannot write in")):
        with pytest.raises(SystemExit) as exc:
            main(["bench", "--quick", "--output", str(output)])
        assert exc.value.code == 2 and says in capsys.readouterr().err, output


def test_bad_merge_files_and_block_sizes_are_one_line_errors(tmp_path, capsys):
    not_json, not_compare = tmp_path / "a.txt", tmp_path / "b.json"
    not_json.write_text("not json")
    not_compare.write_text('{"a": 1}')
    for argv, says in ((["compare", "--merge", str(not_json)], "cannot read"),
                       (["compare", "--merge", str(not_compare)], "is not a compare.json"),
                       (["demo", "--block-size", "1000"], "at most 784")):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and says in err and "Traceback" not in err, (argv, err)


def test_command_help_shows_its_options(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ("--source", "--data-dir", "--epochs", "--batch-size", "--seed",
                   "--block-size"):
        assert option in out


def test_every_command_module_has_the_protocol():
    import importlib

    for name, module in COMMANDS.items():
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
    code = main(["demo", "--epochs", "1", "--source", "sklearn", "--block-size", "64",
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
    from examples.paper.demo import run_demo

    with pytest.raises(ValueError, match="epochs"):
        run_demo(source="sklearn", epochs=0)
    with pytest.raises(ValueError, match="block_size"):
        run_demo(source="sklearn", block_size=0)


# ----------------------------------------------------------------------------- a quick, quiet CLI
# The commands this project's tests hold to these rules (`serve` is leaving COMMANDS).
OWN = [c for c in ("bench", "compare", "datainit", "demo", "depth", "growth", "resnet")
       if c in COMMANDS]
# Commands that write files: their folder or file is --output.
WRITERS = ("bench", "compare", "datainit", "depth", "growth", "resnet")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(**extra):
    """The test process's environment for a child, without TF_CPP_MIN_LOG_LEVEL (conftest.py
    sets it) unless given: the child sees what a user who set nothing sees."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _run(args, **env):
    return subprocess.run([sys.executable, *args], cwd=REPO, env=_env(**env),
                          capture_output=True, text=True, timeout=300)


# TensorFlow's start-up lines (absl's notice, oneDNN's, the CPU feature guard) and any C++ log
# line at INFO or WARNING level.
TF_NOISE = re.compile(r"absl::InitializeLog|oneDNN custom operations|cpu_feature_guard|"
                      r"rebuild TensorFlow|^[IW]\d{4} [\d:.]+\s+\d+ \S+:\d+\]", re.M)

_HELP_IMPORTS = r"""
import importlib.abc, sys
HEAVY = ("matplotlib", "sklearn", "scipy", "PIL")
attempts = []

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            attempts.append(name)
            raise ImportError("refused by the test: " + name)

sys.meta_path.insert(0, Refuse())
import keras_normed  # Keras itself tries matplotlib, sklearn, scipy: refused, it copes
from keras_normed import cli
from examples.paper import __main__ as paper_cli
baseline, attempts[:] = set(sys.modules), []
for command in sys.argv[1:]:
    try:
        (cli.main if command in cli.COMMANDS else paper_cli.main)([command, "--help"])
    except SystemExit as exc:
        assert exc.code == 0, (command, exc.code)
new = sorted(set(sys.modules) - baseline)
print("ATTEMPTS", sorted(set(attempts)))
print("NEW", " ".join(new))
"""


def test_help_costs_no_more_than_importing_the_package():
    """After `import keras_normed`, every command's --help imports no plotting, no scikit-learn,
    no data loading: the heavy modules are refused outright, and must not even be asked for."""
    proc = _run(["-c", _HELP_IMPORTS, *OWN])
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines()
                 if line.startswith(("ATTEMPTS", "NEW")))
    assert lines["ATTEMPTS"] == "[]", lines["ATTEMPTS"]
    new = lines["NEW"].split()
    for banned in ("matplotlib", "sklearn", "scipy", "examples.paper.data",
                   "examples.paper.networks", "keras_normed.data_driven"):
        assert not [m for m in new if m == banned or m.startswith(banned + ".")], (banned, new)
    assert "examples.paper.resnet" in new  # the command modules were imported
    assert "examples.paper.growth" in new


def test_a_quick_command_shows_no_tensorflow_start_up_lines(tmp_path):
    proc = _run(["-m", "examples.paper", "demo", "--epochs", "1", "--n-train", "64",
                 "--n-test", "32", "--source", "sklearn"])
    assert proc.returncode == 0, proc.stderr
    assert "circulant" in proc.stdout
    assert not TF_NOISE.search(proc.stderr), proc.stderr


def test_a_bad_value_is_one_line_even_in_a_fresh_process():
    proc = _run(["-m", "keras_normed.cli", "bench", "--repeats", "0"])
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "keras-normed bench: error: argument --repeats: must be an integer >= 1, got '0' "
        "(see 'keras-normed bench --help')"], proc.stderr


def test_a_level_the_user_set_is_kept():
    """TF_CPP_MIN_LOG_LEVEL=1 (INFO off, warnings on) stays 1, and only INFO lines go."""
    code = ("import sys; sys.argv[0] = 'keras-normed'; import os, keras_normed; "
            "print(os.environ['TF_CPP_MIN_LOG_LEVEL'])")
    proc = _run(["-c", code], TF_CPP_MIN_LOG_LEVEL="1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1"]
    assert not re.search(r"^I\d{4} ", proc.stderr, re.M), proc.stderr


def test_quiet_rules():
    from keras_normed import _quiet

    info = ("I0000 00:00:1795881568.333534    3453 port.cc:153] oneDNN custom operations are "
            "on. You may see slightly different numerical results\n")
    warning = "W0000 00:00:1795881568.3 3453 some_file.cc:12] a warning\n"
    error = "E0000 00:00:1795881568.3 3453 cuda_dnn.cc:8310] an error\n"
    preamble = ("WARNING: All log messages before absl::InitializeLog() is called are written "
                "to STDERR\n")
    python = "UserWarning: something Python said\n"
    assert [_quiet.keep_line(x, 2) for x in (info, warning, error, preamble, python)] == [
        False, False, True, False, True]
    assert [_quiet.keep_line(x, 1) for x in (info, warning, preamble)] == [False, True, False]
    assert all(_quiet.keep_line(x, 0) for x in (info, warning, error, preamble, python))
    # Which processes are the command line tool.
    assert _quiet.is_cli(["/venv/bin/keras-normed", "demo"], [])
    assert _quiet.is_cli(["-m"], ["python", "-m", "keras_normed", "demo"])
    assert _quiet.is_cli(["-m"], ["python", "-X", "importtime", "-m", "keras_normed.cli"])
    assert not _quiet.is_cli(["-m"], ["python", "-m", "pytest", "-m", "keras_normed"])
    assert not _quiet.is_cli(["train.py"], ["python", "train.py", "-m", "keras_normed"])
    assert not _quiet.is_cli(["-c"], ["python", "-c", "import keras_normed"])
    assert _quiet.is_cli(["-m"], ["python", "-m", "examples.paper", "compare"])


def _numeric_bad_values(action):
    """Bad values for an option whose type is one of the shared numeric validators."""
    name = getattr(action.type, "__name__", "")
    if name.startswith("int_at_least_"):
        return [str(int(name.rsplit("_", 1)[1]) - 1), "1.5", "x"]
    return {"positive_int": ["0", "-1", "x"], "nonneg_int": ["-1", "x"],
            "positive_float": ["0", "-0.5", "nan", "x"], "nonneg_float": ["-1", "inf"],
            "unit_interval": ["1", "-0.1"], "positive_int_list": ["0", "4,-1", "a"],
            "_conv_shape": ["4,4", "0,4,4"]}.get(name)


def _bad_value_cases():

    cases = []
    for command in OWN:
        parser = command_parser(command)
        for action in parser._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS:
                continue
            option = action.option_strings[0]
            # Every numeric option goes through a shared validator, never a bare int / float.
            assert action.type not in (int, float), (command, option)
            for value in _numeric_bad_values(action) or []:
                cases.append((command, [option, value], option))
    for command in ("compare", "datainit", "demo", "depth", "growth", "resnet"):
        cases.append((command, ["--data-dir", "no/such/folder"], "--data-dir"))
        cases.append((command, ["--data-dir", "."], "--data-dir"))  # no MNIST files there
        cases.append((command, ["--source", "mnist-dir", "--data-dir", "."], "--data-dir"))
        cases.append((command, ["--source", "nowhere"], "--source"))
    cases += [("compare", ["--inits", "he", "nope"], "--inits"),
              ("compare", ["--merge", "no/such.json"], "--merge"),
              ("depth", ["--merge", "no/such.json"], "--merge"),
              ("datainit", ["--inits", "he,nope"], "--inits"),
              ("resnet", ["--inits", ""], "--inits"),
              ("depth", ["--inits", "lecun"], "--inits"),
              ("growth", ["--inits", "he", "nope"], "--inits"),
              ("bench", ["--blocks", "0"], "--blocks")]
    return cases


BAD_VALUES = _bad_value_cases()


@pytest.mark.parametrize("command,argv,option", BAD_VALUES,
                         ids=[f"{c} {' '.join(a)}" for c, a, _ in BAD_VALUES])
def test_a_bad_value_is_one_line_naming_the_option(command, argv, option, capsys, monkeypatch,
                                                    tmp_path):
    monkeypatch.delenv("KERAS_NORMED_MNIST_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # --data-dir . is an empty folder; nothing may be written
    with pytest.raises(SystemExit) as exc:
        main([command, *argv])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"{prog(command)}: error: argument {option}"), lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert not os.listdir(tmp_path)


def test_mnist_dir_without_a_folder_is_one_line(capsys, monkeypatch):
    monkeypatch.delenv("KERAS_NORMED_MNIST_DIR", raising=False)
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--source", "mnist-dir"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "argument --source" in err and "KERAS_NORMED_MNIST_DIR" in err


@pytest.mark.parametrize("command", OWN)
def test_help_states_each_default_once_and_says_output(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # unwrap argparse's lines
    assert "(default: None)" not in text
    assert not re.search(r"\(default[^)]*\)\s*\(default", text), text
    entries = re.split(r"\s(?=--[a-z])", text.split("options:", 1)[1])
    for entry in entries:
        assert entry.count("(default") <= 1, entry
    assert not re.search(r"--out\b(?!put)|--output-dir|--out-dir", text), text
    if command in WRITERS:
        assert "--output" in text


def test_out_is_a_hidden_alias_of_output():

    for command in ("resnet", "datainit", "depth", "compare", "growth"):
        parser = command_parser(command)
        default = parser.parse_args([]).output
        assert parser.parse_args(["--out", "x"]).output == "x"
        assert parser.parse_args(["--output", "y"]).output == "y"
        assert default.startswith("results")


def test_a_size_given_twice_is_measured_once():
    from keras_normed.cli import positive_int_list

    assert positive_int_list("8,8,16,8") == [8, 16]


def test_output_folders_under_a_file_and_bad_merges_are_refused_before_any_work(tmp_path,
                                                                                  capsys):
    """A new-user trial: `--output a_file/sub` passed the check and crashed after training;
    duplicate or mismatched `--merge` files gave tracebacks, or (depth) merged silently."""
    import json

    a_file = tmp_path / "f"
    a_file.write_text("x")
    for command in ("compare", "depth", "resnet", "datainit"):
        with pytest.raises(SystemExit) as exc:
            main([command, "--quick", "--output", str(a_file / "sub")])
        assert exc.value.code == 2
        assert "is a file, not a folder" in capsys.readouterr().err, command
    run = {"net": "a", "init": "he", "seed": 0, "epochs": 1, "batch_size": 64,
           "optimizer": "sgd", "lr": 0.01, "smoothing": 0.98, "final_loss": 0.3}
    compare_json = tmp_path / "compare.json"
    compare_json.write_text(json.dumps({"settings": {"data": "d"}, "runs": [run]}))
    config = {"depths": [10], "steps": 5, "data": "sklearn", "inits": ["he"], "jit": "off"}
    depth_a, depth_b, depth_c = (tmp_path / f"{k}.json" for k in "abc")
    depth_a.write_text(json.dumps({"config": config, "init": {"he": {}}, "train": {}}))
    depth_b.write_text(json.dumps({"config": {**config, "data": "mnist"}, "init": {}}))
    depth_c.write_text(json.dumps({"rows": []}))
    for argv, says in ((["compare", "--merge", str(compare_json), str(compare_json)],
                        "appears twice"),
                       (["depth", "--merge", str(depth_a), str(depth_a)], "earlier file too"),
                       (["depth", "--merge", str(depth_a), str(depth_b)], "['data']"),
                       (["depth", "--merge", str(depth_c)], "is not a depth.json"),
                       (["depth", "--merge", str(a_file)], "cannot read")):
        with pytest.raises(SystemExit) as exc:
            main([*argv, "--output", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and "argument --merge" in err and says in err, argv
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_probe_larger_than_half_the_data_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["growth", "--nets", "a", "--inits", "he", "--source", "sklearn",
              "--probe-size", "5000"])
    assert exc.value.code == 2
    assert "argument --probe-size: 5000 needs 10000 training images" in capsys.readouterr().err


def test_repeated_values_count_once_and_quick_keeps_explicit_options():
    import argparse

    from examples.paper import options, resnet

    assert options.choices(("he", "glorot"))("he,glorot,he") == ["he", "glorot"]
    parser = argparse.ArgumentParser()
    resnet.add_arguments(parser)
    args = parser.parse_args(["--quick", "--steps", "3", "--data-dir", "."])
    options.apply_quick(args, resnet.add_arguments, {"steps": 5, "seeds": 1, "source": "x"})
    assert (args.steps, args.seeds, args.source) == (3, 1, "x")


def test_figure_scripts_check_their_output(capsys):
    from keras_normed.cli import png_file

    for bad in ("/tmp", "figure.svg", "figure"):
        with pytest.raises(argparse.ArgumentTypeError, match="ending in .png"):
            png_file(bad)
    assert png_file("results/x.png") == "results/x.png"
