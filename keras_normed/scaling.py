"""Model-level, layer-consistent scales: the between-layer part of the normed method.

:func:`rescale` scales each Normed-initialized kernel so that the relative growth of every layer
under one optimizer step is as equal as the function-keeping constraints allow. docs/normed.md
("rescale") derives the rules (probe, analytic, probe on noise), the constraints and the safety
rules.
"""

from __future__ import annotations

import math
import warnings
from typing import List, Optional, Tuple

import keras
import numpy as np

from keras_normed import _keras_compat as compat
from keras_normed import engine, structure
from keras_normed.engine import Report, Row
from keras_normed.initializers.normed import Normed, check_number

__all__ = ["rescale", "normed_layers", "is_rescaled", "kernel_structure", "measure_growth"]


def kernel_structure(layer) -> Optional[structure.LinearStructure]:
    """:func:`keras_normed.structure.layer_structure` of a built layer, or ``None`` when the
    layer has no kernel of known structure or its input shape is not fully known."""
    shape = structure.built_input_shape(layer)
    if shape is None:
        return None
    try:
        return structure.layer_structure(layer, shape)
    except ValueError:  # unknown spatial sizes (a conv on variable-size images): nothing shared
        return None


def _structure_or_fans(layer) -> structure.LinearStructure:
    found = kernel_structure(layer)
    if found is not None:
        return found
    fan_in, fan_out = structure.kernel_fans(layer, layer.kernel.shape)
    return structure.LinearStructure(fan_in, fan_out, 1.0, False, int(np.prod(layer.kernel.shape)))


def _is_normed(layer) -> bool:
    return isinstance(getattr(layer, "kernel_initializer", None), Normed)


def normed_layers(model) -> List[keras.layers.Layer]:
    """Every (nested, deduplicated) layer whose trainable kernel was initialized by
    :class:`Normed` (frozen kernels do not grow and are left alone)."""
    return [site.layer for site in engine.kernel_sites(model, _is_normed) if site.trainable]


def is_rescaled(model) -> bool:
    """Whether :func:`rescale` was applied (read from the saved Normed initializer configs)."""
    return any(layer.kernel_initializer.rescaled for layer in normed_layers(model))


def check_built(model) -> None:
    """Raise a ValueError naming the unbuilt layers of ``model``."""
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(f"`model` must be a Keras model or layer, got {type(model).__name__}.")
    unbuilt = [layer.name for layer in compat.all_layers(model) if not layer.built]
    if unbuilt:
        raise ValueError(
            f"Model {model.name!r} is not built (unbuilt layers: {unbuilt[:5]}). Build it first: "
            "give it an Input, call it on a batch, or call `model.build(input_shape)`.")


def _fresh_weights_mismatch(layers, values=None) -> List[str]:
    """Layers whose kernel (its current value, or ``values``: copies of the kernels) is not
    what its Normed initializer drew: read from the fingerprint of the draw, else drawn again
    (a kernel drawn in a traced function left no fingerprint)."""
    bad = []
    for layer, value in zip(layers, values or [layer.kernel for layer in layers]):
        kernel, init = layer.kernel, layer.kernel_initializer
        drew = init.drew(value)
        if drew is None and isinstance(init.draw_seed, keras.random.SeedGenerator):
            bad.append(f"{kernel.path} (drawn from a SeedGenerator: cannot be redrawn to check)")
            continue
        if drew is None:
            expected = keras.ops.convert_to_numpy(init.sample(kernel.shape, kernel.dtype, layer))
            actual = keras.ops.convert_to_numpy(value)
            drew = actual.shape == expected.shape and bool(
                np.allclose(actual, expected, rtol=1e-5, atol=1e-7))
        if not drew:
            bad.append(kernel.path)
    return bad


