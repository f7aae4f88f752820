"""numba kernel for the Adam update on the CPU: one pass over a parameter instead of about a dozen.

``optim_reference.py`` writes Adam's update as array expressions (the readable reference, and the CuPy
path): each of them reads and writes whole arrays, so one parameter is swept some twelve times and as
many temporary arrays are allocated. This loop computes the same expressions, in the same order and in
the parameter's dtype, one element at a time::

    m <- beta1 m + (1 - beta1) g
    v <- beta2 v + (1 - beta2) (g g)
    p <- p - step_size m / (sqrt(v) / sqrt(1 - beta2^t) + eps)      step_size = lr / (1 - beta1^t)

``m`` and ``v`` (the optimizer's own state arrays, which nothing else holds) are updated in place; the
new parameter goes into a new array, as the reference does, because arrays saved by a graph that has not
been backpropagated yet may still refer to the old one.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .checks import PARALLEL, check_arrays
from .optim_reference import adam_update_joined

__all__ = ["supports", "adam_update", "adam_update_joined"]

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@njit(parallel=PARALLEL, cache=True)
def _adam(p, g, m, v, beta1, one_minus_beta1, beta2, one_minus_beta2, step_size, bias2, bias2_sqrt, eps,
          eps_inside_sqrt, out):
    for i in prange(p.size):
        gi = g[i]
        mi = beta1 * m[i] + one_minus_beta1 * gi
        vi = beta2 * v[i] + one_minus_beta2 * (gi * gi)
        m[i] = mi
        v[i] = vi
        if eps_inside_sqrt:     # the same for every element: the branch costs nothing measurable
            out[i] = p[i] - step_size * mi / math.sqrt(vi / bias2 + eps)
        else:
            out[i] = p[i] - step_size * mi / (math.sqrt(vi) / bias2_sqrt + eps)


def supports(p, *others) -> bool:
    """Whether :func:`adam_update` handles these arrays (a parameter, then its gradient and moments, or only
    its moments): C-contiguous NumPy arrays of one float dtype (float32 or float64) and one shape."""
    arrays = (p, *others)
    return all(isinstance(a, np.ndarray) and a.dtype == p.dtype and a.flags.c_contiguous and a.shape == p.shape
               for a in arrays) and p.dtype in DTYPES


def adam_update(p, g, m, v, beta1, beta2, lr, eps, t, eps_inside_sqrt=False):
    """One Adam step at step number ``t`` (1 for the first): updates ``m`` and ``v`` in place and returns
    ``(new p, m, v)``, the new parameter in a new array. ``eps_inside_sqrt``:
    ``p - step_size m / sqrt(v / (1 - beta2^t) + eps)``."""
    check_arrays("adam_update", {"g": (g, p.shape), "m": (m, p.shape), "v": (v, p.shape)})
    dt = p.dtype.type
    out = np.empty_like(p)
    _adam(p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1), dt(beta1), dt(1 - beta1), dt(beta2),
          dt(1 - beta2), dt(lr / (1 - beta1 ** t)), dt(1 - beta2 ** t), dt(math.sqrt(1 - beta2 ** t)), dt(eps),
          bool(eps_inside_sqrt), out.reshape(-1))
    return out, m, v
