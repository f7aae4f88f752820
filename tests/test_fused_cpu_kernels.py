"""The numba elementwise kernels (minigrad/kernels/elementwise_cpu.py) against the reference expressions.

The op registry checks ``F.leaky_relu`` (values, gradients, PyTorch) on the default, fast path; here the
fast kernels are compared with the reference path (``kernels.use("reference")``) on what the registry's
strategies avoid: values exactly at the kink, NaN, infinities, non-contiguous and 0-d inputs, broadcast
upstream gradients, negative and > 1 slopes.
"""
from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import kernels
from minigrad.kernels import elementwise_cpu


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
