"""A `.keras` file saved on JAX loads on TensorFlow with the same outputs (1e-5), and the
reverse: one subprocess per backend (tests/backends/keras_file.py), the zoo model of every
layer and initializer, rescaled and trained one epoch before saving."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "backends", "keras_file.py")

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("jax") is None or importlib.util.find_spec("tensorflow") is None,
    reason="needs both jax and tensorflow")

TOL = 1e-5


def _run(backend, mode, work):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2",
               CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, SCRIPT, mode, str(work)], capture_output=True,
                          text=True, timeout=240, env=env, cwd=HERE)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"{backend} {mode}:\n{proc.stderr[-3000:]}"
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["backend"] == backend
    return result


@pytest.mark.parametrize("saver,loader", [("jax", "tensorflow"), ("tensorflow", "jax")])
def test_keras_file_crosses_backends(tmp_path, saver, loader):
    saved = _run(saver, "save", tmp_path)
    assert saved["is_rescaled"]
    loaded = _run(loader, "load", tmp_path)
    n_loaded, n_saved = loaded["n_weights"]
    assert n_loaded == n_saved > 0
    assert loaded["weights_max_abs"] == 0.0  # stored values, read back bit for bit
    assert loaded["output_scale"] > 0.1  # the comparison is not between two zeros
    assert loaded["output_max_abs"] <= TOL, loaded
    assert loaded["layers"] == ["CirculantConv2D", "CirculantDense", "PeriodicConv2D",
                                "WeightNormalization"]
    assert loaded["is_rescaled"] and not loaded["rescale_again_applied"]
    assert np.isfinite(loaded["loss_after_step"])
