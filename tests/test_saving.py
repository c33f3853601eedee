"""`.keras` round trip of every public object, checked in a fresh Python process.

One model (tests/distribute/zoo.py) holds every layer and initializer of the package; it is
rescaled by the NormedScaling callback during one epoch of fit (so the "already rescaled" mark,
trained weights and optimizer state are all in the file), saved, and loaded by a subprocess that
imports only keras and keras_normed. The subprocess first tries to load WITHOUT the package
(Keras's own error expected), then with it under ``safe_mode=True``.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "distribute"))
import zoo  # noqa: E402

import keras_normed  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

LOADER = r'''
import json, sys, os
import numpy as np
work = sys.argv[1]
out = {}
import keras
# 1. Without the package: Keras must refuse with its own error.
try:
    keras.saving.load_model(os.path.join(work, "zoo.keras"))
    out["without_package"] = None
except Exception as err:
    out["without_package"] = [type(err).__name__, str(err)]
out["package_imported_by_keras"] = "keras_normed" in sys.modules
import keras_normed
from keras_normed.scaling import is_rescaled
out["registered"] = sorted(k.split(">", 1)[1] for k in keras.saving.get_custom_objects()
                           if k.startswith("keras_normed>"))
model = keras.saving.load_model(os.path.join(work, "zoo.keras"), safe_mode=True)
ref = np.load(os.path.join(work, "ref.npz"))
x = ref["x"]
# Compared in order: Keras restores values by position. (Paths may differ: a wrapped layer
# built during loading gets its own top-level path.)
ref_weights = sorted(k for k in ref.files if k.startswith("w:"))
out["n_weights"] = [len(model.weights), len(ref_weights)]
out["weights"] = {v.path: float(np.max(np.abs(keras.ops.convert_to_numpy(v) - ref[k])))
                  for v, k in zip(model.weights, ref_weights)}
ref_opt = sorted(k for k in ref.files if k.startswith("o:"))
out["optimizer"] = {v.path: float(np.max(np.abs(keras.ops.convert_to_numpy(v) - ref[k])))
                    for v, k in zip(model.optimizer.variables, ref_opt)}
out["n_optimizer"] = len(model.optimizer.variables)
out["n_optimizer_ref"] = sum(k.startswith("o:") for k in ref.files)
out["output"] = float(np.max(np.abs(keras.ops.convert_to_numpy(model(x, training=False))
                                    - ref["y"])))
out["layers"] = sorted({type(l).__name__ for l in model.layers
                        if type(l).__module__.startswith("keras_normed")})
out["is_rescaled"] = bool(is_rescaled(model))
before = [keras.ops.convert_to_numpy(v).copy() for v in model.weights]
report = keras_normed.rescale(model, (x, ref["labels"]))
out["rescale_again_applied"] = bool(report.applied)
out["rescale_again_changed"] = float(max(np.max(np.abs(b - keras.ops.convert_to_numpy(v)))
                                         for b, v in zip(before, model.weights)))
# Initializers on their own: configs and values.
with open(os.path.join(work, "inits.json")) as f:
    inits = json.load(f)
out["inits"] = {}
for name, (serialized, shape) in inits.items():
    init = keras.initializers.get(serialized)
    values = keras.ops.convert_to_numpy(init(tuple(shape), dtype="float32"))
    out["inits"][name] = {"class": type(init).__name__, "config": init.get_config(),
                          "diff": float(np.max(np.abs(values - ref["i:" + name])))}
print("RESULT " + json.dumps(out))
'''


def run_fresh(script: str, *args, timeout: float = 240) -> dict:
    """Run ``script`` in a fresh interpreter; returns the JSON it prints after ``RESULT``."""
    # The backend of this run (tests/test_cross_backend.py loads on the other backend).
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND=keras.backend.backend(),
               CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=HERE)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"rc={proc.returncode}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def _initializers_to_check():
    """name -> initializer object: every class, configured, and every string alias."""
    found = {f"class:{k}": v for k, v in zoo.initializer_instances(seed=3).items()}
    for alias in zoo.ALIASES:
        if alias in keras.saving.get_custom_objects():
            found[f"alias:{alias}"] = alias
    return found


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    work = tmp_path_factory.mktemp("saving")
    keras.utils.set_random_seed(0)
    model = zoo.build_zoo(seed=0)
    x, labels = zoo.data(32, seed=1)
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callback = keras_normed.callbacks.NormedScaling(data=(x, labels))
    model.fit(x, labels, epochs=1, batch_size=16, shuffle=False, verbose=0,
              callbacks=[callback])
    model.save(work / "zoo.keras")
    arrays = {"x": x, "labels": labels,
              "y": keras.ops.convert_to_numpy(model(x, training=False))}
    arrays.update({f"w:{i:03d}:{v.path}": keras.ops.convert_to_numpy(v)
                   for i, v in enumerate(model.weights)})
    arrays.update({f"o:{i:03d}:{v.path}": keras.ops.convert_to_numpy(v)
                   for i, v in enumerate(model.optimizer.variables)})
    inits = {}
    for name, init in _initializers_to_check().items():
        shape = (3, 3, 4, 8)  # a conv kernel: valid for every initializer family
        obj = keras.initializers.get(init)
        arrays["i:" + name] = keras.ops.convert_to_numpy(obj(shape, dtype="float32"))
        inits[name] = [keras.saving.serialize_keras_object(obj), list(shape)]
    np.savez(work / "ref.npz", **arrays)
    (work / "inits.json").write_text(json.dumps(inits))
    result = run_fresh(LOADER, work)
    return {"model": model, "callback": callback, "result": result, "inits": inits}


def test_every_public_object_is_covered():
    """A public object that zoo.py does not know must be added to these deployment tests."""
    unknown = zoo.public_names() - set(zoo.KNOWN) - zoo.NOT_SAVED - set(zoo.ALIASES)
    assert not unknown, f"add {sorted(unknown)} to tests/distribute/zoo.py"
    assert zoo.missing() == [], f"not yet in the package: {zoo.missing()}"


def test_every_serializable_class_is_registered_by_the_package_and_saved(saved):
    """Every class the package's source registers (``register_keras_serializable``) is known
    after a plain ``import keras_normed`` in a fresh process, and is in the zoo, so the tests
    here save it (in the model, or as an initializer) and load it in that process."""
    import re

    root = os.path.join(HERE, os.pardir, "keras_normed")
    declared = set()
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    declared.update(re.findall(
                        r"register_keras_serializable\([^)]*\)\s*\nclass (\w+)", f.read()))
    assert declared and sorted(declared) == saved["result"]["registered"]
    assert declared <= set(zoo.INITIALIZERS) | set(zoo.LAYERS)
    saved_classes = {n[len("class:"):] for n in saved["result"]["inits"] if n.startswith("class:")}
    assert declared == saved_classes | set(saved["result"]["layers"])


def test_model_holds_every_layer(saved):
    expected = sorted(n for n in zoo.LAYERS if zoo.find(n) is not None)
    assert saved["result"]["layers"] == expected
    assert zoo.zoo_layer_names(saved["model"]) == expected


def test_weights_and_optimizer_state_identical(saved):
    r = saved["result"]
    assert r["n_weights"] == [len(saved["model"].weights)] * 2
    assert max(r["weights"].values()) == 0.0, r["weights"]
    assert r["n_optimizer"] == r["n_optimizer_ref"] > 1
    assert max(r["optimizer"].values()) == 0.0, r["optimizer"]


def test_outputs_identical(saved):
    assert saved["result"]["output"] <= 1e-6


def test_rescaled_mark_survives(saved):
    r = saved["result"]
    assert saved["callback"].report.applied, saved["callback"].report
    assert r["is_rescaled"]
    # rescale on the reloaded model is a no-op (the mark says so) and changes no weight.
    assert not r["rescale_again_applied"]
    assert r["rescale_again_changed"] == 0.0


def test_initializers_round_trip(saved):
    r = saved["result"]["inits"]
    assert set(r) == set(saved["inits"])
    for name, row in r.items():
        if name.startswith("class:"):  # seeded: same values (an alias has seed None)
            assert row["diff"] == 0.0, name
            assert row["class"] == name[len("class:"):]
            original = saved["inits"][name][0]["config"]
            assert row["config"] == original, name
    for alias in zoo.ALIASES:
        if alias in keras.saving.get_custom_objects():
            cls = keras.saving.get_custom_objects()[alias]
            assert r[f"alias:{alias}"]["class"] == cls.__name__


def test_loading_without_the_package_fails_clearly(saved):
    r = saved["result"]
    assert not r["package_imported_by_keras"]
    assert r["without_package"] is not None, "loaded without keras_normed?"
    kind, message = r["without_package"]
    # Keras names the class it cannot find (a TypeError from its deserializer).
    assert kind == "TypeError", r["without_package"]
    assert "Could not" in message and any(
        name in message for name in zoo.KNOWN + ("keras_normed",)), message


def test_unsafe_lambda_is_still_refused(tmp_path):
    """safe_mode=True stays meaningful next to the package's objects."""
    inp = keras.Input((4,))
    out = keras.layers.Lambda(lambda t: t * 2)(
        keras.layers.Dense(3, kernel_initializer="normed")(inp))
    keras.Model(inp, out).save(tmp_path / "lambda.keras")
    with pytest.raises(ValueError, match="safe_mode"):
        keras.saving.load_model(tmp_path / "lambda.keras", safe_mode=True)
