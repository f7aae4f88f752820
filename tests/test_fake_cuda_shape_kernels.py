"""The shape kernels of kernels/shape_cuda.py - the join kernel (``mg.cat`` and ``mg.stack`` of two to eight
arrays in one launch) and the gradient of an indexed part (one kernel for a slice of rows, added into the
engine's running sum where there is one) - their bodies compiled as C on the host against NumPy, and the ops
on the CuPy stand-in against the CPU, with their launches.
"""
from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
from minigrad import kernels
from minigrad.kernels import shape_cuda, shape_reference

import fake_cupy as cp
from fake_cupy import fake_cuda  # noqa: F401  (fixture)
from test_fake_cuda_kernels import _call, cc, elementwise  # noqa: F401  (cc: the compiler fixture)


@pytest.mark.parametrize("k", [2, 3, 5, 8])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_join_body_compiled_as_c_equals_concatenate(cc, k, dtype):
    t_type = {np.float32: "float", np.float64: "double", np.int64: "long long"}[dtype]
    rng = np.random.default_rng(k)
    parts = [(rng.standard_normal((int(rng.integers(0, 4)), 3)) * 100).astype(dtype) for _ in range(k)]
    fn, kinds = elementwise(cc, shape_cuda.join_params(k), shape_cuda.join_body(k), t_type, set())
    want = np.concatenate(parts)
    out = np.full(want.shape, 7, dtype=dtype)
    offsets = np.cumsum([p.size for p in parts])[:-1]
    _call(fn, kinds, [*(np.ascontiguousarray(p) for p in parts), *offsets, out], want.size)
    np.testing.assert_array_equal(out, want)


def _run(device, op, arrays, counts):
    ts = [mg.tensor(a, device=device, requires_grad=a.dtype.kind == "f") for a in arrays]
    counts.reset()
    y = op(ts)
    launches = counts.launches
    grads = []
    if y.requires_grad:
        y.backward(mg.tensor(np.arange(y.numel(), dtype=y.dtype).reshape(y.shape), device=device))
        grads = [t.grad.numpy() for t in ts]
    return y.numpy(), grads, launches


@pytest.mark.parametrize("what, op, shapes, launches", [
    ("cat of two batches", lambda ts: mg.cat(ts, dim=0), [(3, 2, 2), (5, 2, 2)], 1),
    ("stack of six scalars", lambda ts: mg.stack(ts), [()] * 6, 1),
    ("stack of eight rows", lambda ts: mg.stack(ts, dim=0), [(4,)] * 8, 1),
    ("cat along another axis", lambda ts: mg.cat(ts, dim=1), [(2, 3), (2, 1)], 2),
    ("cat of nine arrays", lambda ts: mg.cat(ts, dim=0), [(2,)] * 9, 1),      # CuPy's own single kernel
])
def test_cat_and_stack_on_fake_cuda_equal_cpu(fake_cuda, what, op, shapes, launches):
    rng = np.random.default_rng(len(shapes))
    arrays = [np.asarray(rng.standard_normal(s)).astype(np.float32) for s in shapes]
    want_y, want_g, _ = _run("cpu", op, arrays, fake_cuda)
    got_y, got_g, got_launches = _run("cuda", op, arrays, fake_cuda)
    np.testing.assert_array_equal(got_y, want_y)
    for a, b in zip(got_g, want_g):
        np.testing.assert_array_equal(a, b)
    assert got_launches == launches, what


def test_the_join_kernel_reads_strided_arrays_and_leaves_mixed_dtypes_to_cupy(fake_cuda):
    a = cp.arange(12, dtype=np.float64).reshape(3, 4).T              # (4, 3), not contiguous
    b = cp.ones((2, 3), dtype=np.float64)
    fake_cuda.reset()
    out = shape_cuda.concatenate([a, b], 0)
    assert fake_cuda.launches == 1
    np.testing.assert_array_equal(out.get(), np.concatenate([a.get(), b.get()]))
    mixed = shape_cuda.concatenate([b, cp.ones((1, 3), dtype=np.float32)], 0)
    assert mixed.dtype == np.float64 and mixed.shape == (3, 3)
    assert kernels.for_arrays("shape", b) is shape_cuda and kernels.for_arrays("shape", np.ones(2)) is shape_reference


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_body_compiled_as_c_equals_numpy(cc, dtype):
    t_type = "float" if dtype == np.float32 else "double"
    g = np.random.default_rng(0).standard_normal((3, 4)).astype(dtype)
    fn, kinds = elementwise(cc, shape_cuda.ROWS, shape_cuda.ROWS_BODY, t_type, set())
    out = np.full((7, 4), 7, dtype=dtype)
    _call(fn, kinds, [g, 2 * 4, 5 * 4, out], out.size)
    want = np.zeros((7, 4), dtype=dtype)
    want[2:5] = g
    np.testing.assert_array_equal(out, want)


def _parts_run(device, x, indexes, counts):
    t = mg.tensor(x, device=device, requires_grad=True)
    parts = [t[i] for i in indexes]
    upstream = [mg.tensor(np.full(p.shape, k + 1.5, np.float32), device=device) for k, p in enumerate(parts)]
    terms = [(p * u).sum() for p, u in zip(parts, upstream)]
    loss = terms[0]
    for term in terms[1:]:
        loss = loss + term
    counts.reset()
    loss.backward()
    scatter = sum(n for s, n in counts.launch_sites.items() if "shape_cuda" in s or "shape_reference" in s)
    engine = sum(n for s, n in counts.launch_sites.items() if "autograd" in s)
    return t.grad.numpy(), scatter, engine


@pytest.mark.parametrize("what, indexes, scatter_launches", [
    ("one slice of rows", [slice(1, 3)], 1),
    ("the two halves of a batch", [slice(None, 2), slice(2, None)], 2),
    ("rows, then an integer array", [slice(0, 4), (np.array([0, 0, 3]),)], 2),
    ("a column (the reference: zeros, setitem)", [(slice(None), 1)], 2),
])
def test_getitem_gradients_on_fake_cuda_equal_cpu(fake_cuda, what, indexes, scatter_launches):
    x = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)
    want, _, _ = _parts_run("cpu", x, indexes, fake_cuda)
    got, scatter, engine = _parts_run("cuda", x, indexes, fake_cuda)
    np.testing.assert_array_equal(got, want)
    assert scatter == scatter_launches, what
    assert engine == 0, what                        # the parts' gradients need no addition by the engine