def measure_growth(model, data, kernels=None, values=None, *, optimizer=None, loss=None,
                   training: bool = True) -> dict:
    """Relative growth ``r_l = ||step||_T / ||W_l||_T`` of ``kernels`` under one optimizer step
    (for a uniformly shared kernel ``||.||_T = sqrt(sharing) ||.||``: the plain norms' ratio).

    Args:
        model, data, optimizer, loss, training: as in :func:`rescale` (``data`` with targets).
        kernels: variables to measure (default: the Normed kernels).
        values: values to measure them at (default: their current values); nothing is assigned.

    Returns:
        A dict: ``growth`` (list), ``loss``, ``grads`` (float64 arrays), the step's ``exponent``
        (:func:`keras_normed.engine.step_exponent`) and the model's ``output``.
    """
    if kernels is None:
        kernels = [layer.kernel for layer in normed_layers(model)]
    if values is None:
        values = [keras.ops.copy(k) for k in kernels]
    batch = data if isinstance(data, engine.Batch) else engine.as_batch(model, data, need_y=True)
    loss_fn = loss if isinstance(loss, engine.Loss) else engine.resolve_loss(model, batch, loss)
    optimizer = engine.resolve_optimizer(model, optimizer)
    return _growth(model, batch, kernels, values, optimizer, loss_fn, training, host_grads=True)


def _growth(model, batch, kernels, values, optimizer, loss_fn, training,
            host_grads: bool = False) -> dict:
    # Gradients and steps stay backend tensors: only their norms come to the host.
    n_kernels = len(kernels)
    if engine.clips_globally(optimizer):  # the clip's norm is over every trainable gradient
        ids = {id(k) for k in kernels}
        others = [v for v in model.trainable_variables if id(v) not in ids]
        kernels, values = list(kernels) + others, list(values) + [keras.ops.copy(v)
                                                                  for v in others]
    loss_value, grads, y_pred = engine.loss_and_gradients(
        model, batch, kernels, values, loss_fn, training, return_output=True, as_numpy=False)
    step_norms, exponent = engine.step_norms_and_exponent(optimizer, grads, values)
    kernels, values, grads, step_norms = (t[:n_kernels] for t in (kernels, values, grads,
                                                                step_norms))
    # A non-finite gradient gives a non-finite step norm.
    if not math.isfinite(loss_value):
        raise engine.NonFiniteError(
            f"The probe batch gives a non-finite loss ({loss_value}); check `data` and `loss`.")
    if not np.all(np.isfinite(step_norms)):
        bad = [getattr(k, "path", str(i)) for i, (k, n) in enumerate(zip(kernels, step_norms))
               if not math.isfinite(n)]
        raise engine.NonFiniteError(
            f"The probe batch gives a finite loss ({loss_value:.6g}) but a non-finite gradient "
            f"for {bad[:4]}: an op with an infinite derivative where the batch puts it (sqrt or "
            "log at 0, e.g. after a ReLU?), or an overflow; check the model, `data` and `loss`.")
    # ||.||_T = sqrt(sharing) ||.|| cancels in the ratio.
    growth = [float(s / max(w, 1e-30)) for s, w in zip(step_norms, engine.norms(values))]
    out = {"growth": growth, "loss": loss_value, "exponent": exponent, "output": y_pred}
    if host_grads:
        out["grads"] = [np.asarray(keras.ops.convert_to_numpy(g), np.float64) for g in grads]
    return out


