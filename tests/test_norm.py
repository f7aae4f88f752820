"""Batch norm: F.batch_norm (both kernel paths), its backward, running statistics, nn.BatchNorm1d/2d.

Every numeric test runs on the numba kernels and on the NumPy reference (``MINIGRAD_KERNELS=reference``);
PyTorch, when importable, is the outside reference for the forward pass, the gradients and the running
statistics.
"""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minigrad as mg
import minigrad.functional as F
from minigrad import kernels as mg_kernels
from minigrad import nn
from minigrad.ops import norm as norm_ops
from minigrad.testing.gradcheck import GradcheckError, gradcheck

try:
    import torch
except ImportError:  # pragma: no cover - torch is optional
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed (it is only a test reference)")
MODES = ("numba", "reference")


def kernels(mode):
    """Run a block with the numba kernels ("numba") or the NumPy reference path ("reference")."""
    return mg_kernels.use("reference" if mode == "reference" else "fast")


def spread_input(rng, shape, dtype=np.float64, loc=0.0, scale=1.0):
    """Normal values; callers reject draws whose channels are nearly constant (batch norm is ill-conditioned
    there, and central differences would measure the conditioning instead of the gradient)."""
    return (rng.standard_normal(shape) * scale + loc).astype(dtype)


def channel_var(x):
    return x.var(axis=(0,) + tuple(range(2, x.ndim)))


