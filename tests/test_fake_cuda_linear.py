"""The small-layer linear kernel of kernels/matmul_cuda.py (``F.linear`` with its bias in one launch): its body
compiled as C on the host against the product, and the op on the CuPy stand-in against the CPU, with its
launches.
"""
from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg

from fake_cupy import fake_cuda  # noqa: F401  (fixture)
from test_fake_cuda_kernels import _call, cc, elementwise  # noqa: F401  (cc: the compiler fixture)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_body_compiled_as_c_matches_the_product(cc, dtype):
    from minigrad.kernels import matmul_cuda, matmul_reference

    t_type = "float" if dtype == np.float32 else "double"
    rng = np.random.default_rng(3)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in ((6, 16), (10, 16), (10,)))
    fn, kinds = elementwise(cc, matmul_cuda.LINEAR, matmul_cuda.LINEAR_BODY, t_type, set())
    y = np.full((6, 10), 7, dtype=dtype)
    _call(fn, kinds, [x, w, b, 16, 10, y], y.size)
    np.testing.assert_allclose(y, matmul_reference.linear(x, w, b), rtol=1e-5 if dtype == np.float32 else 1e-13,
                               atol=1e-5 if dtype == np.float32 else 1e-13)


@pytest.mark.parametrize("what, shapes, bias, kernel", [
    ("a classifier's last layer", ((5, 16), (10, 16)), True, True),
    ("a batch of sequences", ((2, 3, 16), (10, 16)), True, True),
    ("no bias: the product alone", ((5, 16), (10, 16)), False, False),
    ("a large layer: cuBLAS", ((5, 2048), (40, 2048)), True, False),
])
def test_linear_on_fake_cuda_equals_cpu(fake_cuda, what, shapes, bias, kernel):
    import minigrad.functional as F

    rng = np.random.default_rng(4)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes] + \
        ([rng.standard_normal(shapes[1][0]).astype(np.float32)] if bias else [])
    out = {}
    for device in ("cpu", "cuda"):
        ts = [mg.tensor(a, device=device, requires_grad=True) for a in arrays]
        fake_cuda.reset()
        y = F.linear(*ts)
        launches = fake_cuda.launches
        y.sum().backward()
        out[device] = [y.numpy()] + [t.grad.numpy() for t in ts], launches
    for a, b in zip(out["cuda"][0], out["cpu"][0]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    assert out["cuda"][1] == (1 if kernel else 1 + bias), what
