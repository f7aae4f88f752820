"""numba kernels for batch norm on the CPU: the functions of ``norm_reference.py``, each one pass over the
activations.

Same names, arguments and results as the reference in ``norm_reference.py`` (the readable version these
kernels are tested against). The Python functions at the end take activations of shape (N, C) or
(N, C, *spatial), check the sizes of what they are handed, and call a compiled kernel on a C-contiguous
``(N, C, S)`` view, ``S`` being the product of the spatial sizes (1 for an ``(N, C)`` input), so one code path
serves BatchNorm1d and BatchNorm2d. Per-channel values (means, scales, sums) are float64 whatever the
activations' dtype, and every reduction accumulates in float64, so float32 activations lose nothing to the
summation order. What the kernels buy is fewer passes over memory:

=========================  ==========================================  =====================================
pass                       NumPy reference                             here
=========================  ==========================================  =====================================
batch mean and variance    mean, subtract, square, mean (4 passes)     :func:`channel_stats` (1 pass)
normalise + affine         subtract, multiply, add (3 passes)          :func:`normalize` (1 pass)
backward reductions        x-hat, two sums, one product (4 passes)     :func:`backward_sums` (1 pass)
backward dx                four elementwise passes                     :func:`training_dx` (1 pass)
=========================  ==========================================  =====================================

Variance in one pass without cancellation: the textbook ``E[x^2] - E[x]^2`` loses every digit when
``|mean| >> std`` (for float32 data with mean 1000 and std 0.01 it returns garbage or a negative number).
:func:`channel_stats` instead sums deviations from a *shift* ``k``, the channel's first value:
``var = E[(x-k)^2] - E[x-k]^2``. That identity is exact for any ``k``, and with ``k`` drawn from the data
``|E[x-k]|`` is of the order of the standard deviation, so the subtraction no longer cancels (the
"shifted data" algorithm; Chan, Golub & LeVeque 1983 discuss it alongside Welford's). Welford's update
would be as sound but needs a division per element; the shift costs nothing.

Parallelism: ``prange`` over channels for the reductions (each channel's sum then runs in a fixed order,
so results are deterministic for any thread count) and over ``(n, c)`` rows for the elementwise passes.
An ``(N, C)`` input (``S = 1``: BatchNorm1d, the ``--preset improved`` generator) has elementwise loops of
its own, one per example row along its contiguous channels: one loop per ``(n, c)`` pair spent ~10x more
on indexing than on arithmetic there. (Row-wise reductions, a block of channels per thread, measured no
faster than the per-channel loops on (100, 500) and were not kept.)
The reductions are compiled with one fast-math flag, ``reassoc``: it lets LLVM reorder a sum so that the
loop runs on SIMD lanes (several partial sums, added at the end - about 4x faster here, and no less
accurate, since every partial sum is float64). The other fast-math flags are left off, so NaN and inf
propagate as in NumPy.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .checks import PARALLEL, check_arrays

_REASSOC = {"reassoc"}  # fast-math flag for the reductions only (see above)

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

__all__ = ["supports", "channel_stats", "normalize", "backward_sums", "training_dx"]


@njit(cache=True, parallel=PARALLEL, fastmath=_REASSOC)
def _channel_stats(x):
    """Per-channel mean and *biased* variance (both float64) of ``x`` of shape (N, C, S), in one pass."""
    n, c_count, s = x.shape
    count = n * s
    mean = np.empty(c_count, dtype=np.float64)
    var = np.empty(c_count, dtype=np.float64)
    for c in prange(c_count):
        shift = np.float64(x[0, c, 0])
        s1 = 0.0  # sum of (x - shift)
        s2 = 0.0  # sum of (x - shift)^2
        for i in range(n):
            for j in range(s):
                d = np.float64(x[i, c, j]) - shift
                s1 += d
                s2 += d * d
        m1 = s1 / count
        mean[c] = shift + m1
        v = s2 / count - m1 * m1
        var[c] = v if v > 0.0 else 0.0  # rounding can leave a tiny negative for constant channels
    return mean, var


@njit(cache=True, parallel=PARALLEL)
def _normalize(x, mean, scale, shift, out):
    """``out = (x - mean[c]) * scale[c] + shift[c]`` for ``x`` and ``out`` of shape (N, C, S).

    With ``scale = gamma / sqrt(var + eps)`` and ``shift = beta`` this is batch norm's forward pass; the
    arithmetic is in float64 and rounded once, to ``out``'s dtype, when stored.
    """
    n, c_count, s = x.shape
    if s == 1:   # (N, C): one row per example, the channels contiguous along it
        for i in prange(n):
            for c in range(c_count):
                out[i, c, 0] = (np.float64(x[i, c, 0]) - mean[c]) * scale[c] + shift[c]
        return
    for row in prange(n * c_count):
        i = row // c_count
        c = row - i * c_count
        mu, a, b = mean[c], scale[c], shift[c]
        for j in range(s):
            out[i, c, j] = (np.float64(x[i, c, j]) - mu) * a + b


@njit(cache=True, parallel=PARALLEL, fastmath=_REASSOC)
def _backward_sums(g, x, mean):
    """Per-channel ``sum(g)`` and ``sum(g * (x - mean[c]))`` (float64), the two reductions of batch norm's
    backward pass, in one pass over ``g`` and ``x`` (both (N, C, S)).

    Multiplying the second sum by ``1/sigma`` gives ``sum(g * xhat)``, i.e. the weight's gradient.
    """
    n, c_count, s = x.shape
    sum_g = np.empty(c_count, dtype=np.float64)
    sum_gx = np.empty(c_count, dtype=np.float64)
    for c in prange(c_count):
        mu = mean[c]
        a = 0.0
        b = 0.0
        for i in range(n):
            for j in range(s):
                gv = np.float64(g[i, c, j])
                a += gv
                b += gv * (np.float64(x[i, c, j]) - mu)
        sum_g[c] = a
        sum_gx[c] = b
    return sum_g, sum_gx


@njit(cache=True, parallel=PARALLEL)
def _backward_dx(g, x, mean, scale, g_offset, x_coef, out):
    """``out = scale[c] * (g - g_offset[c]) - x_coef[c] * (x - mean[c])`` for (N, C, S) arrays.

    Batch norm's training-mode input gradient is of this form (see :func:`training_dx` for the
    coefficients).
    """
    n, c_count, s = x.shape
    if s == 1:   # (N, C), as in _normalize
        for i in prange(n):
            for c in range(c_count):
                out[i, c, 0] = scale[c] * (np.float64(g[i, c, 0]) - g_offset[c]) - x_coef[c] * (
                    np.float64(x[i, c, 0]) - mean[c])
        return
    for row in prange(n * c_count):
        i = row // c_count
        c = row - i * c_count
        mu, a, go, b = mean[c], scale[c], g_offset[c], x_coef[c]
        for j in range(s):
            out[i, c, j] = a * (np.float64(g[i, c, j]) - go) - b * (np.float64(x[i, c, j]) - mu)


# ----------------------------------------------------------------------------------- the Python side
def supports(*arrays) -> bool:
    """Whether these kernels handle the arrays: NumPy arrays of float32 or float64."""
    return all(isinstance(a, np.ndarray) and a.dtype in DTYPES for a in arrays)


def _ncs(a):
    """View an (N, C, *spatial) array as a C-contiguous (N, C, S) array (copying only if it must)."""
    spatial = 1
    for n in a.shape[2:]:
        spatial *= n
    return np.ascontiguousarray(a).reshape(a.shape[0], a.shape[1], spatial)


def _vectors(name, x, **vectors):
    """Check the activations' rank and that every per-channel vector has one float64 value per channel."""
    if x.ndim < 2:
        raise ValueError(f"{name}: activations must have shape (N, C, ...), got shape {tuple(x.shape)}")
    c = x.shape[1]
    check_arrays(name, {k: (v, (c,)) for k, v in vectors.items()})
    return [np.ascontiguousarray(v, dtype=np.float64) for v in vectors.values()]


