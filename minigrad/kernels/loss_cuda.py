"""The GPU loss kernels (``loss_cuda``): the log-sum-exp, the cross-entropy and the binary cross-entropy on
logits, one CuPy kernel launch per direction each.

Same names, arguments and results as the reference in ``loss_reference.py`` (read that first); the math is
in ``minigrad/ops/reduce.py`` and ``minigrad/ops/loss.py``. As array expressions a log-sum-exp is about a
dozen kernels (the maximum, the finite check, the shift, exp, the sum, log, the guarded division for the
softmax...), a cross-entropy some thirty both ways and a binary cross-entropy twenty, nearly all on arrays
of N or N x C values where the launch costs far more than the work. Here:

==========================================  =============================================================
``minigrad_logsumexp``                      an ``ElementwiseKernel`` with one thread per row: the row's
                                            maximum (NaN-propagating, as NumPy's; 0 when it is not
                                            finite), the sum of the shifted exponentials, ``lse = log(s) +
                                            m`` and the row's softmax ``exp(x - m) / s``.
``minigrad_cross_entropy``                  a ``RawKernel`` of one block for the whole batch: each thread
                                            takes rows in turn (the weight - 0 ignored, NaN out of range -,
                                            the row's shifted log-sum-exp, its loss ``w (log s - (z_t -
                                            m))`` and softmax), a shared-memory tree adds the losses and
                                            the weights, and the first thread writes the sum, the weights'
                                            sum and the mean.
``minigrad_cross_entropy_backward``         ``w (softmax - onehot(t))`` times the upstream gradient (over
                                            the weights' sum for "mean"), one thread per logit.
``minigrad_bce_with_logits``                one block again: each thread's share of ``max(x, 0) - x t +
                                            log1p(exp(-|x|))``, the tree, the sum and the mean.
``minigrad_bce_with_logits_backward``       ``(sigmoid(x) - t) g`` per value (``g`` over the count for
                                            "mean").
==========================================  =============================================================

Each computes the reference's expressions in the same order and the same dtype, except the block sums,
which add in float64. One block is enough: these losses have one value (or one row) per example. What the
kernels do not take - a log-sum-exp over another axis than the last or of a non-contiguous array, a
binary cross-entropy with "none" reduction - goes to the reference; ``shifted_logsumexp`` and
``log_softmax`` are the reference's.

The single-block kernels are written as three pieces of plain C (accumulate: one thread's share, a loop;
combine: one step of the tree; finalize: the first thread's work), put together by :func:`block_source`; the
elementwise bodies are plain C too. The tests compile them with the host's C compiler and compare with the
reference. CuPy is imported lazily (through ``minigrad.backend``).
"""
from __future__ import annotations

import functools

import numpy as np

from .. import backend
from . import loss_reference as reference
from .elementwise_cuda import SIGMOID_OF_X
from .loss_reference import log_softmax, shifted_logsumexp

__all__ = ["supports", "shifted_logsumexp", "logsumexp", "log_softmax", "cross_entropy", "cross_entropy_backward",
           "bce_with_logits", "bce_with_logits_backward", "BLOCK", "LOGSUMEXP", "LOGSUMEXP_BODY",
           "CROSS_ENTROPY", "CROSS_ENTROPY_BACKWARD", "CROSS_ENTROPY_BACKWARD_BODY", "BCE_WITH_LOGITS",
           "BCE_WITH_LOGITS_BACKWARD", "BCE_WITH_LOGITS_BACKWARD_BODY", "block_source"]

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
C_TYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}

#: Threads of the single-block kernels (a power of two).
BLOCK = 256

#: The row maximum ``m`` of row ``i`` (``k`` values from ``x[row]``) as NumPy's ``max`` has it (a NaN wins),
#: replaced by 0 when it is not finite; then ``s``, the sum of ``exp(x - m)`` over the row.
_SHIFT_AND_SUM = r"""
T m = x[row];
for (long long j = 1; j < k; ++j) {
    const T v = x[row + j];
    if (v > m || isnan(v)) m = v;
}
if (!isfinite(m)) m = (T)0;
T s = (T)0;
for (long long j = 0; j < k; ++j) s += exp(x[row + j] - m);
const T d = s > (T)0 ? s : (T)1;                        /* the softmax's divisor: 1 for an all -inf row */
"""

#: The log-sum-exp of row ``i`` of a C-contiguous (rows, k) array and its softmax.
LOGSUMEXP = ("raw T x, int64 k", "T lse, raw T p")
LOGSUMEXP_BODY = "const long long row = i * k;" + _SHIFT_AND_SUM + r"""
lse = log(s) + m;
for (long long j = 0; j < k; ++j) p[row + j] = exp(x[row + j] - m) / d;
"""

