"""The reference dropout kernel: a dropout mask from uniform draws, as array expressions for any array
module (NumPy or CuPy, taken from the draws).

The readable version, the CPU path, and what ``dropout_cuda.py`` (one GPU kernel) is tested against. A value
is kept when its draw ``u`` in [0, 1) satisfies ``u >= p``; the mask is ``1 / (1 - p)`` there and 0
elsewhere, in the activations' dtype (all zeros for ``p >= 1``). Drawing ``u`` is
``minigrad/ops/dropout.py``'s job (minigrad's seeded generator); this turns the draws into the mask.
"""
from __future__ import annotations

import numpy as np

from ..backend import array_module

__all__ = ["supports", "dropout_mask"]


def supports(*arrays) -> bool:
    """The reference runs on any NumPy or CuPy arrays."""
    return True


def dropout_mask(u, p, dtype):
    """The mask of uniform draws ``u`` (float32) for drop probability ``p``: ``1 / (1 - p)`` where
    ``u >= p``, else 0, a new array of ``u``'s shape in ``dtype``."""
    if p >= 1.0:
        return array_module(u).zeros(u.shape, dtype=dtype)
    mask = (u >= np.float32(p)).astype(dtype)
    mask *= np.dtype(dtype).type(1.0 / (1.0 - p))
    return mask
