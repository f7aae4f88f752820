"""minigrad.ops: the cases that mutation testing found unchecked (docs/testing.md).

Each test states a property of an op, against NumPy formulas written here in float64 or through
``gradcheck``: an operand gets its gradient when the other operand needs none (matmul, pow, transposed
convolution), an integer tensor raised to a scalar power follows NumPy, empty means keep their reduced
dims and their device, a row of -inf is handled without warnings, cross-entropy's weighted mean divides by
a total weight below one and a device target equal to the class count poisons the loss, batch norm's
momentum may be 0 or 1, its evaluation mode works with frozen affine parameters and with no channels, its
reference kernels run on the device, and the argument checks of linear and the convolutions refuse what
they should, naming the op and the argument (on the CuPy stand-in of ``fake_cupy.py`` where a device is
needed).
"""
import warnings

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import kernels
from minigrad.testing import gradcheck

from fake_cupy import fake_cuda  # noqa: F401  (fixture)


def _rng(seed):
    return np.random.default_rng(seed)


# ------------------------------------------------------------------------------------------- elementwise
def test_an_integer_tensor_to_a_scalar_power_follows_numpy():
    x = np.array([1, 4, 9, 2], dtype=np.int64)
    for p in (0.5, 2, -1, 3.0):
        y = mg.tensor(x) ** p
        assert y.dtype == np.float64, p                     # np.power(int64, float) is float64
        np.testing.assert_allclose(y.numpy(), x.astype(np.float64) ** float(p), rtol=1e-15)


