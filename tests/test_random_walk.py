"""Random-walk initialization (Sussillo & Abbott 2014): gains, serialization, and the unbiased
walk of the log gradient norm through a 100-layer network, against Glorot/He."""

import math

import keras
import numpy as np
import pytest

import keras_normed  # noqa: F401  (registers the "random_walk" alias)
from keras_normed.initializers import RandomWalk, random_walk_gain

N, DEPTH, SEEDS = 50, 100, 100


def test_gain_formulas():
    assert random_walk_gain("linear", 100) == pytest.approx(math.exp(1 / 200))
    assert random_walk_gain("relu", 100) == pytest.approx(math.sqrt(2) * math.exp(1.2 / 97.6))
    # max(N, 6): narrow layers use N = 6.
    assert random_walk_gain("relu", 3) == pytest.approx(math.sqrt(2) * math.exp(1.2 / 3.6))
    assert random_walk_gain("tanh", 50) == pytest.approx(1.15)
    with pytest.raises(ValueError, match="nonlinearity"):
        random_walk_gain("gelu", 10)
    # Names are case-insensitive (as Normed's); a width is a whole number, said as given.
    assert random_walk_gain("ReLU", 100) == random_walk_gain("relu", 100)
    assert RandomWalk("ReLU").nonlinearity == "relu"
    with pytest.raises(TypeError, match=r"`n` must be an integer >= 1, got 1.5"):
        random_walk_gain("relu", 1.5)
    with pytest.raises(ValueError, match=r"`n` must be an integer >= 1, got 0"):
        random_walk_gain("linear", 0)
    assert random_walk_gain("linear", np.int64(100)) == random_walk_gain("linear", 100)


def test_std_seed_and_config():
    init = RandomWalk("relu", seed=3)
    w = np.asarray(init((400, 300)))
    expected = random_walk_gain("relu", 400) / math.sqrt(400)
    assert w.std() == pytest.approx(expected, rel=0.02)
    assert abs(w.mean()) < 4 * expected / math.sqrt(w.size)  # 4 sigma: any backend's draw
    np.testing.assert_array_equal(w, np.asarray(RandomWalk("relu", seed=3)((400, 300))))
    assert not np.array_equal(w, np.asarray(RandomWalk("relu", seed=4)((400, 300))))
    clone = RandomWalk.from_config(init.get_config())
    assert clone.get_config() == {"nonlinearity": "relu", "gain": None, "seed": 3}
    np.testing.assert_array_equal(w, np.asarray(clone((400, 300))))
    assert isinstance(keras.initializers.get("random_walk"), RandomWalk)
    restored = keras.initializers.deserialize(keras.initializers.serialize(init))
    assert isinstance(restored, RandomWalk) and restored.seed == 3
    with pytest.raises(ValueError, match="nonlinearity"):
        RandomWalk("sigmoid")
    with pytest.raises(ValueError, match="gain"):
        RandomWalk(gain=-1.0)


def test_fan_in_from_layer():
    """Inside a Conv2D, N is the layer's fan-in (k*k*c_in), as structure.kernel_fans says."""
    layer = keras.layers.Conv2D(64, 3, kernel_initializer=RandomWalk("linear", seed=0))
    layer.build((None, 8, 8, 32))
    fan_in = 3 * 3 * 32
    expected = random_walk_gain("linear", fan_in) / math.sqrt(fan_in)
    assert float(np.std(layer.kernel.numpy())) == pytest.approx(expected, rel=0.03)


def _walks(make_init, nonlinearity):
    """ln(|delta_0|^2 / |delta_D|^2) per seed after back-propagating a random error through a
    random net of DEPTH square layers of width N (all seeds at once)."""
    # One (N, N * DEPTH * SEEDS) kernel has fan-in N; its column blocks are the layers.
    big = np.asarray(make_init(0)((N, N * DEPTH * SEEDS)))
    kernels = big.reshape(N, SEEDS, DEPTH, N).transpose(1, 2, 0, 3)  # (seed, layer, in, out)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((SEEDS, N)).astype(np.float32)
    pre = []
    for d in range(DEPTH):
        a = np.matmul(x[:, None, :], kernels[:, d])[:, 0]
        pre.append(a)
        x = {"relu": np.maximum(a, 0.0), "tanh": np.tanh(a)}.get(nonlinearity, a)
    delta = rng.standard_normal((SEEDS, N)).astype(np.float32)
    start = np.log(np.sum(delta.astype(np.float64) ** 2, axis=1))
    for d in reversed(range(DEPTH)):
        dphi = {"relu": (pre[d] > 0).astype(np.float32),
                "tanh": 1.0 - np.tanh(pre[d]) ** 2}.get(nonlinearity, 1.0)
        delta = np.matmul(kernels[:, d], (dphi * delta)[:, :, None])[:, :, 0]
    return np.log(np.sum(delta.astype(np.float64) ** 2, axis=1)) - start


@pytest.mark.parametrize("nonlinearity, baseline", [
    ("linear", lambda s: keras.initializers.LecunNormal(seed=s)),  # = Glorot for square layers
    ("relu", lambda s: keras.initializers.HeNormal(seed=s)),
])
def test_log_gradient_norm_is_unbiased_walk(nonlinearity, baseline):
    walk = _walks(lambda s: RandomWalk(nonlinearity, seed=s), nonlinearity)
    base = _walks(baseline, nonlinearity)
    assert np.all(np.isfinite(walk)) and np.all(np.isfinite(base))
    sem = walk.std() / math.sqrt(SEEDS)
    # Unbiased: the mean drift over 100 layers is zero within its standard error...
    assert abs(walk.mean()) < 4 * sem
    # ...while Glorot (linear) and He (ReLU) drift down by ~D/N and ~2.4 D/N (-2 and -5 here).
    assert base.mean() < -4 * base.std() / math.sqrt(SEEDS)
    assert abs(walk.mean()) < abs(base.mean()) / 3
    if nonlinearity == "linear":
        # The walk's variance grows like D * 2/N (Var ln chi^2_N / N ~ 2/N per layer).
        assert 0.5 < walk.var() / (2 * DEPTH / N) < 2.0


def test_tanh_gain_reduces_drift():
    """tanh has no closed form; g = 1.15 removes most of Glorot's (g = 1) drift. The ideal g
    depends slightly on N (zero drift at N = 100; at N = 50 some drift remains)."""
    walk = _walks(lambda s: RandomWalk("tanh", seed=s), "tanh")
    base = _walks(lambda s: keras.initializers.LecunNormal(seed=s), "tanh")
    assert base.mean() < -4 * base.std() / math.sqrt(SEEDS)
    assert abs(walk.mean()) < abs(base.mean()) / 2


def test_figure_script(tmp_path, capsys):
    """examples/random_walk_figure.py (the docs' figure) writes a PNG, and its printed drifts
    show the random-walk gain drifting less than the usual one for each nonlinearity."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).parents[1] / "examples" / "random_walk_figure.py"
    spec = importlib.util.spec_from_file_location("random_walk_figure", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "rw.png"
    assert module.main(["--output", str(out)]) == 0
    assert out.stat().st_size > 20_000
    drifts = {}
    for line in capsys.readouterr().out.splitlines():
        if " drift " in line:
            name, rest = line.split(maxsplit=1)
            drifts.setdefault(name, []).append(float(rest.split(" drift ")[1].split()[0]))
    assert set(drifts) == {"linear", "relu", "tanh"}
    for name, (walk, base) in drifts.items():
        assert abs(walk) < abs(base) / 2, name
