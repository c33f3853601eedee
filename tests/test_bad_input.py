"""Bad input battery: every bad input raises a specific exception whose message names the argument
(and says what to do), and leaves every weight of the model unchanged.

Also: float16 / bfloat16 policies for every layer, a very large CirculantDense (the normed
initializer must not materialise the n x n matrix), and a hypothesis property test of the
CirculantDense *layer* (argument checks + agreement with a numpy block-circulant matrix).
The op-level property test is tests/test_fft_ops.py::test_property_random_shapes.
"""

import functools
import math
import resource
import tracemalloc

import keras
import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

import keras_normed
from keras_normed import callbacks, initializers
from keras_normed.layers import (
    CirculantConv2D,
    CirculantDense,
    PeriodicConv2D,
    WeightNormalization,
)

# --- helpers ---------------------------------------------------------------------------------


def snapshot(model):
    return [np.array(keras.ops.convert_to_numpy(v)) for v in model.weights]


def assert_unchanged(model, before):
    after = snapshot(model)
    assert len(after) == len(before)
    for b, a, v in zip(before, after, model.weights):
        np.testing.assert_array_equal(a, b, err_msg=f"{v.path} changed")


def small_model(seed=0, seeded=True):
    """Every layer of the package in a small functional model with Normed kernels."""
    def init(i):
        return initializers.Normed(seed=seed + i if seeded else None)

    inp = keras.Input((6, 6, 2))
    x = PeriodicConv2D(4, 3, activation="relu", kernel_initializer=init(0), name="p")(inp)
    x = CirculantConv2D(4, 3, block_size=2, padding="same", activation="relu",
                        kernel_initializer=init(1), name="cc")(x)
    x = keras.layers.Flatten()(x)
    x = CirculantDense(16, block_size=8, activation="relu", kernel_initializer=init(2),
                       name="cd")(x)
    x = WeightNormalization(keras.layers.Dense(8, activation="relu",
                                               kernel_initializer=init(3)), name="wn")(x)
    out = keras.layers.Dense(3, kernel_initializer=init(4), name="out")(x)
    return keras.Model(inp, out)


def batch(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6, 6, 2)).astype("float32"), rng.integers(0, 3, n)


@pytest.fixture()
def model():
    """A fresh model, for tests that change it on purpose."""
    return small_model()


@pytest.fixture(scope="module")
def shared_model():
    """One model for the cases that must leave it unchanged (each compares its own snapshot)."""
    return small_model()


# --- block sizes -----------------------------------------------------------------------------

BLOCKS = [
    (0, ValueError, r"`block_size`.*positive"),
    (-4, ValueError, r"`block_size`.*positive"),
    (2.5, TypeError, r"`block_size`.*int"),
    ("4", TypeError, r"`block_size`.*int"),
    (True, TypeError, r"`block_size`.*int"),
]


@pytest.mark.parametrize("block_size,exc,match", BLOCKS)
def test_block_size_rejected_at_construction(block_size, exc, match):
    with pytest.raises(exc, match=match):
        CirculantDense(8, block_size=block_size)
    with pytest.raises(exc, match=match):
        CirculantConv2D(8, 3, block_size=block_size)


def test_block_size_larger_than_dimension(shared_model):
    before = snapshot(shared_model)
    with pytest.raises(ValueError, match=r"`block_size`=64.*use a `block_size` <= 16"):
        CirculantDense(16, block_size=64)(np.zeros((2, 12), "float32"))
    with pytest.raises(ValueError, match=r"`block_size`"):
        CirculantConv2D(4, 3, block_size=16)(np.zeros((1, 5, 5, 2), "float32"))
    assert_unchanged(shared_model, before)


@pytest.mark.parametrize("name,value", [("units", 0), ("units", -1), ("filters", 0)])
def test_sizes_rejected(name, value):
    with pytest.raises(ValueError, match=f"`{name}`"):
        if name == "units":
            CirculantDense(value, block_size=2)
        else:
            CirculantConv2D(value, 3, block_size=2)
    if name == "filters":
        with pytest.raises(ValueError, match="`filters`"):
            PeriodicConv2D(value, 3)


# --- initializer arguments -------------------------------------------------------------------

