"""The reference shape kernels: joining arrays, as the array module's own ``concatenate`` and ``stack`` (NumPy
or CuPy, taken from the arrays they are given).

What ``Cat`` and ``Stack`` (``minigrad/ops/shape.py``) run on the CPU, and what ``shape_cuda.py``'s join kernel
is tested against.
"""
from __future__ import annotations

from ..backend import array_module

__all__ = ["supports", "concatenate", "stack"]


def supports(*arrays) -> bool:
    """The reference runs on any NumPy or CuPy arrays."""
    return True


def concatenate(arrays, axis):
    """The arrays joined along ``axis`` (an existing axis), in a new array."""
    return array_module(*arrays).concatenate(arrays, axis=axis)


def stack(arrays, axis):
    """The arrays (of one shape) joined along a new axis ``axis``, in a new array."""
    return array_module(*arrays).stack(arrays, axis=axis)