#: The cross-entropy forward kernel: ``(name, parameters, accumulate, combine, finalize)``. In scope:
#: ``tid`` (the thread), ``half`` (the tree step), ``part1`` / ``part2`` (shared, BLOCK doubles each).
#: ``sums`` gets [the losses' sum, the weights' sum, the mean].
CROSS_ENTROPY = (
    "minigrad_cross_entropy",
    "const T* x, const long long* target, const T* sample_weight, const int has_weight, const long long n, "
    "const long long k, const long long ignore_index, T* losses, T* p, T* w, T* sums",
    r"""
double s1 = 0.0, s2 = 0.0;
for (long long i = tid; i < n; i += BLOCK) {
    const long long row = i * k, t = target[i];
    const int keep = t != ignore_index, in_range = t >= 0 && t < k;
    T wi = keep ? (in_range ? (T)1 : (T)nan("")) : (T)0;   /* an out-of-range target poisons the loss */
    if (has_weight) wi = wi * sample_weight[i];
""" + _SHIFT_AND_SUM + r"""
    const T picked = x[row + (keep && in_range ? t : 0)] - m;
    const T loss = wi * (log(s) - picked);
    for (long long j = 0; j < k; ++j) p[row + j] = exp(x[row + j] - m) / d;
    losses[i] = loss;
    w[i] = wi;
    s1 += (double)loss;
    s2 += (double)wi;
}
part1[tid] = s1;
part2[tid] = s2;
""",
    r"""
part1[tid] += part1[tid + half];
part2[tid] += part2[tid + half];
""",
    r"""
const T total = (T)part2[0];
sums[0] = (T)part1[0];
sums[1] = total;
sums[2] = sums[0] / (total > (T)0 ? total : (T)1);      /* 0 / 1 when every weight is 0 */
""",
)

#: The logits' gradient, one thread per logit of the (n, k) batch; ``mode`` 0: "none" (``g`` has a value
#: per row), 1: "sum", 2: "mean" (``g`` is one value; the weights' sum is ``sums[1]``).
CROSS_ENTROPY_BACKWARD = ("T p, raw int64 target, raw T w, raw T g, raw T sums, int64 k, int64 ignore_index, "
                          "int32 mode", "T dx")
CROSS_ENTROPY_BACKWARD_BODY = r"""
const long long row = i / k, j = i - row * k, t = target[row];
const long long safe = (t != ignore_index && t >= 0 && t < k) ? t : 0;
const T total = sums[1];
const T scale = mode == 0 ? w[row] * g[row]
              : mode == 1 ? w[row] * g[0]
                          : w[row] * (g[0] / (total > (T)0 ? total : (T)1));
dx = (p - (j == safe ? (T)1 : (T)0)) * scale;
"""

#: The binary cross-entropy on logits, summed by one block; ``sums`` gets [the sum, the mean].
BCE_WITH_LOGITS = (
    "minigrad_bce_with_logits",
    "const T* x, const T* t, const long long count, T* sums",
    r"""
double s1 = 0.0;
for (long long i = tid; i < count; i += BLOCK) {
    const T v = x[i];
    const T relu = (v > (T)0 || isnan(v)) ? v : (T)0;  /* max(v, 0), a NaN kept as NumPy's maximum does */
    s1 += (double)(relu - v * t[i] + log1p(exp(-fabs(v))));
}
part1[tid] = s1;
part2[tid] = 0.0;
""",
    r"""
part1[tid] += part1[tid + half];
""",
    r"""
sums[0] = (T)part1[0];
sums[1] = (T)(part1[0] / (double)(count > 0 ? count : 1));
""",
)

#: ``dx = (sigmoid(x) - t) g``, with ``g`` the upstream gradient over ``count`` when ``mean``.
BCE_WITH_LOGITS_BACKWARD = ("T x, T t, T g, T count, int32 mean", "T dx")
BCE_WITH_LOGITS_BACKWARD_BODY = r"""
const T e = exp(-fabs(x));
dx = (""" + SIGMOID_OF_X + r""" - t) * (mean ? g / count : g);
"""


def block_source(kernel, t_type):
    """The CUDA source of a single-block kernel (:data:`CROSS_ENTROPY`, :data:`BCE_WITH_LOGITS`) for the C
    type ``T``: every thread accumulates its share, a shared-memory tree adds the shares up (a barrier after
    each step), and the first thread finalizes."""
    name, params, accumulate, combine, finalize = kernel
    return f"""typedef {t_type} T;
#define BLOCK {BLOCK}
extern "C" __global__ void {name}({params}) {{
    __shared__ double part1[BLOCK];
    __shared__ double part2[BLOCK];
    const int tid = threadIdx.x;
{accumulate}
    __syncthreads();
    for (int half = BLOCK / 2; half > 0; half >>= 1) {{
        if (tid < half) {{
{combine}
        }}
        __syncthreads();
    }}
    if (tid == 0) {{
{finalize}
    }}
}}
"""


def supports(*arrays) -> bool:
    """Whether these kernels handle the arrays: CuPy arrays, the first (the logits) of float32 or float64."""
    return all(backend.device_of(a) == "cuda" for a in arrays) and arrays[0].dtype in DTYPES


