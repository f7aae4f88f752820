"""The reference dropout kernel (family ``dropout``), as array expressions for any array module
(NumPy or CuPy, taken from the input): dropout whose keep/drop decisions come from minigrad's counter-based
Philox stream, computed again from ``(key, counter)`` when needed, so no mask is ever stored. What
``F.dropout`` computes on both devices; ``dropout_philox_cpu.py`` (one numba pass) and
``dropout_philox_cuda.py`` (one CUDA kernel) are tested against it.

The Philox dropout stream
-------------------------
The generator is Philox4x32-10 (``noise_reference.py`` explains it): block ``b`` of the stream is the
encryption of the counter words ``(b mod 2**32, b // 2**32, 0, 0)`` under the 64-bit key, four 32-bit
words. A dropout of ``n`` values at counter ``c`` reads the blocks ``c, c + 1, ..., c + ceil(n / 4) - 1``
(counters modulo 2**64), and value ``i`` (in C order) takes

    word ``i % 4`` of block ``c + i // 4``

whatever the dtype (float32 and float64 alike use one 32-bit word per value). :func:`blocks` gives the
count, which is how far the generator's counter moves on. The blocks are reserved from the same counter as
Gaussian noise's (``minigrad/random.py``, ``noise_stream``), so a dropout and a noise draw never read the
same block; the extra blocks the ziggurat reads have a non-zero third counter word, so they never meet a
dropout block either.

The rule
--------
With the threshold ``t`` (an integer, 0 <= t <= 2**32), value ``i`` is **kept when its word w_i >= t**.
The words are uniform on {0, ..., 2**32 - 1}, so exactly ``2**32 - t`` of the ``2**32`` possible words keep
a value: the keep probability is exactly ``1 - t / 2**32``. ``ops/dropout.py`` takes
``t = round(p * 2**32)`` for a drop probability ``p`` (round to nearest, clamped to [0, 2**32]), so
``p = 0`` keeps everything, ``p = 1`` drops everything, and the drop probability is within
``2**-33`` of ``p``.

The result is ``a * m`` with ``m = scale`` where kept and ``m = 0`` where dropped (``scale`` cast to
``a``'s dtype): a product with 0 rather than a written 0, exactly as ``x * mask`` of a stored mask, so a
NaN or infinity at a dropped place still shows as NaN (as in PyTorch). The forward applies it to the
activations and the backward to the upstream gradient, with the same ``(key, counter)``: the same
decisions, recomputed.
"""
from __future__ import annotations

import numpy as np

from ..backend import array_module
from .noise_reference import philox4x32

__all__ = ["supports", "blocks", "keep_mask", "philox_dropout", "WORDS_PER_BLOCK"]

#: 32-bit words per Philox block, one per value
WORDS_PER_BLOCK = 4


def supports(*arrays) -> bool:
    """The reference runs on any NumPy or CuPy arrays."""
    return True


def blocks(n) -> int:
    """The Philox blocks a dropout of ``n`` values reads (what the generator's counter moves on by)."""
    return -(-int(n) // WORDS_PER_BLOCK)


def keep_mask(n, threshold, key, counter, xp=np):
    """The keep decisions of ``n`` values at ``counter`` under ``key``: a bool array of module ``xp``, True
    where word ``i`` of the stream is ``>= threshold``."""
    u64 = xp.uint64
    block = xp.arange(blocks(n), dtype=u64) + u64(int(counter) % 2**64)
    zero = xp.zeros(block.shape, dtype=u64)
    words = philox4x32(block & u64(0xFFFFFFFF), block // u64(2**32), zero, zero, int(key))
    word = xp.stack(words, axis=1).reshape(-1)[:int(n)]      # value i: word i % 4 of block i // 4
    return word >= u64(int(threshold))


def philox_dropout(a, threshold, scale, key, counter):
    """``a * m``, ``m = scale`` where the stream at ``counter`` under ``key`` keeps the value (its word
    ``>= threshold``) and 0 where it drops it: a new array of ``a``'s shape and dtype (value ``i`` is
    element ``i`` of ``a`` in C order, whatever its strides)."""
    xp = array_module(a)
    kind = a.dtype.type
    keep = keep_mask(a.size, threshold, key, counter, xp).reshape(a.shape)
    return a * xp.where(keep, kind(scale), kind(0))