INIT_CASES = [
    (lambda: initializers.Normed(mode="fan_sideways"), ValueError, "`mode`"),
    (lambda: initializers.Normed(distribution="cauchy"), ValueError, "`distribution`"),
    (lambda: initializers.Normed("relu6"), ValueError, "`nonlinearity`.*gain="),
    (lambda: initializers.Normed(gain=-1.0), ValueError, "`gain`.*positive"),
    (lambda: initializers.Normed(gain=float("nan")), ValueError, "`gain`"),
    (lambda: initializers.Normed(gain=float("inf")), ValueError, "`gain`"),
    (lambda: initializers.Normed(scale=0.0), ValueError, "`scale`"),
    (lambda: initializers.Normed(seed=1.5), TypeError, "`seed`"),
    (lambda: initializers.DeltaOrthogonal(gain=-2.0), ValueError, "`gain`"),
    (lambda: initializers.DeltaOrthogonal(gain=float("nan")), ValueError, "`gain`"),
    (lambda: initializers.RandomWalk("softplus"), ValueError, "`nonlinearity`.*gain="),
    (lambda: initializers.RandomWalk(gain=-1.0), ValueError, "`gain`"),
    (lambda: initializers.RandomWalk(gain=float("nan")), ValueError, "`gain`"),
    (lambda: keras.initializers.get("normd"), ValueError, "normd"),
    (lambda: CirculantDense(4, 2, kernel_initializer="normd"), ValueError, "normd"),
    (lambda: PeriodicConv2D(4, 3, kernel_initializer="delta_orth"), ValueError, "delta_orth"),
    (lambda: WeightNormalization(keras.layers.LSTM(3)), TypeError, "`layer`"),
    (lambda: WeightNormalization(keras.layers.Dense(3), epsilon=-1.0), ValueError,
     "`epsilon`"),
]


@pytest.mark.parametrize("make,exc,match", INIT_CASES,
                         ids=[f"case{i}" for i in range(len(INIT_CASES))])
def test_initializer_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_delta_orthogonal_wrong_kernel_shape():
    with pytest.raises(ValueError, match="Dense kernels use"):
        initializers.DeltaOrthogonal(seed=0)((8, 8))
    with pytest.raises(ValueError, match="filters"):
        keras.layers.Conv2D(2, 3, kernel_initializer=initializers.DeltaOrthogonal(seed=0))(
            np.zeros((1, 5, 5, 4), "float32"))


# --- wrong input rank / channels -------------------------------------------------------------

def test_wrong_input_rank_and_channels(shared_model):
    x, _ = batch()
    before = snapshot(shared_model)
    with pytest.raises(ValueError, match="expected shape|incompatible"):
        shared_model(x[..., :1])  # one channel instead of two
    with pytest.raises(ValueError, match="ndim|rank|incompatible"):
        shared_model(x[:, 0])  # rank 3
    for layer in (shared_model.get_layer("p"), shared_model.get_layer("cc")):
        with pytest.raises(ValueError, match="axis -1|ndim|incompatible"):
            layer(np.zeros((2, 6, 6, 3), "float32"))
    with pytest.raises(ValueError, match="axis -1|incompatible"):
        shared_model.get_layer("cd")(np.zeros((2, 10), "float32"))
    assert_unchanged(shared_model, before)


# --- op arguments ----------------------------------------------------------------------------

X4 = np.random.default_rng(0).standard_normal((2, 6, 6, 8)).astype("float32")
K5 = np.ones((3, 3, 2, 2, 4), "float32")  # 5..8 input channels, Q * b = 8 outputs
K3 = np.ones((2, 2, 4), "float32")
OPS = keras_normed.ops.fft
CONVS = {"auto": OPS.circulant_conv2d, "dense": OPS.circulant_conv2d_dense,
         **{m: functools.partial(OPS.circulant_conv2d, method=m)
            for m in ("depthwise", "patches", "freq")}}
ALL_CONVS = {**CONVS, "conv2d_freq": keras_normed.ops.freq.circulant_conv2d_freq}
MATMULS = {"matmul": OPS.circulant_matmul,
           "matmul_freq": keras_normed.ops.freq.circulant_matmul_freq}
