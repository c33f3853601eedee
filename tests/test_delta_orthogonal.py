"""Delta-orthogonal kernels (Xiao et al. 2018), the tanh critical point, and Keras' Orthogonal
(Saxe et al. 2014) that they generalise."""

import math

import keras
import numpy as np
import pytest
from scipy import integrate

import keras_normed  # noqa: F401  (registers the "delta_orthogonal" alias)
from keras_normed.initializers import (
    DeltaOrthogonal,
    critical_sigma_w,
    tanh_critical_point,
)

CONVS = {1: keras.layers.Conv1D, 2: keras.layers.Conv2D, 3: keras.layers.Conv3D}


def _periodic_conv(x, kernel_size, filters, init):
    """A 'valid' convolution of the input wrap-padded by the kernel's reach: periodic padding."""
    spatial = x.ndim - 2
    pads = [(0, 0)] + [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel_size] + [(0, 0)]
    layer = CONVS[spatial](filters, kernel_size, padding="valid", use_bias=False,
                           kernel_initializer=init)
    return np.asarray(layer(np.pad(x, pads, mode="wrap"))), layer


@pytest.mark.parametrize("kernel_size, spatial_shape", [
    ((5,), (11,)), ((3, 3), (6, 7)), ((4, 4), (6, 6)), ((3, 3, 3), (4, 5, 3))])
@pytest.mark.parametrize("c_in, c_out", [(4, 4), (3, 7)])
def test_periodic_conv_preserves_norm(kernel_size, spatial_shape, c_in, c_out):
    x = np.random.default_rng(0).standard_normal((3, *spatial_shape, c_in)).astype(np.float32)
    y, layer = _periodic_conv(x, kernel_size, c_out, DeltaOrthogonal(seed=1))
    assert y.shape == (3, *spatial_shape, c_out)
    norms_in = np.linalg.norm(x.reshape(3, -1), axis=1)
    norms_out = np.linalg.norm(y.reshape(3, -1), axis=1)
    np.testing.assert_allclose(norms_out, norms_in, rtol=1e-5)
    # With gain g every norm is scaled by g.
    y2, _ = _periodic_conv(x, kernel_size, c_out, DeltaOrthogonal(gain=1.5, seed=1))
    np.testing.assert_allclose(np.linalg.norm(y2.reshape(3, -1), axis=1), 1.5 * norms_in,
                               rtol=1e-5)


def test_same_padding_also_preserves_norm():
    # Only the centre tap is nonzero, so zero padding never cuts into the kernel.
    x = np.random.default_rng(1).standard_normal((2, 7, 7, 8)).astype(np.float32)
    layer = keras.layers.Conv2D(8, 3, padding="same", use_bias=False,
                                kernel_initializer=DeltaOrthogonal(seed=0))
    y = np.asarray(layer(x))
    np.testing.assert_allclose(np.linalg.norm(y), np.linalg.norm(x), rtol=1e-5)


def test_structure_against_keras_orthogonal():
    shape = (3, 5, 6, 10)
    w = np.asarray(DeltaOrthogonal(gain=2.0, seed=7)(shape))
    centre = w[1, 2]
    # Independent reference: Keras' Orthogonal of the (c_in, c_out) centre matrix.
    ref = np.asarray(keras.initializers.Orthogonal(gain=2.0, seed=7)((6, 10)))
    np.testing.assert_allclose(centre, ref, atol=1e-6)
    np.testing.assert_allclose(centre @ centre.T, 4.0 * np.eye(6), atol=1e-5)  # rows orthonormal
    mask = np.ones(shape[:2], bool)
    mask[1, 2] = False
    assert np.all(w[mask] == 0)


def test_seed_and_config():
    shape = (3, 3, 8, 16)
    a = np.asarray(DeltaOrthogonal(seed=3)(shape))
    np.testing.assert_array_equal(a, np.asarray(DeltaOrthogonal(seed=3)(shape)))
    assert not np.allclose(a, np.asarray(DeltaOrthogonal(seed=4)(shape)))
    unseeded = DeltaOrthogonal()
    np.testing.assert_array_equal(np.asarray(unseeded(shape)), np.asarray(unseeded(shape)))
    init = DeltaOrthogonal(gain=1.3, seed=3)
    assert init.get_config() == {"gain": 1.3, "seed": 3}
    clone = DeltaOrthogonal.from_config(init.get_config())
    np.testing.assert_array_equal(np.asarray(init(shape)), np.asarray(clone(shape)))
    restored = keras.initializers.deserialize(keras.initializers.serialize(init))
    assert isinstance(restored, DeltaOrthogonal) and restored.gain == 1.3
    assert isinstance(keras.initializers.get("delta_orthogonal"), DeltaOrthogonal)


def test_bad_input():
    with pytest.raises(ValueError, match=r"c_out=4.*c_in=8"):
        DeltaOrthogonal(seed=0)((3, 3, 8, 4))
    with pytest.raises(ValueError, match="Orthogonal"):
        DeltaOrthogonal(seed=0)((8, 8))
    with pytest.raises(ValueError, match="gain"):
        DeltaOrthogonal(gain=0.0)
    layer = keras.layers.Conv2D(2, 3, kernel_initializer=DeltaOrthogonal(seed=0))
    with pytest.raises(ValueError, match="filters"):
        layer.build((None, 8, 8, 4))


