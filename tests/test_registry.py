"""Every op of the registry (minigrad/testing/registry.py), checked the same way over Hypothesis-drawn
shapes, broadcasting cases and values:

* the forward matches the NumPy reference, in float32 and in float64, with the right result dtype;
* the gradient passes ``gradcheck`` (float64, central differences, random upstream gradient);
* forward values and gradients match PyTorch's, when torch is installed;
* on a GPU (cuda-marked), the forward and the gradients on CuPy match the CPU.
"""
import importlib.util

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
from minigrad.testing import gradcheck
from minigrad.testing.registry import specs

SPECS = specs()
GRAD_SPECS = [s for s in SPECS if s.grad]
FORWARD_CASES = [pytest.param(s, np.dtype(d), id=f"{s.name}-{np.dtype(d).name}") for s in SPECS for d in s.dtypes]


def _is_float(a):
    return isinstance(a, np.ndarray) and a.dtype.kind == "f"


def _cast(arrays, dtype):
    return [a.astype(dtype) if _is_float(a) else a for a in arrays]


def _differentiable(spec, arrays):
    if spec.differentiable is not None:
        return set(spec.differentiable)
    return {i for i, a in enumerate(arrays) if _is_float(a)}


def _tensors(spec, arrays, device="cpu", requires_grad=True):
    wrt = _differentiable(spec, arrays) if spec.grad and requires_grad else set()
    return [mg.tensor(a, device=device, requires_grad=i in wrt) if isinstance(a, np.ndarray) else a
            for i, a in enumerate(arrays)]


def _upstream(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("spec, dtype", FORWARD_CASES)
@given(data=st.data())
def test_forward_matches_numpy(spec, dtype, data):
    case = data.draw(spec.cases, label="case")
    arrays = _cast(case.arrays, dtype)
    out = spec.fn(*_tensors(spec, arrays), **case.options)
    assert isinstance(out, mg.Tensor), f"{spec.name}: fn returned {type(out).__name__}"
    assert out.dtype == spec.expected_dtype(case, dtype), f"{spec.name}: result dtype {out.dtype}"

    expected = np.asarray(spec.reference(*_cast(arrays, np.float64), **case.options))
    assert out.shape == expected.shape, f"{spec.name}: shape {out.shape}, reference {expected.shape}"
    if out.dtype.kind == "f":
        rtol, atol = spec.tolerances(dtype)
        np.testing.assert_allclose(out.numpy(), expected, rtol=rtol, atol=atol)
    else:
        np.testing.assert_array_equal(out.numpy(), expected)


@pytest.mark.parametrize("spec", GRAD_SPECS, ids=lambda s: s.name)
@given(data=st.data())
def test_gradient_passes_gradcheck(spec, data):
    case = data.draw(spec.cases, label="case")
    gradcheck(lambda *ts: spec.fn(*ts, **case.options), case.arrays, wrt=spec.differentiable,
              directions=spec.directions, **spec.gradcheck_options)


TORCH_SPECS = [s for s in SPECS if s.torch_reference is not None]
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="PyTorch is not installed: the comparison with it is optional")


@needs_torch
@pytest.mark.parametrize("spec", TORCH_SPECS, ids=lambda s: s.name)
@given(data=st.data())
def test_matches_torch(spec, data):
    import torch
    case = data.draw(spec.cases, label="case")
    arrays = _cast(case.arrays, np.float64)
    wrt = _differentiable(spec, arrays) if spec.grad else set()

    ours = _tensors(spec, arrays)
    theirs = [torch.tensor(a, requires_grad=i in wrt) if isinstance(a, np.ndarray) else a
              for i, a in enumerate(arrays)]
    out = spec.fn(*ours, **case.options)
    tout = spec.torch_reference(torch, *theirs, **case.options)
    assert tuple(tout.shape) == out.shape, f"{spec.name}: shape {out.shape}, torch {tuple(tout.shape)}"
    rtol, atol = spec.tolerances(out.dtype if out.dtype.kind == "f" else np.float64)
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=rtol, atol=atol)

    if not wrt or not out.requires_grad:
        return
    g = _upstream(out.shape, out.dtype)
    out.backward(gradient=g)
    tout.backward(torch.tensor(g))
    for i in sorted(wrt):
        mine = np.zeros(arrays[i].shape) if ours[i].grad is None else ours[i].grad.numpy()
        ref = np.zeros(arrays[i].shape) if theirs[i].grad is None else theirs[i].grad.numpy()
        np.testing.assert_allclose(mine, ref, rtol=1e-8, atol=1e-10, err_msg=f"{spec.name}: gradient of input {i}")


@pytest.mark.cuda
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
@given(data=st.data())
def test_cuda_matches_cpu(spec, data):
    case = data.draw(spec.cases, label="case")
    arrays = _cast(case.arrays, np.float64)
    results = {}
    for device in ("cpu", "cuda"):
        ts = _tensors(spec, arrays, device=device)
        out = spec.fn(*ts, **case.options)
        assert out.device == device, f"{spec.name}: result on {out.device}, inputs on {device}"
        grads = []
        if out.requires_grad:
            out.backward(gradient=mg.tensor(_upstream(out.shape, out.dtype), device=device))
            grads = [None if not isinstance(t, mg.Tensor) or t.grad is None else t.grad.numpy() for t in ts]
        results[device] = out.numpy(), grads
    (cpu_out, cpu_grads), (gpu_out, gpu_grads) = results["cpu"], results["cuda"]
    assert gpu_out.shape == cpu_out.shape
    if spec.same_on_every_device:
        np.testing.assert_allclose(gpu_out, cpu_out, rtol=1e-9, atol=1e-12)
    for i, (a, b) in enumerate(zip(gpu_grads, cpu_grads)):
        assert (a is None) == (b is None), f"{spec.name}: gradient of input {i} on one device only"
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=f"{spec.name}: gradient of input {i}")
