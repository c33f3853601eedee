"""TF SavedModel export of a model holding every layer, served without Keras or keras_normed.

- ``model.export`` and ``keras.export.ExportArchive`` (custom two-output signature) on the zoo
  model of tests/distribute/zoo.py, and on its mixed_float16 twin (float32 last layer);
- a fresh process with ``sys.modules["keras"] = sys.modules["keras_normed"] = None`` loads the
  folders with ``tf.saved_model.load`` and runs the signatures; in the same process
  keras_normed/serving.py (loaded by file path) serves the model over TF Serving's REST API on
  127.0.0.1 with an ephemeral port and answers a fixed list of requests;
- ``saved_model_cli show --all`` lists the signatures with their named inputs and outputs;
- ``python -m keras_normed serve --port 0 --max-requests 3`` (the CLI) answers real HTTP.
"""

import json
import os
import re
import subprocess
import sys
import urllib.request

import keras
import numpy as np
import pytest
import tensorflow as tf

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "distribute"))
import zoo  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SERVING_PY = os.path.join(os.path.dirname(HERE), "keras_normed", "serving.py")

NO_KERAS = r'''
import importlib.util, json, os, sys, threading, urllib.error, urllib.request
sys.modules["keras"] = None          # importing either now raises ImportError
sys.modules["keras_normed"] = None
import numpy as np
import tensorflow as tf
work, serving_py = sys.argv[1], sys.argv[2]
ref = np.load(os.path.join(work, "ref.npz"))
x = ref["x"]
out = {}
for name in ("zoo", "custom", "mixed"):
    loaded = tf.saved_model.load(os.path.join(work, "models", name, "1"))
    sigs = loaded.signatures
    row = {"signatures": sorted(sigs)}
    for key, fn in sigs.items():
        res = fn(pixels=tf.constant(x))
        row[key] = {k: [v.dtype.name, float(np.max(np.abs(v.numpy() - ref[f"{name}:{k}"])))]
                    for k, v in res.items()}
    out[name] = row
out["keras_loaded"] = sys.modules.get("keras") is not None

spec = importlib.util.spec_from_file_location("kn_serving", serving_py)
serving = importlib.util.module_from_spec(spec)
spec.loader.exec_module(serving)
served = serving.ServedModel(os.path.join(work, "models", "zoo"))
server = serving.make_server(served, "127.0.0.1", 0)
port = server.server_address[1]
thread = threading.Thread(target=server.serve_forever, daemon=True)
thread.start()

def call(path, body=None):
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return [r.status, json.loads(r.read())]
    except urllib.error.HTTPError as err:
        return [err.code, json.loads(err.read())]

rows = x[:3].tolist()
out["http"] = {
    "status": call("/v1/models/zoo"),
    "version_status": call("/v1/models/zoo/versions/1"),
    "metadata": call("/v1/models/zoo/metadata"),
    "rows": call("/v1/models/zoo:predict", {"instances": rows}),
    "rows_named": call("/v1/models/zoo:predict", {"instances": [{"pixels": r} for r in rows]}),
    "columns": call("/v1/models/zoo/versions/1:predict",
                    {"signature_name": "serving_default", "inputs": {"pixels": rows}}),
    "bad_shape": call("/v1/models/zoo:predict", {"instances": [[1.0, 2.0]]}),
    "bad_json": call("/v1/models/zoo:predict", b"{not json"),
    "bad_signature": call("/v1/models/zoo:predict", {"signature_name": "nope",
                                                     "instances": rows}),
    "both_formats": call("/v1/models/zoo:predict", {"instances": rows, "inputs": rows}),
    "unknown_model": call("/v1/models/other:predict", {"instances": rows}),
    "unknown_version": call("/v1/models/zoo/versions/7"),
}
server.shutdown()
server.server_close()
print("RESULT " + json.dumps(out))
'''


def _env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow",
                CUDA_VISIBLE_DEVICES="")


