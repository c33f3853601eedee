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
``--threshold``, test accuracy, diverged runs (the rule of
:mod:`examples.paper.divergence`: a non-finite loss, or a loss 100 times the first).

Example::

    python -m examples.paper datainit --quick
    python -m examples.paper datainit --data-dir "$KERAS_NORMED_MNIST_DIR" --output results/datainit
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Dict, List, Optional

from examples.paper import options
from examples.paper import resnet as _common

INITS = ("he", "lsuv", "ddi")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m examples.paper datainit``."""
    parser.add_argument("--depth", type=options.int_at_least(2), default=21, metavar="N",
                        help="conv layers, at least 2")
    parser.add_argument("--channels", type=options.positive_int, default=16, metavar="N",
                        help="channels of the first half")
    parser.add_argument("--head", choices=("flatten", "gap"), default="flatten",
                        help="readout: flatten the last maps (trains), or global average pooling "
                             "(at depth 21 nothing passed 40%% in 150 steps)")
    options.add_options(parser, inits=INITS, steps=300, batch_size=64, lr=0.01, momentum=0.9,
                        seeds=1)
    parser.add_argument("--threshold", type=options.positive_float, default=1.0,
                        help="loss threshold for 'steps to threshold'")
    options.add_data_arguments(parser)
    options.add_output_argument(parser, os.path.join("results", "datainit"),
                                "folder for datainit.json and datainit.png")
    parser.add_argument("--quick", action="store_true",
                        help="tiny run for tests: 4 layers of 4 channels, 5 steps, 256 / 64 "
                             "images, sklearn digits unless --source or --data-dir says "
                             "otherwise (options given explicitly win)")
    parser.add_argument("--no-plot", action="store_true", help="write no PNG")


def build_model(depth: int, channels: int, seed: int, head: str = "flatten"):
    """Deep plain ReLU CNN with He-normal kernels (layer ``i``: ``layer_seed(seed, i)``);
    ``head`` "flatten" or "gap" (global average pooling) before the Dense(10) logits."""
    import keras

    if depth < 2:
        raise ValueError(f"`depth` must be >= 2, got {depth}.")
    if head not in ("flatten", "gap"):
        raise ValueError(f"`head` must be 'flatten' or 'gap', got {head!r}.")
    inputs = keras.Input((28, 28, 1))

    def conv(c, stride=1, i=0):
        return keras.layers.Conv2D(
            c, 3, strides=stride, padding="same", activation="relu",
            kernel_initializer=keras.initializers.HeNormal(seed=options.layer_seed(seed, i)))

    h = conv(channels, 2, 0)(inputs)  # 14x14
    half = depth // 2
    for i in range(1, depth):
        if i == half:
            h = keras.layers.MaxPooling2D()(h)  # 7x7
        h = conv(channels if i < half else 2 * channels, 1, i)(h)
    pool = keras.layers.Flatten() if head == "flatten" else keras.layers.GlobalAveragePooling2D()
    h = pool(h)
    outputs = keras.layers.Dense(10, kernel_initializer=keras.initializers.HeNormal(
        seed=options.layer_seed(seed, depth)))(h)
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
    from examples.paper.data import load_digits

    if args.quick:
        options.apply_quick(args, add_arguments, {
            "depth": 4, "channels": 4, "steps": 5, "n_train": 256, "n_test": 64,
            **({"source": "sklearn"} if args.data_dir is None else {})})
    inits = _common._inits(args.inits, INITS)
    options.check_data(args.source, args.data_dir)
    data = load_digits(args.source, args.data_dir, args.n_train, args.n_test, seed=0)

    def prepare(init: str, seed: int):
        model = build_model(args.depth, args.channels, seed, args.head)
        initialize(model, init, data.x_train[:256], data.y_train[:256], seed)
        return model

    window = min(20, args.steps)

    def annotate(result: Dict) -> str:
        result["steps_to_threshold"] = steps_to(result["losses"], args.threshold, window)
        return f", steps to {args.threshold}: {result['steps_to_threshold']}"

    runs = _common.train_runs(inits, data, args, prepare, annotate)
    rows = _common.summarize(runs, window=window)
    for row in rows:
        hits = [r["steps_to_threshold"] for r in runs[row["init"]]]
        row["steps_to_threshold"] = hits
    lines = [f"| init | first-step loss | final loss (mean of last {window} steps) | steps to loss "
             f"< {args.threshold} | test accuracy | diverged |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        hits = ", ".join("never" if h is None else str(h) for h in r["steps_to_threshold"])
        lines.append(f"| {r['init']} | {r['initial_loss']:.3g} | {r['final_loss']:.3f} +- "
                     f"{r['final_loss_std']:.3f} | {hits} | {100 * r['test_accuracy']:.1f}% | "
                     f"{r['diverged']}/{r['runs']} |")
    print("\n".join(lines))
    os.makedirs(args.output, exist_ok=True)
    with open(os.path.join(args.output, "datainit.json"), "w") as f:
        json.dump({"config": vars(args), "data": data.source, "rows": rows, "runs": runs}, f)
    if not args.no_plot:
        _common.plot(runs, os.path.join(args.output, "datainit.png"),
                     f"plain CNN, {args.depth} conv layers, no BN")
    print(f"Results in {args.output}")
    return 0
