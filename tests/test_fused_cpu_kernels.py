"""The fused numba kernels outside convolution and batch norm, against the reference expressions.

* ``minigrad/kernels/elementwise_cpu.py`` (LeakyReLU). The op registry checks ``F.leaky_relu`` (values,
  gradients, PyTorch) on the default, fast path; here the fast kernels are compared with the reference
  path (``kernels.use("reference")``) on what the registry's strategies avoid: values exactly at the
  kink, NaN, infinities, non-contiguous and 0-d inputs, broadcast upstream gradients, negative and > 1
  slopes.
* ``minigrad/kernels/optim_cpu.py`` (Adam). ``tests/test_optim.py`` checks Adam against the update rule
  and ``torch.optim``; here the fused update must equal the NumPy expressions bit for bit.
"""
from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import kernels, optim
from minigrad.kernels import elementwise_cpu, optim_cpu


def _forward_backward(x, slope, grad):
    t = mg.tensor(x, requires_grad=True)
    y = F.leaky_relu(t, slope)
    y.backward(grad)
    return y.numpy(), t.grad.numpy()


def _both_paths(x, slope, grad):
    with np.errstate(invalid="ignore"):  # inf * 0 with slope 0 is NaN on both paths, by design
        with kernels.use("fast"):
            fast = _forward_backward(x, slope, grad)
        with kernels.use("reference"):
            ref = _forward_backward(x, slope, grad)
    return fast, ref


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("slope", [0.2, 0.01, 0.0, -0.5, 1.5])
def test_leaky_relu_fast_equals_reference(dtype, slope):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 5, 6)).astype(dtype)
    x.flat[:6] = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30]
    grad = rng.standard_normal(x.shape).astype(dtype)
    (y_fast, g_fast), (y_ref, g_ref) = _both_paths(x, slope, grad)
    np.testing.assert_array_equal(y_fast, y_ref)
    np.testing.assert_array_equal(g_fast, g_ref)
    assert y_fast.dtype == dtype and g_fast.dtype == dtype
    # the gradient at exactly 0 is the slope (PyTorch's choice), for +0 and -0
    np.testing.assert_array_equal(g_fast.flat[:2], grad.flat[:2] * dtype(slope))


def test_leaky_relu_values_by_hand():
    x = np.array([-2.0, -0.5, 0.0, 0.5, 3.0], dtype=np.float32)
    with kernels.use("fast"):
        y = elementwise_cpu.leaky_relu(x, 0.2)
        dx = elementwise_cpu.leaky_relu_backward(np.ones_like(x), x, 0.2)
    np.testing.assert_allclose(y, [-0.4, -0.1, 0.0, 0.5, 3.0], rtol=1e-7)
    np.testing.assert_allclose(dx, [0.2, 0.2, 0.2, 1.0, 1.0], rtol=1e-7)


def test_leaky_relu_non_contiguous_and_0d():
    rng = np.random.default_rng(1)
    base = rng.standard_normal((6, 8)).astype(np.float32)
    for x in (base[:, ::2], base.T, np.float32(-1.5) * np.ones((), np.float32)):
        grad = rng.standard_normal(x.shape).astype(np.float32)
        (y_fast, g_fast), (y_ref, g_ref) = _both_paths(x, 0.2, grad)
        assert y_fast.shape == x.shape and g_fast.shape == x.shape
        np.testing.assert_array_equal(y_fast, y_ref)
        np.testing.assert_array_equal(g_fast, g_ref)


def test_leaky_relu_broadcast_upstream_gradient():
    # mean() hands a broadcast (zero-stride) gradient to the op before it
    x = np.random.default_rng(2).standard_normal((4, 5)).astype(np.float32)
    t = mg.tensor(x, requires_grad=True)
    F.leaky_relu(t, 0.2).mean().backward()
    np.testing.assert_allclose(t.grad.numpy(), np.where(x > 0, 1.0, 0.2) / x.size, rtol=1e-6)


def test_supports_only_float_numpy_arrays_of_one_dtype():
    f32, f64 = np.zeros(3, np.float32), np.zeros(3, np.float64)
    assert elementwise_cpu.supports(f32) and elementwise_cpu.supports(f64, f64)
    assert not elementwise_cpu.supports(np.zeros(3, np.int64))
    assert not elementwise_cpu.supports(np.zeros(3, np.float16))
    assert not elementwise_cpu.supports(f32, f64)


# ------------------------------------------------------------------------------------------------ Adam
def _adam_run(path, dtype, weight_decay, steps=4):
    rng = np.random.default_rng(3)
    w = mg.tensor(rng.standard_normal((7, 5)).astype(dtype), requires_grad=True)
    b = mg.tensor(rng.standard_normal(5).astype(dtype), requires_grad=True)
    with kernels.use(path):
        opt = optim.Adam([w, b], lr=0.01, betas=(0.5, 0.999), eps=1e-8, weight_decay=weight_decay)
        for _ in range(steps):
            w.grad = mg.tensor(rng.standard_normal(w.shape).astype(dtype))
            b.grad = mg.tensor(rng.standard_normal(b.shape).astype(dtype))
            opt.step()
    return [w.numpy(), b.numpy()], opt.state_dict()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adam_fused_equals_reference_bit_for_bit(dtype, weight_decay):
    fast, fast_state = _adam_run("fast", dtype, weight_decay)
    ref, ref_state = _adam_run("reference", dtype, weight_decay)
    for a, b in zip(fast, ref):
        assert a.dtype == dtype
        np.testing.assert_array_equal(a, b)
    for i in ref_state["state"]:
        assert fast_state["state"][i]["step"] == ref_state["state"][i]["step"] == 4
        for key in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_array_equal(fast_state["state"][i][key], ref_state["state"][i][key])


