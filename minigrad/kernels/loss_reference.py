"""The reference loss kernels: the stable log-sum-exp, the cross-entropy and the binary cross-entropy on
logits, forward and backward, as array expressions for any array module (NumPy or CuPy, taken from the
arrays they are given).

The readable version, the CPU path, and what the fused CUDA kernels of ``loss_cuda.py`` are tested
against. The math of each - what is computed and why it is stable - is in the ops that call these
(``minigrad/ops/reduce.py``: ``LogSumExp``, ``Softmax``, ``LogSoftmax``; ``minigrad/ops/loss.py``:
``CrossEntropy``, ``BCEWithLogits``); the functions here compute it:

* :func:`shifted_logsumexp`, :func:`logsumexp`, :func:`log_softmax`: a log-sum-exp shifted by the maximum,
  the softmax and the log-softmax;
* :func:`cross_entropy`, :func:`cross_entropy_backward`: the cross-entropy of (N, C) logits against
  class targets, with ``ignore_index``, sample weights and a reduction;
* :func:`bce_with_logits`, :func:`bce_with_logits_backward`: the binary cross-entropy on logits.

A forward function returns its result and what its backward function needs (``saved``, a tuple of arrays
or None), which the op keeps for the backward pass of the same module.
"""
from __future__ import annotations

import contextlib

import numpy as np

from ..backend import array_module
from .elementwise_reference import sigmoid

__all__ = ["supports", "shifted_logsumexp", "logsumexp", "log_softmax", "cross_entropy", "cross_entropy_backward",
           "bce_with_logits", "bce_with_logits_backward"]


def supports(*arrays) -> bool:
    """The reference runs on any NumPy or CuPy arrays."""
    return True


def _quiet(xp):
    """Silence NumPy's divide-by-zero warning for log(0) = -inf, which is the correct answer here."""
    return np.errstate(divide="ignore", invalid="ignore") if xp is np else contextlib.nullcontext()


# ------------------------------------------------------------------------------------------ log-sum-exp
def shifted_logsumexp(x, dim):
    """The pieces of a stable log-sum-exp over ``dim`` (a tuple of axes): ``(shifted, log_s, m, p)`` with

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
        m = xp.zeros(tuple(1 if i in dim else n for i, n in enumerate(x.shape)), dtype=x.dtype)
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


def logsumexp(x, dim):
    """log(sum(exp(x))) over ``dim`` (reduced axes kept, size 1) and softmax(x) along ``dim``, computed
    stably (see :func:`shifted_logsumexp`)."""
    _, log_s, m, p = shifted_logsumexp(x, dim)
    return log_s + m, p


def log_softmax(x, dim):
    """``(x - logsumexp(x), softmax(x))`` along ``dim``: the first as ``shifted - log_s``, without rounding
    log_s to the scale of x (see :func:`shifted_logsumexp`)."""
    shifted, log_s, _, p = shifted_logsumexp(x, dim)
    with _quiet(array_module(x)):
        return shifted - log_s, p


# --------------------------------------------------------------------------------------- cross-entropy
def cross_entropy(logits, target, sample_weight, ignore_index, reduction):
    """The cross-entropy of (N, C) ``logits`` against integer ``target`` (N,): ``(result, saved)``.

    Per example ``w_i * (logsumexp(z_i) - z_i[t_i])`` with ``w_i`` 0 for an ignored target, NaN for a target
    outside [0, C) (host targets are checked before, by the op), times ``sample_weight`` (N,) when given;
    ``reduction`` "none" (the (N,) losses), "sum", or "mean" (the sum over the sum of the weights, 0 when
    that is 0). ``saved``: ``(p, safe_target, w, total)`` - the softmax, the targets with 0 where ignored,
    the weights, and the sum of the weights for "mean" (else None).
    """
    xp = array_module(logits)
    c = logits.shape[1]
    keep = target != ignore_index
    w = keep.astype(logits.dtype)
    if xp is np:
        safe_target = xp.where(keep, target, 0)
    else:   # on the GPU: no read; an out-of-range target's weight is NaN (see ops/loss.py)
        in_range = (target >= 0) & (target < c)
        safe_target = xp.where(keep & in_range, target, 0)
        w = xp.where(in_range | ~keep, w, logits.dtype.type(np.nan))
    if sample_weight is not None:
        w = w * sample_weight
    # lse - z_t = log_s - (z_t - m): formed from the shifted logits so that log_s (at most log C) is
    # not rounded to the scale of the logits (see shifted_logsumexp).
    shifted, log_s, _, p = shifted_logsumexp(logits, (1,))
    picked = xp.take_along_axis(shifted, safe_target[:, None], axis=1)
    losses = w * (log_s - picked)[:, 0]
    if reduction == "none":
        return losses, (p, safe_target, w, None)
    if reduction == "sum":
        return losses.sum(), (p, safe_target, w, None)
    total = w.sum()
    return losses.sum() / xp.where(total > 0, total, 1).astype(logits.dtype), (p, safe_target, w, total)


def cross_entropy_backward(grad, saved, reduction, ignore_index):
    """The logits' gradient of :func:`cross_entropy` from its ``saved``: ``w_i * (softmax(z_i) - onehot(t_i))``
    times the upstream gradient (divided by the weights' sum for "mean"). (``ignore_index`` is in ``saved``
    already here: the safe targets.)"""
    p, target, w, total = saved
    xp = array_module(p)
    d = p.copy()
    d[xp.arange(d.shape[0]), target] -= 1
    if reduction in ("none", "sum"):
        scale = w * grad
    else:
        scale = w * (grad / xp.where(total > 0, total, 1).astype(p.dtype))
    return d * scale[:, None]


# --------------------------------------------------------------------------- binary cross-entropy on logits
def bce_with_logits(x, t, reduction):
    """``max(x, 0) - x t + log(1 + exp(-|x|))`` elementwise, reduced by ``reduction`` ("none", "sum" or
    "mean"): ``(result, saved)`` with ``saved = (x, t)``."""
    xp = array_module(x)
    losses = xp.maximum(x, 0) - x * t + xp.log1p(xp.exp(-xp.abs(x)))
    if reduction == "none":
        return losses, (x, t)
    return (losses.sum() if reduction == "sum" else losses.mean()), (x, t)


def bce_with_logits_backward(grad, saved, reduction, need_x, need_t):
    """The gradients of :func:`bce_with_logits`: ``(dx, dt)`` = ``((sigmoid(x) - t) g, -x g)`` with ``g``
    the upstream gradient (divided by the number of values for "mean"); None where not needed."""
    x, t = saved
    if reduction == "mean":
        grad = grad / x.dtype.type(max(x.size, 1))
    dx = (sigmoid(x) - t) * grad if need_x else None
    dt = -x * grad if need_t else None
    return dx, dt
