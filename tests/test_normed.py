"""Normed initializer: He/Xavier-correct variance of the effective operator, config, seeds."""

import math

import keras
import numpy as np
import pytest

import keras_normed
from keras_normed.initializers import Normed


def _std(layer):
    return float(np.std(keras.ops.convert_to_numpy(layer.kernel)))


def _built(layer, shape):
    layer.build(shape)
    return layer


def test_string_alias_and_default():
    assert isinstance(keras.initializers.get("normed"), Normed)
    layer = keras.layers.Dense(8, kernel_initializer="normed")
    assert isinstance(layer.kernel_initializer, Normed)


@pytest.mark.parametrize("make,shape,reference", [
    (lambda init: keras.layers.Dense(300, kernel_initializer=init), (None, 400),
     keras.initializers.HeNormal),
    (lambda init: keras.layers.Conv2D(64, 3, kernel_initializer=init), (None, 16, 16, 40),
     keras.initializers.HeNormal),
])
def test_he_statistics(make, shape, reference):
    normed = _built(make(Normed("relu", seed=1)), shape)
    he = _built(make(reference(seed=2)), shape)
    assert _std(normed) == pytest.approx(_std(he), rel=0.02)
    fan_in = math.prod(normed.kernel.shape[:-1])
    assert _std(normed) == pytest.approx(math.sqrt(2.0 / fan_in), rel=0.02)


@pytest.mark.parametrize("make,shape", [
    (lambda init: keras.layers.Dense(300, kernel_initializer=init), (None, 400)),
    (lambda init: keras.layers.Conv2D(64, 3, kernel_initializer=init), (None, 16, 16, 40)),
])
def test_glorot_statistics(make, shape):
    normed = _built(make(Normed("linear", mode="fan_avg", seed=1)), shape)
    glorot = _built(make(keras.initializers.GlorotNormal(seed=2)), shape)
    assert _std(normed) == pytest.approx(_std(glorot), rel=0.02)


def test_circulant_dense_effective_fan_in():
    from keras_normed.layers import CirculantDense

    n_in, units, block = 512, 256, 128
    layer = _built(CirculantDense(units, block_size=block, kernel_initializer=Normed(seed=3)),
                   (None, n_in))
    # The effective matrix is n_in x units and every output sees all n_in inputs: He asks for
    # std sqrt(2 / n_in), whatever the (n_in/B, units/B, B) kernel tensor's shape says.
    assert _std(layer) == pytest.approx(math.sqrt(2.0 / n_in), rel=0.03)
    he = _built(CirculantDense(units, block_size=block,
                               kernel_initializer=keras.initializers.HeNormal(seed=3)),
                (None, n_in))
    assert abs(_std(he) / _std(layer) - 1) > 0.3  # shape-based fans get it wrong
    # Effective operator check with a numpy construction: Var(y_j) = 2 Var(x) for ReLU gain.
    x = np.random.default_rng(0).standard_normal((256, n_in)).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x))
    assert np.var(y) == pytest.approx(2.0, rel=0.15)


def test_bare_shape_falls_back_to_shape_fans():
    values = keras.ops.convert_to_numpy(Normed(seed=4)((3, 3, 16, 32)))
    assert np.std(values) == pytest.approx(math.sqrt(2.0 / (9 * 16)), rel=0.03)
    assert np.abs(values).max() <= 2 * math.sqrt(2.0 / 144) / 0.8796 + 1e-6  # truncated


@pytest.mark.parametrize("distribution", ["truncated_normal", "normal", "uniform"])
def test_distributions_and_modes(distribution):
    shape = (200, 100)
    for mode, fan in [("fan_in", 200), ("fan_out", 100), ("fan_avg", 150)]:
        v = keras.ops.convert_to_numpy(Normed("tanh", mode=mode, distribution=distribution,
                                              seed=5)(shape))
        assert np.std(v) == pytest.approx(5 / 3 / math.sqrt(fan), rel=0.03)
    if distribution == "uniform":
        assert np.abs(v).max() <= math.sqrt(3) * 5 / 3 / math.sqrt(150) + 1e-6


def test_seeds():
    a = keras.ops.convert_to_numpy(Normed(seed=7)((30, 20)))
    b = keras.ops.convert_to_numpy(Normed(seed=7)((30, 20)))
    c = keras.ops.convert_to_numpy(Normed(seed=8)((30, 20)))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    unseeded = Normed()
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(unseeded((5, 5))),
                                  keras.ops.convert_to_numpy(unseeded((5, 5))))
    assert unseeded.get_config()["seed"] is None


