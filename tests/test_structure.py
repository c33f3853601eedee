"""keras_normed.structure against a brute-force reference (tests/structure_reference.py).

The reference builds ``T`` explicitly by probing small float64 layers; the module under test
counts in closed form. Every Keras layer type with a registered rule is checked on a grid of
paddings, strides, dilations and groups.
"""

import math

import keras
import numpy as np
import pytest
from structure_reference import brute_force_structure

from keras_normed import structure
from keras_normed.structure import LinearStructure

L = keras.layers
F64 = {"dtype": "float64"}


def _case(make, shape, weight="kernel", id=None):
    return pytest.param(make, shape, weight, id=id)


# (layer factory, input shape with batch axis, weight)
GRID = [
    _case(lambda: L.Dense(4, **F64), (None, 5), id="dense"),
    _case(lambda: L.Dense(3, **F64), (None, 3, 4), id="dense-seq"),
    _case(lambda: L.EinsumDense("abc,cd->abd", (3, 5), **F64), (None, 3, 4), id="einsum"),
    _case(lambda: L.EinsumDense("abc,bcd->abd", (3, 2), **F64), (None, 3, 4), id="einsum-diag"),
    _case(lambda: L.EinsumDense("...b,bc->...c", 3, **F64), (None, 2, 3, 4), id="einsum-ell"),
    _case(lambda: L.Embedding(5, 3), (None, 4), "embeddings", id="embedding"),
    _case(lambda: L.Embedding(4, 2), (None,), "embeddings", id="embedding-token"),
    _case(lambda: L.Embedding(3, 2), (None, 2, 3), "embeddings", id="embedding-2d"),
]
for pad in ("valid", "same", "causal"):
    for kw in ({}, {"strides": 2}, {"dilation_rate": 2}):
        GRID.append(_case(lambda pad=pad, kw=kw: L.Conv1D(3, 3, padding=pad, **kw, **F64),
                          (None, 9, 2), id=f"conv1d-{pad}-{'-'.join(map(str, kw.items()))}"))
GRID += [
    _case(lambda: L.Conv1D(4, 2, strides=3, padding="same", **F64), (None, 8, 1),
          id="conv1d-stride>k"),
    _case(lambda: L.Conv1D(2, 3, groups=2, padding="causal", **F64), (None, 7, 2),
          id="conv1d-groups"),
    _case(lambda: L.Conv2D(2, 3, **F64), (None, 7, 6, 1), id="conv2d-valid"),
    _case(lambda: L.Conv2D(2, 3, padding="same", **F64), (None, 7, 6, 1), id="conv2d-same"),
    _case(lambda: L.Conv2D(2, 3, strides=(1, 2), **F64), (None, 7, 8, 2), id="conv2d-valid-s12"),
    _case(lambda: L.Conv2D(2, 3, strides=(1, 2), padding="same", **F64), (None, 7, 8, 2),
          id="conv2d-same-s12"),
    _case(lambda: L.Conv2D(2, (3, 2), strides=2, padding="same", **F64), (None, 6, 7, 1),
          id="conv2d-same-s2"),
    _case(lambda: L.Conv2D(2, 3, dilation_rate=2, padding="same", **F64), (None, 7, 6, 1),
          id="conv2d-same-d2"),
    _case(lambda: L.Conv2D(2, 2, dilation_rate=(2, 1), **F64), (None, 6, 5, 2),
          id="conv2d-valid-d21"),
    _case(lambda: L.Conv2D(2, (3, 2), groups=2, padding="same", **F64), (None, 5, 6, 2),
          id="conv2d-groups"),
    _case(lambda: L.Conv3D(2, 2, **F64), (None, 5, 5, 4, 1), id="conv3d-valid"),
    _case(lambda: L.Conv3D(1, 3, strides=2, padding="same", **F64), (None, 5, 5, 5, 1),
          id="conv3d-same-s2"),
    _case(lambda: L.DepthwiseConv2D(3, depth_multiplier=2, **F64), (None, 6, 6, 2),
          id="depthwise2d-valid"),
    _case(lambda: L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, **F64),
          (None, 7, 7, 2), id="depthwise2d-same-s2"),
    _case(lambda: L.DepthwiseConv2D(2, dilation_rate=2, padding="same", **F64), (None, 6, 6, 3),
          id="depthwise2d-same-d2"),
    _case(lambda: L.DepthwiseConv1D(3, strides=2, padding="same", depth_multiplier=3, **F64),
          (None, 8, 2), id="depthwise1d-same-s2"),
    _case(lambda: L.Conv2DTranspose(2, 3, **F64), (None, 5, 5, 2), id="tconv2d-valid"),
    _case(lambda: L.Conv2DTranspose(2, 3, padding="same", **F64), (None, 5, 5, 2),
          id="tconv2d-same"),
    _case(lambda: L.Conv2DTranspose(2, 3, strides=2, **F64), (None, 5, 5, 2),
          id="tconv2d-valid-s2"),
    _case(lambda: L.Conv2DTranspose(2, 3, strides=2, padding="same", **F64), (None, 5, 5, 2),
          id="tconv2d-same-s2"),
    _case(lambda: L.Conv2DTranspose(2, 3, strides=2, padding="same", output_padding=0, **F64),
          (None, 5, 5, 1), id="tconv2d-same-s2-op0"),
    _case(lambda: L.Conv1DTranspose(2, 2, strides=3, **F64), (None, 6, 2), id="tconv1d-gaps"),
    _case(lambda: L.Conv3DTranspose(2, 2, strides=2, padding="same", **F64),
          (None, 3, 3, 3, 1), id="tconv3d-same-s2"),
]
for w in ("depthwise_kernel", "pointwise_kernel"):
    GRID += [
        _case(lambda: L.SeparableConv2D(3, 3, strides=2, padding="same", depth_multiplier=2,
                                        **F64), (None, 7, 7, 2), w, id=f"separable2d-same-{w}"),
        _case(lambda: L.SeparableConv2D(3, 3, **F64), (None, 6, 5, 2), w,
              id=f"separable2d-valid-{w}"),
        _case(lambda: L.SeparableConv1D(3, 3, padding="same", dilation_rate=2,
                                        depth_multiplier=2, **F64), (None, 8, 2), w,
              id=f"separable1d-same-d2-{w}"),
    ]


