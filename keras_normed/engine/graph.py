"""The walk: which kernels a model holds, how often each is used, and which joint rescalings
keep the function (``A a = 0`` on the log-scales, with notes where the net is not positively
homogeneous). The rules: docs/normed.md, section 2.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Dict, List, Optional, Sequence, Tuple

import keras
import numpy as np

from keras_normed import _keras_compat as compat
from keras_normed.engine.data import symbolic

__all__ = ["KernelSite", "ScaleConstraints", "kernel_sites", "scale_constraints",
           "trainable_ids", "weight_label", "weights_left"]

Form = Dict[int, float]

_NORMALIZATIONS = ("BatchNormalization", "LayerNormalization", "GroupNormalization",
                   "UnitNormalization", "RMSNormalization")
_MERGE_EQUAL = ("Add", "Subtract", "Average", "Maximum", "Minimum", "Concatenate", "Stack",
                "Append", "Where")
_MERGE_SUM = ("Multiply", "Dot", "Matmul", "Einsum", "Tensordot")
_PASS = ("InputLayer", "Flatten", "Reshape", "Permute", "RepeatVector", "Dropout",
         "GaussianDropout", "AlphaDropout", "Identity", "ActivityRegularization", "LeakyReLU",
         "PReLU", *(f"{kind}{rank}D" for rank in "123" for kind in (
             "SpatialDropout", "MaxPooling", "AveragePooling", "GlobalMaxPooling",
             "GlobalAveragePooling", "ZeroPadding", "Cropping", "UpSampling")),
         # keras.ops recorded by a trace
         "Relu", "LeakyRelu", "Transpose", "MaxPool", "AveragePool", "Mean", "Sum", "Max", "Min",
         "GetItem", "Squeeze", "ExpandDims", "Cast", "Abs", "Negative", "Pad", "Moveaxis",
         "Swapaxes", "Tile", "Repeat", "BroadcastTo", "Ravel", "Split", "Take", "Unstack", "Copy",
         "Real", "Flip", "Roll", "StopGradient")
_POWERS = {"Square": 2.0, "Sqrt": 0.5}  # keras.ops of one tensor, homogeneous of this degree
_KERNEL_LAYERS = ("Dense", "EinsumDense", "Embedding", "CirculantDense", "CirculantConv2D",
                  "PeriodicConv2D", *(f"{kind}{rank}D" for rank in "123" for kind in (
                      "Conv", "ConvTranspose", "DepthwiseConv", "SeparableConv")),
                  *(f"Conv{rank}DTranspose" for rank in "123"))
# Operations whose call this walk reads exactly: a graph of only these (Keras's own classes or
# this package's) uses each kernel only where it shows. Anything else may read a kernel inside
# code the walk does not see (a Lambda, a user's layer, a wrapper's inner cell).
_EXACT = frozenset((*_NORMALIZATIONS, *_MERGE_EQUAL, *_MERGE_SUM, *_PASS, *_POWERS,
                    *_KERNEL_LAYERS, "Activation", "ReLU"))  # models: `_exact` reads `call`
# By identity, not by name: a user's function called "relu" may clip.
_HOMOGENEOUS_ACTIVATIONS = tuple(f for f in (
    getattr(keras.activations, n, None) for n in ("linear", "relu", "leaky_relu")) if f)
# Where a constant input is an offset (not a factor): not positively homogeneous.
_OFFSETS = ("Add", "Subtract", "Maximum", "Minimum", "Average", "Concatenate", "Stack",
            "Append", "Where", "Pad")


@dataclasses.dataclass
class KernelSite:
    """A layer's kernel that a model-level step may change."""

    layer: Any
    variable: Any
    path: str
    kind: str
    trainable: bool