# ------------------------------------------------------------------------------- gradient checks
@st.composite
def bn_problems(draw):
    """A small batch-norm problem: input shape (2-D or 4-D), mode, affine or not, values."""
    four_d = draw(st.booleans())
    c = draw(st.integers(1, 3))
    if four_d:
        shape = (draw(st.integers(1, 3)), c, draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    else:
        shape = (draw(st.integers(2, 5)), c)
    training = draw(st.booleans())
    affine = draw(st.booleans())
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    x = spread_input(rng, shape, loc=float(rng.uniform(-3, 3)), scale=float(rng.uniform(0.5, 2)))
    if training:
        assume(np.prod(shape) // c > 1 and channel_var(x).min() > 0.05)
    return dict(
        x=x, training=training, affine=affine,
        weight=rng.uniform(0.5, 2.0, c) * rng.choice([-1, 1], c), bias=rng.standard_normal(c),
        running_mean=rng.standard_normal(c), running_var=rng.uniform(0.5, 2.0, c),
        mode=draw(st.sampled_from(MODES)))


@given(bn_problems())
def test_batch_norm_gradcheck(problem):
    """float64 central differences, random upstream gradient, both modes, with and without affine."""
    rm, rv = problem["running_mean"], problem["running_var"]
    training = problem["training"]

    def fn(x, *params):
        # Fresh running-stat tensors each call: in training mode they are updated (a side effect the
        # output does not depend on), in evaluation mode they are the constants the output uses.
        w, b = params if params else (None, None)
        return F.batch_norm(x, mg.tensor(rm.copy()), mg.tensor(rv.copy()), w, b, training=training)

    inputs = [problem["x"]] + ([problem["weight"], problem["bias"]] if problem["affine"] else [])
    with kernels(problem["mode"]):
        gradcheck(fn, inputs, names=("x", "weight", "bias"))


@pytest.mark.parametrize("mode", MODES)
def test_batch_norm_gradcheck_random_directions_larger_input(mode):
    """A (6, 4, 5, 5) batch checked along random directions (the full Jacobian would take 1200 columns)."""
    rng = np.random.default_rng(1)
    x = spread_input(rng, (6, 4, 5, 5), loc=2.0, scale=1.5)
    w, b = rng.uniform(0.5, 2, 4), rng.standard_normal(4)
    with kernels(mode):
        report = gradcheck(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), [x, w, b],
                           directions=True, n_directions=6)
    assert all(c.mode == "directions" for c in report.inputs)


@pytest.mark.parametrize("mode", MODES)
def test_gradcheck_catches_a_wrong_batch_norm_backward(mode, monkeypatch):
    """Negative control: dropping the xhat * mean(g * xhat) term (the gradient through the variance) must
    fail the check, so the checks above can fail."""

    def broken(g, x, mean, invstd, gamma, mean_g, mean_gxhat):
        c = lambda v: norm_ops._per_channel(v, x.ndim, x.dtype)  # noqa: E731
        return c(gamma * invstd) * (g - c(mean_g))

    for name in ("norm_reference", "norm_cpu"):   # the norm kernel family's training_dx, on either path
        monkeypatch.setattr(mg_kernels.module(name), "training_dx", broken)
    x = spread_input(np.random.default_rng(2), (5, 3))
    with kernels(mode), pytest.raises(GradcheckError):
        gradcheck(lambda x: F.batch_norm(x, None, None, training=True), [x])


# ------------------------------------------------------------------------- against PyTorch
@needs_torch
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7, 3), (4, 5, 3, 2), (3, 2, 6)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_matches_torch(mode, dtype, shape, training, affine):
    rng = np.random.default_rng(abs(hash((shape, training, affine))) % 2**32)
    c = shape[1]
    x = spread_input(rng, shape, dtype, loc=1.5, scale=2.0)
    g = rng.standard_normal(shape).astype(dtype)
    w, b = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    rm, rv = rng.standard_normal(c).astype(dtype), rng.uniform(0.5, 2, c).astype(dtype)

    X = mg.tensor(x, requires_grad=True)
    W, B = mg.tensor(w, requires_grad=True), mg.tensor(b, requires_grad=True)
    RM, RV = mg.tensor(rm), mg.tensor(rv)
    with kernels(mode):
        y = F.batch_norm(X, RM, RV, W if affine else None, B if affine else None, training=training,
                         momentum=0.3, eps=1e-3)
        y.backward(mg.tensor(g))

    tx = torch.tensor(x, requires_grad=True)
    tw, tb = torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)
    trm, trv = torch.tensor(rm), torch.tensor(rv)
    ty = torch.nn.functional.batch_norm(tx, trm, trv, tw if affine else None, tb if affine else None,
                                        training=training, momentum=0.3, eps=1e-3)
    ty.backward(torch.tensor(g))

    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    assert y.dtype == dtype and X.grad.dtype == dtype
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), **tol)
    np.testing.assert_allclose(X.grad.numpy(), tx.grad.numpy(), **tol)
    np.testing.assert_allclose(RM.numpy(), trm.numpy(), **tol)
    np.testing.assert_allclose(RV.numpy(), trv.numpy(), **tol)
    if affine:
        np.testing.assert_allclose(W.grad.numpy(), tw.grad.numpy(), **tol)
        np.testing.assert_allclose(B.grad.numpy(), tb.grad.numpy(), **tol)
    if not training:  # evaluation mode leaves the running statistics alone
        np.testing.assert_array_equal(RM.numpy(), rm)
        np.testing.assert_array_equal(RV.numpy(), rv)


# ------------------------------------------------------------------------- semantics by hand
@pytest.mark.parametrize("mode", MODES)
def test_running_stats_after_several_training_calls_match_hand_computation(mode):
    rng = np.random.default_rng(3)
    momentum = 0.25
    rm_t, rv_t = mg.zeros(3, dtype=np.float64), mg.ones(3, dtype=np.float64)
    arrays_before = (rm_t.data, rv_t.data)
    rm, rv = np.zeros(3), np.ones(3)
    for step in range(4):
        x = spread_input(rng, (5, 3, 2, 2), loc=step, scale=1 + step)
        with kernels(mode):
            F.batch_norm(mg.tensor(x), rm_t, rv_t, training=True, momentum=momentum)
        values = x.transpose(1, 0, 2, 3).reshape(3, -1)
        rm = (1 - momentum) * rm + momentum * values.mean(axis=1)
        rv = (1 - momentum) * rv + momentum * values.var(axis=1, ddof=1)  # the unbiased variance is kept
    np.testing.assert_allclose(rm_t.numpy(), rm, rtol=1e-12)
    np.testing.assert_allclose(rv_t.numpy(), rv, rtol=1e-12)
    # updated in place: the tensors still hold the arrays they started with
    assert rm_t.data is arrays_before[0] and rv_t.data is arrays_before[1]


