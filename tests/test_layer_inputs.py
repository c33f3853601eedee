"""No silent wrong answers from the layers' inputs and arguments.

- integer (uint8/int32) inputs compute in the compute dtype, like float inputs of the same
  values, for every form (``method``) of the ops and layers; complex inputs are refused;
- ``data_format`` of CirculantConv2D / PeriodicConv2D: channels_first equals the transposed
  channels_last result with the same weights; a later ``keras.config.set_image_data_format``
  changes nothing (the ops take the layout explicitly); get_config and ``.keras`` round trips;
- unknown height and width (``keras.Input((None, None, C))``): predict on two sizes, a
  SavedModel export, and the op forms under a ``tf.function`` with ``None`` spatial sizes;
- WeightNormalization: its dtype policy reaches the wrapped layer; ``epsilon=0`` with a zero
  kernel stays finite; bad arguments raise errors naming the argument and the value.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from circulant_reference import conv_reference, dense_reference

import keras_normed  # noqa: F401 - registers the layers
from keras_normed.layers import (
    CirculantConv2D,
    CirculantDense,
    PeriodicConv2D,
    WeightNormalization,
)
from keras_normed.ops import fft

RNG = np.random.default_rng(0)
# Small integer pixel values: exact in float32, large enough that a truncating cast shows.
X_INT = RNG.integers(0, 256, size=(2, 6, 5, 4))
X_DENSE_INT = RNG.integers(-50, 50, size=(3, 10))


@pytest.fixture(autouse=True)
def channels_last_global():
    """Every test starts and ends with the default global layout, whatever it changes."""
    keras.config.set_image_data_format("channels_last")
    try:
        yield
    finally:
        keras.config.set_image_data_format("channels_last")


def close(a, b, rtol=1e-5):
    a, b = np.asarray(a, "float64"), np.asarray(b, "float64")
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())


# Every layer with every method it accepts (CirculantConv2D picks its form itself: one output
# block gives the depthwise form eagerly, 18 filters in blocks of 2 (Q = 9 > 8) the dense one).
CONV_LAYERS = {
    "circulant-depthwise": lambda **k: CirculantConv2D(4, 3, 4, padding="same", **k),
    "circulant-dense": lambda **k: CirculantConv2D(18, 3, 2, strides=2, padding="same", **k),
    "periodic-auto": lambda **k: PeriodicConv2D(3, 3, method="auto", **k),
    "periodic-fft": lambda **k: PeriodicConv2D(3, (4, 3), method="fft", **k),
    "periodic-direct": lambda **k: PeriodicConv2D(3, 3, method="direct", **k),
}


# --- integer inputs ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["uint8", "int32"])
@pytest.mark.parametrize("name", sorted(CONV_LAYERS))
def test_integer_images_equal_float_images(name, dtype):
    layer = CONV_LAYERS[name](bias_initializer="ones")
    ref = layer(X_INT.astype("float32"))
    y = layer(X_INT.astype(dtype))
    assert y.dtype == "float32"
    close(y, ref)


@pytest.mark.parametrize("dtype", ["uint8", "int32"])
def test_integer_features_dense(dtype):
    layer = CirculantDense(7, 4, bias_initializer="ones")
    x = X_DENSE_INT if dtype == "int32" else np.abs(X_DENSE_INT)
    ref = layer(x.astype("float32"))
    y = layer(x.astype(dtype))
    assert y.dtype == "float32"
    close(y, ref)


def test_integer_symbolic_input_predicts_float():
    inputs = keras.Input((6, 5, 4), dtype="int32")
    h = CirculantConv2D(4, 3, 2, padding="same", name="cc")(inputs)
    h = PeriodicConv2D(2, 3, method="direct", name="pd")(h)
    out = CirculantDense(5, 4, name="cd")(keras.layers.Flatten()(h))
    model = keras.Model(inputs, out)
    assert out.dtype == "float32"
    close(model.predict(X_INT.astype("int32"), verbose=0), model(X_INT.astype("float32")))


@pytest.mark.parametrize("method", ["auto", "depthwise", "patches", "dense"])
def test_integer_inputs_ops_circulant_conv2d(method):
    k = RNG.standard_normal((3, 3, 2, 2, 2)).astype("float32")
    y = fft.circulant_conv2d(X_INT.astype("int32"), k, 4, padding="same", method=method)
    assert y.dtype == "float32"
    close(y, fft.circulant_conv2d(X_INT.astype("float32"), k, 4, padding="same",
                                  method=method))
    y = fft.circulant_conv2d_dense(X_INT.astype("uint8"), k, 4)
    close(y, fft.circulant_conv2d_dense(X_INT.astype("float32"), k, 4))


@pytest.mark.parametrize("method", ["auto", "fft", "direct"])
def test_integer_inputs_ops_periodic_and_matmul(method):
    k = RNG.standard_normal((3, 3, 4, 2)).astype("float32")
    y = fft.periodic_conv2d(X_INT.astype("uint8"), k, method)
    assert y.dtype == "float32"
    close(y, fft.periodic_conv2d(X_INT.astype("float32"), k, method))
    k = RNG.standard_normal((3, 2, 4)).astype("float64")
    y = fft.circulant_matmul(X_DENSE_INT.astype("int32"), k, 7)
    assert y.dtype == "float64"  # the kernel's float dtype, not int32
    close(y, X_DENSE_INT @ dense_reference(k, 10, 7), rtol=1e-9)


# --- complex inputs ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["circulant-dense", "periodic-fft", "dense-layer"])
def test_complex_inputs_refused(name):
    if name == "dense-layer":
        make, shape = (lambda: CirculantDense(4, 2)), (2, 6)
    else:
        make, shape = CONV_LAYERS[name], (2, 6, 5, 4)
    x = (np.ones(shape) + 1j * np.ones(shape)).astype("complex64")
    with pytest.raises(TypeError, match=r"real inputs.*`inputs`.*complex64.*keras.ops.real"):
        make()(x)
    with pytest.raises(TypeError, match=r"`inputs`.*complex64"):
        make()(keras.Input(shape[1:], dtype="complex64"))  # symbolic: refused at model build


def test_complex_inputs_refused_by_ops():
    x = np.ones((2, 6), "complex64")
    with pytest.raises(TypeError, match=r"`x`.*complex64"):
        fft.circulant_matmul(x, np.ones((3, 1, 2), "float32"))
    with pytest.raises(TypeError, match=r"`x`.*complex128"):
        fft.periodic_conv2d(np.ones((1, 4, 4, 1), "complex128"), np.ones((3, 3, 1, 1)))


# --- data_format -------------------------------------------------------------------------------

def to_first(x):
    return np.transpose(np.asarray(x), (0, 3, 1, 2))


@pytest.mark.parametrize("name", sorted(CONV_LAYERS))
def test_channels_first_equals_transposed_channels_last(name):
    x = RNG.standard_normal((2, 6, 5, 4)).astype("float32")
    last = CONV_LAYERS[name](bias_initializer="random_normal", activation="relu")
    ref = last(x)
    first = CONV_LAYERS[name](bias_initializer="random_normal", activation="relu",
                              data_format="channels_first")
    first.build((None, 4, 6, 5))
    first.set_weights(last.get_weights())  # same weight shapes in both layouts
    y = first(to_first(x))
    assert tuple(y.shape) == tuple(to_first(ref).shape)
    assert first.compute_output_shape((None, 4, 6, 5)) == (None,) + tuple(y.shape[1:])
    close(y, to_first(ref))
    s_first, s_last = first.normed_structure((None, 4, 6, 5)), last.normed_structure(x.shape)
    assert s_first == s_last


def _traced(fn):
    """``fn`` compiled by the backend (traced at its first call)."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(fn)
    return tf.function(fn)