@pytest.mark.parametrize("make, shape, weight", GRID)
def test_structure_matches_brute_force(make, shape, weight):
    layer = make()
    expected = brute_force_structure(layer, shape, weight=weight)
    found = structure.layer_structure(layer, shape, weight=weight)
    assert found.weight == weight
    assert (found.fan_in, found.fan_out, found.uniform) == (expected[0], expected[1], expected[3])
    assert found.sharing == pytest.approx(expected[2], rel=1e-12)
    # The built layer gives the same answer from its own recorded input shape.
    assert structure.layer_structure(layer, weight=weight) == found


def _is_conv_like(layer):
    return hasattr(layer, "kernel_size")


@pytest.mark.parametrize("make, shape, weight", GRID)
def test_kernel_fans_bound_structure(make, shape, weight):
    """kernel_fans (config + kernel shape only) is exact for valid stride-1 convolutions and
    Dense-like layers, and an upper bound of the exact fans otherwise."""
    layer = make()
    layer.build(shape)
    kernel = getattr(layer, weight)
    fans = structure.kernel_fans(layer, tuple(kernel.shape), weight=weight)
    found = structure.layer_structure(layer, shape, weight=weight)
    strided = _is_conv_like(layer) and max(layer.strides) > 1
    border = _is_conv_like(layer) and layer.padding != "valid"
    if (strided or border) and weight != "pointwise_kernel":
        assert fans[0] >= found.fan_in and fans[1] >= found.fan_out
    else:
        assert fans == (found.fan_in, found.fan_out)
    # Without the name, the kernel shape tells the weight.
    assert structure.kernel_fans(layer, tuple(kernel.shape)) == fans


@pytest.mark.parametrize("make, shape, weight", GRID)
def test_shape_and_n_params_match_keras(make, shape, weight):
    """``shape`` is (output size, input size) by Keras's compute_output_shape; ``n_params``
    the weight's size."""
    layer = make()
    layer.build(shape)
    found = structure.layer_structure(layer, weight=weight)
    n_in = math.prod(shape[1:])
    dtype = "int32" if isinstance(layer, L.Embedding) else "float64"
    n_out = math.prod(layer(keras.KerasTensor((1,) + shape[1:], dtype=dtype)).shape[1:])
    assert found.n_params == math.prod(getattr(layer, weight).shape)
    if isinstance(layer, L.Embedding):
        assert found.shape == (n_out, n_in * layer.input_dim)  # one-hot input
    elif weight == "depthwise_kernel":
        assert found.shape[1] == n_in and found.shape[0] * layer.filters == \
            n_out * shape[-1] * layer.depth_multiplier
    elif weight == "pointwise_kernel":
        assert found.shape[0] == n_out and found.shape[1] * layer.filters == \
            n_out * shape[-1] * layer.depth_multiplier
    else:
        assert found.shape == (n_out, n_in)


def test_kernel_fans_strided_interior():
    """Interior fan_out of a strided conv counts ceil(k/s) outputs per axis; a long input
    attains it, and Keras's shape rule (k*k*C_out) overcounts."""
    layer = L.Conv2D(3, (5, 4), strides=(2, 3), **F64)
    shape = (None, 13, 13, 1)
    layer.build(shape)
    fans = structure.kernel_fans(layer, (5, 4, 1, 3))
    assert fans == (20, 3 * 2 * 3)
    assert brute_force_structure(layer, shape)[:2] == fans
    assert structure.shape_fans((5, 4, 1, 3))[1] == 60


