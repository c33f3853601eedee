"""Train a block-circulant network and its dense twin on digits; print accuracy and size.

The two networks differ in their hidden layer only::

    circulant: Flatten -> CirculantDense(512, block_size=B, relu) -> Dense(10, softmax)
    dense:     Flatten -> Dense(512, relu)                        -> Dense(10, softmax)

A block-circulant ``784 -> 512`` layer stores one length-``B`` vector per ``B x B`` block, so its
kernel has ``ceil(784 / B) * 512`` parameters instead of ``784 * 512`` (CirCNN: Ding et al. 2017,
"CirCNN: Accelerating and Compressing Deep Neural Networks Using Block-Circulant Weight
Matrices", MICRO). The circulant layer starts from the "normed" initializer (Yang et al. 2021).

Works offline: ``--source auto`` (the default) uses the MNIST IDX files in
``$KERAS_NORMED_MNIST_DIR`` when that is set, else scikit-learn's bundled digits.

Example::

    python -m examples.paper demo --epochs 5 --block-size 64
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Dict, Optional

from examples.paper import options
from examples.paper.options import ENV_VAR, layer_seed

HIDDEN = 512
N_CLASSES = 10
N_INPUTS = 28 * 28  # the digits are brought to MNIST's size


def _block_size(text: str) -> int:
    value = options.positive_int(text)
    if value > N_INPUTS:
        raise argparse.ArgumentTypeError(f"at most {N_INPUTS} (the input size), got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m examples.paper demo``."""
    options.add_options(parser, epochs=(10, "training epochs"), batch_size=64,
                        seed=(0, "seed of the split and the weights"))
    parser.add_argument("--block-size", type=_block_size, default=64, metavar="B",
                        help=f"block size B of the CirculantDense layer (1 to {N_INPUTS})")
    options.add_data_arguments(parser)


def build_models(block_size: int = 64, seed: int = 0, hidden: int = HIDDEN) -> Dict[str, object]:
    """The circulant network and its dense twin, built for 28x28x1 inputs and compiled; the
    hidden layers' kernels seeded ``layer_seed(seed, 0)``, the heads' ``layer_seed(seed, 1)``.

    Returns ``{"circulant": model, "dense": model}``.
    """
    import keras

    from keras_normed.initializers import Normed
    from keras_normed.layers import CirculantDense

    def head(name: str, hidden_layer) -> keras.Model:
        model = keras.Sequential([
            keras.Input((28, 28, 1)),
            keras.layers.Flatten(),
            hidden_layer,
            keras.layers.Dense(N_CLASSES, activation="softmax",
                               kernel_initializer=keras.initializers.GlorotUniform(
                                   layer_seed(seed, 1))),
        ], name=name)
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    return {
        "circulant": head("circulant", CirculantDense(
            hidden, block_size, activation="relu",
            kernel_initializer=Normed("relu", seed=layer_seed(seed, 0)))),
        "dense": head("dense", keras.layers.Dense(
            hidden, activation="relu",
            kernel_initializer=keras.initializers.GlorotUniform(layer_seed(seed, 0)))),
    }


def run_demo(source: str = "auto", data_dir: Optional[str] = None, epochs: int = 10,
             batch_size: int = 64, seed: int = 0, block_size: int = 64,
             n_train: Optional[int] = 8000, n_test: Optional[int] = 2000) -> Dict[str, dict]:
    """Train both networks on the same split; return ``{name: {"params", "accuracy", ...}}``."""
    if epochs < 1:
        raise ValueError(f"`epochs` must be >= 1, got {epochs}.")
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size}.")
    if not 1 <= block_size <= N_INPUTS:
        raise ValueError(f"`block_size` must be in [1, {N_INPUTS}], got {block_size}.")
    options.check_data(source, data_dir)
    if source == "auto":
        env = os.environ.get(ENV_VAR)
        why = (f"--data-dir {data_dir}" if data_dir else
               f"${ENV_VAR}={env}" if env else f"${ENV_VAR} is not set")
        print(f"Source 'auto' ({why}):")
    from examples.paper.data import load_digits

    data = load_digits(source, data_dir=data_dir, n_train=n_train, n_test=n_test, seed=seed,
                       verbose=True)

    options.seed_everything(seed)
    models = build_models(block_size=block_size, seed=seed)
    results = {}
    for name, model in models.items():
        start = time.perf_counter()
        model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=batch_size,
                  shuffle=True, verbose=0)
        seconds = time.perf_counter() - start
        _, accuracy = model.evaluate(data.x_test, data.y_test, batch_size=256, verbose=0)
        hidden = model.layers[1]
        results[name] = {
            "layer": (f"CirculantDense({HIDDEN}, block_size={block_size})"
                      if name == "circulant" else f"Dense({HIDDEN})"),
            "params": int(model.count_params()),
            "hidden_params": int(hidden.count_params()),
            "accuracy": float(accuracy),
            "train_seconds": seconds,
        }
    return results


def format_results(results: Dict[str, dict]) -> str:
    """A small text table, one network per line."""
    width = max(len(r["layer"]) for r in results.values())
    lines = [f"{'network':<10} {'hidden layer':<{width}} {'params':>9} {'hidden':>9} "
             f"{'test acc':>8} {'train s':>8}"]
    for name, r in results.items():
        lines.append(f"{name:<10} {r['layer']:<{width}} {r['params']:>9,} "
                     f"{r['hidden_params']:>9,} {r['accuracy']:>8.4f} {r['train_seconds']:>8.1f}")
    circ, dense = results.get("circulant"), results.get("dense")
    if circ and dense:
        lines.append(f"The circulant network has {dense['params'] / circ['params']:.1f}x fewer "
                     f"parameters; accuracy {circ['accuracy'] - dense['accuracy']:+.4f} vs dense.")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    results = run_demo(source=args.source, data_dir=args.data_dir, epochs=args.epochs,
                       batch_size=args.batch_size, seed=args.seed, block_size=args.block_size,
                       n_train=args.n_train, n_test=args.n_test)
    print(format_results(results))
    return 0
