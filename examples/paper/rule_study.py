"""The rules tried for issue 15 besides ``rescale``'s own moves (docs/results.md, "The rule").

Each one runs ``compare``'s training loop with the model-level step replaced; nets (a)-(d) are
chains, so the function-keeping constraint is one: the product of the scales is 1.

- ``--rule cap --kappa K``: the least change from the Normed draw (``min sum log(c)^2``) with
  every layer's growth ``<= K`` times the geometric-mean growth (``K = 1`` is ``move="all"``);
- ``--rule cap --rabs R``: the same with the bound ``max(R, geometric mean)``, an absolute cap;
- ``--rule calibrate --tau T``: ``rescale`` (``--inits`` move), then every kernel times the
  same factor so that the logits' RMS on the probe batch is ``T`` (changes the function);
- ``--rule dc``: every circulant/periodic block's zero-frequency gain (the sum of its entries)
  set to its RMS, sign kept, before ``rescale``; ``--rule dc-zero``: set to 0 (each block's
  entries centred; the draw's common-mode gain removed);
- ``--rule output-gain --gain G``: the output layer's draw times ``G`` (``G = sqrt(2)``: the
  ReLU gain there, as He has), then ``rescale`` (changes the function by ``G``);
- ``--rule synthetic``: ``rescale``'s probe batch replaced by noise images with uniform random
  labels (a data-free probe that still sees the seed's own draw): ``--noise normal`` N(0, 1),
  ``--noise uniform`` U(0, 1) (nonnegative, as pixels are: a nonzero mean reaches the
  zero-frequency gain of the circulant blocks, which N(0, 1) does not);
- ``--rule mean-scales --scales-from FILE``: every run of a net gets the same scales, the
  geometric mean over the seeds of the scales ``rescale`` found for that net in ``compare``'s
  JSON ``FILE`` (its ``normed`` runs): the best any seed-independent (data-free, structure-only)
  rule could hope for, if the probe's average is the target;
- ``--rule output``: equalize each layer's relative *output* change under the first step,
  ``||op(h; dW)|| / ||op(h; W)||`` on the probe (its input ``h``, pre-activation), instead of
  its parameter growth ``||dW|| / ||W||`` (the same law in the scales, so one solve).

Example::

    python -m examples.paper.rule_study --rule cap --kappa 2 --nets b c d \\
        --data-dir ../shared/data/mnist
"""

from __future__ import annotations

import argparse
import json

# First: it imports keras_normed, which keeps TensorFlow's start-up lines off a command's screen.
from examples.paper import options  # isort: skip

import numpy as np

from examples.paper import compare


def least_change(log_r: np.ndarray, log_cap: float, p: float) -> np.ndarray:
    """``log c`` minimizing ``sum (log c)^2`` subject to ``sum log c = 0`` and
    ``log r - p log c <= log_cap`` (growth law ``r c^-p``): ``max(lower bound, lam)`` with the
    ``lam`` that makes the sum zero (bisection). Needs ``mean(log r) <= log_cap``."""
    lower = (np.asarray(log_r, float) - log_cap) / p
    if lower.sum() > 1e-9:
        raise ValueError("infeasible: the cap is below the geometric-mean growth")
    lo, hi = lower.min() - 1.0, 1.0
    for _ in range(200):
        lam = (lo + hi) / 2
        lo, hi = (lam, hi) if np.maximum(lower, lam).sum() < 0 else (lo, lam)
    return np.maximum(lower, (lo + hi) / 2)


def _cap(model, report: dict, args) -> None:
    layers, p = report["layers"], report["exponent"]
    log_r = np.log([row["growth_before"] for row in layers])
    log_g = float(np.mean(log_r))
    log_cap = max(log_g, np.log(args.rabs)) if args.rabs else log_g + np.log(args.kappa)
    scales = np.exp(least_change(log_r, log_cap, p))
    _set_scales(model, report, {row["path"]: float(c) for row, c in zip(layers, scales)})
    for row in layers:
        row["growth_after"] = float(row["growth_before"] * row["scale"] ** -p)


