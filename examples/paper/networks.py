"""The four MNIST networks of Yang et al. (2021), plus a small residual network with batch norm.

``paper_net(name)`` builds, for a 28x28x1 input and 10 outputs (logits, or probabilities with
``softmax=True``), ReLU everywhere, 'same' padding:

- (a) Conv3x3(32)+MaxPool, Conv3x3(64)+MaxPool, Dense 3136->64, Dense 64->10;
- (b) the same two conv blocks, Reshape 7x7x64 -> 56x56x1, PeriodicConv2D 55x55 (one channel,
  periodic padding), Flatten, Dense 3136->10;
- (c) the same two conv blocks, Flatten, CirculantDense 3136->1568 (block 1568), Dense 1568->10;
- (d) the same two conv blocks, Conv3x3(256), two CirculantConv2D 3x3 256->256 (block 256),
  Flatten, Dense 12544->64, Dense 64->10.

``size="tiny"`` gives the same topologies on an 8x8x1 input with narrow layers, for tests.

Example::

    model = paper_net("c", kernel_initializer="normed", seed=0)
    keras_normed.rescale(model, (x[:256], y[:256]))

Reference: H. Yang et al., "A new initialization method based on normed statistical spaces in
deep networks", Inverse Problems and Imaging 15(1):147-158, 2021, Tables 1-4.
"""

from __future__ import annotations

import math
from typing import Callable, Union

import keras

from examples.paper.options import layer_seed
from examples.paper.paper import NETS
from keras_normed.initializers import Normed
from keras_normed.layers import CirculantConv2D, CirculantDense, PeriodicConv2D

__all__ = ["paper_net", "residual_net", "make_initializer", "NETS", "INITIALIZERS"]

INITIALIZERS = ("normed", "he", "glorot")

# size -> (input side, conv1 channels, conv2 channels, hidden units of (a)/(d), conv3 of (d),
#          circulant block of (d))
_SIZES = {"paper": (28, 32, 64, 64, 256, 256), "tiny": (8, 4, 16, 16, 32, 8)}

InitSpec = Union[str, keras.initializers.Initializer, Callable[[int, bool], object]]


def make_initializer(spec: InitSpec, seed: int, index: int, last: bool = False):
    """A fresh kernel initializer for the ``index``-th layer, seeded ``layer_seed(seed, index)``.

    ``spec``: ``"normed"`` (ReLU gain, linear gain on the output layer), ``"he"`` /
    ``"he_normal"``, ``"glorot"`` / ``"xavier"`` / ``"glorot_normal"``, any other Keras
    initializer name (given the seed), an initializer instance (used as is), or a callable
    ``(index, last) -> initializer``.
    """
    s = layer_seed(seed, index)
    if callable(spec) and not isinstance(spec, keras.initializers.Initializer):
        return spec(index, last)
    if isinstance(spec, keras.initializers.Initializer):
        return spec
    name = str(spec).lower()
    if name == "normed":
        return Normed("linear" if last else "relu", seed=s)
    if name in ("he", "he_normal"):
        return keras.initializers.HeNormal(seed=s)
    if name in ("glorot", "xavier", "glorot_normal"):
        return keras.initializers.GlorotNormal(seed=s)
    init = keras.initializers.get(name)
    if hasattr(init, "seed"):
        config = init.get_config()
        if "seed" in config:
            config["seed"] = s
            init = init.__class__.from_config(config)
    return init


