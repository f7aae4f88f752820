"""The CuPy stand-in (tests/fake_cupy.py) and what minigrad's GPU path does on it, where it differs from the CPU:

* the stand-in is as strict as CuPy about the host (no implicit conversion, no mixing with NumPy arrays)
  and counts what the device is asked to do;
* ``minigrad.backend``: installing the CUDA module, recognising device arrays (also ones made before
  minigrad imported CuPy), ``mg.tensor`` of a device array staying on the device, the smoke test of
  ``cuda_status`` and the reason it gives for each failure;
* the engine's read-only upstream gradients reach the CUDA path too;
* cross-entropy reads nothing from the device; its targets are checked on the host where they are there,
  and poison the loss with NaN where they are not.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import backend
from minigrad import random as mg_random
from minigrad.autograd import Function

import fake_cupy as cp
from fake_cupy import fake_cuda  # noqa: F401  (fixture)


# ------------------------------------------------------------------------------------ the stand-in itself
def test_device_arrays_never_become_host_arrays_implicitly(fake_cuda):
    a = cp.arange(6, dtype=cp.float32).reshape(2, 3)
    refused = {
        "np.asarray": lambda: np.asarray(a), "np.array": lambda: np.array(a), "a ufunc": lambda: np.exp(a),
        "a NumPy function": lambda: np.concatenate([a, a]), "numpy + device": lambda: np.ones(3) + a,
        "device + numpy": lambda: a + np.ones(3), "a 0-d NumPy array": lambda: a * np.array(2.0),
        "a host array to a device function": lambda: cp.concatenate([a, np.ones((2, 3))]),
        "a host array to a ufunc": lambda: cp.exp(np.ones(3)),
        "a host value stored": lambda: a.__setitem__(0, np.ones(3)),
    }
    for what, attempt in refused.items():
        with pytest.raises(TypeError):
            attempt()
            pytest.fail(what)
    assert (a * 2.0 + np.float32(1)).dtype == np.float32          # Python and NumPy scalars are fine
    assert fake_cuda.reads == [] and fake_cuda.h2d == 0
    assert float(a[0, 1]) == 1.0 and a.get().tolist() == [[0, 1, 2], [3, 4, 5]]
    assert len(fake_cuda.reads) == 2 and all(r.startswith("tests/test_fake_cuda.py:") for r in fake_cuda.reads)
    fake_cuda.reset()
    assert a[a > 2].get().tolist() == [3, 4, 5]                   # CuPy reads the number of selected values
    assert "boolean-mask index" in fake_cuda.reads[0] and len(fake_cuda.reads) == 2
    assert cp.get_array_module(a) is cp and cp.get_array_module(np.ones(1)) is np


def test_launches_are_counted_and_views_are_free(fake_cuda):
    a = cp.ones((4, 6), dtype=cp.float32)
    assert fake_cuda.launches == 1                                 # ones: a kernel (fill)
    fake_cuda.reset()
    views = [a.T, a.reshape(6, 4), a[1:, ::2], a[0, 0], cp.expand_dims(a, 0), a.astype(np.float32, copy=False)]
    empty = cp.empty((3, 2))
    assert fake_cuda.launches == 0 and views[3].shape == ()
    (a + 1).sum(axis=0)
    a.T.reshape(-1)                                                # a transposed array flattens by a copy
    a.astype(np.float64)
    assert fake_cuda.launches == 4, fake_cuda.launch_kinds
    assert np.isnan(empty.get()).all()                             # new memory holds NaN, not zeros
    assert any(site.startswith("tests/test_fake_cuda.py:") for site in fake_cuda.launch_sites)


def test_joining_arrays_counts_what_cupy_launches(fake_cuda):
    small = [cp.ones(3) for _ in range(9)]
    fake_cuda.reset()
    cp.concatenate(small[:2])
    assert fake_cuda.launches == 2                                 # a copy per array
    fake_cuda.reset()
    cp.concatenate(small)
    assert fake_cuda.launches == 1                                 # more than eight small arrays: one kernel
    fake_cuda.reset()
    cp.stack(small[:6])
    assert fake_cuda.launches == 6                                 # a concatenate of the arrays with a new axis
    fake_cuda.reset()
    big = [cp.empty(300_000) for _ in range(9)]                    # 2.4 MB each: copied one by one
    fake_cuda.reset()
    cp.concatenate(big)
    assert fake_cuda.launches == 9


def test_user_kernels_check_what_a_gpu_would_get_wrong(fake_cuda):
    raw = cp.RawKernel("", "minigrad_bn_forward")
    x = cp.ones((4, 4), dtype=cp.float32)
    with pytest.raises(ValueError, match="not C-contiguous"):
        raw((1,), (256,), (x.T,))
    with pytest.raises(TypeError, match="explicit C type"):
        raw((1,), (256,), (x, 3))                                  # a Python int: which width?
    with pytest.raises(ValueError, match="invalid launch configuration"):
        raw((0,), (256,), (x,))
    kernel = cp.ElementwiseKernel("T x, T slope", "T y", "y = x;", "minigrad_leaky_relu")
    with pytest.raises(TypeError, match="type T is mismatched"):
        kernel(x, np.float64(0.2), cp.empty((4, 4), dtype=cp.float64))
    with pytest.raises(TypeError, match="must be a device array"):
        kernel(np.ones(3, np.float32), np.float32(0.2))
    with pytest.raises(NotImplementedError, match="no NumPy equivalent"):
        cp.ElementwiseKernel("T x", "T y", "y = x;", "not_a_minigrad_kernel")(x)
    np.testing.assert_array_equal(kernel(x - 2, np.float32(0.5)).get(), np.full((4, 4), -0.5, np.float32))


def test_read_only_views_stay_read_only(fake_cuda):
    a = cp.zeros(3)
    v = a.view()
    v.flags.writeable = False
    for write in (lambda: v.__iadd__(1), lambda: v.__setitem__(0, 1.0), lambda: cp.add(a, 1, out=v)):
        with pytest.raises(ValueError, match="read-only"):
            write()
    a += 1                                                          # the array itself is still writable
    assert v.get().tolist() == [1.0, 1.0, 1.0]


# -------------------------------------------------------------------------------------------- the backend
def test_the_stand_in_is_minigrads_cuda_module_while_installed(fake_cuda):
    assert backend.cupy_module() is cp and backend.module_for("cuda:0") is cp
    t = mg.ones(2, 3, device="cuda")
    assert isinstance(t.data, cp.ndarray) and t.device == "cuda" and backend.array_module(t.data) is cp
    assert backend.is_array(t.data) and backend.device_of(t.data) == "cuda"
    fake_cuda.reset()
    back = backend.to_numpy(backend.to_device(np.arange(3.0), "cuda"))
    assert back.tolist() == [0.0, 1.0, 2.0] and fake_cuda.h2d == 1 and fake_cuda.d2h == 1


def test_a_cupy_array_made_before_minigrad_imported_cupy_is_a_cuda_array(monkeypatch):
    """The caller imported CuPy and made an array; minigrad had not imported CuPy yet."""
    monkeypatch.setattr(backend, "_cupy", None)
    monkeypatch.setattr(mg_random, "_cuda", None)
    monkeypatch.setitem(sys.modules, "cupy", cp)
    a = cp.arange(3, dtype=cp.float32)
    assert backend.device_of(a) == "cuda" and backend.is_array(a) and backend.array_module(a) is cp
    t = mg.tensor(a)
    assert t.device == "cuda" and (t * 2).numpy().tolist() == [0.0, 2.0, 4.0]
    assert backend.cupy_module() is cp                             # importing it finds the same module


def test_tensor_of_a_device_array_stays_on_the_device(fake_cuda):
    a = cp.arange(4, dtype=cp.float32)
    fake_cuda.reset()
    t = mg.tensor(a)
    assert t.device == "cuda" and isinstance(t.data, cp.ndarray) and t.data is not a
    assert fake_cuda.reads == [] and fake_cuda.h2d == 0            # a copy on the device, not through the host
    a[0] = 5.0
    assert t.numpy().tolist() == [0.0, 1.0, 2.0, 3.0]              # it is a copy, as torch.tensor makes
    assert mg.tensor(t).device == "cuda" and mg.tensor(a, dtype=np.float64).dtype == np.float64
    assert mg.tensor(a, device="cpu").device == "cpu" and mg.tensor([1.0, 2.0]).device == "cpu"
    assert mg.Tensor(a).device == "cuda" and mg.nn.Parameter(a).device == "cuda"


class _WritesIntoItsGradient(Function):
    """A broken op: its backward scales the upstream gradient in place."""

    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, grad):
        grad *= 2
        return grad


# (an id "cuda" would read as the cuda marker, and conftest.py would skip the case without a GPU)
@pytest.mark.parametrize("device", ["cpu", "cuda"], ids=["numpy", "stand-in"])
def test_the_engine_hands_ops_read_only_gradients_on_the_gpu_too(fake_cuda, device):
    x = mg.ones(3, device=device, requires_grad=True)
    upstream = mg.ones(3, device=device)
    with pytest.raises(ValueError, match="read-only"):
        _WritesIntoItsGradient.apply(x).backward(upstream)
    assert upstream.numpy().tolist() == [1.0, 1.0, 1.0]


def test_cuda_status_runs_a_smoke_test_and_names_what_fails(fake_cuda):
    assert backend.cuda_status() == (True, "")
    assert mg.cuda_available() is True and isinstance(mg.cuda_available(), bool)
    for fault, words in (("device", "no usable CUDA device"), ("nvrtc", "NVRTC"), ("cublas", "cuBLAS"),
                         ("curand", "cuRAND"), ("results", "wrong results")):
        cp.FAULTS.clear()
        cp.FAULTS.add(fault)
        backend.set_cupy_module(cp)                                # forget the cached result
        ok, reason = backend.cuda_status()
        assert not ok and words in reason, (fault, reason)
        assert mg.cuda_available() is False
    cp.FAULTS.clear()
    backend.set_cupy_module(cp)
    assert backend.cuda_status() == (True, "")


def test_cuda_status_without_cupy(monkeypatch):
    monkeypatch.setattr(backend, "_cupy", None)
    monkeypatch.setattr(backend, "_status", None)
    monkeypatch.setitem(sys.modules, "cupy", None)                 # "import cupy" raises ImportError
    ok, reason = backend.cuda_status()
    assert not ok and "CuPy cannot be imported" in reason and "[cuda]" in reason
    assert mg.cuda_available() is False
    with pytest.raises(RuntimeError, match="device 'cuda' needs CuPy"):
        mg.zeros(2, device="cuda")


# --------------------------------------------------------------------------------------- cross-entropy
def _cross_entropy(device, target, reduction="mean", as_tensor=False):
    logits = np.random.default_rng(0).standard_normal((4, 3))
    z = mg.tensor(logits, device=device, requires_grad=True)
    t = mg.tensor(target, device=device) if as_tensor else target
    loss = F.cross_entropy(z, t, reduction=reduction, ignore_index=-1)
    loss.backward(mg.ones_like(loss))
    return loss, z.grad


@pytest.mark.parametrize("as_tensor", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_reads_nothing_from_the_device(fake_cuda, as_tensor, reduction):
    target = np.array([0, 2, -1, 1])
    want = [a.numpy() for a in _cross_entropy("cpu", target, reduction, as_tensor)]
    fake_cuda.reset()
    loss, grad = _cross_entropy("cuda", target, reduction, as_tensor)
    assert fake_cuda.reads == []
    np.testing.assert_allclose(loss.numpy(), want[0], rtol=1e-12)
    np.testing.assert_allclose(grad.numpy(), want[1], rtol=1e-12, atol=1e-15)


def test_cross_entropy_checks_host_targets_before_they_reach_the_device(fake_cuda):
    z = mg.tensor(np.zeros((2, 3)), device="cuda", requires_grad=True)
    fake_cuda.reset()
    for bad in (np.array([0, 3]), [-2, 0]):
        with pytest.raises(ValueError, match=r"target values must lie in \[0, 3\)"):
            F.cross_entropy(z, bad)
    with pytest.raises(ValueError, match="integer tensor of shape"):
        F.cross_entropy(z, np.array([0.0, 1.0]))
    assert fake_cuda.h2d == 0 and fake_cuda.launches == 0 and fake_cuda.reads == []
    F.cross_entropy(z, np.array([-100, 2]))                          # ignore_index is not out of range


def test_a_device_target_out_of_range_makes_the_loss_nan_without_a_read(fake_cuda):
    target = np.array([0, 7, -1, 1])                                 # 7 is out of range, -1 ignored
    fake_cuda.reset()
    loss, grad = _cross_entropy("cuda", target, "none", as_tensor=True)
    assert fake_cuda.reads == []
    losses, g = loss.numpy(), grad.numpy()
    assert np.isnan(losses[1]) and np.isfinite(np.delete(losses, 1)).all() and losses[2] == 0
    assert np.isnan(g[1]).all() and np.isfinite(np.delete(g, 1, axis=0)).all()
    mean, _ = _cross_entropy("cuda", target, "mean", as_tensor=True)
    assert np.isnan(mean.numpy())
    with pytest.raises(ValueError, match="must lie in"):            # on the CPU it is an error
        _cross_entropy("cpu", target, "none", as_tensor=True)
