"""numba kernels for elementwise activations on the CPU: one pass over memory where NumPy needs several.

LeakyReLU, ``y = x if x > 0 else slope * x``, is in every layer of the ssgan models. Written with NumPy
it takes a comparison, a product and a selection (``np.where(x > 0, x, slope * x)``): three passes over
the array and two temporary arrays, and ``np.where`` with a data-dependent mask is several times slower
than a plain product. Here each direction is one loop that reads its inputs once and writes its result
once, spread over the cores with ``prange`` (each thread owns a contiguous slice; nothing is shared):

* forward:  ``y_i = x_i`` if ``x_i > 0`` else ``slope * x_i``;
* backward: ``dx_i = g_i`` if ``x_i > 0`` else ``slope * g_i`` (so the gradient at exactly 0 is
  ``slope``, as in PyTorch, and a NaN input gives ``slope * g``).

The sigmoid, ReLU and softplus (the ``--preset improved`` MNIST networks: NumPy's ``log1p(exp(...))`` and
``where`` made the generator's softplus one of the largest items of its step) are one loop each way too:

* sigmoid:  ``1 / (1 + e)`` for ``x >= 0``, ``e / (1 + e)`` otherwise, ``e = exp(-|x|)``;
* ReLU:     ``y_i = max(x_i, 0)`` (NaN stays NaN); backward from the output, ``dx_i = g_i`` if ``y_i > 0`` else 0;
* softplus: ``y_i = max(x_i, 0) + log1p(exp(-|x_i|))``, the ``log1p`` computed from a ``log`` in the
  array's own dtype (D. Goldberg, *What every computer scientist should know about floating-point
  arithmetic*, 1991, theorem 4); backward ``dx_i = g_i * sigmoid(x_i)``.

Same names, arguments and results as ``elementwise_reference.py`` (the array expressions: the reference
these loops are tested against, and the GPU path); the transcendental functions are libm's here and NumPy's
there, so sigmoid and softplus agree with the reference to a few units in the last place, not bit for bit.
The tanh and abs gradients are the reference's.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .checks import PARALLEL, check_arrays
from .elementwise_reference import abs_backward, tanh_backward

__all__ = ["supports", "leaky_relu", "leaky_relu_backward", "sigmoid", "tanh_backward", "abs_backward", "relu",
           "relu_backward", "softplus", "softplus_backward"]

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@njit(parallel=PARALLEL, cache=True)
def _leaky_relu(x, slope, out):
    for i in prange(x.size):
        v = x[i]
        out[i] = v if v > 0 else v * slope


@njit(parallel=PARALLEL, cache=True)
def _leaky_relu_backward(grad, x, slope, out):
    for i in prange(x.size):
        g = grad[i]
        out[i] = g if x[i] > 0 else g * slope


def _c_order(a):
    """``a`` itself when it is C-contiguous, else a C-contiguous copy (``np.ascontiguousarray`` would turn a
    0-d array into a 1-d one)."""
    return a if a.flags.c_contiguous else a.copy(order="C")


def supports(*arrays) -> bool:
    """Whether these kernels handle the arrays: NumPy arrays of float32 or float64, all of one dtype."""
    return all(isinstance(a, np.ndarray) and a.dtype in DTYPES and a.dtype == arrays[0].dtype for a in arrays)


def leaky_relu(x, negative_slope):
    """``x`` where ``x > 0``, ``negative_slope * x`` elsewhere, in a new array of ``x``'s shape and dtype."""
    x = _c_order(x)
    out = np.empty(x.shape, dtype=x.dtype)
    _leaky_relu(x.reshape(-1), x.dtype.type(negative_slope), out.reshape(-1))
    return out


def leaky_relu_backward(grad, x, negative_slope):
    """The input gradient of :func:`leaky_relu`: ``grad`` where ``x > 0``, ``negative_slope * grad`` elsewhere."""
    check_arrays("leaky_relu_backward", {"grad": (grad, x.shape)})
    grad, x = _c_order(grad), _c_order(x)
    out = np.empty(x.shape, dtype=x.dtype)
    _leaky_relu_backward(grad.reshape(-1), x.reshape(-1), x.dtype.type(negative_slope), out.reshape(-1))
    return out


@njit(inline="always")
def _sigmoid_of(v):
    e = np.exp(-abs(v))
    return 1 / (1 + e) if v >= 0 else e / (1 + e)


@njit(parallel=PARALLEL, cache=True)
def _sigmoid(x, out):
    for i in prange(x.size):
        out[i] = _sigmoid_of(x[i])


@njit(parallel=PARALLEL, cache=True)
def _relu(x, out):
    for i in prange(x.size):
        v = x[i]
        out[i] = v if not v <= 0 else 0     # NaN is kept (not NaN <= 0), as np.maximum keeps it


@njit(parallel=PARALLEL, cache=True)
def _relu_backward(grad, y, out):
    for i in prange(y.size):
        out[i] = grad[i] if y[i] > 0 else 0


@njit(parallel=PARALLEL, cache=True)
def _softplus(x, out):
    one, zero = x.dtype.type(1), x.dtype.type(0)
    for i in prange(x.size):
        v = x[i]
        u = np.exp(-abs(v))
        w = one + u
        # log1p(u) as log(w) * u / (w - 1) (Goldberg's trick: exact to a few ulps, since w - 1 is the
        # rounding of u that log(w) saw); libm's float32 log1p costs about twice a log here
        lp = u if w == one else np.log(w) * (u / (w - one))
        out[i] = (v if v > zero else zero) + lp if v == v else v


@njit(parallel=PARALLEL, cache=True)
def _softplus_backward(grad, x, out):
    for i in prange(x.size):
        out[i] = grad[i] * _sigmoid_of(x[i])


def _unary(kernel, x):
    x = _c_order(x)
    out = np.empty(x.shape, dtype=x.dtype)
    kernel(x.reshape(-1), out.reshape(-1))
    return out


def _binary(name, kernel, grad, x):
    check_arrays(name, {"grad": (grad, x.shape)})
    grad, x = _c_order(grad), _c_order(x)
    out = np.empty(x.shape, dtype=x.dtype)
    kernel(grad.reshape(-1), x.reshape(-1), out.reshape(-1))
    return out


def sigmoid(x):
    """``1 / (1 + exp(-x))`` without overflow, in a new array of ``x``'s shape and dtype."""
    return _unary(_sigmoid, x)


def relu(x):
    """``max(x, 0)`` in a new array of ``x``'s shape and dtype."""
    return _unary(_relu, x)


def relu_backward(grad, y):
    """ReLU's input gradient from its output ``y``: ``grad`` where ``y > 0``, else 0."""
    return _binary("relu_backward", _relu_backward, grad, y)


def softplus(x):
    """``log(1 + exp(x))`` without overflow, in a new array of ``x``'s shape and dtype."""
    return _unary(_softplus, x)


def softplus_backward(grad, x):
    """softplus's input gradient ``grad * sigmoid(x)``."""
    return _binary("softplus_backward", _softplus_backward, grad, x)
