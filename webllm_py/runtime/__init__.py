"""Runtimes: the numpy reference and the native wgpu-py interpreter share one interface."""
