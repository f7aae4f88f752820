"""The GPU elementwise kernels (``elementwise_cuda``): LeakyReLU's two directions, the sigmoid and the tanh and
abs gradients, one CuPy ``ElementwiseKernel`` launch each.

Same names, arguments and results as the reference in ``elementwise_reference.py`` (read that first):

* LeakyReLU forward:  ``y = x`` where ``x > 0``, else ``slope * x``;
* LeakyReLU backward: ``dx = g`` where ``x > 0``, else ``slope * g`` (the gradient at exactly 0 is ``slope``,
  a NaN input gives ``slope * g``);
* sigmoid: ``1 / (1 + e)`` for ``x >= 0`` and ``e / (1 + e)`` otherwise, with ``e = exp(-|x|)``;
* tanh's gradient ``g * (1 - y * y)`` from the output ``y`` (compiled with ``--fmad=false``, so that
  ``1 - y * y`` is rounded twice, as the reference rounds it), and abs's ``g * sign(x)``.

Written as array expressions LeakyReLU's forward pass is a comparison, a product and a selection, three
kernels and two temporary arrays, and the sigmoid six; each kernel here reads its inputs once and writes its
result once (tanh's gradient is three kernels as array expressions, abs's two). The upstream
gradient may be a broadcast view (``mean`` hands one on): an ``ElementwiseKernel`` reads strided inputs as
they are, so nothing is copied first. Both results are written in the memory order of ``x``: channel rows
when ``x`` is a convolution's product or batch norm's output, so the convolution next to it needs no move
(``conv_cuda.py`` explains channel rows). The bodies are plain C expressions on scalars, which the tests
also compile with the host's C compiler.

ReLU and softplus (both directions) are the reference's array expressions on CuPy for now: they serve the
``--preset improved`` MNIST networks, whose GPU step has not been fused yet.

CuPy is imported lazily (through ``minigrad.backend``), so this module imports on machines without it.
"""
from __future__ import annotations

import functools

import numpy as np

from .. import backend
from .conv_cuda import empty_like
from .elementwise_reference import relu, relu_backward, softplus, softplus_backward  # noqa: F401 (the interface)

__all__ = ["supports", "leaky_relu", "leaky_relu_backward", "sigmoid", "LEAKY_RELU_BODY", "LEAKY_RELU_BACKWARD_BODY",
           "SIGMOID_OF_X", "SIGMOID_BODY", "tanh_backward", "abs_backward", "TANH_BACKWARD_BODY", "ABS_BACKWARD_BODY",
           "relu", "relu_backward", "softplus", "softplus_backward"]

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

#: ``y`` from ``x`` and the slope (both of the activations' type T).
LEAKY_RELU_BODY = "y = x > (T)0 ? x : x * slope;"

#: ``dx`` from the upstream gradient ``g``, the forward input ``x`` and the slope.
LEAKY_RELU_BACKWARD_BODY = "dx = x > (T)0 ? g : g * slope;"

#: The sigmoid of ``x`` as a C expression, given ``e = exp(-|x|)`` (exp of a non-positive number only, so
#: nothing overflows); ``loss_cuda.py``'s binary cross-entropy uses it too.
SIGMOID_OF_X = "(x >= (T)0 ? (T)1 / ((T)1 + e) : e / ((T)1 + e))"

#: ``y = sigmoid(x)``.
SIGMOID_BODY = "const T e = exp(-fabs(x));\ny = " + SIGMOID_OF_X + ";"

#: tanh's input gradient from the upstream gradient ``g`` and the output ``y``.
TANH_BACKWARD_BODY = "dx = g * ((T)1 - y * y);"

#: abs's input gradient: ``g`` times the sign of ``x`` (0 at +-0, ``x`` itself - NaN - at NaN: ``x != x``).
ABS_BACKWARD_BODY = "dx = g * (x > (T)0 ? (T)1 : x < (T)0 ? (T)-1 : x == x ? (T)0 : x);"

OPTIONS = ("--fmad=false",)


def supports(*arrays) -> bool:
    """Whether these kernels handle the arrays: CuPy arrays of float32 or float64, all of one dtype."""
    return all(backend.device_of(a) == "cuda" and a.dtype in DTYPES and a.dtype == arrays[0].dtype
               for a in arrays)


@functools.lru_cache(maxsize=None)
def _kernels(cp):
    forward = cp.ElementwiseKernel("T x, T slope", "T y", LEAKY_RELU_BODY, "minigrad_leaky_relu")
    backward = cp.ElementwiseKernel("T g, T x, T slope", "T dx", LEAKY_RELU_BACKWARD_BODY,
                                    "minigrad_leaky_relu_backward")
    sigmoid_kernel = cp.ElementwiseKernel("T x", "T y", SIGMOID_BODY, "minigrad_sigmoid")
    tanh_grad = cp.ElementwiseKernel("T g, T y", "T dx", TANH_BACKWARD_BODY, "minigrad_tanh_backward", options=OPTIONS)
    abs_grad = cp.ElementwiseKernel("T g, T x", "T dx", ABS_BACKWARD_BODY, "minigrad_abs_backward")
    return forward, backward, sigmoid_kernel, tanh_grad, abs_grad


def leaky_relu(x, negative_slope):
    """``x`` where ``x > 0``, ``negative_slope * x`` elsewhere, in a new array of ``x``'s shape, dtype and
    memory order (channel rows or C-contiguous)."""
    cp = backend.cupy_module()
    out = empty_like(x)
    _kernels(cp)[0](x, x.dtype.type(negative_slope), out)
    return out


def leaky_relu_backward(grad, x, negative_slope):
    """The input gradient of :func:`leaky_relu`: ``grad`` where ``x > 0``, ``negative_slope * grad`` elsewhere."""
    if tuple(grad.shape) != tuple(x.shape):
        raise ValueError(f"leaky_relu_backward: argument grad has shape {tuple(grad.shape)}, but this call needs "
                         f"shape {tuple(x.shape)}")
    cp = backend.cupy_module()
    out = empty_like(x)                          # x's order (channel rows or C-contiguous), whatever grad's
    _kernels(cp)[1](grad, x, x.dtype.type(negative_slope), out)
    return out


def sigmoid(x):
    """``1 / (1 + exp(-x))`` without overflow, in a new array of ``x``'s shape, dtype and memory order."""
    cp = backend.cupy_module()
    out = empty_like(x)
    _kernels(cp)[2](x, out)
    return out


def _gradient(kernel, grad, x):
    """Run an input-gradient kernel on ``grad`` and the saved ``x``, into an array in ``x``'s order."""
    if tuple(grad.shape) != tuple(x.shape):
        raise ValueError(f"{kernel.name}: argument grad has shape {tuple(grad.shape)}, but this call needs shape "
                         f"{tuple(x.shape)}")
    out = empty_like(x)
    kernel(grad, x, out)
    return out


def tanh_backward(grad, y):
    """tanh's input gradient ``grad * (1 - y * y)`` from its output ``y``."""
    return _gradient(_kernels(backend.cupy_module())[3], grad, y)


def abs_backward(grad, x):
    """abs's input gradient ``grad * sign(x)``."""
    return _gradient(_kernels(backend.cupy_module())[4], grad, x)