def test_adam_fused_returns_a_new_parameter_array():
    # a graph saved before the step may still hold the old array: it must not change under it
    w = mg.tensor(np.ones((3, 3), np.float32), requires_grad=True)
    old = w.data
    opt = optim.Adam([w], lr=0.1)
    w.grad = mg.tensor(np.ones((3, 3), np.float32))
    with kernels.use("fast"):
        opt.step()
    assert w.data is not old
    np.testing.assert_array_equal(old, np.ones((3, 3), np.float32))
    np.testing.assert_allclose(w.numpy(), 0.9, rtol=1e-6)  # first step moves by lr * sign(g)


def test_adam_supports():
    a = np.zeros((4, 4), np.float32)
    assert optim_cpu.supports(a, a, a, a)
    assert not optim_cpu.supports(a, np.zeros((4, 3), np.float32), a, a)          # shape differs
    assert not optim_cpu.supports(a, np.zeros((4, 8), np.float32)[:, ::2], a, a)  # not contiguous
    assert not optim_cpu.supports(a, a.astype(np.float64), a, a)         # mixed dtypes
    f16 = a.astype(np.float16)
    assert not optim_cpu.supports(f16, f16, f16, f16)


# ------------------------------------------------ sigmoid, ReLU and softplus: one numba loop each way
SPECIAL = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, 40.0, -40.0, 100.0, -100.0]


def _inputs(dtype, seed=3):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((7, 9)) * 4).astype(dtype)
    x.flat[:len(SPECIAL)] = SPECIAL
    return x, rng.standard_normal(x.shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_fast_equals_reference_bit_for_bit(dtype):
    from minigrad.kernels import elementwise_reference as ref

    x, g = _inputs(dtype)
    y = elementwise_cpu.relu(x)
    np.testing.assert_array_equal(y, ref.relu(x))
    np.testing.assert_array_equal(elementwise_cpu.relu_backward(g, y), ref.relu_backward(g, y))
    assert y.dtype == dtype and np.isnan(y.flat[4])                   # NaN stays NaN
    dx = elementwise_cpu.relu_backward(g, y)
    assert dx.flat[0] == 0 and dx.flat[4] == 0 and dx.flat[2] == g.flat[2]   # 0 at 0 and at NaN; g where y > 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_and_softplus_fast_equal_reference_to_rounding(dtype):
    from minigrad.kernels import elementwise_reference as ref

    x, g = _inputs(dtype)
    tol = dict(rtol=4e-7 if dtype == np.float32 else 1e-15, atol=0)
    with np.errstate(over="ignore"):
        for fast, want in ((elementwise_cpu.sigmoid(x), ref.sigmoid(x)), (elementwise_cpu.softplus(x), ref.softplus(x)),
                           (elementwise_cpu.softplus_backward(g, x), ref.softplus_backward(g, x))):
            assert fast.dtype == dtype and fast.shape == x.shape
            np.testing.assert_allclose(fast, want, **tol)             # NaN where the reference has NaN
    sp = elementwise_cpu.softplus(x)
    assert sp.flat[2] == np.inf and sp.flat[3] == 0 and 0 <= sp.flat[9] < 1e-40 and np.isnan(sp.flat[4])
    np.testing.assert_allclose(sp.flat[0], np.log(2), rtol=1e-6)


def test_sigmoid_relu_softplus_values_by_hand_and_non_contiguous():
    x = np.array([[-2.0, 0.0, 3.0], [1.0, -1.0, 0.5]], dtype=np.float64).T      # a transposed view
    np.testing.assert_allclose(elementwise_cpu.sigmoid(x), 1 / (1 + np.exp(-x)), rtol=1e-15)
    np.testing.assert_allclose(elementwise_cpu.softplus(x), np.log1p(np.exp(x)), rtol=1e-15)
    np.testing.assert_array_equal(elementwise_cpu.relu(x), np.maximum(x, 0))
    with pytest.raises(ValueError, match="softplus_backward: argument grad has shape"):
        elementwise_cpu.softplus_backward(np.ones((2, 3)), x)


def test_relu_and_softplus_ops_take_the_kernels_on_both_paths():
    x = np.random.default_rng(4).standard_normal((5, 6)).astype(np.float32)
    g = np.random.default_rng(5).standard_normal((5, 6)).astype(np.float32)
    got = {}
    for path in ("fast", "reference"):
        with kernels.use(path):
            for name, f in (("relu", F.relu), ("softplus", F.softplus), ("sigmoid", F.sigmoid)):
                t = mg.tensor(x, requires_grad=True)
                y = f(t)
                y.backward(g)
                got[path, name] = (y.numpy(), t.grad.numpy())
    for name in ("relu", "softplus", "sigmoid"):
        for a, b in zip(got["fast", name], got["reference", name]):
            np.testing.assert_allclose(a, b, rtol=4e-7, atol=0, err_msg=name)
