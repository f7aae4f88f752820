"""The GPU Adam update (``optim_cuda``): one CuPy ``ElementwiseKernel`` launch per parameter.

Written as array expressions (``optim_reference.py``, read that first) one Adam step is about a dozen
kernels per parameter, each reading and writing whole arrays; this kernel computes the same expressions
one element per thread, in the same order and in the parameter's dtype::

    m <- beta1 m + (1 - beta1) g
    v <- beta2 v + (1 - beta2) (g g)
    p <- p - step_size m / (sqrt(v) / sqrt(1 - beta2^t) + eps)      step_size = lr / (1 - beta1^t)

or, with ``eps_inside_sqrt``, ``p <- p - step_size m / sqrt(v / (1 - beta2^t) + eps)``.

It is compiled with ``--fmad=false``: NVRTC would otherwise fuse a product and a sum into one rounding
(an FMA), and the result would no longer be the reference's bit for bit. ``m`` and ``v`` (the optimizer's own
state, which nothing else holds) are updated in place; the new parameter goes into a new array, as the
reference does, because arrays saved by a graph that has not been backpropagated yet may still refer to
the old one. The body is plain C on scalars, which the tests also compile with the host's C compiler.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from .. import backend

__all__ = ["supports", "adam_update", "ADAM_PARAMS", "ADAM_BODY", "ADAM_EPS_INSIDE_BODY"]

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

#: Inputs: the parameter and its gradient, then the step's scalars (all of the parameter's type T).
ADAM_PARAMS = ("T p, T g, T beta1, T one_minus_beta1, T beta2, T one_minus_beta2, T step_size, T bias2, T eps",
               "T p_out, T m, T v")

_MOMENTS = """
const T m_new = beta1 * m + one_minus_beta1 * g;
const T v_new = beta2 * v + one_minus_beta2 * (g * g);
m = m_new;
v = v_new;
"""

#: ``bias2`` is sqrt(1 - beta2^t) here.
ADAM_BODY = _MOMENTS + "p_out = p - step_size * m_new / (sqrt(v_new) / bias2 + eps);\n"

#: ``bias2`` is 1 - beta2^t here.
ADAM_EPS_INSIDE_BODY = _MOMENTS + "p_out = p - step_size * m_new / sqrt(v_new / bias2 + eps);\n"

OPTIONS = ("--fmad=false",)


def supports(p, g, m, v) -> bool:
    """Whether :func:`adam_update` handles these arrays: CuPy arrays of one float dtype (float32 or float64)
    and one shape, the state arrays C-contiguous (they are written in place)."""
    arrays = (p, g, m, v)
    return (all(backend.device_of(a) == "cuda" and a.dtype == p.dtype and tuple(a.shape) == tuple(p.shape)
                for a in arrays) and p.dtype in DTYPES and m.flags.c_contiguous and v.flags.c_contiguous)


@functools.lru_cache(maxsize=None)
def _kernels(cp):
    inputs, outputs = ADAM_PARAMS
    plain = cp.ElementwiseKernel(inputs, outputs, ADAM_BODY, "minigrad_adam", options=OPTIONS)
    inside = cp.ElementwiseKernel(inputs, outputs, ADAM_EPS_INSIDE_BODY, "minigrad_adam_eps_inside",
                                  options=OPTIONS)
    return plain, inside


def adam_update(p, g, m, v, beta1, beta2, lr, eps, t, eps_inside_sqrt=False):
    """One Adam step at step number ``t`` (1 for the first): updates ``m`` and ``v`` in place and returns
    ``(new p, m, v)``, the new parameter in a new array."""
    cp = backend.cupy_module()
    dt = p.dtype.type
    bias2 = dt(1 - beta2 ** t) if eps_inside_sqrt else dt(math.sqrt(1 - beta2 ** t))
    out = cp.empty(p.shape, dtype=p.dtype)
    _kernels(cp)[1 if eps_inside_sqrt else 0](
        p, g, dt(beta1), dt(1 - beta1), dt(beta2), dt(1 - beta2), dt(lr / (1 - beta1 ** t)), bias2, dt(eps),
        out, m, v)
    return out, m, v
