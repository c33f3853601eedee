"""A probe batch, accepted as ``model.fit`` accepts data, or a message that says what to pass."""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any, List, Optional

import keras
import numpy as np

__all__ = ["Batch", "as_batch", "noise_batch"]

_WHAT_TO_PASS = ("Pass a batch as `model.fit` takes it: `x` (an array, a list of arrays for "
                 "several inputs or a dict keyed by input name), `(x, y)` or `(x, y, "
                 "sample_weight)` (y a list or dict for several outputs), a batched "
                 "`tf.data.Dataset` or a `keras.utils.PyDataset` (its first batch is used)")


@dataclasses.dataclass
class Batch:
    """One batch: ``x`` (structure of numpy arrays), ``y`` and ``sample_weight`` (or None)."""

    x: Any
    y: Any = None
    sample_weight: Any = None

    @property
    def size(self) -> int:
        return int(np.shape(keras.tree.flatten(self.x)[0])[0])


def _first_element(data, arg: str):
    if type(data).__module__.startswith("tensorflow") and hasattr(data, "element_spec"):
        for element in data.take(1):
            return element
        raise ValueError(f"`{arg}` is an empty tf.data.Dataset. {_WHAT_TO_PASS}.")
    if isinstance(data, keras.utils.PyDataset):
        if getattr(data, "num_batches", None) == 0:
            raise ValueError(f"`{arg}` is an empty PyDataset. {_WHAT_TO_PASS}.")
        return data[0]
    if inspect.isgenerator(data) or hasattr(data, "__next__"):
        raise TypeError(
            f"`{arg}` is a Python iterator ({type(data).__name__}); reading it would consume a "
            f"batch of your training data. Pass `next(iterator)` instead. {_WHAT_TO_PASS}.")
    return data


def _to_numpy(leaf, arg: str):
    if leaf is None:
        return None
    try:
        array = np.asarray(keras.ops.convert_to_numpy(leaf))
    except Exception as err:  # noqa: BLE001 - re-raised with the argument's name
        raise TypeError(f"`{arg}` holds a {type(leaf).__name__}, not an array or tensor. "
                        f"{_WHAT_TO_PASS}.") from err
    if array.dtype == object or array.dtype.kind in "SUV":
        raise TypeError(f"`{arg}` holds values of dtype {array.dtype} (not numbers). "
                        f"{_WHAT_TO_PASS}.")
    if np.iscomplexobj(array):
        raise TypeError(f"`{arg}` is complex ({array.dtype}); the models take real inputs: "
                        "pass the real part, or real and imaginary parts as channels.")
    if array.ndim == 0:
        raise ValueError(f"`{arg}` is a scalar; a batch needs a leading batch axis (an unbatched "
                         f"tf.data.Dataset? call `dataset.batch(n)`). {_WHAT_TO_PASS}.")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise ValueError(f"`{arg}` contains NaN or inf (non-finite) values; clean the batch first.")
    return array


def _part(arg: str, index: int, name: str) -> str:
    # growth_report(x, y) passes arg "x, y": its parts are arguments of their own.
    names = [a.strip() for a in arg.split(",")]
    return names[index] if index < len(names) > 1 else f"{arg} ({name})"


def _structure(value, arg: str):
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(leaf, (int, float, bool, np.generic)) for leaf in keras.tree.flatten(value)):
        value = np.asarray(value)  # nested Python lists of numbers: one array, as fit reads it
    return keras.tree.map_structure(lambda leaf: _to_numpy(leaf, arg), value)


def _names(tensors) -> List[str]:
    return [getattr(t, "name", "").split(":")[0] for t in tensors]


def _input_struct(model):
    """``model.input`` (a dict for a model built on a dict of Inputs), or None."""
    try:
        return model.input
    except (AttributeError, ValueError):  # a Sequential never called
        return None


def _input_names(model, inputs) -> List[str]:
    """What ``fit`` keys ``x`` by: the keys of a model built on a dict of Inputs, else names."""
    struct = _input_struct(model)
    key = {id(t): k for k, t in struct.items()} if isinstance(struct, dict) else {}
    return [key[id(t)] for t in inputs] if all(id(t) in key for t in inputs) else _names(inputs)


def _input_label(name: str) -> str:
    # An Input given no name is "keras_tensor_<n>" to Keras, unknown to the user.
    return "the model's input" if re.fullmatch(r"keras_tensor(_\d+)?", name) \
        else f"input {name!r}"


