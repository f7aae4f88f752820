"""The GPU convolution kernels (``conv_cuda``): ``im2col`` and ``col2im`` as CuPy ``ElementwiseKernel`` s, and
channel rows as the layout activations are handed on in.

Same names, arguments and results as the reference in ``im2col.py`` (read that first). The matrix
products around them are ``cupy.matmul`` calls in ``ops/conv.py``, i.e. cuBLAS; no cuDNN.

One CUDA thread per output element, and no thread ever writes where another one does:

* ``im2col``: a thread per entry of the column matrix (C*kH*kW, N*OH*OW) works out which input pixel
  the entry copies - or that it lies in the padding - and reads it. The input is a ``raw`` argument, which
  CuPy indexes by its logical (N, C, H, W) index whatever its strides, so it is read as it is.
* ``col2im``: a thread per *image pixel* gathers every column entry that was copied from that pixel
  and adds them up. (Scattering from the columns instead would need atomic adds, which make float sums
  depend on thread timing; gathering gives the same result on every run.) For padded pixel row
  ``yp = y + pH`` the windows that cover it are those with ``oy * sH + ky == yp``: ``ky`` runs over
  ``yp % sH, yp % sH + sH, ...`` (below ``kH`` and not above ``yp``) with ``oy = (yp - ky) / sH``, which
  must also be below OH. The same holds for columns.

Channel rows, without moves
---------------------------
A product ``W2d @ cols`` comes out in channel rows, (C, N*H*W). The reference moves it into NCHW order
(:func:`~minigrad.kernels.im2col.from_channel_rows`), and the backward pass moves the NCHW gradient back
into channel rows for its products (``to_channel_rows``): a kernel each, four per convolution and step. Here
neither move is made. :func:`from_channel_rows` returns the product as an (N, C, H, W) *view* stored in
channel-rows order (the bias, when there is one, added into it in place: one kernel), and
:func:`to_channel_rows` of an array in that order is a view too. The kernels of the ops next to
convolutions keep the order: batch norm (``norm_cuda.py``) writes its output in channel rows and its input
gradient in the order of its input, LeakyReLU (``elementwise_cuda.py``) writes in the order of its input,
and im2col reads any order. So a gradient reaches the convolution that made the activation in the order
its products need. The helpers at the end of this module (:func:`is_channel_rows`, :func:`kernel_buffer`,
:func:`empty_channel_rows`, :func:`empty_like`) say which order an array is in and allocate in it; an
array in neither order is copied, as before.

CuPy is imported lazily (the first time a kernel is needed, through ``minigrad.backend``), so this module
imports on machines without it. The kernel bodies are plain C (no CUDA-only syntax), which lets the tests
compile them with the host's C compiler and check their index arithmetic where there is no GPU.
"""
from __future__ import annotations

import functools

from .. import backend
from ..backend import cupy_module
from .im2col import channel_sum, output_size

__all__ = ["supports", "im2col", "col2im", "to_channel_rows", "from_channel_rows", "channel_sum", "BLOCK_BYTES",
           "is_channel_rows", "kernel_buffer", "logical_shape", "empty_channel_rows", "empty_like"]

#: Bytes of column matrix per block of samples in the ops: None, the whole batch at once (a GPU wants
#: large launches, and CuPy's memory pool reuses the buffers).
BLOCK_BYTES = None

#: Scalar parameters shared by both kernels (the geometry of the convolution).
GEOMETRY_PARAMS = ("int32 n, int32 c, int32 h, int32 w, int32 kh, int32 kw, int32 sh, int32 sw, "
                   "int32 ph, int32 pw, int32 oh, int32 ow")

