"""The fused CUDA kernels (kernels/norm_cuda.py, optim_cuda.py, elementwise_cuda.py, dropout_philox_cuda.py; the loss
kernels of loss_cuda.py are in tests/test_fake_cuda_loss_kernels.py), checked three ways, as the convolution
kernels are (tests/test_conv_kernels.py):

1. **the kernel bodies compiled as C on the host**: the bodies are plain C, so they are compiled with the
   host's C compiler (threads of a block run one after the other between the barriers, the elementwise
   kernels loop over ``i``) and compared with the reference modules: bit for bit where the arithmetic is the
   same (Adam, LeakyReLU, the Philox dropout), to float64 rounding for batch norm's sums;
2. **the ops on the CuPy stand-in** (tests/fake_cupy.py, which runs NumPy equivalents of the kernels): the
   Python side of each kernel (argument order, scalar types, shapes, in-place updates) against the CPU path,
   and the launches each op costs;
3. **on a real GPU** (``@pytest.mark.cuda``, skipped without one): the kernels against the references.
"""
from __future__ import annotations

import ctypes
import math
import shutil
import subprocess

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import kernels, optim
from minigrad.kernels import (dropout_philox_cuda, dropout_reference, elementwise_cuda, elementwise_reference,
                              norm_cuda, norm_reference, optim_cuda, optim_reference)
from minigrad.ops import dropout

import fake_cupy
import fake_cupy as cp_fake
from fake_cupy import fake_cuda  # noqa: F401  (fixture)

C_TYPE = {"float32": "float", "float64": "double", "int32": "int", "int64": "long long", "uint64": "unsigned long long"}
CTYPES = {"float": ctypes.c_float, "double": ctypes.c_double, "int": ctypes.c_int, "long long": ctypes.c_longlong,
          "unsigned long long": ctypes.c_ulonglong}


# ----------------------------------------------------------------------------------- compiling C on the host
@pytest.fixture(scope="module")
def cc(tmp_path_factory):
    """Compile C source into a shared library; returns the ctypes library."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler (cc/gcc) to compile the CUDA kernel bodies for the CPU")
    folder = tmp_path_factory.mktemp("cuda-bodies")
    counter = [0]

    def build(source):
        counter[0] += 1
        src, lib = folder / f"k{counter[0]}.c", folder / f"k{counter[0]}.so"
        src.write_text(source)
        subprocess.run([compiler, "-std=c99", "-O1", "-ffp-contract=off", "-shared", "-fPIC", "-o", str(lib),
                        str(src), "-lm"], check=True)
        return ctypes.CDLL(str(lib))
    return build


def elementwise(cc, kernel_params, body, t_type, arrays):
    """An ElementwiseKernel body as a C function ``kernel(params..., size)`` looping over ``i``: the inputs
    named in ``arrays`` and the outputs are pointers read and written at ``i`` (through macros, so the body
    reads as on the GPU), raw inputs are pointers, the rest scalars. Returns the function and the kind of
    each argument (``"pointer"`` or a C scalar type) for :func:`_call`."""
    in_params, out_params = kernel_params
    args, defines, kinds = [], [], []
    params = [(p, False) for p in in_params.split(",")] + [(p, True) for p in out_params.split(",")]
    for param, is_output in params:
        words = param.split()
        ctype, name = words[-2], words[-1]
        c = t_type if ctype == "T" else C_TYPE[ctype]
        if words[0] == "raw":
            args.append(f"{'' if is_output else 'const '}{c} *{name}")
        elif is_output or name in arrays:
            args.append(f"{'' if is_output else 'const '}{c} *{name}_")
            defines.append(name)
        else:
            args.append(f"{c} {name}")
            kinds.append(c)
            continue
        kinds.append("pointer")
    source = "\n".join([
        "#include <tgmath.h>", f"typedef {t_type} T;", f"void kernel({', '.join(args)}, long long size) {{",
        "    for (long long i = 0; i < size; ++i) {", *[f"#define {d} {d}_[i]" for d in defines], body,
        *[f"#undef {d}" for d in defines], "    }", "}", ""])
    return cc(source).kernel, kinds


def _call(fn, kinds, values, size):
    """Call a compiled kernel with NumPy arrays (C-contiguous) and scalars, in parameter order."""
    c_args = []
    for kind, v in zip(kinds, values, strict=True):
        if kind == "pointer":
            assert isinstance(v, np.ndarray) and v.flags.c_contiguous
            c_args.append(v.ctypes.data_as(ctypes.c_void_p))
        else:
            c_args.append(CTYPES[kind](v))
    fn(*c_args, ctypes.c_longlong(size))


def reduction_library(cc, kernel, t_type, r_type, block):
    """A batch-norm kernel (norm_cuda.FORWARD / BACKWARD) for the CPU: per channel (block), each thread's
    accumulate, then the tree's steps (each step's threads one after the other: what a barrier guarantees),
    then thread 0's finalize, then each thread's apply (after the last barrier)."""
    name, params, accumulate, combine, finalize, apply = kernel
    source = f"""#include <math.h>
