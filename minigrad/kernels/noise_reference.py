"""The reference Gaussian-noise kernel: ``x + std * z`` with ``z ~ N(0, 1)`` drawn from a counter-based
generator, as array expressions for any array module (NumPy or CuPy, taken from the input).

This is the readable version, and what ``noise_cpu.py`` (the same draw as one numba pass, spread over the
cores) is tested against. It defines the stream; both modules compute the same values.

The generator: Philox4x32-10
----------------------------
Philox4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC 2011) is
a keyed bijection of 128-bit counters: ten rounds of two 32 x 32 -> 64-bit products and xors, the 64-bit
key ``(k0, k1)`` bumped by two fixed odd constants between rounds. Encrypting the counters 0, 1, 2, ...
gives a stream that passes the TestU01 BigCrush battery. There is no state to carry from one number to
the next: the ``i``-th block is a function of ``(key, i)`` alone, so any part of a draw can be computed on
its own, in any order, on any number of threads, with the same result. minigrad's noise generator is a
key and a counter of blocks used so far (``minigrad/random.py``).

The layout: which bits make which value
---------------------------------------
A draw of ``n`` values at counter ``c`` reads the blocks ``c, c + 1, ...`` (counter words
``(b mod 2**32, b // 2**32, 0, 0)``):

* float64: value ``j`` takes the two words ``2 (j % 2)`` (low half) and ``2 (j % 2) + 1`` (high half) of
  block ``c + j // 2`` as one 64-bit word; ``ceil(n / 2)`` blocks;
* any other dtype (float32, float16): value ``j`` takes word ``j % 4`` of block ``c + j // 4``, 32 bits;
  ``ceil(n / 4)`` blocks.

:func:`blocks` gives that count: the generator's counter moves on by it after the draw.

From bits to N(0, 1): the ziggurat
----------------------------------
The ziggurat method (Marsaglia and Tsang, "The ziggurat method for generating random variables", 2000) is
exact: it covers the half density ``f(x) = exp(-x^2 / 2)``, x >= 0, with 256 layers of equal area ``A``:
a base layer (a strip of height ``f(R)`` plus the tail beyond ``R = 3.6541528853610088``) and 255
rectangles stacked on it. With ``x_1 = R`` and ``x_{i+1} = f^-1(f(x_i) + A / x_i)`` (down to
``x_256 = 0``), layer ``i`` has width ``x_i`` (the base's width is ``x_0 = A / f(R)``, a rectangle of
area ``A``) and lies under the curve up to ``x_{i+1}``. One word gives the layer ``i`` (its low 8 bits),
the sign (bit 8) and a uniform integer ``u`` (the rest: 23 bits, or 55 bits of which the top 53 are used,
``u = word >> 11``); the candidate is ``x = u x_i / 2**bits``:

1. ``x < x_{i+1}`` (about 98.8% of draws): the point is under the curve; ``z = +-x``. The test is an
   integer comparison, ``u < ceil(2**bits x_{i+1} / x_i)``.
2. otherwise, for ``i >= 1`` (the wedge): draw ``y`` uniform between ``f(x_i)`` and ``f(x_{i+1})``; accept
   ``x`` when ``y < f(x)``, else start again from step 1 with a new word;
3. for the base layer, ``x >= R`` means the tail: Marsaglia's method, ``t = -ln(U1) / R``,
   ``s = -ln(U2)``, accept ``R + t`` when ``2 s > t^2``, else draw again.

The extra words of steps 2 and 3 come from blocks of their own, so the main blocks stay one value per word:
value ``j``'s ``a``-th extra block (a = 0, 1, ...) is the counter ``(b mod 2**32, b // 2**32, lane + 1, a)``,
``b`` its main block and ``lane`` its place in it (0-3 for 32-bit words, 0-1 for 64-bit ones). No main
block has a non-zero third word, so the two kinds never meet. From an extra block, 32-bit layouts take
``U = (w0 + 1/2) 2**-32`` for ``y`` (or ``t``) and ``w1`` as the next word (or ``U2``); the float64 layout
takes ``U = (((w1 w0) >> 12) + 1/2) 2**-52`` from the 64-bit words ``w1 w0`` and ``w3 w2`` (for ``y``
or ``t``, and the next word or ``U2``).

The values: float32 (and float16) ``z = float32(+-u) * float32(x_i / 2**23)`` on step 1 (one rounding),
the float64 candidate of steps 2 and 3 rounded to float32 otherwise; float64 ``z`` is the float64
candidate. The result is ``x + std * z`` in ``x``'s dtype, in C order. (The exponentials and logarithms
of steps 2 and 3 come from the array module here and from the C library in ``noise_cpu.py``; where the two
differ in the last bit, a rare tail value of the float64 layout differs in its last bit.)
"""
from __future__ import annotations

import math

import numpy as np

from ..backend import array_module

__all__ = ["supports", "blocks", "add_normal", "standard_normal", "philox4x32",
           "R", "LAYER_X", "LAYER_F", "thresholds"]

