"""The GPU Adam update (``optim_cuda``): one CuPy ``ElementwiseKernel`` launch per parameter, or one for all
of them.

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

All the parameters in one launch
--------------------------------
``Adam`` on the GPU keeps the parameters and the moments in flat buffers (``minigrad/optim.py``), so one
pass of the kernel updates them all - but the gradients are separate arrays, fresh from the backward pass.
:func:`adam_update_joined` reads them where they are: its kernel takes up to :data:`MOST` gradients as
``raw`` arguments with the offsets where each begins in the flat order, and the thread for value ``i``
takes its gradient from the array whose range holds ``i`` (the selection of ``shape_cuda.py``'s join
kernel), then computes the same expressions. More gradients take a launch per :data:`MOST`.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from .. import backend
from .shape_cuda import join_body

__all__ = ["supports", "adam_update", "adam_update_joined", "ADAM_PARAMS", "ADAM_BODY", "ADAM_EPS_INSIDE_BODY",
           "MOST", "joined_params", "joined_body"]

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

#: The most gradients one launch of :func:`adam_update_joined` reads (its kernel's parameters grow with them).
MOST = 32


def joined_params(k):
    """The parameters of the kernel reading ``k`` gradients ``g0 ..`` (raw, with the offsets ``o1 ..``)."""
    inputs, outputs = ADAM_PARAMS
    gradients = [f"raw T g{j}" for j in range(k)] + [f"int64 o{j}" for j in range(1, k)]
    return inputs.replace("T g,", ", ".join(gradients) + ","), outputs


def joined_body(k, eps_inside_sqrt=False):
    """Value ``i``'s gradient from the array whose range holds it, then the update."""
    return "T g;\n" + join_body(k, "g", "g") + (ADAM_EPS_INSIDE_BODY if eps_inside_sqrt else ADAM_BODY)


def supports(p, *others) -> bool:
    """Whether the kernels handle these arrays (a parameter, then its gradient and moments, or only its
    moments, as :func:`adam_update_joined` is asked): CuPy arrays of one float dtype (float32 or float64) and
    one shape, the moments - the last two, written in place - C-contiguous."""
    arrays = (p, *others)
    return (all(backend.device_of(a) == "cuda" and a.dtype == p.dtype and tuple(a.shape) == tuple(p.shape)
                for a in arrays) and p.dtype in DTYPES and all(a.flags.c_contiguous for a in arrays[-2:]))


@functools.lru_cache(maxsize=None)
def _kernels(cp):
    inputs, outputs = ADAM_PARAMS
    plain = cp.ElementwiseKernel(inputs, outputs, ADAM_BODY, "minigrad_adam", options=OPTIONS)
    inside = cp.ElementwiseKernel(inputs, outputs, ADAM_EPS_INSIDE_BODY, "minigrad_adam_eps_inside",
                                  options=OPTIONS)
    return plain, inside


@functools.lru_cache(maxsize=None)
def _joined_kernel(cp, k, eps_inside_sqrt):
    name = f"minigrad_adam{'_eps_inside' if eps_inside_sqrt else ''}_joined{k}"
    return cp.ElementwiseKernel(*joined_params(k), joined_body(k, eps_inside_sqrt), name, options=OPTIONS)


def _scalars(p, beta1, beta2, lr, eps, t, eps_inside_sqrt):
    """The kernel's scalar arguments, in the parameter's dtype: beta1, 1 - beta1, beta2, 1 - beta2, the step
    size, the bias correction of v and eps."""
    dt = p.dtype.type
    bias2 = dt(1 - beta2 ** t) if eps_inside_sqrt else dt(math.sqrt(1 - beta2 ** t))
    return dt(beta1), dt(1 - beta1), dt(beta2), dt(1 - beta2), dt(lr / (1 - beta1 ** t)), bias2, dt(eps)


def adam_update_joined(p, grads, m, v, beta1, beta2, lr, eps, t, eps_inside_sqrt=False):
    """One Adam step of flat ``p``, ``m``, ``v`` whose gradient is ``grads``, arrays whose values, in C order
    and one after the other, are the flat gradient: updates ``m`` and ``v`` in place, returns ``(new p, m,
    v)``. One launch per :data:`MOST` gradients; nothing is copied first."""
    cp = backend.cupy_module()
    out = cp.empty(p.shape, dtype=p.dtype)
    scalars = _scalars(p, beta1, beta2, lr, eps, t, eps_inside_sqrt)
    start = 0
    for first in range(0, len(grads), MOST):
        part = grads[first:first + MOST]
        stop = start + sum(g.size for g in part)
        offsets = [np.int64(o) for o in np.cumsum([g.size for g in part])[:-1]]
        if stop > start:
            _joined_kernel(cp, len(part), bool(eps_inside_sqrt))(
                p[start:stop], *part, *offsets, *scalars, out[start:stop], m[start:stop], v[start:stop])
        start = stop
    return out, m, v


def adam_update(p, g, m, v, beta1, beta2, lr, eps, t, eps_inside_sqrt=False):
    """One Adam step at step number ``t`` (1 for the first): updates ``m`` and ``v`` in place and returns
    ``(new p, m, v)``, the new parameter in a new array."""
    cp = backend.cupy_module()
    out = cp.empty(p.shape, dtype=p.dtype)
    _kernels(cp)[1 if eps_inside_sqrt else 0](p, g, *_scalars(p, beta1, beta2, lr, eps, t, eps_inside_sqrt), out, m, v)
    return out, m, v