def test_transposed_fans_swap_keras_shape_rule():
    """A transposed kernel is (k, k, filters, C_in): Keras's shape rule swaps the fans and
    ignores the stride; the effective ones do not."""
    layer = L.Conv2DTranspose(6, 4, strides=2, padding="same")
    assert structure.kernel_fans(layer, (4, 4, 6, 5)) == (2 * 2 * 5, 16 * 6)
    assert structure.shape_fans((4, 4, 6, 5)) == (96, 80)


def test_large_conv_closed_form():
    """56x56x64 3x3 conv (no matrix built): along each axis the 3 taps serve 55, 56, 55 outputs
    under 'same' padding and 54 each under 'valid'."""
    same = structure.layer_structure(L.Conv2D(64, 3, padding="same"), (None, 56, 56, 64))
    assert (same.fan_in, same.fan_out, same.uniform) == (576, 576, False)
    assert same.sharing == pytest.approx((166 / 3) ** 2, rel=1e-12)
    assert same.n_params == 9 * 64 * 64 and same.shape == (56 * 56 * 64,) * 2
    valid = structure.layer_structure(L.Conv2D(64, 3), (None, 56, 56, 64))
    assert (valid.fan_in, valid.sharing, valid.uniform) == (576, 54.0 ** 2, True)


def test_channels_first_matches_channels_last():
    last = structure.layer_structure(L.Conv2D(4, 3, strides=2, padding="same"), (None, 9, 7, 3))
    first = structure.layer_structure(
        L.Conv2D(4, 3, strides=2, padding="same", data_format="channels_first"), (None, 3, 9, 7))
    assert first == last


@pytest.mark.parametrize("shape", [(3, 5), (7,), (), (3, 3, 4, 8), (2, 3, 2, 4, 6)])
def test_shape_fans_match_keras_variance_scaling(shape):
    """Keras's fans, read from the std VarianceScaling draws: with the same int seed its values
    are exactly ``std`` times ``keras.random.normal``'s."""
    base = np.asarray(keras.random.normal(shape, stddev=1.0, seed=7, dtype="float64"))
    fans = structure.shape_fans(shape)
    for mode, fan in zip(("fan_in", "fan_out"), fans):
        init = keras.initializers.VarianceScaling(
            scale=1.0, mode=mode, distribution="untruncated_normal", seed=7)
        values = np.asarray(init(shape, dtype="float64"))
        assert np.allclose(values, base / math.sqrt(fan), rtol=1e-12, atol=0)
    # HeNormal: truncated normal with std sqrt(2 / fan_in), Keras's truncation correction.
    he = np.asarray(keras.initializers.HeNormal(seed=7)(shape, dtype="float64"))
    unit = np.asarray(keras.random.truncated_normal(shape, stddev=1.0, seed=7, dtype="float64"))
    std = math.sqrt(2.0 / fans[0]) / 0.87962566103423978
    assert np.allclose(he, unit * std, rtol=1e-12, atol=0)


def test_kernel_fans_fallbacks():
    assert structure.kernel_fans(None, (3, 3, 4, 8)) == (36, 72)
    assert structure.kernel_fans(L.MaxPooling2D(), (3, 4)) == (3, 4)
    # A bias of a described layer is not its kernel: shape rule.
    assert structure.kernel_fans(L.Conv2D(8, 3), (8,), weight="bias") == (8, 8)
    assert structure.kernel_fans(L.Embedding(100, 16), (100, 16)) == (1, 16)
    # Not the kernel's rank (a bias asked for without its name): shape rule too.
    assert structure.kernel_fans(L.Conv2D(8, 3), (8,)) == (8, 8)
    assert structure.kernel_fans(L.SeparableConv2D(8, 3), (8,)) == (8, 8)


@pytest.mark.parametrize("layer", [L.MaxPooling2D(), L.Activation("relu"), L.Flatten(),
                                   L.BatchNormalization(), L.Dropout(0.5), L.LayerNormalization()])
def test_layers_without_kernel_return_none(layer):
    assert structure.layer_structure(layer, (None, 4, 4, 2)) is None
    assert structure.weight_structures(layer, (None, 4, 4, 2)) == {}