# ----------------------------------------------------------------------------------------- Philox4x32-10
PHILOX_M0, PHILOX_M1 = 0xD2511F53, 0xCD9E8D57      # the round multipliers
PHILOX_W0, PHILOX_W1 = 0x9E3779B9, 0xBB67AE85      # the key increments (golden ratio, sqrt(3) - 1)
PHILOX_ROUNDS = 10
_MASK32 = 0xFFFFFFFF


def _shr(xp, a, bits):
    """``a >> bits`` for a uint64 array, written as a floor division by ``2**bits`` (the same value; every
    array module has it)."""
    return a // xp.uint64(2**bits)


def _shl(xp, a, bits):
    """``a << bits`` (modulo 2**64) for a uint64 array, as a product with ``2**bits``."""
    return a * xp.uint64(2**bits)


def philox4x32(c0, c1, c2, c3, key):
    """Philox4x32-10 of the counters ``(c0, c1, c2, c3)`` (uint64 arrays holding 32-bit words) under the
    64-bit ``key``: the four output words, uint64 arrays of values below 2**32."""
    xp = array_module(c0)
    u64 = xp.uint64
    k0, k1 = key & _MASK32, key >> 32                  # Python ints: the key schedule is computed here
    m0, m1, mask = u64(PHILOX_M0), u64(PHILOX_M1), u64(_MASK32)
    for _ in range(PHILOX_ROUNDS):
        p0 = c0 * m0                                   # exact: both factors are below 2**32
        p1 = c2 * m1
        c0, c1, c2, c3 = _shr(xp, p1, 32) ^ c1 ^ u64(k0), p1 & mask, _shr(xp, p0, 32) ^ c3 ^ u64(k1), p0 & mask
        k0, k1 = (k0 + PHILOX_W0) & _MASK32, (k1 + PHILOX_W1) & _MASK32
    return c0, c1, c2, c3


# ----------------------------------------------------------------------------------------- the ziggurat
R = 3.6541528853610088          # where the tail begins (256 layers)
AREA = 4.92867323399e-3         # each layer's area under exp(-x^2 / 2)
LAYERS = 256


def _layers():
    f = lambda x: math.exp(-0.5 * x * x)  # noqa: E731
    x = [AREA / f(R), R]
    for _ in range(2, LAYERS):
        x.append(math.sqrt(-2.0 * math.log(f(x[-1]) + AREA / x[-1])))
    x.append(0.0)
    xs = np.array(x)
    return xs, np.exp(-0.5 * xs * xs)


#: ``x_0 .. x_256`` (x_0 the base layer's width) and ``f(x_i)``, float64
LAYER_X, LAYER_F = _layers()
LAYER_X.flags.writeable = False
LAYER_F.flags.writeable = False


def thresholds(bits):
    """For candidates ``u x_i / 2**bits`` with ``bits``-bit integers ``u``: the int64 bounds
    ``ceil(2**bits x_{i+1} / x_i)`` below which ``u`` is under the curve, and the float64 widths
    ``x_i / 2**bits`` (256 of each)."""
    scale = 2.0 ** bits
    bound = np.array([math.ceil(scale * (LAYER_X[i + 1] / LAYER_X[i])) for i in range(LAYERS)], dtype=np.int64)
    return bound, LAYER_X[:LAYERS] / scale


BOUND_23, WIDTH_23 = thresholds(23)
WIDTH_23_F32 = WIDTH_23.astype(np.float32)
BOUND_53, WIDTH_53 = thresholds(53)


def _wide(dtype) -> bool:
    """Whether ``dtype`` draws from the 64-bit layout (float64) rather than the 32-bit one."""
    return np.dtype(dtype) == np.float64


def supports(*arrays) -> bool:
    """The reference runs on any NumPy or CuPy arrays."""
    return True