def _check_x(model, x, arg: str) -> None:
    inputs = symbolic(model, "inputs")
    if inputs is None:
        return
    leaves = keras.tree.flatten(x)
    names = _input_names(model, inputs)
    if isinstance(x, dict):
        missing = [n for n in names if n not in x]
        if missing:
            unknown = [k for k in x if k not in names]
            raise ValueError(
                f"`{arg}`: x is a dict with keys {sorted(x)}, but model {model.name!r} has inputs "
                f"named {names}: missing {missing}"
                + (f", and {unknown} name no input" if unknown else "")
                + ". Key the dict by the model's input names.")
        leaves = [x[n] for n in names]  # checked by name, in the model's input order
    elif len(leaves) != len(inputs):
        raise ValueError(
            f"`{arg}`: x holds {len(leaves)} array(s), but model {model.name!r} has {len(inputs)} "
            f"input(s) ({names}). Pass one array per input (a list in the order of "
            "`model.inputs`, or a dict keyed by input name).")
    for leaf, spec, name in zip(leaves, inputs, names):
        want, what = len(spec.shape), "x" if len(inputs) == 1 else f"x[{name!r}]"
        label = _input_label(name)
        if leaf.ndim == want - 1:
            raise ValueError(
                f"`{arg}`: {what} has shape {leaf.shape}, but {label} expects "
                f"{tuple(spec.shape)}: the batch axis is missing (an unbatched "
                "tf.data.Dataset? call `dataset.batch(n)`).")
        if leaf.ndim != want or any(
                d is not None and d != n for d, n in zip(spec.shape[1:], leaf.shape[1:])):
            raise ValueError(
                f"`{arg}`: {what} has shape {leaf.shape}, but {label} expects "
                f"{tuple(spec.shape)} (batch first). Pass arrays of that shape, one per input "
                "(a list in the order of `model.inputs`, or a dict keyed by input name).")


def _check_y(model, y, arg: str) -> None:
    outputs = symbolic(model, "outputs")
    if outputs is None or y is None:
        return
    names = list(getattr(model, "output_names", None) or _names(outputs))
    if isinstance(y, dict):
        unknown = [k for k in y if k not in names]
        if unknown:
            raise ValueError(f"`{arg}`: y has keys {unknown} that name no output of model "
                             f"{model.name!r}. Pass targets keyed by its outputs {names}.")
        pairs = [(f"y[{k!r}]", y[k], outputs[names.index(k)]) for k in y
                 if len(names) == len(outputs)]
    else:
        flat = keras.tree.flatten(y)
        if len(flat) != len(outputs):
            raise ValueError(f"`{arg}`: y holds {len(flat)} array(s), but model {model.name!r} "
                             f"has {len(outputs)} output(s). Pass one target per output (a list "
                             "in output order, or a dict keyed by output name).")
        pairs = [(f"y[{i}]" if len(flat) > 1 else "y", leaf, spec)
                 for i, (leaf, spec) in enumerate(zip(flat, outputs))]
    for label, leaf, spec in pairs:
        want = tuple(spec.shape)
        if leaf is not None and leaf.ndim == len(want) and leaf.shape[-1] != 1 and any(
                d is not None and d != k for d, k in zip(want[1:], leaf.shape[1:])):
            raise ValueError(
                f"`{arg}`: {label} has shape {leaf.shape}, but the output it is for has shape "
                f"{want} in model {model.name!r}. Pass targets of the output's shape (or class "
                "indices), each for its output (a list in the order of `model.outputs`, or a "
                "dict keyed by output name).")
        units = want[-1] if len(want) >= 2 else None
        index_shaped = leaf is not None and (leaf.ndim == len(want) - 1 or (
            leaf.ndim == len(want) and leaf.shape[-1] == 1))
        if units and units > 1 and index_shaped and np.issubdtype(leaf.dtype, np.integer) \
                and leaf.size and (leaf.min() < 0 or leaf.max() >= units):
            raise ValueError(
                f"`{arg}`: {label} holds class indices from {leaf.min()} to {leaf.max()}, but "
                f"the output it is for has {units} units in model {model.name!r}. Pass "
                f"indices in [0, {units}) (or one-hot rows of the output's shape).")


def symbolic(model, attr: str) -> Optional[list]:
    """``model.inputs`` or ``model.outputs`` (``attr``) as a list, or None when Keras has none."""
    try:
        value = getattr(model, attr)
    except (AttributeError, ValueError):
        return None
    return list(value) if value else None