@dataclasses.dataclass
class ScaleConstraints:
    """``rows @ a == 0`` keeps the function; ``uses[i]``: calls of kernel ``i``'s layer;
    ``order``: the kernels' indices in forward order (of their layers' first calls);
    ``output_forms[i]``: the log-scale of kernel ``i``'s layer's output as coefficients of ``a``
    (a nonzero bias there is scaled by ``exp(output_forms[i] @ a)``); ``note_forms``: what is
    not positively homogeneous, with the form at that place (``None``: everywhere);
    ``moving_forms``: each BatchNormalization whose input scale moves, with that form (moving
    mean scaled by ``exp(form @ a)``, moving variance by ``exp(2 form @ a)``)."""

    rows: np.ndarray
    uses: List[Optional[int]]
    note_forms: List[Tuple[str, Optional[np.ndarray]]]
    graph: str  # "functional", "traced" or "unknown"
    custom: List[str] = dataclasses.field(default_factory=list)  # operations read by assumption
    order: List[int] = dataclasses.field(default_factory=list)
    output_forms: List[np.ndarray] = dataclasses.field(default_factory=list)
    moving_forms: List[Tuple[Any, np.ndarray]] = dataclasses.field(default_factory=list)

    @property
    def notes(self) -> List[str]:
        """Every non-homogeneous place on a path whose scale can move."""
        return _unique(text for text, _ in self.note_forms)

    def notes_for(self, a: np.ndarray) -> List[str]:
        """The notes that matter for the log-scales ``a``: places whose scale ``a`` moves."""
        a = np.asarray(a, np.float64)
        return _unique(text for text, form in self.note_forms
                       if form is None or abs(float(form @ a)) > 1e-9)

    @property
    def homogeneous(self) -> bool:
        return not self.note_forms and self.graph != "unknown"

    @property
    def exact(self) -> bool:
        """The function is kept by construction: a symbolic graph of operations whose calls
        are read exactly (:data:`_EXACT`), positively homogeneous as read."""
        return self.homogeneous and self.graph == "functional" and not self.custom


def _unique(texts) -> List[str]:
    return list(dict.fromkeys(texts))


def trainable_ids(model) -> set:
    return {id(v) for v in model.trainable_variables}


_NOT_KERNELS = {"kernel", "bias", "gamma", "beta", "moving_mean", "moving_variance"}


def _other_kernels(layer) -> List[Tuple[str, Any]]:
    """``(name, variable)`` of each ``*_kernel``, ``embeddings``, ``w`` with ``w_initializer``."""
    return [(name.lstrip("_"), v) for name, v in vars(layer).items()
            if isinstance(v, keras.Variable) and name.lstrip("_") not in _NOT_KERNELS
            and (name.endswith("_kernel") or name == "embeddings"
                 or hasattr(layer, name.lstrip("_") + "_initializer"))]


def kernel_sites(model, select=None, *, every: bool = False) -> List[KernelSite]:
    """Every layer (nested, each once) with a ``kernel`` variable, in the order Keras lists
    them; ``select(layer)`` filters. Frozen kernels are included with ``trainable=False``.
    ``every``: also each ``*_kernel`` of a layer without a ``kernel`` (a SeparableConv's)."""
    trainable = trainable_ids(model)
    sites = []
    for layer in compat.all_layers(model):
        kernel = getattr(layer, "kernel", None)
        found = [kernel] if isinstance(kernel, keras.Variable) else [
            v for name, v in _other_kernels(layer) if every and name.endswith("_kernel")]
        if layer is model or not found or (select is not None and not select(layer)):
            continue
        sites += [KernelSite(layer, v, v.path, type(layer).__name__, id(v) in trainable)
                  for v in found]
    return sites


