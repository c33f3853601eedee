"""Serve an exported SavedModel over TF Serving's REST API on this machine (a local stand-in).

``tensorflow_model_server`` is the production server; it is not installable everywhere (no
Debian package, nothing on PyPI). This module loads a SavedModel folder laid out as TF Serving
expects (``MODEL_DIR/<version>/saved_model.pb``, highest integer version served) with
``tf.saved_model.load`` alone (neither Keras nor keras-normed is needed to run the graph) and
answers the REST routes of TF Serving 2.x that matter for prediction:

- ``GET  /v1/models/NAME`` (and ``/versions/V``): version status;
- ``GET  /v1/models/NAME/metadata``: the signature defs, as TF Serving prints them;
- ``POST /v1/models/NAME[/versions/V]:predict`` with ``{"instances": [...]}`` (row format,
  answered by ``{"predictions": [...]}``) or ``{"inputs": ...}`` (columnar format, answered by
  ``{"outputs": ...}``), optional ``"signature_name"`` (default ``serving_default``).

Errors are answered as ``{"error": "..."}`` with status 400 (bad request) or 404 (unknown
model, version or route), like TF Serving. Binary ``{"b64": ...}`` values are not supported.

Example::

    model.export("models/digits/1")          # in Python, Keras 3
    keras-normed serve --model-dir models/digits --port 8501
    curl -d '{"instances": [[0.0, 1.0, ...]]}' localhost:8501/v1/models/digits:predict

Reference: TensorFlow Serving RESTful API,
https://www.tensorflow.org/tfx/serving/api_rest
"""

from __future__ import annotations

import argparse
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Optional, Tuple

import numpy as np

__all__ = ["ServedModel", "ServingError", "make_server", "add_arguments", "run"]

_PREFIX = "/v1/models/"