def as_batch(model, data, *, need_y: bool, arg: str = "data", min_size: int = 1) -> Batch:
    """``data`` as a :class:`Batch` checked against ``model``'s inputs and outputs.

    Raises TypeError/ValueError naming ``arg``, saying what was received and what to pass.
    """
    if isinstance(data, Batch):  # made by as_batch already
        return data
    if data is None:
        raise ValueError(f"`{arg}` is None. {_WHAT_TO_PASS}.")
    if isinstance(data, (str, bytes)):
        raise TypeError(f"`{arg}` is a string ({data[:40]!r}). {_WHAT_TO_PASS}.")
    element = _first_element(data, arg)
    if isinstance(element, (list, tuple)):
        if len(element) > 3 or not element:
            raise ValueError(f"`{arg}` is a sequence of {len(element)} items; a batch is `x`, "
                             f"`(x, y)` or `(x, y, sample_weight)`. {_WHAT_TO_PASS}.")
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(tuple(element))
        n_inputs = len(symbolic(model, "inputs") or [])
        if n_inputs > 1 and len(element) == n_inputs and isinstance(element, list):
            # fit(x=[a, b]) means two inputs, not (x, y).
            x, y, sample_weight = list(element), None, None
    else:
        x, y, sample_weight = element, None, None
    if x is None:
        raise ValueError(f"`{arg}` has no inputs. {_WHAT_TO_PASS}.")
    x = _structure(x, arg if y is None else _part(arg, 0, "x"))  # None stays None
    y = _structure(y, _part(arg, 1, "y"))
    sample_weight = _structure(sample_weight, _part(arg, 2, "sample_weight"))
    if need_y and y is None:
        raise ValueError(f"`{arg}` holds inputs only, but this step needs targets to compute "
                         f"the loss. Pass `(x, y)`. {_WHAT_TO_PASS}.")
    _check_x(model, x, arg)
    _check_y(model, y, arg)
    sizes = {int(leaf.shape[0]) for part in (x, y, sample_weight) if part is not None
             for leaf in keras.tree.flatten(part) if leaf is not None}
    if len(sizes) > 1:
        raise ValueError(f"`{arg}`: inputs, targets and sample weights have different batch "
                         f"sizes {sorted(sizes)}. Pass the same examples in each.")
    size = sizes.pop()
    if size == 0:
        raise ValueError(f"`{arg}` is empty (0 examples); pass a batch of at least "
                         f"{max(min_size, 1)} examples (64-256 is typical).")
    if size < min_size:
        held = "a batch of one example" if size == 1 else f"a batch of {size} examples"
        raise ValueError(f"`{arg}` has {held}; this step needs at least {min_size} (a "
                         "variance needs 2; 64-256 is typical).")
    return Batch(x, y, sample_weight)


def noise_batch(model, size: int = 256, seed: int = 0) -> Batch:
    """A data-free probe batch for ``model``: every input drawn U(0, 1) (nonnegative, as pixels
    are), ``size`` rows, from a fixed ``seed`` (the same batch in every process), no targets.

    Raises ValueError naming what to pass where ``model.inputs`` is unknown (a subclassed
    model), a non-batch dimension is unknown, or an input is not floating point (token ids).
    """
    inputs = symbolic(model, "inputs")
    if inputs is None:
        raise ValueError(
            f"rule='noise' draws inputs of the shapes of `model.inputs`, but model "
            f"{model.name!r} has none (a subclassed model). Pass a probe batch `data=(x, y)` "
            "instead, or use rule='analytic'.")
    for arg, value, low in (("size", size, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"noise_batch: `{arg}` must be an int >= {low}, got {value!r}.")
    names = _input_names(model, inputs)
    rng = np.random.default_rng(seed)
    leaves = []
    for spec, name in zip(inputs, names):
        shape, dtype = tuple(spec.shape[1:]), keras.backend.standardize_dtype(spec.dtype)
        if any(d is None for d in shape):
            raise ValueError(
                f"rule='noise' needs every input's shape, but {_input_label(name)} has shape "
                f"{tuple(spec.shape)} (None beyond the batch axis). Pass a probe batch "
                "`data=(x, y)`, or build the model on a fixed shape.")
        if not dtype.startswith(("float", "bfloat")):
            raise ValueError(
                f"rule='noise' draws U(0, 1) images, but {_input_label(name)} has dtype "
                f"{dtype!r} (ids or integer pixels have no noise of their meaning). Pass a "
                "probe batch `data=(x, y)`, or use rule='analytic'.")
        leaves.append(rng.uniform(0.0, 1.0, (size, *shape)).astype(
            dtype if dtype in ("float16", "float64") else "float32"))
    if isinstance(_input_struct(model), dict):
        return Batch(dict(zip(names, leaves)))
    return Batch(leaves if len(leaves) > 1 else leaves[0])