def _gauss(f, q):
    """E[f(sqrt(q) z)], z ~ N(0,1), by adaptive quadrature (independent of the module's)."""
    g = lambda z: f(math.sqrt(q) * z) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    return integrate.quad(g, -np.inf, np.inf, epsabs=1e-13, epsrel=1e-12)[0]


@pytest.mark.parametrize("sigma_b2", [1e-5, 1e-3, 0.05, 0.3])
def test_tanh_critical_point(sigma_b2):
    cp = tanh_critical_point(sigma_b2)
    assert cp.sigma_b2 == sigma_b2 and cp.q_star > 0
    # q* is a fixed point of the variance map ...
    fixed = cp.sigma_w2 * _gauss(lambda h: math.tanh(h) ** 2, cp.q_star) + sigma_b2
    assert fixed == pytest.approx(cp.q_star, rel=1e-7)
    # ... at which chi = sigma_w^2 E[tanh'(h)^2] = 1 (edge of chaos).
    chi = cp.sigma_w2 * _gauss(lambda h: (1 - math.tanh(h) ** 2) ** 2, cp.q_star)
    assert chi == pytest.approx(1.0, abs=1e-7)


def test_critical_line_limits():
    # The often-quoted point of Schoenholz et al. (2017): (sigma_w^2, sigma_b^2) ~ (1.76, 0.05).
    assert tanh_critical_point(0.05).sigma_w2 == pytest.approx(1.76, abs=0.01)
    # sigma_b -> 0: sigma_w -> 1 (and q* -> 0), monotonically.
    ws = [critical_sigma_w(math.sqrt(b)) for b in (1e-2, 1e-4, 1e-6, 1e-9, 1e-12)]
    assert all(a > b > 1.0 for a, b in zip(ws, ws[1:]))
    assert ws[-1] == pytest.approx(1.0, abs=1e-3)
    assert critical_sigma_w(0.0) == 1.0
    with pytest.raises(ValueError, match="nonlinearity"):
        critical_sigma_w(0.1, nonlinearity="relu")
    for bad, err in ((-0.1, ValueError), (float("nan"), ValueError), ("0.1", TypeError)):
        with pytest.raises(err, match="`sigma_b`"):
            critical_sigma_w(bad)
    with pytest.raises(ValueError, match="sigma_b2"):
        tanh_critical_point(-1.0)
    with pytest.raises(TypeError, match="`sigma_b2`"):
        tanh_critical_point("a")


def test_depthwise_kernels_are_refused_by_name():
    """A depthwise kernel (k, k, channels, multiplier) has no channel mixing: it is refused as
    such, not as too few "filters"."""
    layer = keras.layers.DepthwiseConv2D(3, depthwise_initializer=DeltaOrthogonal(seed=0))
    with pytest.raises(ValueError, match="DepthwiseConv2D.*one filter bank per channel"):
        layer.build((None, 8, 8, 4))


@pytest.mark.parametrize("shape", [(16, 16), (32, 16), (3, 3, 8, 8)])
def test_keras_orthogonal_is_isometry(shape):
    """Saxe et al.: Keras' Orthogonal (gain 1) gives W^T W = I for fan_in >= fan_out, the
    matrix a deep linear net needs for dynamical isometry."""
    w = np.asarray(keras.initializers.Orthogonal(seed=0)(shape)).reshape(-1, shape[-1])
    np.testing.assert_allclose(w.T @ w, np.eye(shape[-1]), atol=1e-5)


def test_deep_linear_orthogonal_net_preserves_norm():
    x = np.random.default_rng(2).standard_normal((4, 32)).astype(np.float32)
    model = keras.Sequential(
        [keras.Input((32,))]
        + [keras.layers.Dense(32, use_bias=False,
                              kernel_initializer=keras.initializers.Orthogonal(seed=i))
           for i in range(50)])
    y = np.asarray(model(x))
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), np.linalg.norm(x, axis=1), rtol=1e-4)


def test_refuses_block_circulant_kernels_it_would_misread():
    from keras_normed.initializers import DeltaOrthogonal
    from keras_normed.layers import CirculantConv2D, CirculantDense, PeriodicConv2D

    x = np.zeros((2, 8, 8, 4), "float32")
    for layer in (CirculantConv2D(8, 3, block_size=4, kernel_initializer=DeltaOrthogonal(seed=0)),
                  CirculantDense(8, 4, kernel_initializer=DeltaOrthogonal(seed=0))):
        with pytest.raises(ValueError, match=f"{type(layer).__name__} .* circulant blocks"):
            layer(x if isinstance(layer, CirculantConv2D) else x.reshape(2, -1)[:, :8])
    # a periodic conv's kernel is a plain one: the delta-orthogonal kernel keeps the norm
    layer = PeriodicConv2D(8, 3, kernel_initializer=DeltaOrthogonal(seed=0), use_bias=False)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 8, 8, 4)).astype("float32")
    y = np.asarray(layer(x))
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-5)
