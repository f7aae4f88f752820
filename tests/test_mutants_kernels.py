"""The reference kernels the CPU computes with (``kernels/loss_reference.py``, ``elementwise_reference.py``,
``dropout_reference.py``) also run on CuPy arrays: they are the GPU's path under ``MINIGRAD_KERNELS=reference``
and wherever a CUDA kernel does not take the arrays. Their NumPy side is checked by the registry (through the
ops); these tests run each of them on the CuPy stand-in and compare with the NumPy result, and check the
GPU-only branch of the cross-entropy (out-of-range targets give NaN weights, there is no host read to raise
from). They were written for the survivors of the mutation run over these modules (``docs/testing.md``):
a function that picks NumPy instead of its input's array module, or takes the other device's branch, must fail.
"""
from __future__ import annotations

import numpy as np
import pytest

from fake_cupy import fake_cuda  # noqa: F401  (fixture)
from minigrad.kernels import dropout_reference, elementwise_reference, loss_reference
from minigrad.ops import dropout

RNG = np.random.default_rng(20261202)


def _both(fn, *arrays, **kwargs):
    """``fn`` on NumPy arrays and on the stand-in's device copies: (NumPy result, device result on the host),
    each result flattened to a list of arrays (tuples and None kept in place)."""
    import fake_cupy as cp

    def flat(out):
        if isinstance(out, tuple):
            return [v for o in out for v in flat(o)]
        return [None if out is None else (out.get() if hasattr(out, "get") else np.asarray(out))]

    on_host = flat(fn(*arrays, **kwargs))
    on_device = flat(fn(*[cp.asarray(a) if isinstance(a, np.ndarray) else a for a in arrays], **kwargs))
    return on_host, on_device


def _same(host, device):
    assert len(host) == len(device)
    for h, d in zip(host, device):
        if h is None:
            assert d is None
        else:
            np.testing.assert_array_equal(d, h)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_elementwise_references_on_the_device(fake_cuda, dtype):
    x = RNG.standard_normal((7, 5)).astype(dtype)
    x[0, :3] = [0.0, -0.0, np.nan]
    g = RNG.standard_normal((7, 5)).astype(dtype)
    _same(*_both(elementwise_reference.leaky_relu, x, 0.2))
    _same(*_both(elementwise_reference.leaky_relu_backward, g, x, 0.2))
    _same(*_both(elementwise_reference.sigmoid, x))
    _same(*_both(elementwise_reference.tanh_backward, g, np.tanh(x)))
    _same(*_both(elementwise_reference.abs_backward, g, x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_sum_exp_references_on_the_device(fake_cuda, dtype):
    x = RNG.standard_normal((6, 4)).astype(dtype) * 30
    x[1] = -np.inf                                        # a row of -inf: logsumexp -inf, softmax 0
    x[2, 0] = 1e4
    for fn in (loss_reference.logsumexp, loss_reference.log_softmax, loss_reference.shifted_logsumexp):
        _same(*_both(fn, x, (1,)))


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_reference_on_the_device(fake_cuda, reduction, weighted):
    logits = RNG.standard_normal((8, 5))
    target = RNG.integers(0, 5, 8)
    target[2] = -100                                      # ignored
    weight = RNG.uniform(0.1, 2.0, 8) if weighted else None
    host, device = _both(loss_reference.cross_entropy, logits, target, weight, -100, reduction)
    # the forward result and the saved softmax, targets and weights agree
    _same(host[:4], device[:4])
    import fake_cupy as cp

    def backward(xp_saved, upstream):
        return loss_reference.cross_entropy_backward(upstream, xp_saved, reduction, -100)

    saved_h = loss_reference.cross_entropy(logits, target, weight, -100, reduction)[1]
    saved_d = loss_reference.cross_entropy(cp.asarray(logits), cp.asarray(target),
                                           None if weight is None else cp.asarray(weight), -100, reduction)[1]
    upstream = RNG.standard_normal(8) if reduction == "none" else np.float64(1.7)
    np.testing.assert_array_equal(backward(saved_d, cp.asarray(upstream)).get(), backward(saved_h, upstream))


def test_cross_entropy_reference_on_the_device_gives_nan_for_a_target_out_of_range(fake_cuda):
    """On the GPU nothing is read back to raise from: a target outside [0, C) gets a NaN weight, so the mean
    (and the gradient of its row) is NaN, while an ignored target still contributes nothing."""
    import fake_cupy as cp

    logits = RNG.standard_normal((4, 3))
    for bad in (3, -1):
        target = np.array([0, bad, 2, -100])
        loss, (_, safe, w, _) = loss_reference.cross_entropy(cp.asarray(logits), cp.asarray(target), None, -100,
                                                             "mean")
        assert np.isnan(loss.get())
        np.testing.assert_array_equal(np.isnan(w.get()), [False, True, False, False])
        assert w.get()[3] == 0 and list(safe.get()) == [0, 0, 2, 0]
    # with every target in range the device result is the host's
    target = np.array([0, 1, 2, -100])
    _same(*_both(loss_reference.cross_entropy, logits, target, None, -100, "mean"))


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_bce_with_logits_reference_on_the_device(fake_cuda, reduction):
    x = RNG.standard_normal((5, 3)) * 10
    t = RNG.uniform(0, 1, (5, 3))
    host, device = _both(loss_reference.bce_with_logits, x, t, reduction)
    _same(host, device)
    import fake_cupy as cp

    g = RNG.standard_normal((5, 3)) if reduction == "none" else np.float64(0.3)
    for need_x, need_t in ((True, True), (True, False), (False, True)):
        dx, dt = loss_reference.bce_with_logits_backward(g, (x, t), reduction, need_x, need_t)
        dxd, dtd = loss_reference.bce_with_logits_backward(cp.asarray(g), (cp.asarray(x), cp.asarray(t)), reduction,
                                                           need_x, need_t)
        assert (dx is None, dt is None) == (not need_x, not need_t)       # nothing computed that is not needed
        assert (dxd is None, dtd is None) == (not need_x, not need_t)
        for h, d in ((dx, dxd), (dt, dtd)):
            if h is not None:
                np.testing.assert_array_equal(d.get(), h)


def test_philox_dropout_reference_on_the_device(fake_cuda):
    a = RNG.standard_normal((9, 7))
    for p in (0.0, 0.35, 1.0):
        stream = (dropout.keep_threshold(p), dropout.keep_scale(p), 2**63 + 5, 2**32 - 2)
        _same(*_both(dropout_reference.philox_dropout, a, *stream))


@pytest.mark.parametrize("module", ["dropout_reference", "dropout_philox_cpu"])
def test_a_word_equal_to_the_threshold_keeps_its_value(module):
    """The rule is "kept when the word is >= t" (so the keep probability is exactly 1 - t / 2**32): a value
    whose word equals the threshold is kept, and dropped once the threshold is one more."""
    import importlib

    from minigrad.kernels.noise_reference import philox4x32

    kernel = importlib.import_module(f"minigrad.kernels.{module}")
    key, counter = 0x9E3779B97F4A7C15, 2**32 + 7
    zero = np.zeros(1, dtype=np.uint64)
    words = philox4x32(np.array([counter % 2**32], np.uint64), np.array([counter >> 32], np.uint64), zero, zero, key)
    a = np.ones(4)
    for lane in range(4):
        w = int(words[lane][0])
        assert kernel.philox_dropout(a, w, 2.0, key, counter)[lane] == 2.0
        assert kernel.philox_dropout(a, w + 1, 2.0, key, counter)[lane] == 0.0