def weights_left(model, why, done=()) -> List[str]:
    """``"<layer>.<weight>: <text>"`` for each trainable kernel-like weight that is not a
    ``kernel`` nor in ``done`` (variables), where ``why(initializer_name, initializer)`` gives
    a text: what a step on the kernels leaves as it is (none is skipped silently)."""
    skip, trainable, left = {id(v) for v in done}, trainable_ids(model), []
    for layer in compat.all_layers(model)[1:]:
        pairs = _other_kernels(layer)
        if hasattr(layer, "depthwise_initializer") and not hasattr(layer, "kernel_initializer") \
                and isinstance(getattr(layer, "kernel", None), keras.Variable):
            pairs.append(("kernel", layer.kernel))  # a DepthwiseConv's, drawn by its own
        for name, var in pairs:
            init = "depthwise" if name == "kernel" else name.removesuffix("_kernel")
            text = id(var) in trainable and id(var) not in skip and why(
                init + "_initializer", getattr(layer, init + "_initializer", None))
            if text:
                left.append(f"{weight_label(model, layer, var, name)}: {text}")
    return left


def weight_label(model, layer, variable, name: str) -> str:
    """``"<owner>.<name>"`` for a report: the owner by its path below ``model``, which tells
    apart two cells of one name (two LSTMs' ``lstm_cell``), else the layer's name."""
    owner = variable.path.removeprefix(f"{model.name}/").rpartition("/")[0]
    return f"{owner or layer.name}.{name}"


def _activation_reason(fn) -> str:
    """Why activation ``fn`` breaks positive homogeneity, or "" (also for ``None``)."""
    if fn is None or any(fn is f for f in _HOMOGENEOUS_ACTIVATIONS) or type(
            fn) is keras.layers.LeakyReLU or (type(fn) is keras.layers.ReLU and _plain_relu(fn)):
        return ""
    if type(fn) is keras.layers.ReLU:
        return "ReLU with max_value/threshold is not positively homogeneous"
    name = getattr(fn, "__name__", type(fn).__name__).lower()
    if name in ("linear", "relu", "leaky_relu", "identity"):
        return (f"activation {name} is a function of your own, not keras.activations.{name}: "
                "not known to be positively homogeneous")
    return f"activation {name} is not positively homogeneous"


def _plain_relu(layer) -> bool:
    return getattr(layer, "max_value", None) is None and not getattr(layer, "threshold", 0)


def _nonzero_bias(layer) -> bool:
    bias = getattr(layer, "bias", None)
    return isinstance(bias, keras.Variable) and _nonzero_constant(bias)


