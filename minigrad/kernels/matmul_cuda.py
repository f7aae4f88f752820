"""The GPU matrix-product kernel (``matmul_cuda``): a small ``F.linear`` with its bias in one CuPy
``ElementwiseKernel`` launch.

As the reference (``matmul_reference.py``) computes it, ``x W^T + b`` is a cuBLAS product and an addition:
two launches. For a layer as small as a classifier's last one (the discriminator's 128 features to 10
classes), both are all launch and no work; here one thread per output value computes its dot product and
adds the bias (:data:`LINEAR_BODY`: the sum in the order of the features, in the values' dtype, then the
bias). Used for layers with a bias and at most :data:`MOST_WEIGHTS` weights, of at most :data:`MOST_INPUTS`
inputs (a thread's loop); anything else - larger layers, no bias, other dtypes - goes to the reference. The
body is plain C, which the tests compile with the host's C compiler.

CuPy is imported lazily (through ``minigrad.backend``).
"""
from __future__ import annotations

import functools

import numpy as np

from .. import backend
from . import matmul_reference as reference

__all__ = ["supports", "linear", "LINEAR", "LINEAR_BODY", "MOST_WEIGHTS", "MOST_INPUTS"]

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

#: The largest layer (weights, inputs per output) the one-kernel path takes.
MOST_WEIGHTS, MOST_INPUTS = 1 << 16, 1024

#: Output value ``i`` of an (rows, n_out) result from ``x`` (rows, k), ``w`` (n_out, k) and ``b`` (raw: CuPy
#: indexes them by their logical C-order index, whatever their strides).
LINEAR = ("raw T x, raw T w, raw T b, int64 k, int64 n_out", "T y")
LINEAR_BODY = r"""
const long long row = i / n_out, j = i - row * n_out;
T s = (T)0;
for (long long f = 0; f < k; ++f) s += x[row * k + f] * w[j * k + f];
y = s + b[j];
"""


def supports(*arrays) -> bool:
    """Whether this kernel handles the arrays: CuPy arrays of float32 or float64, all of one dtype."""
    return all(backend.device_of(a) == "cuda" and a.dtype in DTYPES and a.dtype == arrays[0].dtype for a in arrays)


@functools.lru_cache(maxsize=None)
def _kernel(cp):
    return cp.ElementwiseKernel(*LINEAR, LINEAR_BODY, "minigrad_linear", options=("--fmad=false",))


def linear(x, weight, bias=None):
    """:func:`minigrad.kernels.matmul_reference.linear`, in one kernel for a small layer with a bias."""
    n_out, k = weight.shape
    if bias is None or n_out * k > MOST_WEIGHTS or k > MOST_INPUTS or not supports(x, weight, bias):
        return reference.linear(x, weight, bias)
    cp = backend.cupy_module()
    x2 = x if x.ndim == 2 else x.reshape(-1, k)     # raw arguments: read by their logical index, any strides
    y = cp.empty(tuple(x.shape[:-1]) + (n_out,), dtype=x.dtype)
    if y.size:
        _kernel(cp)(x2, weight, bias, np.int64(k), np.int64(n_out), y.reshape(-1, n_out))
    return y
