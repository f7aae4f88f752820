"""The reference elementwise kernels: LeakyReLU's two directions and the sigmoid as array expressions, for
any array module (NumPy or CuPy, taken from the arrays they are given).

The readable version, the GPU path, and what ``elementwise_cpu.py`` (LeakyReLU as one-pass numba loops) and
``elementwise_cuda.py`` are tested against:

* LeakyReLU forward:  ``y = x`` where ``x > 0``, else ``slope * x``;
* LeakyReLU backward: ``dx = g`` where ``x > 0``, else ``slope * g`` (the gradient at exactly 0 is ``slope``,
  as in PyTorch; a NaN input gives ``slope * g``);
* sigmoid: ``1 / (1 + exp(-x))``, computed without overflow for either sign of ``x``;
* the input gradients of tanh, ``g * (1 - y^2)`` from its output ``y``, and of ``|x|``, ``g * sign(x)``;
* ReLU, ``y = max(x, 0)``, and its input gradient from the output, ``dx = g`` where ``y > 0`` else 0 (so 0 at
  exactly 0, as in PyTorch, and 0 where ``x`` is NaN);
* softplus, ``log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|))`` (no overflow), and its input gradient
  ``g * sigmoid(x)``.
"""
from __future__ import annotations

from ..backend import array_module

__all__ = ["supports", "leaky_relu", "leaky_relu_backward", "sigmoid", "tanh_backward", "abs_backward", "relu",
           "relu_backward", "softplus", "softplus_backward"]


def supports(*arrays) -> bool:
    """The reference runs on any NumPy or CuPy arrays."""
    return True


def leaky_relu(x, negative_slope):
    """``x`` where ``x > 0``, ``negative_slope * x`` elsewhere, in a new array of ``x``'s shape and dtype."""
    return array_module(x).where(x > 0, x, x * x.dtype.type(negative_slope))


def leaky_relu_backward(grad, x, negative_slope):
    """The input gradient of :func:`leaky_relu`: ``grad`` where ``x > 0``, ``negative_slope * grad`` elsewhere."""
    return array_module(grad).where(x > 0, grad, grad * grad.dtype.type(negative_slope))


def sigmoid(x):
    """1 / (1 + exp(-x)) without overflow: exp of a non-positive number only, for either sign of x."""
    xp = array_module(x)
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


def tanh_backward(grad, y):
    """The input gradient of tanh from its output ``y``: ``grad * (1 - y * y)``."""
    return grad * (1 - y * y)


def abs_backward(grad, x):
    """The input gradient of ``|x|``: ``grad * sign(x)`` (0 at exactly 0, the subgradient PyTorch picks; NaN
    at NaN)."""
    return grad * array_module(x).sign(x)


def relu(x):
    """``max(x, 0)`` in a new array of ``x``'s shape and dtype (NaN stays NaN)."""
    return array_module(x).maximum(x, x.dtype.type(0))


def relu_backward(grad, y):
    """ReLU's input gradient from its output ``y``: ``grad`` where ``y > 0``, else 0."""
    return array_module(grad).where(y > 0, grad, grad.dtype.type(0))


def softplus(x):
    """``log(1 + exp(x))``, computed as ``max(x, 0) + log1p(exp(-|x|))`` so that it never overflows."""
    xp = array_module(x)
    return xp.maximum(x, x.dtype.type(0)) + xp.log1p(xp.exp(-xp.abs(x)))


def softplus_backward(grad, x):
    """softplus's input gradient: ``grad * sigmoid(x)``."""
    return grad * sigmoid(x)
