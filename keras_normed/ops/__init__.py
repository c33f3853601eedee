"""Numerical kernels (FFT products) shared by the layers."""
