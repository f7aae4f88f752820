"""The GPU batch-norm kernels (``norm_cuda``): batch norm's forward pass in two kernels and its backward
pass in two, whatever the number of channels.

Why fused
---------
Written with array expressions (``norm_reference.py``) every per-channel step of batch norm is a kernel
of its own: the float64 statistics, the casts of the weight and the bias, ``1 / sqrt(var + eps)``, the
running-statistics update, the split float32 centring, the normalisation... about twenty kernels per
direction per layer, almost all of them on vectors of C values, where the launch costs far more than the
work. Here each direction is two kernels:

=========================  ====================================================================
forward                    ``minigrad_bn_stats``: one block per channel sums the channel (float64,
                           shifted sums as in ``norm_cpu.py``: ``var = E[(x-k)^2] - E[x-k]^2`` with
                           ``k`` the channel's first value), then its first thread finishes the channel:
                           mean, biased variance, the running-statistics update in place, and the
                           coefficients ``coef = [mean, invstd, gamma * invstd, beta]`` (float64, 4 x C).
                           In evaluation mode the same kernel reads the running statistics instead.
                           ``minigrad_bn_normalize``: ``y = (x - mean) * scale + shift``, one thread per
                           value, in float64, rounded once to the activations' dtype.
backward                   ``minigrad_bn_backward_reduce``: one block per channel sums ``g`` and
                           ``g * (x - mean)``; its first thread writes the weight's and the bias's
                           gradients and the two coefficients of the input gradient.
                           ``minigrad_bn_backward_dx``: ``dx = scale (g - mean(g)) - b (x - mean)`` with
                           ``b = scale * invstd * mean(g * xhat)`` (``dx = scale g`` with running statistics).
=========================  ====================================================================

The formulas are those of ``minigrad/ops/norm.py`` (the derivation is there) and of ``norm_cpu.py``, whose
numba loops compute the same sums in the same float64 arithmetic; the op calls :func:`forward` and
:func:`backward` when the module it is dispatched to has them (:data:`FUSED`). The four functions of the
family interface (``channel_stats``, ``normalize``, ``backward_sums``, ``training_dx``) are the reference's,
unchanged: the op does not use them on the GPU.

The reduction kernels are written as three pieces of plain C (accumulate: one thread's share of the
channel; combine: one step of the shared-memory tree; finalize: the first thread's work), put together by
:func:`reduction_source` into a CUDA kernel. The tests compile the same pieces with the host's C compiler,
running the threads of a block one after the other between the barriers, and compare with the reference;
the elementwise kernels' bodies are plain C expressions, compiled the same way.

CuPy is imported lazily (through ``minigrad.backend``), so this module imports on machines without it.
"""
from __future__ import annotations

import functools

import numpy as np

from .. import backend
from .norm_reference import backward_sums, channel_stats, normalize, training_dx

__all__ = ["supports", "channel_stats", "normalize", "backward_sums", "training_dx", "forward", "backward",
           "FUSED", "BLOCK", "STATS", "BACKWARD_REDUCE", "NORMALIZE_BODY", "BACKWARD_DX_BODY",
           "reduction_source"]

#: The op (``ops/norm.py``) runs :func:`forward` / :func:`backward` on this module instead of the four
#: interface functions.
FUSED = True

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
C_TYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}

#: Threads per block of the reduction kernels (a power of two): each block reduces one channel.
BLOCK = 256

