"""The reference shape kernels: joining arrays (the array module's own ``concatenate`` and ``stack``) and
scattering an indexed part's gradient back (``GetItem``'s backward), for any array module (NumPy or CuPy,
taken from the arrays they are given).

What ``Cat``, ``Stack`` and ``GetItem`` (``minigrad/ops/shape.py``) run on the CPU, and what ``shape_cuda.py``
is tested against.
"""
from __future__ import annotations

from ..backend import array_module

__all__ = ["supports", "concatenate", "stack", "scatter"]


def supports(*arrays) -> bool:
    """The reference runs on any NumPy or CuPy arrays."""
    return True


def concatenate(arrays, axis):
    """The arrays joined along ``axis`` (an existing axis), in a new array."""
    return array_module(*arrays).concatenate(arrays, axis=axis)


def stack(arrays, axis):
    """The arrays (of one shape) joined along a new axis ``axis``, in a new array."""
    return array_module(*arrays).stack(arrays, axis=axis)


def scatter(grad, shape, dtype, index, basic, into=None):
    """The gradient of ``x[index]`` for an ``x`` of ``shape`` and ``dtype``: zeros with ``grad`` where the values
    were picked (added up where an integer array picks one several times: ``add.at``). ``basic``: ``index``
    holds only ints, slices, None and Ellipsis. ``into``, a running sum the GPU kernels may add into, is not
    used here."""
    xp = array_module(grad)
    out = xp.zeros(shape, dtype=dtype)
    if basic:
        out[index] = grad
    else:
        xp.add.at(out, index, grad)
    return out
