"""The figure of docs/random_walk.md: the log gradient norm as a random walk over depth.

Back-propagates a random error through 100 random square layers of width 50 (linear, ReLU,
tanh), 100 seeds, and plots ``ln(|delta_l|^2 / |delta_top|^2)`` against the number of layers
crossed, mean and +-1 std band over seeds, for ``RandomWalk`` against the usual gain (LeCun /
Glorot for square layers, He for ReLU). Sussillo & Abbott (2014): the usual gains drift down
linearly in depth; the random-walk gains remove the drift and leave a spread ~ sqrt(D / N).

    python examples/random_walk_figure.py --output docs/figures/random_walk.png
"""

from __future__ import annotations

import argparse
import os

import keras
import numpy as np

from keras_normed.cli import nonneg_int, png_file
from keras_normed.initializers import RandomWalk

WIDTH, DEPTH, SEEDS = 50, 100, 100


def log_norm_curves(make_init, nonlinearity: str) -> np.ndarray:
    """``(SEEDS, DEPTH + 1)``: ln |delta|^2 after crossing 0..DEPTH layers, minus its start."""
    big = np.asarray(make_init()((WIDTH, WIDTH * DEPTH * SEEDS)))  # fan-in WIDTH
    kernels = big.reshape(WIDTH, SEEDS, DEPTH, WIDTH).transpose(1, 2, 0, 3)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((SEEDS, WIDTH))
    pre = []
    for d in range(DEPTH):
        a = np.matmul(x[:, None, :], kernels[:, d])[:, 0]
        pre.append(a)
        x = {"relu": np.maximum(a, 0.0), "tanh": np.tanh(a)}.get(nonlinearity, a)
    delta = rng.standard_normal((SEEDS, WIDTH))
    curves = [np.log(np.sum(delta ** 2, axis=1))]
    for d in reversed(range(DEPTH)):
        dphi = {"relu": (pre[d] > 0).astype(float),
                "tanh": 1.0 - np.tanh(pre[d]) ** 2}.get(nonlinearity, 1.0)
        delta = np.matmul(kernels[:, d], (dphi * delta)[:, :, None])[:, :, 0]
        curves.append(np.log(np.sum(delta ** 2, axis=1)))
    curves = np.stack(curves, axis=1)
    return curves - curves[:, :1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=png_file, default="results/random_walk.png",
                        help="the PNG to write (its folder is created)")
    parser.add_argument("--seed", type=nonneg_int, default=0)
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("linear", "LeCun/Glorot (g = 1)", keras.initializers.LecunNormal),
              ("relu", "He (g = sqrt 2)", keras.initializers.HeNormal),
              ("tanh", "LeCun/Glorot (g = 1)", keras.initializers.LecunNormal)]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
    steps = np.arange(DEPTH + 1)
    for ax, (name, base_label, base) in zip(axes, panels):
        for label, make, color in (
                (f"RandomWalk({name!r})", lambda n=name: RandomWalk(n, seed=args.seed), "C0"),
                (base_label, lambda b=base: b(seed=args.seed), "C3")):
            c = log_norm_curves(make, name)
            mean, std = c.mean(axis=0), c.std(axis=0)
            ax.plot(steps, mean, color=color, label=f"{label}: {mean[-1]:+.2f} at D={DEPTH}")
            ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
            print(f"{name:6s} {label:28s} drift {mean[-1]:+.2f}  std {std[-1]:.2f}")
        ax.axhline(0.0, color="k", lw=0.6)
        ax.set_title(f"{name}, width {WIDTH}, {SEEDS} seeds")
        ax.set_xlabel("layers back-propagated through")
        ax.legend(fontsize=8, loc="lower left")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("ln(|delta_l|^2 / |delta_top|^2)")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    fig.savefig(args.output, dpi=110)
    print(f"Wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
