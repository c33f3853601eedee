"""Reproduce the paper's Figure 1: train its four MNIST networks under each initialization.

``python -m examples.paper compare`` (from a clone's root) trains networks (a)-(d) of
Yang et al. (2021) (see :mod:`examples.paper.networks`) with several initializations and
several seeds, and reports, per network and initialization, the mean +- std over seeds of the
*last smoothed training loss* and of the test accuracy, beside the paper's numbers
(:mod:`examples.paper.paper`).

Initializations (``--inits``):

- ``normed``: the Normed initializer, then :func:`keras_normed.rescale` on a probe batch of
  training data (layer-consistent scales measured with one optimizer step; its default
  ``move="auto"``: every layer moves on a net that shares parameters, none on a plain net);
- ``normed-analytic``: the Normed initializer, then ``rescale`` without data (analytic scales);
- ``normed-noise``: the same without data, by ``rule="noise"`` (the probe rule on U(0, 1)
  images, its logits against random labels: no data, but it sees the draw);
- ``normed-all`` / ``normed-all-analytic``, ``normed-structured`` /
  ``normed-structured-analytic``: the same with ``move="all"`` (every layer gets its own
  scale) and ``move="structured"`` (only circulant/periodic layers do); ``normed-local``: no
  model-level step;
- ``glorot`` / ``he``: Glorot/He *normal* variance with fans of the layer's effective operator
  (:func:`keras_normed.structure.kernel_fans`), so a shared or circulant kernel gets the same
  treatment as under Normed: ``std = sqrt(2 / (fan_in + fan_out))`` and ``sqrt(2 / fan_in)``;
- any other name that ``keras.initializers.get`` understands (``"glorot_uniform"``,
  ``"orthogonal"``, ...), used as is (shape-based fans).

Smoothing: the per-batch training loss ``l_t`` is smoothed by a debiased exponential moving
average, as TensorBoard does::

    m_t = beta * m_{t-1} + (1 - beta) * l_t,   m_0 = 0,   s_t = m_t / (1 - beta ** t)

with ``beta = --smoothing`` (default 0.98, a window of about 50 batches). A run is flagged
*diverged* by the rule all the experiments share (:mod:`examples.paper.divergence`):
a loss is not finite, or a loss reached 100 times the first one; here also when its last
smoothed loss is ``>= 2.2`` (chance is ``ln 10 = 2.303``: the network learned nothing, "dead").

Example::

    python -m examples.paper compare --quick          # offline digits, ~1-2 min on 2 cores
    python -m examples.paper compare --data-dir "$KERAS_NORMED_MNIST_DIR" --nets b c \\
        --seeds 5 --epochs 3 --output results/compare
    python -m examples.paper compare --merge results/a/compare.json results/d/compare.json \\
        --output results/all                          # one table and figure from two runs

Outputs in ``--output``: ``compare.json`` (every run's settings, per-batch losses and smoothed
curve, test accuracy), ``compare.md`` (the table), ``compare.png`` (one panel per network:
smoothed loss, mean and +-1 std band over seeds, per initialization).

Reference: H. Yang et al., "A new initialization method based on normed statistical spaces in
deep networks", Inverse Problems and Imaging 15(1):147-158, 2021 (Tables 1-4, Figure 1).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

import keras
import numpy as np

from examples.paper import divergence, paper
from examples.paper.options import (
    OptionError,
    add_data_arguments,
    add_options,
    add_output_argument,
    check_data,
    existing_file,
    layer_seed,
    seed_everything,
    unit_interval,
)
from examples.paper.paper import NETS
from keras_normed.initializers import EffectiveVarianceScaling

__all__ = [
    "NETS",
    "DEFAULT_INITS",
    "DIVERGED_LOSS",
    "EffectiveVarianceScaling",
    "BatchLossRecorder",
    "ProgressBar",
    "smooth",
    "is_diverged",
    "aggregate",
    "summarize",
    "initialization",
    "apply_rescale",
    "run_one",
    "run_experiment",
    "format_table",
    "plot_curves",
    "merge_results",
    "add_arguments",
    "run",
]

DEFAULT_INITS = ("normed", "normed-analytic", "glorot", "he")
# Chance level is ln(10) = 2.303; a last smoothed loss this high means the run learned nothing.
DIVERGED_LOSS = 2.2
OPTIMIZERS = ("sgd", "momentum", "adam")
_DEFAULT_LR = {"sgd": 0.05, "momentum": 0.01, "adam": 1e-3}
_PROBE_SIZE = 256
# The Normed variants -> the rescale that follows (None: the layer-local part only).
_NORMED = {"normed": ("probe", "auto"), "normed-analytic": ("analytic", "auto"),
           "normed-noise": ("noise", "auto"),
           "normed-all": ("probe", "all"), "normed-all-analytic": ("analytic", "all"),
           "normed-structured": ("probe", "structured"),
           "normed-structured-analytic": ("analytic", "structured"), "normed-local": None}
# --quick: small subset, one epoch, two seeds; 32 steps, so a 10-step smoothing window.
# XLA off: compiling each of the 32 small models costs more than its 32 steps save.
_QUICK = {"n_train": 1024, "n_test": 256, "epochs": 1, "seeds": 2, "batch_size": 32,
          "smoothing": 0.9, "probe_size": 128, "jit": "off"}
_JIT = {"auto": "auto", "on": True, "off": False}


# --------------------------------------------------------------------------- statistics


def smooth(losses: Sequence[float], beta: float = 0.98) -> np.ndarray:
    """Debiased exponential moving average of ``losses`` (TensorBoard's smoothing).

    ``s_t = m_t / (1 - beta**t)`` with ``m_t = beta m_{t-1} + (1 - beta) l_t`` and ``m_0 = 0``.
    ``beta = 0`` returns the losses unchanged. A non-finite loss makes every later value NaN.

    Example: ``smooth([1, 0], beta=0.5)`` is ``[1, 1/3]`` (``m = 0.5, 0.25``; ``/0.5, /0.75``).
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"`smoothing` (beta) must be in [0, 1), got {beta!r}.")
    out = np.empty(len(losses), dtype=np.float64)
    m = 0.0
    for t, value in enumerate(losses, start=1):
        m = beta * m + (1.0 - beta) * float(value)
        out[t - 1] = m / (1.0 - beta ** t)
    return out


