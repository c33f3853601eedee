"""``materialize(model)``: the same function of Keras's built-in layers only (structured kernels
expanded to dense ones), for targets without FFTs or this package (docs/deploy.md).
"""

from __future__ import annotations

from typing import Callable, List, Tuple

import keras
import numpy as np

from keras_normed import _keras_compat as compat
from keras_normed.layers import CirculantConv2D, CirculantDense, PeriodicConv2D, WeightNormalization
from keras_normed.ops.fft import circulant_to_dense

__all__ = ["materialize"]

# A rule: layer -> (its replacement, the layer in it that takes the weights, those weights).
_Replacement = Tuple[keras.layers.Layer, keras.layers.Layer, Callable[[], list]]


def _numpy(value) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(value))


def _common(layer) -> dict:  # what every replacement keeps
    return {"name": layer.name, "dtype": layer.dtype_policy, "trainable": layer.trainable}


def _dense_args(layer) -> dict:
    return {"activation": layer.activation, "use_bias": layer.use_bias,
            "activity_regularizer": layer.activity_regularizer, **_common(layer)}


def _bias(layer) -> list:
    return [_numpy(layer.bias)] if layer.bias is not None else []


def _from_circulant(layer) -> _Replacement:
    """``CirculantDense`` -> ``Dense``, ``CirculantConv2D`` -> ``Conv2D`` (in a :func:`_block`
    for channels_first), kernel materialised."""
    def weights():
        return [_numpy(circulant_to_dense(_numpy(layer.kernel), n_in, n_out)), *_bias(layer)]

    if isinstance(layer, CirculantDense):
        new = keras.layers.Dense(layer.units, **_dense_args(layer))
        n_in, n_out = layer.n_in, layer.units
        return new, new, weights
    first = layer.data_format == "channels_first"
    new = keras.layers.Conv2D(layer.filters, layer.kernel_size, strides=layer.strides,
                              padding=layer.padding, dilation_rate=layer.dilation_rate,
                              data_format="channels_last", **{**_dense_args(layer), **(
                                  {"name": f"{layer.name}_conv"} if first else {})})
    n_in, n_out = layer.c_in, layer.filters
    if first:
        return _block(layer, (None, layer.c_in, None, None), new), new, weights
    return new, new, weights


def _block(layer, shape, body) -> keras.Model:
    """A functional block named as ``layer``, of input ``shape``: ``body`` in channels_last,
    transposed in and out for a channels_first layer. Keras's own channels_first Conv2D does
    not run eagerly on a CPU without oneDNN, and on TensorFlow adds its bias eagerly along the
    width where the width equals the filters; TFLite transposes NCHW convolutions anyway."""
    inp = keras.Input(batch_shape=shape, dtype=layer.compute_dtype, name=f"{layer.name}_input")
    first = layer.data_format == "channels_first"
    dtype = layer.dtype_policy
    x = keras.layers.Permute((2, 3, 1), name=f"{layer.name}_nhwc", dtype=dtype)(inp) if first \
        else inp
    y = body(x)
    if first:
        y = keras.layers.Permute((3, 1, 2), name=f"{layer.name}_nchw", dtype=dtype)(y)
    block = keras.Model(inp, y, name=layer.name)
    block.trainable = layer.trainable
    return block


def _wrap_runs(n: int, before: int, after: int) -> List[Tuple[int, int]]:
    """Indices ``(i - before) mod n``, ``i < n + before + after``, as runs ``(first, last)``."""
    idx = np.arange(-before, n + after) % n
    runs = np.split(idx, np.flatnonzero(np.diff(idx) != 1) + 1)
    return [(int(run[0]), int(run[-1])) for run in runs]


def _wrap_axis(x, n: int, before: int, after: int, rows: bool, name: str, layer):
    # Wrap-pad along rows or columns of a channels_last image (the default follows the global).
    pieces, fmt, dtype = [], "channels_last", layer.dtype_policy
    for j, (first, last) in enumerate(_wrap_runs(n, before, after)):
        if first == 0 and last == n - 1:
            pieces.append(x)
            continue
        crop = (first, n - 1 - last)
        cropping = (crop, (0, 0)) if rows else ((0, 0), crop)
        pieces.append(keras.layers.Cropping2D(cropping, data_format=fmt, name=f"{name}_{j}",
                                              dtype=dtype)(x))
    if len(pieces) == 1:
        return pieces[0]
    return keras.layers.Concatenate(axis=1 if rows else 2, name=name, dtype=dtype)(pieces)


def _from_periodic(layer: PeriodicConv2D) -> _Replacement:
    try:
        shape = tuple(layer.input.shape)
    except (AttributeError, ValueError) as err:
        raise ValueError(
            f"materialize: cannot read the input shape of layer {layer.name!r} "
            f"({type(layer).__name__}): it must be called exactly once in the model "
            f"({err}). Give the model an Input and call each PeriodicConv2D once.") from None
    h, w = shape[1:3] if layer.data_format == "channels_last" else shape[2:4]
    if h is None or w is None:
        raise ValueError(
            f"materialize: layer {layer.name!r} (PeriodicConv2D) has an input of unknown height "
            f"or width ({shape}); its wrap-around padding is built for one image size. Build the "
            "model on a fixed size (e.g. keras.Input((H, W, C))) to materialize it.")
    kh, kw = layer.kernel_size
    ch, cw = (kh - 1) // 2, (kw - 1) // 2
    conv = keras.layers.Conv2D(layer.filters, layer.kernel_size, padding="valid",
                               data_format="channels_last",
                               **{**_dense_args(layer), "name": f"{layer.name}_conv"})

    def body(x):
        x = _wrap_axis(x, h, ch, kh - 1 - ch, True, f"{layer.name}_wrap_rows", layer)
        return conv(_wrap_axis(x, w, cw, kw - 1 - cw, False, f"{layer.name}_wrap_cols", layer))

    return _block(layer, (None, *shape[1:]), body), conv, lambda: [_numpy(layer.kernel),
                                                                   *_bias(layer)]


