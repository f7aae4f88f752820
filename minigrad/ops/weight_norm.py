"""Weight normalization as one op: ``w = g * v / ||v||``, forward and backward written out (registry entries:
``minigrad/testing/entries_weight_norm.py``; ``F.weight_norm`` has its own in ``entries_norm.py``).

Weight normalization (Salimans & Kingma 2016) writes a weight as a direction ``v`` and a length ``g`` per
slice along ``dim``. Each weight-normalised layer recomputes its weight from ``v`` and ``g`` on every forward
pass; built from generic ops that is a product, a sum, a power, a division and a product again, each a graph
node and a pass over memory, and as many backward passes. :class:`WeightNorm` is one node whose two passes
are a few loops of the ``weight_norm`` kernels (``minigrad/kernels/weight_norm_reference.py``, and the numba
kernels of ``weight_norm_cpu.py``).

Shapes
------
The norm is over every dimension of ``v`` except ``dim`` (all of them for ``dim=None``); ``g`` has ``v``'s
number of dimensions with size 1 everywhere but ``dim``. The op views ``v`` as a 3-D array ``(A, C, B)``:
``A`` the product of the sizes before ``dim``, ``C`` the size of ``dim``, ``B`` of those after it
(``(1, 1, v.size)`` for ``dim=None``), so slice ``c`` is ``v[:, c, :]`` and ``g`` is a vector of length C.

Forward
-------
For each slice ``c``, with ``eps >= 0`` under the square root (Improved-GAN's ``l2normalize``; 0 is
PyTorch's weight norm)::

    n_c = sqrt(sum_i v_i^2 + eps)                     (i over the slice)
    w_i = g_c v_i / n_c

Backward
--------
Given ``gw = dL/dw``, and writing ``w_hat = v / n`` per slice. ``n`` depends on ``v`` through
``dn/dv_i = v_i / n`` (``eps`` is a constant, so this holds for any ``eps``)::

    dL/dg_c = sum_i gw_i dw_i/dg_c = sum_i gw_i v_i / n_c = w_hat . gw

    dL/dv_j = sum_i gw_i dw_i/dv_j
            = g_c gw_j / n_c + sum_i gw_i g_c v_i d(1/n_c)/dv_j
            = g_c gw_j / n_c - g_c (sum_i gw_i v_i) v_j / n_c^3
            = (g_c / n_c) (gw_j - (w_hat . gw) w_hat_j)

So with the one per-slice sum ``d_c = sum_i gw_i v_i`` (a float64 accumulation):
``dg_c = d_c / n_c`` and ``dv = (g_c / n_c) gw - (g_c d_c / n_c^3) v``: the gradient along ``w_hat``
is removed from ``gw`` (a change of ``v`` along itself does not change ``w``) and what is left is scaled by
``g / n``. The forward saves ``v``, ``g`` and the norms ``n`` (float64, one per slice).

When ``v`` and ``g`` differ in dtype, ``F.weight_norm`` casts both to their common type first (as the
composed ops would have promoted them).
"""
from __future__ import annotations

import math

from .. import kernels
from ..autograd import Function


def slices_shape(shape, dim):
    """``(A, C, B)`` for a weight of ``shape`` normalised over every dimension but ``dim`` (None: all)."""
    if dim is None:
        return 1, 1, math.prod(shape)
    d = dim % len(shape)
    return math.prod(shape[:d]), shape[d], math.prod(shape[d + 1:])


class WeightNorm(Function):
    """``w = g * v / sqrt(sum v^2 + eps)``, the sum over every dim of ``v`` but ``dim`` (see the module
    docstring for the backward pass)."""

    name = "weight_norm"

    @staticmethod
    def forward(ctx, v, g, dim=0, eps=0.0):
        a, c, b = slices_shape(v.shape, dim)
        k = kernels.for_arrays("weight_norm", v, g)
        v3, g1 = v.reshape(a, c, b), g.reshape(c)
        w, norm = k.weight_norm(v3, g1, eps)
        if any(ctx.needs_input_grad):
            ctx.save_for_backward(v3, g1, norm)
            ctx.shapes = (v.shape, g.shape)
        return w.reshape(v.shape)

    @staticmethod
    def backward(ctx, grad):
        v3, g1, norm = ctx.saved_arrays
        v_shape, g_shape = ctx.shapes
        k = kernels.for_arrays("weight_norm", v3, g1, grad)
        dv, dg = k.weight_norm_backward(grad.reshape(v3.shape), v3, g1, norm, need_g=ctx.needs_input_grad[1])
        return (dv.reshape(v_shape) if ctx.needs_input_grad[0] else None,
                None if dg is None else dg.reshape(g_shape))