class _Propagation:
    def __init__(self, variables: Sequence[Any], training: bool):
        self.index = {id(v): i for i, v in enumerate(variables)}
        self.rows: List[Form] = []
        self.notes: List[Tuple[str, Form]] = []  # what is not homogeneous, and where
        self.calls: Dict[int, int] = {}  # in the order of the operations' first calls
        self.out_forms: Dict[int, Form] = {}  # a kernel layer's output form (first call)
        self.moving: Dict[int, Tuple[Any, Form]] = {}  # BatchNormalization -> input form
        self.custom: Dict[str, None] = {}  # operations not in _EXACT, by name
        self.training = training

    def _equal(self, forms: List[Form]) -> None:
        for other in forms[1:]:
            diff = _add(other, {k: -v for k, v in forms[0].items()})
            if diff:
                self.rows.append(diff)

    def _note(self, form: Form, text: str) -> None:
        """``text`` matters where the solution moves ``form`` (checked after solving)."""
        if form:
            self.notes.append((text, dict(form)))

    def _freeze(self, indices, text: str) -> None:
        """Kernels whose use cannot be read keep their scale (``a_i = 0``): safe."""
        self.rows += [{i: 1.0} for i in sorted(indices)]
        if indices:
            self.notes.append((text, {}))

    def _moving_input(self, op, form: Form) -> None:
        # Its moving statistics must follow the input's scale to keep the inference function.
        seen = self.moving.setdefault(id(op), (op, form))[1]
        if seen != form:
            self._note(_union([seen, form]), f"{op.name}: BatchNormalization called on inputs "
                       "of different scales; its moving statistics follow the first")

    def _tracked_inside(self, op) -> set:
        return {self.index[id(v)] for v in getattr(op, "weights", []) if id(v) in self.index}

    def run(self, inputs: Sequence[Any], outputs: Sequence[Any], forms: List[Form]) -> List[Form]:
        known = {id(t): f for t, f in zip(inputs, forms)}
        return [self._form_of(t, known) for t in outputs]

    def _form_of(self, tensor, known) -> Form:
        # Iterative post-order: deep Sequentials would overflow Python's recursion limit.
        stack = [tensor]
        while stack:
            t = stack[-1]
            found = None if id(t) in known else compat.producer(t)
            if found is None:  # known already, or an Input
                known.setdefault(id(t), {})
                stack.pop()
                continue
            op, node = found
            in_tensors = compat.node_inputs(node)
            pending = [p for p in in_tensors if id(p) not in known]
            if pending:
                stack.extend(pending)
                continue
            outs = compat.node_outputs(node)
            forms = self._apply(op, node, [known[id(p)] for p in in_tensors], len(outs))
            known.update((id(o), f) for o, f in zip(outs, forms))
            stack.pop()
        return known[id(tensor)]

    def _apply(self, op, node, forms: List[Form], n_out: int) -> List[Form]:
        self.calls[id(op)] = self.calls.get(id(op), 0) + 1
        name = type(op).__name__
        if not _exact(op) or getattr(op, "compute_dtype", None) in ("float16", "bfloat16"):
            self.custom[getattr(op, "name", name)] = None  # read by assumption, or rounded
        in_tensors = compat.node_inputs(node)
        if isinstance(op, keras.Model):
            io = _symbolic_io(op) or _trace(
                op, in_tensors[0] if len(in_tensors) == 1 else list(in_tensors), self.training)
            return self._inner(op, io if io and len(io[0]) == len(forms) else None, forms, n_out)
        # A boolean input (a mask, a condition) carries no scale: a comparison that made it
        # from scaled values is noted where it happens.
        scaled = [f for f, t in zip(forms, in_tensors) if str(getattr(t, "dtype", "")) != "bool"]
        forms = scaled if scaled and len(forms) == len(in_tensors) else forms
        first = forms[0] if forms else {}
        if hasattr(op, "normalized_kernel"):
            # Weight normalization: invariant to the direction's norm, scaled by its length g.
            g = self.index.get(id(getattr(op, "g", None)))
            out = _add(first, {} if g is None else {g: 1.0})
            self.out_forms.setdefault(id(op), out)
            self._note_layer(getattr(op, "layer", None), out, op.name)
            v = self.index.get(id(getattr(getattr(op, "layer", None), "kernel", None)))
            if v is not None and float(getattr(op, "epsilon", 0) or 0) > 1e-7:
                self._note({v: 1.0}, f"{op.name}: WeightNormalization is invariant to its "
                                     f"direction's scale up to its epsilon ({op.epsilon:g})")
            return [out] * n_out
        if name == "SpectralNormalization":  # invariant to its kernel, not to its input
            return self._opaque(op, forms, n_out)
        if name in _NORMALIZATIONS:
            if name == "BatchNormalization":  # its moving statistics follow its input's scale
                self._moving_input(op, first)
            if getattr(op, "epsilon", 0):
                self._note(first, f"{op.name}: {name} is scale-invariant up to its epsilon "
                                  f"({op.epsilon:g})")
            return [{}] * n_out
        if isinstance(op, (keras.layers.RNN, keras.layers.Bidirectional)):
            return self._opaque(op, forms, n_out)  # gates: sigmoid and tanh of the input
        inside = self._tracked_inside(op)
        if isinstance(op, keras.layers.Layer) and len(compat.all_layers(op)) > 1 and inside \
                and not isinstance(op, keras.layers.Wrapper):
            # A layer built of layers (a block, attention): read its own call.
            traced = _trace_call(op, *compat.node_arguments(node))
            return self._inner(op, None if traced is None else (in_tensors, traced), forms, n_out)
        own = dict.fromkeys(inside, 1.0)
        # A wrapped weight normalization's direction v does not scale the output (its g does).
        for inner in compat.all_layers(op)[1:] if isinstance(op, keras.layers.Layer) else ():
            if hasattr(inner, "normalized_kernel"):
                own.pop(self.index.get(id(getattr(inner.layer, "kernel", None))), None)
        kernels = [getattr(op, k, None) for k in ("kernel", "pointwise_kernel")]
        if own or any(isinstance(k, keras.Variable) for k in kernels):
            tracked = {id(w) for w in getattr(op, "weights", [])}
            if any(isinstance(k, keras.Variable) and id(k) not in tracked for k in kernels):
                self.custom[op.name] = None  # a kernel set by hand: another layer's?
            self._equal(forms)
            out = _add(first, own)
            self.out_forms.setdefault(id(op), out)
            for layer in compat.all_layers(op):  # a wrapper's inner layer too
                self._note_layer(layer, out, op.name)
            return [out] * n_out
        leaves = keras.tree.flatten(compat.node_arguments(node))
        if name in _OFFSETS and any(_nonzero_constant(v) for v in leaves):
            self._note(_union(forms), f"{op.name} ({name}) with a nonzero constant is not "
                                      "positively homogeneous")
        if _nonzero_constant(getattr(op, "initial", None)):  # ops.max(h, initial=c)
            self._note(_union(forms), f"{op.name} ({name}) with initial="
                                      f"{op.initial!r} is not positively homogeneous")
        cast_to = str(getattr(op, "dtype", "float32")) if name == "Cast" else ""
        if "int" in cast_to or "float8" in cast_to or cast_to in ("float16", "bfloat16"):
            self._note(_union(forms), f"{op.name}: a cast to {op.dtype} rounds: not positively "
                                      "homogeneous")
        if cast_to == "bool":  # h != 0: no scale
            return [{}] * n_out
        # Kernels passed in directly (`ops.matmul(h, layer.kernel)`, `Multiply()([h, k])`).
        used = [self.index[id(v)] for v in leaves
                if isinstance(v, keras.Variable) and id(v) in self.index]
        if used and name in _MERGE_SUM:  # a kernel read twice counts twice
            return [_add(_union(forms), {i: float(used.count(i)) for i in used})] * n_out
        if used:
            self._freeze(set(used), f"{op.name} ({name}) reads kernels {sorted(used)} "
                         "directly: they keep their scale")
        for bn, form in self.moving.values():  # statistics that follow a moving scale
            if form and any(v is bn.moving_mean or v is bn.moving_variance for v in leaves):
                self._note(form, f"{op.name} ({name}) reads {bn.name}'s moving statistics, "
                                 "which follow its input's scale")
        if name in _POWERS:
            return [{k: _POWERS[name] * v for k, v in first.items()}] * n_out
        if name in _MERGE_EQUAL:
            self._equal(forms)
            return [first] * n_out
        if name == "DotProductAttention" and len(forms) >= 3:
            # softmax(q k^T s + bias) v: kept where the scores keep their scale (q and k move
            # oppositely), the output scales as v.
            self._equal([_add(forms[0], forms[1]), {}])
            return [forms[2]] * n_out
        if name == "Dot" and getattr(op, "normalize", False):
            self.custom[op.name] = None  # cosine: invariant up to its epsilon, so measured
            return [{}] * n_out
        if name in _MERGE_SUM:
            return [_union(forms)] * n_out
        if name == "Activation" or name == "ReLU" or name in _PASS:
            reason = _activation_reason(op.activation) if name == "Activation" else ""
            if name == "AlphaDropout" and self.training and getattr(op, "rate", 0):
                reason = "AlphaDropout in training mode is affine, not positively homogeneous"
            if name == "ReLU" and not _plain_relu(op):
                reason = "ReLU with max_value/threshold is not positively homogeneous"
            if reason:
                self._note(first, f"{op.name}: {reason}")
            self._equal(forms)
            if _nonzero_bias(op):
                self._note(first, f"{op.name} ({name}): nonzero bias")
            return [first] * n_out
        self._note(_union(forms), f"{op.name} ({name}): not known to be positively homogeneous")
        self._equal(forms)
        return [first] * n_out

    def _note_layer(self, layer, out: Form, where: str) -> None:
        """A kernel layer's activation and bias, where its output's scale is ``out``."""
        reason = _activation_reason(getattr(layer, "activation", None))
        if reason:
            self._note(out, f"{where}: {reason}")
        if _nonzero_bias(layer):
            self._note(out, f"{where}: nonzero bias")

    def _inner(self, op, io, forms: List[Form], n_out: int) -> List[Form]:
        """A nested model's or a composite layer's graph ``(inputs, outputs)``, or opaque."""
        if io is None:
            return self._opaque(op, forms, n_out)
        outs = self.run(io[0], io[1], forms)
        return outs[:n_out] + [{}] * max(0, n_out - len(outs))

    def _opaque(self, op, forms: List[Form], n_out: int) -> List[Form]:
        """A call that cannot be read (a recurrent layer's loop): its kernels and its inputs
        keep their scale, so the function is kept whatever it computes (a GRU between Dense
        layers moved 0.24 when its input's scale was let through)."""
        self._freeze(self._tracked_inside(op), f"{op.name} ({type(op).__name__}): call not "
                     "readable; its kernels and its input keep their scale")
        if any(forms):
            self.rows += [dict(f) for f in forms if f]
            self.notes.append((f"{op.name} ({type(op).__name__}): not read as homogeneous; its "
                               "input keeps its scale", {}))
        return [{}] * n_out


