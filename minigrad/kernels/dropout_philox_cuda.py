"""The GPU Philox dropout kernel (``dropout_philox_cuda``): dropout decided by minigrad's counter-based
Philox stream and applied in one CuPy ``ElementwiseKernel`` launch, each way.

Same names, arguments and results as the ``dropout_philox`` family of ``dropout_reference.py`` (read that
first: the stream, the layout and the rule). Value ``i`` (in C order) takes word ``i % 4`` of Philox block
``counter + i // 4`` and is kept when that word is ``>= threshold``; the result is ``a * scale`` there and
``a * 0`` elsewhere. The forward pass applies it to the activations and the backward to the upstream
gradient with the same ``(key, counter)``, so the GPU, like the CPU, keeps no mask, and both devices make
the same decisions for the same seed.

Each thread computes the whole Philox block of its value (ten rounds of two 32x32 -> 64-bit products) and
keeps one of its four words: four times the arithmetic of sharing a block between four threads, but the
arithmetic is far from the limit of a kernel that reads and writes one value per thread, and the body stays
a plain C expression on scalars, which the tests also compile with the host's C compiler and compare
with the reference bit for bit.

CuPy is imported lazily (through ``minigrad.backend``), so this module imports on machines without it.
"""
from __future__ import annotations

import functools

import numpy as np

from .. import backend
from .dropout_reference import blocks
from .noise_reference import PHILOX_M0, PHILOX_M1, PHILOX_ROUNDS, PHILOX_W0, PHILOX_W1

__all__ = ["supports", "blocks", "philox_dropout", "PHILOX_DROPOUT_PARAMS", "PHILOX_DROPOUT_BODY"]

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

#: the kernel's parameters: the values, the threshold (up to 2**32, so 64 bits), the scale, the 64-bit key
#: and the counter of the first block
PHILOX_DROPOUT_PARAMS = ("T a, uint64 threshold, T scale, uint64 key, uint64 counter", "T out")

#: one value: its block's counter words, ten Philox rounds, its word, the product
PHILOX_DROPOUT_BODY = f"""
unsigned long long block = counter + (unsigned long long)(i / 4);
unsigned int c0 = (unsigned int)block, c1 = (unsigned int)(block >> 32), c2 = 0u, c3 = 0u;
unsigned int k0 = (unsigned int)key, k1 = (unsigned int)(key >> 32);
for (int r = 0; r < {PHILOX_ROUNDS}; ++r) {{
    unsigned long long p0 = {PHILOX_M0:#x}ull * c0, p1 = {PHILOX_M1:#x}ull * c2;
    unsigned int n0 = (unsigned int)(p1 >> 32) ^ c1 ^ k0, n2 = (unsigned int)(p0 >> 32) ^ c3 ^ k1;
    c1 = (unsigned int)p1; c3 = (unsigned int)p0; c0 = n0; c2 = n2;
    k0 += {PHILOX_W0:#x}u; k1 += {PHILOX_W1:#x}u;
}}
unsigned int lane = (unsigned int)(i % 4);
unsigned int word = lane == 0 ? c0 : lane == 1 ? c1 : lane == 2 ? c2 : c3;
out = a * ((unsigned long long)word >= threshold ? scale : (T)0);
"""


def supports(a) -> bool:
    """Whether this kernel takes the array: a float32 or float64 CuPy array."""
    return backend.device_of(a) == "cuda" and a.dtype in DTYPES


@functools.lru_cache(maxsize=None)
def _kernel(cp):
    return cp.ElementwiseKernel(*PHILOX_DROPOUT_PARAMS, PHILOX_DROPOUT_BODY, "minigrad_dropout_philox")


def philox_dropout(a, threshold, scale, key, counter):
    """CUDA version of :func:`minigrad.kernels.dropout_reference.philox_dropout`: a new C-ordered array of
    ``a``'s shape and dtype (a strided ``a`` is copied to C order first, so that ``i`` is the C-order index)."""
    cp = backend.cupy_module()
    if not 0 <= int(threshold) <= 2**32:
        raise ValueError(f"philox_dropout: threshold must be in [0, 2**32], got {threshold}")
    src = a if a.flags.c_contiguous else cp.ascontiguousarray(a)
    out = cp.empty(src.shape, dtype=src.dtype)
    if src.size:
        _kernel(cp)(src, np.uint64(threshold), src.dtype.type(scale), np.uint64(int(key) % 2**64),
                    np.uint64(int(counter) % 2**64), out)
    return out
