"""Block-circulant Dense layer on handwritten digits, in a few lines (runs offline in seconds).

    python -m examples.circulant_demo      # from the clone's root

Trains ``Flatten -> CirculantDense(512, block_size=64, relu) -> Dense(10)`` on scikit-learn's
bundled digits (or real MNIST when ``$KERAS_NORMED_MNIST_DIR`` is set), then checks that the
layer is exactly a Dense layer whose weight matrix is block-circulant.
"""

import keras
import numpy as np

from examples.paper.data import load_digits
from keras_normed.layers import CirculantDense
from keras_normed.ops.fft import circulant_to_dense

keras.utils.set_random_seed(0)
data = load_digits("auto", n_train=8000, n_test=2000, seed=0)

hidden = CirculantDense(512, block_size=64, activation="relu")  # kernel_initializer="normed"
model = keras.Sequential([
    keras.Input((28, 28, 1)),
    keras.layers.Flatten(),
    hidden,
    keras.layers.Dense(10, activation="softmax"),
])
model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(data.x_train, data.y_train, epochs=5, batch_size=64, verbose=0)
_, accuracy = model.evaluate(data.x_test, data.y_test, verbose=0)

print(f"kernel shape {tuple(hidden.kernel.shape)}: {hidden.count_params():,} parameters with "
      f"the bias (a Dense(512) layer has {784 * 512 + 512:,})")
print(f"test accuracy {accuracy:.4f}")

# The layer computes relu(x @ W + b) with W the materialised 784 x 512 block-circulant matrix.
x = data.x_test[:16].reshape(16, -1)
w = keras.ops.convert_to_numpy(circulant_to_dense(hidden.kernel, 784, 512))
expected = np.maximum(x @ w + keras.ops.convert_to_numpy(hidden.bias), 0.0)
np.testing.assert_allclose(keras.ops.convert_to_numpy(hidden(x)), expected, atol=1e-4)
print("CirculantDense(x) == relu(x @ circulant_to_dense(kernel) + bias): OK")