typedef {t_type} T;
typedef {r_type} R;
#define BLOCK {block}
{norm_cuda.AT}
void {name}({params}, long long grid) {{
    double part1[BLOCK], part2[BLOCK];
    const long long count = n * s;
    for (long long ch = 0; ch < grid; ++ch) {{
        for (int tid = 0; tid < BLOCK; ++tid) {{
{accumulate}
        }}
        for (int half = BLOCK / 2; half > 0; half >>= 1) {{
            for (int tid = 0; tid < half; ++tid) {{
{combine}
            }}
        }}
        {{
            const int tid = 0;
            (void)tid;
{finalize}
        }}
        for (int tid = 0; tid < BLOCK; ++tid) {{
{apply}
        }}
    }}
}}
"""
    lib = cc(source)
    kinds = []
    for p in params.split(","):
        p = p.strip()
        if "*" in p:
            kinds.append("pointer")
        else:
            kinds.append(" ".join(p.replace("const ", "").split()[:-1]))
    return getattr(lib, name), kinds


# ------------------------------------------------------------------------------ batch norm bodies, as C
def _bn_input(rng, shape, dtype, loc=0.0):
    x = (rng.standard_normal(shape) * rng.uniform(0.5, 2.0) + loc).astype(dtype)
    return np.ascontiguousarray(x)


def _ncs(x):
    return x.shape[0], x.shape[1], int(np.prod(x.shape[2:], dtype=np.int64))


def _stored(values, layout):
    """A kernel's flat buffer holding the (N, C, ...) ``values`` in ``layout`` (0: NCHW, 1: channel rows)."""
    return np.ascontiguousarray(values.swapaxes(0, 1) if layout else values)


def _from_buffer(buffer, layout, shape):
    """The (N, C, ...) values of a flat buffer stored in ``layout``."""
    if layout:
        return buffer.reshape((shape[1], shape[0]) + tuple(shape[2:])).swapaxes(0, 1)
    return buffer.reshape(shape)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(6, 3), (4, 5, 3, 2), (2, 1, 7, 5), (3, 2, 1, 1)])
