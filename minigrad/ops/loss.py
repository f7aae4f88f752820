"""Losses with fused, numerically stable forward and backward passes (registry entries:
``minigrad/testing/entries_loss.py``)."""
from __future__ import annotations

import numpy as np

from ..autograd import Function
from ..backend import array_module
from .elementwise import stable_sigmoid
from .reduce import shifted_logsumexp

REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(op, reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {REDUCTIONS}, got {reduction!r}")


def check_target_shape(target, n):
    """Cross-entropy's target must be an integer array of shape (N,) (any array module: shape and dtype only)."""
    if tuple(target.shape) != (n,) or target.dtype.kind not in "iu":
        raise ValueError(f"cross_entropy: target must be an integer tensor of shape ({n},), "
                         f"got shape {tuple(target.shape)} and dtype {target.dtype}")


def check_target_values(target: np.ndarray, n, c, ignore_index):
    """Every target of a *host* (NumPy) array that is not ``ignore_index`` lies in [0, C): checked where the
    targets are on the host (``F.cross_entropy`` before it copies them to the GPU, and the op on the CPU),
    so the check never reads from the device."""
    bad = (target != ignore_index) & ((target < 0) | (target >= c))
    if bad.any():
        raise ValueError(f"cross_entropy: target values must lie in [0, {c}) for logits of shape {(n, c)}")


class CrossEntropy(Function):
    """Cross-entropy of (N, C) logits against integer class targets (N,), from log-softmax.

    Per example i with weight w_i (1 by default; 0 for targets equal to ``ignore_index``):
    loss_i = w_i * (logsumexp(z_i) - z_i[t_i]).
    'mean' divides the sum by sum_i w_i (PyTorch's weighted mean; 0 when every weight is 0), 'sum'
    adds, 'none' returns the (N,) vector.

    Backward: dloss_i/dz_ij = w_i * (softmax(z_i)_j - [j == t_i]), times the upstream gradient.

    Targets outside [0, C) (other than ``ignore_index``): a ValueError for host (NumPy) targets. A target
    already on the GPU cannot be checked without reading it back (a stall every step), so there an
    out-of-range target gets the weight NaN instead: its loss, the reduced loss and its gradient row are
    NaN, which the caller's finite check sees (ssgan's one read per step does). ``F.cross_entropy`` checks
    host targets before copying them to the GPU, so only targets made on the GPU take that path.
    """

    name = "cross_entropy"

    @staticmethod
    def forward(ctx, logits, target, *sample_weight, reduction="mean", ignore_index=-100):
        xp = array_module(logits)
        if logits.ndim != 2:
            raise ValueError(f"cross_entropy: logits must be (N, C), got shape {tuple(logits.shape)}")
        n, c = logits.shape
        check_target_shape(target, n)
        if sample_weight and sample_weight[0].shape != (n,):
            raise ValueError(f"cross_entropy: sample_weight must have shape ({n},), "
                             f"got {tuple(sample_weight[0].shape)}")
        keep = target != ignore_index
        w = keep.astype(logits.dtype)
        if xp is np:
            check_target_values(target, n, c, ignore_index)
            safe_target = xp.where(keep, target, 0)
        else:   # on the GPU: no read; an out-of-range target's weight is NaN (see the class docstring)
            in_range = (target >= 0) & (target < c)
            safe_target = xp.where(keep & in_range, target, 0)
            w = xp.where(in_range | ~keep, w, logits.dtype.type(np.nan))
        if sample_weight:
            w = w * sample_weight[0]
        # lse - z_t = log_s - (z_t - m): formed from the shifted logits so that log_s (at most log C) is
        # not rounded to the scale of the logits (see shifted_logsumexp).
        shifted, log_s, _, p = shifted_logsumexp(logits, (1,))
        picked = xp.take_along_axis(shifted, safe_target[:, None], axis=1)
        losses = w * (log_s - picked)[:, 0]
        ctx.save_for_backward(p, safe_target, w)
        ctx.reduction = reduction
        if reduction == "none":
            return losses
        if reduction == "sum":
            return losses.sum()
        total = w.sum()
        ctx.total = total
        return losses.sum() / xp.where(total > 0, total, 1).astype(logits.dtype)

    @staticmethod
    def backward(ctx, grad):
        p, target, w = ctx.saved_arrays
        xp = array_module(p)
        d = p.copy()
        d[xp.arange(d.shape[0]), target] -= 1
        if ctx.reduction in ("none", "sum"):
            scale = w * grad
        else:
            scale = w * (grad / xp.where(ctx.total > 0, ctx.total, 1).astype(p.dtype))
        dlogits = d * scale[:, None]
        n_inputs = len(ctx.needs_input_grad)
        return (dlogits,) + (None,) * (n_inputs - 1)


class BCEWithLogits(Function):
    """Binary cross-entropy on logits x against targets t in [0, 1]:
    loss = max(x, 0) - x t + log(1 + exp(-|x|)), which equals -[t log s(x) + (1 - t) log(1 - s(x))]
    but never evaluates exp of a positive number, so it is finite for |x| of 1e4 and more.

    Backward: dloss/dx = sigmoid(x) - t and dloss/dt = -x, times the upstream gradient.
    """

    name = "binary_cross_entropy_with_logits"

    @staticmethod
    def forward(ctx, x, t, reduction="mean"):
        if x.shape != t.shape:
            raise ValueError(f"binary_cross_entropy_with_logits: target shape {tuple(t.shape)} must equal "
                             f"the logits' shape {tuple(x.shape)}")
        xp = array_module(x)
        losses = xp.maximum(x, 0) - x * t + xp.log1p(xp.exp(-xp.abs(x)))
        ctx.save_for_backward(x, t)
        ctx.reduction, ctx.count = reduction, max(x.size, 1)
        if reduction == "none":
            return losses
        return losses.sum() if reduction == "sum" else losses.mean()

    @staticmethod
    def backward(ctx, grad):
        x, t = ctx.saved_arrays
        if ctx.reduction == "mean":
            grad = grad / x.dtype.type(ctx.count)
        dx = (stable_sigmoid(x) - t) * grad if ctx.needs_input_grad[0] else None
        dt = -x * grad if ctx.needs_input_grad[1] else None
        return dx, dt
