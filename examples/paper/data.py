"""Handwritten-digit data for the experiments, online or offline.

Sources (``source="auto"``: the first if its folder holds MNIST, else the last; ``"keras"``
only when asked, as it may need the internet):

1. ``"mnist-dir"``: MNIST IDX files (``t10k-images-idx3-ubyte.gz``, ...) in a folder given by
   ``data_dir`` or the ``KERAS_NORMED_MNIST_DIR`` environment variable;
2. ``"keras"``: ``keras.datasets.mnist`` (needs internet the first time);
3. ``"sklearn"``: scikit-learn's bundled 8x8 digits (1,797 images, always offline), resized to
   28x28 so the papers' networks apply unchanged.

A folder or download that cannot be read raises :class:`~examples.paper.options.OptionError`
(a ``ValueError``; the commands print it as one line).
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import struct
from typing import Optional

import numpy as np

from examples.paper.options import (
    ENV_VAR,
    MNIST_SPLITS,
    SOURCES,
    OptionError,
    has_mnist,
    idx_file,
)

__all__ = ["ENV_VAR", "SOURCES", "Digits", "read_idx", "load_digits", "batches"]


@dataclasses.dataclass
class Digits:
    """Images as float32 in [0, 1], shape (n, 28, 28, 1); labels int32 in 0..9."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str

    def describe(self) -> str:
        return (f"{self.source}: {len(self.x_train)} train / {len(self.x_test)} test images, "
                f"28x28x1")


def read_idx(path: str) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) as a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file.")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path}: expected {int(np.prod(dims))} values, found {arr.size}.")
    return arr.reshape(dims)


def _from_mnist_dir(data_dir: str):
    """All images found in the folder (train split if present, then test split)."""
    xs, ys = [], []
    for prefix in MNIST_SPLITS:
        images = idx_file(data_dir, f"{prefix}-images-idx3-ubyte")
        labels = idx_file(data_dir, f"{prefix}-labels-idx1-ubyte")
        if images and labels:
            xs.append(read_idx(images))
            ys.append(read_idx(labels))
        elif images or labels:
            raise FileNotFoundError(f"{images or labels!r} has no "
                                    f"{'labels' if images else 'images'} file beside it")
    if not xs:
        raise FileNotFoundError("no MNIST IDX files (e.g. t10k-images-idx3-ubyte.gz and "
                                "t10k-labels-idx1-ubyte.gz)")
    return np.concatenate(xs), np.concatenate(ys)


def _from_keras():
    import keras

    (x_tr, y_tr), (x_te, y_te) = keras.datasets.mnist.load_data()
    return np.concatenate([x_tr, x_te]), np.concatenate([y_tr, y_te])


def _from_sklearn():
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0  # 8x8, values 0..16
    # Bilinear upsampling 8x8 -> 28x28 without extra dependencies.
    grid = (np.arange(28) + 0.5) * 8 / 28 - 0.5
    lo = np.clip(np.floor(grid).astype(int), 0, 7)
    hi = np.clip(lo + 1, 0, 7)
    w = np.clip(grid - lo, 0, 1).astype(np.float32)
    rows = images[:, lo, :] * (1 - w)[None, :, None] + images[:, hi, :] * w[None, :, None]
    out = rows[:, :, lo] * (1 - w)[None, None, :] + rows[:, :, hi] * w[None, None, :]
    return (out * 255).astype(np.uint8), digits.target.astype(np.uint8)


def load_digits(source: str = "auto", data_dir: Optional[str] = None,
                n_train: Optional[int] = 8000, n_test: Optional[int] = 2000,
                seed: int = 0, verbose: bool = True) -> Digits:
    """Load handwritten digits as a shuffled train/test split.

    Args:
        source: one of ``"auto"``, ``"mnist-dir"``, ``"keras"``, ``"sklearn"``.
        data_dir: folder with MNIST IDX files (defaults to ``$KERAS_NORMED_MNIST_DIR``).
        n_train, n_test: sizes of the split (``None``: 80% / 20% of what is available);
            shrunk proportionally when the source has fewer images.
        seed: seed of the shuffle.
        verbose: print which source is used.
    """
    if source not in SOURCES:
        raise ValueError(f"Unknown data source {source!r}; expected one of {SOURCES}.")
    given, data_dir = data_dir, data_dir or os.environ.get(ENV_VAR) or None
    used, note = source, ""
    if source == "auto":
        used = "mnist-dir" if has_mnist(data_dir) else "sklearn"
        if data_dir and used == "sklearn":  # a typo in the variable would go unnoticed
            note = f"; {'the folder' if given else '$' + ENV_VAR}={data_dir!r} holds no MNIST"
    if used == "mnist-dir":
        if not data_dir:
            raise OptionError(f"argument --source: mnist-dir needs --data-dir or ${ENV_VAR}")
        try:
            x, y = _from_mnist_dir(data_dir)
        except (OSError, EOFError, ValueError) as err:  # missing, truncated, not IDX
            raise OptionError(f"argument --data-dir: cannot read MNIST in {data_dir!r}: "
                              f"{err}") from None
        label = f"MNIST IDX files from {data_dir}"
    elif used == "keras":
        try:
            x, y = _from_keras()
        except Exception as err:  # noqa: BLE001 - offline: a URL fetch failure
            raise OptionError(
                f"argument --source: keras.datasets.mnist could not be loaded "
                f"({type(err).__name__}: {str(err).splitlines()[0][:120]}); it downloads once, "
                "with internet: pass --data-dir DIR (MNIST IDX files) or --source sklearn"
            ) from None
        label = "keras.datasets.mnist"
    else:
        x, y = _from_sklearn()
        label = f"scikit-learn's bundled 8x8 digits resized to 28x28 (offline{note})"
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    total = len(x)
    if n_train is None and n_test is None:
        n_train = int(0.8 * total)
        n_test = total - n_train
    n_train = n_train or 0
    n_test = n_test or 0
    if n_train + n_test > total:
        scale = total / (n_train + n_test)
        n_train = int(n_train * scale)
        n_test = total - n_train
    x = (x.astype(np.float32) / 255.0)[..., None]
    y = y.astype(np.int32)
    data = Digits(x[:n_train], y[:n_train], x[n_train:n_train + n_test],
                  y[n_train:n_train + n_test], label)
    if verbose:
        print(f"Data: {data.describe()}")
    return data


def batches(n: int, batch_size: int, steps: int, seed: int):
    """The index arrays of ``steps`` training batches of ``batch_size`` out of ``n`` examples, in
    an order shuffled by ``seed`` and shuffled again whenever fewer than a batch remain."""
    rng = np.random.default_rng(seed)
    order, pos = rng.permutation(n), 0
    for _ in range(steps):
        if pos + batch_size > n:
            order, pos = rng.permutation(n), 0
        yield order[pos:pos + batch_size]
        pos += batch_size
