"""keras_normed.ops.freq (frequency-domain forward and hand-written backward) against the
numpy dense construction, float64 to 1e-10: forward, input and kernel gradients; eagerly,
in a plain tf.function, under XLA (tf.function(jit_compile=True); jax.jit on JAX)."""

import keras
import numpy as np
import pytest
from circulant_reference import conv_reference, dense_reference

from keras_normed.ops import freq
from keras_normed.ops.circulant import circulant_conv2d, circulant_to_dense

BACKEND = keras.backend.backend()
MODES = ["eager", "graph", "xla"] if BACKEND == "tensorflow" else ["eager", "xla"]


def _value_and_grads(fn, x, k, up, mode):
    """``fn(x, k)`` and the gradients of ``sum(fn(x, k) * up)`` as numpy."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        def run(x, k):
            with tf.GradientTape() as tape:
                tape.watch([x, k])
                y = fn(x, k)
                loss = tf.reduce_sum(y * up)
            return (y,) + tuple(tape.gradient(loss, [x, k]))

        if mode != "eager":
            run = tf.function(run, jit_compile=mode == "xla", autograph=False)
        out = run(tf.constant(x), tf.constant(k))
    else:
        import jax

        def loss(x, k):
            y = fn(x, k)
            return keras.ops.sum(y * up), y

        run = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)
        if mode == "xla":
            run = jax.jit(run)
        (_, y), (dx, dk) = run(x, k)
        out = (y, dx, dk)
    return [np.asarray(keras.ops.convert_to_numpy(t)) for t in out]


def _dense_grads_numpy(x, k, up, n_in, units):
    """``y = x @ W`` and the exact gradients of ``sum(y * up)``: ``dx = up W^T`` and the kernel
    gradient summed over the entries of ``W`` each parameter fills."""
    p, q, b = k.shape
    w = dense_reference(k, n_in, units)
    dw = np.zeros((p * b, q * b))
    dw[:n_in, :units] = x.T @ up
    dk = np.zeros_like(k)
    j, i = np.meshgrid(np.arange(b), np.arange(b), indexing="ij")
    for pp in range(p):
        for qq in range(q):
            blk = dw[pp * b:(pp + 1) * b, qq * b:(qq + 1) * b]
            np.add.at(dk[pp, qq], (i - j) % b, blk)
    return x @ w, up @ w.T, dk


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n_in,units,b", [(8, 12, 4), (9, 6, 3), (11, 7, 4), (5, 16, 16),
                                          (32, 32, 8)])
def test_matmul_freq_matches_dense(n_in, units, b, mode):
    rng = np.random.default_rng(n_in * 10 + b)
    p, q = -(-n_in // b), -(-units // b)
    x = rng.standard_normal((3, n_in))
    k = rng.standard_normal((p, q, b))
    up = rng.standard_normal((3, units))
    y, dx, dk = _value_and_grads(lambda x, k: freq.circulant_matmul_freq(x, k, units), x, k,
                                 up, mode)
    y_ref, dx_ref, dk_ref = _dense_grads_numpy(x, k, up, n_in, units)
    for got, want in ((y, y_ref), (dx, dx_ref), (dk, dk_ref)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def _conv_reference_grads(x, k, up, filters, padding, dilation):
    """Autodiff of the materialised op (a gather of the kernel, then an ordinary conv)."""
    def dense(x, k):
        w = circulant_to_dense(k, x.shape[-1], filters)
        return keras.ops.conv(x, w, strides=1, padding=padding, dilation_rate=dilation)

    return _value_and_grads(dense, x, k, up, "eager")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("c_in,filters,b,ks,padding,dil", [
    (8, 8, 8, 3, "same", 1),     # one block each way (the benchmark's case)
    (8, 8, 8, 3, "valid", 2),
    (7, 10, 4, (3, 2), "same", 1),   # P, Q > 1, padded channels, uneven kernel
    (12, 3, 4, 3, "valid", 1),   # Q = 1 < P
    (5, 12, 6, 2, "same", 2),    # P = 1 < Q, even kernel
])
def test_conv2d_freq_matches_dense(c_in, filters, b, ks, padding, dil, mode):
    rng = np.random.default_rng(c_in * 10 + b)
    kh, kw = (ks, ks) if isinstance(ks, int) else ks
    p, q = -(-c_in // b), -(-filters // b)
    x = rng.standard_normal((2, 7, 6, c_in))
    k = rng.standard_normal((kh, kw, p, q, b))
    w = np.stack([np.stack([dense_reference(k[u, v], c_in, filters) for v in range(kw)])
                  for u in range(kh)])
    y_np = conv_reference(x, w, 1, padding, dil)
    up = rng.standard_normal(y_np.shape)
    y, dx, dk = _value_and_grads(
        lambda x, k: freq.circulant_conv2d_freq(x, k, filters, padding, dil), x, k, up, mode)
    np.testing.assert_allclose(y, y_np, rtol=1e-10, atol=1e-10)
    _, dx_ref, dk_ref = _conv_reference_grads(x, k, up, filters, padding, dil)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dk, dk_ref, rtol=1e-10, atol=1e-10)


def test_conv2d_freq_channels_first_and_auto_route():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 5, 8))
    k = rng.standard_normal((3, 3, 1, 1, 8))
    want = circulant_conv2d(x, k, 8, padding="same", method="dense")
    got = circulant_conv2d(np.transpose(x, (0, 3, 1, 2)), k, 8, padding="same",
                           method="freq", data_format="channels_first")
    np.testing.assert_allclose(np.transpose(keras.ops.convert_to_numpy(got), (0, 2, 3, 1)),
                               keras.ops.convert_to_numpy(want), rtol=1e-10, atol=1e-10)
    # method="freq" with strides > 1: the materialised kernel, same result as "dense"
    s2 = circulant_conv2d(x, k, 8, strides=2, padding="same", method="freq")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(s2), conv_reference(
        x, np.stack([np.stack([dense_reference(k[u, v], 8, 8) for v in range(3)])
                     for u in range(3)]), 2, "same", 1), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("mode", MODES)
def test_conv2d_freq_channels_first_dilated_same_grads(mode):
    """Both tap-sum forms (depthwise convolution in eager and plain graphs, shifted views under
    XLA / on JAX) with channels_first, dilation 2, an even kernel and 'same' padding."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 7, 6, 8))
    k = rng.standard_normal((2, 3, 1, 1, 8))
    up = rng.standard_normal((2, 7, 6, 8))

    def fn(x, k):
        y = freq.circulant_conv2d_freq(keras.ops.transpose(x, (0, 3, 1, 2)), k, 8, "same", 2,
                                       "channels_first")
        return keras.ops.transpose(y, (0, 2, 3, 1))

    got = _value_and_grads(fn, x, k, up, mode)
    for g, want in zip(got, _conv_reference_grads(x, k, up, 8, "same", 2)):
        np.testing.assert_allclose(g, want, rtol=1e-10, atol=1e-10)