def is_diverged(losses: Sequence[float], smoothed: Sequence[float],
                threshold: float = DIVERGED_LOSS) -> bool:
    """Whether a run diverged or died: the shared rule
    (:func:`examples.paper.divergence.is_diverged`: a non-finite loss, or a loss 100
    times the first), or a last smoothed loss >= ``threshold``."""
    if len(smoothed) == 0:
        return True
    return divergence.is_diverged(losses, smoothed, dead_loss=threshold)


def aggregate(runs: Sequence[dict]) -> dict:
    """Mean and std over seeds of the last smoothed loss and the test accuracy.

    ``std`` is the sample standard deviation (``ddof=1``; 0 for a single run). Non-finite values
    (a diverged run's NaN loss) are left out of the mean and std and counted in ``n_diverged``,
    with every other diverged run (dead at chance), so a mean is never silently NaN.

    Returns a dict with ``n``, ``n_diverged``, ``loss_mean``, ``loss_std``, ``acc_mean``,
    ``acc_std``.
    """

    def stats(values):
        values = np.asarray([v for v in values if v is not None and math.isfinite(v)], float)
        if values.size == 0:
            return float("nan"), float("nan")
        std = float(np.std(values, ddof=1)) if values.size > 1 else 0.0
        return float(np.mean(values)), std

    loss_mean, loss_std = stats([r["final_loss"] for r in runs])
    acc_mean, acc_std = stats([r["test_accuracy"] for r in runs])
    return {"n": len(runs), "n_diverged": int(sum(bool(r["diverged"]) for r in runs)),
            "loss_mean": loss_mean, "loss_std": loss_std,
            "acc_mean": acc_mean, "acc_std": acc_std}


# --------------------------------------------------------------------------- initializers


