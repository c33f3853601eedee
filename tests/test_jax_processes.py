"""keras.distribution.DataParallel over 2 JAX processes on 127.0.0.1 (one CPU device each).

Each process passes its own probe batch (its shard, as ``fit`` takes data under data
parallelism), of very different scale, so the growth each measures differs; ``rescale`` takes
process 0's scales on both (``engine.agree``: one broadcast), and the seedless "normed"
kernels are the same on both because ``keras.distribution.initialize`` agrees one global
seed. Both processes end with identical weights after the rescale and after 2 ``fit`` steps.
"""

import importlib.util
import os
import socket

import numpy as np
import pytest
from workers import run_workers

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "distribute", "jax_processes.py")

pytestmark = pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                                reason="needs jax (pip install 'jax[cpu]')")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_jax_processes_agree_on_rescale_and_fit(tmp_path):
    port = str(_free_port())
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
               KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)  # one CPU device per process
    results = run_workers(SCRIPT, [[str(i), port] for i in range(2)], env, tmp_path)
    p0, p1 = results
    assert p0["applied"] and p1["applied"]
    # The test can fail: each process measured other growth on its own shard.
    assert not np.allclose(p0["local_growth"], p1["local_growth"], rtol=0.1)
    assert p0["scales"] == p1["scales"]
    assert not np.allclose(p0["scales"], 1.0)
    for key in ("initial", "after_rescale", "after_steps"):
        for a, b in zip(p0[key], p1[key]):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=key)
    for key in ("after_rescale", "after_steps"):  # each stage changed the weights
        before = {"after_rescale": "initial", "after_steps": "after_rescale"}[key]
        assert not all(np.array_equal(np.asarray(a), np.asarray(b))
                       for a, b in zip(p0[before], p0[key]))
