"""keras_normed.materialize: built-in layers only, same outputs, converts to TFLite builtins.

For every layer of the package a small model is materialised, converted with
``TFLiteConverter.from_keras_model`` restricted to ``TFLITE_BUILTINS`` and run with
``tf.lite.Interpreter``; its outputs match Keras's. The FFT forms of the un-materialised
layers do not convert (RFFT/IRFFT/Complex are not TFLite builtins), which is why this exists.
"""

import json
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_normed
from keras_normed.initializers import DeltaOrthogonal, Normed
from keras_normed.layers import (
    CirculantConv2D,
    CirculantDense,
    PeriodicConv2D,
    WeightNormalization,
)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "distribute"))
import zoo  # noqa: E402


def _circulant_dense():  # Sequential; n_in and units not multiples of the block
    return keras.Sequential([
        keras.Input((22,), name="features"),
        CirculantDense(12, block_size=4, activation="relu", kernel_initializer=Normed(seed=1),
                       bias_initializer="random_normal", name="cd1"),
        CirculantDense(5, block_size=3, kernel_initializer=Normed(seed=2), name="cd2"),
    ], name="seq_circulant_dense")


def _circulant_conv():  # functional; Q <= 8 (the FFT "depthwise" form), strides, dilation
    inp = keras.Input((7, 7, 4), name="pixels")
    x = CirculantConv2D(8, 3, block_size=4, padding="same", activation="tanh",
                        bias_initializer="random_normal", name="cc1")(inp)
    x = CirculantConv2D(6, 3, block_size=4, strides=2, name="cc2")(x)
    x = CirculantConv2D(5, 2, block_size=3, dilation_rate=2, padding="same", name="cc3")(x)
    return keras.Model(inp, x, name="fn_circulant_conv")


def _periodic():  # Sequential; the FFT form, an even kernel, and a kernel larger than the input
    return keras.Sequential([
        keras.Input((5, 6, 2), name="grid"),
        PeriodicConv2D(3, 3, method="fft", activation="relu", name="p1",
                       bias_initializer="random_normal"),
        PeriodicConv2D(2, (7, 4), method="fft", name="p2"),  # 7 > 5 rows: wraps twice
        PeriodicConv2D(2, 1, method="fft", name="p3"),  # 1x1: no padding at all
    ], name="seq_periodic")


def _weight_norm():  # functional; Conv2D and Dense inside, g != ||v||
    inp = keras.Input((6, 6, 2), name="pixels")
    x = WeightNormalization(keras.layers.Conv2D(4, 3, padding="same", activation="relu",
                                                kernel_initializer=DeltaOrthogonal(seed=3)),
                            g_initializer="random_normal", name="wn_conv")(inp)
    x = keras.layers.Flatten()(x)
    x = WeightNormalization(keras.layers.Dense(3, kernel_initializer="normed"),
                            name="wn_dense")(x)
    return keras.Model(inp, x, name="fn_weight_norm")


MODELS = {"CirculantDense": _circulant_dense, "CirculantConv2D": _circulant_conv,
          "PeriodicConv2D": _periodic, "WeightNormalization": _weight_norm}
# Layers whose un-materialised model needs TF Select ops (their FFT forms).
FFT_OPS = {"CirculantDense": "IRFFT", "CirculantConv2D": "IRFFT", "PeriodicConv2D": "FFT"}


def _inputs(model, n=3, seed=0):
    shape = (n,) + tuple(model.inputs[0].shape[1:])
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _layer_classes(model):
    """Classes of every layer, nested models included."""
    out = []
    for layer in model.layers:
        out.append(type(layer))
        if isinstance(layer, keras.Model):
            out.extend(_layer_classes(layer))
    return out


