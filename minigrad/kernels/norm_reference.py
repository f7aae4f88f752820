"""The reference batch-norm kernels: the four per-channel passes of batch norm, written once for any array
module (NumPy or CuPy, taken from the arrays they are given).

This is the readable version, the GPU path, and what ``norm_cpu.py`` (the same four functions, each one
pass over memory with numba) is tested against. ``minigrad/ops/norm.py`` combines them into batch norm's
forward and backward passes; the derivation is there.

Every function takes activations of shape (N, C) or (N, C, *spatial) and per-channel float64 vectors of
length C; per-channel results are float64 whatever the activations' dtype (every reduction accumulates in
float64), elementwise results are in the activations' dtype.
"""
from __future__ import annotations

from ..backend import array_module

__all__ = ["supports", "channel_stats", "normalize", "backward_sums", "training_dx"]


def supports(*arrays) -> bool:
    """The reference runs on any NumPy or CuPy arrays."""
    return True


def _per_channel(v, ndim, dtype):
    """A per-channel vector (C,) shaped (1, C, 1, ...) to broadcast against an ndim-dim input."""
    return v.reshape((1, -1) + (1,) * (ndim - 2)).astype(dtype, copy=False)


def _reduce_axes(ndim):
    return (0,) + tuple(range(2, ndim))


def _centered(x, mean):
    """``x - mean[c]`` in ``x``'s dtype, accurate even when |mean| >> std in float32.

    Rounding the float64 mean to float32 first would shift every deviation by up to eps32 * |mean| (for
    mean 1000 and std 0.01, 0.3% of a standard deviation). So the mean is split in two float32 parts,
    ``hi`` (the mean rounded) and ``lo`` (what rounding lost, rounded): ``x - hi`` is exact for ``x`` near
    ``hi`` (Sterbenz's lemma), and subtracting ``lo`` afterwards leaves a single rounding of the small result.
    For float64 inputs ``lo`` is zero.
    """
    hi = mean.astype(x.dtype)
    lo = (mean - hi).astype(x.dtype)
    return (x - _per_channel(hi, x.ndim, x.dtype)) - _per_channel(lo, x.ndim, x.dtype)


def channel_stats(x):
    """Per-channel mean and *biased* variance of ``x`` (float64 vectors of length C), in two passes: the
    mean, then the mean square of the deviations from it."""
    xp = array_module(x)
    axes = _reduce_axes(x.ndim)
    mean = x.mean(axis=axes, dtype=xp.float64)
    centered = _centered(x, mean)
    var = (centered * centered).mean(axis=axes, dtype=xp.float64)
    return mean, var


def normalize(x, mean, scale, shift):
    """``(x - mean[c]) * scale[c] + shift[c]``, a new array in ``x``'s dtype: batch norm's forward pass for
    ``scale = gamma / sqrt(var + eps)`` and ``shift = beta``."""
    c = lambda v: _per_channel(v, x.ndim, x.dtype)  # noqa: E731
    return _centered(x, mean) * c(scale) + c(shift)


def backward_sums(g, x, mean, invstd):
    """Per-channel ``sum(g)`` and ``sum(g * xhat)`` (float64), ``xhat = (x - mean[c]) * invstd[c]``: the two
    reductions of batch norm's backward pass (the bias's and the weight's gradients)."""
    xp = array_module(x)
    axes = _reduce_axes(x.ndim)
    xhat = _centered(x, mean) * _per_channel(invstd, x.ndim, x.dtype)
    return g.sum(axis=axes, dtype=xp.float64), (g * xhat).sum(axis=axes, dtype=xp.float64)


def training_dx(g, x, mean, invstd, gamma, mean_g, mean_gxhat):
    """Batch norm's training-mode input gradient, ``(gamma / sigma) * (g - mean(g) - xhat * mean(g * xhat))``
    per channel, a new array in ``x``'s dtype (``mean_g``, ``mean_gxhat``: the per-channel means of ``g`` and
    ``g * xhat``)."""
    c = lambda v: _per_channel(v, x.ndim, x.dtype)  # noqa: E731
    xhat = _centered(x, mean) * c(invstd)
    return c(gamma * invstd) * (g - c(mean_g) - xhat * c(mean_gxhat))