class ServingError(Exception):
    """A request that cannot be answered; ``status`` is the HTTP status code."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _latest_version(model_dir: str) -> Tuple[int, str]:
    """Highest integer sub-folder of ``model_dir`` holding a ``saved_model.pb``."""
    if not os.path.isdir(model_dir):
        raise ValueError(f"`model_dir` {model_dir!r} is not a folder. Pass the model's base "
                         "folder, laid out as MODEL_DIR/1/saved_model.pb.")
    versions = [int(d) for d in os.listdir(model_dir) if d.isdigit()
                and os.path.isfile(os.path.join(model_dir, d, "saved_model.pb"))]
    if not versions:
        raise ValueError(
            f"`model_dir` {model_dir!r} has no version folder with a saved_model.pb. TF Serving "
            "serves MODEL_DIR/<integer version>/: export with `model.export(MODEL_DIR + '/1')`.")
    version = max(versions)
    return version, os.path.join(model_dir, str(version))


class ServedModel:
    """One model version loaded with ``tf.saved_model.load``, answering REST request bodies.

    Args:
        model_dir: base folder holding integer version folders (``model_dir/1/``, ...).
        name: the model name in the URLs; defaults to the base folder's name.
    """

    def __init__(self, model_dir: str, name: Optional[str] = None):
        import tensorflow as tf

        self.version, self.path = _latest_version(model_dir)
        self.name = name or os.path.basename(os.path.normpath(model_dir))
        self._tf = tf
        self._loaded = tf.saved_model.load(self.path)
        self.signatures = dict(self._loaded.signatures)
        self._lock = threading.Lock()
        self._metadata = self._read_signature_defs()

    def _read_signature_defs(self) -> Dict[str, Any]:
        # TF Serving prints the SignatureDef protos of the MetaGraph; read the same protos.
        from google.protobuf import json_format
        from tensorflow.core.protobuf import saved_model_pb2

        proto = saved_model_pb2.SavedModel()
        with open(os.path.join(self.path, "saved_model.pb"), "rb") as f:
            proto.ParseFromString(f.read())
        defs = proto.meta_graphs[0].signature_def
        return {key: json_format.MessageToDict(defs[key], preserving_proto_field_name=True)
                for key in defs if not key.startswith("__")}

    # --- REST bodies -----------------------------------------------------------------------

    def status(self) -> Dict[str, Any]:
        return {"model_version_status": [{
            "version": str(self.version), "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""}}]}

    def metadata(self) -> Dict[str, Any]:
        return {"model_spec": {"name": self.name, "signature_name": "",
                               "version": str(self.version)},
                "metadata": {"signature_def": {"signature_def": self._metadata}}}

    def _signature(self, body: Dict[str, Any]):
        key = body.get("signature_name", "serving_default")
        if key not in self.signatures:
            raise ServingError(f"Serving signature name: {key!r} not found in signature def. "
                               f"Available: {sorted(self.signatures)}.")
        return self.signatures[key]

    def _tensor(self, key: str, spec, value):
        try:
            array = np.asarray(value, dtype=spec.dtype.as_numpy_dtype)
        except (TypeError, ValueError) as err:
            raise ServingError(f"Input {key!r}: cannot convert to {spec.dtype.name}: {err}. "
                               "Send nested lists of numbers.") from err
        if not spec.shape.is_compatible_with(array.shape):
            raise ServingError(f"Input {key!r} has shape {list(array.shape)} but the signature "
                               f"expects {spec.shape.as_list()} (None = any size).")
        return array

    def predict(self, body: Any) -> Dict[str, Any]:
        """Answer a ``:predict`` request body (already parsed from JSON)."""
        if not isinstance(body, dict):
            raise ServingError("The request body must be a JSON object with \"instances\" or "
                               "\"inputs\".")
        has_rows, has_cols = "instances" in body, "inputs" in body
        if has_rows == has_cols:
            raise ServingError("Send exactly one of \"instances\" (row format) or \"inputs\" "
                               "(columnar format).")
        fn = self._signature(body)
        specs = fn.structured_input_signature[1]
        if has_rows:
            rows = body["instances"]
            if not isinstance(rows, list) or not rows:
                raise ServingError("\"instances\" must be a non-empty list, one entry per "
                                   "example.")
            if len(specs) == 1 and not isinstance(rows[0], dict):
                columns = {next(iter(specs)): rows}
            else:
                if not all(isinstance(r, dict) for r in rows):
                    raise ServingError("With several inputs, each instance must be an object "
                                       f"naming the inputs {sorted(specs)}.")
                columns = {k: [r.get(k) for r in rows] for k in specs}
        else:
            cols = body["inputs"]
            columns = cols if isinstance(cols, dict) else (
                {next(iter(specs)): cols} if len(specs) == 1 else None)
            if columns is None:
                raise ServingError(f"\"inputs\" must be an object naming the inputs "
                                   f"{sorted(specs)}.")
        missing = sorted(set(specs) - set(columns))
        unknown = sorted(set(columns) - set(specs))
        if missing or unknown:
            raise ServingError(f"Inputs do not match the signature: missing {missing}, "
                               f"unknown {unknown}; expected {sorted(specs)}.")
        feed = {k: self._tensor(k, specs[k], columns[k]) for k in specs}
        try:
            outputs = fn(**feed)
        except Exception as err:  # noqa: BLE001 - any graph error is the client's input
            raise ServingError(f"Prediction failed: {type(err).__name__}: "
                               f"{str(err).splitlines()[0] if str(err) else ''}") from err
        result = {}
        for key, tensor in outputs.items():
            if tensor.dtype.name in ("float16", "bfloat16"):
                raise ServingError(f"Output {key!r} is {tensor.dtype.name}, which TF Serving's "
                                   "REST JSON does not map: end the model with a float32 layer.")
            result[key] = tensor.numpy()
        if has_rows:
            if len(result) == 1:
                return {"predictions": next(iter(result.values())).tolist()}
            n = len(next(iter(result.values())))
            return {"predictions": [{k: v[i].tolist() for k, v in result.items()}
                                    for i in range(n)]}
        if len(result) == 1:
            return {"outputs": next(iter(result.values())).tolist()}
        return {"outputs": {k: v.tolist() for k, v in result.items()}}

    # --- routing ---------------------------------------------------------------------------

    def handle(self, method: str, path: str, body: Optional[bytes]) -> Tuple[int, Dict]:
        """Route one request; returns ``(status, json_body)``."""
        try:
            return 200, self._route(method, path.split("?", 1)[0], body)
        except ServingError as err:
            return err.status, {"error": str(err)}
        except Exception as err:  # noqa: BLE001 - a reply beats a dropped connection
            return 500, {"error": f"Internal error: {type(err).__name__}: {err}"}

    def _route(self, method: str, path: str, body: Optional[bytes]) -> Dict[str, Any]:
        if not path.startswith(_PREFIX):
            raise ServingError(f"Malformed request: {method} {path}", status=404)
        rest = path[len(_PREFIX):]
        verb = None
        if ":" in rest:
            rest, verb = rest.rsplit(":", 1)
        parts = rest.split("/")
        name, parts = parts[0], parts[1:]
        if name != self.name:
            raise ServingError(f"Servable not found for request: Latest({name})", status=404)
        if len(parts) >= 2 and parts[0] == "versions":
            if parts[1] != str(self.version):
                raise ServingError(f"Servable not found for request: Specific({name}, "
                                   f"{parts[1]})", status=404)
            parts = parts[2:]
        if method == "GET" and verb is None and parts == []:
            return self.status()
        if method == "GET" and verb is None and parts == ["metadata"]:
            return self.metadata()
        if method == "POST" and verb == "predict" and parts == []:
            try:
                parsed = json.loads(body or b"")
            except ValueError as err:
                raise ServingError(f"JSON Parse error: {err}") from err
            with self._lock:  # one graph call at a time keeps memory bounded on small hosts
                return self.predict(parsed)
        raise ServingError(f"Malformed request: {method} {path}", status=404)


class _Handler(BaseHTTPRequestHandler):
    served: ServedModel = None  # set on the subclass made by make_server
    quiet = True

    def _reply(self, status: int, payload: Dict[str, Any]) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 - http.server's naming
        self._reply(*self.served.handle("GET", self.path, None))

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        self._reply(*self.served.handle("POST", self.path, self.rfile.read(length)))

    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        if not self.quiet:
            super().log_message(format, *args)


def make_server(served: ServedModel, host: str = "127.0.0.1", port: int = 8501,
                quiet: bool = True) -> ThreadingHTTPServer:
    """A threading HTTP server answering TF Serving's REST API for ``served``.

    ``port=0`` picks a free port (read it back from ``server.server_address[1]``). Call
    ``serve_forever()`` (e.g. in a thread) and ``shutdown()`` / ``server_close()`` to stop.
    """
    handler = type("Handler", (_Handler,), {"served": served, "quiet": quiet})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-dir", required=True,
                        help="base folder with integer version folders (MODEL_DIR/1/...)")
    parser.add_argument("--model-name", default=None,
                        help="name in the URLs (default: the base folder's name)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind; the default answers this machine only")
    parser.add_argument("--port", type=int, default=8501, help="0 picks a free port")
    parser.add_argument("--max-requests", type=int, default=None,
                        help="stop after this many requests (for scripted checks)")
    parser.add_argument("--verbose", action="store_true", help="log every request")


def run(args: argparse.Namespace) -> int:
    """Load the model, print the URL (and flush, so a parent process can read the port), serve."""
    try:
        served = ServedModel(args.model_dir, args.model_name)
    except ValueError as err:
        print(f"error: {err}")
        return 2
    server = make_server(served, args.host, args.port, quiet=not args.verbose)
    host, port = server.server_address[:2]
    print(f"Serving {served.name!r} version {served.version} at "
          f"http://{host}:{port}/v1/models/{served.name}", flush=True)
    try:
        if args.max_requests is None:
            server.serve_forever()
        else:
            server.daemon_threads = False  # server_close then waits for the last replies
            for _ in range(args.max_requests):
                server.handle_request()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
