"""Size checks for the compiled kernels, and what bounds checking changes.

numba's compiled loops do not check their indices: a buffer that is too small is read or written past its
end, silently. So every Python function that hands arrays to a compiled kernel first checks their shapes
here (:func:`check_arrays`, a few comparisons), and a wrong size is a ``ValueError`` that names the kernel,
the argument, the shape it has and the shape it needs.

Inside the kernels, numba can check every index when ``NUMBA_BOUNDSCHECK=1`` is set before they are
compiled; an index out of range is then an ``IndexError``. numba does not apply that check to the accesses
in ``prange`` loops (in numba 0.68 stores and most loads there go unchecked, and the few it checks fail
with a ``SystemError``), so with bounds checking on the kernels are compiled without ``parallel``
(:data:`PARALLEL` is False): every loop runs serially and every access is checked. The tests run the
kernel tests that way in a subprocess, with its own numba cache (tests/test_kernels.py).
"""
from __future__ import annotations

import numba

__all__ = ["check_arrays", "PARALLEL"]

#: Whether the numba kernels are compiled with ``parallel=True``: always, except under ``NUMBA_BOUNDSCHECK=1``.
PARALLEL = not numba.config.BOUNDSCHECK


def check_arrays(kernel, expected):
    """``expected`` maps argument names to ``(array, shape)``; raise ``ValueError`` naming ``kernel`` for the
    first array whose shape is not ``shape`` (every shape is given in full, as a tuple of ints)."""
    for name, (array, shape) in expected.items():
        got = tuple(array.shape)
        if got != tuple(shape):
            raise ValueError(f"{kernel}: argument {name} has shape {got}, but this call needs shape "
                             f"{tuple(shape)}")
