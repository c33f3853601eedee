"""GPU check on JAX: ``keras-normed bench`` (circulant vs Dense / Conv2D, forward and forward +
backward, compiled by ``jax.jit``) on a machine that has JAX but no TensorFlow.

Runs the package from this copy of the repository (``PYTHONPATH``), with ``KERAS_BACKEND=jax``
set before Keras loads, through the same entry point as ``python -m keras_normed.cli bench``.
Writes to ``$OUT`` (default ``results/``):

- ``gpu_bench.json``: the bench's JSON (rows, machine, settings) plus ``"check"``: the device
  JAX ran on, whether TensorFlow was imported (it must not be), the wall time;
- ``gpu_bench.md``: a markdown table of the same rows, with the machine line.

Exit status 0 when the bench ran and TensorFlow stayed unimported, 1 otherwise. The default
sizes take about a minute of compiling and timing on one GPU (well under 5 minutes); ``--quick``
runs tiny sizes in seconds, on CPU too (the tests run it). On the GPU machine, from the
repository root (wheels of keras and its missing dependencies in ``.whl/``)::

    python3 -m pip install -q --no-index --no-deps --no-compile --target .site .whl/*.whl \
        && export PYTHONPATH=$PWD/.site:$PWD && python3 examples/gpu_bench.py

Usage: ``python3 examples/gpu_bench.py [--quick] [--out DIR] [--require-gpu]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ["KERAS_BACKEND"] = "jax"  # before anything imports Keras
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Full run: the target case (n = 4096, block 256, batch 256) and the README's sizes,
# compiled only (XLA vs XLA).
FULL = ["--sizes", "1024,4096", "--blocks", "16,64,256,1024,n", "--batch", "256",
        "--conv-shape", "14,14,256", "--conv-blocks", "16,64,256", "--conv-batch", "32",
        "--repeats", "20", "--warmup", "3"]
QUICK = ["--quick"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds, CPU too)")
    parser.add_argument("--out", default=os.environ.get("OUT") or "results",
                        help="output folder (default: $OUT, else results/)")
    parser.add_argument("--require-gpu", action="store_true",
                        help="fail unless JAX's default device is a GPU")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    import jax

    from keras_normed import bench, cli

    device = jax.devices()[0]
    if args.require_gpu and device.platform != "gpu":
        print(f"gpu_bench: JAX's default device is {device.platform!r}, not a GPU "
              f"({jax.devices()}).", file=sys.stderr)
        return 1
    os.makedirs(args.out, exist_ok=True)
    json_path = os.path.join(args.out, "gpu_bench.json")
    md_path = os.path.join(args.out, "gpu_bench.md")
    code = cli.main(["bench", "--cases", "dense", "--jit", "on", "--output", json_path]
                    + (QUICK if args.quick else FULL))
    conv = os.path.join(args.out, "gpu_bench_conv.json")
    code = code or cli.main(["bench", "--cases", "conv", "--jit", "on", "--output", conv]
                            + (QUICK if args.quick else FULL))
    if code:
        return code
    with open(json_path) as f:
        result = json.load(f)
    with open(conv) as f:
        result["rows"] += json.load(f)["rows"]
    os.remove(conv)
    tf_imported = "tensorflow" in sys.modules
    result["check"] = {
        "device": f"{device.platform}: {getattr(device, 'device_kind', '')}",
        "devices": len(jax.devices()), "jax": jax.__version__,
        "tensorflow_imported": tf_imported, "quick": args.quick,
        "wall_s": round(time.perf_counter() - start, 1)}
    with open(json_path, "w") as f:
        json.dump(result, f, indent=1)
    m = result["machine"]
    lines = [f"Device: {result['check']['device']} ({result['check']['devices']} device(s)); "
             f"JAX {jax.__version__}, Keras {m['keras']}, Python {m['python']}; "
             f"median of {result['settings']['repeats']} rounds after "
             f"{result['settings']['warmup']} warm-up; jax.jit (XLA) throughout; "
             "base = Dense / Conv2D.", "",
             bench.format_table(result["rows"], markdown=True), ""]
    verdict = bench.check_targets(result["rows"])
    if verdict:
        lines += [verdict, ""]
    with open(md_path, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))
    print(f"Wrote {json_path} and {md_path} in {result['check']['wall_s']} s.")
    if tf_imported:
        print("gpu_bench: TensorFlow was imported on the JAX backend.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