#: The statistics kernel: ``(name, parameters, accumulate, combine, finalize)``. ``T`` is the activations'
#: C type, ``R`` the running statistics'. ``mode`` 0: the batch's statistics (and, with ``update_running``,
#: the running ones blended in); 1: the running statistics. In scope: ``ch`` (the block's channel), ``tid``
#: (the thread), ``half`` (the tree step), ``part1`` / ``part2`` (shared, BLOCK doubles each).
STATS = (
    "minigrad_bn_stats",
    "const T* x, const long long n, const long long c, const long long s, const T* gamma, const T* beta, "
    "const int has_gamma, const int has_beta, R* running_mean, R* running_var, const int mode, "
    "const int update_running, const double momentum, const double eps, double* coef",
    r"""
double s1 = 0.0, s2 = 0.0;
if (mode == 0) {
    const long long count = n * s;
    const double k = (double)x[ch * s];                 /* the shift: the channel's first value */
    for (long long m = tid; m < count; m += BLOCK) {    /* value m of the channel: sample b, position m - b s */
        const long long b = m / s;
        const double d = (double)x[(b * c + ch) * s + (m - b * s)] - k;
        s1 += d;
        s2 += d * d;
    }
}
part1[tid] = s1;
part2[tid] = s2;
""",
    r"""
part1[tid] += part1[tid + half];
part2[tid] += part2[tid + half];
""",
    r"""
double mean, var;
if (mode == 0) {
    const double count = (double)(n * s);
    const double m1 = part1[0] / count;
    const double v = part2[0] / count - m1 * m1;
    mean = (double)x[ch * s] + m1;
    var = v > 0.0 ? v : 0.0;                            /* rounding can leave a tiny negative */
    if (update_running) {                               /* the unbiased variance goes into the running one */
        running_mean[ch] = (R)((1.0 - momentum) * (double)running_mean[ch] + momentum * mean);
        running_var[ch] = (R)((1.0 - momentum) * (double)running_var[ch]
                              + momentum * (var * (count / (count - 1.0))));
    }
} else {
    mean = (double)running_mean[ch];
    var = (double)running_var[ch];
}
const double inv = 1.0 / sqrt(var + eps);
coef[ch] = mean;
coef[c + ch] = inv;
coef[2 * c + ch] = (has_gamma ? (double)gamma[ch] : 1.0) * inv;
coef[3 * c + ch] = has_beta ? (double)beta[ch] : 0.0;
""",
)

#: The backward reduction: per channel ``sum(g)`` and ``sum(g * (x - mean))``; the first thread writes the
#: parameters' gradients (``dparams = [dgamma, dbeta]``, 2 x C, in T, when ``want_params``) and the input
#: gradient's coefficients (``dcoef = [mean(g), scale * invstd * mean(g * xhat)]``, zero with running
#: statistics).
BACKWARD_REDUCE = (
    "minigrad_bn_backward_reduce",
    "const T* g, const T* x, const long long n, const long long c, const long long s, const double* coef, "
    "const int batch_stats, const int want_params, T* dparams, double* dcoef",
    r"""
double s1 = 0.0, s2 = 0.0;
const long long count = n * s;
const double mu = coef[ch];
for (long long m = tid; m < count; m += BLOCK) {
    const long long b = m / s;
    const long long at = (b * c + ch) * s + (m - b * s);
    const double gv = (double)g[at];
    s1 += gv;
    s2 += gv * ((double)x[at] - mu);
}
part1[tid] = s1;
part2[tid] = s2;
""",
    r"""
part1[tid] += part1[tid + half];
part2[tid] += part2[tid + half];
""",
    r"""
const double count = (double)(n * s);
const double inv = coef[c + ch];
const double sum_g = part1[0];
const double sum_gxhat = part2[0] * inv;
if (want_params) {
    dparams[ch] = (T)sum_gxhat;                         /* the weight's gradient */
    dparams[c + ch] = (T)sum_g;                         /* the bias's */
}
dcoef[ch] = batch_stats ? sum_g / count : 0.0;
dcoef[c + ch] = batch_stats ? coef[2 * c + ch] * inv * (sum_gxhat / count) : 0.0;
""",
)

#: ``y`` from ``x`` (value ``i`` of a C-contiguous (N, C, S) batch) and the coefficients of :data:`STATS`.
NORMALIZE = ("T x, raw float64 coef, int64 s, int64 c", "T y")
NORMALIZE_BODY = r"""
const long long ch = (i / s) % c;
y = (T)(((double)x - coef[ch]) * coef[2 * c + ch] + coef[3 * c + ch]);
"""

#: ``dx`` from the upstream gradient, ``x``, the forward coefficients and :data:`BACKWARD_REDUCE`'s.
BACKWARD_DX = ("T g, T x, raw float64 coef, raw float64 dcoef, int64 s, int64 c, int32 batch_stats", "T dx")
BACKWARD_DX_BODY = r"""
const long long ch = (i / s) % c;
dx = batch_stats ? (T)(coef[2 * c + ch] * ((double)g - dcoef[ch]) - dcoef[c + ch] * ((double)x - coef[ch]))
                 : (T)(coef[2 * c + ch] * (double)g);
"""


