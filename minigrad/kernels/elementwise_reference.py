"""The reference elementwise kernels: LeakyReLU's two directions as array expressions, for any array module
(NumPy or CuPy, taken from the arrays they are given).

The readable version, the GPU path, and what ``elementwise_cpu.py`` (the same functions as one-pass numba
loops) is tested against:

* forward:  ``y = x`` where ``x > 0``, else ``slope * x``;
* backward: ``dx = g`` where ``x > 0``, else ``slope * g`` (the gradient at exactly 0 is ``slope``, as in
  PyTorch; a NaN input gives ``slope * g``).
"""
from __future__ import annotations

from ..backend import array_module

__all__ = ["supports", "leaky_relu", "leaky_relu_backward"]


def supports(*arrays) -> bool:
    """The reference runs on any NumPy or CuPy arrays."""
    return True


def leaky_relu(x, negative_slope):
    """``x`` where ``x > 0``, ``negative_slope * x`` elsewhere, in a new array of ``x``'s shape and dtype."""
    return array_module(x).where(x > 0, x, x * x.dtype.type(negative_slope))


def leaky_relu_backward(grad, x, negative_slope):
    """The input gradient of :func:`leaky_relu`: ``grad`` where ``x > 0``, ``negative_slope * grad`` elsewhere."""
    return array_module(grad).where(x > 0, grad, grad * grad.dtype.type(negative_slope))