def _calibrate(model, report: dict, probe, tau: float) -> None:
    kernels = [layer.kernel for layer in model.layers
               if getattr(layer, "kernel", None) is not None and layer.trainable]
    rms = float(np.sqrt(np.mean(np.asarray(model(probe[0], training=False)) ** 2)))
    factor = (tau / rms) ** (1.0 / len(kernels))
    for kernel in kernels:
        kernel.assign(kernel * factor)
    report.update(logit_rms_before=rms, calibration=factor)


def output_changes(model, kernels, probe, optimizer, loss=None) -> np.ndarray:
    """``||op(h; dW)|| / ||op(h; W)||`` per kernel: its layer's pre-activation change under the
    optimizer's first step, relative to the pre-activation, on its own input ``h``."""
    import keras

    from keras_normed import engine
    from keras_normed.scaling import measure_growth

    layers = [next(lay for lay in model.layers if getattr(lay, "kernel", None) is k)
              for k in kernels]
    grads = measure_growth(model, probe, kernels, optimizer=optimizer, loss=loss)["grads"]
    values = [keras.ops.convert_to_numpy(k) for k in kernels]
    steps = engine.optimizer_steps(optimizer, grads, values)
    inputs = keras.Model(model.inputs, [lay.input for lay in layers])(probe[0])
    changes = []
    for layer, kernel, value, step, h in zip(layers, kernels, values, steps, inputs):
        activation, layer.activation = layer.activation, keras.activations.linear
        try:
            z0 = np.asarray(layer(h), np.float64)
            kernel.assign((value + step).astype(value.dtype))
            z1 = np.asarray(layer(h), np.float64)
        finally:
            kernel.assign(value)
            layer.activation = activation
        bias = 0.0 if layer.bias is None else np.asarray(layer.bias, np.float64)
        changes.append(np.linalg.norm(z1 - z0) / np.linalg.norm(z0 - bias))
    return np.asarray(changes)


def _equalize_outputs(model, report: dict, probe, optimizer, loss) -> None:
    from keras_normed import engine

    rows = report["layers"]
    by_path = {v.path: v for v in model.trainable_variables}
    kernels = [by_path[row["path"]] for row in rows]
    log_u = np.log(output_changes(model, kernels, probe, optimizer, loss))
    a, _ = engine.equalize(log_u, np.ones((1, len(rows))), report["exponent"])
    for row, kernel, ai in zip(rows, kernels, a):
        kernel.assign(kernel * float(np.exp(ai)))
        row["scale"] = float(row["scale"] * np.exp(ai))
        row["growth_after"] = float(row["growth_before"] * row["scale"] ** -report["exponent"])


def _fix_zero_frequency(model, zero: bool = False) -> None:
    from keras_normed.layers import CirculantConv2D, CirculantDense, PeriodicConv2D

    axes_of = {PeriodicConv2D: (0, 1), CirculantDense: (2,), CirculantConv2D: (0, 1, 4)}
    for layer in model.layers:
        axes = axes_of.get(type(layer))
        if axes is None:
            continue
        w = np.asarray(layer.kernel)
        n = int(np.prod([w.shape[i] for i in axes]))
        total = w.sum(axis=axes, keepdims=True)
        rms = np.sqrt((w ** 2).mean(axis=axes, keepdims=True)) * np.sqrt(n)
        target = 0.0 if zero else np.where(total >= 0, rms, -rms)
        layer.kernel.assign(w + (target - total) / n)


def mean_scales(path: str, net: str, init: str = "normed") -> dict:
    """``{kernel path: geometric mean over the runs' scales}`` for ``net`` in a compare JSON."""
    with open(path) as f:
        runs = [r for r in json.load(f)["runs"]
                if r["net"] == net and r["init"] == init and r.get("rescale")]
    if not runs:
        raise ValueError(f"{path} has no {init!r} run of net {net!r} with a rescale report.")
    logs: dict = {}
    for run in runs:
        for row in run["rescale"]["layers"]:
            logs.setdefault(row["path"], []).append(np.log(row["scale"]))
    return {k: float(np.exp(np.mean(v))) for k, v in logs.items()}


def _set_scales(model, report: dict, target: dict) -> None:
    by_path = {v.path: v for v in model.trainable_variables}
    for row in report["layers"]:
        factor = target[row["path"]] / row["scale"]
        by_path[row["path"]].assign(by_path[row["path"]] * factor)
        row["scale"] = target[row["path"]]


class _Report:
    def __init__(self, summary: dict):
        self.summary = summary

    def as_dict(self) -> dict:
        return self.summary


