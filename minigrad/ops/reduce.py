"""Reductions (sum, mean, max) and the log-sum-exp family (logsumexp, softmax, log_softmax); registry
entries: ``minigrad/testing/entries_reduce.py``.

``dim`` is always a tuple of non-negative axes here (``Tensor`` normalises it). A reduction's backward
first gives the gradient its reduced axes back (size 1), then broadcasts it over them.

Empty reductions (a reduced dim of size 0) follow PyTorch 2.x: ``sum`` is 0, ``mean`` is NaN (0 / 0),
``logsumexp`` is -inf (the log of an empty sum), ``softmax`` / ``log_softmax`` along an empty dim give the
empty result, and ``max`` raises a ValueError naming the dim (an empty set has no largest element; PyTorch
raises too). Reducing over non-empty dims of a tensor that is empty elsewhere gives an empty result.

The log-sum-exp family is computed stably: shifted by the maximum over ``dim``, so no exponent is positive
and nothing overflows, with differences of log-sum-exps formed from the shifted values so that the small
log-sum is not rounded to the scale of the inputs. The computation is the ``loss`` kernel family
(``kernels/loss_reference.py``: ``shifted_logsumexp`` explains it; one kernel on the GPU, ``loss_cuda.py``).
"""
from __future__ import annotations

import numpy as np

from .. import kernels
from ..autograd import Function
from ..backend import array_module


def _reduced_shape(shape, dims, keepdim):
    """The shape of a reduction of ``shape`` over ``dims``."""
    if keepdim:
        return tuple(1 if i in dims else n for i, n in enumerate(shape))
    return tuple(n for i, n in enumerate(shape) if i not in dims)


def _keep(grad, dims, keepdim):
    """Re-insert the reduced axes (as size 1) into a gradient computed with keepdim=False."""
    if keepdim:
        return grad
    xp = array_module(grad)
    return xp.expand_dims(grad, tuple(sorted(dims))) if dims else grad


class Sum(Function):
    @staticmethod
    def forward(ctx, x, dim, keepdim=False):
        ctx.shape, ctx.dim, ctx.keepdim = x.shape, dim, keepdim
        return x.sum(axis=dim, keepdims=keepdim)

    @staticmethod
    def backward(ctx, grad):
        xp = array_module(grad)
        return xp.broadcast_to(_keep(grad, ctx.dim, ctx.keepdim), ctx.shape)


class Mean(Function):
    @staticmethod
    def forward(ctx, x, dim, keepdim=False):
        ctx.shape, ctx.dim, ctx.keepdim = x.shape, dim, keepdim
        count = 1
        for d in dim:
            count *= x.shape[d]
        ctx.count = count
        if x.dtype.kind != "f":
            raise TypeError(f"mean: needs a floating-point tensor, got {x.dtype}")
        if count == 0:  # 0 / 0, as PyTorch; NumPy would also warn "mean of empty slice"
            return array_module(x).full(_reduced_shape(x.shape, dim, keepdim), np.nan, dtype=x.dtype)
        return x.mean(axis=dim, keepdims=keepdim)

    @staticmethod
    def backward(ctx, grad):
        xp = array_module(grad)
        g = _keep(grad, ctx.dim, ctx.keepdim) / grad.dtype.type(max(ctx.count, 1))
        return xp.broadcast_to(g, ctx.shape)


class Max(Function):
    """The largest value over ``dim``. With ties, the gradient is split evenly among the tied maxima
    (what PyTorch's ``amax`` does), so the gradient of the max of a constant row is 1/n to each element."""

    @staticmethod
    def forward(ctx, x, dim, keepdim=False):
        empty = [d for d in (dim or range(x.ndim)) if x.shape[d] == 0]
        if empty:
            raise ValueError(f"max: cannot take the max of an empty tensor of shape {tuple(x.shape)} over dim "
                             f"{empty[0]}, which has size 0 (an empty set has no maximum); reduce over "
                             "dims of nonzero size")
        m = x.max(axis=dim, keepdims=True)
        mask = x == m
        ctx.save_for_backward(mask)
        ctx.dim, ctx.keepdim = dim, keepdim
        return m if keepdim else m.reshape([n for i, n in enumerate(m.shape) if i not in dim])

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_arrays
        g = _keep(grad, ctx.dim, ctx.keepdim)
        count = mask.sum(axis=ctx.dim, keepdims=True).astype(grad.dtype)
        return mask * (g / count)


class LogSumExp(Function):
    """log(sum(exp(x), dim)). Gradient: softmax(x) along ``dim`` (zero for an all -inf row)."""

    @staticmethod
    def forward(ctx, x, dim, keepdim=False):
        lse, p = kernels.for_arrays("loss", x).logsumexp(x, dim)      # reduced axes kept, and softmax(x)
        ctx.save_for_backward(p)
        ctx.dim, ctx.keepdim = dim, keepdim
        return lse if keepdim else lse.reshape([n for i, n in enumerate(lse.shape) if i not in dim])

    @staticmethod
    def backward(ctx, grad):
        (p,) = ctx.saved_arrays
        return _keep(grad, ctx.dim, ctx.keepdim) * p


class Softmax(Function):
    """exp(x) / sum(exp(x)) along ``dim``.

    Backward: with y = softmax(x) and upstream gradient g, dL/dx_i = sum_j g_j dy_j/dx_i
    = sum_j g_j y_j (delta_ij - y_i) = y_i (g_i - sum_j g_j y_j).
    """

    @staticmethod
    def forward(ctx, x, dim):
        _, y = kernels.for_arrays("loss", x).logsumexp(x, (dim,))
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_arrays
        return y * (grad - (grad * y).sum(axis=ctx.dim, keepdims=True))


class LogSoftmax(Function):
    """x - logsumexp(x) along ``dim``.

    Backward: d(x_j - lse)/dx_i = delta_ij - softmax_i, so dL/dx_i = g_i - softmax_i * sum_j g_j.
    """

    name = "log_softmax"

    @staticmethod
    def forward(ctx, x, dim):
        y, p = kernels.for_arrays("loss", x).log_softmax(x, (dim,))
        ctx.save_for_backward(p)
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx, grad):
        (p,) = ctx.saved_arrays
        return grad - p * grad.sum(axis=ctx.dim, keepdims=True)
