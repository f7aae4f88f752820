"""numba kernels for batch norm on the CPU: each function is one pass over the activations.

Every kernel takes the activations viewed as a C-contiguous ``(N, C, S)`` array, ``S`` being the product of
the spatial sizes (1 for an ``(N, C)`` input), so one code path serves BatchNorm1d and BatchNorm2d. Per-channel
values (means, scales, sums) are float64 whatever the activations' dtype, and every reduction accumulates
in float64, so float32 activations lose nothing to the summation order.

The NumPy code in ``minigrad/ops/norm.py`` is the reference these kernels are tested against; what they buy
is fewer passes over memory:

=========================  ==========================================  =====================================
pass                       NumPy reference                             here
=========================  ==========================================  =====================================
batch mean and variance    mean, subtract, square, mean (4 passes)     :func:`channel_stats` (1 pass)
normalise + affine         subtract, multiply, add (3 passes)          :func:`normalize` (1 pass)
backward reductions        x-hat, two sums, one product (4 passes)     :func:`backward_sums` (1 pass)
backward dx                four elementwise passes                     :func:`backward_dx` (1 pass)
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
The reductions are compiled with one fast-math flag, ``reassoc``: it lets LLVM reorder a sum so that the
loop runs on SIMD lanes (several partial sums, added at the end - about 4x faster here, and no less
accurate, since every partial sum is float64). The other fast-math flags are left off, so NaN and inf
propagate as in NumPy.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

_REASSOC = {"reassoc"}  # fast-math flag for the reductions only (see above)


@njit(cache=True, parallel=True, fastmath=_REASSOC)
def channel_stats(x):
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


@njit(cache=True, parallel=True)
def normalize(x, mean, scale, shift, out):
    """``out = (x - mean[c]) * scale[c] + shift[c]`` for ``x`` and ``out`` of shape (N, C, S).

    With ``scale = gamma / sqrt(var + eps)`` and ``shift = beta`` this is batch norm's forward pass; the
    arithmetic is in float64 and rounded once, to ``out``'s dtype, when stored.
    """
    n, c_count, s = x.shape
    for row in prange(n * c_count):
        i = row // c_count
        c = row - i * c_count
        mu, a, b = mean[c], scale[c], shift[c]
        for j in range(s):
            out[i, c, j] = (np.float64(x[i, c, j]) - mu) * a + b


@njit(cache=True, parallel=True, fastmath=_REASSOC)
def backward_sums(g, x, mean):
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


@njit(cache=True, parallel=True)
def backward_dx(g, x, mean, scale, g_offset, x_coef, out):
    """``out = scale[c] * (g - g_offset[c]) - x_coef[c] * (x - mean[c])`` for (N, C, S) arrays.

    Batch norm's training-mode input gradient is of this form (see ``BatchNorm.backward`` in
    ``minigrad/ops/norm.py`` for the coefficients).
    """
    n, c_count, s = x.shape
    for row in prange(n * c_count):
        i = row // c_count
        c = row - i * c_count
        mu, a, go, b = mean[c], scale[c], g_offset[c], x_coef[c]
        for j in range(s):
            out[i, c, j] = a * (np.float64(g[i, c, j]) - go) - b * (np.float64(x[i, c, j]) - mu)