def initialization(init: str, seed: int):
    """``(kernel_initializer, rescale_mode)`` for an initialization name.

    ``kernel_initializer`` is a spec for :func:`examples.paper.networks.paper_net`:
    ``"normed"`` (ReLU gain, linear on the output layer), a callable ``(index, last) ->
    initializer`` giving layer ``index`` an :class:`EffectiveVarianceScaling` seeded
    ``layer_seed(seed, index)`` (``glorot``, ``he``), or a Keras initializer name
    (``paper_net`` seeds it the same way). ``rescale_mode`` is ``(rule, move)`` of
    :func:`keras_normed.rescale` (``("probe", "all")`` for ``normed``,
    ``("analytic", "structured")`` for ``normed-structured-analytic``, ...) or ``None``
    (``normed-local``: no model-level step; the baselines).
    """
    if init in _NORMED:
        return "normed", _NORMED[init]
    if init in ("glorot", "he"):
        scale, mode = (1.0, "fan_avg") if init == "glorot" else (2.0, "fan_in")

        def per_layer(index: int, last: bool = False):
            return EffectiveVarianceScaling(scale, mode, seed=layer_seed(seed, index))

        return per_layer, None
    import keras_normed  # noqa: F401 - registers the package's aliases with keras

    try:
        keras.initializers.get(init)
    except ValueError as err:
        raise ValueError(
            f"Unknown initialization {init!r} in `--inits`: expected one of {DEFAULT_INITS} "
            "or a name keras.initializers.get understands (e.g. 'glorot_uniform')."
        ) from err
    return init, None


# --------------------------------------------------------------------------- training


def make_optimizer(name: str, lr: Optional[float] = None):
    """A fresh Keras optimizer: ``sgd``, ``momentum`` (SGD, momentum 0.9) or ``adam``."""
    if name not in OPTIMIZERS:
        raise ValueError(f"Unknown `optimizer` {name!r}; expected one of {OPTIMIZERS}.")
    lr = _DEFAULT_LR[name] if lr is None else float(lr)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=lr)
    if name == "momentum":
        return keras.optimizers.SGD(learning_rate=lr, momentum=0.9)
    return keras.optimizers.Adam(learning_rate=lr)


def _default_builder(net: str, kernel_initializer, seed: int):
    from examples.paper import networks

    return networks.paper_net(net, kernel_initializer=kernel_initializer, seed=seed,
                              softmax=False)


def apply_rescale(model, mode, probe, optimizer, loss=None):
    """The model-level step of a Normed initialization: ``mode`` is ``(rule, move)`` from
    :func:`initialization`; the probe rule runs on the ``probe`` batch. ``rescale`` copies the
    optimizer: the probe step leaves no state in the one that trains."""
    from keras_normed import rescale

    rule, move = mode
    probing = rule == "probe"
    return rescale(model, data=probe if probing else None, optimizer=optimizer,
                   loss=loss if probing else None, rule=rule, move=move)


class BatchLossRecorder(keras.callbacks.Callback):
    """Records each training batch's own loss in ``self.losses``.

    Keras 3 logs the running mean of the loss over the epoch, so batch ``k`` (1-based) of an
    epoch has loss ``k * mean_k - (k - 1) * mean_{k-1}``.
    """

    def __init__(self):
        super().__init__()
        self.losses: List[float] = []
        self._prev = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._prev = 0.0

    def on_train_batch_end(self, batch, logs=None):
        mean = float((logs or {}).get("loss", float("nan")))
        k = batch + 1
        self.losses.append(k * mean - (k - 1) * self._prev)
        self._prev = mean


