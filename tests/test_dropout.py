"""Dropout: F.dropout, the ops behind it (the CPU's PhiloxDropout, the GPU's mask-taking Dropout), the
Philox dropout kernels, and nn.Dropout."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
import minigrad.functional as F
from minigrad import kernels, nn
from minigrad import random as mg_random
from minigrad.kernels import dropout_philox_cpu, dropout_reference, noise_reference
from minigrad.ops.dropout import Dropout as DropoutOp
from minigrad.ops.dropout import PhiloxDropout, keep_scale, keep_threshold
from minigrad.testing.gradcheck import GradcheckError, gradcheck

DTYPES = [np.float32, np.float64]
PS = [0.0, 0.1, 0.5, 0.9, 1.0]


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


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan"), "0.5", None, True])
def test_p_out_of_range_is_an_error(p):
    with pytest.raises(ValueError, match=r"dropout: the dropout probability p must be between 0 and 1, but got "
                                         r".* \(for an input of shape \(3, 2\)\)"):
        F.dropout(mg.ones(3, 2), p=p)
    with pytest.raises(ValueError, match=r"philox_dropout: the dropout probability p must be between 0 and 1, "
                                         r"but got .* \(for an input of shape \(4,\)\)"):
        PhiloxDropout.apply(mg.ones(4), p=p)
    with pytest.raises(ValueError, match="Dropout: the dropout probability p must be between 0 and 1"):
        nn.Dropout(p)


def test_other_bad_inputs():
    with pytest.raises(TypeError, match="dropout: input must be a Tensor"):
        F.dropout(np.ones(3), 0.5)
    with pytest.raises(TypeError, match=r"dropout: input must be floating point, got int64 of shape \(3,\)"):
        F.dropout(mg.tensor([1, 2, 3]), 0.5)
    with pytest.raises(TypeError, match=r"philox_dropout: input must be floating point, got int64 of shape"):
        PhiloxDropout.apply(mg.tensor([1, 2, 3]), p=0.5)
    for name, bad in (("key", -1), ("key", 2**64), ("counter", 1.5), ("counter", True)):
        with pytest.raises(ValueError, match=f"philox_dropout: {name} must be an integer in \\[0, 2\\*\\*64\\)"):
            PhiloxDropout.apply(mg.ones(3), p=0.5, **{name: bad})
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


# ------------------------------------------------------------------------ the Philox stream (the CPU's)
def _stream(p, key=0, counter=0):
    return keep_threshold(p), keep_scale(p), key, counter


def test_threshold_and_scale_follow_the_documented_rule():
    assert keep_threshold(0.0) == 0 and keep_threshold(1.0) == 2**32
    assert keep_threshold(0.5) == 2**31 and keep_threshold(0.25) == 2**30
    assert keep_threshold(0.1) == round(0.1 * 2**32) == 429496730
    assert keep_threshold(2**-34) == 0 and keep_threshold(1 - 2**-40) == 2**32     # rounded, clamped
    assert keep_scale(0.2) == 1 / 0.8 and keep_scale(1.0) == 0.0


def test_value_i_takes_word_i_mod_4_of_block_counter_plus_i_div_4():
    key, counter, n, t = 0x0123456789ABCDEF, 2**64 - 3, 23, keep_threshold(0.5)
    block = np.arange(counter, counter + 6, dtype=object) % 2**64
    lo = np.array([b % 2**32 for b in block], dtype=np.uint64)
    hi = np.array([b // 2**32 for b in block], dtype=np.uint64)
    zero = np.zeros(6, np.uint64)
    words = noise_reference.philox4x32(lo, hi, zero, zero, key)
    expected = np.array([words[i % 4][i // 4] >= t for i in range(n)])
    np.testing.assert_array_equal(dropout_reference.keep_mask(n, t, key, counter), expected)
    assert dropout_reference.blocks(n) == dropout_philox_cpu.blocks(n) == 6


def _cases():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((3, 5, 700))
    return {"empty": np.zeros((0, 3)), "scalar": np.array(1.5), "one": np.ones(1), "odd": rng.standard_normal(7),
            "several chunks": rng.standard_normal(3 * dropout_philox_cpu.CHUNK + 5), "3-d": base,
            "transposed": base.transpose(2, 0, 1), "strided": base[:, ::2, 3::5]}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", PS)
def test_numba_kernel_equals_the_reference_bit_for_bit(dtype, p):
    for name, a in _cases().items():
        a = a.astype(dtype)
        for key, counter in ((0, 0), (2**64 - 1, 2**64 - 2), (987654321, 12345)):
            fast = dropout_philox_cpu.philox_dropout(a, *_stream(p, key, counter))
            ref = dropout_reference.philox_dropout(a, *_stream(p, key, counter))
            assert fast.dtype == ref.dtype == dtype and fast.shape == ref.shape == a.shape, name
            assert fast.flags.c_contiguous, name
            np.testing.assert_array_equal(fast, ref, err_msg=name)


def test_each_value_depends_on_its_position_alone():
    """Value i at counter c is value i - 4k at counter c + k: any split of the values into chunks gives the
    same decisions, which is what makes the threads' chunks independent of their number."""
    n, c = 3 * dropout_philox_cpu.CHUNK + 5, 1000
    x = np.ones(n, np.float32)
    whole = dropout_philox_cpu.philox_dropout(x, *_stream(0.5, 9, c))
    for k in (1, 3, dropout_philox_cpu.CHUNK // 4 + 1):
        np.testing.assert_array_equal(dropout_philox_cpu.philox_dropout(x[4 * k:], *_stream(0.5, 9, c + k)),
                                      whole[4 * k:])


def test_one_and_two_threads_give_the_same_result(tmp_path):
    code = ("import numpy as np, numba; from minigrad.kernels import dropout_philox_cpu as k; "
            "assert numba.get_num_threads() == {threads}; "
            "x = np.random.default_rng(1).standard_normal(100_003).astype(np.{dt}); "
            "np.save({path!r}, k.philox_dropout(x, 1288490189, 1 / 0.7, 77, 5))")
    for dt in ("float32", "float64"):
        results = []
        for threads in (1, 2):
            env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
            path = str(tmp_path / f"{dt}-{threads}.npy")
            subprocess.run([sys.executable, "-c", code.format(threads=threads, path=path, dt=dt)], env=env,
                           check=True, timeout=300)
            results.append(np.load(path))
        np.testing.assert_array_equal(results[0], results[1])
        x = np.random.default_rng(1).standard_normal(100_003).astype(dt)
        np.testing.assert_array_equal(results[0], dropout_reference.philox_dropout(x, 1288490189, 1 / 0.7, 77, 5))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_kept_fraction_is_within_binomial_bounds_of_the_exact_keep_probability(p):
    n = 1_000_000
    keep = dropout_reference.keep_mask(n, keep_threshold(p), 31337, 0)
    q = 1 - keep_threshold(p) / 2**32
    assert abs(int(keep.sum()) - n * q) < _binomial_bound(n, q)
    # and in each quarter of the blocks' words (a bias of one lane would show here)
    for lane in range(4):
        assert abs(int(keep[lane::4].sum()) - n / 4 * q) < _binomial_bound(n // 4, q)


def test_f_dropout_reserves_its_blocks_from_the_stream_and_leaves_pcg64_alone():
    mg.manual_seed(8)
    pcg64 = json.loads(mg.get_rng_state())["numpy"]
    key, start = mg_random.noise_stream(0)
    x = mg.tensor(np.random.default_rng(8).uniform(1, 2, (5, 7, 3)).astype(np.float32))
    y = F.dropout(x, 0.3)
    _, after = mg_random.noise_stream(0)
    assert after == start + dropout_reference.blocks(105)
    assert json.loads(mg.get_rng_state())["numpy"] == pcg64
    np.testing.assert_array_equal(y.numpy(), dropout_reference.philox_dropout(x.numpy(), *_stream(0.3, key, start)))
    z = F.dropout(x, 0.3)                                         # the next call: the next blocks
    np.testing.assert_array_equal(z.numpy(), dropout_reference.philox_dropout(x.numpy(), *_stream(0.3, key, after)))


def test_saving_and_restoring_the_state_repeats_dropout_bit_for_bit():
    mg.manual_seed(9)
    x = mg.randn(17, 33)
    F.dropout(x, 0.5)
    state = mg.get_rng_state()
    first = [F.dropout(x, p).numpy() for p in (0.5, 0.2, 0.5)]
    mg.set_rng_state(state)
    again = [F.dropout(x, p).numpy() for p in (0.5, 0.2, 0.5)]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], first[2])


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_applies_exactly_the_forwards_decisions(dtype):
    mg.manual_seed(10)
    rng = np.random.default_rng(10)
    x = mg.tensor(rng.uniform(1, 2, (9, 501)).astype(dtype), requires_grad=True)   # never 0: kept <=> y != 0
    g = rng.standard_normal((9, 501)).astype(dtype)
    y = F.dropout(x, 0.4)
    assert y.grad_fn is PhiloxDropout and y._node.saved_arrays == ()      # no mask kept for the backward
    y.backward(mg.tensor(g))
    kept = y.numpy() != 0
    scale = dtype(1 / 0.6)
    np.testing.assert_array_equal(y.numpy(), np.where(kept, x.numpy() * scale, 0))
    np.testing.assert_array_equal(x.grad.numpy(), np.where(kept, g * scale, 0))
    assert 0.5 < kept.mean() < 0.7


