"""The fused weight-norm op (minigrad/ops/weight_norm.py) and its kernels (``weight_norm`` family): the numba
kernels against the reference path, the op against the composition of generic ops it replaces (values and
both gradients), which gradients it computes, dtypes, and a deliberately broken backward that the gradient
check must catch. The registry (entries_weight_norm.py, entries_norm.py) checks values, gradients and
PyTorch on drawn cases.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import kernels, nn
from minigrad.kernels import weight_norm_cpu, weight_norm_reference
from minigrad.ops.weight_norm import WeightNorm, slices_shape
from minigrad.testing import GradcheckError, gradcheck

# (shape of v, dim): Linear (out, in) and Conv2d (out, in, kh, kw) by dim 0, ConvTranspose2d (in, out, kh, kw)
# by dim 1, the last dim, a negative dim, one norm over everything
CASES = [((7, 5), 0), ((6, 3, 3, 3), 0), ((4, 5, 3, 3), 1), ((3, 4, 5), 2), ((3, 4, 5), -2), ((5, 4), None),
         ((1, 9), 0), ((9, 1), 1)]


def _g_shape(shape, dim):
    return (1,) * len(shape) if dim is None else tuple(n if a == dim % len(shape) else 1 for a, n in enumerate(shape))


def _inputs(shape, dim, dtype, seed=0):
    rng = np.random.default_rng(seed)
    v = (rng.standard_normal(shape) * 0.1).astype(dtype)
    g = rng.uniform(0.5, 2.0, _g_shape(shape, dim)).astype(dtype)
    upstream = rng.standard_normal(shape).astype(dtype)
    return v, g, upstream


def _run(v, g, upstream, dim, eps, path="fast"):
    with kernels.use(path):
        tv, tg = mg.tensor(v, requires_grad=True), mg.tensor(g, requires_grad=True)
        w = F.weight_norm(tv, tg, dim=dim, eps=eps)
        w.backward(upstream)
    return w.numpy(), tv.grad.numpy(), tg.grad.numpy()


def _composed(v, g, upstream, dim, eps):
    """The weight and both gradients from the generic ops F.weight_norm was built from before."""
    tv, tg = mg.tensor(v, requires_grad=True), mg.tensor(g, requires_grad=True)
    axes = tuple(range(v.ndim)) if dim is None else tuple(a for a in range(v.ndim) if a != dim % v.ndim)
    w = tv * (tg / ((tv * tv).sum(dim=axes, keepdim=True) + eps) ** 0.5)
    w.backward(upstream)
    return w.numpy(), tv.grad.numpy(), tg.grad.numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, dim", CASES)
@pytest.mark.parametrize("eps", [0.0, 1e-6])
def test_fast_kernels_equal_the_reference_path(shape, dim, eps, dtype):
    v, g, upstream = _inputs(shape, dim, dtype)
    fast, ref = _run(v, g, upstream, dim, eps, "fast"), _run(v, g, upstream, dim, eps, "reference")
    for a, b, what in zip(fast, ref, ("w", "dv", "dg")):
        assert a.dtype == dtype and a.shape == b.shape, what
        # the same expressions in the same dtype; only the order of the float64 sums differs (which dv's
        # difference of two terms can show, relative to the largest entry)
        eps_dt = np.finfo(dtype).eps
        np.testing.assert_allclose(a, b, rtol=4 * eps_dt, atol=8 * eps_dt * np.abs(b).max(), err_msg=what)


@pytest.mark.parametrize("shape, dim", CASES)
@pytest.mark.parametrize("eps", [0.0, 0.3])
def test_the_op_equals_the_composed_ops_it_replaces(shape, dim, eps):
    v, g, upstream = _inputs(shape, dim, np.float64, seed=1)
    for path in ("fast", "reference"):
        for a, b, what in zip(_run(v, g, upstream, dim, eps, path), _composed(v, g, upstream, dim, eps),
                              ("w", "dv", "dg")):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14, err_msg=f"{what} on the {path} path")


def test_float32_stays_within_float32_rounding_of_float64():
    v, g, upstream = _inputs((500, 784), 0, np.float64, seed=2)
    exact = _run(v, g, upstream, 0, 1e-6)
    single = _run(v.astype(np.float32), g.astype(np.float32), upstream.astype(np.float32), 0, 1e-6)
    for a, b, what in zip(single, exact, ("w", "dv", "dg")):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7 * np.abs(b).max(), err_msg=what)


def test_only_the_gradients_asked_for_are_computed():
    v, g, upstream = _inputs((6, 4), 0, np.float64)
    tv, tg = mg.tensor(v, requires_grad=True), mg.tensor(g)           # a fixed scale (train_scale=False)
    F.weight_norm(tv, tg).backward(upstream)
    assert tg.grad is None
    np.testing.assert_allclose(tv.grad.numpy(), _composed(v, g, upstream, 0, 0.0)[1], rtol=1e-12)
    tv, tg = mg.tensor(v), mg.tensor(g, requires_grad=True)
    F.weight_norm(tv, tg).backward(upstream)
    assert tv.grad is None
    np.testing.assert_allclose(tg.grad.numpy(), _composed(v, g, upstream, 0, 0.0)[2], rtol=1e-12)
    with mg.no_grad():
        w = F.weight_norm(mg.tensor(v, requires_grad=True), mg.tensor(g, requires_grad=True))
    assert w.grad_fn is None


def test_one_node_and_what_it_saves():
    v, g, _ = _inputs((4, 3, 2, 2), 1, np.float32)
    w = F.weight_norm(mg.tensor(v, requires_grad=True), mg.tensor(g, requires_grad=True), dim=1)
    node = w._node
    assert node.fn is WeightNorm and node.inputs[0]._node is None and node.inputs[1]._node is None
    v3, g1, norm = node.saved_arrays
    assert v3.shape == slices_shape(v.shape, 1) == (4, 3, 4) and g1.shape == (3,) and norm.dtype == np.float64
    np.testing.assert_allclose(norm, np.sqrt((v.astype(np.float64) ** 2).sum(axis=(0, 2, 3))), rtol=1e-12)


def test_mixed_dtypes_are_promoted_and_integers_refused():
    v, g, upstream = _inputs((5, 3), 0, np.float64)
    tv, tg = mg.tensor(v.astype(np.float32), requires_grad=True), mg.tensor(g, requires_grad=True)
    w = F.weight_norm(tv, tg)
    assert w.dtype == np.float64
    w.backward(upstream)
    assert tv.grad.dtype == np.float32 and tg.grad.dtype == np.float64
    with pytest.raises(TypeError, match="weight_norm: v and g must be floating point"):
        F.weight_norm(mg.tensor(np.ones((2, 2), np.int64)), mg.tensor(np.ones((2, 1), np.int64)))


def test_a_non_contiguous_upstream_gradient():
    v, g, upstream = _inputs((6, 5), 0, np.float32)
    grad_t = np.asfortranarray(upstream)
    for path in ("fast", "reference"):
        assert np.array_equal(_run(v, g, grad_t, 0, 0.0, path)[1], _run(v, g, upstream, 0, 0.0, path)[1])


def test_weight_normed_layers_match_the_composition():
    """A Linear layer weight-normalised by nn.utils runs the op; its output and every gradient are those of
    the composed formula."""
    mg.manual_seed(0)
    layer = nn.utils.weight_norm(nn.Linear(7, 4, dtype=np.float64))
    x = mg.tensor(np.random.default_rng(3).standard_normal((5, 7)))
    y = layer(x)
    assert layer.weight._node.fn is WeightNorm
    upstream = np.random.default_rng(4).standard_normal(y.shape)
    y.backward(upstream)
    v, g = layer.weight_v.numpy(), layer.weight_g.numpy()
    tv, tg = mg.tensor(v, requires_grad=True), mg.tensor(g, requires_grad=True)
    w = tv * (tg / ((tv * tv).sum(dim=1, keepdim=True)) ** 0.5)
    F.linear(x, w, mg.tensor(layer.bias.numpy())).backward(upstream)
    np.testing.assert_allclose(layer.weight_v.grad.numpy(), tv.grad.numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(layer.weight_g.grad.numpy(), tg.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_a_broken_backward_fails_the_gradient_check(monkeypatch):
    """Negative control: a backward that forgets the projection (dv = (g / n) gw, as if n did not depend on
    v) must fail gradcheck, while the real one passes."""
    v, g, _ = _inputs((4, 3), 0, np.float64)
    fn = lambda tv, tg: WeightNorm.apply(tv, tg, dim=0, eps=0.0)  # noqa: E731
    assert gradcheck(fn, [v, g]).ok

    def wrong(ctx, grad):
        v3, g1, norm = ctx.saved_arrays
        dv = grad.reshape(v3.shape) * (g1 / norm).reshape(1, -1, 1)
        dg = (grad.reshape(v3.shape) * v3).sum(axis=(0, 2)) / norm
        return dv.reshape(ctx.shapes[0]), dg.reshape(ctx.shapes[1])

    monkeypatch.setattr(WeightNorm, "backward", staticmethod(wrong))
    with pytest.raises(GradcheckError):
        gradcheck(fn, [v, g])


def test_kernel_arguments_of_the_wrong_size_are_refused():
    v = np.ones((1, 3, 4), np.float32)
    with pytest.raises(ValueError, match=r"weight_norm: argument g has shape \(2,\), but this call needs shape \(3,\)"):
        weight_norm_cpu.weight_norm(v, np.ones(2, np.float32), 0.0)
    with pytest.raises(ValueError, match="weight_norm: argument v must be a 3-D"):
        weight_norm_cpu.weight_norm(v[0], np.ones(3, np.float32), 0.0)
    w, norm = weight_norm_cpu.weight_norm(v, np.ones(3, np.float32), 0.0)
    with pytest.raises(ValueError, match=r"weight_norm_backward: argument grad has shape \(1, 3, 3\)"):
        weight_norm_cpu.weight_norm_backward(v[..., :3], v, np.ones(3, np.float32), norm)
    with pytest.raises(ValueError, match=r"weight_norm_backward: argument norm has shape \(2,\)"):
        weight_norm_cpu.weight_norm_backward(v, v, np.ones(3, np.float32), norm[:2])
    np.testing.assert_allclose(w, weight_norm_reference.weight_norm(v, np.ones(3, np.float32), 0.0)[0])


def test_dispatch_picks_the_numba_kernels_for_numpy_floats_only():
    f32, f64 = np.ones((1, 2, 4), np.float32), np.ones((1, 2, 4))
    with kernels.use("fast"):
        assert kernels.for_arrays("weight_norm", f32, f32[0, :, 0]) is weight_norm_cpu
        assert kernels.for_arrays("weight_norm", f32, f64[0, :, 0]) is weight_norm_reference
        assert kernels.for_arrays("noise", f64) is kernels.module("noise_cpu")
        assert kernels.for_arrays("average", [f32], [f32]) is kernels.module("average_cpu")
        assert kernels.for_arrays("average", [f32], [f32[..., ::2]]) is kernels.module("average_reference")


FUSED_TESTS = ["tests/test_fused_weight_norm.py", "tests/test_fused_average.py", "tests/test_fused_noise.py"]


@pytest.mark.skipif(os.environ.get("NUMBA_BOUNDSCHECK") == "1", reason="already inside the bounds-checked run")
def test_the_fused_kernels_pass_under_numba_bounds_checking(tmp_path):
    """The weight-norm, average and noise kernel tests again with NUMBA_BOUNDSCHECK=1 (every index checked,
    serial loops) in a subprocess with a numba cache of its own, as tests/test_kernels.py does for the
    other kernels; the statistical, two-thread and training-run tests are left out (they check no index)."""
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"),
               NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env.pop("MINIGRAD_KERNELS", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hypothesis-profile=ci", "-x",
         "-k", "not two_threads and not checkpoint and not large_draw and not independent", *FUSED_TESTS],
        cwd=root, env=env, capture_output=True, text=True, timeout=600)
    tail = (result.stdout + result.stderr)[-3000:]
    assert result.returncode == 0, f"bounds-checked fused kernel tests failed:\n{tail}"
    assert " passed" in result.stdout and "failed" not in result.stdout, tail
