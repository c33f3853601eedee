"""Tests of examples.paper.data: the IDX reader, the MNIST folder, the offline digits."""

import gzip
import os
import struct

import numpy as np
import pytest

from examples.paper.data import ENV_VAR, load_digits, read_idx

MNIST_DIR = os.environ.get(ENV_VAR)
N_SKLEARN = 1797


def write_idx(path, array: np.ndarray) -> None:
    """Write an unsigned-byte IDX file (gzip when the name ends in .gz), independently."""
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim)
    header += struct.pack(">" + "I" * array.ndim, *array.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


def write_mnist_folder(folder, n: int = 50, prefix: str = "t10k") -> None:
    """Image k is constant with value k (so the image-label pairing is checkable), label k % 10."""
    images = np.repeat(np.arange(n, dtype=np.uint8)[:, None, None], 28, axis=1)
    images = np.repeat(images, 28, axis=2)
    write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_read_idx_roundtrip(tmp_path, name):
    arr = np.random.default_rng(0).integers(0, 256, size=(3, 4, 5)).astype(np.uint8)
    write_idx(tmp_path / name, arr)
    out = read_idx(str(tmp_path / name))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, arr)


def test_read_idx_rejects_bad_files(tmp_path):
    bad_magic = tmp_path / "bad_magic"
    bad_magic.write_bytes(struct.pack(">HBBI", 0, 0x0D, 1, 2) + b"\0" * 8)  # float IDX
    with pytest.raises(ValueError, match="unsigned-byte"):
        read_idx(str(bad_magic))
    short = tmp_path / "short"
    short.write_bytes(struct.pack(">HBBI", 0, 0x08, 1, 10) + b"\1" * 3)
    with pytest.raises(ValueError, match="expected 10"):
        read_idx(str(short))


def test_mnist_folder_split_and_pairing(tmp_path):
    write_mnist_folder(tmp_path, n=50)
    d = load_digits("mnist-dir", data_dir=str(tmp_path), n_train=30, n_test=20, seed=3,
                    verbose=False)
    assert d.x_train.shape == (30, 28, 28, 1) and d.x_test.shape == (20, 28, 28, 1)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int32
    x = np.concatenate([d.x_train, d.x_test])
    y = np.concatenate([d.y_train, d.y_test])
    ks = np.rint(x[:, 0, 0, 0] * 255).astype(int)
    # Every image is used once, pixels are k / 255, and labels stay with their images.
    assert sorted(ks) == list(range(50))
    np.testing.assert_allclose(x, (ks / 255.0)[:, None, None, None] * np.ones_like(x),
                               atol=1e-7)
    np.testing.assert_array_equal(y, ks % 10)
    assert ks.tolist() != list(range(50)), "the split should be shuffled"


def test_auto_prefers_env_folder_then_sklearn(tmp_path, monkeypatch):
    write_mnist_folder(tmp_path, n=20)
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    d = load_digits("auto", n_train=10, n_test=10, verbose=False)
    assert str(tmp_path) in d.source and len(d.x_train) + len(d.x_test) == 20
    monkeypatch.delenv(ENV_VAR)
    d = load_digits("auto", n_train=None, n_test=None, verbose=False)
    assert "scikit-learn" in d.source and len(d.x_train) + len(d.x_test) == N_SKLEARN


def test_sizes_shrink_to_what_is_available(tmp_path):
    write_mnist_folder(tmp_path, n=40)
    d = load_digits("mnist-dir", data_dir=str(tmp_path), n_train=80, n_test=20, verbose=False)
    assert len(d.x_train) + len(d.x_test) == 40
    assert len(d.x_train) == 32  # 80 : 20 kept


def test_bad_source_and_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="Unknown data source"):
        load_digits("imagenet", verbose=False)
    # Read errors name the option and what is wrong (the commands print them as one line).
    with pytest.raises(ValueError, match="argument --data-dir: cannot read MNIST.*no MNIST"):
        load_digits("mnist-dir", data_dir=str(tmp_path / "missing"), verbose=False)
    with pytest.raises(ValueError, match="argument --data-dir: cannot read MNIST.*no MNIST"):
        load_digits("mnist-dir", data_dir=str(tmp_path), verbose=False)  # empty folder