@pytest.mark.parametrize("name", ["circulant-depthwise", "circulant-dense", "periodic-fft",
                                  "periodic-direct"])
def test_global_data_format_change_after_construction_changes_nothing(name):
    x = RNG.standard_normal((2, 6, 5, 4)).astype("float32")
    layer = CONV_LAYERS[name]()
    assert layer.data_format == "channels_last"
    ref = np.asarray(layer(x))
    traced = _traced(layer.__call__)
    keras.config.set_image_data_format("channels_first")
    close(layer(x), ref, rtol=1e-6)  # eager, built layer
    close(traced(x), ref, rtol=1e-6)  # retraced under the new global setting
    # None resolves the global setting once, at construction.
    assert CONV_LAYERS[name]().data_format == "channels_first"


@pytest.mark.parametrize("method", ["depthwise", "patches", "dense"])
def test_ops_ignore_global_data_format(method):
    x = RNG.standard_normal((2, 6, 5, 4))
    k = RNG.standard_normal((3, 3, 2, 2, 2))
    w = np.stack([np.stack([dense_reference(k[u, v], 4, 4) for v in range(3)])
                  for u in range(3)])
    ref = conv_reference(x, w, 1, "same")
    keras.config.set_image_data_format("channels_first")
    close(fft.circulant_conv2d(x, k, 4, padding="same", method=method), ref, rtol=1e-9)
    y = fft.circulant_conv2d(to_first(x), k, 4, padding="same", method=method,
                             data_format="channels_first")
    close(y, to_first(ref), rtol=1e-9)
    kp = RNG.standard_normal((3, 3, 4, 2))
    ref = fft.periodic_conv2d(x, kp, "direct", data_format="channels_last")
    for m in ("fft", "direct"):
        close(fft.periodic_conv2d(x, kp, m), ref, rtol=1e-9)


