"""Signal propagation and trainability of very deep vanilla tanh CNNs on MNIST, per initializer.

The network (no batch norm, no residual connections)::

    28x28x1 -> Conv(w, 3, stride 2) -> Conv(w, 3, stride 2) -> depth x Conv(w, 3, "same")
            -> flatten (or global average pooling) -> Dense(10),   every conv followed by tanh.

Part 1, at initialization, for depths up to 1000+: the forward signal ratio |x_D| / |x_0| and the
gradient ratio |J^T v| / |v| (``J = dx_D / dx_0``, ``v`` Gaussian: the root mean squared singular
value of the input-output Jacobian), with ``x_0`` the stem's output, on a batch of test digits.
Part 2: SGD with momentum on a network of ``--train-depth`` layers for ``--steps`` steps.

Initializers: ``delta_orthogonal`` (Xiao et al. 2018) at the tanh critical point
``(sigma_w^2, sigma_b^2)`` of :func:`keras_normed.initializers.tanh_critical_point` with biases
``N(0, sigma_b^2)``; Keras' ``orthogonal`` (Saxe et al. 2014), ``glorot`` (normal) and ``he``
(normal), with zero biases.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Dict, List

import numpy as np

from examples.paper import options
from examples.paper.divergence import is_diverged
from examples.paper.options import layer_seed

INITS = ("delta_orthogonal", "orthogonal", "glorot", "he")
_QUICK = {"depths": [10, 50], "train_depth": 20, "steps": 20, "n_train": 1000, "n_test": 200,
          "jit": "off"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m examples.paper depth``."""
    parser.add_argument("--depths", type=options.positive_int_list,
                        default="10,50,100,200,500,1000",
                        help="comma-separated depths measured at initialization")
    parser.add_argument("--train-depth", type=options.nonneg_int, default=200, metavar="N",
                        help="depth of the trained networks (0: skip training)")
    options.add_options(
        parser, inits=INITS, steps=(200, "SGD steps per initializer"),
        width=(16, "channels of every conv"),
        batch_size=(64, "training batch size, and test digits measured at init"),
        lr=(0.001, "SGD learning rate (0.01 and 0.05 blow up or stall at depth 200)"),
        momentum=0.9, seed=0)
    parser.add_argument("--jit", choices=("on", "off"), default="on",
                        help="XLA for the training step (about 2x faster at depth 200)")
    parser.add_argument("--head", choices=("flatten", "gap"), default="flatten",
                        help="readout: flatten the 7x7 maps, or global average pooling")
    parser.add_argument("--sigma-b2", type=options.nonneg_float, default=1e-6,
                        help="bias variance of the delta-orthogonal network (sets sigma_w)")
    options.add_data_arguments(parser)
    parser.add_argument("--quick", action="store_true",
                        help="tiny run: depths 10,50, 20-layer training for 20 steps "
                        "(options given explicitly win)")
    options.add_output_argument(parser, os.path.join("results", "depth"),
                                "folder for depth.json and depth.png")
    parser.add_argument("--merge", nargs="+", type=options.existing_file, default=None,
                        metavar="JSON",
                        help="only combine depth.json files of earlier runs (e.g. one per "
                        "initializer, run in parallel) into one table, JSON and PNG")


def _initializers(name: str, seed: int, sigma_b2: float):
    """(kernel initializer factory, bias initializer factory) of one method; the factories take
    a conv layer's index ``i``. Layer ``i``'s kernel is seeded ``layer_seed(seed, i)``, or where
    the bias is random too (delta_orthogonal) ``layer_seed(seed, 2 * i)``, the bias ``2 * i + 1``;
    build_layers seeds the readout after them all."""
    import keras

    from keras_normed.initializers import DeltaOrthogonal, tanh_critical_point

    kernels = {"orthogonal": keras.initializers.Orthogonal,
               "glorot": keras.initializers.GlorotNormal, "he": keras.initializers.HeNormal}
    if name == "delta_orthogonal":
        cp = tanh_critical_point(sigma_b2)
        return ((lambda i: DeltaOrthogonal(gain=cp.sigma_w, seed=layer_seed(seed, 2 * i))),
                (lambda i: keras.initializers.RandomNormal(
                    stddev=cp.sigma_b, seed=layer_seed(seed, 2 * i + 1))))
    if name in kernels:
        return (lambda i: kernels[name](seed=layer_seed(seed, i))), (lambda i: "zeros")
    raise ValueError(f"Unknown initializer {name!r}; expected one of {INITS}.")


