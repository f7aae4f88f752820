"""The reference optimizer kernel: Adam's update as array expressions, for any array module (NumPy or CuPy,
taken from the arrays it is given).

The readable version, the GPU path, and what ``optim_cpu.py`` (the same expressions in one numba pass) is
tested against, bit for bit. In the parameter's dtype, at step ``t`` (1 for the first)::

    m <- beta1 m + (1 - beta1) g
    v <- beta2 v + (1 - beta2) (g g)
    p <- p - step_size m / (sqrt(v) / sqrt(1 - beta2^t) + eps)      step_size = lr / (1 - beta1^t)

or, with ``eps_inside_sqrt``, ``p <- p - step_size m / sqrt(v / (1 - beta2^t) + eps)``.
"""
from __future__ import annotations

import math

from ..backend import array_module

__all__ = ["supports", "adam_update", "adam_update_joined"]


def supports(*arrays) -> bool:
    """The reference runs on any NumPy or CuPy arrays."""
    return True


def adam_update(p, g, m, v, beta1, beta2, lr, eps, t, eps_inside_sqrt=False):
    """One Adam step; returns ``(new p, new m, new v)``, three new arrays (nothing is written into)."""
    dt = p.dtype.type
    xp = array_module(g)
    m = dt(beta1) * m + dt(1 - beta1) * g
    v = dt(beta2) * v + dt(1 - beta2) * (g * g)
    step_size = lr / (1 - beta1 ** t)
    if eps_inside_sqrt:
        denom = xp.sqrt(v / dt(1 - beta2 ** t) + dt(eps))
    else:
        denom = xp.sqrt(v) / dt(math.sqrt(1 - beta2 ** t)) + dt(eps)
    return p - dt(step_size) * m / denom, m, v


def adam_update_joined(p, grads, m, v, beta1, beta2, lr, eps, t, eps_inside_sqrt=False):
    """:func:`adam_update` of flat ``p``, ``m``, ``v`` whose gradient is ``grads``: arrays whose values, in C
    order and one after the other, are the flat gradient (the GPU reads them where they are)."""
    g = array_module(p).concatenate([a.reshape(-1) for a in grads])
    return adam_update(p, g, m, v, beta1, beta2, lr, eps, t, eps_inside_sqrt)
