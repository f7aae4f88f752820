"""The CPU convolution kernels: the functions of ``im2col.py``, compiled with numba (``conv_cpu``).

Same names, arguments and results as the reference in ``im2col.py`` (read that first: it defines the
column matrix and the channel-rows layout). What changes is how the arrays are filled:

* Each kernel is one pass over memory, parallel with ``prange`` over tasks that own disjoint pieces of
  the output, so the threads never write to the same place - no locks, no atomics.
* im2col / col2im work through an *index table*. Pad an image plane with zeros into a small buffer;
  then column entry (i, j, oy, ox) of that plane is the buffer's value at one fixed offset,
  ``(oy*sH + i) * Wp + ox*sW + j`` (Wp: the padded width), the same for every channel and sample. The
  table of those offsets is computed once per call (:func:`_window_offsets`), and every copy becomes
  ``column[q] = buffer[table[q]]`` (im2col) or ``buffer[table[q]] += column[q]`` (col2im): no test for
  the padding, no short loops over a window row, whatever the kernel, stride and padding.
* A task is one channel of a block of samples: it owns one contiguous run of every matrix row of that
  channel (the columns of its samples), which it writes (im2col) or reads (col2im) as a stream, while
  its padded planes stay in L1.
* Arithmetic stays out of here: the products ``W2d @ cols`` go to BLAS through ``numpy.matmul`` in
  ``ops/conv.py``, which is where the flops are.

Two numba details matter for speed. Arrays are addressed through flat views with unsigned offsets:
numba accepts negative indices (counting from the end), so every signed index costs a test, and
unsigned ones skip it (this alone halves the time of these copy loops). And no array views are made
inside the parallel loops: a view is a reference-counted object, and counting references from several
threads at once is slow.

``@njit(cache=True)`` stores the compiled code next to this file (``__pycache__``), so only the first
run on a machine pays for compilation (one specialisation per dtype: float32 and float64).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .checks import PARALLEL, check_arrays
from .im2col import output_size

__all__ = ["supports", "im2col", "col2im", "to_channel_rows", "from_channel_rows", "channel_sum", "BLOCK_BYTES"]

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

_U = np.uint64  # offsets into flat arrays (see the module docstring)

#: Bytes of column matrix per block of samples in the ops (see ``ops/conv.py``, ``sample_blocks``). A block
#: made by a matrix product (or by im2col) is then still in the L2/L3 cache when col2im (or the next
#: product) reads it; the whole batch's matrix (tens of MB for the generator's layers) would go to main
#: memory and back. Measured on the 2-core AMD EPYC this was written on (one thread, the two settings
#: interleaved): 10-25% faster than whole batches on the width-32 generator's transposed convolutions, within
#: +-5% elsewhere. ``$MINIGRAD_CONV_BLOCK_BYTES`` overrides it (``benchmarks.kernels --block-bytes``).
BLOCK_BYTES = 2 << 20


@njit(cache=True)
def _block_size(n, positions):
    """Samples per task: enough that a task reads or writes runs of at least ~4 KiB per matrix row."""
    return min(n, max(1, 1024 // max(positions, 1)))


@njit(cache=True)
def _window_offsets(kh, kw, sh, sw, oh, ow, padded_width):
    """table[(i*kW + j) * P + oy*OW + ox] = offset, in a zero-padded plane, of the pixel that column entry
    (i, j, oy, ox) holds: row oy*sH + i, column ox*sW + j. P = OH*OW window positions."""
    positions = oh * ow
    table = np.empty(kh * kw * positions, dtype=np.uint64)
    for i in range(kh):
        for j in range(kw):
            for oy in range(oh):
                for ox in range(ow):
                    table[(i * kw + j) * positions + oy * ow + ox] = (oy * sh + i) * padded_width + ox * sw + j
    return table


@njit(parallel=PARALLEL, cache=True)
def _im2col(x, kh, kw, sh, sw, ph, pw, oh, ow, cols):
    n, c, h, w = x.shape
    hp, wp = h + 2 * ph, w + 2 * pw
    plane, positions, taps = hp * wp, oh * ow, kh * kw
    table = _window_offsets(kh, kw, sh, sw, oh, ow, wp)
    src_all, dst_all = x.reshape(-1), cols.reshape(-1)
    block = _block_size(n, positions)
    blocks = (n + block - 1) // block
    for task in prange(c * blocks):
        ch = task // blocks
        b0 = (task - ch * blocks) * block
        b1 = min(n, b0 + block)
        # 1. The task's planes (channel ch of samples b0..b1-1), zero-padded, in a local buffer.
        padded = np.zeros((b1 - b0) * plane, dtype=x.dtype)
        for b in range(b0, b1):
            dst = _U((b - b0) * plane + ph * wp + pw)
            src = _U((b * c + ch) * h * w)
            for iy in range(h):
                for ix in range(w):
                    padded[dst + _U(iy * wp + ix)] = src_all[src + _U(iy * w + ix)]
        # 2. Matrix row (ch, i, j), columns of samples b0..b1-1: one table lookup per entry.
        for t in range(taps):
            row = _U((ch * taps + t) * n * positions)
            offsets = _U(t * positions)
            for b in range(b0, b1):
                dst = row + _U(b * positions)
                src = _U((b - b0) * plane)
                for q in range(positions):
                    dst_all[dst + _U(q)] = padded[src + table[offsets + _U(q)]]


@njit(parallel=PARALLEL, cache=True)
def _col2im(cols, kh, kw, sh, sw, ph, pw, oh, ow, bias, out):
    # The same tasks and table as _im2col, run backwards: every column entry is added to the pixel of
    # the padded buffer it was read from; then the buffer's inside (plus the bias) is the output plane.
    n, c, h, w = out.shape
    hp, wp = h + 2 * ph, w + 2 * pw
    plane, positions, taps = hp * wp, oh * ow, kh * kw
    table = _window_offsets(kh, kw, sh, sw, oh, ow, wp)
    src_all, dst_all = cols.reshape(-1), out.reshape(-1)
    block = _block_size(n, positions)
    blocks = (n + block - 1) // block
    for task in prange(c * blocks):
        ch = task // blocks
        b0 = (task - ch * blocks) * block
        b1 = min(n, b0 + block)
        padded = np.zeros((b1 - b0) * plane, dtype=cols.dtype)
        for t in range(taps):
            row = _U((ch * taps + t) * n * positions)
            offsets = _U(t * positions)
            for b in range(b0, b1):
                src = row + _U(b * positions)
                dst = _U((b - b0) * plane)
                for q in range(positions):  # within one tap the offsets are distinct: no double counting
                    padded[dst + table[offsets + _U(q)]] += src_all[src + _U(q)]
        for b in range(b0, b1):             # entries that came from the padding are dropped here
            src = _U((b - b0) * plane + ph * wp + pw)
            dst = _U((b * c + ch) * h * w)
            for iy in range(h):
                for ix in range(w):
                    dst_all[dst + _U(iy * w + ix)] = padded[src + _U(iy * wp + ix)] + bias[ch]


@njit(parallel=PARALLEL, cache=True)
def _to_channel_rows(x, out):
    # x (N, C, P) -> out (C, N, P): move each plane; P = H*W values are contiguous on both sides.
    n, c, p = x.shape
    for task in prange(n * c):
        b = task // c
        ch = task - b * c
        for k in range(p):
            out[ch, b, k] = x[b, ch, k]


@njit(parallel=PARALLEL, cache=True)
def _from_channel_rows(rows, bias, out):
    # rows (C, N, P) -> out (N, C, P), plus bias[ch] (zeros when the op has no bias).
    n, c, p = out.shape
    for task in prange(n * c):
        b = task // c
        ch = task - b * c
        add = bias[ch]
        for k in range(p):
            out[b, ch, k] = rows[ch, b, k] + add


@njit(parallel=PARALLEL, cache=True, fastmath={"reassoc"})
def _channel_sum(x, out):
    # x (N, C, P) -> out (C,), accumulated in float64. fastmath "reassoc" lets LLVM reorder the additions
    # into vector lanes (8x faster than one running sum); in float64 the reordering changes nothing that
    # survives the rounding to float32, and NaN and inf still propagate (no "nnan"/"ninf" flags).
    n, c, p = x.shape
    for ch in prange(c):
        total = 0.0
        for b in range(n):
            for k in range(p):
                total += x[b, ch, k]
        out[ch] = total


def supports(*arrays) -> bool:
    """Whether these kernels handle the arrays: NumPy arrays of float32 or float64."""
    return all(isinstance(a, np.ndarray) and a.dtype in DTYPES for a in arrays)


def _bias_or_zeros(bias, channels, dtype, kernel):
    """The kernels always add a bias (C,); without one it is zeros, which costs nothing next to the copy."""
    if bias is None:
        return np.zeros(channels, dtype=dtype)
    check_arrays(kernel, {"bias": (bias, (channels,))})
    return np.ascontiguousarray(bias, dtype=dtype)


def _images(kernel, x):
    if x.ndim != 4:
        raise ValueError(f"{kernel}: argument x must be a 4-D (N, C, H, W) array, got shape {tuple(x.shape)}")


def im2col(x, kernel_size, stride, padding):
    """numba version of :func:`minigrad.kernels.im2col.im2col`: (N, C, H, W) -> (C*kH*kW, N*OH*OW)."""
    _images("im2col", x)
    x = np.ascontiguousarray(x)  # no copy for the contiguous arrays the ops pass
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    oh, ow = output_size(h, kh, sh, ph), output_size(w, kw, sw, pw)
    cols = np.empty((c * kh * kw, n * oh * ow), dtype=x.dtype)
    if cols.size:  # an empty batch (N = 0) has nothing to copy, and the kernel's tasks need N >= 1
        _im2col(x, kh, kw, sh, sw, ph, pw, oh, ow, cols)
    return cols


def col2im(cols, image_shape, kernel_size, stride, padding, bias=None, out=None):
    """numba version of :func:`minigrad.kernels.im2col.col2im`: (C*kH*kW, N*OH*OW) -> ``image_shape``."""
    cols = np.ascontiguousarray(cols)
    n, c, h, w = image_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    oh, ow = output_size(h, kh, sh, ph), output_size(w, kw, sw, pw)
    # The kernel does not check its indices, so the shapes are checked here.
    if cols.shape != (c * kh * kw, n * oh * ow):
        raise ValueError(f"col2im: a column matrix of shape {cols.shape} does not fit images {(n, c, h, w)} with "
                         f"kernel {kernel_size}, stride {stride}, padding {padding}")
    if out is None:
        out = np.empty((n, c, h, w), dtype=cols.dtype)
    elif out.shape != (n, c, h, w) or out.dtype != cols.dtype or not out.flags.c_contiguous:
        raise ValueError(f"col2im: out must be a C-contiguous {cols.dtype} array of shape {(n, c, h, w)}, "
                         f"got {out.dtype} {out.shape}")
    bias = _bias_or_zeros(bias, c, cols.dtype, "col2im")
    if out.size:  # an empty batch (N = 0): nothing to fold
        _col2im(cols, kh, kw, sh, sw, ph, pw, oh, ow, bias, out)
    return out


def to_channel_rows(x):
    """numba version of :func:`minigrad.kernels.im2col.to_channel_rows`: (N, C, H, W) -> (C, N*H*W)."""
    _images("to_channel_rows", x)
    x = np.ascontiguousarray(x)
    n, c, h, w = x.shape
    out = np.empty((c, n * h * w), dtype=x.dtype)
    _to_channel_rows(x.reshape(n, c, h * w), out.reshape(c, n, h * w))
    return out


def from_channel_rows(rows, n, h, w, bias=None):
    """numba version of :func:`minigrad.kernels.im2col.from_channel_rows`: (C, N*H*W) -> (N, C, H, W)."""
    rows = np.ascontiguousarray(rows)
    c = rows.shape[0] if rows.ndim else 0
    check_arrays("from_channel_rows", {"rows": (rows, (c, n * h * w))})
    out = np.empty((n, c, h, w), dtype=rows.dtype)
    _from_channel_rows(rows.reshape(c, n, h * w), _bias_or_zeros(bias, c, rows.dtype, "from_channel_rows"),
                       out.reshape(n, c, h * w))
    return out


def channel_sum(x):
    """numba version of :func:`minigrad.kernels.im2col.channel_sum`: (N, C, H, W) -> (C,)."""
    _images("channel_sum", x)
    x = np.ascontiguousarray(x)
    n, c, h, w = x.shape
    out = np.empty(c, dtype=x.dtype)
    _channel_sum(x.reshape(n, c, h * w), out)
    return out