def _result(proc_stdout: str, proc_stderr: str, rc: int) -> dict:
    lines = [ln for ln in proc_stdout.splitlines() if ln.startswith("RESULT ")]
    assert rc == 0 and lines, f"rc={rc}\n{proc_stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    work = tmp_path_factory.mktemp("export")
    x, _ = zoo.data(8, seed=2)
    arrays = {"x": x}
    model = zoo.build_zoo(seed=5)
    model.export(str(work / "models" / "zoo" / "1"), verbose=False)
    arrays["zoo:output_0"] = keras.ops.convert_to_numpy(model(x))

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

    mixed = zoo.build_zoo(seed=6, dtype="mixed_float16")
    mixed.export(str(work / "models" / "mixed" / "1"), verbose=False)
    arrays["mixed:output_0"] = keras.ops.convert_to_numpy(mixed(x))
    np.savez(work / "ref.npz", **arrays)

    # Three independent processes, run side by side.
    cli = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "saved_model_cli"), "show", "--all",
         "--dir", str(work / "models" / "custom" / "1")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    fresh = subprocess.Popen([sys.executable, "-c", NO_KERAS, str(work), SERVING_PY],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=_env(), cwd=HERE)
    serve = subprocess.Popen(
        [sys.executable, "-m", "keras_normed", "serve", "--model-dir",
         str(work / "models" / "zoo"), "--port", "0", "--max-requests", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    served_cli = _talk_to_cli_server(serve, x)
    fresh_out = fresh.communicate(timeout=300)
    cli_out = cli.communicate(timeout=300)
    return {"ref": arrays, "result": _result(*fresh_out, fresh.returncode),
            "cli": (cli.returncode, cli_out[0], cli_out[1]), "serve_cli": served_cli}


def _talk_to_cli_server(proc, x):
    line = proc.stdout.readline()  # "Serving 'zoo' version 1 at http://127.0.0.1:PORT/..."
    match = re.search(r"http://127\.0\.0\.1:(\d+)/v1/models/zoo", line)
    if match is None:
        proc.kill()
        return {"error": line + proc.communicate()[1][-2000:]}
    base = f"http://127.0.0.1:{match.group(1)}/v1/models/zoo"
    replies = {}
    for key, url, body in (("status", base, None), ("metadata", base + "/metadata", None),
                           ("predict", base + ":predict", {"instances": x[:2].tolist()})):
        data = None if body is None else json.dumps(body).encode()
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=60) as r:
            replies[key] = [r.status, json.loads(r.read())]
    replies["returncode"] = proc.wait(timeout=60)  # exits after --max-requests 3
    return replies


def test_signatures_without_keras(exported):
    r = exported["result"]
    assert r["keras_loaded"] is False
    assert r["zoo"]["signatures"] == ["serve", "serving_default"] or \
        r["zoo"]["signatures"] == ["serving_default"]
    for key in r["zoo"]["signatures"]:
        assert r["zoo"][key]["output_0"] == ["float32", pytest.approx(0.0, abs=1e-6)]
    assert r["custom"]["signatures"] == ["classify", "serving_default"]
    for key in ("classify", "serving_default"):  # the first endpoint is also the default
        assert set(r["custom"][key]) == {"logits", "probabilities"}
        for dtype, diff in r["custom"][key].values():
            assert dtype == "float32" and diff <= 1e-6


def test_mixed_precision_export_ends_float32(exported):
    r = exported["result"]["mixed"]
    dtype, diff = r["serving_default"]["output_0"]
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


def test_rest_status_and_metadata(exported):
    http = exported["result"]["http"]
    for key in ("status", "version_status"):
        code, body = http[key]
        assert code == 200
        assert body["model_version_status"][0]["version"] == "1"
        assert body["model_version_status"][0]["state"] == "AVAILABLE"
    code, body = http["metadata"]
    assert code == 200 and body["model_spec"] == {"name": "zoo", "signature_name": "",
                                                  "version": "1"}
    sig = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["method_name"] == "tensorflow/serving/predict"
    assert sig["inputs"]["pixels"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in sig["inputs"]["pixels"]["tensor_shape"]["dim"]] == \
        ["-1", "8", "8", "2"]
    assert sig["outputs"]["output_0"]["dtype"] == "DT_FLOAT"


def test_rest_predict_matches_keras(exported):
    expected = exported["ref"]["zoo:output_0"][:3]
    http = exported["result"]["http"]
    for key, field in (("rows", "predictions"), ("rows_named", "predictions"),
                       ("columns", "outputs")):
        code, body = http[key]
        assert code == 200, body
        np.testing.assert_allclose(np.asarray(body[field], "float32"), expected, atol=1e-6)


def test_rest_errors(exported):
    http = exported["result"]["http"]
    expect = {"bad_shape": (400, "pixels"), "bad_json": (400, "JSON"),
              "bad_signature": (400, "nope"), "both_formats": (400, "exactly one"),
              "unknown_model": (404, "other"), "unknown_version": (404, "7")}
    for key, (code, word) in expect.items():
        got_code, body = http[key]
        assert got_code == code, (key, body)
        assert set(body) == {"error"} and word in body["error"], (key, body)


def test_cli_serve_command(exported):
    replies = exported["serve_cli"]
    assert "error" not in replies, replies.get("error")
    assert replies["returncode"] == 0
    assert replies["status"][0] == 200 and replies["metadata"][0] == 200
    code, body = replies["predict"]
    assert code == 200
    np.testing.assert_allclose(np.asarray(body["predictions"], "float32"),
                               exported["ref"]["zoo:output_0"][:2], atol=1e-6)