def _to_tflite(model) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def _run_tflite(flatbuffer: bytes, x: np.ndarray) -> np.ndarray:
    interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    (inp,) = interpreter.get_input_details()
    interpreter.resize_tensor_input(inp["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    (out,) = interpreter.get_output_details()
    return interpreter.get_tensor(out["index"])


def _eager_channels_first_conv_runs() -> bool:
    """Keras's own Conv2D in channels_first runs eagerly here: not with TensorFlow on a CPU
    without oneDNN (TensorFlow's own CPU Conv2D takes NHWC only; oneDNN is on by default only
    on CPUs with AVX-512 or AMX)."""
    try:
        keras.layers.Conv2D(1, 1, data_format="channels_first")(np.zeros((1, 1, 2, 2), "float32"))
        return True
    except Exception:  # noqa: BLE001 - tf.errors.UnimplementedError
        return False


def _call(model, x):
    """``model(x)``, compiled by XLA where Keras's eager channels_first Conv2D cannot run (as
    ``fit`` and ``predict`` compile it by default)."""
    if keras.backend.backend() == "tensorflow" and not _eager_channels_first_conv_runs():
        return tf.function(model, jit_compile=True)(x)
    return model(x)


def _close(got, expected, rel=1e-5):
    scale = float(np.max(np.abs(expected)))
    assert scale > 0
    np.testing.assert_allclose(got, expected, rtol=0, atol=rel * scale)


@pytest.mark.tensorflow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_materialized_model_runs_on_tflite_builtins(name):
    model = MODELS[name]()
    x = _inputs(model)
    expected = keras.ops.convert_to_numpy(model(x))
    small = keras_normed.materialize(model)

    assert type(small) is type(model) and small.name == model.name
    assert small.inputs[0].name == model.inputs[0].name
    classes = _layer_classes(small)
    assert all(c.__module__.startswith("keras.") for c in classes), classes
    assert "keras_normed" not in json.dumps(small.get_config())  # loads without the package
    assert [layer.name for layer in small.layers] == [layer.name for layer in model.layers]
    _close(keras.ops.convert_to_numpy(small(x)), expected)
    _close(keras.ops.convert_to_numpy(model(x)), expected, rel=0)  # the original is untouched

    _close(_run_tflite(_to_tflite(small), x), expected)


@pytest.mark.tensorflow
@pytest.mark.parametrize("name", sorted(FFT_OPS))
def test_unmaterialized_fft_layers_do_not_convert(name):
    with pytest.raises(Exception, match=f"TF Select ops: .*{FFT_OPS[name]}") as info:
        _to_tflite(MODELS[name]())
    assert type(info.value).__name__ == "ConverterError"


def test_materialized_kernels():
    model = _circulant_dense()
    small = keras_normed.materialize(model)
    dense = small.get_layer("cd1")
    assert isinstance(dense, keras.layers.Dense) and dense.kernel.shape == (22, 12)
    # Parameters: the circulant kernel (6, 3, 4) has 72, the dense one 22 * 12 = 264.
    assert model.get_layer("cd1").kernel.shape == (6, 3, 4)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(dense.bias),
                                  keras.ops.convert_to_numpy(model.get_layer("cd1").bias))
    wn = _weight_norm()
    conv = keras_normed.materialize(wn).get_layer("wn_conv")
    assert type(conv) is keras.layers.Conv2D and conv.activation is keras.activations.relu
    np.testing.assert_allclose(keras.ops.convert_to_numpy(conv.kernel),
                               keras.ops.convert_to_numpy(wn.get_layer("wn_conv")
                                                          .normalized_kernel()), rtol=1e-6)


def test_zoo_and_nested_models():
    """Every layer at once (functional), inside a nested Sequential, and in mixed precision."""
    x, _ = zoo.data(4, seed=2)
    model = zoo.build_zoo(seed=5)
    inner = keras.Sequential([keras.Input((10,)), CirculantDense(8, 4, name="inner_cd")],
                             name="inner")
    outer = keras.Model(model.inputs, inner(model.outputs[0]), name="outer")
    expected = keras.ops.convert_to_numpy(outer(x))
    small = keras_normed.materialize(outer)
    assert all(c.__module__.startswith("keras.") for c in _layer_classes(small))
    assert isinstance(small.get_layer("inner").get_layer("inner_cd"), keras.layers.Dense)
    _close(keras.ops.convert_to_numpy(small(x)), expected)

    mixed = zoo.build_zoo(seed=6, dtype="mixed_float16")
    small = keras_normed.materialize(mixed)
    assert small.get_layer("circulant_dense").dtype_policy.name == "mixed_float16"
    got = keras.ops.convert_to_numpy(small(x))
    assert got.dtype == np.float32
    _close(got, keras.ops.convert_to_numpy(mixed(x)), rel=5e-3)  # float16 compute


def test_refuses_what_it_cannot_rewrite():
    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = CirculantDense(4, 2)

        def call(self, x):
            return self.dense(x)

    sub = Sub()
    sub(np.ones((1, 4), "float32"))
    with pytest.raises(TypeError, match="subclassed model 'Sub'.*functional"):
        keras_normed.materialize(sub)
    with pytest.raises(ValueError, match="not built"):
        keras_normed.materialize(keras.Sequential([CirculantDense(4, 2)]))
    with pytest.raises(TypeError, match="`model` must be a keras.Model"):
        keras_normed.materialize(CirculantDense(4, 2))
    # Inside a Keras wrapper the package's layer was cloned from the config and kept, silently:
    # the result named keras_normed and did not convert to TFLite builtins.
    inputs = keras.Input((5, 12))
    wrapped = keras.Model(inputs, keras.layers.TimeDistributed(CirculantDense(8, 4))(inputs))
    with pytest.raises(TypeError, match="TimeDistributed .* holds the package's layer "
                                        "CirculantDense"):
        keras_normed.materialize(wrapped)


@pytest.mark.parametrize("at_materialize", ["channels_last", "channels_first"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("kind", ["circulant", "periodic"])
def test_data_format_kept_whatever_the_global_setting(kind, data_format, at_materialize):
    """The replacements keep the layer's layout: the global setting at materialize time and
    at call time changes nothing (it used to build channels_last blocks, or follow the global)."""
    shape = (3, 6, 5) if data_format == "channels_first" else (6, 5, 3)
    layers = ([CirculantConv2D(8, 3, block_size=4, padding="same", data_format=data_format),
               CirculantConv2D(4, 2, block_size=2, strides=2, data_format=data_format)]
              if kind == "circulant" else
              [PeriodicConv2D(4, 3, method="fft", data_format=data_format),
               PeriodicConv2D(2, (4, 7), method="direct", data_format=data_format)])
    model = keras.Sequential([keras.Input(shape), *layers])
    x = _inputs(model)
    expected = keras.ops.convert_to_numpy(model(x))
    try:
        keras.config.set_image_data_format(at_materialize)
        small = keras_normed.materialize(model)
        for at_call in ("channels_last", "channels_first"):
            keras.config.set_image_data_format(at_call)
            _close(keras.ops.convert_to_numpy(_call(small, x)), expected)
    finally:
        keras.config.set_image_data_format("channels_last")


def test_periodic_conv_on_images_of_unknown_size_is_refused_clearly():
    inp = keras.Input((None, None, 4))
    model = keras.Model(inp, keras.layers.GlobalAveragePooling2D()(PeriodicConv2D(4, 5)(inp)))
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match="unknown height or width.*fixed size"):
        keras_normed.materialize(model)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


@pytest.mark.parametrize("kind", ["circulant", "periodic"])
def test_channels_first_layers_become_channels_last_convolutions_with_their_bias(kind):
    """A channels_first layer became Keras's channels_first Conv2D: not runnable eagerly on a
    CPU without oneDNN, and on TensorFlow its eager bias went along the width where the width
    equals the filters. Now a block (transpose, channels_last Conv2D, transpose), run eagerly."""
    layer = (CirculantConv2D(8, 3, block_size=4, padding="same", data_format="channels_first")
             if kind == "circulant" else PeriodicConv2D(8, 3, data_format="channels_first"))
    model = keras.Sequential([keras.Input((4, 8, 8)), layer])
    layer.set_weights([layer.get_weights()[0], np.arange(8, dtype="float32")])
    x = np.random.default_rng(0).normal(size=(2, 4, 8, 8)).astype("float32")
    expected = keras.ops.convert_to_numpy(model(x))
    small = keras_normed.materialize(model)
    convs = [sub for sub in small._flatten_layers() if isinstance(sub, keras.layers.Conv2D)]
    assert convs and all(c.data_format == "channels_last" for c in convs)
    assert small.layers[0].name == layer.name
    _close(keras.ops.convert_to_numpy(small(x)), expected)
    _close(small.predict(x, verbose=0), expected)
