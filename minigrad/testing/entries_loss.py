"""Registry entries for ``minigrad/ops/loss.py``: cross-entropy (ignored targets, sample weights, every
reduction) and binary cross-entropy on logits (a tensor target or a number). See
:mod:`minigrad.testing.registry` for what each field means.
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from .. import functional as F
from ..ops import loss as loss_ops
from . import strategies as mst
from .references import np_logsumexp, np_softplus
from .registry import Case, OpSpec, register



@st.composite
def _cross_entropy_cases(draw):
    n, c = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    logits = draw(mst.float_arrays((n, c), -4.0, 4.0))
    target = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, c - 1)))
    ignore_index = draw(st.sampled_from([-100, 0, -1]))
    if ignore_index != 0 and draw(st.booleans()):   # mark some targets as ignored
        target = np.where(draw(hnp.arrays(np.bool_, (n,))), ignore_index, target)
    arrays = (logits, target)
    if draw(st.booleans()):
        arrays += (draw(mst.float_arrays((n,), 0.0, 2.0)),)
    options = {"reduction": draw(st.sampled_from(["mean", "sum", "none"])), "ignore_index": ignore_index}
    return Case(arrays, options)


def _ce_weights(target, sample_weight, ignore_index, dtype):
    w = (target != ignore_index).astype(dtype)
    return w * sample_weight[0] if sample_weight else w


def _np_cross_entropy(logits, target, *sample_weight, reduction, ignore_index):
    w = _ce_weights(target, sample_weight, ignore_index, logits.dtype)
    safe = np.where(target == ignore_index, 0, target)
    lse = np_logsumexp(logits, 1)
    losses = w * (lse - logits[np.arange(len(safe)), safe])
    if reduction == "none":
        return losses
    if reduction == "sum":
        return np.asarray(losses.sum())
    return np.asarray(losses.sum() / w.sum() if w.sum() > 0 else 0.0)


def _torch_cross_entropy(torch, logits, target, *sample_weight, reduction, ignore_index):
    losses = torch.nn.functional.cross_entropy(logits, target, reduction="none", ignore_index=ignore_index)
    w = (target != ignore_index).to(logits.dtype)
    if sample_weight:
        w = w * sample_weight[0]
    losses = losses * w
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / w.sum() if float(w.sum()) > 0 else losses.sum() * 0


register(OpSpec(
    name="cross_entropy",
    fn=lambda logits, target, *sw, reduction, ignore_index: F.cross_entropy(
        logits, target, reduction=reduction, ignore_index=ignore_index, sample_weight=sw[0] if sw else None),
    cases=_cross_entropy_cases(),
    reference=_np_cross_entropy,
    covers=(loss_ops.CrossEntropy, "F.cross_entropy"),
    torch_reference=_torch_cross_entropy,
    differentiable=(0,),
    notes="targets may equal ignore_index (-100, -1, or a real class 0); sample_weight is not "
          "differentiated (it is a weight, as PyTorch's class weights); 'mean' divides by sum of weights",
))


@st.composite
def _bce_cases(draw):
    x = draw(mst.float_arrays(mst.shapes(), -6.0, 6.0))
    reduction = draw(st.sampled_from(["mean", "sum", "none"]))
    if draw(st.booleans()):
        return Case((x, draw(mst.float_arrays(x.shape, 0.0, 1.0))), {"reduction": reduction, "target": None})
    return Case((x,), {"reduction": reduction, "target": draw(st.sampled_from([0.0, 0.9, 1.0]))})


def _np_bce(x, *t, reduction, target):
    t = t[0] if t else np.full(x.shape, target)
    losses = np_softplus(x) - x * t
    return losses if reduction == "none" else np.asarray(losses.sum() if reduction == "sum" else losses.mean())


def _torch_bce(torch, x, *t, reduction, target):
    t = t[0] if t else torch.full(x.shape, target, dtype=x.dtype)
    return torch.nn.functional.binary_cross_entropy_with_logits(x, t, reduction=reduction)


register(OpSpec(
    name="binary_cross_entropy_with_logits",
    fn=lambda x, *t, reduction, target: F.binary_cross_entropy_with_logits(
        x, t[0] if t else target, reduction=reduction),
    cases=_bce_cases(),
    reference=_np_bce,
    covers=(loss_ops.BCEWithLogits, "F.binary_cross_entropy_with_logits"),
    torch_reference=_torch_bce,
    notes="the target is a tensor (differentiated too) or a number that fills the logits' shape",
))