def step_for(args):
    """The replacement for :func:`examples.paper.compare.apply_rescale`."""
    from keras_normed import rescale

    def step(model, mode, probe, optimizer, loss=None):
        rule, move = mode
        if args.rule in ("dc", "dc-zero"):
            _fix_zero_frequency(model, zero=args.rule == "dc-zero")
        if args.rule == "output-gain":
            last = [lay for lay in model.layers if getattr(lay, "kernel", None) is not None][-1]
            last.kernel.assign(last.kernel * args.gain)
        if args.rule == "synthetic":
            x, y = probe
            rng = np.random.default_rng(len(y))
            uniform = getattr(args, "noise", "normal") == "uniform"
            noise = (rng.uniform(0.0, 1.0, np.shape(x)) if uniform
                     else rng.standard_normal(np.shape(x)))
            probe = (noise.astype("float32"), rng.integers(0, 10, len(y)))
        report = rescale(model, data=probe, optimizer=optimizer, loss=loss, rule=rule,
                         move=move, force=args.rule in ("dc", "dc-zero", "output-gain")).as_dict()
        if args.rule == "cap":
            _cap(model, report, args)
        elif args.rule == "output":
            _equalize_outputs(model, report, probe, optimizer, loss)
        elif args.rule == "mean-scales":
            _set_scales(model, report, mean_scales(args.scales_from,
                                                   model.name.removeprefix("paper_net_")))
        elif args.rule == "calibrate":
            _calibrate(model, report, probe, args.tau)
        return _Report(report)

    return step


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.paper.rule_study",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--rule", choices=("cap", "calibrate", "dc", "dc-zero", "output-gain",
                                           "synthetic", "output", "mean-scales"),
                        required=True, help="the rule (the module's docstring says each)")
    parser.add_argument("--gain", type=options.positive_float, default=2 ** 0.5,
                        help="--rule output-gain: the factor on the output layer's draw")
    parser.add_argument("--noise", choices=("normal", "uniform"), default="normal",
                        help="--rule synthetic's images: N(0, 1) or U(0, 1)")
    parser.add_argument("--scales-from", type=options.existing_file, default=None,
                        help="--rule mean-scales: a compare JSON with normed runs of the nets")
    parser.add_argument("--kappa", type=options.positive_float,
                        default=1.0, help="--rule cap: growth bound, times the geometric mean")
    parser.add_argument("--rabs", type=options.nonneg_float, default=0.0,
                        help="--rule cap: an absolute growth bound (0: none)")
    parser.add_argument("--tau", type=options.positive_float, default=1.0,
                        help="--rule calibrate: the logits' RMS to reach")
    parser.add_argument("--nets", nargs="+", default=["a", "b", "c", "d"], choices=compare.NETS)
    # normed-all: the rules were measured over move="all" (the default before move="auto").
    parser.add_argument("--inits", nargs="+", default=["normed-all"],
                        choices=("normed-all", "normed", "normed-structured", "normed-analytic"))
    parser.add_argument("--seeds", type=options.positive_int, default=5, help="seeds 0..N-1")
    parser.add_argument("--epochs", type=options.positive_int, default=1)
    parser.add_argument("--data-dir", type=options.existing_dir, default=None,
                        help=f"folder with MNIST IDX files (default: ${options.ENV_VAR}, else "
                             "the sklearn digits)")
    options.add_output_argument(parser, None, "JSON file for every run", metavar="FILE")
    args = parser.parse_args(argv)
    args.nets, args.inits = list(dict.fromkeys(args.nets)), list(dict.fromkeys(args.inits))
    if args.rule == "mean-scales" and not args.scales_from:
        parser.error("--rule mean-scales needs --scales-from FILE (a compare JSON)")
    try:
        options.check_data("auto", args.data_dir)
    except options.OptionError as err:
        parser.error(str(err))
    from examples.paper.data import load_digits

    compare.apply_rescale = step_for(args)
    data = load_digits("auto", args.data_dir, seed=0)
    runs = [compare.run_one(net, init, seed, data, epochs=args.epochs)
            for net in args.nets for init in args.inits for seed in range(args.seeds)]
    summary = compare.summarize(runs)
    print(compare.format_table(summary))
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"settings": vars(args), "runs": runs, "summary": summary}, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