def check_options(*, data=None, loss=None, rule: str = "auto", move: str = "auto",
                  tol: float = 1.5, max_iter: int = 6, force: bool = False, training: bool = True,
                  max_output_change: Optional[float] = None, check: str = "auto",
                  verbose: bool = False) -> None:
    """Validate :func:`rescale`'s options (also at ``NormedScaling``'s construction)."""
    if check not in ("auto", "always"):
        raise ValueError(f"Invalid `check` {check!r}; expected 'auto' or 'always'.")
    if check == "always" and ((data is None and rule != "noise") or rule == "analytic"):
        raise ValueError("check='always' measures the output on the probe batch: pass "
                         "`data=(x, y)` or rule='noise' (not rule='analytic'), or leave it "
                         "'auto'.")
    if rule not in ("auto", "probe", "analytic", "noise"):
        raise ValueError(f"Invalid `rule` {rule!r}; expected 'auto', 'probe', 'analytic' or "
                         "'noise'.")
    if rule == "probe" and data is None:
        raise ValueError("rule='probe' needs a probe batch: pass `data=(x, y)`.")
    if rule == "noise" and data is not None:
        raise ValueError("rule='noise' draws its own inputs and has no targets: leave `data` "
                         "None, or pass data with rule='probe' (or 'auto').")
    if rule == "noise" and loss is not None:
        raise ValueError("rule='noise' has no targets, so no `loss`: its loss is each output's "
                         "cross-entropy against random labels. Leave `loss` None, or pass "
                         "`data=(x, y)` with rule='probe'.")
    if move not in ("auto", "all", "structured"):
        raise ValueError(f"Invalid `move` {move!r}; expected 'auto', 'all' or 'structured'.")
    check_number("tol", tol, 1.0)
    check_number("max_iter", max_iter, 1, integer=True)
    if max_output_change is not None:
        check_number("max_output_change", max_output_change, 0.0)
        if (data is None and rule != "noise") or rule == "analytic":
            raise ValueError("`max_output_change` is checked on the probe batch: pass "
                             "`data=(x, y)` or rule='noise' (not rule='analytic'), or leave "
                             "it None.")
    for name, flag in (("force", force), ("training", training), ("verbose", verbose)):
        if not isinstance(flag, bool):
            raise TypeError(f"`{name}` must be True or False, got {flag!r}.")


