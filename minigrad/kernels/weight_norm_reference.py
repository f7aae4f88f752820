"""The reference weight-norm kernels: ``w = g v / ||v||`` and its backward pass as array expressions, for
any array module (NumPy or CuPy, taken from the arrays).

The readable version, the GPU path, and what ``weight_norm_cpu.py`` (the same two functions, each two
passes per slice with numba) is tested against. ``minigrad/ops/weight_norm.py`` holds the math and its
derivation; here ``v`` arrives as a 3-D array ``(A, C, B)`` whose slice ``v[:, c, :]`` is normalised (the
op reshapes any weight and ``dim`` to that), ``g`` as a vector of length C:

* forward:  ``n_c = sqrt(sum v[:, c, :]^2 + eps)`` (float64), ``w = v * float(g_c / n_c)``;
* backward: ``d_c = sum gw[:, c, :] v[:, c, :]`` (float64), ``dg_c = d_c / n_c``,
  ``dv = gw * (g_c / n_c) - v * (g_c d_c / n_c^3)``.

Sums accumulate in float64 whatever the dtype; the per-slice factors are rounded to the weight's dtype and
the elementwise products are computed in it.
"""
from __future__ import annotations

from ..backend import array_module

__all__ = ["supports", "weight_norm", "weight_norm_backward"]


def supports(*arrays) -> bool:
    """The reference runs on any NumPy or CuPy arrays."""
    return True


def _slices(c_vector, dtype):
    """A per-slice vector (C,) shaped (1, C, 1) in ``dtype``, to broadcast against an (A, C, B) array."""
    return c_vector.reshape(1, -1, 1).astype(dtype, copy=False)


def weight_norm(v, g, eps):
    """``(w, n)``: the weight ``g_c v[:, c, :] / n_c`` in ``v``'s dtype and the float64 norms
    ``n_c = sqrt(sum v[:, c, :]^2 + eps)`` of an (A, C, B) ``v`` and a length-C ``g``."""
    xp = array_module(v)
    v64 = v.astype(xp.float64)
    norm = xp.sqrt((v64 * v64).sum(axis=(0, 2)) + eps)
    scale = g.astype(xp.float64) / norm
    return v * _slices(scale, v.dtype), norm


def weight_norm_backward(grad, v, g, norm, need_g=True):
    """``(dv, dg)`` for the upstream gradient ``grad`` of ``w`` (all (A, C, B) but ``g`` and the float64
    ``norm``, length C): ``dg`` in ``g``'s dtype (None unless ``need_g``), ``dv`` in ``v``'s."""
    xp = array_module(v)
    dot = (grad.astype(xp.float64) * v.astype(xp.float64)).sum(axis=(0, 2))
    g64 = g.astype(xp.float64)
    dv = grad * _slices(g64 / norm, v.dtype) - v * _slices(g64 * dot / (norm * norm * norm), v.dtype)
    dg = (dot / norm).astype(g.dtype) if need_g else None
    return dv, dg
