"""Elementwise ops (registry entries: ``minigrad/testing/entries_elementwise.py``). Each backward is the
local derivative times the upstream gradient; where NumPy broadcast the inputs, the engine sums the gradient
back down (see ``autograd.unbroadcast``)."""
from __future__ import annotations

import numpy as np

from .. import kernels
from ..autograd import Function
from ..backend import array_module, to_device


def _broadcast_shape(op, a, b):
    try:
        return np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"{op}: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be broadcast together"
        ) from None


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        _broadcast_shape("add", a, b)
        return a + b

    @staticmethod
    def backward(ctx, grad):
        return grad, grad


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        _broadcast_shape("sub", a, b)
        return a - b

    @staticmethod
    def backward(ctx, grad):
        return grad, (-grad if ctx.needs_input_grad[1] else None)


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        _broadcast_shape("mul", a, b)
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_arrays
        da = grad * b if ctx.needs_input_grad[0] else None
        db = grad * a if ctx.needs_input_grad[1] else None
        return da, db


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        _broadcast_shape("div", a, b)
        ctx.save_for_backward(a, b)
        return a / b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_arrays
        g_over_b = grad / b
        da = g_over_b if ctx.needs_input_grad[0] else None
        db = -g_over_b * a / b if ctx.needs_input_grad[1] else None  # d(a/b)/db = -a/b^2
        return da, db


class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, grad):
        return -grad


class PowScalar(Function):
    """``x ** p`` for a constant exponent ``p``: d/dx = p * x**(p-1)."""

    name = "pow_scalar"

    @staticmethod
    def forward(ctx, x, exponent):
        ctx.save_for_backward(x)
        ctx.exponent = exponent
        return x ** x.dtype.type(exponent) if x.dtype.kind == "f" else x ** exponent

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_arrays
        p = x.dtype.type(ctx.exponent)
        return grad * p * x ** (p - 1)


class Pow(Function):
    """``a ** b`` for two tensors: d/da = b * a**(b-1), d/db = a**b * log(a) (needs a > 0)."""

    @staticmethod
    def forward(ctx, a, b):
        _broadcast_shape("pow", a, b)
        out = a ** b
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        a, b, out = ctx.saved_arrays
        xp = array_module(a)
        da = grad * b * a ** (b - 1) if ctx.needs_input_grad[0] else None
        db = grad * out * xp.log(a) if ctx.needs_input_grad[1] else None
        return da, db


class Exp(Function):
    @staticmethod
    def forward(ctx, x):
        y = array_module(x).exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_arrays
        return grad * y


class Log(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return array_module(x).log(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_arrays
        return grad / x


class Abs(Function):
    """|x|; the gradient at exactly 0 is 0 (the subgradient PyTorch picks)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return array_module(x).abs(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_arrays
        return kernels.for_arrays("elementwise", grad, x).abs_backward(grad, x)


class Sqrt(Function):
    @staticmethod
    def forward(ctx, x):
        y = array_module(x).sqrt(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_arrays
        return grad / (2 * y)


class Tanh(Function):
    @staticmethod
    def forward(ctx, x):
        y = array_module(x).tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_arrays
        return kernels.for_arrays("elementwise", grad, y).tanh_backward(grad, y)   # grad * (1 - y * y)


class Sigmoid(Function):
    """1 / (1 + exp(-x)), computed without overflow for either sign of x (``sigmoid`` of the elementwise
    kernel family: exp of a non-positive number only)."""

    @staticmethod
    def forward(ctx, x):
        y = kernels.for_arrays("elementwise", x).sigmoid(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_arrays
        return grad * y * (1 - y)


class ReLU(Function):
    """max(x, 0); the gradient at exactly 0 is 0, as in PyTorch. The gradient is taken from the output
    (``g`` where ``y > 0``), which is kept anyway, so no mask is stored; both directions are the
    ``elementwise`` kernel family."""

    @staticmethod
    def forward(ctx, x):
        y = kernels.for_arrays("elementwise", x).relu(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_arrays
        return kernels.for_arrays("elementwise", grad, y).relu_backward(grad, y)


class LeakyReLU(Function):
    """x for x > 0, ``negative_slope * x`` otherwise (the gradient at 0 is ``negative_slope``).

    Both directions are the ``elementwise`` kernel family: one-pass numba loops for float32/float64 NumPy
    arrays (``minigrad/kernels/elementwise_cpu.py``), the ``where`` expressions of
    ``kernels/elementwise_reference.py`` otherwise (the reference and the CuPy path).
    """

    name = "leaky_relu"

    @staticmethod
    def forward(ctx, x, negative_slope=0.01):
        ctx.save_for_backward(x)
        ctx.negative_slope = negative_slope
        return kernels.for_arrays("elementwise", x).leaky_relu(x, negative_slope)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_arrays
        return kernels.for_arrays("elementwise", grad, x).leaky_relu_backward(grad, x, ctx.negative_slope)


class Softplus(Function):
    """log(1 + exp(x)), computed as max(x, 0) + log1p(exp(-|x|)) so it never overflows;
    its derivative is sigmoid(x)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return kernels.for_arrays("elementwise", x).softplus(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_arrays
        return kernels.for_arrays("elementwise", grad, x).softplus_backward(grad, x)


class Cast(Function):
    """A dtype conversion; the gradient is cast back to the input's dtype."""

    @staticmethod
    def forward(ctx, x, dtype):
        ctx.in_dtype = x.dtype
        return x.astype(dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad.astype(ctx.in_dtype)


class ToDevice(Function):
    """A copy to another device; the gradient is copied back."""

    name = "to_device"

    @staticmethod
    def forward(ctx, x, device):
        ctx.in_device = "cpu" if isinstance(x, np.ndarray) else "cuda"
        return to_device(x, device)

    @staticmethod
    def backward(ctx, grad):
        return to_device(grad, ctx.in_device)


class Clone(Function):
    @staticmethod
    def forward(ctx, x):
        return x.copy()

    @staticmethod
    def backward(ctx, grad):
        return grad