def rescale(model, data=None, *, optimizer=None, loss=None, force: bool = False,
            rule: str = "auto", tol: float = 1.5, max_iter: int = 6, training: bool = True,
            move: str = "auto", max_output_change: Optional[float] = None,
            check: str = "auto", verbose: bool = False) -> Report:
    """Layer-consistent rescaling of the Normed-initialized kernels of a built model.

    ``W_l <- c_l W_l`` keeping the model's function (exactly where the net is positively
    homogeneous) and making the relative growth of every layer as equal as that allows.

    Example:

    >>> import keras, numpy as np, keras_normed
    >>> def net():
    ...     return keras.Sequential([
    ...         keras.Input((16,)),
    ...         keras.layers.Dense(32, activation="relu", kernel_initializer="normed"),
    ...         keras.layers.Dense(10, kernel_initializer=keras_normed.Normed("linear"))])
    >>> x = np.random.default_rng(0).standard_normal((256, 16)).astype("float32")
    >>> y = np.arange(256) % 10
    >>> report = keras_normed.rescale(net(), (x, y), move="all")   # every layer moves
    >>> report.applied, report.spread_after < 1.5, report.summary["check"]
    (True, True, 'kept by construction')
    >>> keras_normed.rescale(net(), (x, y), move="all", check="always").output_change < 1e-5
    True
    >>> model = net()   # the default move="auto": no parameter is shared, the draw is kept
    >>> auto = keras_normed.rescale(model, (x, y))
    >>> auto.summary["move"], set(auto.scales.values())
    ('structured', {1.0})
    >>> keras_normed.rescale(model, (x, y)).reason   # marked: a second call is a no-op
    'already rescaled (force=True to redo)'

    Args:
        model: a built Keras model of any kind. Only trainable kernels whose
            ``kernel_initializer`` is a :class:`~keras_normed.initializers.Normed` are
            rescaled; biases are left as they are.
        data: a probe batch as ``model.fit`` takes it (``(x, y[, sample_weight])``, a batched
            ``tf.data.Dataset`` or a ``keras.utils.PyDataset``: its first batch). Selects the
            ``"probe"`` rule; without it the ``"analytic"`` rule is used (or ``"noise"``).
        optimizer: whose first step defines growth (default: the compiled one, else
            ``SGD(learning_rate=0.01)``); its state is not touched.
        loss: one loss, a list in output order or a dict by output name (default: the compiled
            loss, else :func:`keras_normed.engine.default_loss` per output). Not with
            ``rule="noise"``, which has no targets.
        force: rescale even a model already rescaled, trained or not at its initial draw.
        rule: ``"auto"`` (probe if ``data`` else analytic), ``"probe"``, ``"analytic"``
            (from the structure alone: the same scales for every draw) or ``"noise"``: no data
            either, but the probe rule on 256 rows of U(0, 1) inputs of the model's input
            shapes (float inputs of known shape), each output read as logits against random
            labels (:class:`~keras_normed.engine.RandomLabelLoss`), so it sees the draw; where a
            draw's gradient level departs from the structure's prediction (the circulant net
            (d) of docs/results.md, 2 seeds of 5) it keeps the run alive where the analytic
            rule does not (docs/normed.md, "Without data").
        tol: target spread ``max(r) / min(r)`` of the probe rule.
        max_iter: most measure/solve rounds of the probe rule.
        training: run the probe forward pass in training mode.
        move: ``"all"``: every Normed kernel gets its own scale; ``"structured"``: only the
            layers that declare their structure (circulant, periodic) do, the others move by
            one common factor (the draw kept on a net without structured layers); ``"auto"``:
            ``"all"`` on a net that shares parameters beyond a convolution's own (a trainable
            structured layer anywhere in the model, whatever its initializer, or a kernel
            rescaled here that is used more than once), else ``"structured"``: on a plain
            net equal growth is slower than the draw (docs/normed.md, "Which move"). A graph
            that cannot be read shows no tying: ``"structured"``. The summary's ``move`` says
            which ran, ``move_reason`` why.
        max_output_change: refuse (weights restored) where the output on the probe batch
            changes by more than this (relative); ``None``: only warn, as for any net that is
            not positively homogeneous (tanh, nonzero biases, BN's epsilon).
        check: ``"auto"``: measure the output change on the probe batch unless the graph
            proves the function kept (a functional graph of Keras's own and this package's
            layers, each read exactly, positively homogeneous: a custom layer, a ``Lambda``,
            a wrapper or a subclassed model's traced call is always measured, since it may
            use a kernel where the graph does not show); ``"always"``: measure it anyway.
        verbose: print the report.

    Returns:
        A :class:`~keras_normed.engine.Report` (method ``"rescale"``, ``applied=False`` with a
        ``reason`` for a no-op): per layer ``growth_before``, ``growth_after``, ``scale``
        (``growth_after`` is the law ``r c**-p``, exact where the net is homogeneous and
        measured again where it is not; the analytic rule's two columns are predictions, in
        units of their geometric mean, not measurements: ``growth_report`` measures); in
        the summary ``rule``, ``move``, ``move_reason``, ``exponent``, ``constraints``,
        ``spread_allowed``,
        ``output_change`` (relative, on the probe batch; ``None`` where it was not measured),
        ``check`` (``"measured"``, ``"kept by construction"`` or ``"not measured (no probe
        batch)"``), ``loss`` (``rule="noise"``: the loss it ran), ``notes`` (what is not
        homogeneous) and
        ``moving_statistics`` (BatchNormalization layers whose statistics were scaled too).

    Raises:
        ValueError / TypeError: unbuilt model, bad arguments or data, trained or loaded weights
            (without ``force``), a non-finite probe loss. Weights are unchanged when it raises.
    """
    check_options(data=data, loss=loss, rule=rule, move=move, tol=tol, max_iter=max_iter,
                  force=force,
                  training=training, max_output_change=max_output_change, check=check,
                  verbose=verbose)
    if rule == "auto":
        rule = "probe" if data is not None else "analytic"
    check_built(model)
    sites = [s for s in engine.kernel_sites(model, _is_normed) if s.trainable]
    free = sites if force else [s for s in sites if not s.layer.kernel_initializer.rescaled]
    if not free:
        reason = ("already rescaled (force=True to redo)" if sites
                  else "no layer has a trainable Normed kernel")
        return _done(Report("rescale", False, reason,
                            summary={"rule": rule, "output_change": None}), verbose)
    # One copy of each kernel: the freshness check reads it, the probe starts from it and a
    # rollback restores it (reading a copy to the host is cheaper than reading a variable).
    base = [keras.ops.copy(s.variable) for s in free]
    if not force:
        _refuse_trained(model, free, base)
    if rule == "noise":
        batch, loss = engine.noise_batch(model), engine.RandomLabelLoss()
    else:
        batch = engine.as_batch(model, data, need_y=True) if rule == "probe" else None
    variables = [s.variable for s in free]
    constraints = engine.scale_constraints(model, variables, batch.x if batch else None,
                                           training=training)
    if constraints.graph == "unknown" and batch is None:
        raise ValueError(
            f"rescale: the graph of model {model.name!r} cannot be read (its `call` is not "
            "symbolic-traceable: raw TensorFlow ops or Python control flow on values), so which "
            "scales keep its function is unknown. Pass a probe batch `data=(x, y)` (the output "
            "is then checked, and the call refused if it changes), or write `call` with Keras "
            "layers and keras.ops.")
    used = [u is None or u > 0 for u in constraints.uses]
    unused = [f"{site.path}: its layer is not called by the model; left as it is"
              for site, ok in zip(free, used) if not ok]
    keep = [i for i, ok in enumerate(used) if ok]
    free, base = [free[i] for i in keep], [base[i] for i in keep]
    rows = constraints.rows[:, keep] if constraints.rows.size else constraints.rows
    uses = [constraints.uses[i] for i in keep]
    why = None
    if move == "auto":
        move, why = _auto_move(model, free, uses, constraints.graph)
    if move == "structured":
        rows = _tie_plain_layers(rows, [s.layer for s in free])
    structures = [_structure_or_fans(s.layer) for s in free]
    optimizer = engine.resolve_optimizer(model, optimizer)
    summary = {"rule": rule, "move": move, "move_reason": why, "graph": constraints.graph,
               **({"loss": loss.description} if rule == "noise" else {}),
               "output_change": None,
               "constraints": int(np.linalg.matrix_rank(rows)) if rows.size else 0}

    failed = None
    try:
        if rule == "analytic":
            result = _analytic(free, structures, uses, optimizer, rows)
        else:
            result = _probe(model, free, base, batch, optimizer, loss, training, rows, tol,
                            max_iter, lambda a: not constraints.notes_for(_embed(a, used)))
    except Exception as err:  # noqa: BLE001 - every replica must reach the agreement below
        failed, result = err, None
    local = np.zeros(len(free)) if result is None else np.log(result["scales"])
    agreed, any_failed = engine.agree(local, failed is not None, variables)
    if failed is not None:
        raise failed
    if any_failed:
        raise RuntimeError("rescale failed on another replica or worker; see its log.")
    scales = np.exp(agreed)
    log_scales = _embed(np.log(scales), used)
    summary.update(exponent=result["exponent"], iterations=result["iterations"],
                   spread_allowed=result["allowed"], tol=tol)
    report_rows = []
    for site, st, u, r0, r1, c in zip(free, structures, uses, result["before"], result["after"],
                                      scales):
        report_rows.append(Row(site.path, site.kind, u, int(st.fan_in), float(st.sharing),
                               int(st.n_params), {"growth_before": float(r0),
                                                  "growth_after": float(r1), "scale": float(c)}))
    moving, summary["moving_statistics"] = _moving_statistics(constraints, log_scales)
    with engine.Transaction(variables=[s.variable for s in free] + [v for v, *_ in moving],
                            attributes=[(s.layer, "kernel_initializer") for s in free],
                            values=base + [keras.ops.copy(v) for v, *_ in moving]):
        for site, value, c in zip(free, base, scales):
            site.variable.assign(keras.ops.cast(value * float(c), site.variable.dtype))
            site.layer.kernel_initializer = site.layer.kernel_initializer.rescaled_copy(float(c))
        for var, factor, offset in moving:  # an offset is a variance's: kept >= 0
            var.assign(keras.ops.maximum(keras.ops.add(keras.ops.multiply(var, factor), offset),
                                         0.0) if offset else keras.ops.multiply(var, factor))
        notes = constraints.notes_for(log_scales) + unused
        # Where the graph proves the function kept, measuring it costs a forward pass (a
        # quarter of the probe on a deep MLP) and shows rounding only.
        proven = constraints.exact and not notes and max_output_change is None
        if batch is not None and (check == "always" or not proven):
            summary["check"] = "measured"
        elif proven:
            summary["check"] = "kept by construction"
        else:
            summary["check"] = "not measured (no probe batch)"
        if summary["check"] == "measured":  # the probe's own forward pass is the "before"
            kept = _kept_tolerance(model)
            change = engine.relative_change(result["output"],
                                            engine.predict(model, batch, training))
            summary["output_change"] = change
            moved = change > kept
            if moved and constraints.graph == "unknown":
                raise ValueError(
                    f"rescale: the graph of model {model.name!r} cannot be read, and the scales "
                    f"of a chain changed its output by {change:.3g} (relative) on the probe "
                    "batch: refused, weights unchanged. Write `call` with Keras layers and "
                    "keras.ops so that its graph can be traced.")
            if max_output_change is not None and change > max_output_change:
                raise ValueError(
                    f"rescale: the output of model {model.name!r} on the probe batch changed by "
                    f"{change:.3g} (relative) > max_output_change={max_output_change:g} ("
                    + "; ".join((notes or ["no note"])[:3]) + "): refused, weights unchanged. "
                    "Raise max_output_change, or rescale a net whose changes are noted less.")
            if moved and not notes:
                # Homogeneous as read, yet moved: a kernel is used where the graph does not show.
                raise ValueError(
                    f"rescale: the scales read from the graph of model {model.name!r} should "
                    f"keep its function, but its output changed by {change:.3g} (relative) on "
                    "the probe batch: some kernel is used outside its layer's call (read as "
                    "`layer.kernel` inside another computation?), or a layer of your own is not "
                    "positively homogeneous. Refused, weights unchanged; use each kernel "
                    "through its layer.")
    summary["notes"] = notes
    summary["no_gradient"] = (result or {}).get("no_gradient", [])
    if summary["no_gradient"]:
        warnings.warn(
            f"normed rescale: {summary['no_gradient'][:4]} get no gradient on the probe batch "
            "(an output the loss leaves out, dead units or a disconnected layer): they keep "
            "their scale and the others are equalized without them.", RuntimeWarning,
            stacklevel=2)
    summary["left"] = engine.weights_left(model, lambda name, init: isinstance(init, Normed) and (
        f"{name} is Normed, but only kernels (kernel_initializer) are rescaled; left as drawn"))
    report = Report("rescale", True, rows=report_rows, summary=summary)
    change = summary.get("output_change")
    if notes and (change is None or change > 1e-3):
        warnings.warn(
            "normed rescale: the model is not positively homogeneous where the scales move ("
            + "; ".join(notes[:3]) + ("; ..." if len(notes) > 3 else "") + "): its function "
            + ("is kept only approximately" if change is None else
               f"changed by {change:.3g} (relative) on the probe batch") + ".",
            RuntimeWarning, stacklevel=2)
    elif summary["check"] != "measured" and not constraints.exact \
            and np.any(np.abs(log_scales) > 1e-9):
        warnings.warn(
            "normed rescale: without a probe batch the function is not checked, and the calls "
            f"of {constraints.custom[:3]} are read as positively homogeneous by assumption (a "
            "layer of your own, a Lambda, a wrapper, a traced call): pass data=(x, y) to check "
            "it.", RuntimeWarning, stacklevel=2)
    if report.spread_after > tol and report.spread_after > 1.05 * result["allowed"]:
        warnings.warn(f"normed rescale: growth spread {report.spread_after:.3g} > tol={tol} "
                      f"(the constraints allow {result['allowed']:.3g}) after "
                      f"{result['iterations']} rounds.", stacklevel=2)
    return _done(report, verbose)