def _exact(op) -> bool:
    if "call" in getattr(op, "__dict__", {}):  # a call set on the instance
        return False
    if isinstance(op, keras.Model):  # a functional model of any class, if `call` is Keras's
        return getattr(type(op).call, "__module__", "").startswith("keras.src.models.")
    inner = getattr(op, "layer", None) if hasattr(op, "normalized_kernel") else None
    return type(op).__module__.startswith(("keras.src.", "keras_normed.")) and (
        type(op).__name__ in _EXACT if inner is None else _exact(inner))


def _nonzero_constant(value) -> bool:
    """A number, array, backend tensor or variable (not a kernel being scaled: those are read
    before) with a nonzero entry; not bools, masks or symbolic tensors."""
    if value is None or isinstance(value, (bool, str)) or compat.is_keras_tensor(value):
        return False
    if not isinstance(value, (int, float, np.ndarray, np.generic, keras.Variable)) \
            and not (hasattr(value, "shape") and hasattr(value, "dtype")):
        return False
    if isinstance(value, keras.Variable):  # through a tensor: numpy 2 warns on a Variable
        value = keras.ops.convert_to_tensor(value)
    array = np.asarray(keras.ops.convert_to_numpy(value))
    return array.dtype != bool and bool(np.any(array != 0))


def _add(a: Form, b: Form) -> Form:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0.0) + v
    return {k: v for k, v in out.items() if v != 0}