#: Body of the im2col kernel; ``i`` is the index of the column-matrix entry ``col`` it writes.
IM2COL_BODY = r"""
const long long positions = (long long)n * oh * ow;     /* columns of the matrix: (b, oy, ox) */
const long long row = i / positions;                    /* row: (ch, ky, kx) */
const long long column = i - row * positions;
const int kx = (int)(row % kw);
const int ky = (int)((row / kw) % kh);
const int ch = (int)(row / ((long long)kw * kh));
const int ox = (int)(column % ow);
const int oy = (int)((column / ow) % oh);
const long long b = column / ((long long)ow * oh);
const int iy = oy * sh + ky - ph;                       /* the pixel this entry copies, */
const int ix = ox * sw + kx - pw;                       /* in unpadded coordinates */
if (iy >= 0 && iy < h && ix >= 0 && ix < w) {
    col = x[((b * c + ch) * h + iy) * w + ix];
} else {
    col = (T)0;                                         /* the padding */
}
"""

#: Body of the col2im kernel; ``i`` is the index of the image pixel ``img`` it writes.
COL2IM_BODY = r"""
const long long positions = (long long)n * oh * ow;
const int xx = (int)(i % w);
const int yy = (int)((i / w) % h);
const int ch = (int)((i / ((long long)w * h)) % c);
const long long b = i / ((long long)w * h * c);
const int yp = yy + ph;                                 /* the pixel in padded coordinates */
const int xp = xx + pw;
T total = bias[ch];
for (int ky = yp % sh; ky < kh && ky <= yp; ky += sh) {
    const int oy = (yp - ky) / sh;                      /* window row whose tap ky lands on yp */
    if (oy >= oh) continue;
    for (int kx = xp % sw; kx < kw && kx <= xp; kx += sw) {
        const int ox = (xp - kx) / sw;
        if (ox >= ow) continue;
        total += cols[(((long long)ch * kh + ky) * kw + kx) * positions + (b * oh + oy) * ow + ox];
    }
}
img = total;
"""


def supports(*arrays) -> bool:
    """Whether these kernels handle the arrays: CuPy arrays (of any float dtype CuPy compiles for)."""
    return all(backend.device_of(a) == "cuda" for a in arrays)


@functools.lru_cache(maxsize=None)
def _kernels(cp):
    """Build (once per array module) the two ElementwiseKernels; CuPy compiles each per dtype on first launch."""
    im2col_kernel = cp.ElementwiseKernel("raw T x, " + GEOMETRY_PARAMS, "T col", IM2COL_BODY, "minigrad_im2col")
    col2im_kernel = cp.ElementwiseKernel("raw T cols, raw T bias, " + GEOMETRY_PARAMS, "T img", COL2IM_BODY,
                                         "minigrad_col2im")
    return im2col_kernel, col2im_kernel


@functools.lru_cache(maxsize=64)
def _zero_bias(cp, dtype, channels):
    """A zero bias for col2im without one, made once per (module, dtype, channels) and only ever read: a
    ``zeros`` per call would be one more launch for nothing."""
    return cp.zeros(channels, dtype=dtype)


def _geometry(image_shape, kernel_size, stride, padding):
    n, c, h, w = image_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    oh, ow = output_size(h, kh, sh, ph), output_size(w, kw, sw, pw)
    return (n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow)


def im2col(x, kernel_size, stride, padding):
    """CUDA version of :func:`minigrad.kernels.im2col.im2col`: (N, C, H, W) -> (C*kH*kW, N*OH*OW)."""
    cp = cupy_module()
    geometry = _geometry(x.shape, kernel_size, stride, padding)   # x is raw: read in whatever order it is
    n, c, _, _, kh, kw, _, _, _, _, oh, ow = geometry
    cols = cp.empty((c * kh * kw, n * oh * ow), dtype=x.dtype)
    if cols.size:
        _kernels(cp)[0](x, *geometry, cols)
    return cols