def test_config_round_trip():
    init = Normed("tanh", gain=1.3, mode="fan_avg", distribution="uniform", seed=3, scale=0.5)
    config = init.get_config()
    assert config == {"nonlinearity": "tanh", "gain": 1.3, "mode": "fan_avg",
                      "distribution": "uniform", "seed": 3, "scale": 0.5, "rescaled": False}
    again = keras.initializers.deserialize(keras.initializers.serialize(init))
    assert isinstance(again, Normed) and again.get_config() == config
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(init((6, 4))),
                                  keras.ops.convert_to_numpy(again((6, 4))))
    assert keras_normed.Normed is Normed


@pytest.mark.parametrize("kwargs,error", [
    ({"gain": -1.0}, ValueError), ({"gain": float("nan")}, ValueError),
    ({"gain": float("inf")}, ValueError), ({"gain": 0.0}, ValueError),
    ({"gain": "big"}, TypeError), ({"gain": True}, TypeError),
    ({"nonlinearity": "softsign"}, ValueError), ({"nonlinearity": 3}, TypeError),
    ({"distribution": "cauchy"}, ValueError), ({"mode": "fan_max"}, ValueError),
    ({"seed": 1.5}, TypeError), ({"scale": -2.0}, ValueError),
])
def test_validation(kwargs, error):
    with pytest.raises(error):
        Normed(**kwargs)


def test_explicit_gain_overrides_unknown_nonlinearity():
    v = keras.ops.convert_to_numpy(Normed("softsign", gain=1.0, distribution="normal",
                                          seed=1)((400, 50)))
    assert np.std(v) == pytest.approx(1 / 20, rel=0.03)


@pytest.mark.parametrize("name,alias", [("Normed", "normed"),
                                        ("DeltaOrthogonal", "delta_orthogonal"),
                                        ("RandomWalk", "random_walk")])
def test_class_name_resolves_like_keras_builtins(name, alias):
    assert type(keras.initializers.get("HeNormal")).__name__ == "HeNormal"
    cls = getattr(keras_normed.initializers, name)
    for key in (name, alias):
        assert type(keras.initializers.get(key)) is cls
        assert type(keras.layers.Dense(3, kernel_initializer=key).kernel_initializer) is cls


@pytest.mark.parametrize("distribution,keras_init", [
    ("truncated_normal", lambda s: keras.initializers.HeNormal(seed=s)),
    ("normal", lambda s: keras.initializers.VarianceScaling(
        2.0, "fan_in", "untruncated_normal", seed=s)),
    ("uniform", lambda s: keras.initializers.HeUniform(seed=s)),
])
def test_same_draws_as_keras_variance_scaling(distribution, keras_init):
    """On a bare shape Normed is He: the very values of Keras's VarianceScaling, same seed."""
    for seed in (0, 9):
        ours = keras.ops.convert_to_numpy(Normed(distribution=distribution, seed=seed)((30, 20)))
        theirs = keras.ops.convert_to_numpy(keras_init(seed)((30, 20)))
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)


def test_huge_scale_is_refused_not_inf():
    with pytest.raises(ValueError, match="`scale`=1e\\+308"):
        Normed(scale=1e308)
    with pytest.raises(ValueError, match="`scale`"):
        Normed(gain=1e300, scale=1e10, distribution="uniform")
    init = Normed(scale=1e39)  # finite std, but its float32 draws would be inf
    with pytest.raises(ValueError, match="`scale`=1e\\+39 is too large for a float32"):
        init((4, 4))
    with pytest.raises(ValueError, match="`scale`"):
        keras.layers.Dense(4, kernel_initializer=init).build((None, 4))
    values = keras.ops.convert_to_numpy(init((4, 4), dtype="float64"))
    assert np.isfinite(values).all() and np.abs(values).max() > 1e37
    with pytest.raises(ValueError, match="`scale`=1e-45 is too small"):
        Normed(scale=1e-45)((4, 4))


@pytest.mark.parametrize("text,expected", [("false", False), ("False", False),
                                           ("TRUE", True), ("true", True), (False, False),
                                           (np.bool_(True), True)])