def build_layers(init: str, depth: int, width: int, seed: int = 0, sigma_b2: float = 1e-6,
                 head: str = "flatten"):
    """(stem, body, head) lists of Keras layers of the vanilla tanh CNN."""
    import keras

    kernel, bias = _initializers(init, seed, sigma_b2)

    def conv(i, strides=1):
        return keras.layers.Conv2D(width, 3, strides=strides, padding="same", activation="tanh",
                                   kernel_initializer=kernel(i), bias_initializer=bias(i))

    stem = [conv(0, 2), conv(1, 2)]
    body = [conv(i + 2) for i in range(depth)]
    pool = keras.layers.Flatten() if head == "flatten" else keras.layers.GlobalAveragePooling2D()
    readout = [pool, keras.layers.Dense(10, kernel_initializer=keras.initializers.GlorotNormal(
        seed=layer_seed(seed, 2 * (depth + 2))))]
    return stem, body, readout


def measure_at_init(init: str, depths: List[int], x, width: int, seed: int,
                    sigma_b2: float) -> Dict:
    """Forward signal ratio and Jacobian gradient ratio at each depth, plus per-layer curves."""
    import tensorflow as tf

    max_depth = max(depths)
    stem, body, _ = build_layers(init, max_depth, width, seed, sigma_b2)
    h = tf.constant(x)
    for layer in stem:
        h = layer(h)
    x0 = h
    norm0 = float(tf.norm(x0))
    rng = np.random.default_rng(seed)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x0)
        xs = [x0]
        for layer in body:
            xs.append(layer(xs[-1]))
        vs = {d: tf.constant(rng.standard_normal(xs[d].shape).astype("float32")) for d in depths}
        targets = {d: tf.reduce_sum(vs[d] * xs[d]) for d in depths}
    signal = {d: float(tf.norm(xs[d])) / norm0 for d in depths}
    grad = {}
    for d in depths:
        g = tape.gradient(targets[d], x0)
        grad[d] = float(tf.norm(g) / tf.norm(vs[d]))
    # Curves: forward ratio at every layer; gradient ratio from the top back to every layer.
    per_layer = tape.gradient(targets[max_depth], xs)
    top = float(tf.norm(vs[max_depth]))
    del tape
    return {
        "signal_ratio": {str(d): signal[d] for d in depths},
        "grad_ratio": {str(d): grad[d] for d in depths},
        "signal_curve": [float(tf.norm(t)) / norm0 for t in xs],
        "grad_curve_from_top": [float(tf.norm(g)) / top for g in reversed(per_layer)],
    }


def _peak_rss_mib() -> float:
    """The process's peak resident memory so far (NaN where ``resource`` is missing: Windows)."""
    try:
        import resource
    except ImportError:
        return float("nan")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def train(init: str, depth: int, data, steps: int, width: int, batch_size: int, lr: float,
          momentum: float, seed: int, sigma_b2: float, head: str = "flatten",
          jit: bool = False) -> Dict:
    """SGD with momentum; returns the per-step loss and the final test accuracy."""
    import keras
    import tensorflow as tf

    from examples.paper.data import batches

    stem, body, readout = build_layers(init, depth, width, seed, sigma_b2, head)
    # Keras maps a model's graph recursively (keras.src.ops.function._build_map_helper): a few
    # frames per layer, so ~1,000 layers pass Python's default limit of 1,000 frames.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * (depth + 10) + 1000))
    model = keras.Sequential([keras.Input((28, 28, 1))] + stem + body + readout)
    opt = keras.optimizers.SGD(learning_rate=lr, momentum=momentum)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    opt.build(model.trainable_variables)

    @tf.function(jit_compile=jit)
    def step(xb, yb):
        with tf.GradientTape() as tape:
            logits = model(xb, training=True)
            loss = loss_fn(yb, logits)
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        acc = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), yb),
                                     tf.float32))
        return loss, acc

    losses, accs = [], []
    start = time.perf_counter()
    first = None  # the first step: tracing and (with jit) XLA compilation
    for idx in batches(len(data.x_train), batch_size, steps, seed):
        loss, acc = step(tf.constant(data.x_train[idx]), tf.constant(data.y_train[idx]))
        losses.append(float(loss))
        accs.append(float(acc))
        first = time.perf_counter() - start if first is None else first
        if not math.isfinite(losses[-1]):
            break
    seconds = time.perf_counter() - start
    test_acc = float("nan")
    if all(math.isfinite(v) for v in losses):
        logits = np.concatenate([np.asarray(model(data.x_test[i:i + 500]))
                                 for i in range(0, len(data.x_test), 500)])
        test_acc = float(np.mean(np.argmax(logits, -1) == data.y_test))
    steady = (seconds - first) / max(len(losses) - 1, 1) if first is not None else float("nan")
    return {"loss": losses, "train_acc": accs, "test_acc": test_acc, "seconds": seconds,
            "first_step_seconds": first, "step_seconds": steady,
            "peak_rss_mib": _peak_rss_mib(),
            "diverged": is_diverged(losses)}


