"""Evidence runner: growth spread and short trainings of the paper's nets under each initializer.

Two experiments, on real MNIST (``--data-dir`` or ``KERAS_NORMED_MNIST_DIR``):

1. *spread*: for each net and initializer, the spread ``max(r) / min(r)`` of the per-layer
   relative growth (one SGD step, :func:`keras_normed.diagnostics.growth_report`) measured on a
   batch *other* than the probe batch the normed rescale used;
2. *train*: short SGD trainings over several seeds: final-epoch training loss, test accuracy, and
   whether the run died (final loss > 2.0, i.e. near chance 2.30, or not finite).

Initializers: ``he`` / ``glorot`` (Keras's HeNormal / GlorotNormal, fans from the kernel shape),
``normed`` (Normed + :func:`keras_normed.rescale` with a probe batch), ``normed-analytic``
(Normed + the analytic rule, no data), ``normed-analytic-sharing`` (the first derivation's
analytic rule), ``normed-local`` (Normed without the model-level step).

Example::

    nice -n 10 python -m keras_normed.experiments.growth --nets a b c d --skip-train
    nice -n 10 python -m keras_normed.experiments.growth --nets b c --seeds 5 --skip-spread \\
        --n-train 8000 --epochs 3 --output results/growth_train.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from typing import Dict, List, Optional

import numpy as np

INITS = ("he", "glorot", "normed", "normed-analytic", "normed-analytic-sharing", "normed-local")


def build(net: str, init: str, seed: int, probe=None, optimizer=None, size: str = "paper"):
    """The net with initializer ``init``; the normed variants are rescaled as their name says."""
    import keras_normed
    from keras_normed.experiments.networks import paper_net

    kind = "normed" if init.startswith("normed") else init
    model = paper_net(net, kernel_initializer=kind, seed=seed, size=size)
    report = None
    if init == "normed":
        report = keras_normed.rescale(model, probe, optimizer=optimizer)
    elif init == "normed-analytic":
        report = keras_normed.rescale(model, None, optimizer=optimizer)
    elif init == "normed-analytic-sharing":
        report = keras_normed.rescale(model, None, optimizer=optimizer, analytic_form="sharing")
    return model, report


_OPTIMIZER = "sgd"


def _sgd(lr: float, momentum: float):
    """The experiments' optimizer: SGD with momentum, or Adam (``--optimizer adam``)."""
    import keras

    if _OPTIMIZER == "adam":
        return keras.optimizers.Adam(learning_rate=lr)
    return keras.optimizers.SGD(learning_rate=lr, momentum=momentum)


def spread_experiment(data, nets, inits, seed: int, lr: float, momentum: float,
                      probe_size: int = 256) -> List[Dict]:
    from keras_normed.diagnostics import growth_report

    probe = (data.x_train[:probe_size], data.y_train[:probe_size])
    other = (data.x_train[probe_size:2 * probe_size], data.y_train[probe_size:2 * probe_size])
    rows = []
    for net in nets:
        for init in inits:
            model, report = build(net, init, seed, probe, _sgd(lr, momentum))
            g_probe = growth_report(model, *probe, optimizer=_sgd(lr, momentum))
            g_other = growth_report(model, *other, optimizer=_sgd(lr, momentum))
            rows.append({"net": net, "init": init, "seed": seed,
                         "spread_probe": g_probe.spread, "spread_other": g_other.spread,
                         "growth_other": [r.growth for r in g_other.rows],
                         "layers": [r.path for r in g_other.rows],
                         "scales": None if report is None else report.scales})
            print(f"spread  net {net}  {init:<16} probe batch {g_probe.spread:9.3g}   "
                  f"other batch {g_other.spread:9.3g}", flush=True)
    return rows


def train_experiment(data, nets, inits, seeds, n_train: int, epochs: int, batch_size: int,
                     lr: float, momentum: float, probe_size: int = 256,
                     out: Optional[str] = None, done: Optional[List[Dict]] = None) -> List[Dict]:
    import keras

    rows = list(done or [])
    have = {(r["net"], r["init"], r["seed"]) for r in rows}
    x, y = data.x_train[:n_train], data.y_train[:n_train]
    probe = (x[:probe_size], y[:probe_size])
    for net in nets:
        for seed in seeds:
            for init in inits:
                if (net, init, seed) in have:
                    continue
                keras.utils.set_random_seed(seed)
                t0 = time.time()
                model, _ = build(net, init, seed, probe, _sgd(lr, momentum))
                model.compile(optimizer=_sgd(lr, momentum),
                              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                              metrics=["accuracy"])
                hist = model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0,
                                 shuffle=True)
                losses = [float(v) for v in hist.history["loss"]]
                _, acc = model.evaluate(data.x_test, data.y_test, verbose=0, batch_size=500)
                final = losses[-1]
                dead = not math.isfinite(final) or final > 2.0
                rows.append({"net": net, "init": init, "seed": seed, "losses": losses,
                             "final_loss": final, "test_acc": float(acc), "dead": dead,
                             "seconds": time.time() - t0})
                print(f"train   net {net}  seed {seed}  {init:<16} loss {final:.4f}  "
                      f"acc {acc:.4f}{'  DEAD' if dead else ''}  ({time.time() - t0:.0f}s)",
                      flush=True)
                if out:
                    _save(out, {"train": rows})
    return rows


