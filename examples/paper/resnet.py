"""Deep weight-normalized ResNet on digits: Arpit et al.'s init against the usual WN inits.

The network (all Dense layers wrapped in :class:`~keras_normed.layers.WeightNormalization`):
flatten -> stem Dense(width) -> ``blocks`` x [h + Dense(width)(relu(Dense(width, relu)(h)))]
-> Dense(10) logits. Initializations compared:

- ``arpit``: :func:`keras_normed.initializers.arpit_init` (orthogonal v, g from the forward
  condition, residual branches scaled by 1/sqrt(blocks));
- ``salimans``: v ~ N(0, 0.05), then the data-dependent init of Salimans & Kingma (each
  unit's pre-activation zero mean, unit variance on a batch: g and b set from the data);
- ``he-g1``: v He-normal with g = 1 (unit-norm weight vectors), the common proxy.

The defaults are the setting docs/weight_norm.md reports as training (50 blocks of width 16,
100 steps of SGD with lr 0.002 and momentum 0.9, three seeds); at width 32 and lr 0.01 every
initialization diverged there. A run counts as diverged by the rule of
:mod:`examples.paper.divergence` (a non-finite loss, or a loss 100 times the first).

Example::

    python -m examples.paper resnet --quick
    python -m examples.paper resnet --data-dir "$KERAS_NORMED_MNIST_DIR" --output results/resnet
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from examples.paper import options
from examples.paper.divergence import is_diverged

INITS = ("arpit", "salimans", "he-g1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m examples.paper resnet``."""
    parser.add_argument("--blocks", type=options.positive_int, default=50, metavar="N",
                        help="residual blocks")
    options.add_options(parser, inits=INITS, width=16, steps=100, batch_size=64,
                        lr=(0.002, "SGD learning rate (0.01 diverged at width 32)"),
                        momentum=0.9, seeds=3)
    options.add_data_arguments(parser)
    options.add_output_argument(parser, os.path.join("results", "resnet"),
                                "folder for resnet.json and resnet.png")
    parser.add_argument("--quick", action="store_true",
                        help="tiny run for tests: 4 blocks of width 8, 5 steps, one seed, "
                             "256 / 64 images, sklearn digits unless --source or --data-dir "
                             "says otherwise (options given explicitly win)")
    parser.add_argument("--no-plot", action="store_true", help="write no PNG")


def build_model(blocks: int, width: int, init: str, seed: int):
    """The weight-normalized residual MLP, with ``v`` and ``g`` as ``init`` needs them; the
    ``i``-th Dense layer's ``v`` seeded ``layer_seed(seed, i)`` (``i`` from 1)."""
    import keras

    from keras_normed.layers import WeightNormalization

    if init == "salimans":
        v_init = keras.initializers.RandomNormal(0.0, 0.05, seed=seed)
    else:  # arpit overwrites v anyway
        v_init = keras.initializers.HeNormal(seed=seed)
    counter = [0]

    def wn(units, activation=None, name=None):
        counter[0] += 1
        init_k = v_init.__class__.from_config({**v_init.get_config(),
                                               "seed": options.layer_seed(seed, counter[0])})
        return WeightNormalization(
            keras.layers.Dense(units, activation=activation, kernel_initializer=init_k),
            g_initializer="ones", name=name)

    inputs = keras.Input((28, 28, 1))
    h = keras.layers.Flatten()(inputs)
    h = wn(width, name="stem")(h)
    for b in range(blocks):
        r = wn(width, "relu", name=f"block{b}_a")(h)
        r = wn(width, name=f"block{b}_b")(r)
        h = keras.layers.Add(name=f"block{b}_add")([h, r])
    outputs = wn(10, name="logits")(h)
    return keras.Model(inputs, outputs)


def initialize(model, init: str, x_batch, seed: int) -> None:
    from keras_normed.data_driven import data_dependent_init
    from keras_normed.initializers.weight_norm import arpit_init

    if init == "arpit":
        arpit_init(model, seed=seed)
    elif init == "salimans":
        data_dependent_init(model, x_batch, between_layer_iters=0)
    elif init != "he-g1":
        raise ValueError(f"Unknown init {init!r}; expected one of {INITS}.")


def train(model, data, steps: int, batch_size: int, lr: float, momentum: float,
          seed: int, eager: bool = False) -> Dict:
    """SGD for ``steps`` steps; per-step training loss, then test loss and accuracy.

    ``eager=True`` skips graph tracing, which is faster for the few steps of ``--quick``.
    """
    import keras

    from examples.paper.data import batches

    model.compile(optimizer=keras.optimizers.SGD(lr, momentum=momentum),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], run_eagerly=eager)
    losses: List[float] = []
    for idx in batches(len(data.x_train), batch_size, steps, seed):
        loss = model.train_on_batch(data.x_train[idx], data.y_train[idx], return_dict=True)
        losses.append(float(loss["loss"]))
    test = model.evaluate(data.x_test, data.y_test, batch_size=500, verbose=0,
                          return_dict=True)
    return {"losses": losses, "test_loss": float(test["loss"]),
            "test_accuracy": float(test["accuracy"])}