@pytest.mark.parametrize("mode", MODES)
def test_training_normalises_with_biased_batch_variance_and_eval_with_running_stats(mode):
    rng = np.random.default_rng(4)
    x = spread_input(rng, (6, 2, 3, 1), loc=5.0, scale=3.0)
    w, b = np.array([2.0, -0.5]), np.array([0.1, 1.0])
    axes = (0, 2, 3)
    with kernels(mode):
        y = F.batch_norm(mg.tensor(x), None, None, mg.tensor(w), mg.tensor(b), training=True, eps=0.0).numpy()
    xhat = (x - x.mean(axis=axes, keepdims=True)) / x.std(axis=axes, keepdims=True)  # std: biased
    np.testing.assert_allclose(y, xhat * w.reshape(1, 2, 1, 1) + b.reshape(1, 2, 1, 1), rtol=1e-10, atol=1e-12)

    rm, rv = np.array([1.0, -2.0]), np.array([4.0, 0.25])
    with kernels(mode):
        y_eval = F.batch_norm(mg.tensor(x), mg.tensor(rm), mg.tensor(rv), training=False, eps=0.0).numpy()
    np.testing.assert_allclose(y_eval, (x - rm.reshape(1, 2, 1, 1)) / np.sqrt(rv).reshape(1, 2, 1, 1), rtol=1e-12)


def test_no_running_stats_means_batch_stats_in_eval_mode_too():
    x = spread_input(np.random.default_rng(5), (4, 3))
    a = F.batch_norm(mg.tensor(x), None, None, training=False).numpy()
    b = F.batch_norm(mg.tensor(x), None, None, training=True).numpy()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a.mean(axis=0), 0, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_eval_mode_gradient_is_the_affine_map(mode):
    rng = np.random.default_rng(6)
    x, g = rng.standard_normal((4, 3, 2, 2)), rng.standard_normal((4, 3, 2, 2))
    w, rv = np.array([1.5, -2.0, 0.5]), np.array([0.5, 2.0, 1.0])
    X = mg.tensor(x, requires_grad=True)
    with kernels(mode):
        F.batch_norm(X, mg.zeros(3, dtype=np.float64), mg.tensor(rv), mg.tensor(w), None, eps=0.0).backward(mg.tensor(g))
    np.testing.assert_allclose(X.grad.numpy(), g * (w / np.sqrt(rv)).reshape(1, 3, 1, 1), rtol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_float32_statistics_survive_a_large_mean(mode):
    """mean 1000, std 0.01 in float32: E[x^2] - E[x]^2 in float32 returns 0.06 to 0.5 instead of 1e-4; the
    statistics are accumulated soundly, so the output is standardised."""
    rng = np.random.default_rng(7)
    x = (1000.0 + 0.01 * rng.standard_normal((64, 4, 4, 4))).astype(np.float32)
    with kernels(mode):
        mean, var = mg_kernels.for_arrays("norm", x).channel_stats(x)
        y = F.batch_norm(mg.tensor(x), None, None, training=True, eps=0.0).numpy()
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mean, x64.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(var, x64.var(axis=(0, 2, 3)), rtol=1e-6)
    # Subtracting the mean rounded to float32 would offset every output by ~2e-3 here; it must not.
    np.testing.assert_allclose(y.std(axis=(0, 2, 3), dtype=np.float64), 1.0, rtol=1e-5)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3), dtype=np.float64), 0.0, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_nan_in_a_channel_stays_in_that_channel(mode):
    x = spread_input(np.random.default_rng(17), (4, 3, 2, 2), np.float32)
    x[2, 1, 0, 1] = np.nan
    with kernels(mode), np.errstate(invalid="ignore"):
        y = F.batch_norm(mg.tensor(x), None, None, training=True).numpy()
    assert np.isnan(y[:, 1]).all()
    assert np.isfinite(y[:, [0, 2]]).all()


