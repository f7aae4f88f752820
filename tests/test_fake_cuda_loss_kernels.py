"""The loss kernels of kernels/loss_cuda.py (log-sum-exp, cross-entropy, binary cross-entropy on logits), checked
as the other fused CUDA kernels are (tests/test_fake_cuda_kernels.py, whose host-compiler harness this uses):

1. **the kernel bodies compiled as C on the host** against the reference (``kernels/loss_reference.py``),
   including the rows that make a log-sum-exp unstable (values of 1e4, all -inf, +inf, NaN), ignored and
   out-of-range targets (whose weight is NaN on the GPU), sample weights and every reduction;
2. **the ops on the CuPy stand-in** against the CPU, with one launch per direction;
3. **on a real GPU** (``@pytest.mark.cuda``, skipped without one).
"""
from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import kernels
from minigrad.kernels import loss_cuda, loss_reference

from fake_cupy import fake_cuda  # noqa: F401  (fixture)
from test_fake_cuda_kernels import _call, cc, elementwise  # noqa: F401  (cc: the compiler fixture)

TYPES = {np.float32: "float", np.float64: "double"}
TOL = {np.float32: dict(rtol=3e-6, atol=3e-6), np.float64: dict(rtol=1e-13, atol=1e-13)}


def block_library(cc, kernel, t_type, block):
    """A single-block kernel (loss_cuda.CROSS_ENTROPY / BCE_WITH_LOGITS) for the CPU: each thread's
    accumulate, then the tree's steps (each step's threads one after the other, as a barrier guarantees),
    then thread 0's finalize."""
    name, params, accumulate, combine, finalize = kernel
    source = f"""#include <tgmath.h>
typedef {t_type} T;
#define BLOCK {block}
void {name}({params}, long long size) {{   /* size: what the harness passes every kernel; unused here */
    double part1[BLOCK], part2[BLOCK];
    (void)size;
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
}}
"""
    kinds = []
    for p in params.split(","):
        p = p.strip()
        kinds.append("pointer" if "*" in p else " ".join(p.replace("const ", "").split()[:-1]))
    return getattr(cc(source), name), kinds