def test_an_incomplete_or_corrupt_folder_and_an_offline_download_are_said_in_one_line(
        tmp_path, monkeypatch):
    """A folder with images but no labels, a truncated .gz, keras's download offline: raw
    FileNotFoundError / EOFError / URL-fetch tracebacks (83 lines) before."""
    import gzip

    from examples.paper import data as data_module
    from examples.paper.options import OptionError, has_mnist

    images = np.zeros((2, 28, 28), np.uint8)
    header = b"\x00\x00\x08\x03" + (2).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(header + images.tobytes())
    assert not has_mnist(str(tmp_path))
    with pytest.raises(OptionError, match="t10k-images-idx3-ubyte.gz' has no labels file"):
        load_digits("mnist-dir", data_dir=str(tmp_path), verbose=False)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b\x08")  # truncated
    assert has_mnist(str(tmp_path))
    with pytest.raises(OptionError, match="argument --data-dir: cannot read MNIST"):
        load_digits("mnist-dir", data_dir=str(tmp_path), verbose=False)

    def offline():
        raise Exception("URL fetch failure on https://...: None -- [Errno -2] Name unknown")

    monkeypatch.setattr(data_module, "_from_keras", offline)
    with pytest.raises(OptionError, match="--source: keras.datasets.mnist could not be loaded"
                                          ".*--data-dir DIR .* or --source sklearn"):
        load_digits("keras", verbose=False)


def test_auto_says_when_the_variable_names_no_mnist(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERAS_NORMED_MNIST_DIR", str(tmp_path / "typo"))
    data = load_digits("auto", n_train=10, n_test=10)
    assert "scikit-learn" in data.source and "typo" in capsys.readouterr().out


@pytest.fixture(scope="module")
def sklearn_all():
    return load_digits("sklearn", n_train=None, n_test=None, seed=0, verbose=False)


def test_sklearn_digits_shapes_and_range(sklearn_all):
    d = sklearn_all
    assert len(d.x_train) + len(d.x_test) == N_SKLEARN
    assert len(d.x_train) == int(0.8 * N_SKLEARN)
    assert d.x_train.shape[1:] == (28, 28, 1) and d.x_test.shape[1:] == (28, 28, 1)
    x = np.concatenate([d.x_train, d.x_test])
    assert x.min() >= 0.0 and x.max() <= 1.0 and x.max() > 0.9
    assert set(np.concatenate([d.y_train, d.y_test]).tolist()) == set(range(10))


def test_sklearn_digits_match_scipy_bilinear_resize(sklearn_all):
    """Each test image is scikit-learn's 8x8 digit resized by scipy's bilinear zoom."""
    from scipy import ndimage
    from sklearn.datasets import load_digits as sk_load_digits

    sk = sk_load_digits()
    ref = np.stack([ndimage.zoom(im / 16.0, 3.5, order=1, grid_mode=True, mode="nearest")
                    for im in sk.images]).reshape(N_SKLEARN, -1)
    x = sklearn_all.x_test.reshape(len(sklearn_all.x_test), -1)
    d2 = (x ** 2).sum(1)[:, None] - 2 * x @ ref.T + (ref ** 2).sum(1)[None, :]
    nearest = d2.argmin(axis=1)
    # uint8 quantisation: at most 1/255 per pixel.
    np.testing.assert_allclose(x, ref[nearest], atol=1.01 / 255)
    np.testing.assert_array_equal(sklearn_all.y_test, sk.target[nearest])
    assert len(set(nearest.tolist())) == len(nearest)


def test_same_seed_same_split_other_seed_other_split():
    a = load_digits("sklearn", n_train=100, n_test=50, seed=1, verbose=False)
    b = load_digits("sklearn", n_train=100, n_test=50, seed=1, verbose=False)
    c = load_digits("sklearn", n_train=100, n_test=50, seed=2, verbose=False)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_train, c.x_train)


def test_verbose_prints_source(capsys):
    load_digits("sklearn", n_train=10, n_test=10, verbose=True)
    assert "scikit-learn" in capsys.readouterr().out


@pytest.mark.skipif(not MNIST_DIR, reason=f"${ENV_VAR} not set")
def test_real_mnist_folder():
    d = load_digits("mnist-dir", data_dir=MNIST_DIR, seed=0, verbose=False)
    assert d.x_train.shape == (8000, 28, 28, 1) and d.x_test.shape == (2000, 28, 28, 1)
    for x in (d.x_train, d.x_test):
        assert x.dtype == np.float32 and x.min() == 0.0 and x.max() == 1.0
    for y in (d.y_train, d.y_test):
        assert set(y.tolist()) == set(range(10))
    # MNIST images are mostly background: a sanity check that bytes were not misread.
    assert 0.05 < d.x_train.mean() < 0.25
    again = load_digits("mnist-dir", data_dir=MNIST_DIR, seed=0, verbose=False)
    np.testing.assert_array_equal(d.x_test, again.x_test)
    np.testing.assert_array_equal(d.y_train, again.y_train)
    other = load_digits("mnist-dir", data_dir=MNIST_DIR, seed=1, verbose=False)
    assert not np.array_equal(d.y_train, other.y_train)
    # Raw files straight from the reader: 10,000 test images of 28x28.
    images = read_idx(os.path.join(MNIST_DIR, "t10k-images-idx3-ubyte.gz"))
    assert images.shape == (10000, 28, 28)

