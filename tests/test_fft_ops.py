"""keras_normed.ops.fft against independent numpy/scipy references."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from circulant_reference import conv_reference, dense_reference
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_normed.layers import CirculantConv2D
from keras_normed.ops import fft


def periodic_reference(x, w):
    kh, kw = w.shape[:2]
    ch, cw = (kh - 1) // 2, (kw - 1) // 2
    xp = np.pad(x, [(0, 0), (ch, kh - 1 - ch), (cw, kw - 1 - cw), (0, 0)], mode="wrap")
    return conv_reference(xp, w)


@pytest.mark.parametrize("n_in,units,b", [
    (8, 12, 4),      # even, divisible
    (9, 6, 3),       # odd
    (14, 21, 7),     # prime
    (10, 13, 5),     # padding on the output
    (11, 7, 4),      # padding on both sides
    (5, 16, 16),     # block larger than the input
])
@pytest.mark.parametrize("dtype,tol", [("float32", 1e-5), ("float64", 1e-10)])
def test_circulant_matmul_matches_dense(n_in, units, b, dtype, tol):
    rng = np.random.default_rng(n_in * 100 + b)
    k = rng.standard_normal((fft.num_blocks(n_in, b), fft.num_blocks(units, b), b)).astype(dtype)
    x = rng.standard_normal((2, 3, n_in)).astype(dtype)
    w = dense_reference(k, n_in, units)
    y = np.asarray(fft.circulant_matmul(x, k, units))
    assert y.shape == (2, 3, units) and y.dtype == dtype
    ref = x @ w
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol * np.abs(ref).max())
    np.testing.assert_array_equal(np.asarray(fft.circulant_to_dense(k, n_in, units)), w)


def test_circulant_convention_is_circular_convolution():
    # One block: y = C(c) x with C(c)[i, j] = c[(i - j) mod b], i.e. y = c (*) x circularly.
    c = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    x = np.array([1.0, 0.0, 0.0, 0.0, 0.0])
    y = np.asarray(fft.circulant_matmul(x[None], c[None, None]))[0]
    np.testing.assert_allclose(y, c, atol=1e-12)  # first column of C(c)
    x = np.array([0.0, 1.0, 0.0, 0.0, 0.0])
    y = np.asarray(fft.circulant_matmul(x[None], c[None, None]))[0]
    np.testing.assert_allclose(y, np.roll(c, 1), atol=1e-12)


def test_circulant_matmul_rejects_wrong_width():
    with pytest.raises(ValueError, match="input blocks"):
        fft.circulant_matmul(np.ones((2, 9)), np.ones((2, 1, 4)))


def _finite_difference(f, z, eps=1e-6):
    g = np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        zp, zm = z.copy(), z.copy()
        zp[idx] += eps
        zm[idx] -= eps
        g[idx] = (f(zp) - f(zm)) / (2 * eps)
    return g


@pytest.mark.tensorflow
def test_gradients_match_finite_differences():
    rng = np.random.default_rng(3)
    n_in, units, b = 7, 5, 3
    k0 = rng.standard_normal((3, 2, b))
    x0 = rng.standard_normal((2, n_in))
    r = rng.standard_normal((2, units))

    def loss(x, k):
        return float(np.sum(np.asarray(fft.circulant_matmul(x, k, units)) * r))

    x, k = tf.Variable(x0), tf.Variable(k0)
    with tf.GradientTape() as tape:
        out = tf.reduce_sum(fft.circulant_matmul(x, k, units) * r)
    gx, gk = tape.gradient(out, [x, k])
    np.testing.assert_allclose(gx.numpy(), _finite_difference(lambda z: loss(z, k0), x0),
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(gk.numpy(), _finite_difference(lambda z: loss(x0, z), k0),
                               rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("c_in,filters,b,ks,stride,padding,dil", [
    (4, 6, 2, (3, 3), 1, "valid", 1),
    (5, 7, 3, (3, 2), 2, "same", 1),
    (6, 4, 4, (3, 3), 1, "same", 2),
    (7, 7, 7, (2, 2), 1, "valid", 1),
    (4, 4, 2, (3, 3), 2, "same", 2),   # strides and dilation: "auto" takes the patches form
    (36, 36, 2, (3, 3), 1, "same", 1),  # Q = 18 > 8: "auto" materialises the kernel
])
def test_circulant_conv2d_matches_numpy(c_in, filters, b, ks, stride, padding, dil):
    rng = np.random.default_rng(c_in + 10 * b)
    k = rng.standard_normal(ks + (fft.num_blocks(c_in, b), fft.num_blocks(filters, b), b))
    x = rng.standard_normal((2, 9, 8, c_in))
    w = np.stack([np.stack([dense_reference(k[u, v], c_in, filters) for v in range(ks[1])])
                  for u in range(ks[0])])
    ref = conv_reference(x, w, stride, padding, dil)
    both = stride > 1 and dil > 1  # keras.ops.conv / depthwise_conv reject the combination
    methods = ["auto", "patches"] + ([] if both else ["depthwise", "dense"])
    impls = [lambda *a, m=m: fft.circulant_conv2d(*a, method=m) for m in methods]
    for impl in impls + ([] if both else [fft.circulant_conv2d_dense]):
        y = np.asarray(impl(x, k, filters, stride, padding, dil))
        np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-10)


def test_circulant_conv2d_method_errors():
    x, k = np.ones((1, 5, 5, 4)), np.ones((3, 3, 2, 2, 2))
    with pytest.raises(ValueError, match="method"):
        fft.circulant_conv2d(x, k, method="fast")
    for method in ("depthwise", "dense"):
        with pytest.raises(ValueError, match="strides and dilation"):
            fft.circulant_conv2d(x, k, strides=2, dilation_rate=2, method=method)


@pytest.mark.parametrize("strides", [(2, 1), (1, 3)])
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_circulant_conv2d_unequal_strides(strides, padding):
    """"auto" never takes the depthwise form (TensorFlow's takes equal strides only: it raised
    from inside TF); asked for, it is refused naming `strides`."""
    rng = np.random.default_rng(7)
    k = rng.standard_normal((3, 3, 2, 2, 4))
    x = rng.standard_normal((2, 8, 9, 8))
    w = np.stack([np.stack([dense_reference(k[u, v], 8, 8) for v in range(3)]) for u in range(3)])
    ref = conv_reference(x, w, strides, padding)
    assert fft.circulant_conv2d_method(2, strides) != "depthwise"
    for method in ("auto", "patches", "dense", "freq"):
        y = np.asarray(fft.circulant_conv2d(x, k, 8, strides, padding, method=method))
        np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-10)
    layer = CirculantConv2D(8, 3, block_size=4, strides=strides, padding=padding,
                            dtype="float64")  # as the trial met it
    y = keras.ops.convert_to_numpy(layer(x))
    lk = keras.ops.convert_to_numpy(layer.kernel)
    lw = np.stack([np.stack([dense_reference(lk[u, v], 8, 8) for v in range(3)])
                   for u in range(3)])
    np.testing.assert_allclose(y, conv_reference(x, lw, strides, padding), rtol=1e-10,
                               atol=1e-10)
    with pytest.raises(ValueError, match=r"method='depthwise'.*`strides`.*\(\d, \d\)"):
        fft.circulant_conv2d(x, k, 8, strides, padding, method="depthwise")


@pytest.mark.parametrize("h,w,kh,kw,c_in,c_out", [
    (6, 7, 3, 3, 2, 3),   # odd kernel
    (6, 7, 4, 2, 1, 1),   # even kernel
    (8, 8, 5, 6, 2, 2),
    (5, 4, 7, 6, 1, 2),   # kernel larger than the input: wraps around
])
@pytest.mark.parametrize("method", ["fft", "direct"])
def test_periodic_conv2d_matches_wrap_pad(h, w, kh, kw, c_in, c_out, method):
    rng = np.random.default_rng(h * w + kh)
    x = rng.standard_normal((2, h, w, c_in))
    k = rng.standard_normal((kh, kw, c_in, c_out))
    y = np.asarray(fft.periodic_conv2d(x, k, method))
    np.testing.assert_allclose(y, periodic_reference(x, k), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("method", ["fft", "direct"])
def test_periodic_55_on_56(method):
    rng = np.random.default_rng(55)
    x = rng.standard_normal((1, 56, 56, 1)).astype("float32")
    k = rng.standard_normal((55, 55, 1, 1)).astype("float32")
    ref = periodic_reference(x.astype("float64"), k.astype("float64"))
    y = np.asarray(fft.periodic_conv2d(x, k, method))
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_periodic_method_rule():
    direct, cost = fft.periodic_conv2d_cost(56, 56, 55, 55, 1, 1)
    assert cost < direct
    assert fft.periodic_conv2d_method(56, 56, 55, 55, 1, 1) == "fft"  # the paper's kernel
    assert fft.periodic_conv2d_method(56, 56, 9, 9, 1, 1) == "fft"
    assert fft.periodic_conv2d_method(28, 28, 3, 3, 32, 32) == "direct"
    assert fft.periodic_conv2d_method(14, 14, 3, 3, 1, 1) == "direct"
    with pytest.raises(ValueError, match="method"):
        fft.periodic_conv2d(np.ones((1, 4, 4, 1)), np.ones((3, 3, 1, 1)), "fast")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_inputs(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 12)).astype("float32")
    k = rng.standard_normal((3, 2, 4)).astype("float32") * 0.3
    y = fft.circulant_matmul(tf.cast(x, dtype), tf.cast(k, dtype), 8)
    assert y.dtype == dtype
    ref = x @ dense_reference(k, 12, 8)
    np.testing.assert_allclose(tf.cast(y, "float32").numpy(), ref, atol=0.05 * np.abs(ref).max())


@settings(max_examples=20, deadline=None)
@given(n_in=st.integers(1, 24), units=st.integers(1, 24), b=st.integers(1, 24),
       batch=st.integers(1, 3), seed=st.integers(0, 1000))
def test_property_random_shapes(n_in, units, b, batch, seed):
    b = min(b, max(n_in, units))
    rng = np.random.default_rng(seed)
    k = rng.standard_normal((fft.num_blocks(n_in, b), fft.num_blocks(units, b), b))
    x = rng.standard_normal((batch, n_in))
    y = np.asarray(fft.circulant_matmul(x, k, units))
    np.testing.assert_allclose(y, x @ dense_reference(k, n_in, units), rtol=1e-10, atol=1e-10)


@pytest.mark.tensorflow
def test_circulant_conv2d_method_follows_xla():
    """Depthwise form without XLA (fast there), the materialised kernel under XLA (whose CPU
    grouped-conv gradient is ~400x slower than Conv2D's); the forms agree under XLA."""
    import tensorflow as tf

    seen = {}

    def probe(tag):
        def fn(x):
            seen[tag] = fft.circulant_conv2d_method(2)
            return x
        return fn

    tf.function(probe("xla"), jit_compile=True)(tf.ones(1))
    tf.function(probe("graph"))(tf.ones(1))
    probe("eager")(tf.ones(1))
    assert seen == {"xla": "dense", "graph": "depthwise", "eager": "depthwise"}
    assert fft.circulant_conv2d_method(16) == "dense"  # Q > 8: one Conv2D beats the patches
    assert fft.circulant_conv2d_method(16, dense_entries=2 ** 25) == "patches"  # too big
    assert fft.circulant_conv2d_method(1, strides=2, dilation_rate=2) == "patches"
    # One output block, stride 1: the frequency-domain shift form (ops/freq.py), any mode.
    assert fft.circulant_conv2d_method(1) == "freq"
    assert fft.circulant_conv2d_method(1, dilation_rate=2) == "freq"
    assert fft.circulant_conv2d_method(1, strides=2) != "freq"

    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((2, 6, 6, 8)), tf.float32)
    k = tf.constant(rng.standard_normal((3, 3, 1, 1, 8)), tf.float32)
    ref = fft.circulant_conv2d_dense(x, k, padding="same")
    for method in ("auto", "patches", "dense"):
        compiled = tf.function(lambda x, m=method: fft.circulant_conv2d(x, k, padding="same",
                                                                          method=m),
                               jit_compile=True)
        np.testing.assert_allclose(compiled(x), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n_in, units", [(9, 12), (8, 13), (4, 12), (20, 20), (0, 12), (8, 0)])
def test_circulant_to_dense_refuses_sizes_its_kernel_does_not_hold(n_in, units):
    """A (2, 3, 4) kernel holds 5..8 rows and at most 12 columns: other sizes returned an
    (8, 12) matrix, or a cropped one, silently."""
    k = np.random.default_rng(0).normal(size=(2, 3, 4)).astype("float32")
    with pytest.raises(ValueError, match="`n_in`|`units`"):
        fft.circulant_to_dense(k, n_in, units)
    with pytest.raises(ValueError, match="rank >= 3"):
        fft.circulant_to_dense(k[0], 4, 12)
    np.testing.assert_array_equal(np.asarray(fft.circulant_to_dense(k, 5, 7)),
                                  dense_reference(k, 5, 7))


@pytest.mark.parametrize("method", ["auto", "dense", "freq", "patches", "depthwise"])
def test_every_circulant_conv_form_refuses_an_input_smaller_than_its_valid_kernel(method):
    """TensorFlow's convolution returned uninitialised memory (values like 1e33) for a 2x2
    image under a 3x3 'valid' kernel ("dense", "freq"), "patches" an empty image."""
    x = np.ones((1, 2, 2, 4), "float32")
    k = np.ones((3, 3, 2, 2, 2), "float32")
    with pytest.raises(ValueError, match=r"\(2, 2\) is smaller than the \(3, 3\) kernel"):
        fft.circulant_conv2d(x, k, 4, method=method)
    with pytest.raises(ValueError, match="smaller than the"):
        fft.circulant_conv2d(np.ones((1, 4, 4, 4), "float32"), k, 4, dilation_rate=2,
                             method=method)
    with pytest.raises(ValueError, match="empty height, width or channel"):
        fft.circulant_conv2d(np.ones((1, 0, 6, 4), "float32"), k, 4, padding="same",
                             method=method)


@pytest.mark.tensorflow
def test_the_conv_op_refuses_a_small_input_of_a_size_known_only_when_the_graph_runs():
    k = tf.constant(np.ones((3, 3, 2, 2, 2), "float32"))
    fn = tf.function(lambda x: fft.circulant_conv2d(x, k, 4, method="dense"),
                     input_signature=[tf.TensorSpec((None, None, None, 4))])
    assert tuple(fn(tf.ones((1, 5, 5, 4))).shape) == (1, 3, 3, 4)
    with pytest.raises(tf.errors.InvalidArgumentError, match="smaller than the"):
        fn(tf.ones((1, 2, 2, 4)))


def test_empty_images_and_channels_are_refused_by_layers_and_ops():
    """Zero-size inputs gave a message about 'valid' padding under 'same', raw reshape and
    MKL errors, and numpy divide-by-zero warnings with a raw gather error."""
    from keras_normed.layers import CirculantDense, PeriodicConv2D

    with pytest.raises(ValueError, match=r"empty image, height x width \(0, 6\)"):
        CirculantConv2D(4, 3, 2, padding="same").compute_output_shape((2, 0, 6, 4))
    with pytest.raises(ValueError, match="empty image"):
        CirculantConv2D(4, 3, 2, padding="same")(np.ones((2, 0, 6, 4), "float32"))
    with pytest.raises(ValueError, match="no features"):
        CirculantDense(4, 2)(np.ones((2, 0), "float32"))
    with pytest.raises(ValueError, match="defined and nonzero"):
        CirculantConv2D(4, 3, 2)(np.ones((2, 6, 6, 0), "float32"))
    for method in ("direct", "fft"):
        with pytest.raises(ValueError, match="empty height, width or channel"):
            fft.periodic_conv2d(np.ones((2, 0, 6, 4), "float32"),
                                np.ones((3, 3, 4, 2), "float32"), method=method)
    with pytest.raises(ValueError, match="empty image"):
        PeriodicConv2D(2, 3).compute_output_shape((2, 6, 0, 4))
