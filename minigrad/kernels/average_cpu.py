"""numba kernel for the parameter average on the CPU: ``a <- a + rate (p - a)`` in one pass per parameter.

Written with NumPy (``average_reference.py``) the rule is three passes over each parameter and two
temporary arrays: ``p - a``, the product with ``rate``, the sum. This loop reads ``a`` and ``p`` once and
writes the new average once, computing the same expressions in the same order in the parameter's dtype (so
the result is the reference's, bit for bit). Large parameters are spread over the cores with ``prange``;
small ones (biases, scales) run on one thread, where starting the threads would cost more than the work.
Each new average is a new array, as in the reference.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .checks import PARALLEL, check_arrays

__all__ = ["supports", "average_update"]

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

#: parameters with at least this many values are updated by several threads
PARALLEL_MIN_SIZE = 1 << 16


@njit(parallel=PARALLEL, cache=True)
def _update_parallel(a, p, rate, out):
    for i in prange(a.size):
        ai = a[i]
        out[i] = ai + rate * (p[i] - ai)


@njit(cache=True)
def _update_serial(a, p, rate, out):
    for i in range(a.size):
        ai = a[i]
        out[i] = ai + rate * (p[i] - ai)


def supports(averages, params) -> bool:
    """Whether :func:`average_update` handles these lists: every average and parameter a C-contiguous NumPy
    array of float32 or float64, each parameter of its average's dtype."""
    return all(isinstance(a, np.ndarray) and isinstance(p, np.ndarray) and a.dtype in DTYPES
               and p.dtype == a.dtype and a.flags.c_contiguous and p.flags.c_contiguous
               for a, p in zip(averages, params))


def average_update(averages, params, rate):
    """``[a + rate (p - a) for a, p in zip(averages, params)]``, each in its average's dtype, as new arrays."""
    out = []
    for index, (a, p) in enumerate(zip(averages, params)):
        check_arrays("average_update", {f"params[{index}]": (p, a.shape)})
        new = np.empty_like(a)
        kernel = _update_parallel if a.size >= PARALLEL_MIN_SIZE else _update_serial
        kernel(a.reshape(-1), p.reshape(-1), a.dtype.type(rate), new.reshape(-1))
        out.append(new)
    return out
