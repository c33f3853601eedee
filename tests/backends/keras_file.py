"""Save or load the zoo model (every layer and initializer of the package) in a `.keras` file,
on the backend named by ``KERAS_BACKEND`` (run by tests/test_cross_backend.py, one process per
backend).

``save WORK``: build the zoo, rescale it with a probe batch, train one epoch with the
``NormedScaling`` callback (trained weights, optimizer state and the "rescaled" mark all go
into the file), save ``WORK/model.keras`` and ``WORK/ref.npz`` (inputs, outputs, weights).
``load WORK``: load the file with ``safe_mode=True``, print outputs, weights and the mark
compared with the saving backend's, then train one more step (the loaded model is usable).
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "distribute"))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import zoo  # noqa: E402

import keras_normed  # noqa: E402
from keras_normed.scaling import is_rescaled  # noqa: E402

mode, work = sys.argv[1], sys.argv[2]
path, ref_path = os.path.join(work, "model.keras"), os.path.join(work, "ref.npz")
out = {"backend": keras.backend.backend()}
if mode == "save":
    keras.utils.set_random_seed(0)
    model = zoo.build_zoo(seed=0)
    x, labels = zoo.data(32, seed=1)
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, labels, epochs=1, batch_size=16, shuffle=False, verbose=0,
              callbacks=[keras_normed.callbacks.NormedScaling(data=(x, labels))])
    out["is_rescaled"] = bool(is_rescaled(model))
    model.save(path)
    arrays = {"x": x, "labels": labels,
              "y": keras.ops.convert_to_numpy(model(x, training=False))}
    arrays.update({f"w:{i:03d}": keras.ops.convert_to_numpy(v)
                   for i, v in enumerate(model.weights)})
    np.savez(ref_path, **arrays)
else:
    model = keras.saving.load_model(path, safe_mode=True)
    ref = np.load(ref_path)
    y = keras.ops.convert_to_numpy(model(ref["x"], training=False))
    out["output_max_abs"] = float(np.max(np.abs(y - ref["y"])))
    out["output_scale"] = float(np.max(np.abs(ref["y"])))
    keys = sorted(k for k in ref.files if k.startswith("w:"))
    out["n_weights"] = [len(model.weights), len(keys)]
    out["weights_max_abs"] = max(float(np.max(np.abs(keras.ops.convert_to_numpy(v) - ref[k])))
                                 for v, k in zip(model.weights, keys))
    out["is_rescaled"] = bool(is_rescaled(model))
    out["layers"] = zoo.zoo_layer_names(model)
    # Rescaling again is a no-op (the mark was read); one more step trains.
    out["rescale_again_applied"] = bool(keras_normed.rescale(model, (ref["x"], ref["labels"]))
                                        .applied)
    loss = model.train_on_batch(ref["x"], ref["labels"])
    out["loss_after_step"] = float(np.asarray(loss).reshape(-1)[0])
print("RESULT " + json.dumps(out), flush=True)
