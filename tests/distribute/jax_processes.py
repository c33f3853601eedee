"""One of 2 JAX processes on 127.0.0.1 (run by tests/test_jax_processes.py): data parallelism
with ``keras.distribution.DataParallel`` over one CPU device per process, seedless
``kernel_initializer="normed"``, ``rescale`` with a probe batch that differs between the
processes (each passes its own shard, as with ``fit``), then 2 ``fit`` steps; prints the
weights as JSON.

Usage: jax_processes.py INDEX PORT
"""

import json
import os
import sys

index, port = int(sys.argv[1]), sys.argv[2]
os.environ["KERAS_BACKEND"] = "jax"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import keras  # noqa: E402

# jax.distributed.initialize("127.0.0.1:PORT", num_processes=2, process_id=index), then one
# global random seed agreed by all processes: unseeded initializers ("normed" included) draw
# the same seed on each (with jax.distributed.initialize alone they differ, and JAX refuses
# to place a replicated variable that is not the same on each process).
keras.distribution.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=index)
import numpy as np  # noqa: E402

import keras_normed  # noqa: E402

assert jax.process_count() == 2 and len(jax.devices()) == 2, jax.devices()
# Each process feeds its own shard of the data (numpy arrays): no auto-sharding.
keras.distribution.set_distribution(
    keras.distribution.DataParallel(devices=jax.devices(), auto_shard_dataset=False))

model = keras.Sequential([
    keras.Input((16,)),
    keras.layers.Dense(32, activation="relu", kernel_initializer="normed"),
    keras.layers.Dense(64, activation="relu", kernel_initializer="normed"),
    keras.layers.Dense(10, kernel_initializer=keras_normed.Normed("linear")),
])
model.compile(keras.optimizers.SGD(0.05),
              keras.losses.SparseCategoricalCrossentropy(from_logits=True))
initial = [np.asarray(keras.ops.convert_to_numpy(v)).tolist() for v in model.weights]

# Each process holds its own shard of the data, of very different scale: growth measured on
# a process's own probe alone gives other scales on each process.
rng = np.random.default_rng(index)
x = (rng.standard_normal((64, 16)) * (1 + 9 * index)).astype("float32")
y = rng.integers(0, 10, 64)
report = keras_normed.rescale(model, (x, y), move="all")
after_rescale = [np.asarray(keras.ops.convert_to_numpy(v)).tolist() for v in model.weights]
model.fit(x, y, batch_size=32, epochs=1, steps_per_epoch=2, verbose=0, shuffle=False)
print("RESULT " + json.dumps({
    "index": index, "applied": report.applied, "scales": list(report.scales.values()),
    "local_growth": [row.values["growth_before"] for row in report.rows],
    "initial": initial, "after_rescale": after_rescale,
    "after_steps": [np.asarray(keras.ops.convert_to_numpy(v)).tolist()
                    for v in model.weights]}), flush=True)