def train_runs(inits: List[str], data, args: argparse.Namespace,
               prepare: Callable[[str, int], Any],
               annotate: Optional[Callable[[Dict], str]] = None) -> Dict[str, List[Dict]]:
    """Every (init, seed) run of a command: seeds 0..``args.seeds - 1`` per init.

    Each run seeds everything, gets an initialized model from ``prepare(init, seed)``, trains
    it with :func:`train` (``args.steps``, ``batch_size``, ``lr``, ``momentum``; eagerly under
    ``--quick``) and prints one line. ``annotate(result)`` may add fields to the result and
    returns text for that line. Returns ``{init: [result per seed]}``.
    """
    runs: Dict[str, List[Dict]] = {}
    for init in inits:
        for seed in range(args.seeds):
            options.seed_everything(seed)
            model = prepare(init, seed)
            start = time.time()
            result = train(model, data, args.steps, args.batch_size, args.lr, args.momentum,
                           seed, eager=args.quick)
            result["seconds"] = time.time() - start
            extra = annotate(result) if annotate else ""
            runs.setdefault(init, []).append(result)
            print(f"{init} seed {seed}: first loss {result['losses'][0]:.3g}, "
                  f"last {result['losses'][-1]:.3g}{extra}, test acc "
                  f"{100 * result['test_accuracy']:.1f}% ({result['seconds']:.0f} s)")
    return runs


def _smooth(values, window=20):
    out, acc = [], []
    for v in values:
        acc.append(v if math.isfinite(v) else float("inf"))
        acc = acc[-window:]
        out.append(float(np.mean(acc)))
    return out


def summarize(runs: Dict[str, List[Dict]], window: int = 20) -> List[Dict]:
    """One table row per init: initial, final (``window``-step mean) training loss, test
    accuracy, the number of diverged runs and of runs.

    ``diverged`` counts the runs :func:`examples.paper.divergence.is_diverged` flags
    (a non-finite loss, or a loss 100 times the first); the final-loss mean and std (ddof 0)
    leave out the non-finite values only.
    """
    rows = []
    for init, seeds in runs.items():
        final = [_smooth(r["losses"], window)[-1] for r in seeds]
        finite = [f for f in final if math.isfinite(f)]
        rows.append({
            "init": init,
            "initial_loss": float(np.mean([r["losses"][0] for r in seeds])),
            "final_loss": float(np.mean(finite)) if finite else float("nan"),
            "final_loss_std": float(np.std(finite)) if finite else float("nan"),
            "test_accuracy": float(np.mean([r["test_accuracy"] for r in seeds])),
            "diverged": int(sum(is_diverged(r["losses"]) for r in seeds)),
            "runs": len(seeds),
        })
    return rows


def markdown_table(rows: List[Dict], window: int = 20) -> str:
    """The rows of :func:`summarize` (made with the same ``window``) as a Markdown table."""
    lines = [f"| init | first-step loss | final loss (mean of last {window} steps) | "
             "test accuracy | diverged |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        loss = (f"{r['final_loss']:.3f} +- {r['final_loss_std']:.3f}"
                if math.isfinite(r["final_loss"]) else "n/a (every run diverged)")
        lines.append(f"| {r['init']} | {r['initial_loss']:.3g} | {loss} | "
                     f"{100 * r['test_accuracy']:.1f}% | {r['diverged']}/{r['runs']} |")
    return "\n".join(lines)


def plot(runs: Dict[str, List[Dict]], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for k, (init, seeds) in enumerate(runs.items()):
        for i, r in enumerate(seeds):
            ax.plot(_smooth(r["losses"], 10), label=init if i == 0 else None,
                    color=f"C{k}", alpha=0.9)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (10-step mean)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _inits(value, allowed) -> List[str]:
    """``--inits`` as parsed (a list), or as a comma-separated string given programmatically."""
    return list(options.parsed(value, options.choices(allowed), "--inits"))


def run(args: argparse.Namespace) -> int:
    from examples.paper.data import load_digits

    if args.quick:
        options.apply_quick(args, add_arguments, {
            "blocks": 4, "width": 8, "steps": 5, "n_train": 256, "n_test": 64, "seeds": 1,
            **({"source": "sklearn"} if args.data_dir is None else {})})
    inits = _inits(args.inits, INITS)
    options.check_data(args.source, args.data_dir)
    data = load_digits(args.source, args.data_dir, args.n_train, args.n_test, seed=0)

    def prepare(init: str, seed: int):
        model = build_model(args.blocks, args.width, init, seed)
        initialize(model, init, data.x_train[:256], seed)
        return model

    runs = train_runs(inits, data, args, prepare)
    window = min(20, args.steps)
    rows = summarize(runs, window=window)
    table = markdown_table(rows, window)
    print(table)
    os.makedirs(args.output, exist_ok=True)
    config = {k: v for k, v in vars(args).items() if k not in ("func",)}
    with open(os.path.join(args.output, "resnet.json"), "w") as f:
        json.dump({"config": config, "data": data.source, "rows": rows, "runs": runs}, f)
    if not args.no_plot:
        plot(runs, os.path.join(args.output, "resnet.png"),
             f"WN ResNet, {args.blocks} blocks x width {args.width}")
    print(f"Results in {args.output}")
    return 0
