"""Each Keras/TensorFlow internal the package reads, pinned: a Keras release that moves one
fails here, not silently in the model-level code."""

import keras
import numpy as np
import tensorflow as tf

from keras_normed import _keras_compat as compat


def _model():
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="inner_dense")])
    x = keras.Input((3,))
    shared = keras.layers.Dense(4, name="shared")
    h = shared(x)
    h = inner(h)
    out = keras.layers.Add(name="add")([h, shared(x)])
    return keras.Model(x, out), shared, inner


def test_all_layers_walks_nested_models_once():
    model, shared, inner = _model()
    names = [layer.name for layer in compat.all_layers(model)]
    assert names[0] == model.name
    assert names.count("shared") == 1 and "inner_dense" in names and inner.name in names


def test_call_takes_training():
    class NoTraining(keras.Model):
        def call(self, x):
            return x

    class WithTraining(keras.Model):
        def call(self, x, training=None):
            return x

    assert not compat.call_takes_training(NoTraining())
    assert compat.call_takes_training(WithTraining())
    assert compat.call_takes_training(keras.layers.Dropout(0.5))


def test_graph_reading():
    model, shared, inner = _model()
    op, node = compat.producer(model.outputs[0])
    assert op.name == "add" and len(compat.node_inputs(node)) == 2
    assert compat.node_outputs(node)[0] is model.outputs[0]
    assert compat.producer(model.inputs[0]) is None
    assert compat.layer_calls(shared) == 2
    assert {c.name for c in compat.consumers(shared)} == {inner.name, "add"}


def test_trace_side_effects_are_undone():
    model, shared, _ = _model()
    before = compat.layer_calls(shared)
    with compat.graph_side_effects_undone([shared]):
        shared(keras.Input((3,)))
        assert compat.layer_calls(shared) == before + 1
    assert compat.layer_calls(shared) == before


def test_captured_calls_record_and_restore():
    model, shared, _ = _model()
    x = np.ones((2, 3), "float32")
    with compat.captured_calls([shared]) as record:
        out = model(x)
    assert len(record[id(shared)]) == 2
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(record[id(shared)][0][0][0]), x)
    assert "call" not in shared.__dict__
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)),
                               keras.ops.convert_to_numpy(out))


def test_is_conv():
    assert compat.is_conv(keras.layers.Conv2D(2, 3))
    assert compat.is_conv(keras.layers.Conv1D(2, 3))
    assert not compat.is_conv(keras.layers.Conv2DTranspose(2, 3))
    assert not compat.is_conv(keras.layers.DepthwiseConv2D(3))
    assert not compat.is_conv(keras.layers.Dense(2))


def test_random_initializer_and_seed_dtype():
    assert isinstance(keras.initializers.HeNormal(), compat.RandomInitializer)
    expected = {"tensorflow": "int64", "jax": "uint32"}.get(keras.backend.backend())
    assert compat.random_seed_dtype() == expected


def test_in_xla_context():
    seen = {}

    @tf.function(jit_compile=True)
    def compiled(x):
        seen["xla"] = compat.in_xla_context()
        return x + 1

    @tf.function
    def plain(x):
        seen["plain"] = compat.in_xla_context()
        return x + 1

    compiled(tf.ones(2))
    plain(tf.ones(2))
    assert seen == {"xla": True, "plain": False}
    assert not compat.in_xla_context()


def test_build_input_shape():
    """structure.built_input_shape reads Keras's record of a layer's build shape."""
    layer = keras.layers.Dense(3)
    layer.build((None, 5))
    assert compat.build_input_shape(layer) == (None, 5)
    assert compat.build_input_shape(keras.layers.Dense(3)) is None


def test_is_graph_model():
    """materialize rewrites graph models only."""

    class Sub(keras.Model):
        def call(self, x):
            return x

    model, _, _ = _model()
    assert compat.is_graph_model(model)
    assert compat.is_graph_model(keras.Sequential([keras.layers.Dense(2)]))
    assert not compat.is_graph_model(Sub())


def test_building_layer_names_each_separable_kernel():
    """Inside a Keras layer's build, an initializer finds the layer and the weight's name (the
    route of Keras's own layers); the fans it gets are the interior fans of that weight (here
    valid, stride 1: exact)."""
    from keras_normed import structure

    seen = {}

    class Recording(keras.initializers.Initializer):
        def __call__(self, shape, dtype=None):
            layer, name = compat.building_layer()
            seen[name] = structure.kernel_fans(layer, shape, weight=name)
            return keras.ops.zeros(shape, dtype=dtype)

    sep = keras.layers.SeparableConv2D(5, 3, depth_multiplier=2,
                                       depthwise_initializer=Recording(),
                                       pointwise_initializer=Recording())
    sep.build((None, 8, 8, 3))
    exact = structure.weight_structures(sep)
    assert seen == {w: (s.fan_in, s.fan_out) for w, s in exact.items()}
    assert seen == {"depthwise_kernel": (9, 18), "pointwise_kernel": (6, 5)}


def test_building_layer_outside_add_weight():
    """A bare call finds nothing; a variable initialized after its layer's add_weight returned
    (created in a stateless scope) is named, without a layer."""
    seen = []

    def recording(shape, dtype=None):
        seen.append(compat.building_layer())
        return keras.ops.zeros(shape, dtype=dtype)

    recording((2, 2))
    with keras.StatelessScope():
        layer = keras.layers.Dense(3, kernel_initializer=recording)
        layer.build((None, 4))
        assert seen == [None]
    assert seen == [None, (None, "kernel")]
