"""The GPU batch-norm kernels (``norm_cuda``): batch norm's forward pass in one kernel and its backward pass
in one, whatever the number of channels.

Why fused
---------
Written with array expressions (``norm_reference.py``) every per-channel step of batch norm is a kernel
of its own: the float64 statistics, the casts of the weight and the bias, ``1 / sqrt(var + eps)``, the
running-statistics update, the split float32 centring, the normalisation... about twenty kernels per
direction per layer, almost all of them on vectors of C values, where the launch costs far more than the
work. Here each direction is one kernel with one block of threads per channel, in four steps:

=========================  ====================================================================
forward                    ``minigrad_bn_forward``: every thread sums its share of the channel
                           (float64, shifted sums as in ``norm_cpu.py``: ``var = E[(x-k)^2] - E[x-k]^2``
                           with ``k`` the channel's first value); a shared-memory tree adds the shares;
                           the first thread finishes the channel: mean, biased variance, the
                           running-statistics update in place, and the coefficients
                           ``coef = [mean, invstd, gamma * invstd, beta]`` (float64, 4 x C; in evaluation
                           mode it reads the running statistics instead); after a barrier every thread
                           writes its share of ``y = (x - mean) * scale + shift``, in float64, rounded
                           once to the activations' dtype.
backward                   ``minigrad_bn_backward``: the threads sum ``g`` and ``g * (x - mean)``; the
                           first thread writes the weight's and the bias's gradients and the two
                           coefficients of the input gradient; after a barrier every thread writes its
                           share of ``dx = scale (g - mean(g)) - b (x - mean)`` with
                           ``b = scale * invstd * mean(g * xhat)`` (``dx = scale g`` with running
                           statistics, where nothing needs summing).
=========================  ====================================================================

The formulas are those of ``minigrad/ops/norm.py`` (the derivation is there) and of ``norm_cpu.py``, whose
numba loops compute the same sums in the same float64 arithmetic; the op calls :func:`forward` and
:func:`backward` when the module it is dispatched to has them (:data:`FUSED`). The four functions of the
family interface (``channel_stats``, ``normalize``, ``backward_sums``, ``training_dx``) are the reference's,
unchanged: the op does not use them on the GPU.

Layouts: channel rows
---------------------
The kernels read an (N, C, *S) batch stored either as NCHW or as *channel rows*: the memory order
(C, N, *S), one contiguous row per channel, which is what a convolution's matrix product gives
(``conv_cuda.py``). ``y`` is always written in channel rows (a block writes its own channel's row), and
``dx`` in the layout of ``x``, so a convolution before or after batch norm needs no move between the two
(``conv_cuda.py`` explains channel rows and has the helpers). Any other layout is copied to NCHW first.

The kernels are written as four pieces of plain C (accumulate: one thread's share of the channel;
combine: one step of the shared-memory tree; finalize: the first thread's work; apply: one thread's share
of the elementwise result), put together by :func:`reduction_source` into a CUDA kernel. The tests compile
the same pieces with the host's C compiler, running the threads of a block one after the other between the
barriers, and compare with the reference.

CuPy is imported lazily (through ``minigrad.backend``), so this module imports on machines without it.
"""
from __future__ import annotations

import functools

import numpy as np

from .. import backend
from . import conv_cuda as layout
from .norm_reference import backward_sums, channel_stats, normalize, training_dx

__all__ = ["supports", "channel_stats", "normalize", "backward_sums", "training_dx", "forward", "backward",
           "FUSED", "BLOCK", "FORWARD", "BACKWARD", "reduction_source"]

#: The op (``ops/norm.py``) runs :func:`forward` / :func:`backward` on this module instead of the four
#: interface functions.
FUSED = True

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
C_TYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}

#: Threads per block (a power of two): each block handles one channel.
BLOCK = 256

#: Where value ``m`` of channel ``ch`` (sample ``m / s``, position ``m % s``) lies in a batch stored in
#: ``layout`` 0 (NCHW, (N, C, S)) or 1 (channel rows, (C, N, S)); ``count = n * s`` values per channel.
AT = "#define AT(layout, m) ((layout) ? ch * count + (m) : (((m) / s) * c + ch) * s + (m) % s)"