def reduction_source(kernel, t_type, r_type="double"):
    """The CUDA source of a reduction kernel (:data:`STATS` or :data:`BACKWARD_REDUCE`) for C types ``T`` and
    ``R``: one block per channel; every thread accumulates its share, a shared-memory tree adds the shares
    up (a barrier after each step), and thread 0 finalizes."""
    name, params, accumulate, combine, finalize = kernel
    return f"""typedef {t_type} T;
typedef {r_type} R;
#define BLOCK {BLOCK}
extern "C" __global__ void {name}({params}) {{
    __shared__ double part1[BLOCK];
    __shared__ double part2[BLOCK];
    const long long ch = blockIdx.x;
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
    """Whether these kernels handle the arrays: CuPy arrays of float32 or float64."""
    return all(backend.device_of(a) == "cuda" and a.dtype in DTYPES for a in arrays)


@functools.lru_cache(maxsize=None)
def _raw(cp, kernel, t, r):
    return cp.RawKernel(reduction_source(kernel, C_TYPES[t], C_TYPES[r]), kernel[0])


@functools.lru_cache(maxsize=None)
def _elementwise(cp):
    normalize_kernel = cp.ElementwiseKernel(*NORMALIZE, NORMALIZE_BODY, "minigrad_bn_normalize")
    dx_kernel = cp.ElementwiseKernel(*BACKWARD_DX, BACKWARD_DX_BODY, "minigrad_bn_backward_dx")
    return normalize_kernel, dx_kernel


def _ncs(x):
    n, c = x.shape[0], x.shape[1]
    s = 1
    for side in x.shape[2:]:
        s *= side
    return n, c, s


def forward(x, weight, bias, running_mean, running_var, *, batch_stats, update_running, momentum, eps):
    """Batch norm's forward pass: ``(y, coef, x)`` with ``coef`` = [mean, invstd, gamma * invstd, beta]
    (float64, 4 x C) and ``x`` as the backward pass needs it (C-contiguous). ``batch_stats``: normalise with
    the batch's statistics (else the running ones); ``update_running``: blend them into ``running_mean`` /
    ``running_var`` in place. Two kernel launches."""
    cp = backend.cupy_module()
    x = cp.ascontiguousarray(x)
    n, c, s = _ncs(x)
    coef = cp.empty(4 * c, dtype=np.float64)
    if c == 0:
        return cp.empty(x.shape, dtype=x.dtype), coef, x
    stats = running_mean is not None and (update_running or not batch_stats)
    rm, rv = (cp.ascontiguousarray(running_mean), cp.ascontiguousarray(running_var)) if stats else (x, x)
    _raw(cp, STATS, x.dtype, rm.dtype)(
        (c,), (BLOCK,),
        (x, np.int64(n), np.int64(c), np.int64(s), x if weight is None else weight, x if bias is None else bias,
         np.int32(weight is not None), np.int32(bias is not None), rm, rv, np.int32(0 if batch_stats else 1),
         np.int32(bool(update_running and batch_stats)), np.float64(momentum), np.float64(eps), coef))
    if stats and update_running:
        for mine, theirs in ((rm, running_mean), (rv, running_var)):
            if mine is not theirs:              # a non-contiguous running statistic: copy the update back
                theirs[...] = mine
    y = _elementwise(cp)[0](x, coef, np.int64(s), np.int64(c))
    return y, coef, x


def backward(grad, x, coef, *, batch_stats, need_x, need_params):
    """Batch norm's backward pass from :func:`forward`'s ``coef`` and ``x``: ``(dx, dgamma, dbeta)``, each None
    when not asked for. Two kernel launches (one with running statistics and no parameter gradients)."""
    cp = backend.cupy_module()
    n, c, s = _ncs(x)
    dparams, dcoef = None, coef
    if c and ((batch_stats and need_x) or need_params):
        g = cp.ascontiguousarray(grad)
        dparams = cp.empty(2 * c, dtype=x.dtype) if need_params else None
        dcoef = cp.empty(2 * c, dtype=np.float64)
        _raw(cp, BACKWARD_REDUCE, x.dtype, np.dtype(np.float64))(
            (c,), (BLOCK,),
            (g, x, np.int64(n), np.int64(c), np.int64(s), coef, np.int32(bool(batch_stats)),
             np.int32(bool(need_params)), x if dparams is None else dparams, dcoef))
    dx = None
    if need_x:
        dx = cp.empty(x.shape, dtype=x.dtype)
        if c:
            _elementwise(cp)[1](grad, x, coef, dcoef, np.int64(s), np.int64(c), np.int32(bool(batch_stats)), dx)
    if not need_params:
        return dx, None, None
    if dparams is None:                          # no channels
        dparams = cp.zeros(2 * c, dtype=x.dtype)
    return dx, dparams[:c], dparams[c:]
