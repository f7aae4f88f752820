"""The parameter average as one pass per parameter (``average`` kernels, used by
``AveragedModel.update_parameters``): the numba kernel equals the NumPy expression bit for bit, the update
rule and the start modes are unchanged, and every new average is a new array. tests/test_weight_norm_ema.py
checks AveragedModel itself (what is averaged and copied, state_dict, weight-normed copies).
"""
from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
from minigrad import kernels, nn
from minigrad.kernels import average_cpu, average_reference


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rate", [0.0, 1e-4, 0.1, 0.5, 1.0])
def test_numba_kernel_equals_the_expression_bit_for_bit(dtype, rate):
    rng = np.random.default_rng(0)
    shapes = [(), (1,), (7,), (250,), (300, 257), (average_cpu.PARALLEL_MIN_SIZE + 3,)]
    averages = [rng.standard_normal(s).astype(dtype) for s in shapes]
    params = [rng.standard_normal(s).astype(dtype) * 3 for s in shapes]
    averages[3][:3] = [np.inf, -0.0, 1e-30]
    with np.errstate(invalid="ignore"):                     # inf - inf is NaN on both paths, by design
        fast = average_cpu.average_update(averages, params, rate)
        ref = average_reference.average_update(averages, params, rate)
        for a, p, f, r in zip(averages, params, fast, ref):
            assert f.dtype == dtype and f.shape == a.shape and f is not a
            np.testing.assert_array_equal(f, r)
            np.testing.assert_array_equal(f, a + dtype(rate) * (p - a))       # the rule, in the dtype


def test_the_averages_are_new_arrays_and_the_old_ones_are_unchanged():
    a = [np.ones(5, np.float32), np.zeros((2, 3), np.float32)]
    p = [np.full(5, 3.0, np.float32), np.ones((2, 3), np.float32)]
    before = [x.copy() for x in a]
    new = average_cpu.average_update(a, p, 0.25)
    for old, kept, fresh in zip(a, before, new):
        np.testing.assert_array_equal(old, kept)
        assert fresh is not old and not np.shares_memory(fresh, old)
    np.testing.assert_array_equal(new[0], np.full(5, 1.5, np.float32))
    with pytest.raises(ValueError, match=r"average_update: argument params\[1\] has shape \(3, 2\)"):
        average_cpu.average_update(a, [p[0], np.ones((3, 2), np.float32)], 0.5)


def _model(seed):
    mg.manual_seed(seed)
    model = nn.Sequential(nn.utils.weight_norm(nn.Linear(6, 5)), nn.BatchNorm1d(5), nn.Linear(5, 3))
    model[0].weight_g.requires_grad = False          # a fixed scale: copied, not averaged
    return model


def _perturb(model, rng):
    for p in model.parameters():
        p.data = (p.data + rng.standard_normal(p.shape).astype(p.dtype) * 0.1).astype(p.dtype)


@pytest.mark.parametrize("start", ["copy", "zeros"])
def test_averaged_model_is_the_same_on_both_paths_and_follows_the_rule(start):
    states = {}
    for path in ("fast", "reference"):
        rng = np.random.default_rng(1)
        model = _model(2)
        with kernels.use(path):
            ema = mg.AveragedModel(model, decay=0.9, start=start)
            expected = {k: v.copy() for k, v in ema.module.state_dict().items()}
            for step in range(4):
                _perturb(model, rng)
                current = model.state_dict()
                trained = {n for n, p in model.named_parameters() if p.requires_grad}
                ema.update_parameters(model)
                for k in expected:
                    if k in trained and not (start == "copy" and step == 0):
                        expected[k] = expected[k] + np.float32(0.1) * (current[k] - expected[k])
                    else:
                        expected[k] = current[k].copy()
                for k, v in ema.module.state_dict().items():
                    np.testing.assert_array_equal(v, expected[k], err_msg=f"{k}, step {step}, {path}")
        states[path] = ema.state_dict()
    for k in states["fast"]:
        np.testing.assert_array_equal(states["fast"][k], states["reference"][k], err_msg=k)
