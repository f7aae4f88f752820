"""Reductions (sum, mean, max) and the log-sum-exp family (logsumexp, softmax, log_softmax); registry
entries: ``minigrad/testing/entries_reduce.py``.

``dim`` is always a tuple of non-negative axes here (``Tensor`` normalises it). A reduction's backward
first gives the gradient its reduced axes back (size 1), then broadcasts it over them.

Empty reductions (a reduced dim of size 0) follow PyTorch 2.x: ``sum`` is 0, ``mean`` is NaN (0 / 0),
``logsumexp`` is -inf (the log of an empty sum), ``softmax`` / ``log_softmax`` along an empty dim give the
empty result, and ``max`` raises a ValueError naming the dim (an empty set has no largest element; PyTorch
raises too). Reducing over non-empty dims of a tensor that is empty elsewhere gives an empty result.
"""
from __future__ import annotations

import contextlib

import numpy as np

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


def shifted_logsumexp(x, dim):
    """The pieces of a stable log-sum-exp over ``dim``: ``(shifted, log_s, m, p)`` with

        m = max(x) over dim (0 for a row whose max is not finite),  shifted = x - m,
        log_s = log(sum(exp(shifted))),  so logsumexp(x) = m + log_s,  p = softmax(x).

    Shifting by the row maximum m makes every exponent <= 0, so nothing overflows, for any finite x and
    for rows that are entirely -inf (logsumexp -inf, softmax 0: no NaN, no warning). Results that are
    differences of log-sum-exps should be formed from ``shifted`` and ``log_s``, not from
    ``x - (m + log_s)``: for |x| ~ 1e4 in float32, m + log_s rounds log_s to the spacing of floats near
    1e4 (~1e-3), while ``shifted - log_s`` keeps it exact (log_softmax, cross-entropy).
    """
    xp = array_module(x)
    if x.size == 0:  # no maximum to shift by (and none needed): log_s is then log(0) = -inf
        m = xp.zeros(_reduced_shape(x.shape, dim, True), dtype=x.dtype)
    else:
        m = x.max(axis=dim, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0).astype(x.dtype)
    shifted = x - m
    e = xp.exp(shifted)
    s = e.sum(axis=dim, keepdims=True)
    with _quiet(xp):
        log_s = xp.log(s)
    p = e / xp.where(s > 0, s, 1).astype(x.dtype)
    return shifted, log_s, m, p


def logsumexp_and_softmax(x, dim):
    """log(sum(exp(x))) over ``dim`` (reduced axes kept, size 1) and softmax(x) along ``dim``, computed
    stably (see :func:`shifted_logsumexp`)."""
    _, log_s, m, p = shifted_logsumexp(x, dim)
    return log_s + m, p


def _quiet(xp):
    """Silence NumPy's divide-by-zero warning for log(0) = -inf, which is the correct answer here."""
    return np.errstate(divide="ignore", invalid="ignore") if xp is np else contextlib.nullcontext()


class LogSumExp(Function):
    """log(sum(exp(x), dim)). Gradient: softmax(x) along ``dim`` (zero for an all -inf row)."""

    @staticmethod
    def forward(ctx, x, dim, keepdim=False):
        lse, p = logsumexp_and_softmax(x, dim)
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
        _, y = logsumexp_and_softmax(x, (dim,))
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
        shifted, log_s, _, p = shifted_logsumexp(x, (dim,))
        ctx.save_for_backward(p)
        ctx.dim = dim
        with _quiet(array_module(x)):
            return shifted - log_s   # = x - logsumexp(x), without rounding log_s to the scale of x

    @staticmethod
    def backward(ctx, grad):
        (p,) = ctx.saved_arrays
        return grad - p * grad.sum(axis=ctx.dim, keepdims=True)
