"""numba kernel for dropout on the CPU: ``a * m``, ``m`` = scale where minigrad's Philox stream keeps a value
and 0 where it drops it, decided and applied in one pass.

The stream and the rule are the ones ``dropout_reference.py`` defines (value ``i`` takes word ``i % 4`` of
block ``counter + i // 4``; kept when the word is ``>= threshold``); this module computes the same array,
bit for bit, faster. The values are cut into chunks of :data:`CHUNK`, spread over the cores with
``prange``; each chunk

1. encrypts its ``CHUNK / 4`` Philox blocks into a small buffer of 32-bit words (16 KiB, it stays in the
   L1 cache; a loop of plain integer arithmetic, which LLVM vectorises),
2. writes ``out[j] = a[j] * (scale if word[j] >= threshold else 0)`` (a comparison, a select and a product:
   vectorised too).

No array of uniforms and no mask is ever made, and the backward is this same function applied to the
upstream gradient with the forward's ``(key, counter)``: the decisions are computed again instead of being
kept in memory. Every value depends on the key, the counter and its index alone, so the result does not
depend on how the chunks are shared out: one thread or many give the same array.

Arrays: float32 and float64 (:func:`supports`; the reference handles the rest). A non-contiguous input
(a transposed activation, a broadcast upstream gradient) is first copied to C order; value ``i`` is
element ``i`` in C order either way.

Speed
-----
Measured on a busy 2-core machine, one thread (numba 0.68, NumPy 2.4), the best of 7 runs, against the
earlier CPU path (float32 uniforms from NumPy's ``Generator.random``, a mask of them, ``x * mask`` and
``grad * mask``)::

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python -m benchmarks.dropout

* a (128, 64, 16, 16) float32 activation, p = 0.5, forward and backward: 13.9-14.1 ms with the mask,
  3.7-3.9 ms fused (two runs);
* the 9 dropouts of one training step of ssgan's default model (``benchmarks/dropout.py``'s ``SEED_STEP``, 10.5 M values, a
  backward for 7 of them, every result kept alive as in a step): 45.7-49.6 ms with the mask, 32.0-32.4 ms
  fused. Much of that is writing fresh memory (the results do not fit in the caches): one array at a time,
  the fused pass took 0.6 ns per value on 0.8 M values and 0.8-1.3 ns on 2-8 M.

Whole training steps of the default model (benchmarks/train_step.py's ``make_trainer``, 5 interleaved
steps of each, same machine, busy): a median of 648 ms with the mask path, 597 ms fused. Timings on this
machine vary by 10% or more from run to run; take these as rough.

Philox4x32-10 is repeated here rather than imported from ``noise_cpu.py``: numba's on-disk cache
(``cache=True``) checks only the source file a function is defined in, so a compiled function calling
into another module's could go stale when that module changes.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .checks import PARALLEL
from .dropout_reference import WORDS_PER_BLOCK, blocks
from .noise_reference import PHILOX_M0, PHILOX_M1, PHILOX_ROUNDS, PHILOX_W0, PHILOX_W1

__all__ = ["supports", "blocks", "philox_dropout"]

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

#: values per chunk (a multiple of 4, so every chunk starts on a block boundary)
CHUNK = 4096

_M0, _M1 = np.uint64(PHILOX_M0), np.uint64(PHILOX_M1)
_W0, _W1 = np.uint64(PHILOX_W0), np.uint64(PHILOX_W1)
_MASK = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_ZERO = np.uint64(0)


@njit(inline="always", cache=True)
def _philox(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 on uint64 scalars holding 32-bit words (as ``noise_reference.philox4x32``)."""
    for _ in range(PHILOX_ROUNDS):
        p0 = _M0 * c0
        p1 = _M1 * c2
        c0, c1, c2, c3 = (p1 >> _S32) ^ c1 ^ k0, p1 & _MASK, (p0 >> _S32) ^ c3 ^ k1, p0 & _MASK
        k0 = (k0 + _W0) & _MASK
        k1 = (k1 + _W1) & _MASK
    return c0, c1, c2, c3


@njit(cache=True)
def _words(words, first, k0, k1):
    """``words[4 b + l]`` = word ``l`` of the Philox block ``first + b``, for the whole buffer."""
    for b in range(words.size // 4):
        block = first + np.uint64(b)
        r0, r1, r2, r3 = _philox(block & _MASK, block >> _S32, _ZERO, _ZERO, k0, k1)
        words[4 * b] = np.uint32(r0)
        words[4 * b + 1] = np.uint32(r1)
        words[4 * b + 2] = np.uint32(r2)
        words[4 * b + 3] = np.uint32(r3)


@njit(cache=True)
def _chunk(a, threshold, scale, first, k0, k1, out, words):
    """One chunk: ``out = a * (scale or 0)`` for the values whose words start at block ``first``."""
    m = a.size
    _words(words[:4 * ((m + 3) // 4)], first, k0, k1)
    zero = scale - scale
    for j in range(m):
        out[j] = a[j] * (scale if np.uint64(words[j]) >= threshold else zero)


@njit(parallel=PARALLEL, cache=True)
def _dropout(a, threshold, scale, counter, k0, k1, out):
    n = a.size
    for c in prange((n + CHUNK - 1) // CHUNK):
        lo = c * CHUNK
        hi = min(n, lo + CHUNK)
        words = np.empty(CHUNK, np.uint32)
        _chunk(a[lo:hi], threshold, scale, counter + np.uint64(lo // WORDS_PER_BLOCK), k0, k1, out[lo:hi], words)


def supports(a) -> bool:
    """Whether :func:`philox_dropout` handles ``a``: a NumPy array of float32 or float64."""
    return isinstance(a, np.ndarray) and a.dtype in DTYPES


def philox_dropout(a, threshold, scale, key, counter):
    """``a * m``, ``m = scale`` where the stream at ``counter`` under ``key`` keeps the value (its word
    ``>= threshold``) and 0 where it drops it: a new C-ordered array of ``a``'s shape and dtype."""
    src = a if a.flags.c_contiguous else a.copy(order="C")
    out = np.empty(src.shape, dtype=src.dtype)
    if src.size == 0:
        return out
    if not 0 <= int(threshold) <= 2**32:
        raise ValueError(f"philox_dropout: threshold must be in [0, 2**32], got {threshold}")
    k0, k1 = np.uint64(int(key) & 0xFFFFFFFF), np.uint64(int(key) >> 32)
    _dropout(src.reshape(-1), np.uint64(threshold), src.dtype.type(scale), np.uint64(int(counter) % 2**64), k0, k1,
             out.reshape(-1))
    return out
