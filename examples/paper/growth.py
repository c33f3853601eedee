"""Growth spread of the paper's nets under each initialization, on a batch the rescale never saw.

For each net and initialization: the spread ``max(r) / min(r)`` of the per-layer relative growth
of one optimizer step (:func:`keras_normed.growth_report`), measured on the probe batch the
``normed`` rescale used (training images ``0..P-1``) and on the next ``P`` images (the "other"
batch, the number that counts). Trainings are ``compare``'s job.

Initializations: those of ``compare`` (:func:`examples.paper.compare.initialization`):
``normed`` (probe rescale, its default ``move="auto"``: the draw kept on net (a)),
``normed-analytic`` (no data), ``normed-all`` / ``normed-all-analytic`` (every layer moves),
``normed-local`` (Normed, no model-level step), ``he`` /
``glorot`` (effective fans), and Keras names such as ``he_normal`` / ``glorot_normal`` (shape
fans). Seeds: :func:`examples.paper.options.seed_everything`, and layer ``i`` of seed ``s``
gets ``layer_seed(s, i) = s * 100 + i``, as in every runner.

Example::

    python -m examples.paper growth --nets a b c d --inits he_normal glorot_normal normed-local \\
        normed-all-analytic normed-all --output results/growth_spread.json
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Dict, List, Sequence

from examples.paper import options
from examples.paper.paper import NETS

DEFAULT_INITS = ("he_normal", "glorot_normal", "normed-analytic", "normed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m examples.paper growth``."""
    parser.add_argument("--nets", nargs="+", default=list(NETS), choices=NETS,
                        help="networks of the paper")
    parser.add_argument("--inits", nargs="+", default=list(DEFAULT_INITS), metavar="INIT",
                        help="initializations, as compare's --inits (and normed-local)")
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd",
                        help="sgd: SGD with --momentum; adam: Adam (--momentum ignored)")
    options.add_options(parser, seed=(0, "seed of the weights"),
                        lr=(0.01, "learning rate of the measured step"), momentum=0.9,
                        probe_size=(256, "images in the probe batch and in the other batch"))
    options.add_data_arguments(parser)
    options.add_output_argument(parser, os.path.join("results", "growth.json"),
                                "JSON file for the rows", metavar="FILE")


def spread(data, nets: Sequence[str], inits: Sequence[str], seed: int, optimizer,
           probe_size: int = 256, print_rows: bool = True) -> List[Dict]:
    """One row per (net, init): the growth spread on the probe batch and on the other batch.

    ``optimizer()`` makes a fresh optimizer (each measurement and rescale takes its own).
    """
    from examples.paper.compare import apply_rescale, initialization
    from examples.paper.networks import paper_net
    from keras_normed.diagnostics import growth_report

    probe = (data.x_train[:probe_size], data.y_train[:probe_size])
    other = (data.x_train[probe_size:2 * probe_size], data.y_train[probe_size:2 * probe_size])
    rows = []
    for net in nets:
        for init in inits:
            kernel_initializer, mode = initialization(init, seed)
            model = paper_net(net, kernel_initializer=kernel_initializer, seed=seed)
            report = None if mode is None else apply_rescale(model, mode, probe, optimizer())
            g_probe = growth_report(model, *probe, optimizer=optimizer())
            g_other = growth_report(model, *other, optimizer=optimizer())
            rows.append({"net": net, "init": init, "seed": seed,
                         "spread_probe": g_probe.spread, "spread_other": g_other.spread,
                         "growth_other": [r.growth for r in g_other.rows],
                         "layers": [r.path for r in g_other.rows],
                         "scales": None if report is None else report.scales})
            if print_rows:
                print(f"net {net}  {init:<24} probe batch {g_probe.spread:9.3g}   "
                      f"other batch {g_other.spread:9.3g}", flush=True)
    return rows


def format_table(rows: List[Dict]) -> str:
    """Markdown: one row per initialization, one column per net (spread on the other batch)."""
    nets = list(dict.fromkeys(r["net"] for r in rows))
    inits = list(dict.fromkeys(r["init"] for r in rows))
    cells = {(r["net"], r["init"]): f"{r['spread_other']:.3g}" for r in rows}
    lines = ["| init | " + " | ".join(f"net ({n})" for n in nets) + " |",
             "| --- |" + " --- |" * len(nets)]
    for init in inits:
        lines.append(f"| {init} | " + " | ".join(cells.get((n, init), "-") for n in nets) + " |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run ``python -m examples.paper growth``: print the table, write the rows as JSON."""
    from examples.paper.compare import initialization

    args.nets, args.inits = list(dict.fromkeys(args.nets)), list(dict.fromkeys(args.inits))
    for init in args.inits:
        try:
            initialization(init, 0)
        except ValueError as err:
            raise options.OptionError(f"argument --inits: {err}") from None
    options.check_data(args.source, args.data_dir)
    import keras

    from examples.paper.data import load_digits

    def optimizer():
        if args.optimizer == "adam":
            return keras.optimizers.Adam(learning_rate=args.lr)
        return keras.optimizers.SGD(learning_rate=args.lr, momentum=args.momentum)

    data = load_digits(args.source, args.data_dir, seed=args.seed,
                       n_train=max(args.n_train, 2 * args.probe_size), n_test=args.n_test)
    if len(data.x_train) < 2 * args.probe_size:
        raise options.OptionError(
            f"argument --probe-size: {args.probe_size} needs {2 * args.probe_size} training "
            f"images (the probe and the other batch), the data has {len(data.x_train)} "
            f"({data.source}); pass --probe-size {len(data.x_train) // 2} or less")
    options.seed_everything(args.seed)
    rows = spread(data, args.nets, args.inits, args.seed, optimizer, args.probe_size)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump({"settings": {k: v for k, v in vars(args).items()}, "rows": rows}, f,
                  indent=1)
    print(format_table(rows))
    print(f"\nWrote {args.output}")
    return 0
