"""One worker of a 2-process MultiWorkerMirroredStrategy on 127.0.0.1 (run by
tests/test_multi_worker.py): seedless ``kernel_initializer="normed"``, ``rescale`` with a probe,
then 2 steps of a custom training loop; prints the weights as JSON.

Usage: multi_worker.py INDEX PORT0 PORT1
"""

import json
import os
import sys

index, port0, port1 = int(sys.argv[1]), sys.argv[2], sys.argv[3]
os.environ["TF_CONFIG"] = json.dumps({
    "cluster": {"worker": [f"127.0.0.1:{port0}", f"127.0.0.1:{port1}"]},
    "task": {"type": "worker", "index": index}})
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["KERAS_BACKEND"] = "tensorflow"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_normed  # noqa: E402
from keras_normed import scaling  # noqa: E402

strategy = tf.distribute.MultiWorkerMirroredStrategy()
with strategy.scope():
    model = keras.Sequential([
        keras.Input((16,)),
        keras.layers.Dense(32, activation="relu", kernel_initializer="normed"),
        keras.layers.Dense(64, activation="relu", kernel_initializer="normed"),
        keras.layers.Dense(10, kernel_initializer=keras_normed.Normed("linear")),
    ])
    optimizer = keras.optimizers.SGD(0.05)
    optimizer.build(model.trainable_variables)
loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")

rng = np.random.default_rng(0)  # the same probe batch on every worker
x = rng.standard_normal((64, 16)).astype("float32")
y = rng.integers(0, 10, 64)
own_draw_differs = bool(scaling._fresh_weights_mismatch(scaling.normed_layers(model)))
report = keras_normed.rescale(model, (x, y), move="all")
after_rescale = [np.asarray(v.numpy()).tolist() for v in model.weights]


@tf.function
def train_step(xb, yb):
    def replica(xb, yb):
        with tf.GradientTape() as tape:
            per_example = loss_fn(yb, model(xb, training=True))
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=64)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)

    strategy.run(replica, args=(xb, yb))


dataset = strategy.experimental_distribute_dataset(
    tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(64))
batches = iter(dataset)
for _ in range(2):
    train_step(*next(batches))
print("RESULT " + json.dumps({
    "index": index, "applied": report.applied, "own_draw_differs": own_draw_differs,
    "scales": list(report.scales.values()), "after_rescale": after_rescale,
    "after_steps": [np.asarray(v.numpy()).tolist() for v in model.weights]}), flush=True)
