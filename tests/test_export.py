"""TF SavedModel export of models holding every layer, run as TF Serving runs them.

TF Serving loads a SavedModel with TensorFlow's C++ loader and runs the tensors named by a
SignatureDef; it has neither Python, Keras nor keras_normed. The closest check here:

- ``model.export`` of the zoo model of tests/distribute/zoo.py (every layer and initializer),
  of a model with the other FFT forms (PeriodicConv2D "fft", CirculantConv2D with > 8 output
  blocks), of the zoo's mixed_float16 twin (float32 last layer), and a custom two-output
  signature through ``keras.export.ExportArchive``;
- ONE fresh process that sets ``sys.modules["keras"] = sys.modules["keras_normed"] = None``
  before ``import tensorflow`` loads each folder with the TF1 loader
  ``tf.compat.v1.saved_model.loader.load(sess, ["serve"], path)`` in a Graph/Session, reads
  ``signature_def["serving_default"]`` (and ``classify``), and ``sess.run``s the signature's
  output tensor names fed by its input tensor names; the results match Keras's ``predict``;
- ``saved_model_cli show --all`` lists the signatures with their named inputs and outputs.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "distribute"))
import zoo  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

pytestmark = pytest.mark.tensorflow  # SavedModel export: the TensorFlow backend only

# Runs in a process without Keras and without keras_normed, as TF Serving does.
TF1_LOADER = r'''
import json, os, sys
sys.modules["keras"] = None          # importing either now raises ImportError
sys.modules["keras_normed"] = None
import numpy as np
import tensorflow as tf

work = sys.argv[1]
names = json.loads(sys.argv[2])
ref = np.load(os.path.join(work, "ref.npz"))
x = ref["x"]
out = {}
for name in names:
    path = os.path.join(work, "models", name, "1")
    row = {}
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], path)
        row["signatures"] = sorted(k for k in meta.signature_def if not k.startswith("__"))
        for key in row["signatures"]:
            sig = meta.signature_def[key]
            (input_key,) = sig.inputs
            tensor = sig.inputs[input_key]
            fetch = {k: v.name for k, v in sig.outputs.items()}
            values = sess.run(fetch, {tensor.name: x})
            row[key] = {
                "method": sig.method_name, "input": input_key,
                "input_dtype": tf.dtypes.as_dtype(tensor.dtype).name,
                "input_shape": [d.size for d in tensor.tensor_shape.dim],
                "outputs": {k: [v.dtype.name, list(v.shape),
                                float(np.max(np.abs(v.astype("float64")
                                                    - ref[f"{name}:{k}"])))]
                            for k, v in values.items()},
            }
    out[name] = row
out["keras_loaded"] = any(sys.modules.get(m) is not None for m in ("keras", "keras_normed"))
print("RESULT " + json.dumps(out))
'''

MODELS = ("zoo", "forms", "custom", "mixed")


def _env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow",
                CUDA_VISIBLE_DEVICES="")


def _result(proc_stdout: str, proc_stderr: str, rc: int) -> dict:
    lines = [ln for ln in proc_stdout.splitlines() if ln.startswith("RESULT ")]
    assert rc == 0 and lines, f"rc={rc}\n{proc_stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def _forms_model():
    """The FFT forms the zoo's layers do not take: periodic "fft", circulant conv "dense"."""
    from keras_normed.layers import CirculantConv2D, PeriodicConv2D

    inp = keras.Input(zoo.INPUT_SHAPE, name="pixels")
    x = PeriodicConv2D(3, 5, method="fft", activation="relu", name="periodic_fft")(inp)
    x = CirculantConv2D(40, 3, block_size=4, padding="same", name="circulant_conv_q10")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(zoo.N_CLASSES, name="logits")(x)
    return keras.Model(inp, out, name="forms")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    work = tmp_path_factory.mktemp("export")
    x, _ = zoo.data(8, seed=2)
    arrays = {"x": x}

    def export(name, model):
        model.export(str(work / "models" / name / "1"), verbose=False)
        arrays[f"{name}:output_0"] = model.predict(x, verbose=0)
        return model

    model = export("zoo", zoo.build_zoo(seed=5))
    export("forms", _forms_model())
    export("mixed", zoo.build_zoo(seed=6, dtype="mixed_float16"))

    # A custom signature with two named outputs, through ExportArchive.
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "classify",
        lambda pixels: {"logits": model(pixels),
                        "probabilities": keras.ops.softmax(model(pixels))},
        input_signature=[tf.TensorSpec((None,) + zoo.INPUT_SHAPE, tf.float32, name="pixels")])
    archive.write_out(str(work / "models" / "custom" / "1"), verbose=False)
    arrays["custom:logits"] = arrays["zoo:output_0"]
    arrays["custom:probabilities"] = keras.ops.convert_to_numpy(
        keras.ops.softmax(arrays["zoo:output_0"]))
    np.savez(work / "ref.npz", **arrays)

    # Two independent processes, run side by side.
    cli = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "saved_model_cli"), "show", "--all",
         "--dir", str(work / "models" / "custom" / "1")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    fresh = subprocess.Popen([sys.executable, "-c", TF1_LOADER, str(work), json.dumps(MODELS)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=_env(), cwd=HERE)
    fresh_out = fresh.communicate(timeout=300)
    cli_out = cli.communicate(timeout=300)
    return {"ref": arrays, "result": _result(*fresh_out, fresh.returncode),
            "cli": (cli.returncode, cli_out[0], cli_out[1]), "zoo": model}


def test_exported_models_hold_every_layer(exported):
    names = set(zoo.zoo_layer_names(exported["zoo"]))
    assert names == {n for n in zoo.LAYERS if zoo.find(n) is not None}


@pytest.mark.parametrize("name", ["zoo", "forms"])
def test_tf1_loader_runs_serving_default_without_keras(exported, name):
    r = exported["result"]
    assert r["keras_loaded"] is False
    row = r[name]
    assert "serving_default" in row["signatures"]
    scale = float(np.max(np.abs(exported["ref"][f"{name}:output_0"])))
    for key in row["signatures"]:  # serving_default, and the `serve` endpoint
        sig = row[key]
        assert sig["method"] == "tensorflow/serving/predict"
        assert sig["input"] == "pixels" and sig["input_dtype"] == "float32"
        assert sig["input_shape"] == [-1, 8, 8, 2]
        dtype, shape, diff = sig["outputs"]["output_0"]
        assert dtype == "float32" and shape == [8, 10]
        assert diff <= 1e-5 * max(scale, 1.0), (key, diff, scale)


def test_tf1_loader_runs_custom_signatures(exported):
    row = exported["result"]["custom"]
    assert row["signatures"] == ["classify", "serving_default"]
    for key in ("classify", "serving_default"):  # the first endpoint is also the default
        outputs = row[key]["outputs"]
        assert set(outputs) == {"logits", "probabilities"}
        for dtype, shape, diff in outputs.values():
            assert dtype == "float32" and shape == [8, 10] and diff <= 1e-5


def test_mixed_precision_export_ends_float32(exported):
    dtype, _, diff = exported["result"]["mixed"]["serving_default"]["outputs"]["output_0"]
    assert dtype == "float32"
    # float16 compute: graph and eager may round differently (float16 eps = 1e-3).
    assert diff <= 5e-3


def test_saved_model_cli_lists_named_signature(exported):
    rc, out, err = exported["cli"]
    assert rc == 0, err[-2000:]
    for text in ("signature_def['classify']", "signature_def['serving_default']",
                 "inputs['pixels'] tensor_info", "outputs['logits'] tensor_info",
                 "outputs['probabilities'] tensor_info", "shape: (-1, 8, 8, 2)",
                 "shape: (-1, 10)", "Method name is: tensorflow/serving/predict"):
        assert text in out, text


def test_no_stand_in_server_is_shipped():
    from keras_normed import cli

    assert "serve" not in cli.COMMANDS
    assert not os.path.exists(os.path.join(os.path.dirname(HERE), "keras_normed", "serving.py"))
