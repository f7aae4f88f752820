"""The gradient checker itself: it passes correct backward passes, and - the negative controls - it fails
deliberately broken ones, with a report that says where. It also shows why the upstream gradient must be
random: a softmax backward missing a factor agrees with the numbers under an all-ones upstream gradient.
"""
import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import Function
from minigrad.ops.elementwise import Div, Mul
from minigrad.ops.reduce import Softmax
from minigrad.testing import GradcheckError, gradcheck, numerical_vjp

rng = np.random.default_rng(1234)


# ----------------------------------------------------------------------------- broken ops


class SoftmaxMissingFactor(Softmax):
    """Softmax whose backward drops the leading factor y: returns g - sum(g y) instead of
    y * (g - sum(g y)). For g = 1 both are 0 (softmax sums to 1), so only a random g exposes it."""

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_arrays
        return grad - (grad * y).sum(axis=ctx.dim, keepdims=True)


class MulWrongFactor(Mul):
    """a * b whose backward doubles the gradient of a."""

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_arrays
        return 2 * grad * b, grad * a


class DivWrongSign(Div):
    """a / b with the sign of d/db flipped."""

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_arrays
        return grad / b, grad * a / (b * b)


class MulForgetsB(Mul):
    """a * b whose backward gives b no gradient at all."""

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_arrays
        return grad * b, None


def _broken_softmax(x):
    return SoftmaxMissingFactor.apply(x, dim=1)


# ----------------------------------------------------------------------------- negative controls


def test_softmax_missing_factor_fails_gradcheck():
    x = rng.standard_normal((3, 4))
    with pytest.raises(GradcheckError) as info:
        gradcheck(_broken_softmax, [x])
    report = info.value.report
    assert not report.ok and not report.inputs[0].ok
    assert report.inputs[0].mode == "full"


def test_all_ones_upstream_gradient_would_not_catch_the_softmax_bug():
    x = rng.standard_normal((3, 4))
    ones = np.ones((3, 4))
    # What an all-ones upstream gradient would compare: the numbers ...
    (numeric,) = numerical_vjp(_broken_softmax, [x], ones)
    # ... and the broken backward
    t = mg.tensor(x, requires_grad=True)
    _broken_softmax(t).backward(gradient=ones)
    np.testing.assert_allclose(t.grad.numpy(), numeric, atol=1e-8)  # they agree: the bug goes unseen
    np.testing.assert_allclose(numeric, 0.0, atol=1e-8)              # both "zero", the true answer for g = 1
    # while the same comparison under a random upstream gradient disagrees
    g = rng.standard_normal((3, 4))
    (numeric,) = numerical_vjp(_broken_softmax, [x], g)
    t = mg.tensor(x, requires_grad=True)
    _broken_softmax(t).backward(gradient=g)
    assert np.abs(t.grad.numpy() - numeric).max() > 1e-2


def test_correct_softmax_passes():
    report = gradcheck(lambda x: F.softmax(x, 1), [rng.standard_normal((3, 4))])
    assert report.ok and report.inputs[0].checked == 12


def test_mul_with_wrong_factor_fails_and_names_the_input():
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((3,))
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda a, b: MulWrongFactor.apply(a, b), [a, b], names=("a", "b"))
    report = info.value.report
    assert [c.ok for c in report.inputs] == [False, True]   # only a's gradient is wrong
    worst = report.inputs[0]
    # the analytic value is twice the numeric one at the reported element
    assert worst.analytic == pytest.approx(2 * worst.numeric, rel=1e-6)
    message = str(info.value)
    for part in ("input 0 (a)", "shape (2, 3)", f"element {worst.worst}", "analytic", "numeric", "abs err",
                 "rel err"):
        assert part in message


def test_wrong_sign_fails_in_directions_mode_too():
    a = rng.standard_normal((20, 20))
    b = rng.uniform(0.5, 2.0, (20, 20))
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda a, b: DivWrongSign.apply(a, b), [a, b], directions=True)
    report = info.value.report
    assert all(c.mode == "directions" for c in report.inputs)
    assert [c.ok for c in report.inputs] == [True, False]
    assert "random direction" in str(info.value)