def _fmt(v: float) -> str:
    return f"{v:.3g}" if math.isfinite(v) else str(v)


def _plot(results: Dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    inits = list(results["init"])
    has_train = bool(results.get("train"))
    fig, axes = plt.subplots(1, 3 if has_train else 2, figsize=(15 if has_train else 10, 4))
    for name in inits:
        r = results["init"][name]
        axes[0].plot(range(len(r["signal_curve"])), r["signal_curve"], label=name)
        axes[1].plot(range(len(r["grad_curve_from_top"])), r["grad_curve_from_top"], label=name)
    axes[0].set(yscale="log", xlabel="layer l", ylabel="|x_l| / |x_0|",
                title="Forward signal at init")
    axes[1].set(yscale="log", xlabel="layers back-propagated through",
                ylabel="|dL/dx| / |v|", title="Gradient norm at init")
    if has_train:
        for name, r in results["train"].items():
            loss = np.asarray(r["loss"], float)
            k = min(20, max(1, len(loss) // 10))
            smooth = np.convolve(loss, np.ones(k) / k, mode="valid") if len(loss) >= k else loss
            axes[2].plot(range(len(smooth)), smooth,
                         label=f"{name} (test acc {_fmt(r['test_acc'])})")
        axes[2].set(xlabel="SGD step", ylabel="training loss (moving mean)",
                    title=f"Training, depth {results['config']['train_depth']}")
        axes[2].axhline(math.log(10), color="gray", lw=0.8, ls=":")
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args) -> int:
    """Run the experiment; print the table; write depth.json and depth.png into args.output."""
    from examples.paper.data import load_digits
    from keras_normed.initializers import tanh_critical_point

    if args.merge:
        return _report(merge(args.merge), args.output)
    if args.quick:
        options.apply_quick(args, add_arguments, _QUICK)
    # A string is an option given programmatically.
    depths = sorted(set(options.parsed(args.depths, options.positive_int_list, "--depths")))
    inits = options.parsed(args.inits, options.choices(INITS), "--inits")
    options.check_data(args.source, args.data_dir)
    options.seed_everything(args.seed)
    data = load_digits(args.source, args.data_dir, n_train=args.n_train, n_test=args.n_test,
                       seed=args.seed)
    cp = tanh_critical_point(args.sigma_b2)
    config = {k: getattr(args, k) for k in ("width", "batch_size", "lr", "momentum", "steps",
                                            "train_depth", "seed", "n_train", "n_test", "head",
                                            "sigma_b2", "jit")}
    config.update(depths=depths, inits=inits, data=data.source,
                  critical_point={"sigma_w2": cp.sigma_w2, "sigma_b2": cp.sigma_b2,
                                  "q_star": cp.q_star})
    results = {"config": config, "init": {}, "train": {}}
    print(f"delta_orthogonal at the tanh critical point: sigma_w^2={cp.sigma_w2:.4f}, "
          f"sigma_b^2={cp.sigma_b2:g} (q*={cp.q_star:.4g})")
    x = data.x_test[:args.batch_size]
    start = time.perf_counter()
    for name in inits:
        results["init"][name] = measure_at_init(name, depths, x, args.width, args.seed,
                                                args.sigma_b2)
        print(f"  measured {name} at init ({time.perf_counter() - start:.0f} s)", flush=True)
        _save_partial(results, args.output)
    if args.train_depth > 0 and args.steps > 0:
        for name in inits:
            results["train"][name] = train(name, args.train_depth, data, args.steps, args.width,
                                           args.batch_size, args.lr, args.momentum, args.seed,
                                           args.sigma_b2, args.head, jit=args.jit == "on")
            r = results["train"][name]
            print(f"  trained {name}: test acc {_fmt(r['test_acc'])} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
            _save_partial(results, args.output)
    return _report(results, args.output)


def _save_partial(results: Dict, output: str) -> None:
    """Results so far, so that an interrupted long run keeps what it measured."""
    os.makedirs(output, exist_ok=True)
    with open(os.path.join(output, "depth.partial.json"), "w") as f:
        json.dump(results, f, allow_nan=True)


def merge(paths: List[str]) -> Dict:
    """Combine the results of runs on disjoint sets of initializers (same other settings).

    Raises:
        options.OptionError: a file that is not a depth.json, an initializer in two files, or
            files whose other settings (depths, steps, data, ...) differ.
    """
    fail = options.OptionError
    merged: Dict = {}
    for path in paths:
        try:
            with open(path) as f:
                res = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise fail(f"argument --merge: cannot read {path!r} as JSON ({err})") from None
        if not (isinstance(res, dict) and isinstance(res.get("config"), dict)
                and isinstance(res.get("init"), dict)):
            raise fail(f"argument --merge: {path!r} is not a depth.json (it needs its config "
                       "and per-initializer results)")
        # jit changes the time per step only
        config = {k: v for k, v in res["config"].items() if k not in ("inits", "jit")}
        if not merged:
            merged = {"config": dict(config, inits=[]), "init": {}, "train": {}}
        differs = sorted(k for k in (set(config) | set(merged["config"])) - {"inits"}
                         if config.get(k) != merged["config"].get(k))
        if differs:
            raise fail(f"argument --merge: {path!r} differs from the first file in {differs}: "
                       "merge runs made with the same settings")
        twice = sorted(set(res["config"].get("inits", [])) & set(merged["config"]["inits"]))
        if twice:
            raise fail(f"argument --merge: {twice} in {path!r} are in an earlier file too: "
                       "merge files of disjoint initializers")
        merged["config"]["inits"] += list(res["config"]["inits"])
        merged["init"].update(res["init"])
        merged["train"].update(res.get("train", {}))
    return merged


def _report(results: Dict, output: str) -> int:
    """Print the table; write depth.json and depth.png into ``output``."""
    config = results["config"]
    depths, inits = config["depths"], config["inits"]
    lines = ["At initialization (x_0: stem output; ratio of norms after D tanh conv layers)",
             f"{'init':<18}" + "".join(f"{'D=' + str(d):>22}" for d in depths),
             f"{'':<18}" + "".join(f"{'signal / grad':>22}" for _ in depths)]
    for name in inits:
        r = results["init"][name]
        lines.append(f"{name:<18}" + "".join(
            f"{_fmt(r['signal_ratio'][str(d)]) + ' / ' + _fmt(r['grad_ratio'][str(d)]):>22}"
            for d in depths))
    if results["train"]:
        lines += ["", f"Training depth {config['train_depth']}, {config['steps']} SGD steps "
                  f"(lr {config['lr']}, momentum {config['momentum']}, "
                  f"batch {config['batch_size']})",
                  f"{'init':<18}{'first loss':>12}{'last-20 loss':>14}{'test acc':>10}"
                  f"{'s/step':>9}"]
        for name, r in results["train"].items():
            tail = np.mean(r["loss"][-20:]) if r["loss"] else float("nan")
            lines.append(f"{name:<18}{_fmt(r['loss'][0]):>12}{_fmt(float(tail)):>14}"
                         f"{_fmt(r['test_acc']):>10}{r['seconds'] / max(1, len(r['loss'])):>9.3f}")
    table = "\n".join(lines)
    print(table)
    os.makedirs(output, exist_ok=True)
    results["table"] = table
    with open(os.path.join(output, "depth.json"), "w") as f:
        json.dump(results, f, indent=1, allow_nan=True)
    _plot(results, os.path.join(output, "depth.png"))
    partial = os.path.join(output, "depth.partial.json")
    if os.path.exists(partial):  # the whole run is in depth.json now
        os.remove(partial)
    print(f"Wrote {os.path.join(output, 'depth.json')} and depth.png")
    return 0
