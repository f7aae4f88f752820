"""The GPU dropout kernel (``dropout_cuda``): the mask from the uniform draws in one CuPy
``ElementwiseKernel`` launch.

Same name, arguments and result as ``dropout_reference.py`` (read that first): ``mask = 1 / (1 - p)`` where
the draw ``u >= p``, else 0, in the activations' dtype. As array expressions that is a comparison, a cast
and a product (three kernels and a temporary array); here one thread per value writes it directly. The
draws themselves come from minigrad's seeded CUDA generator (``minigrad/ops/dropout.py``). The body is a
plain C expression, which the tests also compile with the host's C compiler.
"""
from __future__ import annotations

import functools

import numpy as np

from .. import backend

__all__ = ["supports", "dropout_mask", "MASK_BODY"]

#: The mask value from the draw ``u``, the probability ``p`` (float32, as the draws) and ``scale = 1/(1-p)``.
MASK_BODY = "mask = u >= p ? scale : (T)0;"


def supports(*arrays) -> bool:
    """Whether this kernel handles the draws: CuPy float32 arrays."""
    return all(backend.device_of(a) == "cuda" and a.dtype == np.float32 for a in arrays)


@functools.lru_cache(maxsize=None)
def _kernel(cp):
    return cp.ElementwiseKernel("float32 u, float32 p, T scale", "T mask", MASK_BODY, "minigrad_dropout_mask")


def dropout_mask(u, p, dtype):
    """CUDA version of :func:`minigrad.kernels.dropout_reference.dropout_mask`."""
    cp = backend.cupy_module()
    dtype = np.dtype(dtype)
    if p >= 1.0:
        return cp.zeros(u.shape, dtype=dtype)
    mask = cp.empty(u.shape, dtype=dtype)
    _kernel(cp)(u, np.float32(p), dtype.type(1.0 / (1.0 - p)), mask)
    return mask