def test_weight_structures_and_main_weight():
    sep = L.SeparableConv2D(4, 3, depth_multiplier=2)
    found = structure.weight_structures(sep, (None, 7, 7, 3))
    assert list(found) == ["depthwise_kernel", "pointwise_kernel"]
    assert structure.layer_structure(sep, (None, 7, 7, 3)) == found["depthwise_kernel"]
    assert found["pointwise_kernel"].fan_in == 6 and found["pointwise_kernel"].sharing == 25
    assert list(structure.weight_structures(L.Dense(3), (None, 4))) == ["kernel"]
    assert list(structure.weight_structures(L.Embedding(9, 3), (None, 4))) == ["embeddings"]


def test_errors_are_clear():
    with pytest.raises(ValueError, match="not built"):
        structure.layer_structure(L.Dense(3))
    with pytest.raises(ValueError, match="input_shape"):
        structure.layer_structure(L.Conv2D(3, 3), (None, None, None, 2))
    with pytest.raises(ValueError, match="rank 4"):
        structure.layer_structure(L.Conv2D(3, 3), (None, 5, 2))
    with pytest.raises(ValueError, match="weight='bias'"):
        structure.layer_structure(L.Dense(3), (None, 4), weight="bias")
    with pytest.raises(ValueError, match="empty"):
        structure.layer_structure(L.Conv1D(3, 5), (None, 3, 1))
    with pytest.raises(TypeError, match="layer_cls"):
        structure.register_structure("Dense", lambda *a: (1, 1), lambda *a: None)


# --------------------------------------------------------------------------------------------
# Third-party layers: the protocol, register_structure, and inheritance.


class Scale(keras.layers.Layer):
    """``y = x * w`` with one weight per channel: T is diagonal, shared over positions."""

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="kernel")

    def call(self, x):
        return x * self.kernel


def _scale_structure(layer, input_shape):
    positions = math.prod(input_shape[1:-1])
    return LinearStructure(1, 1, float(positions), True, int(input_shape[-1]))


class ProtocolScale(Scale):
    def normed_fans(self, kernel_shape):
        return 1, 1

    def normed_structure(self, input_shape):
        return _scale_structure(self, input_shape)


@pytest.fixture
def registry():
    saved = dict(structure._REGISTRY)
    yield
    structure._REGISTRY.clear()
    structure._REGISTRY.update(saved)


def test_protocol_layer_is_honoured():
    layer = ProtocolScale(dtype="float64")
    shape = (None, 4, 3, 2)
    found = structure.layer_structure(layer, shape)
    assert found == LinearStructure(1, 1, 12.0, True, 2)
    assert brute_force_structure(layer, shape) == (1, 1, 12.0, True)
    assert structure.kernel_fans(layer, (2,)) == (1, 1)
    assert structure.kernel_fans(Scale(), (2,)) == (2, 2)  # unknown: shape rule


def test_registered_class_and_subclass_are_honoured(registry):
    assert structure.layer_structure(Scale(), (None, 5, 2)) is None
    structure.register_structure(Scale, lambda layer, shape: (1, 1), _scale_structure)

    class SubScale(Scale):
        pass

    shape = (None, 5, 3)
    for layer in (Scale(dtype="float64"), SubScale(dtype="float64")):
        assert structure.kernel_fans(layer, (3,)) == (1, 1)
        found = structure.layer_structure(layer, shape)
        assert (found.fan_in, found.fan_out, found.sharing, found.uniform) == \
            brute_force_structure(layer, shape)


def test_multi_weight_registration(registry):
    calls = []

    def fans(layer, kernel_shape, weight=None):
        calls.append(weight)
        return (1, 1) if weight == "a" else (2, 2)

    def struct(layer, input_shape, weight="a"):
        return LinearStructure(1, 1, 1.0, True, 1, weight=weight)

    structure.register_structure(Scale, fans, struct, weights=("a", "b"))
    assert list(structure.weight_structures(Scale(), (None, 3))) == ["a", "b"]
    assert structure.kernel_fans(Scale(), (3,), weight="b") == (2, 2)
    assert structure.kernel_fans(Scale(), (3,), weight="c") == (3, 3)  # not described
    with pytest.raises(ValueError, match="describes weights"):
        structure.layer_structure(Scale(), (None, 3), weight="c")


def test_dense_subclass_inherits_and_protocol_overrides():
    class MyDense(L.Dense):
        pass

    class DiagDense(L.Dense):
        def normed_fans(self, kernel_shape):
            return 1, 1

        def normed_structure(self, input_shape):
            return LinearStructure(1, 1, 1.0, True, 7)

    shape = (None, 2, 4)
    sub = MyDense(3, dtype="float64")
    found = structure.layer_structure(sub, shape)
    assert (found.fan_in, found.fan_out, found.sharing, found.uniform) == \
        brute_force_structure(sub, shape)
    assert structure.kernel_fans(sub, (4, 3)) == (4, 3)
    assert structure.layer_structure(DiagDense(3), shape).n_params == 7
    assert structure.kernel_fans(DiagDense(3), (4, 3)) == (1, 1)