def summarize_spread(rows: List[Dict]) -> str:
    """Markdown table: one row per initializer, one column per net (spread on the other batch)."""
    nets = sorted({r["net"] for r in rows})
    inits = [i for i in INITS if any(r["init"] == i for r in rows)]
    lines = ["| init | " + " | ".join(f"net ({n})" for n in nets) + " |",
             "| --- |" + " --- |" * len(nets)]
    for init in inits:
        cells = []
        for net in nets:
            sel = [r["spread_other"] for r in rows if r["net"] == net and r["init"] == init]
            cells.append(f"{sel[0]:.3g}" if sel else "-")
        lines.append(f"| {init} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summarize_train(rows: List[Dict]) -> str:
    """Markdown table: per net and initializer, runs, dead runs, final-epoch training loss
    (mean +- std over all runs, and the per-seed values), test accuracy."""
    lines = ["| net | init | runs | dead | final loss mean +- std | per seed | test acc |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    keys = sorted({(r["net"], r["init"]) for r in rows}, key=lambda k: (k[0], INITS.index(k[1])))
    for net, init in keys:
        sel = sorted((r for r in rows if r["net"] == net and r["init"] == init),
                     key=lambda r: r["seed"])
        loss = np.array([r["final_loss"] for r in sel], dtype=float)
        acc = np.array([r["test_acc"] for r in sel])
        seeds = ", ".join(f"{v:.3f}" for v in loss)
        lines.append(f"| ({net}) | {init} | {len(sel)} | {sum(r['dead'] for r in sel)} | "
                     f"{np.nanmean(loss):.3f} +- {np.nanstd(loss):.3f} | {seeds} | "
                     f"{100 * acc.mean():.2f}% |")
    return "\n".join(lines)


def _save(path: str, payload: Dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    old = {}
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
    old.update(payload)
    with open(path, "w") as f:
        json.dump(old, f, indent=1)


def main(argv=None) -> int:
    from keras_normed.experiments import options

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", default=["a", "b", "c", "d"],
                        choices=("a", "b", "c", "d"))
    parser.add_argument("--inits", nargs="+", default=list(INITS[:4]), choices=INITS)
    parser.add_argument("--seeds", type=options.positive_int, default=5,
                        help="number of seeds (0..N-1)")
    parser.add_argument("--first-seed", type=options.nonneg_int, default=0)
    parser.add_argument("--n-train", type=options.positive_int, default=8000)
    parser.add_argument("--epochs", type=options.positive_int, default=3)
    parser.add_argument("--batch-size", type=options.positive_int, default=64)
    parser.add_argument("--lr", type=options.positive_float, default=0.01)
    parser.add_argument("--momentum", type=options.unit_interval, default=0.9)
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd",
                        help="adam uses --lr as its learning rate and ignores --momentum")
    parser.add_argument("--probe-size", type=options.positive_int, default=256)
    parser.add_argument("--skip-spread", action="store_true")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--data-dir", type=options.existing_dir, default=None)
    options.add_output_argument(parser, os.path.join("results", "growth.json"),
                                "JSON file the results are added to", metavar="FILE")
    parser.add_argument("--resume", action="store_true", help="skip runs already in --output")
    args = parser.parse_args(argv)
    global _OPTIMIZER
    _OPTIMIZER = args.optimizer

    from keras_normed.experiments.data import load_digits

    data = load_digits(data_dir=args.data_dir, n_train=max(args.n_train, 2 * args.probe_size))
    print(data.describe(), flush=True)
    if not args.skip_spread:
        rows = spread_experiment(data, args.nets, args.inits, args.first_seed, args.lr,
                                 args.momentum, args.probe_size)
        _save(args.output, {"spread": rows, "spread_args": vars(args)})
        print(summarize_spread(rows))
    if not args.skip_train:
        done = None
        if args.resume and os.path.exists(args.output):
            with open(args.output) as f:
                done = json.load(f).get("train")
        seeds = list(range(args.first_seed, args.first_seed + args.seeds))
        _save(args.output, {"train_args": vars(args)})
        rows = train_experiment(data, args.nets, args.inits, seeds, args.n_train, args.epochs,
                                args.batch_size, args.lr, args.momentum, args.probe_size,
                                out=args.output, done=done)
        print(summarize_train(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