class ProgressBar(keras.callbacks.Callback):
    """A compact one-line progress bar: ``label [#####.....] step/total loss`` (terminals only)."""

    def __init__(self, total_steps: int, label: str, stream=None):
        super().__init__()
        self.total = max(1, int(total_steps))
        self.label = label
        self.stream = stream or sys.stdout
        self.step = 0
        self.every = max(1, self.total // 20)

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step % self.every and self.step != self.total:
            return
        if not getattr(self.stream, "isatty", lambda: False)():
            return  # a log file gets the run's final line only
        done = int(20 * self.step / self.total)
        loss = float((logs or {}).get("loss", float("nan")))
        self.stream.write(f"\r  {self.label} [{'#' * done}{'.' * (20 - done)}] "
                          f"{self.step}/{self.total} loss {loss:.4f}")
        self.stream.flush()


def run_one(net: str, init: str, seed: int, data, *, epochs: int = 3, batch_size: int = 64,
            optimizer: str = "momentum", lr: Optional[float] = None, smoothing: float = 0.98,
            progress: str = "bar", builder: Optional[Callable] = None, stream=None,
            probe_size: int = _PROBE_SIZE, jit: str = "auto") -> dict:
    """Train one network under one initialization and seed; return the run's record.

    Args:
        net: "a".."d" (or any name ``builder`` accepts).
        init: an initialization name (see the module docstring).
        seed: seeds the weights, the probe batch and the shuffling.
        data: a :class:`examples.paper.data.Digits`.
        builder: ``builder(net, kernel_initializer, seed) -> keras.Model`` returning logits,
            uncompiled; defaults to :func:`examples.paper.networks.paper_net`.
        progress: "bar" (compact, one line per run), "keras" (Keras' own) or "none".
        probe_size: training images in the probe batch of ``rescale`` (``normed``).
        jit: XLA for training: "auto" (Keras' default), "on" or "off".

    Returns a JSON-ready dict: settings, ``losses`` (per batch), ``smoothed``, ``final_loss``,
    ``test_accuracy``, ``diverged``, ``seconds``, ``rescale`` (the
    :class:`keras_normed.scaling.ScalingReport` as a dict, for the normed initializations).
    """
    if jit not in _JIT:
        raise ValueError(f"`jit` must be one of {sorted(_JIT)}, got {jit!r}.")
    stream = stream or sys.stdout
    builder = builder or _default_builder
    seed_everything(seed)
    start = time.perf_counter()
    kernel_initializer, rescale_mode = initialization(init, seed)
    model = builder(net, kernel_initializer, seed)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    scaling = None
    if rescale_mode is not None:
        idx = np.random.default_rng(seed).choice(
            len(data.x_train), size=min(probe_size, len(data.x_train)), replace=False)
        probe = (data.x_train[idx], data.y_train[idx])
        report = apply_rescale(model, rescale_mode, probe, make_optimizer(optimizer, lr), loss)
        scaling = report.as_dict()
    model.compile(optimizer=make_optimizer(optimizer, lr), loss=loss, metrics=["accuracy"],
                  jit_compile=_JIT[jit])
    steps = math.ceil(len(data.x_train) / batch_size) * epochs
    label = f"net ({net}) {init:<16} seed {seed}"
    recorder = BatchLossRecorder()
    callbacks = [recorder] + ([ProgressBar(steps, label, stream)] if progress == "bar" else [])
    model.fit(data.x_train, data.y_train, batch_size=batch_size, epochs=epochs, shuffle=True,
              callbacks=callbacks, verbose=1 if progress == "keras" else 0)
    losses = recorder.losses
    smoothed = smooth(losses, smoothing)
    _, accuracy = model.evaluate(data.x_test, data.y_test, batch_size=256, verbose=0)
    seconds = time.perf_counter() - start
    diverged = is_diverged(losses, smoothed)
    final = float(smoothed[-1]) if len(smoothed) else float("nan")
    if progress == "bar":
        flag = "  DIVERGED" if diverged else ""
        stream.write(f"\r  {label} final loss {final:.4f} test acc {100 * accuracy:.2f}% "
                     f"({seconds:.0f} s){flag}{' ' * 10}\n")
        stream.flush()
    return {"net": net, "init": init, "seed": int(seed), "epochs": epochs,
            "batch_size": batch_size, "optimizer": optimizer,
            "lr": _DEFAULT_LR[optimizer] if lr is None else float(lr), "smoothing": smoothing,
            "losses": [float(v) for v in losses], "smoothed": [float(v) for v in smoothed],
            "final_loss": final, "test_accuracy": float(accuracy), "diverged": bool(diverged),
            "seconds": seconds, "rescale": scaling}


def run_experiment(nets: Sequence[str], inits: Sequence[str], seeds: int, data, *,
                   builder: Optional[Callable] = None, stream=None, **train) -> dict:
    """Every (net, init, seed) run, and the per-(net, init) summary from :func:`aggregate`.

    ``train`` goes to :func:`run_one` (epochs, batch_size, optimizer, lr, smoothing, progress,
    probe_size, jit).
    Returns ``{"runs": [...], "summary": {net: {init: aggregate(...)}}}``.
    """
    runs = []
    for net in nets:
        for init in inits:
            for seed in range(seeds):
                runs.append(run_one(net, init, seed, data, builder=builder, stream=stream,
                                    **train))
    return {"runs": runs, "summary": summarize(runs)}


def summarize(runs: Sequence[dict]) -> Dict[str, Dict[str, dict]]:
    """``{net: {init: aggregate(...)}}`` over the (net, init) pairs present in ``runs``, in
    their order of first appearance."""
    groups: Dict[str, Dict[str, List[dict]]] = {}
    for r in runs:
        groups.setdefault(r["net"], {}).setdefault(r["init"], []).append(r)
    return {net: {init: aggregate(group) for init, group in by_init.items()}
            for net, by_init in groups.items()}


# --------------------------------------------------------------------------- reporting


def _fmt(mean: float, std: float, digits: int = 3, percent: bool = False) -> str:
    if not math.isfinite(mean):
        return "n/a"
    k = 100.0 if percent else 1.0
    unit = "%" if percent else ""
    return f"{k * mean:.{digits}f} ± {k * std:.{digits}f}{unit}"


def format_table(summary: Dict[str, Dict[str, dict]]) -> str:
    """A Markdown table: per network and initialization, ours beside the paper's numbers.

    Loss is the last smoothed training loss, mean ± std over seeds; "diverged" counts the runs
    :func:`is_diverged` flags (a non-finite loss, a loss 100 times the first, or a last
    smoothed loss >= 2.2).
    """
    lines = [
        "| net | init | smoothed loss | test accuracy | diverged | paper loss | paper accuracy |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for net, by_init in summary.items():
        for init, s in by_init.items():
            ref = paper.paper_row(net, init)
            ref_loss = f"{ref.loss:.3f} ± {ref.loss_std:.3f}" if ref else "-"
            ref_acc = f"{100 * ref.accuracy:.2f}%" if ref else "-"
            lines.append(
                f"| ({net}) | {init} | {_fmt(s['loss_mean'], s['loss_std'])} | "
                f"{_fmt(s['acc_mean'], s['acc_std'], 2, percent=True)} | "
                f"{s['n_diverged']}/{s['n']} | {ref_loss} | {ref_acc} |")
    return "\n".join(lines)


def plot_curves(runs: Sequence[dict], path: str, title: Optional[str] = None):
    """One panel per network: smoothed loss against step, mean and ±1 std band over seeds.

    Returns the matplotlib figure (already saved to ``path``, PNG, Agg backend).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nets = list(dict.fromkeys(r["net"] for r in runs))
    inits = list(dict.fromkeys(r["init"] for r in runs))
    cols = 2 if len(nets) > 1 else 1
    rows = math.ceil(len(nets) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4 * rows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, net in zip(axes.flat, nets):
        for i, init in enumerate(inits):
            curves = [r["smoothed"] for r in runs if r["net"] == net and r["init"] == init]
            if not curves:
                continue
            n = min(len(c) for c in curves)
            stack = np.asarray([c[:n] for c in curves], dtype=np.float64)
            mean = np.nanmean(stack, axis=0) if np.isfinite(stack).any() else stack[0]
            std = np.nanstd(stack, axis=0) if len(curves) > 1 else np.zeros(n)
            steps = np.arange(1, n + 1)
            color = colors[i % len(colors)]
            ax.plot(steps, mean, color=color, label=f"{init} (n={len(curves)})")
            ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
        ref = paper.PAPER.get(net)
        ax.set_title(f"net ({net})" + (f": {ref.table}" if ref else ""))
        ax.set_xlabel("training step (batch)")
        ax.set_ylabel("smoothed training loss")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(nets):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return fig


# --------------------------------------------------------------------------- CLI


def _init_name(text: str) -> str:
    """An argparse type: one of DEFAULT_INITS or a name keras.initializers.get understands."""
    try:
        initialization(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown initialization {text!r}: expected one of {', '.join(DEFAULT_INITS)} or a "
            "keras.initializers name (e.g. glorot_uniform)") from None
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m examples.paper compare``."""
    parser.add_argument("--nets", nargs="+", default=list(NETS), choices=NETS,
                        help="networks of the paper to train")
    parser.add_argument("--inits", nargs="+", type=_init_name, default=list(DEFAULT_INITS),
                        metavar="INIT",
                        help="initializations: normed, normed-analytic, normed-noise, glorot, "
                             "he, "
                             "normed-all, normed-all-analytic, normed-structured, "
                             "normed-structured-analytic, normed-local, or "
                             "any keras.initializers name")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="momentum",
                        help="sgd, momentum (SGD with momentum 0.9) or adam")
    add_options(parser, seeds=5, epochs=3, batch_size=64,
                lr=(None, "learning rate (default: sgd 0.05, momentum 0.01, adam 0.001)"),
                probe_size=(_PROBE_SIZE, "training images in rescale's probe batch (normed)"))
    parser.add_argument("--smoothing", type=unit_interval, default=0.98, metavar="BETA",
                        help="beta of the debiased exponential moving average of the loss, "
                             "in [0, 1)")
    add_data_arguments(parser)
    add_output_argument(parser, os.path.join("results", "compare"),
                        "folder for compare.json, compare.md and compare.png")
    parser.add_argument("--jit", choices=sorted(_JIT), default="auto",
                        help="XLA compilation of the training step (auto: as Keras decides)")
    parser.add_argument("--progress", choices=("bar", "keras", "none"), default="bar",
                        help="bar: one line per run; keras: Keras' own progress; none")
    parser.add_argument("--merge", nargs="+", type=existing_file, default=None, metavar="JSON",
                        help="train nothing: combine the compare.json files of earlier runs "
                             "(e.g. one per network) into one table, JSON and figure")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run: small subset ({_QUICK['n_train']} train / "
                             f"{_QUICK['n_test']} test), one epoch, two seeds, batch "
                             f"{_QUICK['batch_size']}, smoothing {_QUICK['smoothing']}, probe "
                             f"{_QUICK['probe_size']}, no XLA (overrides those options)")


def merge_results(paths: Sequence[str]) -> dict:
    """Combine the ``compare.json`` of several runs: their runs, re-aggregated per (net, init).

    A (net, init, seed) present in two files is an error (it would be counted twice); so are
    runs that differ in anything but net/init/seed (epochs, batch size, optimizer, learning
    rate, smoothing, data). Returns ``{"settings": ..., "runs": ..., "summary": ...}`` with
    ``settings["merged_from"]`` listing each file's own settings.
    """
    if not paths:
        raise ValueError("`--merge` needs at least one compare.json.")
    runs, sources, seen = [], [], set()
    keys = ("epochs", "batch_size", "optimizer", "lr", "smoothing")
    for path in paths:
        try:
            with open(path) as f:
                loaded = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise OptionError(f"argument --merge: cannot read {path!r} as JSON ({err})") from None
        if not isinstance(loaded, dict) or not isinstance(loaded.get("runs"), list) or not all(
                isinstance(r, dict) and {"net", "init", "seed"} <= set(r) for r in loaded["runs"]):
            raise OptionError(f"argument --merge: {path!r} is not a compare.json (it needs a "
                              "list of runs, each with its net, init and seed)")
        sources.append({"path": path, **loaded.get("settings", {})})
        for r in loaded["runs"]:
            key = (r["net"], r["init"], r["seed"])
            if key in seen:
                raise OptionError(f"argument --merge: run {key} appears twice (last in "
                                  f"{path!r}): merge files of disjoint runs")
            seen.add(key)
            runs.append(r)
    first = runs[0] if runs else {}
    for r in runs:
        differs = [k for k in keys if r.get(k) != first.get(k)]
        if differs:
            raise OptionError(f"argument --merge: runs differ in {differs}: "
                              f"{(r['net'], r['init'], r['seed'])} against "
                              f"{(first['net'], first['init'], first['seed'])}")
    datas = {src.get("data") for src in sources}
    if len(datas) > 1:
        raise OptionError(f"argument --merge: the files were trained on different data: "
                          f"{sorted(map(str, datas))}")
    settings = {k: first.get(k) for k in keys}
    settings.update(data=datas.pop(), merged_from=sources)
    return {"settings": settings, "runs": runs, "summary": summarize(runs)}


def _write(result: dict, output: str, title: str) -> str:
    """Write compare.json, compare.md and compare.png in ``output``; return the table."""
    table = format_table(result["summary"])
    os.makedirs(output, exist_ok=True)
    with open(os.path.join(output, "compare.json"), "w") as f:
        json.dump(result, f, indent=1, allow_nan=True)
    with open(os.path.join(output, "compare.md"), "w") as f:
        f.write(table + "\n")
    plot_curves(result["runs"], os.path.join(output, "compare.png"), title=title)
    return table


def run(args: argparse.Namespace, builder: Optional[Callable] = None) -> int:
    """Run ``python -m examples.paper compare``; print the table; write JSON, Markdown and
    PNG. Returns 0."""
    if getattr(args, "merge", None):
        result = merge_results(args.merge)
        st = result["settings"]
        seeds = max(s["n"] for by in result["summary"].values() for s in by.values())
        table = _write(result, args.output,
                       f"{st['data']}; {st['optimizer']}, batch {st['batch_size']}, "
                       f"{st['epochs']} epoch(s), {seeds} seeds")
        print(table)
        print(f"\nMerged {len(args.merge)} files into {args.output}")
        return 0
    if args.quick:
        for key, value in _QUICK.items():
            setattr(args, key, value)
    # A run counted twice would understate the spread over seeds.
    args.nets, args.inits = list(dict.fromkeys(args.nets)), list(dict.fromkeys(args.inits))
    check_data(args.source, args.data_dir)
    from examples.paper.data import load_digits

    data = load_digits(args.source, args.data_dir, n_train=args.n_train, n_test=args.n_test,
                       seed=0)
    settings = {k: getattr(args, k) for k in (
        "nets", "inits", "seeds", "epochs", "batch_size", "optimizer", "lr", "smoothing",
        "source", "n_train", "n_test", "probe_size", "jit", "quick")}
    settings.update(data=data.source, n_train=len(data.x_train), n_test=len(data.x_test),
                    probe_size=min(args.probe_size, len(data.x_train)),
                    diverged_loss=DIVERGED_LOSS, command=" ".join(sys.argv))
    print(f"Training nets {', '.join(args.nets)} x inits {', '.join(args.inits)} x "
          f"{args.seeds} seeds, {args.epochs} epoch(s), batch {args.batch_size}, "
          f"{args.optimizer} lr {settings['lr'] or _DEFAULT_LR[args.optimizer]}")
    start = time.perf_counter()
    result = run_experiment(args.nets, args.inits, args.seeds, data, builder=builder,
                            epochs=args.epochs, batch_size=args.batch_size,
                            optimizer=args.optimizer, lr=args.lr, smoothing=args.smoothing,
                            progress=args.progress, probe_size=args.probe_size, jit=args.jit)
    settings["seconds"] = time.perf_counter() - start
    table = _write({"settings": settings, **result}, args.output,
                   f"{data.source}; {args.optimizer}, batch {args.batch_size}, "
                   f"{args.epochs} epoch(s), {args.seeds} seeds")
    print()
    print(f"Last smoothed training loss (EMA beta={args.smoothing}) and test accuracy, "
          f"mean ± std over {args.seeds} seeds; paper: {paper.REFERENCE}")
    print(table)
    print(f"\nWrote compare.json, compare.md and compare.png in {args.output} "
          f"({settings['seconds']:.0f} s)")
    return 0