def test_backward_takes_a_broadcast_upstream_gradient():
    x = mg.tensor(np.random.default_rng(11).uniform(1, 2, (6, 50)), requires_grad=True)
    y = F.dropout(x, 0.5)
    y.mean().backward()                      # the upstream gradient reaches the op with zero strides
    np.testing.assert_array_equal(x.grad.numpy(), np.where(y.numpy() != 0, 2.0 / 300, 0.0))


def test_dropped_values_are_products_with_zero():
    """As with a stored mask: a NaN or infinity at a dropped place gives NaN, a kept one is scaled."""
    x = np.full(64, np.inf, np.float32)
    x[::3] = np.nan
    keep = dropout_reference.keep_mask(64, keep_threshold(0.5), 5, 6)
    with np.errstate(invalid="ignore"):
        y = dropout_philox_cpu.philox_dropout(x, *_stream(0.5, 5, 6))
        np.testing.assert_array_equal(y, dropout_reference.philox_dropout(x, *_stream(0.5, 5, 6)))
    assert np.all(np.isnan(y[~keep])) and np.all(np.isinf(y[keep & ~np.isnan(x)]))


def test_fast_and_reference_paths_of_f_dropout_agree():
    x = np.random.default_rng(12).standard_normal((4, 3, 20, 20)).astype(np.float32)
    results = []
    for path in ("fast", "reference"):
        with kernels.use(path):
            mg.manual_seed(12)
            t = mg.tensor(x, requires_grad=True)
            y = F.dropout(t, 0.5)
            (y * y).sum().backward()
            results.append((y.numpy(), t.grad.numpy()))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    assert kernels.for_arrays("dropout", x) is dropout_philox_cpu
    assert kernels.for_arrays("dropout", x.astype(np.float16)) is dropout_reference


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.sampled_from(PS),
       st.lists(st.integers(1, 4), min_size=1, max_size=3))