def test_running_stats_are_not_part_of_the_graph():
    rm = mg.zeros(3, requires_grad=True)
    x = mg.tensor(spread_input(np.random.default_rng(8), (4, 3), np.float32), requires_grad=True)
    F.batch_norm(x, rm, mg.ones(3), training=True).sum().backward()
    assert rm.grad is None and x.grad is not None


def test_no_grad_still_updates_running_stats_and_builds_no_graph():
    rm = mg.zeros(2)
    x = mg.tensor(np.array([[1.0, 2.0], [3.0, 6.0]], dtype=np.float32), requires_grad=True)
    with mg.no_grad():
        y = F.batch_norm(x, rm, mg.ones(2), training=True, momentum=1.0)
    assert not y.requires_grad
    np.testing.assert_allclose(rm.numpy(), [2.0, 4.0])


# ------------------------------------------------------------------------- kernels vs reference
@st.composite
def ncs_arrays(draw):
    n, c, s = draw(st.integers(1, 6)), draw(st.integers(1, 5)), draw(st.integers(1, 7))
    assume(n * s > 1)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    loc = draw(st.sampled_from([0.0, 3.0, -100.0]))
    x = (rng.standard_normal((n, c, s)) * rng.uniform(0.1, 3) + loc).astype(dtype)
    g = rng.standard_normal((n, c, s)).astype(dtype)
    return x, g


@given(ncs_arrays())
def test_numba_kernels_agree_with_numpy_reference(arrays):
    from minigrad.kernels import norm_cpu

    x, g = arrays
    x64, g64 = x.astype(np.float64), g.astype(np.float64)
    mean, var = norm_cpu._channel_stats(x)
    np.testing.assert_allclose(mean, x64.mean(axis=(0, 2)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(var, x64.var(axis=(0, 2)), rtol=1e-9, atol=1e-12)

    c = x.shape[1]
    rng = np.random.default_rng(0)
    scale, shift = rng.standard_normal(c), rng.standard_normal(c)
    out = np.empty_like(x)
    norm_cpu._normalize(x, mean, scale, shift, out)
    expect = (x64 - mean[None, :, None]) * scale[None, :, None] + shift[None, :, None]
    tol = dict(rtol=1e-5, atol=1e-5) if x.dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out, expect, **tol)

    sum_g, sum_gx = norm_cpu._backward_sums(g, x, mean)
    np.testing.assert_allclose(sum_g, g64.sum(axis=(0, 2)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sum_gx, (g64 * (x64 - mean[None, :, None])).sum(axis=(0, 2)), rtol=1e-9, atol=1e-9)

    g_off, x_coef = rng.standard_normal(c), rng.standard_normal(c)
    norm_cpu._backward_dx(g, x, mean, scale, g_off, x_coef, out)
    expect = (scale[None, :, None] * (g64 - g_off[None, :, None])
              - x_coef[None, :, None] * (x64 - mean[None, :, None]))
    np.testing.assert_allclose(out, expect, **tol)


@pytest.mark.parametrize("shape", [(100, 500), (3, 1), (2, 7, 1)])
def test_numba_row_loops_of_an_nc_input_agree_with_numpy(shape):
    """(N, C) inputs (S = 1) take row-by-row elementwise loops of their own; they compute the same."""
    from minigrad.kernels import norm_cpu

    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape) * 2 + 5).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    x3, g3 = x.reshape(shape[0], shape[1], 1), g.reshape(shape[0], shape[1], 1)
    x64, g64 = x3.astype(np.float64), g3.astype(np.float64)
    c = shape[1]
    mean, scale, shift, g_off, x_coef = (rng.standard_normal(c) for _ in range(5))
    out = np.full_like(x3, np.nan)
    norm_cpu._normalize(x3, mean, scale, shift, out)
    np.testing.assert_allclose(out, (x64 - mean[:, None]) * scale[:, None] + shift[:, None], rtol=1e-5, atol=1e-5)
    out[...] = np.nan
    norm_cpu._backward_dx(g3, x3, mean, scale, g_off, x_coef, out)
    expect = scale[:, None] * (g64 - g_off[:, None]) - x_coef[:, None] * (x64 - mean[:, None])
    np.testing.assert_allclose(out, expect, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False])
