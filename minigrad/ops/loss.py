"""Losses with fused, numerically stable forward and backward passes (registry entries:
``minigrad/testing/entries_loss.py``).

The ops here check their arguments and hold the math; the computation is the ``loss`` kernel family
(``kernels/loss_reference.py``, the array expressions, on the CPU; one kernel per direction on the GPU,
``kernels/loss_cuda.py``). The backward pass goes to the module the forward pass ran on.
"""
from __future__ import annotations

import numpy as np

from .. import kernels
from ..autograd import Function
from ..backend import array_module

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
        if xp is np:
            check_target_values(target, n, c, ignore_index)
        k = kernels.for_arrays("loss", logits, target)
        out, saved = k.cross_entropy(logits, target, sample_weight[0] if sample_weight else None, ignore_index,
                                     reduction)
        ctx.save_for_backward(*saved)
        ctx.kernel, ctx.reduction, ctx.ignore_index = k, reduction, ignore_index
        return out

    @staticmethod
    def backward(ctx, grad):
        dlogits = ctx.kernel.cross_entropy_backward(grad, ctx.saved_arrays, ctx.reduction, ctx.ignore_index)
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
        k = kernels.for_arrays("loss", x, t)
        out, saved = k.bce_with_logits(x, t, reduction)
        ctx.save_for_backward(*saved)
        ctx.kernel, ctx.reduction = k, reduction
        return out

    @staticmethod
    def backward(ctx, grad):
        return ctx.kernel.bce_with_logits_backward(grad, ctx.saved_arrays, ctx.reduction, *ctx.needs_input_grad)
