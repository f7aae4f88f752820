"""numba kernels for elementwise activations on the CPU: one pass over memory where NumPy needs several.

LeakyReLU, ``y = x if x > 0 else slope * x``, is in every layer of the ssgan models. Written with NumPy
it takes a comparison, a product and a selection (``np.where(x > 0, x, slope * x)``): three passes over
the array and two temporary arrays, and ``np.where`` with a data-dependent mask is several times slower
than a plain product. Here each direction is one loop that reads its inputs once and writes its result
once, spread over the cores with ``prange`` (each thread owns a contiguous slice; nothing is shared):

* forward:  ``y_i = x_i`` if ``x_i > 0`` else ``slope * x_i``;
* backward: ``dx_i = g_i`` if ``x_i > 0`` else ``slope * g_i`` (so the gradient at exactly 0 is
  ``slope``, as in PyTorch, and a NaN input gives ``slope * g``).

Same names, arguments and results as ``elementwise_reference.py`` (the array expressions: the reference
these loops are tested against, and the GPU path). The sigmoid and the tanh and abs gradients are the
reference's.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .checks import PARALLEL, check_arrays
from .elementwise_reference import abs_backward, sigmoid, tanh_backward

__all__ = ["supports", "leaky_relu", "leaky_relu_backward", "sigmoid", "tanh_backward", "abs_backward"]

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