def _rows(dtype, seed=0):
    """Logits with the hard rows: large values, an all -inf row, a row with +inf, a row with NaN."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((9, 5)) * 3).astype(dtype)
    x[1] *= 1e4 / 3
    x[2] = -np.inf
    x[3, 1] = np.inf
    x[4, 2] = np.nan
    x[5] = [-np.inf, 2.0, -np.inf, 0.5, -np.inf]
    return x


# ----------------------------------------------------------------------------------- bodies, as C
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logsumexp_body_compiled_as_c_matches_reference(cc, dtype):
    x = _rows(dtype)
    fn, kinds = elementwise(cc, loss_cuda.LOGSUMEXP, loss_cuda.LOGSUMEXP_BODY, TYPES[dtype], set())
    lse, p = np.full((x.shape[0], 1), 7.0, dtype=dtype), np.full_like(x, 7.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        _call(fn, kinds, [x, x.shape[1], lse, p], x.shape[0])
        want_lse, want_p = loss_reference.logsumexp(x, (1,))
    np.testing.assert_allclose(lse, want_lse, **TOL[dtype])
    np.testing.assert_allclose(p, want_p, **TOL[dtype])
    assert lse[2, 0] == -np.inf and (p[2] == 0).all()              # all -inf: -inf and a zero softmax
    assert np.isnan(lse[4, 0]) and np.isnan(p[4, 2])               # a NaN in the row: NaN, as in the reference


def _ce_case(dtype, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((11, 4)) * 2).astype(dtype)
    x[3] *= 5e3
    target = rng.integers(0, 4, 11).astype(np.int64)
    target[[1, 6]] = -100                                            # ignored
    weight = rng.uniform(0.5, 2.0, 11).astype(dtype)
    return x, target, weight


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("block", [loss_cuda.BLOCK, 4])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_bodies_compiled_as_c_match_reference(cc, dtype, block, weighted):
    x, target, weight = _ce_case(dtype, block)
    n, k = x.shape
    fn, kinds = block_library(cc, loss_cuda.CROSS_ENTROPY, TYPES[dtype], block)
    losses, w, sums, p = (np.full(n, 7.0, dtype), np.full(n, 7.0, dtype), np.full(3, 7.0, dtype),
                          np.full((n, k), 7.0, dtype))
    _call(fn, kinds, [x, target, weight if weighted else x, int(weighted), n, k, -100, losses, p, w, sums], 1)
    sw = weight if weighted else None
    want_losses, (want_p, safe, want_w, _) = loss_reference.cross_entropy(x, target, sw, -100, "none")
    np.testing.assert_allclose(losses, want_losses, **TOL[dtype])
    np.testing.assert_allclose(p, want_p, **TOL[dtype])
    np.testing.assert_array_equal(w, want_w)
    want_sum, _ = loss_reference.cross_entropy(x, target, sw, -100, "sum")
    want_mean, (*_, total) = loss_reference.cross_entropy(x, target, sw, -100, "mean")
    np.testing.assert_allclose(sums, [want_sum, total, want_mean], **TOL[dtype])

    # the backward body, for each reduction
    bwd, bkinds = elementwise(cc, loss_cuda.CROSS_ENTROPY_BACKWARD, loss_cuda.CROSS_ENTROPY_BACKWARD_BODY,
                              TYPES[dtype], {"p"})
    g_rows = np.random.default_rng(3).standard_normal(n).astype(dtype)
    for mode, reduction, g in ((0, "none", g_rows), (1, "sum", np.array([1.5], dtype)),
                               (2, "mean", np.array([-0.7], dtype))):
        dx = np.full((n, k), 7.0, dtype)
        _call(bwd, bkinds, [p, target, w, g, sums, k, -100, mode, dx], n * k)
        saved = (want_p, safe, want_w, total)
        want = loss_reference.cross_entropy_backward(g if mode == 0 else g[0], saved, reduction, -100)
        np.testing.assert_allclose(dx, want, **TOL[dtype])


def test_cross_entropy_body_poisons_an_out_of_range_target_with_nan(cc):
    x, target, _ = _ce_case(np.float64, 1)
    target[4] = 9                                                     # not a class of 4
    n, k = x.shape
    fn, kinds = block_library(cc, loss_cuda.CROSS_ENTROPY, "double", loss_cuda.BLOCK)
    losses, w, sums, p = np.empty(n), np.empty(n), np.empty(3), np.empty((n, k))
    _call(fn, kinds, [x, target, x, 0, n, k, -100, losses, p, w, sums], 1)
    assert np.isnan(w[4]) and np.isnan(losses[4]) and np.isnan(sums).all()
    assert np.isfinite(np.delete(losses, 4)).all() and np.isfinite(p).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("block", [loss_cuda.BLOCK, 4])
def test_bce_with_logits_bodies_compiled_as_c_match_reference(cc, dtype, block):
    rng = np.random.default_rng(block)
    x = (rng.standard_normal(37) * 4).astype(dtype)
    x[:4] = [1e4, -1e4, 0.0, -0.0]
    t = rng.uniform(0, 1, 37).astype(dtype)
    fn, kinds = block_library(cc, loss_cuda.BCE_WITH_LOGITS, TYPES[dtype], block)
    sums = np.full(2, 7.0, dtype)
    _call(fn, kinds, [x, t, x.size, sums], 1)
    np.testing.assert_allclose(sums, [loss_reference.bce_with_logits(x, t, "sum")[0],
                                      loss_reference.bce_with_logits(x, t, "mean")[0]], **TOL[dtype])
    bwd, bkinds = elementwise(cc, loss_cuda.BCE_WITH_LOGITS_BACKWARD, loss_cuda.BCE_WITH_LOGITS_BACKWARD_BODY,
                              TYPES[dtype], {"x", "t", "g"})
    for reduction, g in (("mean", np.full(x.shape, 0.8, dtype)), ("none", rng.standard_normal(37).astype(dtype))):
        dx = np.full_like(x, 7.0)
        _call(bwd, bkinds, [x, t, g, dtype(x.size), int(reduction == "mean"), dx], x.size)
        want, _ = loss_reference.bce_with_logits_backward(g if reduction == "none" else g[0], (x, t), reduction,
                                                          True, False)
        np.testing.assert_allclose(dx, want, **TOL[dtype])


def test_bce_with_logits_body_keeps_a_nan_as_the_reference_does(cc):
    x = np.array([np.nan, 1.0, -2.0])
    t = np.array([0.5, 0.0, 1.0])
    fn, kinds = block_library(cc, loss_cuda.BCE_WITH_LOGITS, "double", loss_cuda.BLOCK)
    sums = np.zeros(2)
    _call(fn, kinds, [x, t, x.size, sums], 1)
    assert np.isnan(sums).all()


# -------------------------------------------------------------------------------- the ops on the stand-in
def _both(fn, *arrays, counts, requires=(0,)):
    """``fn`` on the CPU and on the stand-in: (cpu results, cuda results, forward launches, total launches)."""
    out = {}
    for device in ("cpu", "cuda"):
        ts = [mg.tensor(a, device=device, requires_grad=i in requires) for i, a in enumerate(arrays)]
        counts.reset()
        y = fn(*ts)
        forward = counts.launches
        upstream = np.random.default_rng(0).standard_normal(y.shape).astype(y.dtype)
        g = mg.tensor(upstream, device=device)
        counts.reset()
        y.backward(g)
        out[device] = ([y.numpy()] + [ts[i].grad.numpy() for i in requires], forward, counts.launches)
    return out


def _check(out, tol):
    (cpu, _, _), (gpu, _, _) = out["cpu"], out["cuda"]
    for a, b in zip(gpu, cpu):
        np.testing.assert_allclose(a, b, **tol)


def _loss_launches(counts):
    return sum(n for s, n in counts.launch_sites.items() if "loss_cuda" in s)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logsumexp_on_fake_cuda_equals_cpu_in_one_launch(fake_cuda, dtype):
    x = _rows(dtype, seed=1)[[0, 1, 2, 5, 6, 7]]       # large, all -inf and partly -inf rows; no inf or NaN
    out = _both(lambda t: t.logsumexp(dim=1), x, counts=fake_cuda)
    _check(out, TOL[dtype])
    assert out["cuda"][1] == 1                                       # the kernel; the reshape is a view
    x3 = np.random.default_rng(2).standard_normal((2, 3, 4)).astype(dtype)
    _check(_both(lambda t: t.logsumexp(dim=2, keepdim=True), x3, counts=fake_cuda), TOL[dtype])
    _check(_both(lambda t: t.logsumexp(dim=1), x3, counts=fake_cuda), TOL[dtype])   # another axis: reference
    _check(_both(lambda t: F.softmax(t, dim=-1), x3, counts=fake_cuda), TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_on_fake_cuda_equals_cpu_in_one_launch_each_way(fake_cuda, dtype, reduction, weighted):
    x, target, weight = _ce_case(dtype, 2)
    sw = weight if weighted else None
    out = _both(lambda t: F.cross_entropy(t, target, reduction=reduction, sample_weight=sw), x, counts=fake_cuda)
    _check(out, TOL[dtype])
    assert _loss_launches(fake_cuda) == 1                            # the backward kernel
    assert out["cuda"][2] == 1
    fake_cuda.reset()
    F.cross_entropy(mg.tensor(x, device="cuda"), target, reduction=reduction, sample_weight=sw)
    assert _loss_launches(fake_cuda) == 1                            # the forward kernel


def test_cross_entropy_on_fake_cuda_of_an_empty_batch(fake_cuda):
    logits = mg.tensor(np.zeros((0, 3)), device="cuda", requires_grad=True)
    loss = F.cross_entropy(logits, np.zeros(0, np.int64))
    loss.backward()
    assert loss.item() == 0.0 and logits.grad.shape == (0, 3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_bce_with_logits_on_fake_cuda_equals_cpu_in_one_launch_each_way(fake_cuda, dtype, reduction):
    rng = np.random.default_rng(4)
    x = (rng.standard_normal(23) * 3).astype(dtype)
    t = rng.uniform(0, 1, 23).astype(dtype)
    out = _both(lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction), x, t,
                counts=fake_cuda, requires=(0, 1))
    _check(out, TOL[dtype])
    assert out["cuda"][1] == 1
    out = _both(lambda a: F.binary_cross_entropy_with_logits(a, mg.tensor(t, device=a.device), reduction=reduction),
                x, counts=fake_cuda)
    assert out["cuda"][2] == 1                                       # only dx: one kernel


def test_the_cuda_loss_kernels_are_what_the_dispatch_picks(fake_cuda):
    import fake_cupy as cp

    assert kernels.for_arrays("loss", cp.ones(3)) is loss_cuda
    assert kernels.for_arrays("loss", np.ones(3)) is loss_reference
    with kernels.use("reference"):
        assert kernels.for_arrays("loss", cp.ones(3)) is loss_reference


# ------------------------------------------------------------------------------------------- real GPU
@pytest.mark.cuda
def test_cuda_loss_kernels_match_the_reference():
    import cupy

    for dtype in (np.float32, np.float64):
        x = _rows(dtype, seed=5)
        with np.errstate(invalid="ignore", divide="ignore"):
            want = loss_reference.logsumexp(x, (1,))
        got = loss_cuda.logsumexp(cupy.asarray(x), (1,))
        for a, b in zip(got, want):
            np.testing.assert_allclose(cupy.asnumpy(a), b, **TOL[dtype])
        logits, target, weight = _ce_case(dtype, 6)
        for reduction in ("mean", "sum", "none"):
            want, saved = loss_reference.cross_entropy(logits, target, weight, -100, reduction)
            got, gsaved = loss_cuda.cross_entropy(cupy.asarray(logits), cupy.asarray(target), cupy.asarray(weight),
                                                  -100, reduction)
            np.testing.assert_allclose(cupy.asnumpy(got), want, **TOL[dtype])
            g = np.ones(logits.shape[0], dtype) if reduction == "none" else np.array(1.0, dtype)
            np.testing.assert_allclose(
                cupy.asnumpy(loss_cuda.cross_entropy_backward(cupy.asarray(g), gsaved, reduction, -100)),
                loss_reference.cross_entropy_backward(g, saved, reduction, -100), **TOL[dtype])
        v = (np.random.default_rng(7).standard_normal(50) * 5).astype(dtype)
        t = np.random.default_rng(8).uniform(0, 1, 50).astype(dtype)
        for reduction in ("mean", "sum"):
            got, _ = loss_cuda.bce_with_logits(cupy.asarray(v), cupy.asarray(t), reduction)
            np.testing.assert_allclose(cupy.asnumpy(got), loss_reference.bce_with_logits(v, t, reduction)[0],
                                       **TOL[dtype])