def test_rescaled_parsed_strictly(text, expected):
    init = Normed.from_config({"rescaled": text, "seed": 1})
    assert init.rescaled is expected and init.get_config()["rescaled"] is expected


@pytest.mark.parametrize("value,error", [("no", ValueError), ("", ValueError), (1, TypeError),
                                         (0, TypeError), (None, TypeError), (1.0, TypeError)])
def test_rescaled_rejects_anything_else(value, error):
    with pytest.raises(error, match="`rescaled`"):
        Normed(rescaled=value)


def test_rescaled_string_from_a_keras_file(tmp_path):
    import zipfile

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(
        3, kernel_initializer=Normed(seed=1, rescaled=True))])
    path = tmp_path / "m.keras"
    model.save(path)
    edited = tmp_path / "edited.keras"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(edited, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                text = data.decode()
                assert '"rescaled": true' in text
                data = text.replace('"rescaled": true', '"rescaled": "false"').encode()
            dst.writestr(item, data)
    loaded = keras.saving.load_model(edited)
    assert loaded.layers[-1].kernel_initializer.rescaled is False


def _circulant_layer(init):
    from keras_normed.layers import CirculantDense

    layer = CirculantDense(12, block_size=4, kernel_initializer=init)
    layer.build((None, 20))
    return layer


@pytest.mark.parametrize("distribution", ["truncated_normal", "normal", "uniform"])
@pytest.mark.parametrize("seed", [7, None, "generator"])
def test_rescaled_copy_draws_the_same_values_times_factor(seed, distribution):
    generator = keras.random.SeedGenerator(4) if seed == "generator" else None
    init = Normed("tanh", distribution=distribution, scale=0.5,
                  seed=generator if generator is not None else seed)
    layer = _circulant_layer(init)  # fans from the layer (20, 12), not from the kernel shape
    shape = tuple(layer.kernel.shape)
    copy = init.rescaled_copy(3.0)
    assert isinstance(copy, Normed) and copy is not init
    assert copy.scale == pytest.approx(1.5) and copy.rescaled is True
    assert init.scale == 0.5 and init.rescaled is False  # the original is unchanged
    assert copy.get_config()["seed"] == init.get_config()["seed"]
    assert copy.draw_seed is init.draw_seed
    state = None if generator is None else keras.ops.convert_to_numpy(generator.state)
    base = keras.ops.convert_to_numpy(init.sample(shape, layer=layer))
    if generator is not None:
        generator.state.assign(state)  # the same generator state draws the same values
    scaled = keras.ops.convert_to_numpy(copy.sample(shape, layer=layer))
    np.testing.assert_allclose(scaled, 3.0 * base, rtol=1e-6, atol=1e-9)
    assert copy.stddev(shape, layer) == pytest.approx(3.0 * init.stddev(shape, layer))


def test_rescaled_copy_validates_factor():
    init = Normed(seed=1)
    for factor, error in ((0.0, ValueError), (-1.0, ValueError), (float("nan"), ValueError),
                          ("2", TypeError)):
        with pytest.raises(error, match="`factor`"):
            init.rescaled_copy(factor)
    with pytest.raises(ValueError, match="`factor`.*`scale`"):
        init.rescaled_copy(1e308)


def _handed_over_cases():
    from keras_normed.layers import (
        CirculantConv2D,
        CirculantDense,
        PeriodicConv2D,
        WeightNormalization,
    )

    return [  # (make(init), input shape, effective fan_in, the layer owning the kernel)
        (lambda i: CirculantDense(256, block_size=128, kernel_initializer=i), (None, 512), 512,
         lambda layer: layer),
        (lambda i: CirculantConv2D(64, 3, block_size=16, kernel_initializer=i),
         (None, 8, 8, 32), 9 * 32, lambda layer: layer),
        (lambda i: PeriodicConv2D(8, 5, kernel_initializer=i), (None, 16, 16, 4), 25 * 4,
         lambda layer: layer),
        (lambda i: WeightNormalization(keras.layers.Dense(30, kernel_initializer=i)),
         (None, 40), 40, lambda layer: layer.layer),
    ]


def test_package_layers_hand_their_structure_to_the_initializer(monkeypatch):
    """The package's layers pass add_weight the initializer bound to the layer and the weight's
    name: the call stack is not read, the fans are the effective ones, the draw is remembered."""
    from keras_normed import _keras_compat

    def no_stack(*args, **kwargs):
        raise AssertionError("the call stack was read")

    monkeypatch.setattr(_keras_compat, "building_layer", no_stack)
    for make, shape, fan_in, owner in _handed_over_cases():
        init = Normed(seed=3)
        layer = owner(_built(make(init), shape))
        kernel = tuple(layer.kernel.shape)
        assert init.stddev(kernel, layer, "kernel") == pytest.approx(math.sqrt(2.0 / fan_in))
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.kernel),
                                      keras.ops.convert_to_numpy(init.sample(kernel, layer=layer)))
        assert init.drew(layer.kernel) is True


