"""The reference matrix-product kernel: ``F.linear``'s forward pass, ``x W^T + b``, as the array module's
product and an addition (NumPy or CuPy, taken from the arrays it is given).

What ``Linear`` (``minigrad/ops/matmul.py``) runs on the CPU, and what ``matmul_cuda.py`` is tested against.
"""
from __future__ import annotations

__all__ = ["supports", "linear"]


def supports(*arrays) -> bool:
    """The reference runs on any NumPy or CuPy arrays."""
    return True


def linear(x, weight, bias=None):
    """``x @ weight.T`` (BLAS on the CPU, cuBLAS on the GPU), plus ``bias`` when given, in a new array."""
    y = x @ weight.T
    if bias is not None:
        y += bias
    return y
