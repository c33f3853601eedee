"""Reference gradients for the tests, written apart from ``keras_normed.engine.grad``: each
backend's own autodiff of ``loss_fn(model(x))`` with respect to some of the model's variables
(``tf.GradientTape`` on TensorFlow; on JAX, ``jax.value_and_grad`` of the model called in a
``keras.StatelessScope`` holding the values)."""

import keras
import numpy as np


def value_and_gradients(model, variables, loss_fn, x, training=True):
    """``(loss, [gradient per variable], output)`` as numpy, ``loss_fn(output) -> scalar``."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            out = model(x, training=training)
            loss = loss_fn(out)
        grads = tape.gradient(loss, variables)
    elif backend == "jax":
        import jax

        def fn(values):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                out = model(x, training=training)
            return loss_fn(out), out

        (loss, out), grads = jax.value_and_grad(fn, has_aux=True)(
            [v.value for v in variables])
    else:
        raise NotImplementedError(f"no reference gradients for backend {backend!r}")
    return (float(keras.ops.convert_to_numpy(loss)),
            [np.asarray(keras.ops.convert_to_numpy(g)) for g in grads],
            np.asarray(keras.ops.convert_to_numpy(out)))