def _union(forms: List[Form]) -> Form:
    return functools.reduce(_add, forms, {})


def _symbolic_io(model):
    inputs, outputs = symbolic(model, "inputs"), symbolic(model, "outputs")
    return None if inputs is None or outputs is None else (inputs, outputs)


def _trace_call(layer, args, kwargs) -> Optional[List[Any]]:
    """The flat symbolic outputs of ``layer.call(*args, **kwargs)``, or None if not traceable."""
    try:
        outputs = layer.call(*args, **kwargs)
    except Exception:  # noqa: BLE001 - raw TensorFlow ops, Python control flow on values...
        return None
    flat = keras.tree.flatten(outputs)
    return flat if flat and all(compat.is_keras_tensor(o) for o in flat) else None


def _trace(model, structure, training: bool):
    """Symbolic inputs shaped like ``structure`` (a batch, or specs) and ``model.call``'s
    outputs on them, or None."""
    inputs = [keras.Input(shape=tuple(np.shape(s)[1:]), dtype=getattr(s, "dtype", "float32"))
              for s in keras.tree.flatten(structure)]
    packed = keras.tree.pack_sequence_as(structure, inputs)
    kwargs = {"training": training} if compat.call_takes_training(model) else {}
    outputs = _trace_call(model, (packed,), kwargs)
    return None if outputs is None else (inputs, outputs)


