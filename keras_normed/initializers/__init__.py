"""Initializers of keras-normed. Each family lives in its own module."""

from keras_normed.initializers.normed import Normed

__all__ = ["Normed"]