@pytest.mark.parametrize("block", [norm_cuda.BLOCK, 4])
@pytest.mark.parametrize("x_layout, g_layout", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_batch_norm_bodies_compiled_as_c_match_reference(cc, dtype, shape, block, x_layout, g_layout):
    rng = np.random.default_rng(sum(shape) + block)
    t_type = "float" if dtype == np.float32 else "double"
    x = _bn_input(rng, shape, dtype, loc=30.0)        # a large mean: the shifted sums must not cancel
    x_buf = _stored(x, x_layout)
    n, c, s = _ncs(x)
    gamma, beta = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    rm, rv = rng.standard_normal(c).astype(dtype), rng.uniform(0.5, 2, c).astype(dtype)
    eps, momentum = 1e-5, 0.1
    tol = dict(rtol=1e-11, atol=1e-11)

    forward, kinds = reduction_library(cc, norm_cuda.FORWARD, t_type, t_type, block)
    coef = np.full(4 * c, np.nan)
    rm_c, rv_c = rm.copy(), rv.copy()
    y_rows = np.full(x.size, np.nan, dtype=dtype)
    _call(forward, kinds, [x_buf, x_layout, n, c, s, gamma, beta, 1, 1, rm_c, rv_c, 0, 1, momentum, eps, coef,
                           y_rows], c)
    axes = (0,) + tuple(range(2, x.ndim))
    mean, var = x.astype(np.float64).mean(axis=axes), x.astype(np.float64).var(axis=axes)   # exact enough
    invstd = 1.0 / np.sqrt(var + eps)
    np.testing.assert_allclose(coef[:c], mean, **tol)
    np.testing.assert_allclose(coef[c:2 * c], invstd, **tol)
    np.testing.assert_allclose(coef[2 * c:3 * c], gamma.astype(np.float64) * invstd, **tol)
    np.testing.assert_array_equal(coef[3 * c:], beta.astype(np.float64))
    count = n * s
    np.testing.assert_allclose(rm_c, ((1 - momentum) * rm.astype(np.float64) + momentum * mean).astype(dtype),
                               rtol=1e-6 if dtype == np.float32 else 1e-12)
    np.testing.assert_allclose(rv_c, ((1 - momentum) * rv.astype(np.float64)
                                      + momentum * var * (count / (count - 1))).astype(dtype),
                               rtol=1e-6 if dtype == np.float32 else 1e-12)
    # the normalisation, written in channel rows whatever the input's order
    want = norm_reference.normalize(x, mean, coef[2 * c:3 * c], coef[3 * c:])
    y_tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(_from_buffer(y_rows, 1, x.shape), want, rtol=y_tol, atol=y_tol)

    # evaluation mode: the running statistics, nothing summed, nothing updated; no weight and bias
    coef_eval, rm_e, rv_e = np.full(4 * c, np.nan), rm.copy(), rv.copy()
    _call(forward, kinds, [x_buf, x_layout, n, c, s, x_buf, x_buf, 0, 0, rm_e, rv_e, 1, 0, momentum, eps, coef_eval,
                           y_rows], c)
    np.testing.assert_array_equal(rm_e, rm)
    np.testing.assert_allclose(coef_eval[c:2 * c], 1.0 / np.sqrt(rv.astype(np.float64) + eps), rtol=1e-15)
    np.testing.assert_array_equal(coef_eval[2 * c:3 * c], coef_eval[c:2 * c])
    np.testing.assert_array_equal(coef_eval[3 * c:], 0.0)
    want = norm_reference.normalize(x, rm.astype(np.float64), coef_eval[2 * c:3 * c], coef_eval[3 * c:])
    np.testing.assert_allclose(_from_buffer(y_rows, 1, x.shape), want, rtol=y_tol, atol=y_tol)

    # the backward pass, training mode: the parameters' gradients and dx, in x's order
    g = rng.standard_normal(x.shape).astype(dtype)
    backward, bkinds = reduction_library(cc, norm_cuda.BACKWARD, t_type, "double", block)
    dgamma, dbeta, dcoef = np.full(c, np.nan, dtype=dtype), np.full(c, np.nan, dtype=dtype), np.full(2 * c, np.nan)
    dx = np.full(x.size, np.nan, dtype=dtype)
    g_buf = _stored(g, g_layout)
    args = [g_buf, g_layout, x_buf, x_layout, n, c, s, coef, 1, 1, 1, 1, dgamma, dbeta, 0, 0, dcoef, dx]
    _call(backward, bkinds, args, c)
    sum_g, sum_gxhat = norm_reference.backward_sums(g, x, coef[:c], coef[c:2 * c])
    f_tol = dict(rtol=1e-5, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(dgamma, sum_gxhat, **f_tol)
    np.testing.assert_allclose(dbeta, sum_g, **f_tol)
    first = (dgamma.copy(), dbeta.copy())
    _call(backward, bkinds, args[:14] + [1, 1] + args[16:], c)        # added into what they hold: twice
    np.testing.assert_array_equal(dgamma, first[0] + first[0])
    np.testing.assert_array_equal(dbeta, first[1] + first[1])
    np.testing.assert_allclose(dcoef[:c], sum_g / count, rtol=1e-9, atol=1e-12)
    want = norm_reference.training_dx(g, x, coef[:c], coef[c:2 * c], gamma.astype(np.float64), sum_g / count,
                                      sum_gxhat / count)
    np.testing.assert_allclose(_from_buffer(dx, x_layout, x.shape), want, **f_tol)

    # evaluation mode, no parameters: nothing summed (dcoef zero), dx = scale * g
    _call(backward, bkinds, [g_buf, g_layout, x_buf, x_layout, n, c, s, coef_eval, 0, 0, 0, 1, dgamma, dbeta, 0, 0,
                             dcoef, dx], c)
    np.testing.assert_array_equal(dcoef, 0.0)
    scale = coef_eval[2 * c:3 * c].reshape((1, c) + (1,) * (x.ndim - 2))
    np.testing.assert_allclose(_from_buffer(dx, x_layout, x.shape), (scale * g).astype(dtype),
                               rtol=1e-6 if dtype == np.float32 else 1e-15)


# ------------------------------------------------------------------------ Adam, LeakyReLU, dropout, as C
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("eps_inside", [False, True])
def test_adam_body_compiled_as_c_equals_reference_bit_for_bit(cc, dtype, eps_inside):
    rng = np.random.default_rng(1)
    t_type = "float" if dtype == np.float32 else "double"
    body = optim_cuda.ADAM_EPS_INSIDE_BODY if eps_inside else optim_cuda.ADAM_BODY
    fn, kinds = elementwise(cc, optim_cuda.ADAM_PARAMS, body, t_type, {"p", "g"})
    p, m, v = (rng.standard_normal(50).astype(dtype) for _ in range(3))
    v = np.abs(v)
    dt = np.dtype(dtype).type
    beta1, beta2, lr, eps = 0.5, 0.999, 3e-4, 1e-8
    for t in (1, 2, 7):
        g = rng.standard_normal(50).astype(dtype)
        want_p, want_m, want_v = optim_reference.adam_update(p, g, m, v, beta1, beta2, lr, eps, t, eps_inside)
        bias2 = dt(1 - beta2 ** t) if eps_inside else dt(math.sqrt(1 - beta2 ** t))
        out = np.empty_like(p)
        _call(fn, kinds, [p, g, dt(beta1), dt(1 - beta1), dt(beta2), dt(1 - beta2), dt(lr / (1 - beta1 ** t)),
                          bias2, dt(eps), out, m, v], p.size)
        np.testing.assert_array_equal(m, want_m)
        np.testing.assert_array_equal(v, want_v)
        np.testing.assert_array_equal(out, want_p)
        p = out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("slope", [0.2, 0.0, -0.5, 1.5])
def test_leaky_relu_bodies_compiled_as_c_equal_reference(cc, dtype, slope):
    t_type = "float" if dtype == np.float32 else "double"
    x = np.random.default_rng(2).standard_normal(40).astype(dtype)
    x[:6] = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30]
    g = np.random.default_rng(3).standard_normal(40).astype(dtype)
    fwd, fk = elementwise(cc, ("T x, T slope", "T y"), elementwise_cuda.LEAKY_RELU_BODY, t_type, {"x"})
    bwd, bk = elementwise(cc, ("T g, T x, T slope", "T dx"), elementwise_cuda.LEAKY_RELU_BACKWARD_BODY, t_type,
                          {"g", "x"})
    y, dx = np.empty_like(x), np.empty_like(x)
    with np.errstate(invalid="ignore"):
        _call(fwd, fk, [x, dtype(slope), y], x.size)
        _call(bwd, bk, [g, x, dtype(slope), dx], x.size)
        np.testing.assert_array_equal(y, elementwise_reference.leaky_relu(x, slope))
        np.testing.assert_array_equal(dx, elementwise_reference.leaky_relu_backward(g, x, slope))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_body_compiled_as_c_matches_reference(cc, dtype):
    t_type = "float" if dtype == np.float32 else "double"
    x = (np.random.default_rng(5).standard_normal(60) * 30).astype(dtype)
    x[:7] = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e4, -1e4]
    fn, kinds = elementwise(cc, ("T x", "T y"), elementwise_cuda.SIGMOID_BODY, t_type, {"x"})
    y = np.empty_like(x)
    with np.errstate(invalid="ignore", over="ignore"):
        _call(fn, kinds, [x, y], x.size)
        want = elementwise_reference.sigmoid(x)
    np.testing.assert_allclose(y, want, rtol=2e-7 if dtype == np.float32 else 1e-15, atol=0)
    assert np.isnan(y[4]) and y[5] == 1 and y[6] == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tanh_and_abs_gradient_bodies_compiled_as_c_equal_reference(cc, dtype):
    t_type = "float" if dtype == np.float32 else "double"
    rng = np.random.default_rng(6)
    x = rng.standard_normal(50).astype(dtype)
    x[:5] = [0.0, -0.0, np.inf, -np.inf, np.nan]
    y = np.tanh(x)
    g = rng.standard_normal(50).astype(dtype)
    tanh_fn, tk = elementwise(cc, ("T g, T y", "T dx"), elementwise_cuda.TANH_BACKWARD_BODY, t_type, {"g", "y"})
    abs_fn, ak = elementwise(cc, ("T g, T x", "T dx"), elementwise_cuda.ABS_BACKWARD_BODY, t_type, {"g", "x"})
    dt, da = np.empty_like(x), np.empty_like(x)
    _call(tanh_fn, tk, [g, y, dt], x.size)
    _call(abs_fn, ak, [g, x, da], x.size)
    np.testing.assert_array_equal(dt, elementwise_reference.tanh_backward(g, y))    # the same roundings
    np.testing.assert_array_equal(da, elementwise_reference.abs_backward(g, x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [0.0, 0.2, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("key, counter", [(0, 0), (0x0123456789ABCDEF, 2**64 - 3), (7, 2**32 - 1)])
def test_philox_dropout_body_compiled_as_c_equals_reference(cc, dtype, p, key, counter):
    """The GPU kernel's body, compiled for the CPU, makes the reference's decisions bit for bit: the same
    Philox blocks (the counter crossing 2**32 and wrapping at 2**64), the same words, the same products."""
    t_type = "float" if dtype == np.float32 else "double"
    a = np.random.default_rng(4).standard_normal(203).astype(dtype)
    a[:2] = [np.nan, np.inf]                                # a dropped NaN or inf stays NaN: a product with 0
    fn, kinds = elementwise(cc, dropout_philox_cuda.PHILOX_DROPOUT_PARAMS, dropout_philox_cuda.PHILOX_DROPOUT_BODY,
                            t_type, {"a"})
    t, scale = dropout.keep_threshold(p), dropout.keep_scale(p)
    out = np.empty_like(a)
    _call(fn, kinds, [a, t, dtype(scale), key, counter, out], a.size)
    np.testing.assert_array_equal(out, dropout_reference.philox_dropout(a, t, scale, key, counter))


# -------------------------------------------------------------------------------- the ops on the stand-in
def _bn_case(rng, shape, dtype, affine, stats):
    x = _bn_input(rng, shape, dtype, loc=2.0)
    c = shape[1]
    w = rng.uniform(0.5, 2.0, c).astype(dtype) if affine else None
    b = rng.standard_normal(c).astype(dtype) if affine else None
    rm = rng.standard_normal(c).astype(dtype) if stats else None
    rv = rng.uniform(0.5, 2.0, c).astype(dtype) if stats else None
    g = rng.standard_normal(shape).astype(dtype)
    return x, w, b, rm, rv, g


def _bn_run(case, device, training, counts=None):
    x, w, b, rm, rv, g = case
    X = mg.tensor(x, device=device, requires_grad=True)
    W = None if w is None else mg.tensor(w, device=device, requires_grad=True)
    B = None if b is None else mg.tensor(b, device=device, requires_grad=True)
    RM = None if rm is None else mg.tensor(rm, device=device)
    RV = None if rv is None else mg.tensor(rv, device=device)
    G = mg.tensor(g, device=device)
    if counts is not None:
        counts.reset()
    y = F.batch_norm(X, RM, RV, W, B, training=training, momentum=0.3, eps=1e-3)
    forward = None if counts is None else counts.launches
    y.backward(G)
    out = [y, X.grad] + ([W.grad, B.grad] if w is not None else []) + ([RM, RV] if rm is not None else [])
    return [t.numpy() for t in out], forward


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("training, stats", [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("shape, affine", [((8, 3, 4, 5), True), ((9, 4), False), ((5, 2, 3, 1), True)])
def test_batch_norm_on_fake_cuda_matches_cpu_in_one_kernel_each_way(fake_cuda, dtype, training, stats, shape,
                                                                     affine):
    case = _bn_case(np.random.default_rng(len(shape) * 7 + training), shape, dtype, affine, stats)
    want, _ = _bn_run(case, "cpu", training)
    got, forward_launches = _bn_run(case, "cuda", training, fake_cuda)
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype
        np.testing.assert_allclose(a, b, **tol)
    assert forward_launches == 1, fake_cuda.launch_kinds
    norm_sites = {s: n for s, n in fake_cuda.launch_sites.items() if "norm" in s}
    assert sum(norm_sites.values()) == 2, norm_sites             # one kernel per direction
    assert not fake_cuda.reads[:-len(got)], fake_cuda.reads    # the only reads are the .numpy() above


def _in_channel_rows(a):
    """A device array of ``a``'s values stored in channel-rows order (what a convolution's product is)."""
    return cp_fake.ascontiguousarray(cp_fake.asarray(a).swapaxes(0, 1)).swapaxes(0, 1)


@pytest.mark.parametrize("shape", [(8, 3, 4, 5), (9, 4)])
@pytest.mark.parametrize("x_rows, g_rows", [(True, True), (True, False), (False, True)])
def test_batch_norm_kernels_on_fake_cuda_read_channel_rows_as_they_are(fake_cuda, shape, x_rows, g_rows):
    from minigrad.kernels import conv_cuda

    case = _bn_case(np.random.default_rng(12), shape, np.float64, True, True)
    want, _ = _bn_run(case, "cpu", True)
    x, w, b, rm, rv, g = case
    stored = {True: _in_channel_rows, False: cp_fake.asarray}
    X, G = stored[x_rows](x), stored[g_rows](g)
    RM, RV = cp_fake.asarray(rm), cp_fake.asarray(rv)
    fake_cuda.reset()
    y, coef, x_buffer, x_layout = norm_cuda.forward(X, cp_fake.asarray(w), cp_fake.asarray(b), RM, RV,
                                                    batch_stats=True, update_running=True, momentum=0.3, eps=1e-3)
    dx, dw, db = norm_cuda.backward(G, x_buffer, x_layout, coef, batch_stats=True, need_x=True, need_params=True)
    assert fake_cuda.launches == 2, fake_cuda.launch_kinds      # neither x nor the gradient is copied first
    assert conv_cuda.is_channel_rows(y) and conv_cuda.is_channel_rows(dx) == x_rows   # y in rows, dx as x
    for a, b_ in zip((y, dx, dw, db, RM, RV), want):
        np.testing.assert_allclose(a.get(), b_, rtol=1e-10, atol=1e-10)


def test_batch_norm_on_fake_cuda_non_contiguous_input_and_running_statistics(fake_cuda):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 4, 3, 3)).astype(np.float32).transpose(0, 1, 3, 2)
    stats = {d: (mg.tensor(np.zeros(8, np.float32), device=d), mg.tensor(np.ones(8, np.float32), device=d))
             for d in ("cpu", "cuda")}
    out = {}
    for d, (rm, rv) in stats.items():
        rm_view, rv_view = mg.Tensor._wrap(rm.data[::2]), mg.Tensor._wrap(rv.data[::2])   # strided statistics
        y = F.batch_norm(mg.tensor(x, device=d), rm_view, rv_view, training=True)
        out[d] = [y.numpy(), rm.numpy(), rv.numpy()]
    for a, b in zip(out["cuda"], out["cpu"]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert (out["cuda"][1][1::2] == 0).all()                     # the other elements are untouched


def _adam_run(device, start, grads, eps_inside, counts, between=None, **options):
    params = [mg.tensor(a, device=device, requires_grad=True) for a in start]
    opt = optim.Adam(params, lr=0.01, betas=(0.5, 0.999), eps_inside_sqrt=eps_inside, **options)
    launches = []
    for k, step_grads in enumerate(grads):
        for p, g in zip(params, step_grads):
            p.grad = None if g is None else mg.tensor(g, device=device)
        if between is not None:
            between(k, params, opt)
        counts.reset()
        opt.step()
        launches.append(counts.launches)
    return [p.numpy() for p in params], opt.state_dict(), launches


#: Ten parameters: more than the eight arrays CuPy joins in one kernel, which the one-buffer step needs.
SHAPES = ((3, 4), (5,), (2, 1, 3), (), (4,), (1, 2), (3,), (2, 2), (6,), (1,))


def _adam_case(dtype, shapes=SHAPES):
    rng = np.random.default_rng(6)
    start = [np.asarray(rng.standard_normal(shape)).astype(dtype) for shape in shapes]
    grads = [[np.asarray(rng.standard_normal(a.shape)).astype(dtype) for a in start] for _ in range(3)]
    return start, grads


def _same_adam(got, want, dtype):
    (gpu_params, gpu_state, _), (cpu_params, cpu_state, _) = got, want
    for a, b in zip(gpu_params, cpu_params):
        assert a.dtype == dtype
        np.testing.assert_array_equal(a, b)
    assert gpu_state["state"].keys() == cpu_state["state"].keys()
    for i, state in cpu_state["state"].items():
        assert gpu_state["state"][i]["step"] == state["step"]
        for key in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_array_equal(gpu_state["state"][i][key], state[key])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("eps_inside", [False, True])
def test_adam_on_fake_cuda_equals_cpu_bit_for_bit_in_one_launch_per_step(fake_cuda, dtype, eps_inside):
    start, grads = _adam_case(dtype)
    want = _adam_run("cpu", start, grads, eps_inside, fake_cuda)
    got = _adam_run("cuda", start, grads, eps_inside, fake_cuda)
    _same_adam(got, want, dtype)
    # every step one kernel, reading the gradients where they are; the first also gathers the parameters
    # into one buffer (CuPy joins more than eight small arrays in one kernel) and makes the moments' (zeros)
    assert got[2] == [4, 1, 1]


@pytest.mark.parametrize("count, launches", [(8, [8 + 3, 1, 1]), (40, [1 + 2 + 2, 2, 2])])
def test_adam_on_fake_cuda_with_few_or_many_parameters(fake_cuda, count, launches):
    shapes = [SHAPES[i % len(SHAPES)] for i in range(count)]
    start, grads = _adam_case(np.float32, shapes=shapes)
    want = _adam_run("cpu", start, grads, False, fake_cuda)
    got = _adam_run("cuda", start, grads, False, fake_cuda)
    _same_adam(got, want, np.float32)
    # eight parameters are gathered one kernel each (once); forty take a launch per 32 gradients
    assert got[2] == launches


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("eps_inside", [False, True])
def test_joined_adam_body_compiled_as_c_equals_reference_bit_for_bit(cc, dtype, eps_inside):
    t_type = "float" if dtype == np.float32 else "double"
    rng = np.random.default_rng(2)
    sizes = (5, 1, 7)
    fn, kinds = elementwise(cc, optim_cuda.joined_params(len(sizes)), optim_cuda.joined_body(len(sizes), eps_inside),
                            t_type, {"p"})
    p, m = (rng.standard_normal(sum(sizes)).astype(dtype) for _ in range(2))
    v = np.abs(rng.standard_normal(sum(sizes))).astype(dtype)
    grads = [rng.standard_normal(n).astype(dtype) for n in sizes]
    want_p, want_m, want_v = optim_reference.adam_update_joined(p, grads, m, v, 0.5, 0.999, 3e-4, 1e-8, 3, eps_inside)
    out = np.empty_like(p)
    scalars = optim_cuda._scalars(p, 0.5, 0.999, 3e-4, 1e-8, 3, eps_inside)
    _call(fn, kinds, [p, *grads, *np.cumsum(sizes)[:-1], *scalars, out, m, v], p.size)
    np.testing.assert_array_equal(out, want_p)
    np.testing.assert_array_equal(m, want_m)
    np.testing.assert_array_equal(v, want_v)


def test_adam_on_fake_cuda_gathers_again_after_an_array_is_replaced(fake_cuda):
    start, grads = _adam_case(np.float32)

    def replace(k, params, opt):
        if k == 2:      # a new array for a parameter (as loading a checkpoint does) and for a moment
            params[1].data = params[1].data.copy()
            opt.state[2]["exp_avg"] = opt.state[2]["exp_avg"] * 1.0

    want = _adam_run("cpu", start, grads, False, fake_cuda, replace)
    got = _adam_run("cuda", start, grads, False, fake_cuda, replace)
    _same_adam(got, want, np.float32)
    assert got[2] == [4, 1, 4]                       # the parameters and both moments gathered again


@pytest.mark.parametrize("case", ["a parameter without a gradient", "weight decay"])
def test_adam_on_fake_cuda_steps_parameter_by_parameter_where_one_buffer_does_not_apply(fake_cuda, case):
    # (the CPU's weight decay makes a NumPy scalar of a 0-d parameter, so the case has none)
    start, grads = _adam_case(np.float64, shapes=tuple(s for s in SHAPES if s != ()))   # no 0-d: see below
    options = {}
    if case == "weight decay":
        options["weight_decay"] = 0.1
    else:
        grads[1][2] = None
    want = _adam_run("cpu", start, grads, True, fake_cuda, **options)
    got = _adam_run("cuda", start, grads, True, fake_cuda, **options)
    _same_adam(got, want, np.float64)


def test_leaky_relu_on_fake_cuda_equals_cpu_in_one_launch_each(fake_cuda):
    x = np.random.default_rng(7).standard_normal((4, 6)).astype(np.float32)
    x.flat[:3] = [0.0, -0.0, np.nan]
    out = {}
    for device in ("cpu", "cuda"):
        t = mg.tensor(x, device=device, requires_grad=True)
        fake_cuda.reset()
        y = F.leaky_relu(t, 0.2)
        forward = fake_cuda.launches
        (y * 1.0).mean().backward()        # a broadcast (zero-stride) upstream gradient reaches leaky_relu
        out[device] = (y.numpy(), t.grad.numpy(), forward)
    np.testing.assert_array_equal(out["cuda"][0], out["cpu"][0])
    np.testing.assert_array_equal(out["cuda"][1], out["cpu"][1])
    assert out["cuda"][2] == 1
    assert sum(n for s, n in fake_cuda.launch_sites.items() if "elementwise_cuda" in s) == 2


@pytest.mark.parametrize("op", ["tanh", "abs"])
def test_tanh_and_abs_gradients_on_fake_cuda_equal_cpu_in_one_launch(fake_cuda, op):
    x = np.random.default_rng(9).standard_normal((4, 5)).astype(np.float32)
    x[0, 0] = 0.0
    out = {}
    for device in ("cpu", "cuda"):
        t = mg.tensor(x, device=device, requires_grad=True)
        y = getattr(t, op)()
        g = mg.tensor(np.random.default_rng(10).standard_normal(x.shape).astype(np.float32), device=device)
        fake_cuda.reset()
        y.backward(g)
        out[device] = (t.grad.numpy(), fake_cuda.launches)
    np.testing.assert_array_equal(out["cuda"][0], out["cpu"][0])
    assert out["cuda"][1] == 1


def test_sigmoid_on_fake_cuda_equals_cpu_in_one_launch(fake_cuda):
    x = (np.random.default_rng(8).standard_normal((5, 7)) * 20).astype(np.float32)
    out = {}
    for device in ("cpu", "cuda"):
        t = mg.tensor(x, device=device, requires_grad=True)
        fake_cuda.reset()
        y = t.sigmoid()
        out[device] = (y.numpy(), fake_cuda.launches)
    np.testing.assert_allclose(out["cuda"][0], out["cpu"][0], rtol=2e-7, atol=0)
    assert out["cuda"][1] == 1


def test_philox_dropout_on_fake_cuda_in_one_kernel_each_way_with_the_cpus_decisions(fake_cuda):
    import fake_cupy as cp

    x = np.random.default_rng(3).standard_normal((50, 40))
    for dtype in (np.float32, np.float64):
        for p in (0.0, 0.3, 0.999, 1.0):
            stream = (dropout.keep_threshold(p), dropout.keep_scale(p), 99, 2**64 - 5)
            fake_cuda.reset()
            y = dropout_philox_cuda.philox_dropout(cp.asarray(x.astype(dtype)), *stream)
            assert fake_cuda.launches == 1 and y.dtype == dtype
            np.testing.assert_array_equal(y.get(), dropout_reference.philox_dropout(x.astype(dtype), *stream))
    assert kernels.for_arrays("dropout", cp.asarray(x)) is dropout_philox_cuda

    # F.dropout: the same decisions on both devices for the same seed, one kernel each way (and ones())
    values = {}
    for device in ("cpu", "cuda"):
        mg.manual_seed(11)
        x = mg.ones(64, 64, device=device, requires_grad=True)
        upstream = mg.ones(64, 64, device=device)
        fake_cuda.reset()
        y = F.dropout(x, 0.25)
        forward = fake_cuda.launches
        y.backward(upstream)
        backward = fake_cuda.launches - forward
        values[device] = (y.numpy(), x.grad.numpy())
        if device == "cuda":
            assert (forward, backward) == (1, 1)           # the dropout kernel each way, nothing else
    np.testing.assert_array_equal(values["cuda"][0], values["cpu"][0])
    np.testing.assert_array_equal(values["cuda"][1], values["cpu"][1])
    kept = values["cpu"][0]
    assert set(np.unique(kept)) == {0.0, np.float32(1 / 0.75)} and abs((kept == 0).mean() - 0.25) < 0.05


def test_every_cuda_kernel_has_a_numpy_equivalent_in_the_stand_in():
    from minigrad.kernels import conv_cuda

    from minigrad.kernels import loss_cuda, matmul_cuda, shape_cuda

    built = [*conv_cuda._kernels(fake_cupy), *elementwise_cuda._kernels(fake_cupy), *optim_cuda._kernels(fake_cupy),
             dropout_philox_cuda._kernel(fake_cupy), *loss_cuda._elementwise(fake_cupy),
             *(shape_cuda._kernel(fake_cupy, k) for k in range(2, shape_cuda.MOST + 1)),
             *(optim_cuda._joined_kernel(fake_cupy, k, e) for k in range(1, optim_cuda.MOST + 1) for e in (False, True)),
             shape_cuda._rows_kernel(fake_cupy), matmul_cuda._kernel(fake_cupy)]
    names = {k.name for k in built} | {norm_cuda.FORWARD[0], norm_cuda.BACKWARD[0], loss_cuda.CROSS_ENTROPY[0],
                                       loss_cuda.BCE_WITH_LOGITS[0]}
    assert names <= set(fake_cupy.KERNELS), names - set(fake_cupy.KERNELS)
    for kernel in (norm_cuda.FORWARD, norm_cuda.BACKWARD):
        source = norm_cuda.reduction_source(kernel, "float")
        assert f'extern "C" __global__ void {kernel[0]}(' in source and source.count("__syncthreads()") == 3
    for kernel in (loss_cuda.CROSS_ENTROPY, loss_cuda.BCE_WITH_LOGITS):
        source = loss_cuda.block_source(kernel, "double")
        assert f'extern "C" __global__ void {kernel[0]}(' in source and source.count("__syncthreads()") == 2


# ------------------------------------------------------------------------------------------- real GPU
@pytest.mark.cuda
@pytest.mark.parametrize("training", [True, False])
def test_cuda_batch_norm_kernels_match_cpu(training):
    for dtype in (np.float32, np.float64):
        case = _bn_case(np.random.default_rng(8), (16, 5, 6, 6), dtype, True, True)
        want, _ = _bn_run(case, "cpu", training)
        got, _ = _bn_run(case, "cuda", training)
        tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, **tol)


@pytest.mark.cuda
def test_cuda_adam_leaky_relu_and_dropout_kernels_equal_the_references():
    import cupy as cp

    rng = np.random.default_rng(9)
    for dtype in (np.float32, np.float64):
        p, g, m = (rng.standard_normal(1000).astype(dtype) for _ in range(3))
        v = np.abs(rng.standard_normal(1000)).astype(dtype)
        for eps_inside in (False, True):
            want = optim_reference.adam_update(p, g, m, v, 0.5, 0.999, 3e-4, 1e-8, 3, eps_inside)
            got = optim_cuda.adam_update(cp.asarray(p), cp.asarray(g), cp.asarray(m), cp.asarray(v), 0.5, 0.999,
                                         3e-4, 1e-8, 3, eps_inside)
            for a, b in zip(got, want):
                np.testing.assert_array_equal(cp.asnumpy(a), b)     # --fmad=false: the same roundings
        x = rng.standard_normal((30, 20)).astype(dtype)
        np.testing.assert_array_equal(cp.asnumpy(elementwise_cuda.leaky_relu(cp.asarray(x), 0.2)),
                                      elementwise_reference.leaky_relu(x, 0.2))
        gb = np.broadcast_to(rng.standard_normal((1, 20)).astype(dtype), x.shape)
        np.testing.assert_array_equal(
            cp.asnumpy(elementwise_cuda.leaky_relu_backward(cp.broadcast_to(cp.asarray(gb[:1]), x.shape),
                                                            cp.asarray(x), 0.2)),
            elementwise_reference.leaky_relu_backward(gb, x, 0.2))
        a = rng.standard_normal(5000).astype(dtype)
        stream = (dropout.keep_threshold(0.3), dropout.keep_scale(0.3), 12345, 2**40)
        np.testing.assert_array_equal(cp.asnumpy(dropout_philox_cuda.philox_dropout(cp.asarray(a), *stream)),
                                      dropout_reference.philox_dropout(a, *stream))