def test_numba_and_reference_paths_agree_on_the_whole_op(dtype, training):
    rng = np.random.default_rng(9)
    shape = (8, 5, 3, 3)
    x = spread_input(rng, shape, dtype, loc=-2.0, scale=0.7)
    x = np.asfortranarray(x)  # a non-C-contiguous input exercises the kernels' copy-in
    g = rng.standard_normal(shape).astype(dtype)
    w, b = rng.standard_normal(5).astype(dtype), rng.standard_normal(5).astype(dtype)
    results = {}
    for mode in MODES:
        X, W, B = (mg.tensor(a, requires_grad=True) for a in (x, w, b))
        rm, rv = mg.tensor(np.zeros(5, dtype)), mg.tensor(np.full(5, 2.0, dtype))
        with kernels(mode):
            y = F.batch_norm(X, rm, rv, W, B, training=training)
            y.backward(mg.tensor(g))
        results[mode] = [y.numpy(), X.grad.numpy(), W.grad.numpy(), B.grad.numpy(), rm.numpy(), rv.numpy()]
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    for a, b_ in zip(results["numba"], results["reference"]):
        assert a.dtype == b_.dtype == dtype
        np.testing.assert_allclose(a, b_, **tol)


# ------------------------------------------------------------------------- bad inputs
def _x(shape=(4, 3)):
    return mg.tensor(spread_input(np.random.default_rng(10), shape, np.float32))


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(running_mean=mg.zeros(2), running_var=mg.ones(2)), ValueError, "running_mean has shape (2,)"),
    (dict(running_mean=mg.zeros(3), running_var=mg.ones(4)), ValueError, "running_var has shape (4,)"),
    (dict(running_mean=mg.zeros(3), running_var=None), ValueError, "both"),
    (dict(weight=mg.ones(5)), ValueError, "weight has shape (5,)"),
    (dict(bias=mg.zeros(2, 1)), ValueError, "bias has shape (2, 1)"),
    (dict(weight=mg.ones(3, dtype=np.float64)), TypeError, "weight has dtype float64"),
    (dict(weight=np.ones(3, dtype=np.float32)), TypeError, "weight must be a Tensor"),
    (dict(momentum=1.5), ValueError, "momentum"),
    (dict(eps=-1.0), ValueError, "eps"),
])
def test_batch_norm_bad_arguments(kwargs, error, words):
    args = dict(running_mean=None, running_var=None)
    args.update(kwargs)
    with pytest.raises(error) as info:
        F.batch_norm(_x(), training=True, **args)
    assert "batch_norm" in str(info.value) and words in str(info.value)


def test_batch_norm_bad_inputs():
    with pytest.raises(ValueError, match=r"batch_norm: input must have shape \(N, C\).*\(4,\)"):
        F.batch_norm(mg.ones(4), None, None, training=True)
    with pytest.raises(TypeError, match="batch_norm: input must be floating point"):
        F.batch_norm(mg.tensor(np.ones((4, 3), dtype=np.int64)), None, None, training=True)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        F.batch_norm(_x((1, 3)), mg.zeros(3), mg.ones(3), training=True)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        F.batch_norm(_x((1, 3, 1, 1)), None, None, training=False)  # no running stats: batch stats needed
    # one value per channel is fine in evaluation mode, where the running statistics are used
    y = F.batch_norm(_x((1, 3)), mg.zeros(3), mg.ones(3), training=False)
    assert y.shape == (1, 3)


