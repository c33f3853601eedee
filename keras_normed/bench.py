"""Speed benchmark of the block-circulant layers against Dense / Conv2D and materialising.

Also ``keras_normed.rescale`` against a first ``fit`` call. Results: docs/performance.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence

import keras
import numpy as np

from keras_normed.cli import (
    OptionError,
    nonneg_int,
    output_file,
    positive_int,
    positive_int_list,
)
from keras_normed.initializers import Normed
from keras_normed.layers import CirculantConv2D, CirculantDense
from keras_normed.ops._common import freq_contract
from keras_normed.ops.fft import circulant_matmul, circulant_to_dense
from keras_normed.scaling import rescale

# The sizes of the cases (options left unset), and their --quick values: a smoke test of seconds.
DEFAULTS = {"sizes": (1024, 4096), "blocks": ("16", "64", "256", "1024", "n"), "batch": 256,
            "repeats": 10, "warmup": 2, "conv_shape": (14, 14, 256), "conv_blocks": (16, 64, 256),
            "conv_batch": 32}
QUICK = {"sizes": (128,), "blocks": ("16", "n"), "batch": 8, "repeats": 3, "warmup": 1,
         "conv_shape": (6, 6, 32), "conv_blocks": (8,), "conv_batch": 2}

# The issue's target: dense n = 4096, block 256, batch 256, XLA, fwd+bwd ratio (and faster than
# materialise). Issue 13: (case, n, block, batch, XLA, fwd+bwd ratio target), --cases targets.
TARGET_RATIO = 0.1
ISSUE13_ROWS = (("conv", 256, 256, 32, False, 0.3), ("conv", 256, 256, 32, True, 0.3),
                ("dense", 4096, 1024, 256, True, 0.05), ("dense", 4096, 256, 256, True, 0.05))


def _conv_shape(text: str) -> List[int]:  # argparse type: H,W,C
    values = positive_int_list(text)
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"must be three integers H,W,C >= 1, got {text!r}")
    return values


def _block_list(text: str) -> List[str]:  # argparse type: integers >= 1 or n
    values = [v.strip() for v in text.split(",") if v.strip()]
    for v in values:
        if v != "n" and not (v.isdigit() and int(v) > 0):
            raise argparse.ArgumentTypeError(
                f"blocks are integers >= 1 or 'n' (the full size), got {v!r}")
    if not values:
        raise argparse.ArgumentTypeError("expected at least one block size")
    return values


# The options that set a size: option -> (type, metavar, help); defaults from DEFAULTS.
_SIZE_OPTIONS = {
    "--sizes": (positive_int_list, "N,...", "square sizes n of the n -> n dense case"),
    "--blocks": (_block_list, "B,...",
                 "block sizes; 'n' means the full size; sizes that do not divide n are skipped"),
    "--batch": (positive_int, "N", "batch of the dense case"),
    "--repeats": (positive_int, "N", "timed rounds after warm-up; the median is reported"),
    "--warmup": (nonneg_int, "N", "untimed rounds; at least one runs, to compile"),
    "--conv-shape": (_conv_shape, "H,W,C",
                     "input of the convolution case, C -> C filters, 3x3, 'same'"),
    "--conv-blocks": (positive_int_list, "B,...", "block sizes of the convolution case"),
    "--conv-batch": (positive_int, "N", "batch of the convolution case"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``keras-normed bench``; unset sizes: :data:`DEFAULTS` (:data:`QUICK`)."""
    for option, (kind, metavar, text) in _SIZE_OPTIONS.items():
        default = DEFAULTS[option[2:].replace("-", "_")]
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        parser.add_argument(option, type=kind, default=None, metavar=metavar,
                            help=f"{text} (default: {shown})")
    parser.add_argument("--cases", choices=("all", "dense", "conv", "rescale", "targets"),
                        default="all", help="which cases to run ('rescale': keras_normed.rescale "
                        "of a 100-layer MLP against its first fit call; 'targets': only the four "
                        "target rows, conv 14x14x256 and dense 4096, with their verdicts; "
                        "docs/performance.md)")
    parser.add_argument("--jit", choices=("both", "on", "off"), default="both",
                        help="XLA: tf.function with jit_compile=True, or jax.jit ('on'); "
                             "without ('off'); or both")
    parser.add_argument("--profile", action="store_true",
                        help="also time the parts of the circulant product (rfft, contraction, "
                             "irfft) and alternative contractions, dense case only")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and few repeats (seconds): a smoke test")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument("--output", type=output_file, default=None, metavar="FILE",
                        help="write the results as JSON to this path (its folder is created)")
    parser.add_argument("--seed", type=nonneg_int, default=0, metavar="N",
                        help="seed of inputs and weights")