def _built_input(model):
    """A symbolic input of the shape ``model`` was built with, or None."""
    from keras_normed import structure

    shape = structure.built_input_shape(model)
    if shape is None or not all(d is None or isinstance(d, int) for d in shape):
        return None
    return keras.KerasTensor(shape, dtype=model.input_dtype)


def scale_constraints(model, variables: Sequence[Any], x=None, *, training: bool = True
                      ) -> ScaleConstraints:
    """The linear constraints on the log-scales of ``variables`` that keep ``model``'s
    function (see the module docstring). ``x`` (a batch) is needed only to trace a
    subclassed model whose input shape Keras did not record."""
    prop, n = _Propagation(variables, training), len(variables)
    layers = compat.all_layers(model)
    with compat.graph_side_effects_undone(layers):
        io, graph = _symbolic_io(model), "functional"
        if io is None:
            structure = x if x is not None else _built_input(model)
            io = None if structure is None else _trace(model, structure, training)
            graph = "traced"
        if io is not None:
            prop.rows += [form for form in prop.run(io[0], io[1], [{}] * len(io[0])) if form]
        if not _exact(model):  # a functional model whose own `call` adds to its graph
            prop.custom[model.name] = None
    if io is None:
        return ScaleConstraints(
            np.ones((1, n)) if n else np.zeros((0, 0)), [None] * n,
            [(f"{model.name}: graph not readable (a subclassed model whose call is not "
              "symbolic-traceable): one product-of-scales constraint, as for a chain", None)],
            "unknown", order=list(range(n)), output_forms=list(np.tril(np.ones((n, n)))))
    layer_of = {}
    for layer in layers:  # pre-order: a sublayer comes after its parent and overrides it
        if not isinstance(layer, keras.Model):
            layer_of.update((id(var), layer) for var in getattr(layer, "weights", []))
    rows = np.array([_vector(form, n) for form in prop.rows]).reshape(len(prop.rows), n)
    callers = [_caller(layer_of.get(id(var)), layers, prop.calls) for var in variables]
    uses = [0 if c is None else prop.calls[id(c)] for c in callers]
    rank = {key: k for k, key in enumerate(prop.calls)}  # forward order: of the first calls
    order = sorted(range(n), key=lambda i: rank.get(id(callers[i]), len(rank) + i))
    forms = [_vector(prop.out_forms.get(id(c), {}), n) for c in callers]
    notes = [(text, None if not form else _vector(form, n)) for text, form in prop.notes]
    moving = [(op, _vector(form, n)) for op, form in prop.moving.values() if form]
    return ScaleConstraints(rows, uses, notes, graph, list(prop.custom), order, forms, moving)


def _vector(form: Form, n: int) -> np.ndarray:
    vec = np.zeros(n)
    vec[list(form)] = list(form.values())
    return vec


def _caller(owner, layers, calls):
    """The layer whose calls apply ``owner``'s variable: ``owner``, or the wrapper or composite
    layer that calls it; None when no call of the graph reaches it."""
    if owner is None or id(owner) in calls:
        return owner
    for layer in layers:
        if not isinstance(layer, keras.Model) and layer is not owner and id(layer) in calls \
                and any(sub is owner for sub in compat.all_layers(layer)[1:]):
            return layer
    return None