@pytest.mark.tensorflow
@pytest.mark.parametrize("jit", [False, True])
def test_conv2d_freq_form_by_xla(jit):
    """A plain tf.function runs the taps as a depthwise convolution (and its native kernel
    gradient); XLA the shifted views."""
    import tensorflow as tf

    k = tf.constant(np.ones((3, 3, 1, 1, 8)))

    def run(x):
        with tf.GradientTape() as tape:
            tape.watch(k)
            y = freq.circulant_conv2d_freq(x, k, padding="same")
        return tape.gradient(y, k)

    graph = tf.function(run, jit_compile=jit).get_concrete_function(
        tf.TensorSpec((2, 5, 5, 8), tf.float64)).graph.as_graph_def()
    ops_ = {n.op for n in graph.node} | {n.op for f in graph.library.function
                                         for n in f.node_def}
    assert ("DepthwiseConv2dNativeBackpropFilter" in ops_) is not jit


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_computes_in_float32(dtype):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 16)).astype("float32")
    k = rng.standard_normal((2, 2, 8)).astype("float32")
    y = freq.circulant_matmul_freq(keras.ops.cast(x, dtype), k)
    assert keras.backend.standardize_dtype(y.dtype) == dtype
    want = x.astype(dtype).astype("float32") @ dense_reference(k, 16, 16)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.ops.cast(y, "float32")), want,
                               rtol=0.05, atol=0.05)
    xc = rng.standard_normal((1, 4, 4, 8)).astype("float32")
    kc = rng.standard_normal((3, 3, 1, 1, 8)).astype("float32")
    yc = freq.circulant_conv2d_freq(keras.ops.cast(xc, dtype), kc, padding="same")
    assert keras.backend.standardize_dtype(yc.dtype) == dtype


@pytest.mark.tensorflow
def test_unknown_batch_and_spatial_sizes():
    import tensorflow as tf

    rng = np.random.default_rng(3)
    k = tf.constant(rng.standard_normal((3, 3, 1, 1, 8)))
    kd = tf.constant(rng.standard_normal((2, 3, 4)))

    @tf.function(input_signature=[tf.TensorSpec((None, None, None, 8), tf.float64),
                                  tf.TensorSpec((None, 8), tf.float64)])
    def run(x, xd):
        with tf.GradientTape() as tape:
            tape.watch([x, xd, k])
            y = freq.circulant_conv2d_freq(x, k, padding="same")
            yd = freq.circulant_matmul_freq(xd, kd, 10)
            loss = tf.reduce_sum(y * up) + tf.reduce_sum(yd ** 2)
        return y, yd, tape.gradient(loss, [x, xd, k])

    x = rng.standard_normal((2, 6, 5, 8))
    xd = rng.standard_normal((3, 8))
    up = tf.constant(rng.standard_normal((2, 6, 5, 8)))
    y, yd, (dx, dxd, dk) = run(tf.constant(x), tf.constant(xd))
    w = np.stack([np.stack([dense_reference(k.numpy()[u, v], 8, 8) for v in range(3)])
                  for u in range(3)])
    np.testing.assert_allclose(y.numpy(), conv_reference(x, w, 1, "same", 1), atol=1e-10)
    np.testing.assert_allclose(yd.numpy(), xd @ dense_reference(kd.numpy(), 8, 10),
                               atol=1e-10)
    _, dx_ref, dk_ref = _conv_reference_grads(x, k.numpy(), up.numpy(), 8, "same", 1)
    np.testing.assert_allclose(dx.numpy(), dx_ref, atol=1e-10)
    np.testing.assert_allclose(dk.numpy(), dk_ref, atol=1e-10)
    assert dxd.shape == xd.shape