#: The forward kernel: ``(name, parameters, accumulate, combine, finalize, apply)``. ``T`` is the
#: activations' C type, ``R`` the running statistics'. ``mode`` 0: the batch's statistics (and, with
#: ``update_running``, the running ones blended in); 1: the running statistics. In scope: ``ch`` (the
#: block's channel), ``tid`` (the thread), ``count``, ``half`` (the tree step), ``part1`` / ``part2``
#: (shared, BLOCK doubles each). ``x`` is in ``x_layout``; ``y`` is written in channel rows.
FORWARD = (
    "minigrad_bn_forward",
    "const T* x, const int x_layout, const long long n, const long long c, const long long s, const T* gamma, "
    "const T* beta, const int has_gamma, const int has_beta, R* running_mean, R* running_var, const int mode, "
    "const int update_running, const double momentum, const double eps, double* coef, T* y",
    r"""
double s1 = 0.0, s2 = 0.0;
if (mode == 0) {
    const double k = (double)x[AT(x_layout, 0)];        /* the shift: the channel's first value */
    for (long long m = tid; m < count; m += BLOCK) {
        const double d = (double)x[AT(x_layout, m)] - k;
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
    const double m1 = part1[0] / (double)count;
    const double v = part2[0] / (double)count - m1 * m1;
    mean = (double)x[AT(x_layout, 0)] + m1;
    var = v > 0.0 ? v : 0.0;                            /* rounding can leave a tiny negative */
    if (update_running) {                               /* the unbiased variance goes into the running one */
        running_mean[ch] = (R)((1.0 - momentum) * (double)running_mean[ch] + momentum * mean);
        running_var[ch] = (R)((1.0 - momentum) * (double)running_var[ch]
                              + momentum * (var * ((double)count / ((double)count - 1.0))));
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
    r"""
const double mu = coef[ch], scale = coef[2 * c + ch], shift = coef[3 * c + ch];
for (long long m = tid; m < count; m += BLOCK) {
    y[ch * count + m] = (T)(((double)x[AT(x_layout, m)] - mu) * scale + shift);
}
""",
)

#: The backward kernel: per channel ``sum(g)`` and ``sum(g * (x - mean))`` (when ``want_sums``); the first
#: thread writes the parameters' gradients (``dgamma``, ``dbeta``, C each, in T, when ``want_params``; added
#: into what they hold with ``add_gamma`` / ``add_beta``: the engine's running sum of an earlier pass's) and
#: the input gradient's coefficients (``dcoef = [mean(g), scale * invstd * mean(g * xhat)]``, zero with
#: running statistics); then, when ``want_dx``, every thread writes its share of ``dx`` in ``x``'s layout.
#: ``g`` is in ``g_layout``.
BACKWARD = (
    "minigrad_bn_backward",
    "const T* g, const int g_layout, const T* x, const int x_layout, const long long n, const long long c, "
    "const long long s, const double* coef, const int batch_stats, const int want_sums, const int want_params, "
    "const int want_dx, T* dgamma, T* dbeta, const int add_gamma, const int add_beta, double* dcoef, T* dx",
    r"""
double s1 = 0.0, s2 = 0.0;
if (want_sums) {
    const double mu = coef[ch];
    for (long long m = tid; m < count; m += BLOCK) {
        const double gv = (double)g[AT(g_layout, m)];
        s1 += gv;
        s2 += gv * ((double)x[AT(x_layout, m)] - mu);
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
const double inv = coef[c + ch];
const double sum_g = part1[0];
const double sum_gxhat = part2[0] * inv;
if (want_params) {
    const T dg = (T)sum_gxhat, db = (T)sum_g;           /* the weight's gradient, the bias's */
    dgamma[ch] = add_gamma ? dgamma[ch] + dg : dg;
    dbeta[ch] = add_beta ? dbeta[ch] + db : db;
}
dcoef[ch] = batch_stats ? sum_g / (double)count : 0.0;
dcoef[c + ch] = batch_stats ? coef[2 * c + ch] * inv * (sum_gxhat / (double)count) : 0.0;
""",
    r"""
if (want_dx) {
    const double mu = coef[ch], scale = coef[2 * c + ch], mean_g = dcoef[ch], b = dcoef[c + ch];
    for (long long m = tid; m < count; m += BLOCK) {
        const double gv = (double)g[AT(g_layout, m)];
        dx[AT(x_layout, m)] = batch_stats ? (T)(scale * (gv - mean_g) - b * ((double)x[AT(x_layout, m)] - mu))
                                          : (T)(scale * gv);
    }
}
""",
)


def reduction_source(kernel, t_type, r_type="double"):
    """The CUDA source of a kernel (:data:`FORWARD` or :data:`BACKWARD`) for C types ``T`` and ``R``: one
    block per channel; every thread accumulates its share, a shared-memory tree adds the shares up (a
    barrier after each step), the first thread finalizes, and after a last barrier every thread applies."""
    name, params, accumulate, combine, finalize, apply = kernel
    return f"""typedef {t_type} T;
typedef {r_type} R;
#define BLOCK {BLOCK}
{AT}
extern "C" __global__ void {name}({params}) {{
    __shared__ double part1[BLOCK];
    __shared__ double part2[BLOCK];
    const long long ch = blockIdx.x;
    const long long count = n * s;
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
    __syncthreads();
{apply}
}}
"""


def supports(*arrays) -> bool:
    """Whether these kernels handle the arrays: CuPy arrays of float32 or float64."""
    return all(backend.device_of(a) == "cuda" and a.dtype in DTYPES for a in arrays)


@functools.lru_cache(maxsize=None)
def _raw(cp, kernel, t, r):
    return cp.RawKernel(reduction_source(kernel, C_TYPES[t], C_TYPES[r]), kernel[0])


def _ncs(shape):
    n, c = shape[0], shape[1]
    s = 1
    for side in shape[2:]:
        s *= side
    return n, c, s


def forward(x, weight, bias, running_mean, running_var, *, batch_stats, update_running, momentum, eps):
    """Batch norm's forward pass: ``(y, coef, x_buffer, x_layout)`` with ``y`` in channel rows, ``coef`` =
    [mean, invstd, gamma * invstd, beta] (float64, 4 x C), and ``x`` as :func:`backward` reads it (a
    C-contiguous buffer and its order, ``conv_cuda.kernel_buffer``). ``batch_stats``: normalise with the
    batch's statistics (else the running ones); ``update_running``: blend them into ``running_mean`` /
    ``running_var`` in place. One kernel launch."""
    cp = backend.cupy_module()
    x_buffer, x_layout = layout.kernel_buffer(x)
    n, c, s = _ncs(x.shape)
    coef = cp.empty(4 * c, dtype=np.float64)
    y = layout.empty_channel_rows(x.shape, x.dtype)
    if c == 0:
        return y, coef, x_buffer, x_layout
    stats = running_mean is not None and (update_running or not batch_stats)
    rm, rv = (cp.ascontiguousarray(running_mean), cp.ascontiguousarray(running_var)) if stats else (coef, coef)
    _raw(cp, FORWARD, x.dtype, rm.dtype)(
        (c,), (BLOCK,),
        (x_buffer, np.int32(x_layout), np.int64(n), np.int64(c), np.int64(s), x_buffer if weight is None else weight,
         x_buffer if bias is None else bias, np.int32(weight is not None), np.int32(bias is not None), rm, rv,
         np.int32(0 if batch_stats else 1), np.int32(bool(update_running and batch_stats)), np.float64(momentum),
         np.float64(eps), coef, layout.kernel_buffer(y)[0]))
    if stats and update_running:
        for mine, theirs in ((rm, running_mean), (rv, running_var)):
            if mine is not theirs:              # a non-contiguous running statistic: copy the update back
                theirs[...] = mine
    return y, coef, x_buffer, x_layout


def _adds_into(a, c, dtype):
    """Whether the kernel can add a parameter's gradient into ``a``: a C-contiguous (C,) array of the dtype."""
    return a is not None and tuple(a.shape) == (c,) and a.dtype == dtype and a.flags.c_contiguous


def backward(grad, x_buffer, x_layout, coef, *, batch_stats, need_x, need_params, into=(None, None)):
    """Batch norm's backward pass from what :func:`forward` returned: ``(dx, dgamma, dbeta)``, each None when
    not asked for, ``dx`` in the order of ``x``. ``into``: arrays to add the weight's and the bias's
    gradients into (the engine's running sums of an earlier pass through the same layer, or None); where
    they are used, they are what is returned. One kernel launch."""
    cp = backend.cupy_module()
    shape = layout.logical_shape(x_buffer, x_layout)
    n, c, s = _ncs(shape)
    dtype = x_buffer.dtype
    dx = dgamma = dbeta = None
    if need_x:
        dx = layout.empty_channel_rows(shape, dtype) if x_layout == layout.CHANNEL_ROWS else cp.empty(shape, dtype)
    add = [_adds_into(a, c, dtype) for a in into]
    if need_params:
        fresh = cp.empty(2 * c, dtype=dtype)
        dgamma = into[0] if add[0] else fresh[:c]
        dbeta = into[1] if add[1] else fresh[c:]
    if c and n * s and (need_x or need_params):
        g_buffer, g_layout = layout.kernel_buffer(grad)
        _raw(cp, BACKWARD, dtype, np.dtype(np.float64))(
            (c,), (BLOCK,),
            (g_buffer, np.int32(g_layout), x_buffer, np.int32(x_layout), np.int64(n), np.int64(c), np.int64(s), coef,
             np.int32(bool(batch_stats)), np.int32(bool(batch_stats or need_params)), np.int32(bool(need_params)),
             np.int32(bool(need_x)), x_buffer if dgamma is None else dgamma, x_buffer if dbeta is None else dbeta,
             np.int32(add[0]), np.int32(add[1]), cp.empty(2 * c, dtype=np.float64),
             x_buffer if dx is None else layout.kernel_buffer(dx)[0]))
    elif need_params:                            # no channels, or no values: the sums are zero
        dgamma, dbeta = (into[0] if add[0] else cp.zeros(c, dtype=dtype)), (into[1] if add[1] else cp.zeros(c, dtype))
    return dx, dgamma, dbeta