def blocks(n, dtype) -> int:
    """The Philox blocks that ``n`` values of ``dtype`` use (what the generator's counter moves on by)."""
    per_block = 2 if _wide(dtype) else 4
    return -(-int(n) // per_block)


def _table(xp, a):
    return xp.asarray(a)


def _split(xp, word, wide):
    """Layer, sign and uniform integer of each word (int64 arrays, the sign a bool array)."""
    layer = (word & xp.uint64(0xFF)).astype(xp.int64)
    negative = (_shr(xp, word, 8) & xp.uint64(1)).astype(bool)
    u = _shr(xp, word, 11 if wide else 9).astype(xp.int64)
    return layer, negative, u


def _uniform(xp, w_lo, w_hi, wide):
    """Uniforms in (0, 1), exact in float64: ``(w + 1/2) 2**-32`` from one word, or
    ``((w >> 12) + 1/2) 2**-52`` from the 64-bit word ``w = w_hi w_lo``."""
    if wide:
        return _shr(xp, _shl(xp, w_hi, 32) | w_lo, 12).astype(xp.float64) * 2.0 ** -52 + 2.0 ** -53
    return w_lo.astype(xp.float64) * 2.0 ** -32 + 2.0 ** -33


def _slow(xp, key, word, block, lane, wide):
    """Steps 2 and 3 of the ziggurat (and step 1 again after a rejected wedge) for the values whose first
    word missed the rectangle: float64 values. ``word``, ``block``, ``lane``: uint64 arrays, one per value."""
    bound = _table(xp, BOUND_53 if wide else BOUND_23)
    width = _table(xp, WIDTH_53 if wide else WIDTH_23)
    height = _table(xp, LAYER_F)
    u64 = xp.uint64
    lo, hi = block & u64(_MASK32), _shr(xp, block, 32)
    tag = lane + u64(1)
    attempt = xp.zeros(word.shape, dtype=u64)
    z = xp.empty(word.shape, dtype=xp.float64)
    word = word.copy()

    def extra(at):
        """The next extra block of the values at ``at`` (and count it)."""
        out = philox4x32(lo[at], hi[at], tag[at], attempt[at], key)
        attempt[at] += u64(1)
        return out

    todo = xp.arange(word.size)
    while todo.size:
        layer, negative, u = _split(xp, word[todo], wide)
        x = u.astype(xp.float64) * width[layer]
        inside = u < bound[layer]
        z[todo[inside]] = xp.where(negative[inside], -x[inside], x[inside])
        keep = ~inside
        todo, layer, negative, x = todo[keep], layer[keep], negative[keep], x[keep]
        if not todo.size:
            break
        w0, w1, w2, w3 = extra(todo)

        # the tail, from the base layer: try again with a fresh block until accepted
        tail = layer == 0
        at, sign = todo[tail], negative[tail]
        b = [w[tail] for w in (w0, w1, w2, w3)]
        while at.size:
            if wide:
                t = -xp.log(_uniform(xp, b[0], b[1], True)) / R
                s = -xp.log(_uniform(xp, b[2], b[3], True))
            else:
                t = -xp.log(_uniform(xp, b[0], None, False)) / R
                s = -xp.log(_uniform(xp, b[1], None, False))
            ok = s + s > t * t
            z[at[ok]] = xp.where(sign[ok], -(R + t[ok]), R + t[ok])
            at, sign = at[~ok], sign[~ok]
            b = list(extra(at)) if at.size else b

        # the wedges: accept under the curve, else a new word
        wedge = ~tail
        todo, layer, negative, x = todo[wedge], layer[wedge], negative[wedge], x[wedge]
        w0, w1, w2, w3 = w0[wedge], w1[wedge], w2[wedge], w3[wedge]
        y = height[layer] + _uniform(xp, w0, w1, wide) * (height[layer + 1] - height[layer])
        ok = y < xp.exp(-0.5 * x * x)
        z[todo[ok]] = xp.where(negative[ok], -x[ok], x[ok])
        reject = ~ok
        todo = todo[reject]
        word[todo] = (_shl(xp, w3[reject], 32) | w2[reject]) if wide else w1[reject]
    return z


def standard_normal(n, dtype, key, counter, xp=np):
    """``n`` N(0, 1) values of ``dtype`` (float64 for the 64-bit layout, float32 otherwise) at ``counter``
    under ``key``: the stream the module docstring defines, as a 1-D array of module ``xp``."""
    wide = _wide(dtype)
    u64 = xp.uint64
    n = int(n)
    block = (xp.arange(blocks(n, dtype), dtype=u64) + u64(counter % 2**64))
    zero = xp.zeros(block.shape, dtype=u64)
    words = xp.stack(philox4x32(block & u64(_MASK32), _shr(xp, block, 32), zero, zero, key), axis=1).reshape(-1)
    if wide:
        word = _shl(xp, words[1::2][:n], 32) | words[0::2][:n]
        per_block, bound, width = 2, BOUND_53, WIDTH_53
    else:
        word = words[:n]
        per_block, bound, width = 4, BOUND_23, WIDTH_23_F32
    layer, negative, u = _split(xp, word, wide)
    signed_u = xp.where(negative, -u, u)
    if wide:
        z = signed_u.astype(xp.float64) * _table(xp, width)[layer]
    else:
        z = signed_u.astype(xp.float32) * _table(xp, width)[layer]
    slow = xp.arange(n)[u >= _table(xp, bound)[layer]]
    if slow.size:
        at = slow.astype(u64)
        z[slow] = _slow(xp, key, word[slow], block[slow // per_block], at % u64(per_block), wide).astype(z.dtype)
    return z


def add_normal(x, std, key, counter):
    """``x + std * z``, ``z`` the N(0, 1) values of the stream at ``counter`` under ``key`` (one per element of
    ``x``, in C order), in a new C-ordered array of ``x``'s shape and dtype."""
    xp = array_module(x)
    z = standard_normal(x.size, x.dtype, key, counter, xp).astype(x.dtype, copy=False).reshape(x.shape)
    return x + x.dtype.type(std) * z