@functools.lru_cache(maxsize=None)
def _elementwise(cp):
    lse = cp.ElementwiseKernel(*LOGSUMEXP, LOGSUMEXP_BODY, "minigrad_logsumexp")
    ce = cp.ElementwiseKernel(*CROSS_ENTROPY_BACKWARD, CROSS_ENTROPY_BACKWARD_BODY, "minigrad_cross_entropy_backward")
    bce = cp.ElementwiseKernel(*BCE_WITH_LOGITS_BACKWARD, BCE_WITH_LOGITS_BACKWARD_BODY,
                               "minigrad_bce_with_logits_backward")
    return lse, ce, bce


@functools.lru_cache(maxsize=None)
def _raw(cp, kernel, t):
    return cp.RawKernel(block_source(kernel, C_TYPES[t]), kernel[0])


# ------------------------------------------------------------------------------------------ log-sum-exp
def logsumexp(x, dim):
    """:func:`minigrad.kernels.loss_reference.logsumexp` in one kernel when ``dim`` is the last axis of a
    C-contiguous, non-empty ``x``; the reference otherwise."""
    if tuple(dim) != (x.ndim - 1,) or not x.flags.c_contiguous or x.size == 0 or x.dtype not in DTYPES:
        return reference.logsumexp(x, dim)
    cp = backend.cupy_module()
    k = x.shape[-1]
    lse = cp.empty(x.shape[:-1] + (1,), dtype=x.dtype)
    p = cp.empty(x.shape, dtype=x.dtype)
    _elementwise(cp)[0](x, np.int64(k), lse, p)
    return lse, p


# --------------------------------------------------------------------------------------- cross-entropy
_MODES = {"none": 0, "sum": 1, "mean": 2}


def cross_entropy(logits, target, sample_weight, ignore_index, reduction):
    """:func:`minigrad.kernels.loss_reference.cross_entropy` in one kernel: ``(result, saved)`` with
    ``saved = (p, target, w, sums)`` for :func:`cross_entropy_backward`."""
    n, k = logits.shape
    if k == 0 and n:    # rows without classes: the reference's error (a target index into an empty row)
        return reference.cross_entropy(logits, target, sample_weight, ignore_index, reduction)
    cp = backend.cupy_module()
    dt = logits.dtype
    x = cp.ascontiguousarray(logits)
    target = cp.ascontiguousarray(target, dtype=np.int64)
    weight = x if sample_weight is None else cp.ascontiguousarray(sample_weight, dtype=dt)
    losses, w, sums = cp.empty(n, dtype=dt), cp.empty(n, dtype=dt), cp.empty(3, dtype=dt)
    p = cp.empty((n, k), dtype=dt)
    _raw(cp, CROSS_ENTROPY, dt)((1,), (BLOCK,), (x, target, weight, np.int32(sample_weight is not None),
                                                  np.int64(n), np.int64(k), np.int64(ignore_index), losses, p, w,
                                                  sums))
    result = losses if reduction == "none" else sums[0] if reduction == "sum" else sums[2]
    return result, (p, target, w, sums)


def cross_entropy_backward(grad, saved, reduction, ignore_index):
    """The logits' gradient of :func:`cross_entropy`, in one kernel."""
    p, target, w, sums = saved
    cp = backend.cupy_module()
    dx = cp.empty(p.shape, dtype=p.dtype)
    if dx.size:
        _elementwise(cp)[1](p, target, w, grad, sums, np.int64(p.shape[1]), np.int64(ignore_index),
                            np.int32(_MODES[reduction]), dx)
    return dx


# --------------------------------------------------------------------------- binary cross-entropy on logits
def bce_with_logits(x, t, reduction):
    """:func:`minigrad.kernels.loss_reference.bce_with_logits` in one kernel for "sum" and "mean" (the
    reference for "none")."""
    if reduction == "none" or x.dtype not in DTYPES or t.dtype != x.dtype:
        return reference.bce_with_logits(x, t, reduction)
    cp = backend.cupy_module()
    sums = cp.empty(2, dtype=x.dtype)
    _raw(cp, BCE_WITH_LOGITS, x.dtype)((1,), (BLOCK,), (cp.ascontiguousarray(x), cp.ascontiguousarray(t),
                                                         np.int64(x.size), sums))
    return (sums[0] if reduction == "sum" else sums[1]), (x, t)


def bce_with_logits_backward(grad, saved, reduction, need_x, need_t):
    """The gradients of :func:`bce_with_logits`: ``dx`` in one kernel; ``dt`` (rarely wanted) as the
    reference computes it."""
    x, t = saved
    if x.dtype not in DTYPES or t.dtype != x.dtype:
        return reference.bce_with_logits_backward(grad, saved, reduction, need_x, need_t)
    dx = dt = None
    if need_x:
        cp = backend.cupy_module()
        dx = cp.empty(x.shape, dtype=x.dtype)
        if dx.size:
            _elementwise(cp)[2](x, t, grad, x.dtype.type(max(x.size, 1)), np.int32(reduction == "mean"), dx)
    if need_t:
        dt = reference.bce_with_logits_backward(grad, saved, reduction, False, True)[1]
    return dx, dt