@pytest.mark.parametrize("mode", MODES)
def test_empty_batch_in_eval_mode(mode):
    x = mg.zeros(0, 3, 2, 2, requires_grad=True)
    with kernels(mode):
        y = F.batch_norm(x, mg.zeros(3), mg.ones(3), mg.ones(3, requires_grad=True), None, training=False)
        y.sum().backward()
    assert y.shape == (0, 3, 2, 2) and x.grad.shape == (0, 3, 2, 2)


# ------------------------------------------------------------------------- modules
@pytest.mark.parametrize("cls, shape", [(nn.BatchNorm1d, (6, 4)), (nn.BatchNorm1d, (6, 4, 3)),
                                        (nn.BatchNorm2d, (5, 4, 3, 2))])
def test_batchnorm_module_train_and_eval(cls, shape):
    rng = np.random.default_rng(11)
    bn = cls(4, momentum=0.2)
    assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]
    assert list(bn.state_dict()) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    batches = [spread_input(rng, shape, np.float32, loc=i, scale=1 + i) for i in range(3)]
    rm, rv = np.zeros(4), np.ones(4)
    axes = (0,) + tuple(range(2, len(shape)))
    for xb in batches:
        y = bn(mg.tensor(xb))
        x64 = xb.astype(np.float64)
        np.testing.assert_allclose(y.numpy().mean(axis=axes), 0, atol=1e-5)
        rm = 0.8 * rm + 0.2 * x64.mean(axis=axes)
        rv = 0.8 * rv + 0.2 * x64.var(axis=axes, ddof=1)
    assert bn.num_batches_tracked.item() == 3
    np.testing.assert_allclose(bn.running_mean.numpy(), rm, rtol=1e-5)
    np.testing.assert_allclose(bn.running_var.numpy(), rv, rtol=1e-5)

    bn.eval()
    before = bn.state_dict()
    y = bn(mg.tensor(batches[0])).numpy()
    view = (1, 4) + (1,) * (len(shape) - 2)
    expect = (batches[0] - before["running_mean"].reshape(view)) / np.sqrt(before["running_var"].reshape(view) + 1e-5)
    np.testing.assert_allclose(y, expect, rtol=1e-5, atol=1e-5)
    for k, v in bn.state_dict().items():  # evaluation mode changes nothing
        np.testing.assert_array_equal(v, before[k])


def test_batchnorm_parameters_get_gradients():
    bn = nn.BatchNorm2d(3)
    x = mg.tensor(spread_input(np.random.default_rng(12), (4, 3, 2, 2), np.float32))
    (bn(x) * mg.tensor(np.arange(48, dtype=np.float32).reshape(4, 3, 2, 2))).sum().backward()
    assert bn.weight.grad.shape == (3,) and bn.bias.grad.shape == (3,)
    np.testing.assert_allclose(bn.bias.grad.numpy(), np.arange(48).reshape(4, 3, 4).sum(axis=(0, 2)))


def test_batchnorm_momentum_none_is_a_cumulative_average():
    rng = np.random.default_rng(13)
    batches = [spread_input(rng, (5, 2), np.float64, loc=i) for i in range(4)]
    bn = nn.BatchNorm1d(2, momentum=None, dtype=np.float64)
    for xb in batches:
        bn(mg.tensor(xb))
    np.testing.assert_allclose(bn.running_mean.numpy(), np.mean([xb.mean(axis=0) for xb in batches], axis=0))
    np.testing.assert_allclose(bn.running_var.numpy(), np.mean([xb.var(axis=0, ddof=1) for xb in batches], axis=0))


def test_batchnorm_without_running_stats_or_affine():
    bn = nn.BatchNorm2d(3, affine=False, track_running_stats=False)
    assert list(bn.parameters()) == [] and bn.state_dict() == {}
    assert bn.weight is None and bn.running_mean is None
    x = spread_input(np.random.default_rng(14), (4, 3, 2, 2), np.float32)
    bn.eval()  # no running statistics: the batch's are used in evaluation mode too
    y = bn(mg.tensor(x)).numpy()
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-5)