def _from_weight_norm(layer: WeightNormalization) -> _Replacement:
    inner = layer.layer
    new = inner.__class__.from_config(
        {**_strip_package_initializers(inner.get_config()), **_common(layer)})
    return new, new, lambda: [_numpy(layer.normalized_kernel()), *_bias(inner)]


def _strip_package_initializers(config):
    """Drop ``*_initializer`` entries naming this package's initializers (recursively): the
    weights are copied anyway, and the config then loads without keras_normed."""
    if isinstance(config, dict):
        return {key: _strip_package_initializers(value) for key, value in config.items()
                if not (key.endswith("_initializer") and (value in _ALIAS_NAMES or (
                    isinstance(value, dict)
                    and str(value.get("module", "")).startswith("keras_normed"))))}
    if isinstance(config, list):
        return [_strip_package_initializers(value) for value in config]
    return config


_ALIAS_NAMES = ("normed", "delta_orthogonal", "random_walk", "Normed", "DeltaOrthogonal",
                "RandomWalk")


def _clone_other(layer) -> _Replacement:
    if type(layer).__module__.startswith("keras_normed"):
        raise TypeError(f"materialize does not know the package layer {type(layer).__name__} "
                        f"({layer.name!r}); it handles CirculantDense, CirculantConv2D, "
                        "PeriodicConv2D and WeightNormalization.")
    inside = [inner for inner in compat.all_layers(layer)[1:]
              if type(inner).__module__.startswith("keras_normed")]
    if inside:  # a clone from the config would keep them (TimeDistributed(CirculantDense))
        raise TypeError(
            f"materialize: {type(layer).__name__} {layer.name!r} holds the package's layer "
            f"{type(inside[0]).__name__} {inside[0].name!r}, which it cannot replace inside "
            "another layer (a Keras wrapper such as TimeDistributed, or a custom layer); call "
            "the package's layers from the model's graph directly (a Dense layer acts on the "
            "last axis as TimeDistributed would), or in a nested Sequential/functional model.")
    new = layer.__class__.from_config(_strip_package_initializers(layer.get_config()))
    return new, new, layer.get_weights


_RULES = (((CirculantDense, CirculantConv2D), _from_circulant),
          (PeriodicConv2D, _from_periodic), (WeightNormalization, _from_weight_norm))


def materialize(model: keras.Model) -> keras.Model:
    """An equivalent model made of Keras built-in layers only (no FFT, no keras_normed class).

    What each layer becomes: docs/deploy.md. The result has the class, name, input and layer
    names of ``model`` and the same outputs (to float32 rounding: ~1e-6 relative).

    Args:
        model: a built ``keras.Sequential`` or functional ``keras.Model``.

    Returns:
        A new ``keras.Model``; ``model`` is left unchanged.

    Example:

    >>> model = keras.Sequential([keras.Input((64,)), CirculantDense(32, block_size=16)])
    >>> small = keras_normed.materialize(model)   # Dense(32) with the circulant matrix
    >>> import tensorflow as tf
    >>> converter = tf.lite.TFLiteConverter.from_keras_model(small)
    >>> converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    >>> tflite_bytes = converter.convert()   # Keras exports the model first and says where
    Saved artifact at '...'. The following endpoints are available: ...
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model, got {type(model).__name__}.")
    if not compat.is_graph_model(model):
        raise TypeError(f"`model` must be a keras.Sequential or functional keras.Model; got the "
                        f"subclassed model {type(model).__name__!r}, whose layers have no graph "
                        "to rewrite. Rebuild it as a functional model (keras.Model(inputs, "
                        "outputs)) first.")
    if not model.built or not model.inputs:
        raise ValueError(f"`model` {model.name!r} is not built: give it a keras.Input (or call "
                         "`model.build(input_shape)` on a Sequential) before materialize.")

    pending = []  # (original layer, the layer that takes its weights, the weights)

    def clone_function(layer):
        rule = next((rule for cls, rule in _RULES if isinstance(layer, cls)), _clone_other)
        replacement, target, weights = rule(layer)
        pending.append((layer, target, weights))
        return replacement

    new_model = keras.models.clone_model(model, clone_function=clone_function, recursive=True)
    for old, new, weights in pending:
        values = weights()
        if len(values) != len(new.weights):
            raise RuntimeError(  # a bug here, not the caller's: say what did not match
                f"materialize: layer {old.name!r} ({type(old).__name__}) gave {len(values)} "
                f"arrays for the {len(new.weights)} weights of its replacement "
                f"{type(new).__name__}.")
        new.set_weights([np.asarray(v, dtype=w.dtype) for v, w in zip(values, new.weights)])
    return new_model