def paper_net(name: str, kernel_initializer: InitSpec = "normed", seed: int = 0,
              softmax: bool = False, size: str = "paper") -> keras.Model:
    """One of the paper's four networks (see the module docstring), built (a Functional model).

    Args:
        name: "a", "b", "c" or "d".
        kernel_initializer: see :func:`make_initializer`.
        seed: seeds every kernel initializer (layer ``i`` gets ``layer_seed(seed, i)``).
        softmax: end with a softmax (probabilities) instead of logits.
        size: "paper" (28x28x1 input) or "tiny" (8x8x1, narrow; for tests).
    """
    if name not in NETS:
        raise ValueError(f"Unknown net {name!r}; expected one of {NETS}.")
    if size not in _SIZES:
        raise ValueError(f"Unknown size {size!r}; expected one of {sorted(_SIZES)}.")
    side, c1, c2, hidden, c3, block_d = _SIZES[size]
    counter = iter(range(100))

    def init(last=False):
        return make_initializer(kernel_initializer, seed, next(counter), last)

    inputs = keras.Input((side, side, 1))
    h = keras.layers.Conv2D(c1, 3, padding="same", activation="relu", kernel_initializer=init(),
                            name="conv1")(inputs)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Conv2D(c2, 3, padding="same", activation="relu", kernel_initializer=init(),
                            name="conv2")(h)
    h = keras.layers.MaxPooling2D(2)(h)
    flat = (side // 4) ** 2 * c2
    if name == "a":
        h = keras.layers.Flatten()(h)
        h = keras.layers.Dense(hidden, activation="relu", kernel_initializer=init(),
                               name="fc1")(h)
    elif name == "b":
        big = math.isqrt(flat)
        h = keras.layers.Reshape((big, big, 1))(h)
        h = PeriodicConv2D(1, big - 1, activation="relu",
                                           kernel_initializer=init(), name="periodic")(h)
        h = keras.layers.Flatten()(h)
    elif name == "c":
        h = keras.layers.Flatten()(h)
        h = CirculantDense(flat // 2, block_size=flat // 2, activation="relu",
                                           kernel_initializer=init(), name="circulant")(h)
    else:
        h = keras.layers.Conv2D(c3, 3, padding="same", activation="relu",
                                kernel_initializer=init(), name="conv3")(h)
        for k in (1, 2):
            h = CirculantConv2D(c3, 3, block_size=block_d, padding="same",
                                                activation="relu", kernel_initializer=init(),
                                                name=f"circ_conv{k}")(h)
        h = keras.layers.Flatten()(h)
        h = keras.layers.Dense(hidden, activation="relu", kernel_initializer=init(),
                               name="fc1")(h)
    outputs = keras.layers.Dense(10, activation="softmax" if softmax else None,
                                 kernel_initializer=init(last=True), name="logits")(h)
    return keras.Model(inputs, outputs, name=f"paper_net_{name}")


def residual_net(kernel_initializer: InitSpec = "normed", seed: int = 0, side: int = 8,
                 width: int = 8, blocks: int = 2, batch_norm: bool = True) -> keras.Model:
    """A small ResNet: Conv-BN-ReLU stem, ``blocks`` residual blocks
    ``x + BN(Conv(ReLU(BN(Conv(x)))))``, global average pooling, Dense -> 10 logits."""
    counter = iter(range(100))

    def init(last=False):
        return make_initializer(kernel_initializer, seed, next(counter), last)

    def norm(h):
        return keras.layers.BatchNormalization()(h) if batch_norm else h

    inputs = keras.Input((side, side, 1))
    h = keras.layers.Conv2D(width, 3, padding="same", use_bias=not batch_norm,
                            kernel_initializer=init())(inputs)
    h = keras.layers.Activation("relu")(norm(h))
    for _ in range(blocks):
        r = keras.layers.Conv2D(width, 3, padding="same", use_bias=not batch_norm,
                                kernel_initializer=init())(h)
        r = keras.layers.Activation("relu")(norm(r))
        r = keras.layers.Conv2D(width, 3, padding="same", use_bias=not batch_norm,
                                kernel_initializer=init())(r)
        h = keras.layers.Activation("relu")(keras.layers.Add()([h, norm(r)]))
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(10, kernel_initializer=init(last=True))(h)
    return keras.Model(inputs, outputs, name="residual_net")