def _moving_statistics(constraints, log_scales: np.ndarray) -> tuple:
    """``(variable, factor, offset)`` triples (``v <- factor v + offset``) that keep ``predict``
    for each BatchNormalization whose input moves by ``c = exp(s)``, and their names: mean times
    ``c``, and ``var + epsilon`` times ``c**2`` (exact, where ``var`` times ``c**2`` left the
    epsilon out: 1.8e-3 off through four BN layers), kept >= 0."""
    triples, names = [], []
    for bn, form in constraints.moving_forms:
        shift = float(form @ log_scales)
        if abs(shift) > 1e-12:
            c2 = math.exp(2 * shift)
            triples += [(bn.moving_mean, math.exp(shift), 0.0),
                        (bn.moving_variance, c2, (c2 - 1.0) * float(bn.epsilon))]
            names.append(bn.name)
    return triples, names


def _auto_move(model, sites, uses, graph: str) -> Tuple[str, str]:
    """``move="auto"``: ``"all"`` on a net that shares parameters (docs/normed.md, "Which
    move"), else ``"structured"``; and why, for the report."""
    for layer in compat.all_layers(model):
        if structure.declares_structure(layer) and layer.trainable and layer.trainable_weights:
            return "all", f"{layer.name} ({type(layer).__name__}) shares its parameters"
    for site, u in zip(sites, uses):
        if u is not None and u > 1:
            return "all", f"{site.path} is used {u} times"
    if graph == "unknown":
        return "structured", ("the graph cannot be read, so weight tying cannot be seen: the "
                              "draw is kept (move='all' to equalize)")
    return "structured", "no layer shares its parameters: the draw is kept"


