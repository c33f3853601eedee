"""engine.equalize against numpy's minimum-norm least squares on the constraints' null space."""

import numpy as np
import pytest

from keras_normed.engine import equalize
from keras_normed.engine.solve import null_space


@pytest.mark.parametrize("rows", [
    np.zeros((0, 5)),                                   # no constraint: equal growth exactly
    np.ones((1, 5)),                                    # a chain: product of scales 1
    np.array([[1, 1, 0, 0, 0], [0, 0, 1, 1, 0.]]),      # two residual branches
    np.array([[1, 4, 1, 0, 0], [1, 4, 1, 0, 0.]]),      # a tied layer, a repeated row
    np.eye(5),                                          # nothing may move
])
@pytest.mark.parametrize("exponent", [1.0, 2.0])
def test_equalize_matches_reference(rows, exponent):
    rng = np.random.default_rng(0)
    log_r = rng.standard_normal(5)
    a, allowed = equalize(log_r, rows, exponent)
    basis = null_space(rows, 5)
    if rows.size:
        np.testing.assert_allclose(rows @ a, 0, atol=1e-9)
    if basis.shape[1]:
        design = np.hstack([exponent * basis, np.ones((5, 1))])
        sol = np.linalg.lstsq(design, log_r - log_r.mean(), rcond=None)[0]
        np.testing.assert_allclose(a, basis @ sol[:-1], atol=1e-5)
    else:
        np.testing.assert_array_equal(a, 0)
    after = log_r - exponent * a
    assert allowed == pytest.approx(np.exp(np.ptp(after)), rel=1e-6)
    if rows.shape[0] <= 1:  # a free level or one product constraint: equal growth reachable
        assert allowed == pytest.approx(1.0, abs=1e-6)
