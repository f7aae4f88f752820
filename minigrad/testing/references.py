"""NumPy references shared by several entry modules (each computes in float64, as every reference does)."""
from __future__ import annotations

import numpy as np

__all__ = ["np_logsumexp", "np_softmax", "np_softplus"]


def np_logsumexp(x, axis, keepdims=False):
    """log(sum(exp(x))) over ``axis``, shifted by the (finite) maximum; -inf for all -inf rows."""
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def np_softmax(x, axis):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_softplus(x):
    return np.logaddexp(0.0, x)