def _tie_plain_layers(rows: np.ndarray, layers) -> np.ndarray:
    """Add ``a_i = a_j`` between the layers that do not declare their structure."""
    plain = [i for i, layer in enumerate(layers) if not structure.declares_structure(layer)]
    extra = np.zeros((max(len(plain) - 1, 0), len(layers)))
    for r, i in enumerate(plain[1:]):
        extra[r, plain[0]], extra[r, i] = 1.0, -1.0
    return np.vstack([rows, extra]) if rows.size else extra


def _kept_tolerance(model) -> float:
    """Relative output change still within rounding: float32's, or float16/bfloat16's."""
    dtypes = {getattr(layer, "compute_dtype", "float32") for layer in compat.all_layers(model)}
    return 3e-2 if dtypes & {"float16", "bfloat16"} else 1e-4


def _embed(a, used) -> np.ndarray:  # zeros for the kernels not in use
    full = np.zeros(len(used))
    full[np.asarray(used, bool)] = a
    return full


def _refuse_trained(model, sites, values) -> None:
    steps = engine.steps_taken(model)
    if steps:
        raise ValueError(
            f"Model {model.name!r} was already trained ({steps} optimizer steps); "
            "rescaling now would change a trained function. Rescale before `fit`; a model "
            "reloaded to go on training needs no rescale (NormedScaling leaves it as it is). "
            "force=True rescales the trained weights anyway.")
    changed = _fresh_weights_mismatch([s.layer for s in sites], values)
    # Under a strategy the variables hold replica 0's draw (TensorFlow broadcasts initial
    # values), which other workers' unseeded initializers do not reproduce: replica 0 decides.
    (decision,), _ = engine.agree([1.0 if changed else 0.0], variables=[s.variable for s in sites])
    if decision > 0:
        raise ValueError(
            f"Kernels {changed[:4] or '(on replica 0)'} differ from their Normed initializer's "
            "draw (trained, assigned or loaded from a file); refusing to rescale them. Weights "
            "loaded from a rescaled model need no rescale (a subclassed model rebuilds its "
            "layers on loading, so their mark of the rescale is lost and the call is refused "
            "rather than skipped). force=True rescales them anyway.")


