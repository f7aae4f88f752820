"""Size checks for the compiled kernels.

numba's compiled loops do not check their indices (unless numba's bounds checking is switched on with
``NUMBA_BOUNDSCHECK=1`` before they are compiled): a buffer that is too small is read or written past its
end, silently. So every Python function that hands arrays to a compiled kernel first checks their shapes
here, which costs a few comparisons, and a wrong size is a ``ValueError`` that names the kernel, the
argument, the shape it has and the shape it needs.
"""
from __future__ import annotations

__all__ = ["check_arrays"]


def check_arrays(kernel, expected):
    """``expected`` maps argument names to ``(array, shape)``; raise ``ValueError`` naming ``kernel`` for the
    first array whose shape is not ``shape`` (every shape is given in full, as a tuple of ints)."""
    for name, (array, shape) in expected.items():
        got = tuple(array.shape)
        if got != tuple(shape):
            raise ValueError(f"{kernel}: argument {name} has shape {got}, but this call needs shape "
                             f"{tuple(shape)}")
