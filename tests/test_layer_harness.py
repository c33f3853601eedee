"""Keras's own layer harness (``keras.src.testing.TestCase.run_layer_test``) on every layer of
keras_normed.layers: serialization round trip, build, symbolic and eager calls with the expected
shapes, a compiled training step (``jit_compile="auto"``) and the mixed_float16 check (output
dtype of the eager call equal to the symbolic one, float32 variables). Small shapes: each case
takes about a second.
"""

import keras
import pytest
from keras.src import testing

import keras_normed  # noqa: F401 - registers the layers
from keras_normed.layers import (
    CirculantConv2D,
    CirculantDense,
    PeriodicConv2D,
    WeightNormalization,
)

# The harness's training step feeds a generator with Keras's default shuffle=True.
pytestmark = pytest.mark.filterwarnings("ignore:`shuffle=True` was passed:UserWarning")


class LayerHarnessTest(testing.TestCase):
    def setUp(self):
        super().setUp()
        # data_format=None layers read the global layout: start from the default one.
        keras.config.set_image_data_format("channels_last")

    def check(self, cls, init_kwargs, input_shape, output_shape, **kwargs):
        self.run_layer_test(cls, init_kwargs, input_shape=input_shape,
                            expected_output_shape=output_shape, run_training_check=True,
                            run_mixed_precision_check=True, **kwargs)

    def test_circulant_dense(self):
        self.check(CirculantDense, {"units": 6, "block_size": 4, "activation": "relu"},
                   (2, 10), (2, 6), expected_num_trainable_weights=2)

    def test_circulant_dense_rank3_no_bias(self):
        self.check(CirculantDense, {"units": 5, "block_size": 3, "use_bias": False},
                   (2, 3, 7), (2, 3, 5), expected_num_trainable_weights=1)

    def test_circulant_conv2d(self):
        self.check(CirculantConv2D, {"filters": 6, "kernel_size": 3, "block_size": 2,
                                     "padding": "same", "strides": 2},
                   (2, 5, 5, 4), (2, 3, 3, 6), expected_num_trainable_weights=2)

    def test_circulant_conv2d_channels_first(self):
        self.check(CirculantConv2D, {"filters": 6, "kernel_size": (3, 2), "block_size": 3,
                                     "data_format": "channels_first"},
                   (2, 4, 5, 6), (2, 6, 3, 5))

    def test_periodic_conv2d(self):
        for method in ("fft", "direct"):
            self.check(PeriodicConv2D, {"filters": 3, "kernel_size": 5, "method": method},
                       (2, 6, 6, 2), (2, 6, 6, 3))

    def test_periodic_conv2d_channels_first(self):
        self.check(PeriodicConv2D, {"filters": 3, "kernel_size": 3,
                                    "data_format": "channels_first"},
                   (2, 2, 5, 4), (2, 3, 5, 4))

    def test_weight_normalization_dense(self):
        self.check(WeightNormalization, {"layer": keras.layers.Dense(3, activation="tanh")},
                   (2, 4), (2, 3), expected_num_trainable_weights=3)

    def test_weight_normalization_conv2d(self):
        self.check(WeightNormalization,
                   {"layer": keras.layers.Conv2D(3, 2, padding="same"), "g_initializer": "ones"},
                   (2, 5, 5, 2), (2, 5, 5, 3), expected_num_trainable_weights=3)