def test_pow_gives_the_base_its_gradient_when_the_exponent_needs_none():
    rng = _rng(1)
    a, b = rng.uniform(0.5, 2.0, (3, 4)), rng.uniform(-1.5, 2.5, (3, 4))
    gradcheck(lambda a, b: a ** b, [a, b], wrt=[0])
    # a negative base with whole exponents: d(a**b)/da = b a**(b-1), and log(a) (the exponent's gradient,
    # not asked for) is never taken, so NumPy does not warn about it
    base = mg.tensor(np.array([-2.0, -0.5, 3.0]), requires_grad=True)
    exponent = mg.tensor(np.array([2.0, 3.0, 2.0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (base ** exponent).backward(mg.tensor(np.array([1.0, -2.0, 0.5])))
    np.testing.assert_allclose(base.grad.numpy(), [1.0 * 2 * -2.0, -2.0 * 3 * 0.25, 0.5 * 2 * 3.0], rtol=1e-15)


# ---------------------------------------------------------------------------------------------- reduce
def test_the_mean_over_an_empty_dim_is_nan_and_keepdim_keeps_the_reduced_dims():
    cases = [((0, 3), (0,), (3,), (1, 3)), ((2, 0, 3), (1,), (2, 3), (2, 1, 3)),
             ((2, 0, 3), (0, 1), (3,), (1, 1, 3))]
    for shape, dim, reduced, kept in cases:
        x = mg.zeros(*shape, dtype=np.float32)
        for keepdim, want in ((False, reduced), (True, kept)):
            m = x.mean(dim=dim, keepdim=keepdim)
            assert (m.shape, m.dtype) == (want, np.float32), (shape, dim, keepdim)
            assert np.isnan(m.numpy()).all()


def test_the_mean_over_an_empty_dim_stays_on_the_device(fake_cuda):
    m = mg.zeros(0, 3, device="cuda").mean(dim=0)
    assert m.device == "cuda" and m.shape == (3,)
    assert np.isnan(m.numpy()).all()


def test_a_row_of_minus_infinity_gives_no_warning():
    z = np.array([[-np.inf, -np.inf, -np.inf], [0.5, -1.0, 2.0]])
    rest = z[1] - np.log(np.exp(z[1]).sum())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        log_p = mg.tensor(z).log_softmax(1).numpy()
        p = mg.tensor(z).softmax(1).numpy()
        lse = mg.tensor(z).logsumexp(1).numpy()
    assert np.isnan(log_p[0]).all()                         # -inf - (-inf), as in PyTorch
    np.testing.assert_allclose(log_p[1], rest, rtol=1e-14)
    np.testing.assert_array_equal(p[0], 0.0)
    np.testing.assert_allclose(p[1], np.exp(rest), rtol=1e-14)
    assert lse[0] == -np.inf and lse[1] == pytest.approx(np.log(np.exp(z[1]).sum()), rel=1e-14)


# ---------------------------------------------------------------------------------------------- matmul
def test_matmul_gives_each_operand_its_gradient_when_the_other_needs_none():
    rng = _rng(2)
    for a_shape, b_shape in (((3, 4), (4, 2)), ((2, 3, 4), (4, 5)), ((4,), (4, 3)), ((3, 4), (4,))):
        a, b = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
        gradcheck(lambda a, b: a @ b, [a, b], wrt=[0])
        gradcheck(lambda a, b: a @ b, [a, b], wrt=[1])


def test_linear_refuses_a_weight_that_is_not_a_matrix_and_a_0d_input():
    x = mg.tensor(np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"linear: input of shape \(2, 4\) does not fit weight of shape \(3, 4, 5\)"):
        F.linear(x, mg.tensor(np.ones((3, 4, 5))))
    with pytest.raises(ValueError, match=r"linear: input of shape \(\) does not fit weight of shape \(3, 1\)"):
        F.linear(mg.tensor(np.array(1.0)), mg.tensor(np.ones((3, 1))))


# ------------------------------------------------------------------------------------------------ loss
def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_cross_entropy_mean_divides_by_a_total_weight_below_one():
    rng = _rng(3)
    z, t = rng.standard_normal((4, 3)), np.array([2, 0, 1, 1])
    w = np.array([0.25, 0.1, 0.0, 0.15])                   # sum 0.5
    logits = mg.tensor(z, requires_grad=True)
    loss = F.cross_entropy(logits, t, sample_weight=w)
    each = -np.log(_softmax(z)[np.arange(4), t])
    assert loss.item() == pytest.approx((w * each).sum() / 0.5, rel=1e-13)
    loss.backward(mg.tensor(np.array(-1.5)))
    want = _softmax(z) - np.eye(3)[t]
    np.testing.assert_allclose(logits.grad.numpy(), -1.5 * w[:, None] * want / 0.5, rtol=1e-13, atol=1e-16)


def test_a_device_target_equal_to_the_class_count_makes_its_loss_nan(fake_cuda):
    z = mg.tensor(_rng(4).standard_normal((3, 3)), device="cuda", requires_grad=True)
    target = mg.tensor(np.array([0, 3, 2]), device="cuda")          # 3 == C is out of range
    losses = F.cross_entropy(z, target, reduction="none")
    losses.backward(mg.ones_like(losses))
    values, grad = losses.numpy(), z.grad.numpy()
    assert np.isnan(values[1]) and np.isfinite(values[[0, 2]]).all()
    assert np.isnan(grad[1]).all() and np.isfinite(grad[[0, 2]]).all()


# ------------------------------------------------------------------------------------------------ norm
def _batch(seed, shape=(5, 3, 2, 2)):
    rng = _rng(seed)
    return rng.normal(1.0, 2.0, shape), rng.normal(0.0, 1.0, shape[1]), rng.uniform(0.5, 2.0, shape[1])


def test_batch_norm_momentum_0_keeps_and_1_replaces_the_running_statistics():
    x, mean0, var0 = _batch(5)
    axes = (0, 2, 3)
    for momentum, want_mean, want_var in ((0.0, mean0, var0),
                                          (1.0, x.mean(axis=axes), x.var(axis=axes, ddof=1))):
        rm, rv = mg.tensor(mean0.copy()), mg.tensor(var0.copy())
        y = F.batch_norm(mg.tensor(x), rm, rv, training=True, momentum=momentum)
        np.testing.assert_allclose(rm.numpy(), want_mean, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(rv.numpy(), want_var, rtol=1e-13)
        xhat = (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + 1e-5)
        np.testing.assert_allclose(y.numpy(), xhat, rtol=1e-12, atol=1e-12)


def test_batch_norm_in_evaluation_mode_with_frozen_weight_and_bias_gives_the_input_its_gradient():
    x, rmean, rvar = _batch(6)
    rng = _rng(7)
    gamma, beta, g = rng.normal(size=3), rng.normal(size=3), rng.normal(size=x.shape)
    scale = (gamma / np.sqrt(rvar + 1e-5))[None, :, None, None]
    for weight, bias in ((gamma, beta), (None, beta), (gamma, None)):
        xt = mg.tensor(x, requires_grad=True)
        y = F.batch_norm(xt, mg.tensor(rmean), mg.tensor(rvar),
                         None if weight is None else mg.tensor(weight), None if bias is None else mg.tensor(bias))
        y.backward(mg.tensor(g))
        s = scale if weight is not None else (1 / np.sqrt(rvar + 1e-5))[None, :, None, None]
        b = 0.0 if bias is None else beta[None, :, None, None]
        np.testing.assert_allclose(y.numpy(), (x - rmean[None, :, None, None]) * s + b, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(xt.grad.numpy(), g * s, rtol=1e-12)


def test_batch_norm_of_an_input_without_channels():
    x = mg.tensor(np.zeros((4, 0, 3)), requires_grad=True)
    running = mg.zeros(0, dtype=np.float64), mg.ones(0, dtype=np.float64)
    y = F.batch_norm(x, *running, training=False)
    assert y.shape == (4, 0, 3) and y.dtype == np.float64
    y.backward(mg.zeros_like(y))
    assert x.grad.shape == (4, 0, 3)
    for training, stats in ((True, running), (False, (None, None))):
        with pytest.raises(ValueError, match=r"more than 1 value per channel .* \(0 value\(s\) per channel\)"):
            F.batch_norm(x, *stats, training=training)


def _batch_norm_run(device, x, running, weight, bias, g, training):
    xt = mg.tensor(x, device=device, requires_grad=True)
    params = [None if p is None else mg.tensor(p, device=device, requires_grad=True) for p in (weight, bias)]
    stats = [None if r is None else mg.tensor(r.copy(), device=device) for r in running]
    y = F.batch_norm(xt, *stats, *params, training=training, momentum=0.3)
    y.backward(mg.tensor(g, device=device))
    return [y.numpy(), xt.grad.numpy()] + [p.grad.numpy() for p in params if p is not None] + \
        [s.numpy() for s in stats if s is not None]


def test_batch_norm_on_the_device_with_the_reference_kernels_matches_the_cpu(fake_cuda):
    x, rmean, rvar = _batch(8)
    rng = _rng(9)
    gamma, beta, g = rng.normal(size=3), rng.normal(size=3), rng.normal(size=x.shape)
    cases = [((rmean, rvar), gamma, beta, True), ((rmean, rvar), None, None, True),
             ((rmean, rvar), gamma, None, False), ((None, None), None, beta, False)]
    for running, weight, bias, training in cases:
        want = _batch_norm_run("cpu", x, running, weight, bias, g, training)
        with kernels.use("reference"):
            got = _batch_norm_run("cuda", x, running, weight, bias, g, training)
        assert len(got) == len(want)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------------ conv
def test_conv_transpose2d_gives_the_input_its_gradient_when_the_weight_needs_none():
    rng = _rng(10)
    x, w = rng.standard_normal((2, 3, 3, 3)), rng.standard_normal((3, 2, 3, 3))
    gradcheck(lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1), [x, w], wrt=[0])


def test_conv_transpose2d_refuses_an_output_padding_not_smaller_than_the_stride():
    x, w = mg.tensor(np.ones((1, 2, 3, 3))), mg.tensor(np.ones((2, 1, 2, 2)))
    for stride, output_padding in ((1, (1, 0)), (1, (0, 1)), ((2, 3), (2, 0)), (2, 2)):
        with pytest.raises(ValueError, match=r"conv_transpose2d: output_padding \(\d, \d\) must be smaller than "
                                             r"stride \(\d, \d\)"):
            F.conv_transpose2d(x, w, stride=stride, output_padding=output_padding)
    assert F.conv_transpose2d(x, w, stride=(2, 3), output_padding=(1, 2)).shape == (1, 1, 7, 10)


def test_the_convolutions_refuse_pairs_that_are_not_two_ints_naming_the_op_and_the_argument():
    x, w = mg.tensor(np.ones((1, 2, 4, 4))), mg.tensor(np.ones((2, 2, 2, 2)))
    calls = {
        ("conv2d", "stride", 1): lambda v: F.conv2d(x, w, stride=v),
        ("conv2d", "padding", 0): lambda v: F.conv2d(x, w, padding=v),
        ("conv_transpose2d", "stride", 1): lambda v: F.conv_transpose2d(x, w, stride=v),
        ("conv_transpose2d", "padding", 0): lambda v: F.conv_transpose2d(x, w, padding=v),
        ("conv_transpose2d", "output_padding", 0): lambda v: F.conv_transpose2d(x, w, stride=3, output_padding=v),
    }
    for (op, arg, minimum), call in calls.items():
        for bad in ((1.5, 1), (True, 1), (1, 2.0), 1.0, (1, 1, 1)):
            with pytest.raises(TypeError, match=rf"^{op}: {arg} must be an int or a pair of ints, got"):
                call(bad)
        with pytest.raises(ValueError, match=rf"^{op}: {arg} must be >= {minimum}, got \({minimum - 1}, {minimum}\)"):
            call((minimum - 1, minimum))
