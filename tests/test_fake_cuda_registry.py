"""Every op of the registry (minigrad/testing/registry.py) on device "cuda", on the CuPy stand-in of
tests/fake_cupy.py, against the CPU: the forward values and every input's gradient, in float64.

This is what tests/test_registry.py's ``test_cuda_matches_cpu`` checks on a real GPU, run on every machine:
the CUDA path of each op (the CuPy array code, the CUDA kernels' wrappers, the fused batch-norm and
LeakyReLU passes) must give the CPU's numbers, must not read from the device (no op does: the counters of
the stand-in say so), and must not write into the upstream gradient the engine hands it (the stand-in keeps
NumPy's read-only flag, which CuPy has not).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
from minigrad.ops.elementwise import ToDevice
from minigrad.testing.registry import specs

from fake_cupy import installed

SPECS = specs()


def _cast(arrays):
    return [a.astype(np.float64) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a for a in arrays]


def _differentiable(spec, arrays):
    if spec.differentiable is not None:
        return set(spec.differentiable)
    return {i for i, a in enumerate(arrays) if isinstance(a, np.ndarray) and a.dtype.kind == "f"}


def _run(spec, case, arrays, device):
    wrt = _differentiable(spec, arrays) if spec.grad else set()
    ts = [mg.tensor(a, device=device, requires_grad=i in wrt) if isinstance(a, np.ndarray) else a
          for i, a in enumerate(arrays)]
    out = spec.fn(*ts, **case.options)
    assert out.device == device, f"{spec.name}: result on {out.device}, inputs on {device}"
    grads = []
    if out.requires_grad:
        upstream = np.random.default_rng(0).standard_normal(out.shape).astype(out.dtype)
        out.backward(gradient=mg.tensor(upstream, device=device))
        grads = [None if not isinstance(t, mg.Tensor) or t.grad is None else t.grad for t in ts]
        assert all(g is None or g.device == device for g in grads), f"{spec.name}: a gradient left the device"
    return out, grads


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
@given(data=st.data())
def test_op_on_fake_cuda_matches_cpu(spec, data):
    case = data.draw(spec.cases, label="case")
    arrays = _cast(case.arrays)
    cpu_out, cpu_grads = _run(spec, case, arrays, "cpu")
    with installed() as counts:
        gpu_out, gpu_grads = _run(spec, case, arrays, "cuda")
        if ToDevice in spec.covers:    # a copy to the host is that op's job
            assert counts.reads, f"{spec.name}: a copy to the host that reads nothing"
        else:
            # allowed: an entry's own fn reading on purpose (rmatmul's NumPy left operand), and a boolean
            # mask index, whose result size is the number of True values (CuPy reads it back too)
            own = [r for r in counts.reads if not r.startswith("minigrad/testing/") and "boolean-mask" not in r]
            assert own == [], f"{spec.name}: the op read from the device: {own}"
        gpu_out, gpu_grads = gpu_out.numpy(), [None if g is None else g.numpy() for g in gpu_grads]
    cpu_out, cpu_grads = cpu_out.numpy(), [None if g is None else g.numpy() for g in cpu_grads]
    assert gpu_out.shape == cpu_out.shape and gpu_out.dtype == cpu_out.dtype
    if spec.same_on_every_device:
        np.testing.assert_allclose(gpu_out, cpu_out, rtol=1e-9, atol=1e-12, err_msg=f"{spec.name}: forward")
    for i, (a, b) in enumerate(zip(gpu_grads, cpu_grads)):
        assert (a is None) == (b is None), f"{spec.name}: gradient of input {i} on one device only"
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=f"{spec.name}: gradient of input {i}")
