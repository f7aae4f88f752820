"""Dropout: F.dropout, the mask-taking op behind it, and nn.Dropout."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
import minigrad.functional as F
from minigrad import nn
from minigrad.ops.dropout import Dropout as DropoutOp
from minigrad.ops.dropout import dropout_mask
from minigrad.testing.gradcheck import GradcheckError, gradcheck


def _binomial_bound(n, p, sigmas=5.0):
    """A band of `sigmas` standard deviations around the expected count of a Binomial(n, p)."""
    return sigmas * math.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_fraction_zeroed_is_p_and_kept_values_are_scaled(p):
    mg.manual_seed(0)
    n = 200_000
    x = mg.tensor(np.random.default_rng(0).uniform(1, 2, n).astype(np.float32))  # never 0 itself
    y = F.dropout(x, p=p).numpy()
    zeros = int((y == 0).sum())
    assert abs(zeros - n * p) < _binomial_bound(n, p)
    kept = y != 0
    np.testing.assert_allclose(y[kept], x.numpy()[kept] / np.float32(1 - p), rtol=1e-6)


@pytest.mark.parametrize("p", [0.2, 0.5, 0.9])
def test_expectation_is_preserved(p):
    mg.manual_seed(1)
    n = 200_000
    y = F.dropout(mg.ones(n, dtype=np.float64), p=p).numpy()
    # mean of n values that are 1/(1-p) with probability 1-p: expectation 1, std sqrt(p / ((1-p) n))
    assert abs(y.mean() - 1.0) < 5 * math.sqrt(p / ((1 - p) * n))


def test_identity_in_eval_mode_and_for_p_zero():
    x = mg.randn(3, 4, requires_grad=True)
    assert F.dropout(x, p=0.5, training=False) is x
    assert F.dropout(x, p=0.0) is x
    d = nn.Dropout(0.5)
    d.eval()
    assert d(x) is x


def test_p_one_gives_zeros_and_zero_gradient():
    x = mg.randn(5, 3, requires_grad=True)
    y = F.dropout(x, p=1.0)
    assert np.all(y.numpy() == 0) and np.all(np.isfinite(y.numpy()))
    y.backward(mg.randn(5, 3))
    assert np.all(x.grad.numpy() == 0)


def test_same_seed_same_mask_and_a_new_mask_each_call():
    x = mg.ones(64, 32)
    mg.manual_seed(123)
    a1, a2 = F.dropout(x, 0.5).numpy(), F.dropout(x, 0.5).numpy()
    mg.manual_seed(123)
    b1, b2 = F.dropout(x, 0.5).numpy(), F.dropout(x, 0.5).numpy()
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)
    assert not np.array_equal(a1, a2)
    mg.manual_seed(124)
    assert not np.array_equal(F.dropout(x, 0.5).numpy(), a1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_multiplies_by_the_same_mask(dtype):
    mg.manual_seed(2)
    rng = np.random.default_rng(2)
    x = mg.tensor(rng.uniform(1, 2, (6, 7)).astype(dtype), requires_grad=True)
    g = rng.standard_normal((6, 7)).astype(dtype)
    y = F.dropout(x, p=0.3)
    y.backward(mg.tensor(g))
    assert y.dtype == dtype and x.grad.dtype == dtype
    mask = y.numpy() / x.numpy()  # 0 or 1/(1-p), exactly the mask the forward used
    assert np.all((mask == 0) | np.isclose(mask, 1 / 0.7, rtol=1e-6))
    np.testing.assert_allclose(x.grad.numpy(), g * mask, rtol=1e-6)


@given(st.integers(0, 2**31 - 1), st.sampled_from([0.0, 0.25, 0.5, 0.9]),
       st.lists(st.integers(1, 4), min_size=1, max_size=3))
def test_dropout_gradcheck_with_a_fixed_mask(seed, p, shape):
    """The op takes the mask as an option, so the check sees a fixed function of x."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    keep = rng.uniform(size=shape) >= p
    mask = np.where(keep, 1.0 / (1.0 - p), 0.0)
    gradcheck(lambda x: DropoutOp.apply(x, mask=mask), [x])


def test_f_dropout_gradcheck_uses_one_mask_per_check():
    """gradcheck resets minigrad's generator before every forward call, so F.dropout draws the same mask
    for the analytic and the numeric side."""
    x = np.random.default_rng(3).standard_normal((4, 5))
    gradcheck(lambda x: F.dropout(x, p=0.4), [x])


def test_gradcheck_catches_a_dropout_backward_that_forgets_the_mask(monkeypatch):
    """Negative control: a backward that passes the gradient through unmasked must fail."""
    monkeypatch.setattr(DropoutOp, "backward", staticmethod(lambda ctx, grad: grad))
    x = np.random.default_rng(4).standard_normal((3, 4))
    mask = np.where(np.arange(12).reshape(3, 4) % 3 == 0, 0.0, 1.5)
    with pytest.raises(GradcheckError):
        gradcheck(lambda x: DropoutOp.apply(x, mask=mask), [x])


def test_mask_values_and_dtype():
    mg.manual_seed(5)
    m = dropout_mask((1000,), 0.25, np.float32, "cpu")
    assert m.dtype == np.float32 and set(np.unique(m)) == {np.float32(0), np.float32(1 / 0.75)}
    assert np.all(dropout_mask((10,), 1.0, np.float64, "cpu") == 0)


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan"), "0.5", None, True])
def test_p_out_of_range_is_an_error(p):
    with pytest.raises(ValueError, match="dropout: dropout probability has to be between 0 and 1"):
        F.dropout(mg.ones(3), p=p)
    with pytest.raises(ValueError, match="Dropout: dropout probability has to be between 0 and 1"):
        nn.Dropout(p)


def test_other_bad_inputs():
    with pytest.raises(TypeError, match="dropout: input must be a Tensor"):
        F.dropout(np.ones(3), 0.5)
    with pytest.raises(TypeError, match="dropout: input must be floating point"):
        F.dropout(mg.tensor([1, 2, 3]), 0.5)
    with pytest.raises(ValueError, match=r"dropout: the mask must have the input's shape \(2, 3\), got \(3,\)"):
        DropoutOp.apply(mg.ones(2, 3), mask=np.ones(3, dtype=np.float32))


def test_dropout_module_modes():
    mg.manual_seed(6)
    d = nn.Dropout(0.5)
    assert repr(d) == "Dropout(p=0.5)" and list(d.parameters()) == []
    x = mg.ones(100, 100)
    y = d(x).numpy()
    assert 0 < (y == 0).mean() < 1 and set(np.unique(y)) == {0.0, 2.0}
    d.eval()
    np.testing.assert_array_equal(d(x).numpy(), x.numpy())
    d.train()
    assert (d(x).numpy() == 0).any()


@pytest.mark.cuda
def test_dropout_on_cuda():
    mg.manual_seed(7)
    x = mg.ones(256, 256, device="cuda", requires_grad=True)
    y = F.dropout(x, 0.3)
    assert y.device == "cuda"
    y.sum().backward()
    mask = y.numpy()
    frac = (mask == 0).mean()
    assert abs(frac - 0.3) < 0.02
    np.testing.assert_allclose(x.grad.numpy(), mask, rtol=1e-6)
    mg.manual_seed(7)
    np.testing.assert_array_equal(F.dropout(mg.ones(256, 256, device="cuda"), 0.3).numpy(), mask)
