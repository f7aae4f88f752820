"""Numerical stability: log-sum-exp, softmax, BCE-with-logits and cross-entropy at extreme logits and
on rows that are entirely -inf. Values must be finite (or -inf where that is the answer), gradients
finite and never NaN, and NumPy must not warn: an overflow means an exp of a large number, an invalid
value means inf - inf or 0 * inf somewhere. (Underflow to 0 is expected and allowed.)"""
import warnings

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F

DTYPES = [np.float32, np.float64]
BIG = 1e4


@pytest.fixture(autouse=True)
def numpy_warnings_are_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):  # underflow to 0 is fine
            yield


def _exact_lse(x, axis):
    """log-sum-exp in float64 through Python's math on the shifted values (an independent formula)."""
    x = np.asarray(x, dtype=np.float64)
    m = x.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))).squeeze(axis)


@pytest.mark.parametrize("dtype", DTYPES)
def test_logsumexp_at_plus_minus_1e4(dtype):
    data = np.array([[BIG, BIG - 1, -BIG], [-BIG, -BIG + 2, -BIG], [BIG, -BIG, 0.0]])
    x = mg.tensor(data, dtype=dtype, requires_grad=True)
    out = F.logsumexp(x, 1)
    assert out.dtype == dtype and np.all(np.isfinite(out.numpy()))
    np.testing.assert_allclose(out.numpy(), _exact_lse(data.astype(dtype), 1), rtol=1e-6)
    out.backward(gradient=np.array([1.0, -2.0, 0.5]))
    g = x.grad.numpy()
    assert np.all(np.isfinite(g))
    p = np.exp(data - _exact_lse(data, 1)[:, None])   # softmax, the gradient of logsumexp
    np.testing.assert_allclose(g, p * np.array([1.0, -2.0, 0.5])[:, None], atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("keepdim", [False, True])
def test_logsumexp_of_an_all_minus_inf_row_is_minus_inf_with_zero_gradient(dtype, keepdim):
    data = np.array([[-np.inf, -np.inf, -np.inf], [0.0, 1.0, 2.0], [-np.inf, 0.0, -np.inf]])
    x = mg.tensor(data, dtype=dtype, requires_grad=True)
    out = F.logsumexp(x, 1, keepdim=keepdim)
    values = out.numpy().reshape(-1)
    assert values[0] == -np.inf
    np.testing.assert_allclose(values[1:], [_exact_lse([0.0, 1.0, 2.0], 0), 0.0], rtol=1e-6)
    out.sum().backward()
    g = x.grad.numpy()
    assert not np.any(np.isnan(g))
    np.testing.assert_array_equal(g[0], 0.0)
    np.testing.assert_array_equal(g[2], [0.0, 1.0, 0.0])
    np.testing.assert_allclose(g[1].sum(), 1.0, rtol=1e-6)


def test_logsumexp_over_several_dims_with_minus_inf_blocks():
    data = np.full((2, 2, 3), -np.inf)
    data[1, 0, 2] = 5.0
    x = mg.tensor(data, requires_grad=True)
    out = F.logsumexp(x, (1, 2))
    np.testing.assert_array_equal(out.numpy(), [-np.inf, 5.0])
    out.sum().backward()
    expected = np.zeros((2, 2, 3))
    expected[1, 0, 2] = 1.0
    np.testing.assert_array_equal(x.grad.numpy(), expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_and_log_softmax_at_plus_minus_1e4(dtype):
    data = np.array([[BIG, 0.0, -BIG], [BIG, BIG, -BIG]])
    x = mg.tensor(data, dtype=dtype, requires_grad=True)
    p = F.softmax(x, 1)
    np.testing.assert_allclose(p.numpy(), [[1, 0, 0], [0.5, 0.5, 0]], atol=1e-7)
    lp = F.log_softmax(x, 1)
    # finite, and exact: log(1) = 0, the others lose exactly their distance to the max
    np.testing.assert_allclose(lp.numpy(), [[0, -BIG, -2 * BIG], [-np.log(2), -np.log(2), -2 * BIG - np.log(2)]],
                               rtol=1e-6)
    (p * mg.tensor(np.array([[1.0, 2, 3], [3, 2, 1]]), dtype=dtype)).sum().backward()
    assert np.all(np.isfinite(x.grad.numpy()))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_softplus_tanh_at_plus_minus_1e4(dtype):
    x = mg.tensor([-BIG, -50.0, 0.0, 50.0, BIG], dtype=dtype, requires_grad=True)
    np.testing.assert_allclose(F.sigmoid(x).numpy(), [0, 0, 0.5, 1, 1], atol=1e-7)
    np.testing.assert_allclose(F.softplus(x).numpy(), [0, 0, np.log(2), 50, BIG], rtol=1e-6, atol=1e-7)
    (F.sigmoid(x) + F.softplus(x) + F.tanh(x)).sum().backward()
    g = x.grad.numpy()
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, [0, 0, 0.25 + 0.5 + 1, 1, 1], atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_bce_with_logits_at_plus_minus_1e4(dtype, reduction):
    logits = mg.tensor([BIG, BIG, -BIG, -BIG, BIG, -BIG], dtype=dtype, requires_grad=True)
    target = mg.tensor([1.0, 0.0, 0.0, 1.0, 0.9, 0.9], dtype=dtype)
    expected = np.array([0.0, BIG, 0.0, BIG, 0.1 * BIG, 0.9 * BIG])   # max(x,0) - x t (+ log1p(e^-1e4) = 0)
    out = F.binary_cross_entropy_with_logits(logits, target, reduction=reduction)
    reduce = {"none": lambda v: v, "sum": np.sum, "mean": np.mean}[reduction]
    np.testing.assert_allclose(out.numpy(), reduce(expected), rtol=1e-5)
    out.backward(gradient=np.ones(out.shape))
    g = logits.grad.numpy()
    scale = 1 / 6 if reduction == "mean" else 1.0
    np.testing.assert_allclose(g, scale * np.array([0.0, 1.0, 0.0, -1.0, 0.1, -0.9]), rtol=1e-5, atol=1e-7)


def test_bce_with_a_number_as_target_at_extremes():
    logits = mg.tensor([BIG, -BIG], requires_grad=True)
    out = F.binary_cross_entropy_with_logits(logits, 0.0, reduction="sum")
    assert out.item() == pytest.approx(BIG)
    out.backward()
    np.testing.assert_allclose(logits.grad.numpy(), [1.0, 0.0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1e4, 1e30])
def test_cross_entropy_with_extreme_logits(dtype, scale):
    data = np.array([[1.0, 0.0, -1.0], [-1.0, 1.0, 0.0], [1.0, 1.0, -1.0]]) * scale
    target = np.array([0, 0, 1])
    logits = mg.tensor(data, dtype=dtype, requires_grad=True)
    losses = F.cross_entropy(logits, target, reduction="none")
    # exact: the correct class has the max (loss 0), or loses by 2 * scale, or ties another (log 2)
    np.testing.assert_allclose(losses.numpy(), [0.0, 2 * scale, np.log(2)], rtol=1e-6)
    mean = F.cross_entropy(logits, target)
    np.testing.assert_allclose(mean.numpy(), (2 * scale + np.log(2)) / 3, rtol=1e-6)
    mean.backward()
    g = logits.grad.numpy()
    assert np.all(np.isfinite(g))
    expected = (np.array([[1, 0, 0], [0, 1, 0], [0.5, 0.5, 0]]) - np.eye(3)[target]) / 3   # softmax - onehot
    np.testing.assert_allclose(g, expected, atol=1e-7)


def test_cross_entropy_with_every_example_ignored_is_zero_not_nan():
    logits = mg.tensor(np.zeros((2, 3)), requires_grad=True)
    out = F.cross_entropy(logits, np.array([-100, -100]))
    assert out.item() == 0.0
    out.backward()
    np.testing.assert_array_equal(logits.grad.numpy(), 0.0)