OP_CASES = [  # (ops, kwargs, exception, match: the argument and the value received)
    (ALL_CONVS, dict(x=X4[..., :3]), ValueError, r"`x` has 3 channels.*`kernel`.*\(3, 3, 2"),
    (ALL_CONVS, dict(filters=20), ValueError, r"`filters`.*at most Q \* b = 8.*got 20"),
    (ALL_CONVS, dict(filters=0), ValueError, r"`filters`.*positive.*got 0"),
    (ALL_CONVS, dict(kernel=K5[0]), ValueError,
     r"`kernel` must have rank 5.*\(kh, kw, P, Q, b\).*\(3, 2, 2, 4\)"),
    (ALL_CONVS, dict(padding=None), ValueError, r"`padding`.*'valid' or 'same'.*None"),
    (ALL_CONVS, dict(dilation_rate=0), ValueError, r"`dilation_rate`.*positive.*0"),
    (CONVS, dict(strides=(1, 1, 1)), ValueError, r"`strides`.*pair.*\(1, 1, 1\)"),
    (CONVS, dict(strides=0), ValueError, r"`strides`.*positive.*got 0"),
    (CONVS, dict(strides=1.5), TypeError, r"`strides`.*int.*1\.5"),
    (MATMULS, dict(units=20), ValueError,
     r"`units`.*at most Q \* b = 8.*got 20"),
    (MATMULS, dict(units=0), ValueError, r"`units`.*got 0"),
    (MATMULS, dict(x=X4[0, 0, :, :3]), ValueError,
     r"`x` has 3 features.*`kernel` of shape \(2, 2, 4\).*5 to 8"),
    (MATMULS, dict(kernel=K3[0]), ValueError,
     r"`kernel` must have rank 3.*\(P, Q, b\).*\(2, 4\)"),
    ({"periodic": OPS.periodic_conv2d}, dict(kernel=K5), ValueError,
     r"`kernel` must have rank 4.*\(kh, kw, C_in, C_out\).*\(3, 3, 2, 2, 4\)"),
    ({"periodic": OPS.periodic_conv2d}, dict(kernel=np.ones((3, 3, 3, 2))), ValueError,
     r"`x` has 8 channels.*`kernel` of shape \(3, 3, 3, 2\).*C_in = 3"),
]


@pytest.mark.parametrize("ops,kwargs,exc,match", OP_CASES,
                         ids=[f"{i}-{next(iter(k))}-{next(iter(w))}"
                              for i, (k, w, *_) in enumerate(OP_CASES)])
def test_op_arguments(ops, kwargs, exc, match):
    """The ops check their arguments, every form alike (they used to return a wrong-shaped
    result, or fail inside TF or with a bare unpacking error)."""
    for name, op in ops.items():
        kernel = K3 if name in MATMULS else np.ones((3, 3, 8, 2), "float32") \
            if name == "periodic" else K5
        args = {"x": X4[0, 0] if name in MATMULS else X4, "kernel": kernel, **kwargs}
        with pytest.raises(exc, match=match):
            op(**args)


def test_numpy_integer_strides_accepted():
    expected = keras.ops.convert_to_numpy(OPS.circulant_conv2d(X4, K5, strides=2))
    for strides in (np.int64(2), (np.int32(2), 2)):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(OPS.circulant_conv2d(X4, K5, strides=strides)), expected)
    assert CirculantConv2D(4, 3, block_size=2, strides=np.int64(2)).strides == (2, 2)


# --- rescale ---------------------------------------------------------------------------------

def test_rescale_unbuilt_model():
    unbuilt = keras.Sequential([CirculantDense(8, block_size=4), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="not built.*[Bb]uild"):
        keras_normed.rescale(unbuilt)


def test_rescale_assigned_weights_refused(model):
    x, y = batch()
    layer = model.get_layer("cd")
    layer.kernel.assign(layer.kernel * 2.0)
    before = snapshot(model)
    with pytest.raises(ValueError, match="force=True"):
        keras_normed.rescale(model, (x, y))
    assert_unchanged(model, before)
    assert not keras_normed.scaling.is_rescaled(model)


def test_rescale_loaded_weights_refused(tmp_path):
    """Unseeded Normed kernels reloaded from a file differ from a fresh draw: refused."""
    model = small_model(seeded=False)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    before = snapshot(loaded)
    with pytest.raises(ValueError, match="loaded.*force=True"):
        keras_normed.rescale(loaded, batch())
    assert_unchanged(loaded, before)


def test_rescale_trained_model_refused(model):
    x, y = batch()
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=1, verbose=0)
    before = snapshot(model)
    with pytest.raises(ValueError, match="trained.*force=True"):
        keras_normed.rescale(model, (x, y))
    with pytest.raises(ValueError, match="trained"):
        keras_normed.rescale(model)  # analytic rule too
    assert_unchanged(model, before)
    # The callback leaves a trained model alone (a resumed fit), and says so.
    callback = callbacks.NormedScaling(data=(x, y))
    callback.set_model(model)
    with pytest.warns(UserWarning, match="already trained"):
        callback.on_train_begin()
    assert not callback.report.applied
    assert_unchanged(model, before)


