"""Keras callbacks: thin wrappers over the package's model-level functions."""

from __future__ import annotations

import keras  # noqa: F401

__all__: list = []
