"""MultiWorkerMirroredStrategy, 2 worker processes on 127.0.0.1, seedless "normed" kernels.

Each worker's unseeded ``Normed`` draws its own random seed, while TensorFlow broadcasts worker
0's initial values to every worker: a freshness check that regenerated the draw locally would
refuse on worker 1 only, and the workers would diverge (or a collective abort). ``rescale``
takes replica 0's decision and scales on every worker (one all-reduce): both end with identical
weights, and 2 steps of a custom training loop keep them identical. (``model.fit`` under this
strategy is broken upstream in Keras 3: keras-team/keras#20585.)
"""

import os
import socket

import numpy as np
from workers import run_workers

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "distribute", "multi_worker.py")


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_two_workers_agree_on_rescale_and_training(tmp_path):
    ports = [str(p) for p in _free_ports(2)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    results = run_workers(SCRIPT, [[str(i), *ports] for i in range(2)], env, tmp_path)
    w0, w1 = results
    assert w0["applied"] and w1["applied"]
    # The test can fail: worker 1's own seedless draw is not what its variables hold.
    assert not w0["own_draw_differs"] and w1["own_draw_differs"]
    assert w0["scales"] == w1["scales"]
    for key in ("after_rescale", "after_steps"):
        for a, b in zip(w0[key], w1[key]):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=key)
    assert not all(np.array_equal(np.asarray(a), np.asarray(b))
                   for a, b in zip(w0["after_rescale"], w0["after_steps"]))
