"""The reference kernel of the parameter average: ``a <- a + rate (p - a)`` as array expressions, for any
array module (NumPy or CuPy, taken from the arrays).

The readable version, the GPU path, and what ``average_cpu.py`` (one numba pass per parameter) is tested
against. ``minigrad/averaging.py`` (``AveragedModel.update_parameters``) hands over every trained
parameter of a model at once, with its running average; the rule is computed in the parameter's dtype, in
that order: the difference, its product with ``rate``, the sum. Each new average is a new array: the old
one may still be referred to (by a graph of the averaged model that has not been backpropagated, or by
whoever read ``.data``), as with the optimizers' updates.
"""
from __future__ import annotations

__all__ = ["supports", "average_update"]


def supports(*arrays) -> bool:
    """The reference runs on any NumPy or CuPy arrays."""
    return True


def average_update(averages, params, rate):
    """``[a + rate (p - a) for a, p in zip(averages, params)]``, each in its average's dtype (``rate`` cast to
    it), as new arrays."""
    return [a + a.dtype.type(rate) * (p - a) for a, p in zip(averages, params)]