def _done(report: Report, verbose: bool) -> Report:
    if verbose:
        print(report)
    return report


def _analytic(sites, structures, uses, optimizer, rows) -> dict:
    rng = np.random.default_rng(0)
    p = engine.step_exponent(optimizer, [rng.standard_normal(64)], [rng.standard_normal(64)])
    gains = [s.layer.kernel_initializer.effective_gain for s in sites]
    if p <= 1.5:  # sign-like step: r = lr * sqrt(n) / ||W|| = lr / std ~ sqrt(fan_in) / gain
        load = [st.fan_in / g**2 for st, g in zip(structures, gains)]
    else:  # r**2 ~ uses * fan_in * rms(grad)**2 / gain**2, rms ~ fan_in / n
        load = [(1.0 if u is None else float(u)) * st.fan_in**2 / st.n_params / g**2
                for st, g, u in zip(structures, gains, uses)]
    # The draw's growth, moved by the scales already applied (r -> r c**-p, the function
    # kept): a forced second call finds them and moves nothing.
    prior = np.log([s.layer.kernel_initializer.scale for s in sites])
    log_r = 0.5 * np.log(np.asarray(load, np.float64)) - p * prior
    log_r -= log_r.mean()
    a, allowed = engine.equalize(log_r, rows, p)
    before = np.exp(log_r)
    return {"scales": np.exp(a), "before": before, "after": before * np.exp(-p * a),
            "exponent": p, "iterations": 1, "allowed": allowed}