def test_missing_gradient_is_reported():
    a, b = rng.standard_normal(3), rng.standard_normal(3)
    with pytest.raises(GradcheckError, match="no gradient"):
        gradcheck(lambda a, b: MulForgetsB.apply(a, b), [a, b])


def test_a_wrong_gradient_of_one_element_is_found():
    class ScaleOneElement(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 3

        @staticmethod
        def backward(ctx, grad):
            g = grad * 3
            g[1, 2] *= 1.01   # 1% off at one position only
            return g

    with pytest.raises(GradcheckError) as info:
        gradcheck(ScaleOneElement.apply, [rng.standard_normal((3, 4))])
    assert info.value.report.inputs[0].worst == (1, 2)


# ----------------------------------------------------------------------------- behaviour


def test_full_jacobian_for_small_inputs_directions_for_large():
    small = gradcheck(lambda x: x.tanh(), [rng.standard_normal((4, 4))])
    assert small.inputs[0].mode == "full" and small.evaluations == 2 * 16
    large = gradcheck(lambda x: x.tanh(), [rng.standard_normal((30, 30))], n_directions=3)
    assert large.inputs[0].mode == "directions" and large.evaluations == 2 * 3
    forced = gradcheck(lambda x: x.tanh(), [rng.standard_normal((30, 30))], directions=False)
    assert forced.inputs[0].mode == "full" and forced.inputs[0].checked == 900
    limit = gradcheck(lambda x: x.tanh(), [rng.standard_normal((4, 4))], max_full_jacobian=10)
    assert limit.inputs[0].mode == "directions"


def test_inputs_are_promoted_to_float64_and_integers_pass_through():
    seen = {}

    def fn(x, idx):
        seen["dtypes"] = (x.dtype, idx.dtype)
        return x[idx]

    gradcheck(fn, [rng.standard_normal(5).astype(np.float32), np.array([0, 0, 3])])
    assert seen["dtypes"] == (np.float64, np.int64)


def test_upstream_gradient_is_random_and_seeded():
    grads = []

    class Probe(Function):
        @staticmethod
        def forward(ctx, x):
            return x.copy()

        @staticmethod
        def backward(ctx, grad):
            grads.append(grad.copy())
            return grad

    x = rng.standard_normal((2, 3))
    for seed in (0, 0, 1):
        gradcheck(Probe.apply, [x], seed=seed)
    assert not np.allclose(grads[0], 1.0)
    assert np.std(grads[0]) > 0.1
    np.testing.assert_array_equal(grads[0], grads[1])
    assert not np.array_equal(grads[0], grads[2])


def test_wrt_limits_the_inputs_checked():
    a, b = rng.standard_normal(3), rng.standard_normal(3)
    report = gradcheck(lambda a, b: MulWrongFactor.apply(a, b), [a, b], wrt=[1])
    assert [c.index for c in report.inputs] == [1]


def test_random_ops_see_the_same_numbers_at_every_evaluation():
    """fn draws from minigrad's generator (as dropout does): the checker resets it before each call, and
    restores the caller's generator state afterwards."""
    mg.manual_seed(7)
    expected_next = mg.rand(3).numpy()
    mg.manual_seed(7)
    gradcheck(lambda x: x * mg.rand(*x.shape, dtype=np.float64), [rng.standard_normal((3, 3))])
    np.testing.assert_array_equal(mg.rand(3).numpy(), expected_next)


def test_bad_uses_are_clear_errors():
    x = rng.standard_normal(3)
    with pytest.raises(TypeError, match="must return one Tensor"):
        gradcheck(lambda t: t.numpy(), [x])
    with pytest.raises(ValueError, match="wrt names input 1"):
        gradcheck(lambda t, i: t[i], [x, np.array([0])], wrt=[1])
    with pytest.raises(ValueError, match="float32"):
        gradcheck(lambda t: t.float(), [x])
    with pytest.raises(ValueError, match="does not depend"):
        gradcheck(lambda t: t.detach() * 2, [x])
    with pytest.raises(ValueError, match="directions"):
        gradcheck(lambda t: t, [x], directions="sometimes")


def test_report_reads_well():
    report = gradcheck(lambda a, b: a * b, [rng.standard_normal(2), rng.standard_normal(2)], names=("a", "b"))
    text = str(report)
    assert text.startswith("gradcheck passed") and "input 0 (a)" in text and "input 1 (b)" in text