@needs_torch
@pytest.mark.parametrize("cls", ["BatchNorm1d", "BatchNorm2d"])
def test_batchnorm_module_matches_torch_with_loaded_state(cls):
    rng = np.random.default_rng(15)
    shape = (6, 3) if cls == "BatchNorm1d" else (6, 3, 4, 4)
    tbn = getattr(torch.nn, cls)(3, momentum=0.3)
    with torch.no_grad():
        tbn.weight.copy_(torch.tensor(rng.standard_normal(3)))
        tbn.bias.copy_(torch.tensor(rng.standard_normal(3)))
    bn = getattr(nn, cls)(3, momentum=0.3)
    bn.load_state_dict({k: v.numpy() for k, v in tbn.state_dict().items()})
    for step in range(3):
        x = spread_input(rng, shape, np.float32, loc=step, scale=2.0)
        np.testing.assert_allclose(bn(mg.tensor(x)).numpy(), tbn(torch.tensor(x)).detach().numpy(),
                                   rtol=1e-4, atol=1e-5)
    for k, v in tbn.state_dict().items():
        np.testing.assert_allclose(bn.state_dict()[k], v.numpy(), rtol=1e-5, atol=1e-6)
    bn.eval(), tbn.eval()
    np.testing.assert_allclose(bn(mg.tensor(x)).numpy(), tbn(torch.tensor(x)).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_batchnorm_module_bad_inputs():
    with pytest.raises(ValueError, match=r"BatchNorm2d: expected 4D \(N, C, H, W\) input, got a 2-D input"):
        nn.BatchNorm2d(3)(_x((4, 3)))
    with pytest.raises(ValueError, match=r"BatchNorm1d: expected 2D \(N, C\) or 3D .* got a 4-D input"):
        nn.BatchNorm1d(3)(_x((4, 3, 2, 2)))
    with pytest.raises(ValueError, match=r"BatchNorm1d: input of shape \(4, 3\) has 3 channels .* num_features=5"):
        nn.BatchNorm1d(5)(_x((4, 3)))
    with pytest.raises(ValueError, match="num_features"):
        nn.BatchNorm2d(0)
    with pytest.raises(ValueError, match="momentum"):
        nn.BatchNorm2d(3, momentum=2.0)


# ------------------------------------------------------------------------- GPU
@pytest.mark.cuda
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_cuda_matches_cpu(training):
    rng = np.random.default_rng(16)
    x = spread_input(rng, (8, 4, 3, 3), np.float32, loc=1.0, scale=2.0)
    g = rng.standard_normal(x.shape).astype(np.float32)
    w, b = rng.standard_normal(4).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    results = {}
    for device in ("cpu", "cuda"):
        X = mg.tensor(x, device=device, requires_grad=True)
        W, B = mg.tensor(w, device=device, requires_grad=True), mg.tensor(b, device=device, requires_grad=True)
        rm, rv = mg.zeros(4, device=device), mg.ones(4, device=device)
        y = F.batch_norm(X, rm, rv, W, B, training=training)
        y.backward(mg.tensor(g, device=device))
        assert y.device == device and X.grad.device == device
        results[device] = [t.numpy() for t in (y, X.grad, W.grad, B.grad, rm, rv)]
    for a, b_ in zip(results["cpu"], results["cuda"]):
        np.testing.assert_allclose(a, b_, rtol=1e-4, atol=1e-5)


@pytest.mark.cuda
def test_batchnorm_module_on_cuda():
    bn = nn.BatchNorm2d(3).to("cuda")
    x = mg.randn(4, 3, 2, 2, device="cuda")
    bn(x).sum().backward()
    assert bn.running_mean.device == "cuda" and bn.weight.grad.device == "cuda"
    assert bn.num_batches_tracked.item() == 1