def _probe(model, sites, base, batch, optimizer, loss, training, rows, tol, max_iter,
           exact) -> dict:
    """Measure, solve, measure again until the spread stops improving; where ``exact(a)`` the
    law ``r -> r c**-p`` holds exactly and one solve is final (no second measurement)."""
    kernels = [s.variable for s in sites]
    loss_fn = engine.resolve_loss(model, batch, loss)
    a = np.zeros(len(base))
    first = p = allowed = output = None
    best = (math.inf, a)
    best_previous = math.inf
    rows = np.asarray(rows, np.float64).reshape(-1, len(base))
    live = None
    for it in range(max_iter + 1):
        values = [b * math.exp(ai) if ai else b for b, ai in zip(base, a)]
        m = _growth(model, batch, kernels, values, optimizer, loss_fn, training)
        r = np.asarray(m["growth"])
        if live is None:
            # A kernel without gradient (an output left out of the loss, dead units) has no
            # growth to equalize: it keeps its scale, and the others are solved without it.
            live = r > 0
            if not live.any():
                raise ValueError(
                    "No layer gets a gradient on the probe batch: the loss does not depend on "
                    "the weights on this batch (are all sample weights 0? is the loss "
                    "saturated?), or the optimizer's step is zero (a learning rate of 0?).")
        current = float(r[live].max() / r[live].min())
        if current < best[0]:
            best = (current, a, r)
        if first is None:
            first, p, output = r, m["exponent"], m["output"]
        # Stop at the target, or where the law no longer holds well enough to improve.
        if (it == max_iter or current <= tol or current >= 0.95 * best_previous
                or (allowed is not None and current <= 1.05 * allowed)):
            break
        best_previous = current
        step, allowed = _equalize_live(np.log(np.where(live, r, 1.0)), rows, p, live)
        a = a + step
        if p in (1.0, 2.0) and exact(a):
            r = r * np.exp(-p * step)
            best = (float(r[live].max() / r[live].min()), a, r)
            it += 1
            break
    _, a, r = best
    if allowed is None:  # already within tol: no solve ran, but report what the constraints allow
        _, allowed = _equalize_live(np.log(np.where(live, first, 1.0)), rows, p, live)
    return {"scales": np.exp(a), "before": first, "after": r, "exponent": p,
            "iterations": it, "allowed": allowed, "output": output,
            "no_gradient": [kernels[i].path for i in np.flatnonzero(~live)]}


def _equalize_live(log_r: np.ndarray, rows: np.ndarray, p: float, live: np.ndarray):
    """:func:`engine.equalize` over the ``live`` kernels, the others held at scale 1 (their
    columns of the constraints then drop out)."""
    a = np.zeros(len(log_r))
    a[live], allowed = engine.equalize(log_r[live], rows[:, live], p)
    return a, allowed
