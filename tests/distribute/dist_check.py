"""MirroredStrategy on two logical CPUs against the default (single-device) strategy.

Run as a script (tests/test_distribute.py does, in a fresh process, because the logical
devices must be configured before any TF op):

    python tests/distribute/dist_check.py OUT_DIR

For each procedure (lsuv, data_dependent_init, rescale, arpit_init, fit with the NormedScaling
and LSUVInit callbacks, save and reload) it builds the zoo model of zoo.py with the same seeds
under both strategies and prints ``RESULT {json}`` with the largest weight differences. The probe
batch is deliberately skewed: its first half (replica 0's share) is scaled by 4 and its second
half by 1/4, so statistics taken on one replica's share differ from the global batch's.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf  # noqa: E402

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import zoo  # noqa: E402

import keras_normed  # noqa: E402
from keras_normed import callbacks  # noqa: E402


def weights(model):
    return [keras.ops.convert_to_numpy(v).astype("float64") for v in model.weights]


def max_rel(a, b):
    """Largest |a - b| / (max|b| + tiny) over all weight tensors."""
    return float(max(np.max(np.abs(x - y)) / (np.max(np.abs(y)) + 1e-12) for x, y in zip(a, b)))


def batch():
    x, y = zoo.data(32, seed=4)
    x[:16] *= 4.0
    x[16:] *= 0.25
    return x, y


def fresh(strategy, seed=0):
    with strategy.scope():
        keras.utils.set_random_seed(seed)
        model = zoo.build_zoo(seed=seed)
        model.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=False)
    return model


def _lsuv(strategy, x, y, work):
    m = fresh(strategy)
    with strategy.scope():
        keras_normed.lsuv(m, x, seed=0)
    return {"lsuv": weights(m)}


def _ddi(strategy, x, y, work):
    m = fresh(strategy)
    with strategy.scope():
        keras_normed.data_dependent_init(m, x, y, seed=0)
    return {"data_dependent_init": weights(m)}


def _rescale(strategy, x, y, work):
    m = fresh(strategy)
    with strategy.scope():
        keras_normed.rescale(m, (x, y), move="all")
    return {"rescale": weights(m)}


def _ddi_outside(strategy, x, y, work):
    m = fresh(strategy)  # built in the scope, initialized from outside it
    keras_normed.data_dependent_init(m, x, y, seed=0)
    return {"data_dependent_init_outside": weights(m)}


def _rescale_outside(strategy, x, y, work):
    m = fresh(strategy)
    keras_normed.rescale(m, (x, y), move="all")
    return {"rescale_outside": weights(m)}


def _arpit(strategy, x, y, work):
    m = fresh(strategy)
    with strategy.scope():
        keras_normed.initializers.arpit_init(m, seed=0)
    return {"arpit_init": weights(m)}


def _fit_scaling_save(strategy, x, y, work):
    m = fresh(strategy)
    scaling = callbacks.NormedScaling(data=(x, y), move="all")
    m.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0, callbacks=[scaling])
    path = os.path.join(work, f"{strategy.__class__.__name__}.keras")
    m.save(path)
    with strategy.scope():
        loaded = keras.saving.load_model(path)
    return {"fit_normed_scaling": weights(m), "reloaded": weights(loaded),
            "normed_scaling_applied": bool(scaling.report.applied),
            "outputs": keras.ops.convert_to_numpy(m.predict(x, verbose=0)),
            "reloaded_outputs": keras.ops.convert_to_numpy(loaded.predict(x, verbose=0))}


def _fit_lsuv_init(strategy, x, y, work):
    m = fresh(strategy)
    m.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0,
          callbacks=[callbacks.LSUVInit(x, seed=0)])
    return {"fit_lsuv_init": weights(m)}


STEPS = (_lsuv, _ddi, _ddi_outside, _rescale, _rescale_outside, _arpit, _fit_scaling_save,
         _fit_lsuv_init)


def procedures(strategy, x, y, work):
    """name -> final weights (or the error it raised), for one strategy."""
    out, errors = {}, {}
    for step in STEPS:
        try:
            out.update(step(strategy, x, y, work))
        except Exception as err:  # noqa: BLE001 - reported to the test, which names it
            errors[step.__name__.strip("_")] = f"{type(err).__name__}: {str(err)[:300]}"
    return out, errors


def main(work):
    os.makedirs(work, exist_ok=True)  # its models are saved there
    x, y = batch()
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    single, single_errors = procedures(tf.distribute.get_strategy(), x, y, work)
    multi, multi_errors = procedures(mirrored, x, y, work)
    result = {"replicas": mirrored.num_replicas_in_sync,
              "errors": {"single": single_errors, "mirrored": multi_errors},
              "normed_scaling_applied": [single.pop("normed_scaling_applied", None),
                                         multi.pop("normed_scaling_applied", None)]}
    for k in ("outputs", "reloaded_outputs"):
        single.pop(k, None)
    result["diff"] = {k: max_rel(multi[k], single[k]) for k in single if k in multi}
    if "reloaded" in multi:
        result["reload_diff"] = max_rel(multi["reloaded"], multi["fit_normed_scaling"])
        result["reload_output_diff"] = float(np.max(np.abs(multi["reloaded_outputs"]
                                                           - multi["outputs"])))
    # Sensitivity: what LSUV and the data-dependent init give on replica 0's share alone.
    one = fresh(tf.distribute.get_strategy())
    keras_normed.lsuv(one, x[:16], seed=0)
    result["lsuv_on_one_replica_share"] = max_rel(weights(one), single["lsuv"])
    one = fresh(tf.distribute.get_strategy())
    keras_normed.data_dependent_init(one, x[:16], y[:16], seed=0)
    result["ddi_on_one_replica_share"] = max_rel(weights(one), single["data_dependent_init"])
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