def test_keras_layers_are_found_on_the_call_stack():
    init = Normed(seed=4)
    layer = _built(keras.layers.Conv2DTranspose(6, 4, strides=2, padding="same",
                                                kernel_initializer=init), (None, 5, 5, 5))
    fans = keras_normed.structure.kernel_fans(layer, layer.kernel.shape)
    assert fans == (20, 96) and fans != keras_normed.structure.shape_fans(layer.kernel.shape)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.kernel),
                                  keras.ops.convert_to_numpy(init.sample(layer.kernel.shape,
                                                                         layer=layer)))
    assert init.drew(layer.kernel) is True


def test_subclassed_model_built_by_its_call_gets_layer_fans():
    """Keras defers the variables of a subclassed model built by its first call; the layer
    owning each one is found inside the model on the stack: effective fans, no warning."""
    import warnings

    init = Normed(seed=7)

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.up = keras.layers.Conv2DTranspose(6, 4, strides=2, padding="same",
                                                   kernel_initializer=init)

        def call(self, x):
            return self.up(x)

    net = Net()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        net(np.zeros((1, 5, 5, 5), "float32"))
    conv, shape = net.up, tuple(net.up.kernel.shape)
    assert keras_normed.structure.kernel_fans(conv, shape) != \
        keras_normed.structure.shape_fans(shape)
    drawn = keras.ops.convert_to_numpy(conv.kernel)
    np.testing.assert_array_equal(drawn, keras.ops.convert_to_numpy(
        init.sample(shape, layer=conv)))
    assert not np.allclose(drawn, keras.ops.convert_to_numpy(init.sample(shape)))


def test_deferred_initialization_warns_once_and_uses_shape_fans():
    """A Keras layer built in a stateless scope initializes its variables on leaving it, with
    no layer on the stack: shape fans, and a warning once per initializer. The package's
    layers handed their structure over and need no stack."""
    from keras_normed.layers import CirculantDense

    init, circulant_init = Normed(seed=5), Normed(seed=6)
    with pytest.warns(UserWarning, match="'kernel'.*stateless scope") as record:
        with keras.StatelessScope():
            conv = keras.layers.Conv2DTranspose(6, 4, strides=2, kernel_initializer=init)
            conv.build((None, 5, 5, 5))
            circulant = CirculantDense(256, block_size=128, kernel_initializer=circulant_init)
            circulant.build((None, 512))
    assert len(record) == 1
    shape = tuple(conv.kernel.shape)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(conv.kernel),
                                  keras.ops.convert_to_numpy(init.sample(shape)))
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(circulant.kernel), keras.ops.convert_to_numpy(
            circulant_init.sample(circulant.kernel.shape, layer=circulant)))
    assert init.drew(conv.kernel) is True and circulant_init.drew(circulant.kernel) is True
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with keras.StatelessScope():  # the same initializer again: no second warning
            keras.layers.Dense(3, kernel_initializer=init).build((None, 4))


def test_an_integer_dtype_is_refused_by_name_and_choices_ignore_case():
    with pytest.raises(ValueError, match="`dtype` must be a float dtype .* got 'int32'"):
        Normed(seed=0)((4, 4), dtype="int32")
    assert Normed(mode="FAN_IN").mode == "fan_in"
    assert Normed(distribution="Uniform").distribution == "uniform"
    from keras_normed.layers import WeightNormalization

    layer = WeightNormalization(keras.layers.Dense(3), g_initializer="NORM")
    layer.build((None, 4))
    kernel = keras.ops.convert_to_numpy(layer.layer.kernel)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.g),
                               np.linalg.norm(kernel, axis=0), rtol=1e-6)