def channel_stats(x):
    """numba version of :func:`minigrad.kernels.norm_reference.channel_stats`."""
    _vectors("channel_stats", x)
    return _channel_stats(_ncs(x))


def normalize(x, mean, scale, shift):
    """numba version of :func:`minigrad.kernels.norm_reference.normalize`."""
    mean, scale, shift = _vectors("normalize", x, mean=mean, scale=scale, shift=shift)
    out = np.empty(x.shape, dtype=x.dtype)
    _normalize(_ncs(x), mean, scale, shift, _ncs(out))
    return out


def backward_sums(g, x, mean, invstd):
    """numba version of :func:`minigrad.kernels.norm_reference.backward_sums`: one pass for ``sum(g)`` and
    ``sum(g * (x - mean))``, then the second sum times ``invstd`` is ``sum(g * xhat)``."""
    mean, invstd = _vectors("backward_sums", x, mean=mean, invstd=invstd)
    check_arrays("backward_sums", {"g": (g, tuple(x.shape))})
    sum_g, sum_gx = _backward_sums(_ncs(g), _ncs(x), mean)
    return sum_g, sum_gx * invstd


def training_dx(g, x, mean, invstd, gamma, mean_g, mean_gxhat):
    """numba version of :func:`minigrad.kernels.norm_reference.training_dx`. The formula with
    ``xhat = (x - mean) * invstd`` folded into one coefficient of ``(x - mean)``:
    ``dx = scale * (g - mean_g) - scale * invstd * mean_gxhat * (x - mean)``, ``scale = gamma * invstd``."""
    mean, invstd, gamma, mean_g, mean_gxhat = _vectors(
        "training_dx", x, mean=mean, invstd=invstd, gamma=gamma, mean_g=mean_g, mean_gxhat=mean_gxhat)
    check_arrays("training_dx", {"g": (g, tuple(x.shape))})
    scale = gamma * invstd
    out = np.empty(x.shape, dtype=x.dtype)
    _backward_dx(_ncs(g), _ncs(x), mean, scale, mean_g, scale * invstd * mean_gxhat, _ncs(out))
    return out
