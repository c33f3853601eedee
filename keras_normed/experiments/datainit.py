"""LSUV and data-dependent init against He on a deep plain CNN (ReLU, no BatchNorm) on digits.

The network: Conv3x3(c, stride 2) then ``depth - 1`` Conv3x3 layers (ReLU, 'same'), the
second half at half the resolution and twice the channels, Flatten (or global average
pooling, `--head gap`), Dense(10).
Initializations compared:

- ``he``: ``keras.initializers.HeNormal`` kernels, zero biases;
- ``lsuv``: :func:`keras_normed.lsuv` (orthonormal, then unit output variance per layer);
- ``ddi``: :func:`keras_normed.data_dependent_init` from the He weights (within-layer
  normalization and the between-layer equalization of change rates, on the labels).

Reported: training loss after N steps, steps until the 20-step mean loss first falls below
``--threshold``, test accuracy.

Example::

    keras-normed datainit --quick
    keras-normed datainit --depth 21 --steps 300 --source mnist-dir
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Dict, List, Optional

from keras_normed.experiments import resnet as _common

INITS = ("he", "lsuv", "ddi")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--depth", type=int, default=21, help="conv layers (default 21)")
    parser.add_argument("--channels", type=int, default=16, help="channels of the first half")
    parser.add_argument("--head", choices=("flatten", "gap"), default="flatten",
                        help="readout: flatten the last maps (trains), or global average pooling "
                             "(at depth 21 nothing passed 40%% in 150 steps)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.01, help="SGD learning rate")
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--threshold", type=float, default=1.0,
                        help="loss threshold for 'steps to threshold'")
    parser.add_argument("--inits", default=",".join(INITS),
                        help=f"comma-separated subset of {', '.join(INITS)}")
    parser.add_argument("--seeds", type=int, default=1, help="runs per init (seeds 0..n-1)")
    parser.add_argument("--n-train", type=int, default=8000)
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--source", default="auto", help="auto|mnist-dir|keras|sklearn")
    parser.add_argument("--data-dir", default=None, help="folder with MNIST IDX files")
    parser.add_argument("--out", default="results/datainit", help="folder for JSON and PNG")
    parser.add_argument("--quick", action="store_true",
                        help="tiny run (4 layers, 5 steps, sklearn digits) for tests")
    parser.add_argument("--no-plot", action="store_true")


def build_model(depth: int, channels: int, seed: int, head: str = "flatten"):
    """Deep plain ReLU CNN with He-normal kernels (seeded per layer); ``head`` "flatten" or
    "gap" (global average pooling) before the Dense(10) logits."""
    import keras

    if depth < 2:
        raise ValueError(f"`depth` must be >= 2, got {depth}.")
    if head not in ("flatten", "gap"):
        raise ValueError(f"`head` must be 'flatten' or 'gap', got {head!r}.")
    inputs = keras.Input((28, 28, 1))

    def conv(c, stride=1, i=0):
        return keras.layers.Conv2D(
            c, 3, strides=stride, padding="same", activation="relu",
            kernel_initializer=keras.initializers.HeNormal(seed=seed * 1009 + i))

    h = conv(channels, 2, 0)(inputs)  # 14x14
    half = depth // 2
    for i in range(1, depth):
        if i == half:
            h = keras.layers.MaxPooling2D()(h)  # 7x7
        h = conv(channels if i < half else 2 * channels, 1, i)(h)
    pool = keras.layers.Flatten() if head == "flatten" else keras.layers.GlobalAveragePooling2D()
    h = pool(h)
    outputs = keras.layers.Dense(10, kernel_initializer=keras.initializers.HeNormal(
        seed=seed * 1009 + depth))(h)
    return keras.Model(inputs, outputs)


def initialize(model, init: str, x_batch, y_batch, seed: int) -> None:
    from keras_normed.data_driven import data_dependent_init, lsuv

    if init == "lsuv":
        lsuv(model, x_batch, seed=seed)
    elif init == "ddi":
        data_dependent_init(model, x_batch, y_batch, seed=seed)
    elif init != "he":
        raise ValueError(f"Unknown init {init!r}; expected one of {INITS}.")


def steps_to(losses: List[float], threshold: float, window: int = 20) -> Optional[int]:
    """First step at which the ``window``-step mean loss is below ``threshold`` (or None)."""
    for step, value in enumerate(_common._smooth(losses, window)):
        if step + 1 >= min(window, len(losses)) and value < threshold:
            return step + 1
    return None


def run(args: argparse.Namespace) -> int:
    from keras_normed.experiments.data import load_digits
    from keras_normed.experiments.options import choice_list

    if args.quick:
        args.depth, args.channels, args.steps = min(args.depth, 4), min(args.channels, 4), 5
        args.n_train, args.n_test = 256, 64
        if args.source == "auto":
            args.source = "sklearn"
    inits = choice_list(args.inits, INITS)
    data = load_digits(args.source, args.data_dir, args.n_train, args.n_test, seed=0)

    def prepare(init: str, seed: int):
        model = build_model(args.depth, args.channels, seed, args.head)
        initialize(model, init, data.x_train[:256], data.y_train[:256], seed)
        return model

    def annotate(result: Dict) -> str:
        result["steps_to_threshold"] = steps_to(result["losses"], args.threshold,
                                                min(20, args.steps))
        return f", steps to {args.threshold}: {result['steps_to_threshold']}"

    runs = _common.train_runs(inits, data, args, prepare, annotate)
    rows = _common.summarize(runs, window=min(20, args.steps))
    for row in rows:
        hits = [r["steps_to_threshold"] for r in runs[row["init"]]]
        row["steps_to_threshold"] = hits
    lines = ["| init | first-step loss | final loss (mean of last 20 steps) | steps to loss "
             f"< {args.threshold} | test accuracy |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        hits = ", ".join("never" if h is None else str(h) for h in r["steps_to_threshold"])
        lines.append(f"| {r['init']} | {r['initial_loss']:.3g} | {r['final_loss']:.3f} +- "
                     f"{r['final_loss_std']:.3f} | {hits} | {100 * r['test_accuracy']:.1f}% |")
    print("\n".join(lines))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "datainit.json"), "w") as f:
        json.dump({"config": vars(args), "data": data.source, "rows": rows, "runs": runs}, f)
    if not args.no_plot:
        _common.plot(runs, os.path.join(args.out, "datainit.png"),
                     f"plain CNN, {args.depth} conv layers, no BN")
    print(f"Results in {args.out}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