def dense_param_bytes(n_in: int, units: int, dtype_bytes: int = 4) -> int:
    """Bytes of a ``Dense(units)`` kernel and bias: ``dtype_bytes * (n_in * units + units)``."""
    return dtype_bytes * (n_in * units + units)


def circulant_dense_param_bytes(n_in: int, units: int, block_size: int,
                                dtype_bytes: int = 4) -> int:
    """Bytes of a ``CirculantDense``: kernel ``(ceil(n_in/b), ceil(units/b), b)`` plus bias."""
    p, q = -(-n_in // block_size), -(-units // block_size)
    return dtype_bytes * (p * q * block_size + units)


def conv_param_bytes(k: int, c_in: int, filters: int, dtype_bytes: int = 4) -> int:
    """Bytes of a ``k x k`` ``Conv2D``: ``dtype_bytes * (k * k * c_in * filters + filters)``."""
    return dtype_bytes * (k * k * c_in * filters + filters)


def circulant_conv_param_bytes(k: int, c_in: int, filters: int, block_size: int,
                               dtype_bytes: int = 4) -> int:
    """Bytes of a ``CirculantConv2D``: kernel ``(k, k, ceil(c_in/b), ceil(filters/b), b)``."""
    p, q = -(-c_in // block_size), -(-filters // block_size)
    return dtype_bytes * (k * k * p * q * block_size + filters)


def _weight_bytes(layer) -> int:
    return int(sum(int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize for w in layer.weights))


def _time_interleaved(fns: Dict[str, Callable], repeats: int, warmup: int) -> Dict[str, float]:
    """Median wall time (seconds) of each zero-argument function, measured round-robin."""
    for _ in range(max(warmup, 1)):  # the first call traces and compiles
        for fn in fns.values():
            fn()
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()  # returns once the result is ready (tf.function on CPU; block_until_ready)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def _compiled(apply: Callable, x, upstream, variables, jit: bool):
    """``(forward, forward_backward)`` of ``apply(x)``, each returning once its result is
    computed; ``jit``: with XLA. The random ``upstream`` keeps XLA from dropping backward work."""
    name = keras.backend.backend()
    if name == "jax":
        import jax

        variables = list(variables)
        values = [v.value for v in variables]

        def run(x, values):  # with the values substituted, so jax.grad differentiates them too
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return apply(x)

        def loss(x, values):
            return keras.ops.sum(run(x, values) * upstream)

        forward, gradients = run, jax.grad(loss, argnums=(0, 1))
        if jit:
            forward, gradients = jax.jit(forward), jax.jit(gradients)
        return (lambda: jax.block_until_ready(forward(x, values)),
                lambda: jax.block_until_ready(gradients(x, values)))
    if name != "tensorflow":
        raise NotImplementedError(f"keras-normed bench runs on the TensorFlow and JAX backends, "
                                  f"not KERAS_BACKEND={name!r}.")
    import tensorflow as tf

    @tf.function(jit_compile=jit, autograph=False)
    def forward():
        return apply(x)

    @tf.function(jit_compile=jit, autograph=False)
    def forward_backward():
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(apply(x) * upstream)
        return tape.gradient(loss, [x] + list(variables))

    return forward, forward_backward


def _blocks_for(n: int, blocks: Sequence[str]) -> List[int]:
    sizes = []
    for b in blocks:
        size = n if b == "n" else int(b)
        if size <= n and n % size == 0 and size not in sizes:
            sizes.append(size)
    return sizes


def _bench_case(case: dict, shape: tuple, baseline, circulant: Callable, materialise: Callable,
                blocks: Sequence[int], jit: bool, repeats: int, warmup: int,
                seed: int) -> List[dict]:
    """Rows of one case on inputs of ``shape``: ``baseline`` (impl ``dense``), then per block
    size ``b`` the layer ``circulant(b)`` and ``materialise(layer, inputs)``."""
    rng = np.random.default_rng(seed)
    x = keras.ops.convert_to_tensor(rng.standard_normal(shape).astype("float32"))
    upstream = keras.ops.convert_to_tensor(rng.standard_normal(shape).astype("float32"))
    baseline.build(shape)
    impls = {"dense": (baseline, baseline, None)}  # name -> (apply, layer, block)
    for b in blocks:
        layer = circulant(b)
        layer.build(shape)
        impls[f"circulant:{b}"] = (layer, layer, b)
        impls[f"materialise:{b}"] = (functools.partial(materialise, layer), layer, b)
    fns = {}
    for name, (apply, layer, _) in impls.items():
        fns[name, "fwd"], fns[name, "fwdbwd"] = _compiled(apply, x, upstream,
                                                          layer.trainable_weights, jit)
    t = _time_interleaved(fns, repeats, warmup)
    return [dict(case, impl=name.split(":")[0], block=b, jit=jit,
                 fwd_ms=1e3 * t[name, "fwd"], fwdbwd_ms=1e3 * t[name, "fwdbwd"],
                 fwd_ratio=t[name, "fwd"] / t["dense", "fwd"],
                 fwdbwd_ratio=t[name, "fwdbwd"] / t["dense", "fwdbwd"],
                 param_bytes=_weight_bytes(layer))
            for name, (_, layer, b) in impls.items()]


def bench_dense(n: int, blocks: Sequence[str], batch: int, jit: bool, repeats: int,
                warmup: int, seed: int = 0) -> List[dict]:
    """Rows for the square ``n -> n`` case: Dense, then CirculantDense and materialise per block."""

    def materialise(layer, inputs):
        return keras.ops.matmul(inputs, circulant_to_dense(layer.kernel, n, n)) + layer.bias

    dense = keras.layers.Dense(n, kernel_initializer=keras.initializers.GlorotUniform(seed))
    case = {"case": "dense", "shape": f"{n}->{n}", "n": n, "batch": batch}
    return _bench_case(case, (batch, n), dense, lambda b: CirculantDense(n, b), materialise,
                       _blocks_for(n, blocks), jit, repeats, warmup, seed)


def bench_conv(shape: Sequence[int], blocks: Sequence[int], batch: int, jit: bool,
               repeats: int, warmup: int, seed: int = 0, kernel_size: int = 3) -> List[dict]:
    """Rows for ``H x W x C -> C`` 3x3 'same' convolutions: Conv2D, CirculantConv2D, materialise."""
    h, w, c = (int(v) for v in shape)

    def materialise(layer, inputs):
        kernel = circulant_to_dense(layer.kernel, c, c)  # (k, k, C, C)
        return keras.ops.conv(inputs, kernel, strides=1, padding="same") + layer.bias

    conv = keras.layers.Conv2D(c, kernel_size, padding="same",
                               kernel_initializer=keras.initializers.GlorotUniform(seed))
    case = {"case": "conv", "shape": f"{h}x{w}x{c}->{c} k{kernel_size}", "n": c, "batch": batch}
    return _bench_case(case, (batch, h, w, c), conv,
                       lambda b: CirculantConv2D(c, kernel_size, b, padding="same"), materialise,
                       [b for b in blocks if c % b == 0], jit, repeats, warmup, seed)


def profile_circulant(n: int, block_size: int, batch: int, jit: bool, repeats: int,
                      warmup: int, seed: int = 0) -> Dict[str, float]:
    """Median milliseconds of the parts of ``x @ W`` for a block-circulant ``n x n`` ``W``
    (TensorFlow), and of alternative contractions (complex matmul, four real matmuls, einsum)."""
    import tensorflow as tf

    rng = tf.random.Generator.from_seed(seed)
    x, kernel = rng.normal((batch, n)), rng.normal((n // block_size,) * 2 + (block_size,))
    xb = tf.reshape(x, (batch, -1, block_size))
    xs, ks = tf.signal.rfft(xb), tf.signal.rfft(kernel)
    xr, xi, kr, ki = (part(z) for z in (xs, ks) for part in (tf.math.real, tf.math.imag))
    ys = tf.complex(*freq_contract(xr, xi, kr, ki))
    w_dense = rng.normal((n, n))

    def by_frequency(t):  # (M, P, F) -> (F, M, P)
        return tf.transpose(t, (2, 0, 1))

    def complex_matmul():
        return tf.transpose(tf.matmul(by_frequency(xs), by_frequency(ks)), (1, 2, 0))

    def real4():
        xrt, xit, krt, kit = map(by_frequency, (xr, xi, kr, ki))
        yr = tf.matmul(xrt, krt) - tf.matmul(xit, kit)
        yi = tf.matmul(xrt, kit) + tf.matmul(xit, krt)
        return tf.transpose(yr, (1, 2, 0)), tf.transpose(yi, (1, 2, 0))

    parts = {"rfft": lambda: tf.signal.rfft(xb), "kernel_rfft": lambda: tf.signal.rfft(kernel),
             "contract_stacked": lambda: freq_contract(xr, xi, kr, ki),
             "contract_complex_matmul": complex_matmul, "contract_real4": real4,
             "contract_einsum": lambda: tf.einsum("mpf,pqf->mqf", xs, ks),
             "irfft": lambda: tf.signal.irfft(ys),
             "forward": lambda: circulant_matmul(x, kernel, n),
             "dense_matmul": lambda: tf.matmul(x, w_dense)}
    fns = {name: tf.function(fn, jit_compile=jit, autograph=False) for name, fn in parts.items()}
    return {name: 1e3 * s for name, s in _time_interleaved(fns, repeats, warmup).items()}


def run_bench(sizes: Sequence[int] = DEFAULTS["sizes"],
              blocks: Sequence[str] = DEFAULTS["blocks"], batch: int = 256, repeats: int = 10,
              warmup: int = 2, conv_shape: Sequence[int] = DEFAULTS["conv_shape"],
              conv_blocks: Sequence[int] = DEFAULTS["conv_blocks"], conv_batch: int = 32,
              cases: str = "all", jit_modes: Sequence[bool] = (False, True),
              profile: bool = False, seed: int = 0, verbose: bool = True) -> dict:
    """Run the benchmark: ``{"rows": [...], "profile": [...], "machine": ..., "settings": ...}``."""
    if batch < 1 or conv_batch < 1:
        raise ValueError("`batch` and `conv_batch` must be >= 1.")
    if repeats < 1 or warmup < 0:
        raise ValueError("`repeats` must be >= 1 and `warmup` >= 0.")
    backend = keras.backend.backend()
    if profile and backend != "tensorflow":
        raise ValueError(f"--profile times TensorFlow ops: it needs KERAS_BACKEND=tensorflow, "
                         f"not {backend!r}.")
    if backend == "tensorflow":
        import tensorflow as tf

        # Every case builds fresh tf.functions on purpose: silence TF's retracing warning.
        tf.get_logger().setLevel("ERROR")
    rows, prof = [], []

    def measure(label: str, fn: Callable, *args) -> List[dict]:
        if verbose:
            print(f"  {label}, jit_compile={args[3]} ...", flush=True)
        return fn(*args, repeats, warmup, seed)

    for case, n, block, batch_, jit, _ in ISSUE13_ROWS if cases == "targets" else ():
        fn, size, blocks_ = ((bench_conv, (14, 14, n), [block]) if case == "conv"
                             else (bench_dense, n, [str(block)]))
        rows += measure(f"{case} n={n} block {block}", fn, size, blocks_, batch_, jit)
    for jit in () if cases == "targets" else jit_modes:
        for n in sizes if cases in ("all", "dense") else ():
            rows += measure(f"dense {n}->{n}", bench_dense, n, blocks, batch, jit)
            for b in _blocks_for(n, blocks) if profile else ():
                prof.append({"n": n, "block": b, "batch": batch, "jit": jit,
                             "ms": profile_circulant(n, b, batch, jit, repeats, warmup, seed)})
        if cases in ("all", "conv"):
            rows += measure(f"conv {'x'.join(map(str, conv_shape))}", bench_conv, conv_shape,
                            conv_blocks, conv_batch, jit)
    machine = {"platform": platform.platform(),
               "processor": platform.processor() or platform.machine(),
               "cpu_count": os.cpu_count(), "python": platform.python_version(),
               "backend": backend, **_backend_versions(backend), "keras": keras.__version__,
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}
    return {"rows": rows, "profile": prof, "machine": machine,
            "settings": {"repeats": repeats, "warmup": warmup, "seed": seed}}


def _backend_versions(backend: str) -> dict:
    """The backend's version and its first device (``cpu``, or the accelerator's kind)."""
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        kind = str(getattr(device, "device_kind", "") or "")
        return {"jax": jax.__version__, "backend_version": jax.__version__,
                "device": device.platform if kind.lower() in ("", device.platform)
                else f"{device.platform} ({kind})",
                "device_count": jax.device_count()}
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return {"tensorflow": tf.__version__, "backend_version": tf.__version__,
                "device": f"gpu: {len(gpus)}" if gpus else "cpu", "device_count": max(1, len(gpus))}
    return {"backend_version": "", "device": "", "device_count": 0}


_COLUMNS = [("case", "case"), ("shape", "shape"), ("batch", "batch"), ("impl", "impl"),
            ("block", "block"), ("jit", "XLA"), ("fwd_ms", "fwd ms"),
            ("fwd_ratio", "fwd / base"), ("fwdbwd_ms", "fwd+bwd ms"),
            ("fwdbwd_ratio", "fwd+bwd / base"), ("param_bytes", "param bytes")]


def _cell(key: str, value) -> str:
    if value is None:
        return "-"
    if key == "jit":
        return "yes" if value else "no"
    if key.endswith("_ms"):
        return f"{value:.3g}" if value < 10 else f"{value:.1f}"
    if key.endswith("_ratio"):
        return f"{value:.3f}"
    if key == "param_bytes":
        return f"{value:,}"
    return str(value)


def format_table(rows: Sequence[dict], markdown: bool = False) -> str:
    """Rows as an aligned text table or a markdown table (``base`` = Dense / Conv2D)."""
    header = [title for _, title in _COLUMNS]
    body = [[_cell(key, row.get(key)) for key, _ in _COLUMNS] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join("---:" if i >= 5 else "---" for i in range(len(header))) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(header)]
    fmt = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([fmt(header)] + [fmt(r) for r in body])


def format_profile(prof: Sequence[dict]) -> str:
    """The profile rows of :func:`run_bench` as a text table, one row per (n, block, XLA)."""
    if not prof:
        return ""
    names = list(prof[0]["ms"])
    lines = ["n  block  XLA  " + "  ".join(names) + "   (ms)"]
    for p in prof:
        lines.append(f"{p['n']}  {p['block']}  {'yes' if p['jit'] else 'no'}  "
                     + "  ".join(f"{p['ms'][k]:.3g}" for k in names))
    return "\n".join(lines)


def _find(rows: Sequence[dict], impl: str, case: str, n: int, block: int, batch: int,
          jit: bool) -> Optional[dict]:
    return next((r for r in rows if (r["impl"], r["case"], r["n"], r["block"], r["batch"],
                                     r["jit"]) == (impl, case, n, block, batch, jit)
                 and (case != "conv" or r["shape"].startswith("14x14"))), None)


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def check_issue13(rows: Sequence[dict]) -> List[str]:
    """One verdict line per measured row of :data:`ISSUE13_ROWS` (fwd+bwd ratio of the circulant
    layer to Dense / Conv2D in the same run)."""
    lines = []
    for case, n, block, batch, jit, target in ISSUE13_ROWS:
        row = _find(rows, "circulant", case, n, block, batch, jit)
        if row is not None:
            ratio = row["fwdbwd_ratio"]
            lines.append(f"Target: {case} {row['shape']} block {block} batch {batch} "
                         f"{'XLA' if jit else 'tf.function'}: {ratio:.3f} of Keras's layer "
                         f"(target <= {target}: {_met(ratio <= target)})")
    return lines


def check_targets(rows: Sequence[dict]) -> Optional[str]:
    """Verdict on the issue's targets when the target case was measured, else ``None``."""
    circ, mat = (_find(rows, impl, "dense", 4096, 256, 256, True)
                 for impl in ("circulant", "materialise"))
    if circ is None or mat is None:
        return None
    ratio, ms, mat_ms = circ["fwdbwd_ratio"], circ["fwdbwd_ms"], mat["fwdbwd_ms"]
    return (f"Target (n=4096, block 256, batch 256, XLA, fwd+bwd): {ratio:.3f} of Dense (target "
            f"<= {TARGET_RATIO}: {_met(ratio <= TARGET_RATIO)}); {ms:.3g} ms vs materialise "
            f"{mat_ms:.3g} ms ({_met(ms <= mat_ms)}).")


def _mlp(depth: int, width: int, seed: int):
    keras.utils.set_random_seed(seed)
    hidden = [keras.layers.Dense(width, activation="relu", kernel_initializer="normed")
              for _ in range(depth - 1)]
    model = keras.Sequential([keras.Input((width,)), *hidden,
                              keras.layers.Dense(10, kernel_initializer=Normed("linear"))])
    model.compile(keras.optimizers.SGD(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def bench_rescale(depth: int = 100, width: int = 256, batch: int = 256, repeats: int = 3,
                  seed: int = 0) -> dict:
    """``rescale`` of a ``depth``-layer ReLU MLP of ``width`` units, with a probe batch and by the
    analytic rule, next to its first ``fit`` call (one step, tracing included): medians over
    ``repeats`` rounds on fresh models after a warm-up, in wall time and in CPU time."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, width)).astype("float32")
    y = rng.integers(0, 10, batch)
    small = _mlp(3, 16, seed)
    rescale(small, (x[:, :16], y), move="all")
    small.fit(x[:, :16], y, batch_size=batch, epochs=1, verbose=0)
    # (wall, CPU) seconds per round; "probe_checked": check="always", the function measured
    # although Keras's own layers keep it by construction
    times = {"probe": [], "probe_checked": [], "analytic": [], "first_fit": []}

    def timed(key, fn, *args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        fn(*args, **kwargs)
        times[key].append((time.perf_counter() - wall, time.process_time() - cpu))

    for r in range(repeats):
        model = _mlp(depth, width, seed + r)
        # move="all": the equalizing work (the default keeps a plain net's draw).
        timed("probe", rescale, model, (x, y), move="all")
        timed("first_fit", model.fit, x, y, batch_size=batch, epochs=1, verbose=0)
        timed("analytic", rescale, _mlp(depth, width, seed + r), move="all")
        timed("probe_checked", rescale, _mlp(depth, width, seed + r), (x, y), move="all",
              check="always")
    row = {"case": f"rescale {depth}x{width} MLP, batch {batch}", "repeats": repeats}
    for clock, i in (("", 0), ("_cpu", 1)):
        med = {key: statistics.median(t[i] for t in ts) for key, ts in times.items()}
        row.update({f"{key}{clock}_s": seconds for key, seconds in med.items()})
        row[f"probe_over_first_fit{clock}"] = med["probe"] / med["first_fit"]
        row[f"probe_checked_over_first_fit{clock}"] = med["probe_checked"] / med["first_fit"]
    row["load_average"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return row


def format_rescale(row: dict) -> str:
    """One line: the medians of :func:`bench_rescale` and the probe / first-fit ratios."""
    load = "n/a" if row["load_average"] is None else f"{row['load_average']:.2f}"
    return (f"{row['case']}: probe rescale {row['probe_s']:.3f} s, analytic "
            f"{row['analytic_s']:.3f} s, first fit call {row['first_fit_s']:.3f} s; "
            f"probe / first fit = {row['probe_over_first_fit']:.3f} wall, "
            f"{row['probe_over_first_fit_cpu']:.3f} CPU time; with check='always' "
            f"{row['probe_checked_s']:.3f} s, {row['probe_checked_over_first_fit']:.3f} wall "
            f"(median of {row['repeats']}; load average {load})")


def run(args: argparse.Namespace) -> int:
    """Run ``keras-normed bench``: print the tables and verdicts; write the JSON if asked."""
    if args.profile and keras.backend.backend() != "tensorflow":
        raise OptionError(f"argument --profile: it times TensorFlow ops: run with "
                          f"KERAS_BACKEND=tensorflow, not {keras.backend.backend()!r}")
    fallback = QUICK if args.quick else DEFAULTS
    sizes = {key: fallback[key] if getattr(args, key) is None else getattr(args, key)
             for key in DEFAULTS}
    jit_modes = {"both": (False, True), "on": (True,), "off": (False,)}[args.jit]
    result = run_bench(**sizes, cases=args.cases, jit_modes=jit_modes, profile=args.profile,
                       seed=args.seed)
    m = result["machine"]
    load = m.get("load_average")
    print(f"Machine: {m['processor']}, {m['cpu_count']} CPUs, {m['backend']} "
          f"{m['backend_version']} on {m['device']}, Keras {m['keras']}; median of "
          f"{result['settings']['repeats']} rounds; base = Dense / Conv2D in the same XLA mode"
          + (f"; load average {load[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end."
             if load else "."))
    if result["rows"]:
        print(format_table(result["rows"], markdown=args.markdown))
    if args.cases in ("all", "dense"):
        for n in sizes["sizes"]:
            skipped = [b for b in sizes["blocks"] if (n if b == "n" else int(b)) not in
                       _blocks_for(n, [b])]
            if skipped:
                print(f"note: dense n={n}: block sizes {', '.join(skipped)} skipped (a block "
                      "size must divide n).")
    if args.cases in ("all", "conv"):
        c = sizes["conv_shape"][-1]
        skipped = [str(b) for b in sizes["conv_blocks"] if c % b]
        if skipped:
            print(f"note: conv C={c}: block sizes {', '.join(skipped)} skipped (a block size "
                  "must divide C).")
    if args.cases == "targets" and (args.quick or args.jit != "both"):
        print("note: --cases targets measures the issues' own cases at their own sizes and XLA "
              "modes; --quick and --jit do not apply to it.")
    if args.cases in ("all", "rescale"):
        small = {"depth": 8, "width": 32, "batch": 64, "repeats": 1} if args.quick else {}
        result["rescale"] = bench_rescale(**small, seed=args.seed)
        print(format_rescale(result["rescale"]))
    if result["profile"]:
        print("\nParts of the circulant forward:\n" + format_profile(result["profile"]))
    verdict = check_targets(result["rows"])
    if verdict:
        print(verdict)
    for line in check_issue13(result["rows"]):
        print(line)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(result, f, indent=1)
        print(f"Wrote {args.output}")
    return 0