def col2im(cols, image_shape, kernel_size, stride, padding, bias=None, out=None):
    """CUDA version of :func:`minigrad.kernels.im2col.col2im`: (C*kH*kW, N*OH*OW) -> ``image_shape``."""
    cp = cupy_module()
    cols = cp.ascontiguousarray(cols)
    geometry = _geometry(image_shape, kernel_size, stride, padding)
    n, c, _, _, kh, kw, _, _, _, _, oh, ow = geometry
    if tuple(cols.shape) != (c * kh * kw, n * oh * ow):  # the kernel does not check its indices
        raise ValueError(f"col2im: a column matrix of shape {tuple(cols.shape)} does not fit images "
                         f"{tuple(image_shape)} with kernel {kernel_size}, stride {stride}, padding {padding}")
    bias = _zero_bias(cp, cols.dtype, c) if bias is None else cp.ascontiguousarray(bias, dtype=cols.dtype)
    img = cp.empty(tuple(image_shape), dtype=cols.dtype) if out is None else out
    if tuple(img.shape) != tuple(image_shape) or img.dtype != cols.dtype or not img.flags.c_contiguous:
        raise ValueError(f"col2im: out must be a C-contiguous {cols.dtype} array of shape {tuple(image_shape)}")
    if img.size:
        _kernels(cp)[1](cols, bias, *geometry, img)
    return img


def to_channel_rows(x):
    """(N, C, H, W) -> (C, N*H*W), as :func:`minigrad.kernels.im2col.to_channel_rows`: a view when ``x`` is
    stored in channel rows already (what a convolution's product or batch norm's gradient is), else a copy."""
    n, c, h, w = x.shape
    if is_channel_rows(x) or (x.flags.c_contiguous and (n == 1 or c == 1)):
        return x.swapaxes(0, 1).reshape(c, n * h * w)
    return cupy_module().ascontiguousarray(x.swapaxes(0, 1)).reshape(c, n * h * w)


def from_channel_rows(rows, n, h, w, bias=None):
    """(C, N*H*W) -> (N, C, H, W) as :func:`minigrad.kernels.im2col.from_channel_rows`, but as a view of
    ``rows`` in channel-rows order, with ``bias`` (C,) added into ``rows`` in place when given: ``rows`` must
    be an array the caller owns (a product it has just made). One kernel with a bias, none without."""
    c = rows.shape[0]
    if bias is not None:
        rows += bias.reshape(c, 1)
    return rows.reshape(c, n, h, w).swapaxes(0, 1)


# ------------------------------------------------------------------------------------ channel rows
NCHW, CHANNEL_ROWS = 0, 1   # the layout codes the raw kernels (norm_cuda.py) take


def is_channel_rows(x) -> bool:
    """Whether ``x`` (N, C, ...) is stored contiguously in channel-rows order (C, N, ...) and not also in
    NCHW order (as it is when N or C is 1)."""
    return x.ndim >= 2 and not x.flags.c_contiguous and x.swapaxes(0, 1).flags.c_contiguous


def kernel_buffer(x):
    """``(buffer, layout)``: a C-contiguous array with ``x``'s values for a raw kernel (which sees a pointer),
    and their order in it: ``x`` itself (:data:`NCHW`), ``x.swapaxes(0, 1)`` for an ``x`` in channel rows
    (:data:`CHANNEL_ROWS`, no copy), or a C-contiguous copy of any other ``x`` (NCHW, one kernel)."""
    if x.flags.c_contiguous:
        return x, NCHW
    if is_channel_rows(x):
        return x.swapaxes(0, 1), CHANNEL_ROWS
    return cupy_module().ascontiguousarray(x), NCHW


def logical_shape(buffer, layout):
    """The (N, C, ...) shape of the values in a :func:`kernel_buffer` ``buffer`` of order ``layout``."""
    shape = tuple(buffer.shape)
    return shape if layout == NCHW else (shape[1], shape[0]) + shape[2:]


def empty_channel_rows(shape, dtype):
    """A new array of shape ``shape`` (N, C, ...) stored in channel-rows order (no kernel)."""
    shape = tuple(shape)
    return cupy_module().empty((shape[1], shape[0]) + shape[2:], dtype=dtype).swapaxes(0, 1)


def empty_like(x, dtype=None):
    """A new array shaped like ``x``: in channel rows when ``x`` is, else C-contiguous (no kernel)."""
    dtype = x.dtype if dtype is None else dtype
    if is_channel_rows(x):
        return empty_channel_rows(x.shape, dtype)
    return cupy_module().empty(x.shape, dtype=dtype)
