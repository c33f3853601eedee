"""PeriodicConv2D against np.pad(mode="wrap") + direct convolution; structure; Keras plumbing."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_normed  # noqa: F401 - registers "normed" and the layers
from keras_normed.layers import PeriodicConv2D


def periodic_reference(x, w):
    kh, kw = w.shape[:2]
    ch, cw = (kh - 1) // 2, (kw - 1) // 2
    xp = np.pad(x, [(0, 0), (ch, kh - 1 - ch), (cw, kw - 1 - cw), (0, 0)], mode="wrap")
    h, wd = x.shape[1:3]
    y = np.zeros(x.shape[:3] + (w.shape[3],))
    for u in range(kh):
        for v in range(kw):
            y += xp[:, u: u + h, v: v + wd] @ w[u, v]
    return y


@pytest.mark.parametrize("method", ["fft", "direct", "auto"])
@pytest.mark.parametrize("ks,c_in,filters", [(3, 2, 3), ((4, 2), 1, 2), ((9, 8), 2, 1)])
def test_matches_wrap_pad_reference(method, ks, c_in, filters):
    layer = PeriodicConv2D(filters, ks, method=method, bias_initializer="ones",
                           activation="relu", dtype="float64")
    x = np.random.default_rng(0).standard_normal((2, 7, 6, c_in))  # kernel 9x8 > input: wraps
    y = np.asarray(layer(x))
    ref = np.maximum(periodic_reference(x, np.asarray(layer.kernel)) + 1.0, 0.0)
    np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-10)
    assert layer.compute_output_shape((None, 7, 6, c_in)) == (None, 7, 6, filters)


def test_paper_kernel_55_on_56():
    layer = PeriodicConv2D(1, 55, use_bias=False)
    x = np.random.default_rng(1).standard_normal((2, 56, 56, 1)).astype("float32")
    y = np.asarray(layer(x))
    assert layer.resolved_method(x.shape) == "fft"
    ref = periodic_reference(x.astype("float64"), np.asarray(layer.kernel, "float64"))
    np.testing.assert_allclose(y, ref, atol=1e-4 * np.abs(ref).max())
    # normed init: He on fan_in = 55 * 55 * 1 (every output sees every kernel entry once)
    k = np.asarray(layer.kernel)
    assert abs(k.std() / np.sqrt(2 / 3025) - 1) < 0.1
    s = layer.normed_structure((None, 56, 56, 1))
    assert (s.fan_in, s.sharing, s.uniform) == (3025, 56 * 56, True)


def test_errors():
    with pytest.raises(ValueError, match="strides"):
        PeriodicConv2D(2, 3, strides=2)
    with pytest.raises(ValueError, match="method"):
        PeriodicConv2D(2, 3, method="fast")
    layer = PeriodicConv2D(2, 3)
    layer(np.ones((1, 5, 5, 3), "float32"))
    with pytest.raises(ValueError):
        layer(np.ones((1, 5, 5, 2), "float32"))  # wrong channel count
    with pytest.raises(ValueError):
        layer(np.ones((5, 5, 3), "float32"))  # wrong rank


@pytest.mark.parametrize("ks,hw", [(3, (4, 5)), ((2, 3), (3, 3)), ((5, 4), (3, 3))])
def test_structure_brute_force(ks, hw):
    c_in, filters = 2, 2
    layer = PeriodicConv2D(filters, ks, use_bias=False, kernel_initializer="random_normal",
                           method="direct", dtype="float64")
    shape = hw + (c_in,)
    layer.build((None,) + shape)
    n = int(np.prod(shape))
    basis = np.eye(n).reshape((n,) + shape)
    apply = tf.function(layer.__call__) if keras.backend.backend() == "tensorflow" else layer
    saved = np.asarray(layer.kernel)
    uses = []
    for idx in np.ndindex(saved.shape):
        e = np.zeros(saved.shape)
        e[idx] = 1.0
        layer.kernel.assign(e)
        uses.append(int((np.abs(np.asarray(apply(basis))) > 1e-12).sum()))
    layer.kernel.assign(np.random.default_rng(0).standard_normal(saved.shape))
    t = np.asarray(apply(basis)).reshape(n, -1).T
    nz = np.abs(t) > 1e-12
    row, col = nz.sum(axis=1), nz.sum(axis=0)
    s = layer.normed_structure((None,) + shape)
    assert (s.fan_in, s.fan_out) == (row.max(), col.max())
    assert s.sharing == pytest.approx(nz.sum() / saved.size)
    # docs/structure.md: equal rows and every parameter filling the same number of entries
    # (a kernel larger than the input aliases: uses stay H*W each, above nnz / n_params).
    assert s.uniform == bool(row.min() == row.max() and min(uses) == max(uses))
    assert s.shape == t.shape
    assert set(uses) == {hw[0] * hw[1]}  # each kernel entry fills exactly H*W entries


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("method", ["fft", "direct"])
def test_mixed_precision(policy, method):
    x = np.random.default_rng(2).standard_normal((2, 8, 8, 2)).astype("float32")
    ref_layer = PeriodicConv2D(3, 5, method=method)
    layer = PeriodicConv2D(3, 5, method=method, dtype=policy)
    ref = np.asarray(ref_layer(x))
    layer.build(x.shape)
    layer.set_weights(ref_layer.get_weights())
    y = layer(x)
    assert y.dtype == policy.split("_")[1] and layer.kernel.dtype == "float32"
    np.testing.assert_allclose(np.asarray(tf.cast(y, "float32")), ref,
                               atol=0.05 * np.abs(ref).max())


@pytest.mark.tensorflow
def test_jit_fit_dynamic_batch_config_and_save(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((12, 8, 8, 1)).astype("float32")
    y = rng.standard_normal((12, 64)).astype("float32")
    inputs = keras.Input((8, 8, 1))
    h = PeriodicConv2D(1, 7, activation="relu", name="periodic")(inputs)
    model = keras.Model(inputs, keras.layers.Flatten()(h))
    model.compile("sgd", "mse", jit_compile=True)
    before = model.get_weights()[0].copy()
    assert np.isfinite(model.fit(x, y, batch_size=6, verbose=0).history["loss"][0])
    assert not np.allclose(before, model.get_weights()[0])
    serve = tf.function(model.__call__, jit_compile=True,
                        input_signature=[tf.TensorSpec((None, 8, 8, 1), tf.float32)])
    expected = np.asarray(model(x))
    np.testing.assert_allclose(serve(x[:5]).numpy(), expected[:5], atol=1e-5)
    layer = model.get_layer("periodic")
    config = layer.get_config()
    assert PeriodicConv2D.from_config(config).get_config() == config
    path = tmp_path / "p.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(x)), expected, atol=1e-6)