def test_rescale_twice_is_a_reported_no_op(model):
    x, y = batch()
    first = keras_normed.rescale(model, (x, y))
    assert first.applied
    before = snapshot(model)
    second = keras_normed.rescale(model, (x, y))
    assert not second.applied and "already rescaled" in second.reason
    assert "force=True" in second.reason
    assert_unchanged(model, before)


@pytest.mark.parametrize("bad", ["nan", "empty"])
def test_rescale_bad_probe_batch(shared_model, bad):
    x, y = batch()
    if bad == "nan":
        x[0, 0, 0, 0] = np.nan
    else:
        x, y = x[:0], y[:0]
    before = snapshot(shared_model)
    with pytest.raises(ValueError, match="data|probe|batch|finite|NaN"):
        keras_normed.rescale(shared_model, (x, y))
    assert_unchanged(shared_model, before)
    assert not keras_normed.scaling.is_rescaled(shared_model)


def test_rescale_bad_arguments(shared_model):
    before = snapshot(shared_model)
    with pytest.raises(ValueError, match="`rule`"):
        keras_normed.rescale(shared_model, rule="magic")
    with pytest.raises(ValueError, match="`tol`"):
        keras_normed.rescale(shared_model, batch(), tol=0.5)
    with pytest.raises(TypeError, match="`model`"):
        keras_normed.rescale("model")
    assert_unchanged(shared_model, before)


# --- LSUV and data-dependent init ------------------------------------------------------------

def _bad_batches():
    x, _ = batch()
    nan = x.copy()
    nan[3, 1, 1, 0] = np.nan
    inf = x.copy()
    inf[0, 0, 0, 1] = np.inf
    return {"empty": (x[:0], r"`x_batch` is empty"),
            "one": (x[:1], r"`x_batch` has a batch of one"),
            "nan": (nan, r"`x_batch` contains NaN or inf"),
            "inf": (inf, r"`x_batch` contains NaN or inf"),
            "zeros": (np.zeros_like(x), r"variance"),
            "channels": (x[..., :1], r"shape|incompatible")}


@pytest.mark.parametrize("case", ["empty", "one", "nan", "inf", "zeros", "channels"])
@pytest.mark.parametrize("method", ["lsuv", "data_dependent_init", "LSUVInit"])
def test_data_driven_bad_batches(shared_model, method, case):
    x, match = _bad_batches()[case]
    before = snapshot(shared_model)
    with pytest.raises(ValueError, match=match):
        if method == "lsuv":
            keras_normed.lsuv(shared_model, x, seed=0)
        elif method == "data_dependent_init":
            keras_normed.data_dependent_init(shared_model, x, seed=0)
        else:
            good_x, good_y = batch()
            shared_model.compile("sgd",
                                 keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            shared_model.fit(good_x, good_y, epochs=1, verbose=0,
                             callbacks=[callbacks.LSUVInit(x, seed=0)])
    assert_unchanged(shared_model, before)


def test_data_driven_constant_nonzero_inputs_stay_finite(model):
    """A constant (nonzero) batch carries no information; it must not produce NaN weights."""
    x = np.ones((16, 6, 6, 2), "float32")
    for fn in (keras_normed.lsuv, keras_normed.data_dependent_init):
        try:
            fn(model, x, seed=0)
        except ValueError as err:
            assert "variance" in str(err) or "constant" in str(err)
        for v in model.weights:
            assert np.all(np.isfinite(keras.ops.convert_to_numpy(v))), v.path


def test_lsuv_bad_arguments(shared_model):
    x, _ = batch()
    before = snapshot(shared_model)
    with pytest.raises(ValueError, match="`tol`"):
        keras_normed.lsuv(shared_model, x, tol=-1)
    with pytest.raises(ValueError, match="`max_iter`"):
        keras_normed.lsuv(shared_model, x, max_iter=0)
    assert_unchanged(shared_model, before)


# --- dtype policies --------------------------------------------------------------------------

def _layers(dtype):
    return {
        "CirculantDense": (lambda: CirculantDense(8, block_size=4, dtype=dtype), (3, 12)),
        "CirculantConv2D": (lambda: CirculantConv2D(4, 3, block_size=2, padding="same",
                                                    dtype=dtype), (2, 5, 5, 4)),
        "PeriodicConv2D": (lambda: PeriodicConv2D(3, 3, dtype=dtype), (2, 5, 5, 2)),
        "WeightNormalization": (lambda: WeightNormalization(
            keras.layers.Dense(5, dtype=dtype), dtype=dtype), (3, 7)),
    }


@pytest.mark.parametrize("policy", ["float16", "bfloat16", "mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("name", ["CirculantDense", "CirculantConv2D", "PeriodicConv2D",
                                  "WeightNormalization"])
def test_low_precision_policies(policy, name):
    make, shape = _layers(policy)[name]
    ref_make, _ = _layers("float32")[name]
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    layer, ref = make(), ref_make()
    y = layer(x)
    ref(x)
    compute = policy.replace("mixed_", "")
    variable = "float32" if policy.startswith("mixed") else compute
    assert y.dtype == compute
    assert all(v.dtype == variable for v in layer.weights), [v.dtype for v in layer.weights]
    ref.set_weights([keras.ops.convert_to_numpy(keras.ops.cast(w, "float32"))
                     for w in layer.weights])
    expected = keras.ops.convert_to_numpy(ref(x))
    got = keras.ops.convert_to_numpy(keras.ops.cast(y, "float32"))
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, expected, atol=0.03 * np.abs(expected).max() + 1e-3)


