"""The GrowthMonitor figure of docs/normed.md: the growth spread during one epoch of net (c).

Net (c) of the paper (conv, conv, CirculantDense 3136 -> 1568, dense) under He, Glorot and the
normed initialization (with ``rescale`` on a probe batch), trained one epoch with SGD momentum
0.9, lr 0.01, batch 64; a :class:`keras_normed.callbacks.GrowthMonitor` measures the spread
``max_l r_l / min_l r_l`` on a fixed batch every ``--every`` steps.

    python examples/growth_monitor_figure.py --output docs/figures/growth-monitor.png
    (from a clone: it uses the paper's networks in examples/paper)
"""

from __future__ import annotations

import argparse
import json
import os

import keras

from keras_normed.cli import nonneg_int, png_file, positive_int


def run(n_train: int, every: int, seed: int, source: str, quick: bool = False) -> dict:
    import keras_normed
    from keras_normed.callbacks import GrowthMonitor

    data, networks = _paper_modules()
    digits = data.load_digits(source=source, n_train=n_train, n_test=16, seed=seed)
    x, y = digits.x_train, digits.y_train
    probe, monitor_batch = (x[:256], y[:256]), (x[256:512], y[256:512])
    curves = {}
    for init in ("he", "glorot", "normed"):
        model = networks.paper_net("c", init, seed=seed, size="tiny" if quick else "paper")
        if quick:
            probe = monitor_batch = (x[:64, :8, :8], y[:64])
        model.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        if init == "normed":
            keras_normed.rescale(model, probe)
        monitor = GrowthMonitor(monitor_batch, every=every)
        xs = x[:, :8, :8] if quick else x
        model.fit(xs, y, batch_size=64, epochs=1, verbose=0, callbacks=[monitor])
        curves[init] = [(h["step"], h["growth_spread"]) for h in monitor.history]
        print(f"{init:7s} spread at step 0 {curves[init][0][1]:9.3g}, "
              f"at the end {curves[init][-1][1]:9.3g}")
    return curves


def _paper_modules():
    """The paper's data loader and networks (examples/paper, beside this script)."""
    import pathlib
    import sys

    root = str(pathlib.Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    from examples.paper import data, networks

    return data, networks


def plot(curves: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for init, points in curves.items():
        steps, spreads = zip(*points)
        line, = ax.plot(steps, spreads, marker=".", label=init)
        dead = [s for s, v in points if v != v]  # NaN: the loss diverged
        if dead:
            last = max(s for s, v in points if v == v)
            ax.annotate(f"{init}: loss NaN from step {dead[0]}", (last, spreads[0]),
                        textcoords="offset points", xytext=(8, -4), color=line.get_color())
    ax.set_yscale("log")
    ax.set_xlabel("training step (batch 64)")
    ax.set_ylabel("growth spread max r / min r")
    ax.set_title("net (c), one epoch, SGD m0.9 lr 0.01")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=positive_int, default=4000)
    parser.add_argument("--every", type=positive_int, default=5)
    parser.add_argument("--seed", type=nonneg_int, default=0)
    parser.add_argument("--source", choices=("auto", "mnist-dir", "keras", "sklearn"),
                        default="auto")
    parser.add_argument("--output", type=png_file, default="results/growth-monitor.png",
                        help="the PNG to write, beside it its JSON (the folder is created)")
    parser.add_argument("--quick", action="store_true", help="tiny net, seconds")
    args = parser.parse_args(argv)
    curves = run(args.n_train, args.every, args.seed, args.source, args.quick)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    plot(curves, args.output)
    with open(args.output.rsplit(".", 1)[0] + ".json", "w") as f:
        json.dump(curves, f)
    print(f"Wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
