"""Layers of keras-normed."""

__all__: list = []