# --- very large layers -----------------------------------------------------------------------

def test_normed_init_of_huge_circulant_dense_is_not_quadratic():
    """n = 2^16: the dense matrix would be 2^32 floats (16 GiB); init + rescale stay small."""
    n = 2**16
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    tracemalloc.start()
    try:
        inp = keras.Input((n,))
        layer = CirculantDense(n, block_size=n, kernel_initializer=initializers.Normed(seed=0))
        model = keras.Model(inp, layer(inp))
        kernel = keras.ops.convert_to_numpy(layer.kernel)
        report = keras_normed.rescale(model)  # analytic rule: structure only, no matrix
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_growth_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert kernel.shape == (1, 1, n)
    assert report.applied
    # He std over the effective fan-in n, not the kernel tensor's shape.
    assert abs(kernel.std() - math.sqrt(2.0 / n)) < 0.05 * math.sqrt(2.0 / n)
    assert peak < 64 * 2**20, f"Python allocations peaked at {peak / 2**20:.0f} MiB"
    assert rss_growth_mib < 2048, f"peak RSS grew by {rss_growth_mib:.0f} MiB"


# --- property test: the CirculantDense layer against numpy -----------------------------------

def _dense_from_kernel(kernel, n_in, units):
    p, q, b = kernel.shape
    w = np.zeros((p * b, q * b))
    for i in range(p):
        for j in range(q):
            # Column-circulant block C(c)[r, s] = c[(r - s) mod b]; y = x @ W uses C(c)^T.
            w[i * b:(i + 1) * b, j * b:(j + 1) * b] = scipy.linalg.circulant(kernel[i, j]).T
    return w[:n_in, :units]


@settings(max_examples=25, deadline=None)
@given(n_in=st.integers(1, 20), units=st.integers(1, 20), block=st.integers(-2, 24),
       seed=st.integers(0, 10_000))
def test_property_circulant_dense_layer(n_in, units, block, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3, n_in))
    if block <= 0:
        with pytest.raises(ValueError, match="`block_size`"):
            CirculantDense(units, block_size=block)
        return
    layer = CirculantDense(units, block_size=block, bias_initializer="ones", dtype="float64")
    if block > max(n_in, units):
        with pytest.raises(ValueError, match="`block_size`"):
            layer(x)
        return
    y = keras.ops.convert_to_numpy(layer(x))
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    assert kernel.shape == (-(-n_in // block), -(-units // block), block)
    np.testing.assert_allclose(y, x @ _dense_from_kernel(kernel, n_in, units) + 1.0,
                               rtol=1e-9, atol=1e-9)
