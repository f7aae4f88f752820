"""numba kernel for Gaussian noise on the CPU: ``x + std * z``, ``z ~ N(0, 1)``, drawn and added in one pass.

The stream is the one ``noise_reference.py`` defines (Philox4x32-10 blocks, the ziggurat, the layout of
values in blocks); this module computes the same values, faster. The output is cut into chunks of
:data:`CHUNK` values, spread over the cores with ``prange``; each chunk

1. encrypts its Philox blocks into a small buffer of 32-bit words (a loop of plain integer arithmetic,
   which LLVM vectorises: about half a nanosecond per word),
2. turns each word into a value: the rectangle test of the ziggurat (one table look-up and an integer
   comparison), and for the ~1.2% of words that miss it, the wedge or tail steps with extra blocks of
   their own (:func:`_slow`),
3. writes ``x + std * z`` in ``x``'s dtype.

Every value is a function of the key, the counter and its index alone, so the result does not depend on
how the chunks are shared out: one thread or many give the same array. (Compared with NumPy's
``Generator.standard_normal`` followed by a product and a sum, about 9-10 ns per float32 value here, this
is about 2.5 ns on one core.)

Same names, arguments and results as ``noise_reference.py``.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .checks import PARALLEL
from .noise_reference import (BOUND_23, BOUND_53, LAYER_F, PHILOX_M0, PHILOX_M1, PHILOX_ROUNDS, PHILOX_W0,
                              PHILOX_W1, WIDTH_23, WIDTH_23_F32, WIDTH_53, R, blocks)

__all__ = ["supports", "blocks", "add_normal"]

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

#: values per chunk (a multiple of 4, so every chunk starts on a block boundary in both layouts)
CHUNK = 4096

_M0, _M1 = np.uint64(PHILOX_M0), np.uint64(PHILOX_M1)
_W0, _W1 = np.uint64(PHILOX_W0), np.uint64(PHILOX_W1)
_MASK = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_ZERO = np.uint64(0)
_ONE = np.uint64(1)


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


@njit(inline="always", cache=True)
def _uniform32(w):
    return np.float64(w) * 2.0 ** -32 + 2.0 ** -33


@njit(inline="always", cache=True)
def _uniform52(lo, hi):
    return np.float64(((hi << _S32) | lo) >> np.uint64(12)) * 2.0 ** -52 + 2.0 ** -53


@njit(cache=True)
def _slow(word, wide, block, lane, k0, k1, bound, width, height, tail_start):
    """The ziggurat from step 1 for a value whose first word missed the rectangle (a float64 value):
    ``word`` its word, ``block`` its main block, ``lane`` its place in the block; ``wide``: the 64-bit
    layout. Extra block ``a`` is the counter ``(block lo, block hi, lane + 1, a)``."""
    lo = block & _MASK
    hi = block >> _S32
    tag = np.uint64(lane + 1)
    shift = np.uint64(11) if wide else np.uint64(9)
    attempt = _ZERO
    while True:
        layer = np.int64(word & np.uint64(0xFF))
        negative = (word >> np.uint64(8)) & _ONE
        u = np.int64(word >> shift)
        x = np.float64(u) * width[layer]
        if u < bound[layer]:
            return -x if negative else x
        w0, w1, w2, w3 = _philox(lo, hi, tag, attempt, k0, k1)
        attempt += _ONE
        if layer == 0:
            while True:                                    # the tail
                if wide:
                    t = -math.log(_uniform52(w0, w1)) / tail_start
                    s = -math.log(_uniform52(w2, w3))
                else:
                    t = -math.log(_uniform32(w0)) / tail_start
                    s = -math.log(_uniform32(w1))
                if s + s > t * t:
                    return -(tail_start + t) if negative else tail_start + t
                w0, w1, w2, w3 = _philox(lo, hi, tag, attempt, k0, k1)
                attempt += _ONE
        y = height[layer] + (_uniform52(w0, w1) if wide else _uniform32(w0)) * (height[layer + 1] - height[layer])
        if y < math.exp(-0.5 * x * x):
            return -x if negative else x
        word = ((w3 << _S32) | w2) if wide else w1


@njit(cache=True)
def _fill(words, first, k0, k1):
    """``words[4 b + i]`` = word ``i`` of the Philox block ``first + b``, for the whole buffer."""
    for b in range(words.size // 4):
        block = first + np.uint64(b)
        r0, r1, r2, r3 = _philox(block & _MASK, block >> _S32, _ZERO, _ZERO, k0, k1)
        words[4 * b] = np.uint32(r0)
        words[4 * b + 1] = np.uint32(r1)
        words[4 * b + 2] = np.uint32(r2)
        words[4 * b + 3] = np.uint32(r3)


@njit(cache=True)
def _chunk32(x, std, first, k0, k1, out, words, bound, width32, width, height, tail_start):
    """One chunk of the 32-bit layout: ``out = x + std * z`` for the values starting at block ``first``."""
    m = x.size
    _fill(words[:4 * ((m + 3) // 4)], first, k0, k1)
    for j in range(m):
        word = np.int64(words[j])
        layer = word & 0xFF
        u = word >> 9
        if u < bound[layer]:
            z = np.float32(u - 2 * ((word >> 8) & 1) * u) * width32[layer]
        else:
            z = np.float32(_slow(np.uint64(word), False, first + np.uint64(j // 4), j % 4, k0, k1, bound, width,
                                 height, tail_start))
        out[j] = x[j] + std * z


@njit(cache=True)
def _chunk64(x, std, first, k0, k1, out, words, bound, width, height, tail_start):
    """One chunk of the 64-bit layout (float64): two words per value."""
    m = x.size
    _fill(words[:4 * ((m + 1) // 2)], first, k0, k1)
    for j in range(m):
        word = (np.uint64(words[2 * j + 1]) << _S32) | np.uint64(words[2 * j])
        layer = np.int64(word & np.uint64(0xFF))
        u = np.int64(word >> np.uint64(11))
        if u < bound[layer]:
            z = np.float64(u) * width[layer]
            if (word >> np.uint64(8)) & _ONE:
                z = -z
        else:
            z = _slow(word, True, first + np.uint64(j // 2), j % 2, k0, k1, bound, width, height, tail_start)
        out[j] = x[j] + std * z


@njit(parallel=PARALLEL, cache=True)
def _add_normal32(x, std, counter, k0, k1, out, bound, width32, width, height, tail_start):
    n = x.size
    for c in prange((n + CHUNK - 1) // CHUNK):
        lo = c * CHUNK
        hi = min(n, lo + CHUNK)
        words = np.empty(CHUNK, np.uint32)
        _chunk32(x[lo:hi], std, counter + np.uint64(lo // 4), k0, k1, out[lo:hi], words, bound, width32, width,
                 height, tail_start)


@njit(parallel=PARALLEL, cache=True)
def _add_normal64(x, std, counter, k0, k1, out, bound, width, height, tail_start):
    n = x.size
    for c in prange((n + CHUNK - 1) // CHUNK):
        lo = c * CHUNK
        hi = min(n, lo + CHUNK)
        words = np.empty(2 * CHUNK, np.uint32)
        _chunk64(x[lo:hi], std, counter + np.uint64(lo // 2), k0, k1, out[lo:hi], words, bound, width, height,
                 tail_start)


def supports(x) -> bool:
    """Whether :func:`add_normal` handles ``x``: a NumPy array of float32 or float64."""
    return isinstance(x, np.ndarray) and x.dtype in DTYPES


def add_normal(x, std, key, counter):
    """``x + std * z``, ``z`` the N(0, 1) values of the stream at ``counter`` under ``key`` (one per element
    of ``x``, in C order), in a new C-ordered array of ``x``'s shape and dtype."""
    src = x if x.flags.c_contiguous else x.copy(order="C")
    out = np.empty(src.shape, dtype=src.dtype)
    if src.size == 0:
        return out
    flat, dest = src.reshape(-1), out.reshape(-1)
    k0, k1 = np.uint64(key & 0xFFFFFFFF), np.uint64(key >> 32)
    start = np.uint64(counter % 2**64)
    std = src.dtype.type(std)
    if src.dtype == np.float64:
        _add_normal64(flat, std, start, k0, k1, dest, BOUND_53, WIDTH_53, LAYER_F, R)
    else:
        _add_normal32(flat, std, start, k0, k1, dest, BOUND_23, WIDTH_23_F32, WIDTH_23, LAYER_F, R)
    return out
