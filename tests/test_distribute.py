"""tf.distribute.MirroredStrategy (two logical CPUs) gives the single-device results.

The logical devices must exist before any TF op, so tests/distribute/dist_check.py runs in a
fresh process and reports, for every procedure of the package, the largest relative weight
difference between the mirrored and the single-device run (same seeds, same skewed batch).
The batch's two halves (one per replica) have very different scales, so an initialization that
used one replica's statistics instead of the global batch's would be far off: the script also
measures that gap, to show the comparison can fail.
"""

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "distribute", "dist_check.py")

INIT_TOL = 1e-5  # relative: the same float32 arithmetic on the whole batch
FIT_TOL = 1e-4  # relative: all-reduced gradients sum in another order


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    work = tmp_path_factory.mktemp("distribute")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow",
               CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, SCRIPT, str(work)], capture_output=True, text=True,
                          timeout=600, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


def _check(dist, key, tol, error_key):
    for where in ("single", "mirrored"):
        assert error_key not in dist["errors"][where], dist["errors"][where][error_key]
    assert dist["diff"][key] <= tol, dist["diff"][key]


def test_two_replicas(dist):
    assert dist["replicas"] == 2
    assert dist["errors"]["single"] == {}


def test_lsuv_uses_global_batch(dist):
    _check(dist, "lsuv", INIT_TOL, "lsuv")
    # One replica's share alone gives a clearly different answer: the check is sensitive.
    assert dist["lsuv_on_one_replica_share"] > 100 * INIT_TOL


def test_data_dependent_init_uses_global_batch(dist):
    _check(dist, "data_dependent_init_outside", INIT_TOL, "ddi_outside")
    assert dist["ddi_on_one_replica_share"] > 100 * INIT_TOL


def test_data_dependent_init_inside_scope(dist):
    """data_driven.py says calling inside ``strategy.scope()`` is fine."""
    _check(dist, "data_dependent_init", INIT_TOL, "ddi")


def test_rescale_outside_scope(dist):
    _check(dist, "rescale_outside", INIT_TOL, "rescale_outside")


def test_rescale_inside_scope(dist):
    # The compiled loss is reduced by the strategy inside its scope: float32 sums in another
    # order move the measured growth by ~4e-5 relative, the scales by ~2e-5.
    _check(dist, "rescale", FIT_TOL, "rescale")


def test_arpit_init(dist):
    _check(dist, "arpit_init", INIT_TOL, "arpit")


def test_fit_with_normed_scaling_callback(dist):
    assert dist["normed_scaling_applied"] == [True, True]
    _check(dist, "fit_normed_scaling", FIT_TOL, "fit_scaling_save")


def test_fit_with_lsuv_callback(dist):
    _check(dist, "fit_lsuv_init", FIT_TOL, "fit_lsuv_init")


def test_save_and_reload_in_scope(dist):
    assert dist["reload_diff"] == 0.0
    assert dist["reload_output_diff"] <= 1e-6