@pytest.mark.parametrize("cls", [CirculantConv2D, PeriodicConv2D])
@pytest.mark.parametrize("bad", ["NHWC", "channels-first", 3, ""])
def test_bad_data_format(cls, bad):
    args = (4, 3, 2) if cls is CirculantConv2D else (4, 3)
    with pytest.raises(ValueError, match=r"`data_format`.*'channels_last'.*got"):
        cls(*args, data_format=bad)
    with pytest.raises(ValueError, match=r"`data_format`"):
        fft.periodic_conv2d(np.ones((1, 4, 4, 1)), np.ones((3, 3, 1, 1)), data_format=bad)


def test_data_format_config_and_keras_round_trip(tmp_path):
    keras.config.set_image_data_format("channels_first")
    for layer in (CirculantConv2D(6, 3, 3, padding="same"), PeriodicConv2D(2, 3)):
        config = layer.get_config()
        assert config["data_format"] == "channels_first"  # resolved, not None
        keras.config.set_image_data_format("channels_last")
        clone = type(layer).from_config(config)
        assert clone.data_format == "channels_first" and clone.get_config() == config
        keras.config.set_image_data_format("channels_first")
    keras.config.set_image_data_format("channels_last")
    inputs = keras.Input((4, 6, 5))
    h = CirculantConv2D(6, 3, 3, padding="same", data_format="channels_first")(inputs)
    h = PeriodicConv2D(2, 3, data_format="channels_first", bias_initializer="ones")(h)
    model = keras.Model(inputs, h)
    x = RNG.standard_normal((2, 4, 6, 5)).astype("float32")
    expected = np.asarray(model(x))
    assert expected.shape == (2, 2, 6, 5)
    model.save(tmp_path / "cf.keras")
    loaded = keras.models.load_model(tmp_path / "cf.keras")
    assert [la.data_format for la in loaded.layers[1:]] == ["channels_first"] * 2
    np.testing.assert_allclose(np.asarray(loaded(x)), expected, rtol=1e-6, atol=1e-6)


