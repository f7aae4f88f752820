"""The reference convolution kernels: im2col / col2im and two layout moves, written once for any array
module (NumPy or CuPy, taken from the array they are given).

This is the readable version of what every convolution in minigrad does, and the algorithm the GPU runs:
the reference module of the ``conv`` kernel family (see ``minigrad/kernels/__init__.py``). The numba
kernels in ``conv_cpu.py`` and the CUDA kernels in ``conv_cuda.py`` compute exactly the same arrays faster,
and the tests check them against these functions.

The layout they share
---------------------
Convolution becomes a matrix product once every input patch is written out as a column
("im2col"). For an image batch ``x`` of shape (N, C, H, W), a kernel of size (kH, kW), a stride
(sH, sW) and a zero padding (pH, pW), the output has OH x OW positions with

    OH = (H + 2 pH - kH) // sH + 1,        OW = (W + 2 pW - kW) // sW + 1

and the *column matrix* ``cols`` has shape (C*kH*kW, N*OH*OW):

    cols[(c, i, j), (n, oh, ow)] = xpad[n, c, oh*sH + i, ow*sW + j]

where ``xpad`` is ``x`` with pH rows of zeros above and below and pW columns left and right. Rows are
ordered (c, i, j) - the order of a PyTorch weight's last three dims, so ``weight.reshape(Cout, -1)``
multiplies ``cols`` directly - and columns (n, oh, ow), so a product ``W2d @ cols`` has one row per
output channel with the batch and the positions along it: the layout called *channel rows* below,
(C, N*H*W). One move (:func:`from_channel_rows`) turns it into NCHW.

``col2im`` is the adjoint (the transpose) of ``im2col``: it adds every entry of a column matrix back to
the pixel it was read from. A pixel covered by several windows receives the sum; padding positions are
dropped. Because <im2col(x), C> == <x, col2im(C)> for every x and C, col2im is exactly the gradient of
im2col, and conv2d's backward and conv_transpose2d's forward are built from it.
"""
from __future__ import annotations

from ..backend import array_module

__all__ = ["supports", "im2col", "col2im", "to_channel_rows", "from_channel_rows", "channel_sum", "output_size",
           "BLOCK_BYTES"]

#: Bytes of column matrix per block of samples in the ops (see ``ops/conv.py``); None: the whole batch,
#: the plainest form of the algorithm.
BLOCK_BYTES = None


def supports(*arrays) -> bool:
    """The reference runs on any NumPy or CuPy arrays."""
    return True


def output_size(size, kernel, stride, padding):
    """Number of window positions along one axis: (size + 2 padding - kernel) // stride + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def _window(start, stride, count):
    """The slice start, start + stride, ..., start + (count - 1) * stride."""
    return slice(start, start + stride * (count - 1) + 1, stride)


def im2col(x, kernel_size, stride, padding):
    """Unfold the patches of ``x`` (N, C, H, W) into the column matrix (C*kH*kW, N*OH*OW) described in
    the module docstring. ``kernel_size``, ``stride`` and ``padding`` are pairs of ints.

    One strided slice of the padded image per kernel offset (i, j): the slice holds, for every window,
    the pixel at offset (i, j) of that window, so kH*kW slices fill the whole matrix.
    """
    xp = array_module(x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    oh, ow = output_size(h, kh, sh, ph), output_size(w, kw, sw, pw)
    xpad = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x
    cols = xp.empty((c, kh, kw, n, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            patch = xpad[:, :, _window(i, sh, oh), _window(j, sw, ow)]  # (N, C, OH, OW)
            cols[:, i, j] = patch.transpose(1, 0, 2, 3)
    return cols.reshape(c * kh * kw, n * oh * ow)


def col2im(cols, image_shape, kernel_size, stride, padding, bias=None, out=None):
    """Fold a column matrix (C*kH*kW, N*OH*OW) back into an image batch of shape ``image_shape``
    (N, C, H, W), adding up the entries that land on the same pixel; the adjoint of :func:`im2col`.

    ``bias`` (C,), when given, is added to every pixel of its channel (conv_transpose2d's bias), so the
    caller needs no second pass. Pixels no window reaches (the last rows/columns when the stride does not
    divide H + 2 pH - kH) receive only the bias. ``out``: a C-contiguous array of shape ``image_shape`` to
    write the result into (e.g. a block of samples of a larger batch); a new array when None.
    """
    xp = array_module(cols)
    n, c, h, w = image_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    oh, ow = output_size(h, kh, sh, ph), output_size(w, kw, sw, pw)
    cols = cols.reshape(c, kh, kw, n, oh, ow)
    xpad = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            # Within one offset (i, j) the windows touch distinct pixels, so += adds each entry once.
            xpad[:, :, _window(i, sh, oh), _window(j, sw, ow)] += cols[:, i, j].transpose(1, 0, 2, 3)
    if out is None:
        out = xp.empty((n, c, h, w), dtype=cols.dtype)
    out[...] = xpad[:, :, ph:ph + h, pw:pw + w]
    if bias is not None:
        out += bias.reshape(1, c, 1, 1)
    return out


def to_channel_rows(x):
    """(N, C, H, W) -> (C, N*H*W): one row per channel, the batch and the pixels along it (a copy)."""
    xp = array_module(x)
    n, c, h, w = x.shape
    return xp.ascontiguousarray(x.transpose(1, 0, 2, 3)).reshape(c, n * h * w)


def from_channel_rows(rows, n, h, w, bias=None):
    """(C, N*H*W) -> (N, C, H, W), adding ``bias`` (C,) to every pixel of its channel when given.

    The inverse move of :func:`to_channel_rows`; with the bias it is the last step of conv2d's forward
    pass (``W2d @ cols`` comes out in channel rows).
    """
    xp = array_module(rows)
    c = rows.shape[0]
    nchw = rows.reshape(c, n, h, w).transpose(1, 0, 2, 3)
    out = xp.empty((n, c, h, w), dtype=rows.dtype)
    if bias is None:
        out[...] = nchw
    else:
        xp.add(nchw, bias.reshape(1, c, 1, 1), out=out)
    return out


def channel_sum(x):
    """Sum of an (N, C, H, W) batch over everything but the channel: (C,). A bias's gradient."""
    return x.sum(axis=(0, 2, 3))