def test_philox_dropout_gradcheck(key, counter, p, shape):
    x = np.random.default_rng(key % 2**32).standard_normal(shape)
    gradcheck(lambda x: PhiloxDropout.apply(x, p=p, key=key, counter=counter), [x])


@pytest.mark.parametrize("wrong", ["other decisions", "no scale", "identity"])
def test_gradcheck_catches_a_philox_backward_that_is_wrong(monkeypatch, wrong):
    """Negative controls: a backward that regenerates the decisions one block further on, forgets the scale
    or passes the gradient through must fail the check (and the exact comparison)."""
    original = PhiloxDropout.backward

    def broken(ctx, grad):
        t, scale, key, counter = ctx.stream
        if wrong == "other decisions":
            ctx.stream = (t, scale, key, counter + 1)
        elif wrong == "no scale":
            ctx.stream = (t, 1.0, key, counter)
        else:
            return grad
        return original(ctx, grad)

    monkeypatch.setattr(PhiloxDropout, "backward", staticmethod(broken))
    x = np.random.default_rng(14).standard_normal((4, 6))
    with pytest.raises(GradcheckError):
        gradcheck(lambda x: PhiloxDropout.apply(x, p=0.5, key=3, counter=40), [x])
    with pytest.raises(AssertionError):
        test_backward_applies_exactly_the_forwards_decisions(np.float64)