# --- unknown spatial sizes ---------------------------------------------------------------------

def dynamic_model():
    inputs = keras.Input((None, None, 4), name="pixels")
    h = CONV_LAYERS["circulant-depthwise"](activation="relu")(inputs)
    h = CONV_LAYERS["circulant-dense"]()(h)
    h = CONV_LAYERS["periodic-fft"]()(h)
    h = CONV_LAYERS["periodic-direct"]()(h)
    return keras.Model(inputs, h)


@pytest.mark.tensorflow
def test_unknown_sizes_predict_and_export(tmp_path):
    model = dynamic_model()
    xs = [RNG.standard_normal((2,) + hw + (4,)).astype("float32") for hw in ((6, 5), (9, 8))]
    preds = [model.predict(x, verbose=0) for x in xs]
    for x, p in zip(xs, preds):
        assert p.shape == (2, -(-x.shape[1] // 2), -(-x.shape[2] // 2), 3)
        close(p, model(x))
    model.export(str(tmp_path / "m"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "m"))
    for x, p in zip(xs, preds):
        close(served.serve(tf.constant(x)), p)


def _dynamic(fn, channels, first=False):
    shape = (None, channels, None, None) if first else (None, None, None, channels)
    return tf.function(fn, input_signature=[tf.TensorSpec(shape, tf.float64)])


@pytest.mark.tensorflow
@pytest.mark.parametrize("first", [False, True])
def test_unknown_sizes_ops(first):
    k = RNG.standard_normal((3, 2, 2, 2, 2))
    w = np.stack([np.stack([dense_reference(k[u, v], 4, 3) for v in range(2)])
                  for u in range(3)])
    layout = "channels_first" if first else "channels_last"
    fmt = to_first if first else np.asarray
    # "same" with strides: the padding depends on the run-time size (odd and even below).
    for method, stride, pad, dil in (("auto", 1, "valid", 1), ("depthwise", 1, "same", 2),
                                     ("depthwise", 2, "same", 1), ("dense", 2, "same", 1)):
        fn = _dynamic(lambda x, m=method, s=stride, p=pad, d=dil: fft.circulant_conv2d(
            x, k, 3, s, p, d, method=m, data_format=layout), 4, first)
        for hw in ((7, 6), (4, 9)):
            x = RNG.standard_normal((2,) + hw + (4,))
            close(fn(fmt(x)), fmt(conv_reference(x, w, stride, pad, dil)), rtol=1e-9)
    kp = RNG.standard_normal((5, 4, 4, 2))  # larger than the 3 x 3 input below: wraps
    for method in ("auto", "fft", "direct"):
        fn = _dynamic(lambda x, m=method: fft.periodic_conv2d(x, kp, m, layout), 4, first)
        for hw in ((7, 6), (3, 3)):
            x = RNG.standard_normal((1,) + hw + (4,))
            ref = fft.periodic_conv2d(x, kp, "direct")  # static sizes: checked elsewhere
            close(fn(fmt(x)), fmt(ref), rtol=1e-9)


@pytest.mark.tensorflow
def test_unknown_sizes_patches_form_refused_clearly():
    k = np.ones((3, 3, 2, 2, 2))
    fn = _dynamic(lambda x: fft.circulant_conv2d(x, k, method="patches"), 4)
    with pytest.raises(ValueError, match=r"method='patches' needs a known height.*'auto'"):
        fn.get_concrete_function()
    # strides and dilation both > 1: only the patches form exists, so "auto" cannot pick.
    fn = _dynamic(lambda x: fft.circulant_conv2d(x, k, strides=2, dilation_rate=2), 4)
    with pytest.raises(ValueError, match=r"needs a known height.*static spatial size"):
        fn.get_concrete_function()
    assert fft.circulant_conv2d_method(9, dense_entries=2 ** 25, static_size=False) == "dense"
    assert fft.periodic_conv2d_method(None, None, 3, 3, 64, 64) == "direct"
    assert fft.periodic_conv2d_method(None, 8, 5, 5, 1, 1) == "fft"


# --- WeightNormalization: dtype policy ---------------------------------------------------------

WRAPPED = {
    "dense": (lambda **k: keras.layers.Dense(3, bias_initializer="ones", **k), (4, 5)),
    "conv": (lambda **k: keras.layers.Conv2D(3, 2, bias_initializer="ones", **k), (2, 5, 5, 2)),
}


@pytest.mark.parametrize("policy", ["float16", "bfloat16", "mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("inner", sorted(WRAPPED))
def test_weight_norm_policy_reaches_wrapped_layer(policy, inner):
    make, shape = WRAPPED[inner]
    x = RNG.standard_normal(shape).astype("float32")
    plain = make(dtype=policy)  # what Keras's own layer does with this policy
    plain_y = plain(x)
    wn = WeightNormalization(make(), dtype=policy)  # the policy on the wrapper only
    assert wn.layer.dtype_policy.name == policy
    symbolic = wn(keras.Input(shape[1:]))
    y = wn(x)
    assert symbolic.dtype == y.dtype == plain_y.dtype == plain.compute_dtype
    want = {keras.backend.standardize_dtype(v.dtype) for v in plain.weights}
    assert {keras.backend.standardize_dtype(v.dtype) for v in wn.weights} == want
    ref = WeightNormalization(make())
    ref(x)
    ref.set_weights([keras.ops.convert_to_numpy(keras.ops.cast(v, "float32"))
                     for v in wn.weights])
    expected = np.asarray(ref(x))
    got = np.asarray(keras.ops.cast(y, "float32"))
    np.testing.assert_allclose(got, expected, atol=0.03 * np.abs(expected).max() + 1e-3)


def test_weight_norm_without_dtype_takes_the_wrapped_layers_policy():
    wn = WeightNormalization(keras.layers.Dense(2, dtype="float64"))
    assert wn.dtype_policy.name == "float64"
    assert wn(keras.Input((3,))).dtype == "float64"
    y = wn(np.ones((2, 3)))
    assert y.dtype == "float64" and wn.g.dtype == "float64"


def test_weight_norm_built_layer_with_other_variable_dtype_refused():
    dense = keras.layers.Dense(2)
    dense.build((None, 3))
    with pytest.raises(ValueError, match=r"`dtype`='float16'.*already built.*float32"):
        WeightNormalization(dense, dtype="float16")
    WeightNormalization(dense, dtype="mixed_float16")  # float32 variables: fine


def test_weight_norm_float16_small_kernel_keeps_its_norm():
    """Entries of 1e-4 square to 1e-8, below float16's smallest subnormal: the norm is taken
    in float32, so the direction survives."""
    wn = WeightNormalization(keras.layers.Dense(2, use_bias=False, dtype="float16"),
                             g_initializer="ones", dtype="float16")
    x = np.ones((1, 4), "float32")
    wn(x)
    wn.layer.kernel.assign(np.full((4, 2), 1e-4, "float16"))
    close(keras.ops.cast(wn(x), "float32"), np.full((1, 2), 2.0), rtol=1e-2)


# --- WeightNormalization: epsilon and arguments ------------------------------------------------

@pytest.mark.tensorflow
@pytest.mark.parametrize("inner", sorted(WRAPPED))
def test_weight_norm_zero_kernel_with_epsilon_zero_is_finite(inner):
    make, shape = WRAPPED[inner]
    x = RNG.standard_normal(shape).astype("float32")
    wn = WeightNormalization(make(kernel_initializer="zeros"), g_initializer="ones",
                             epsilon=0)
    with tf.GradientTape() as tape:
        y = wn(x)
        loss = tf.reduce_sum(y)
    grads = tape.gradient(loss, wn.trainable_weights)
    np.testing.assert_array_equal(np.asarray(y), np.ones(y.shape))  # zero kernel + bias 1
    assert all(np.all(np.isfinite(np.asarray(g))) for g in grads)
    assert np.all(np.isfinite(np.asarray(wn.normalized_kernel())))


def test_weight_norm_integer_and_complex_inputs():
    wn = WeightNormalization(keras.layers.Dense(3))
    close(wn(X_DENSE_INT.astype("int32")), wn(X_DENSE_INT.astype("float32")))
    with pytest.raises(TypeError, match=r"`inputs`.*complex64"):
        wn(np.ones((2, 10), "complex64"))
    with pytest.raises(TypeError, match=r"`inputs`.*complex128"):
        WeightNormalization(keras.layers.Dense(3))(keras.Input((10,), dtype="complex128"))


BAD_WN_ARGS = [
    (dict(epsilon="a"), TypeError, r"`epsilon`.*got 'a' \(type str\).*Pass"),
    (dict(epsilon=None), TypeError, r"`epsilon`.*got None"),
    (dict(epsilon=True), TypeError, r"`epsilon`.*got True"),
    (dict(epsilon=-1.0), ValueError, r"`epsilon`.*>= 0.*got -1.0.*Pass"),
    (dict(epsilon=float("nan")), ValueError, r"`epsilon`.*got nan"),
    (dict(epsilon=float("inf")), ValueError, r"`epsilon`.*got inf"),
    (dict(g_initializer="nope"), ValueError, r"`g_initializer`.*'norm'.*got 'nope'"),
    (dict(layer="dense"), TypeError, r"`layer`.*Dense or Conv.*got 'dense' \(type str\)"),
    (dict(layer=None), TypeError, r"`layer`.*got None"),
    (dict(layer=keras.layers.Conv2DTranspose(2, 3)), TypeError, r"`layer`.*Conv2DTranspose"),
    (dict(layer=keras.layers.Conv2D(2, 3, data_format="channels_first")), ValueError,
     r"channels_last.*`layer`.*channels_first"),
]


@pytest.mark.parametrize("kwargs,exc,match", BAD_WN_ARGS,
                         ids=[f"case{i}" for i in range(len(BAD_WN_ARGS))])
def test_weight_norm_bad_arguments(kwargs, exc, match):
    kwargs = {"layer": keras.layers.Dense(2), **kwargs}
    with pytest.raises(exc, match=match):
        WeightNormalization(**kwargs)


@pytest.mark.parametrize("make, width", [
    (lambda fmt: PeriodicConv2D(8, 3, data_format=fmt), 8),
    (lambda fmt: PeriodicConv2D(8, 5, method="fft", data_format=fmt), 8),
    (lambda fmt: CirculantConv2D(8, 3, block_size=4, padding="same", data_format=fmt), 8),
    (lambda fmt: CirculantConv2D(8, 3, block_size=4, data_format=fmt), 10),  # valid: 8 wide
], ids=["periodic-direct", "periodic-fft", "circulant-same", "circulant-valid"])
def test_channels_first_bias_is_added_on_channels_where_width_equals_filters(make, width):
    """TensorFlow's ops.add read the (C, 1, 1) bias as an NHWC one when the output's width
    equals `filters`, and added it along the width (a trial: 2.4-7.0 off, eager and predict)."""
    x = RNG.normal(size=(2, 4, 8, width)).astype("float32")
    first, last = make("channels_first"), make("channels_last")
    first.build(x.shape)
    last.build((2, 8, width, 4))
    bias = np.arange(8, dtype="float32")
    first.set_weights([first.get_weights()[0], bias])
    last.set_weights([first.get_weights()[0], bias])
    expected = keras.ops.convert_to_numpy(last(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    assert expected.shape[-1] == 8
    model = keras.Sequential([keras.Input(x.shape[1:]), first])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(first(x)), expected, atol=1e-5)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-5)
