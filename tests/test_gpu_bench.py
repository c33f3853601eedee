"""examples/gpu_bench.py (the GPU check on JAX) runs to completion with ``--quick`` on CPU, in a
process where TensorFlow cannot be imported (as on the GPU machine, which has none)."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "examples", "gpu_bench.py")

pytestmark = pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                                reason="needs jax (pip install 'jax[cpu]')")


def test_gpu_bench_quick_on_cpu_without_tensorflow(tmp_path):
    block = tmp_path / "block"
    block.mkdir()
    # A `tensorflow` that fails to import, first on the path: the check must not need it.
    (block / "tensorflow.py").write_text("raise ImportError('TensorFlow is not installed')\n")
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.pathsep.join([str(block), ROOT]))
    env.pop("KERAS_BACKEND", None)  # the script sets it
    proc = subprocess.run([sys.executable, SCRIPT, "--quick"], capture_output=True, text=True,
                          timeout=300, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = json.loads((out / "gpu_bench.json").read_text())
    assert result["machine"]["backend"] == "jax"
    assert result["check"]["tensorflow_imported"] is False
    assert result["check"]["device"].startswith("cpu")
    rows = result["rows"]
    assert {r["case"] for r in rows} == {"dense", "conv"}
    assert all(r["jit"] is True and r["fwdbwd_ms"] > 0 for r in rows)
    assert {r["impl"] for r in rows} == {"dense", "circulant", "materialise"}
    table = (out / "gpu_bench.md").read_text()
    assert table.count("\n| ") == len(rows) + 1  # header and one line per row
    assert "fwd+bwd / base" in table


def test_gpu_bench_require_gpu_fails_on_cpu(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path), JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, SCRIPT, "--quick", "--require-gpu"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert proc.returncode == 1 and "not a GPU" in proc.stderr
