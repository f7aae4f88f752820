"""numba kernels for weight normalization on the CPU: ``w = g v / ||v||`` forward and backward, two passes
over each slice instead of the dozen of the composed ops.

Weight norm recomputes every weight-normalised layer's weight on every forward pass (20 times per step of
Improved-GAN's MNIST models), so it is worth one loop per direction. ``v`` is seen as (A, C, B), slice
``v[:, c, :]`` normalised; the slices are spread over the cores with ``prange`` (each thread owns whole
slices: nothing is shared). Per slice:

* forward:  the sum of squares in float64, ``n_c = sqrt(sum + eps)``, then ``w = v * (g_c / n_c)``;
* backward: ``d_c = sum gw v`` in float64, ``dg_c = d_c / n_c``, then
  ``dv = gw * (g_c / n_c) - v * (g_c d_c / n_c^3)``.

The two sums are compiled with ``fastmath={"reassoc"}``, which lets LLVM split them over several
accumulators and vectorise them (the order of a float64 sum of float32 terms changes the result by far
less than float32's rounding); the elementwise products are computed exactly as in
``weight_norm_reference.py``, in the weight's dtype, without fused multiply-adds.

Same names, arguments and results as ``weight_norm_reference.py``.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .checks import PARALLEL, check_arrays

__all__ = ["supports", "weight_norm", "weight_norm_backward"]

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@njit(fastmath={"reassoc"}, cache=True)
def _sum_squares(row):
    s = 0.0
    for i in range(row.size):
        t = np.float64(row[i])
        s += t * t
    return s


@njit(fastmath={"reassoc"}, cache=True)
def _dot(a, b):
    s = 0.0
    for i in range(a.size):
        s += np.float64(a[i]) * np.float64(b[i])
    return s


@njit(cache=True)
def _scale_into(row, factor, out):
    for i in range(row.size):
        out[i] = row[i] * factor


@njit(cache=True)
def _combine_into(grad, v, scale, coef, out):
    for i in range(v.size):
        out[i] = grad[i] * scale - v[i] * coef


@njit(parallel=PARALLEL, cache=True)
def _forward(v, g, eps, w, norm, scale):
    """``scale`` (C,) in the weight's dtype receives ``g_c / n_c`` rounded to it, the factor of the slice."""
    n_a, n_c = v.shape[0], v.shape[1]
    for c in prange(n_c):
        s = 0.0
        for a in range(n_a):
            s += _sum_squares(v[a, c])
        nc = math.sqrt(s + eps)
        norm[c] = nc
        scale[c] = np.float64(g[c]) / nc
        factor = scale[c]
        for a in range(n_a):
            _scale_into(v[a, c], factor, w[a, c])


@njit(parallel=PARALLEL, cache=True)
def _backward(grad, v, g, norm, dv, dg, scale, coef):
    """``scale`` and ``coef`` (C,) in the weight's dtype receive the two factors of ``dv``, rounded to it."""
    n_a, n_c = v.shape[0], v.shape[1]
    for c in prange(n_c):
        d = 0.0
        for a in range(n_a):
            d += _dot(grad[a, c], v[a, c])
        nc = norm[c]
        gc = np.float64(g[c])
        dg[c] = d / nc
        scale[c] = gc / nc
        coef[c] = gc * d / (nc * nc * nc)
        sc, cc = scale[c], coef[c]
        for a in range(n_a):
            _combine_into(grad[a, c], v[a, c], sc, cc, dv[a, c])


def _c_order(a):
    return a if a.flags.c_contiguous else a.copy(order="C")


def supports(v, g, *rest) -> bool:
    """Whether these kernels handle the arrays: NumPy arrays of float32 or float64, ``g`` (and an upstream
    gradient) of ``v``'s dtype."""
    return all(isinstance(a, np.ndarray) for a in (v, g, *rest)) and v.dtype in DTYPES and all(
        a.dtype == v.dtype for a in (g, *rest))


def weight_norm(v, g, eps):
    """``(w, n)``: the weight ``g_c v[:, c, :] / n_c`` in ``v``'s dtype and the float64 norms
    ``n_c = sqrt(sum v[:, c, :]^2 + eps)`` of an (A, C, B) ``v`` and a length-C ``g``."""
    if v.ndim != 3:
        raise ValueError(f"weight_norm: argument v must be a 3-D (A, C, B) array, got shape {v.shape}")
    check_arrays("weight_norm", {"g": (g, (v.shape[1],))})
    v, g = _c_order(v), _c_order(g)
    w = np.empty_like(v)
    norm = np.empty(v.shape[1], dtype=np.float64)
    _forward(v, g, float(eps), w, norm, np.empty(v.shape[1], dtype=v.dtype))
    return w, norm


def weight_norm_backward(grad, v, g, norm, need_g=True):
    """``(dv, dg)`` for the upstream gradient ``grad`` of ``w`` (all (A, C, B) but ``g`` and the float64
    ``norm``, length C): ``dg`` in ``g``'s dtype (None unless ``need_g``), ``dv`` in ``v``'s."""
    if v.ndim != 3:
        raise ValueError(f"weight_norm_backward: argument v must be a 3-D (A, C, B) array, got shape {v.shape}")
    n_c = v.shape[1]
    check_arrays("weight_norm_backward", {"grad": (grad, v.shape), "g": (g, (n_c,)), "norm": (norm, (n_c,))})
    grad, v, g = _c_order(grad), _c_order(v), _c_order(g)
    dv = np.empty_like(v)
    dg = np.empty(n_c, dtype=np.float64)
    _backward(grad, v, g, np.ascontiguousarray(norm, dtype=np.float64), dv, dg, np.empty(n_c, dtype=v.dtype),
              np.empty(n_c, dtype=v.dtype))
    return dv, (dg.astype(g.dtype) if need_g else None)
