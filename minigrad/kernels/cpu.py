"""The CPU convolution kernels: the functions of ``im2col.py``, compiled with numba.

Same names, arguments and results as the reference in ``im2col.py`` (read that first: it defines the
column matrix and the channel-rows layout). What changes is how the arrays are filled:

* Each kernel is one pass over memory, parallel with ``prange`` over tasks that own disjoint pieces of
  the output, so the threads never write to the same place - no locks, no atomics, and col2im needs no
  scratch copy. For im2col/col2im a task is one channel of a block of samples: it reads or writes each
  matrix row it owns as one contiguous run (streaming through memory), and the image planes it touches
  stay in L1.
* Padding is handled without a branch per pixel: for each kernel offset the range of window positions
  that fall inside the image is computed once (:func:`_inside`), the positions outside it are written
  as zeros (im2col) or skipped (col2im), and the loop in between is a plain strided copy.
* Arithmetic stays out of here: the products ``W2d @ cols`` go to BLAS through ``numpy.matmul`` in
  ``ops/conv.py``, which is where the flops are.

``@njit(cache=True)`` stores the compiled code next to this file (``__pycache__``), so only the first
run on a machine pays for compilation (one specialisation per dtype: float32 and float64).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .im2col import output_size


@njit(cache=True, inline="always")
def _inside(offset, stride, size, count):
    """Window positions p in [lo, hi) whose pixel p*stride + offset lies inside [0, size).

    p*stride + offset >= 0      <=>  p >= ceil(-offset / stride) = -(offset // stride)
    p*stride + offset <= size-1 <=>  p <= (size - 1 - offset) // stride
    (// is floor division, also for negative numbers, in numba as in Python.)
    """
    lo = max(0, -(offset // stride))
    hi = min(count, (size - 1 - offset) // stride + 1)
    return lo, max(lo, hi)


@njit(cache=True)
def _block_size(n, positions):
    """Samples per task: enough that a task writes (or reads) runs of at least ~4 KiB per matrix row."""
    return min(n, max(1, 1024 // max(positions, 1)))


@njit(parallel=True, cache=True)
def _im2col(x, kh, kw, sh, sw, ph, pw, oh, ow, cols):
    # Tasks are (channel, block of samples). For each kernel offset (i, j) a task fills one contiguous run
    # of matrix row (ch, i, j) - the columns of its samples - so the writes stream through memory, while
    # the few input planes it reads stay in L1.
    #
    # The arrays are addressed through flat views with unsigned offsets. numba accepts negative indices
    # (counting from the end), so each signed index costs a test; unsigned offsets skip it, which halves
    # the time of these copy loops. (No views are made inside the loops either: a view is a new
    # reference-counted object, and counting references from several threads is slow.)
    n, c, h, w = x.shape
    src_all, dst_all = x.reshape(-1), cols.reshape(-1)
    positions = oh * ow
    columns = n * positions
    block = _block_size(n, positions)
    blocks = (n + block - 1) // block
    for task in prange(c * blocks):
        ch = task // blocks
        b0 = (task - ch * blocks) * block
        b1 = min(n, b0 + block)
        for i in range(kh):
            di = i - ph                                   # window row oy reads image row oy*sh + di
            y_lo, y_hi = _inside(di, sh, h, oh)
            for j in range(kw):
                dj = j - pw
                x_lo, x_hi = _inside(dj, sw, w, ow)
                row = (ch * kh + i) * kw + j
                for b in range(b0, b1):
                    for oy in range(oh):
                        dst = np.uint64(row * columns + b * positions + oy * ow)
                        if oy < y_lo or oy >= y_hi:       # the whole window row is in the padding
                            for ox in range(ow):
                                dst_all[dst + np.uint64(ox)] = 0
                            continue
                        # image pixel (iy, ox*sw + dj) of plane (b, ch); only read for ox in [x_lo, x_hi)
                        src = ((b * c + ch) * h + oy * sh + di) * w + dj
                        for ox in range(x_lo):
                            dst_all[dst + np.uint64(ox)] = 0
                        for ox in range(x_lo, x_hi):
                            dst_all[dst + np.uint64(ox)] = src_all[np.uint64(src + ox * sw)]
                        for ox in range(x_hi, ow):
                            dst_all[dst + np.uint64(ox)] = 0


@njit(parallel=True, cache=True)
def _col2im(cols, kh, kw, sh, sw, ph, pw, oh, ow, bias, out):
    # The same tasks as _im2col, reading the runs it wrote and adding them into the task's own planes
    # (channel ch of samples b0..b1), which no other task touches. Same flat, unsigned addressing.
    n, c, h, w = out.shape
    src_all, dst_all = cols.reshape(-1), out.reshape(-1)
    positions = oh * ow
    columns = n * positions
    block = _block_size(n, positions)
    blocks = (n + block - 1) // block
    for task in prange(c * blocks):
        ch = task // blocks
        b0 = (task - ch * blocks) * block
        b1 = min(n, b0 + block)
        for b in range(b0, b1):
            plane = np.uint64((b * c + ch) * h * w)
            for k in range(h * w):
                dst_all[plane + np.uint64(k)] = bias[ch]
        for i in range(kh):
            di = i - ph
            y_lo, y_hi = _inside(di, sh, h, oh)
            for j in range(kw):
                dj = j - pw
                x_lo, x_hi = _inside(dj, sw, w, ow)
                row = (ch * kh + i) * kw + j
                for b in range(b0, b1):
                    for oy in range(y_lo, y_hi):          # entries read from the padding are dropped
                        src = np.uint64(row * columns + b * positions + oy * ow)
                        dst = ((b * c + ch) * h + oy * sh + di) * w + dj
                        for ox in range(x_lo, x_hi):
                            dst_all[np.uint64(dst + ox * sw)] += src_all[src + np.uint64(ox)]


@njit(parallel=True, cache=True)
def _to_channel_rows(x, out):
    # x (N, C, P) -> out (C, N, P): move each plane; P = H*W values are contiguous on both sides.
    n, c, p = x.shape
    for task in prange(n * c):
        b = task // c
        ch = task - b * c
        for k in range(p):
            out[ch, b, k] = x[b, ch, k]


@njit(parallel=True, cache=True)
def _from_channel_rows(rows, bias, out):
    # rows (C, N, P) -> out (N, C, P), plus bias[ch] (zeros when the op has no bias).
    n, c, p = out.shape
    for task in prange(n * c):
        b = task // c
        ch = task - b * c
        add = bias[ch]
        for k in range(p):
            out[b, ch, k] = rows[ch, b, k] + add


@njit(parallel=True, cache=True, fastmath={"reassoc"})
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


def _bias_or_zeros(bias, channels, dtype):
    """The kernels always add a bias (C,); without one it is zeros, which costs nothing next to the copy."""
    return np.zeros(channels, dtype=dtype) if bias is None else np.ascontiguousarray(bias, dtype=dtype)


def im2col(x, kernel_size, stride, padding):
    """numba version of :func:`minigrad.kernels.im2col.im2col`: (N, C, H, W) -> (C*kH*kW, N*OH*OW)."""
    x = np.ascontiguousarray(x)  # no copy for the contiguous arrays the ops pass
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    oh, ow = output_size(h, kh, sh, ph), output_size(w, kw, sw, pw)
    cols = np.empty((c * kh * kw, n * oh * ow), dtype=x.dtype)
    _im2col(x, kh, kw, sh, sw, ph, pw, oh, ow, cols)
    return cols


def col2im(cols, image_shape, kernel_size, stride, padding, bias=None):
    """numba version of :func:`minigrad.kernels.im2col.col2im`: (C*kH*kW, N*OH*OW) -> ``image_shape``."""
    cols = np.ascontiguousarray(cols)
    n, c, h, w = image_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    oh, ow = output_size(h, kh, sh, ph), output_size(w, kw, sw, pw)
    out = np.empty((n, c, h, w), dtype=cols.dtype)
    _col2im(cols, kh, kw, sh, sw, ph, pw, oh, ow, _bias_or_zeros(bias, c, cols.dtype), out)
    return out


def to_channel_rows(x):
    """numba version of :func:`minigrad.kernels.im2col.to_channel_rows`: (N, C, H, W) -> (C, N*H*W)."""
    x = np.ascontiguousarray(x)
    n, c, h, w = x.shape
    out = np.empty((c, n * h * w), dtype=x.dtype)
    _to_channel_rows(x.reshape(n, c, h * w), out.reshape(c, n, h * w))
    return out


def from_channel_rows(rows, n, h, w, bias=None):
    """numba version of :func:`minigrad.kernels.im2col.from_channel_rows`: (C, N*H*W) -> (N, C, H, W)."""
    rows = np.ascontiguousarray(rows)
    c = rows.shape[0]
    out = np.empty((n, c, h, w), dtype=rows.dtype)
    _from_channel_rows(rows.reshape(c, n, h * w), _bias_or_zeros(bias, c, rows.dtype), out.reshape(n, c, h * w))
    return out


def channel_sum(x):
    """numba version of :func:`minigrad.kernels.im2col.channel_sum`: (N, C, H, W) -> (C,)."""
    x = np.ascontiguousarray(x)
    n, c, h, w = x.shape
    out = np.empty(c, dtype=x.dtype)
    _channel_sum(x.reshape(n, c, h * w), out)
    return out
