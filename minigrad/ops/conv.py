"""2-D convolution and transposed convolution (NCHW, PyTorch's weight layouts and output sizes); registry
entries: ``minigrad/testing/entries_conv.py``.

Both ops are written with three steps, whatever the device:

* ``im2col`` / ``col2im`` (unfold every window of an image into a column / add columns back into an
  image; ``minigrad/kernels/im2col.py`` defines them and the column matrix ``cols``),
* ``to_channel_rows`` / ``from_channel_rows`` (NCHW <-> one row per channel, (C, N*H*W)),
* one matrix product per gradient, ``xp.matmul`` (BLAS on the CPU, cuBLAS on the GPU).

The first two are the ``conv`` kernel family: ``kernels.for_arrays("conv", x)`` picks the module that
computes them for the arrays at hand (numba, CuPy or the reference ``kernels/im2col.py``). On the GPU the
layout moves are views wherever the arrays are in channel-rows order already, which is how the CUDA kernels
hand activations and gradients on (``kernels/conv_cuda.py``).
Where a column matrix is made only to be used at once, the CPU goes through the batch in blocks of
samples that fit in the cache (:func:`sample_blocks`); the arithmetic is the same.

conv2d
------
With ``W2d = weight.reshape(Cout, Cin*kH*kW)`` and ``cols = im2col(x)`` of shape (Cin*kH*kW, N*OH*OW),
the output in channel rows is one product (PyTorch's conv2d is a cross-correlation: no kernel flip)::

    Y = W2d @ cols + b[:, None]                         (Cout, N*OH*OW)    y = from_channel_rows(Y)

conv_transpose2d
----------------
The adjoint of conv2d's input map. Read a weight (Cin, Cout, kH, kW) as a conv2d weight that maps Cout
channels to Cin; conv2d(., weight) sends (N, Cout, OH, OW) to (N, Cin, H, W), and conv_transpose2d is
the map that goes back: for every x and z,

    <conv2d(z, weight), x> == <z, conv_transpose2d(x, weight)>          (without biases)

So conv_transpose2d's forward pass is conv2d's input-gradient and its input-gradient is conv2d's
forward pass - computed by the same three steps, never by inserting zeros between input pixels.
Its output size is (H - 1) * stride - 2 * padding + kH + output_padding: ``output_padding`` (< stride)
picks one of the ``stride`` output sizes that conv2d would map to the same H.
"""
from __future__ import annotations

import numbers

from .. import kernels
from ..autograd import Function
from ..backend import array_module
from ..tensor import Tensor


# ------------------------------------------------------------------------------------------ arguments
def pair(value, op, arg, minimum):
    """An int or a pair of ints -> a pair of ints >= ``minimum``, or a clear error naming ``op`` and ``arg``."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value)):
        raise TypeError(f"{op}: {arg} must be an int or a pair of ints, got {value!r}")
    value = (int(value[0]), int(value[1]))
    if min(value) < minimum:
        raise ValueError(f"{op}: {arg} must be >= {minimum}, got {value}")
    return value


def _check_arrays(op, x, weight, bias, in_channels_dim):
    """Shapes common to both ops: 4-D input and weight, the input's channels match the weight's
    ``in_channels_dim``, a bias of one value per output channel."""
    if x.ndim != 4:
        raise ValueError(f"{op}: input must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    if weight.ndim != 4:
        layout = "(Cout, Cin, kH, kW)" if op == "conv2d" else "(Cin, Cout, kH, kW)"
        raise ValueError(f"{op}: weight must be 4-D {layout}, got shape {tuple(weight.shape)}")
    if x.shape[1] != weight.shape[in_channels_dim]:
        raise ValueError(f"{op}: input has {x.shape[1]} channels but weight expects {weight.shape[in_channels_dim]} "
                         f"(input shape {tuple(x.shape)}, weight shape {tuple(weight.shape)})")
    out_channels = weight.shape[1 - in_channels_dim]
    if bias is not None and tuple(bias.shape) != (out_channels,):
        raise ValueError(f"{op}: bias must have shape ({out_channels},) (one value per output channel), "
                         f"got {tuple(bias.shape)}")
    for name, a in (("weight", weight), ("bias", bias)):
        if a is not None and a.dtype != x.dtype:
            raise TypeError(f"{op}: input is {x.dtype} but {name} is {a.dtype}; convert one of them "
                            f"(e.g. x.to(dtype=...)) so all are the same floating dtype")
    if x.dtype.kind != "f":
        raise TypeError(f"{op}: needs floating-point tensors, got {x.dtype}")


def conv2d_output_size(op, hw, kernel, stride, padding):
    """(OH, OW) of a conv2d, with an error when the kernel does not fit in the padded input."""
    out = []
    for size, k, s, p in zip(hw, kernel, stride, padding):
        if size + 2 * p < k:
            raise ValueError(f"{op}: kernel {kernel[0]}x{kernel[1]} is larger than the padded input "
                             f"{hw[0] + 2 * padding[0]}x{hw[1] + 2 * padding[1]} "
                             f"(input {hw[0]}x{hw[1]}, padding {padding})")
        out.append((size + 2 * p - k) // s + 1)
    return tuple(out)


def conv_transpose2d_output_size(op, hw, kernel, stride, padding, output_padding):
    """(OH, OW) = (H - 1) * stride - 2 * padding + kernel + output_padding, which must be positive."""
    out = tuple((size - 1) * s - 2 * p + k + q
                for size, k, s, p, q in zip(hw, kernel, stride, padding, output_padding))
    if min(out) < 1:
        raise ValueError(f"{op}: the output would be {out[0]}x{out[1]} for input {hw[0]}x{hw[1]}, kernel "
                         f"{kernel[0]}x{kernel[1]}, stride {stride}, padding {padding}, output_padding "
                         f"{output_padding}: padding is too large")
    return out


# ------------------------------------------------------------------------------------ blocks of samples
def sample_blocks(k, n, rows, other_rows, positions, itemsize):
    """Split a batch of ``n`` samples into nearly equal ranges [b0, b1) for block-by-block processing.

    Where a column matrix is made only to be used at once - a product folded by col2im, or an unfolded
    gradient multiplied right away - the ops below go through the batch a block of samples at a time.
    Built for the whole batch, the matrix of a large layer (tens of MB) is written to main memory and read
    back; a block of about ``kernels.block_bytes(k)`` bytes is still in the cache when it is used. The
    columns of a block are a contiguous range of the full matrix's columns (the sample is the slowest-
    moving part of a column index), so each block's product lands in a slice of the full result.

    The column matrix has ``rows`` rows and ``positions`` columns per sample, and meets a weight matrix of
    ``rows x other_rows`` in a product. Every block multiplies by the whole weight again, so a block has at
    least 8 * rows * other_rows / (rows + other_rows) columns: then reading the weight costs at most an
    eighth of what reading and writing the block's own matrices does, and the products stay wide enough
    for BLAS to run at full speed (e.g. the width-128 generator's first layer, whose weight is 13 MB, is
    done in one block whatever the budget).
    """
    budget = kernels.block_bytes(k)
    if budget is None or n <= 1:
        return [(0, n)]
    by_bytes = budget // max(1, rows * positions * itemsize)
    by_weight = -(-8 * rows * other_rows // ((rows + other_rows) * positions))   # ceil
    count = -(-n // max(1, by_bytes, by_weight))                                   # number of blocks
    edges = [n * i // count for i in range(count + 1)]
    return list(zip(edges[:-1], edges[1:]))


# ----------------------------------------------------------------------------------------------- conv2d
class Conv2d(Function):
    """y = conv2d(x, weight) + bias; inputs ``(x, weight)`` or ``(x, weight, bias)``.

    Forward (module docstring): ``cols = im2col(x)``, ``Y = W2d @ cols``, ``y = from_channel_rows(Y) + b``.

    Backward, with G = the upstream gradient in channel rows (Cout, N*OH*OW):

    * Y = W2d @ cols is a matrix product, so dW2d = G @ cols^T and dcols = W2d^T @ G.
    * cols = im2col(x) is linear in x; the gradient of a linear map is its adjoint, and the adjoint of
      im2col is col2im: dx = col2im(dcols). (Each pixel collects the gradient of every column entry it
      was copied into.)
    * b is added to every column of a row: db = G summed along the row.

    The column matrix is saved for dW when the weight needs a gradient (kH*kW times the input's memory,
    traded for not unfolding x a second time in the backward pass); only the weight is saved otherwise.
    dx is computed block of samples by block (:func:`sample_blocks`): dcols of a block, then its col2im.
    """

    @staticmethod
    def forward(ctx, x, weight, *bias, stride=(1, 1), padding=(0, 0)):
        b = bias[0] if bias else None
        _check_arrays("conv2d", x, weight, b, in_channels_dim=1)
        cout, cin, kh, kw = weight.shape
        oh, ow = conv2d_output_size("conv2d", x.shape[2:], (kh, kw), stride, padding)
        k = kernels.for_arrays("conv", x)

        cols = k.im2col(x, (kh, kw), stride, padding)            # (Cin*kH*kW, N*OH*OW)
        rows = weight.reshape(cout, cin * kh * kw) @ cols          # (Cout, N*OH*OW)
        y = k.from_channel_rows(rows, x.shape[0], oh, ow, bias=b)  # (N, Cout, OH, OW), + bias

        ctx.x_shape, ctx.stride, ctx.padding, ctx.has_bias = x.shape, stride, padding, bool(bias)
        ctx.save_for_backward(cols if ctx.needs_input_grad[1] else None, weight)
        return y

    @staticmethod
    def backward(ctx, grad):
        cols, weight = ctx.saved_arrays
        cout, cin, kh, kw = weight.shape
        n, oh, ow = grad.shape[0], grad.shape[2], grad.shape[3]
        k, xp = kernels.for_arrays("conv", grad), array_module(grad)
        g = k.to_channel_rows(grad)                               # G: (Cout, N*OH*OW)

        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            w2d_t = weight.reshape(cout, cin * kh * kw).T
            dx = xp.empty(ctx.x_shape, dtype=grad.dtype)
            for b0, b1 in sample_blocks(k, n, cin * kh * kw, cout, oh * ow, grad.dtype.itemsize):
                dcols = w2d_t @ g[:, b0 * oh * ow:b1 * oh * ow]    # W2d^T @ G: (Cin*kH*kW, block*OH*OW)
                k.col2im(dcols, (b1 - b0,) + tuple(ctx.x_shape[1:]), (kh, kw), ctx.stride, ctx.padding,
                         out=dx[b0:b1])
        if ctx.needs_input_grad[1]:
            dw = (g @ cols.T).reshape(weight.shape)               # G @ cols^T: (Cout, Cin*kH*kW)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = g.sum(axis=1)
        return (dx, dw, db) if ctx.has_bias else (dx, dw)


# ------------------------------------------------------------------------------------- conv_transpose2d
class ConvTranspose2d(Function):
    """y = conv_transpose2d(x, weight) + bias; inputs ``(x, weight)`` or ``(x, weight, bias)``, weight
    of shape (Cin, Cout, kH, kW).

    Forward: the input-gradient of conv2d (see :class:`Conv2d`), with x in the role of G::

        X = to_channel_rows(x)              (Cin, N*H*W)
        cols = W2d^T @ X                    (Cout*kH*kW, N*H*W),   W2d = weight.reshape(Cin, Cout*kH*kW)
        y = col2im(cols) + b                (N, Cout, OH, OW)

    (the last two steps block of samples by block, :func:`sample_blocks`). Each input pixel spreads its
    value, weighted by the kernel, over a kH x kW patch of the output; the patches of neighbouring
    pixels (``stride`` apart) overlap and add up.

    Backward, with C = im2col(grad) of shape (Cout*kH*kW, N*H*W), also block by block:

    * y = col2im(cols): the adjoint of col2im is im2col, so dcols = C.
    * cols = W2d^T @ X: dX = W2d @ C (conv2d's forward pass applied to grad) and
      d(W2d^T) = C @ X^T, i.e. dW2d = X @ C^T (conv2d's weight-gradient with grad and x swapped),
      summed over the blocks.
    * b is added to every pixel of its channel: db = grad summed over N, OH and OW.

    ``to_channel_rows(x)`` is saved for dW when the weight needs a gradient (the size of x).
    """

    name = "conv_transpose2d"

    @staticmethod
    def forward(ctx, x, weight, *bias, stride=(1, 1), padding=(0, 0), output_padding=(0, 0)):
        b = bias[0] if bias else None
        _check_arrays("conv_transpose2d", x, weight, b, in_channels_dim=0)
        cin, cout, kh, kw = weight.shape
        n, _, h, w = x.shape
        oh, ow = conv_transpose2d_output_size("conv_transpose2d", (h, w), (kh, kw), stride, padding,
                                              output_padding)
        k, xp = kernels.for_arrays("conv", x), array_module(x)
        w2d_t = weight.reshape(cin, cout * kh * kw).T

        x_rows = k.to_channel_rows(x)                             # X: (Cin, N*H*W)
        y = xp.empty((n, cout, oh, ow), dtype=x.dtype)
        for b0, b1 in sample_blocks(k, n, cout * kh * kw, cin, h * w, x.dtype.itemsize):
            cols = w2d_t @ x_rows[:, b0 * h * w:b1 * h * w]        # W2d^T @ X: (Cout*kH*kW, block*H*W)
            k.col2im(cols, (b1 - b0, cout, oh, ow), (kh, kw), stride, padding, bias=b, out=y[b0:b1])

        ctx.x_hw, ctx.stride, ctx.padding, ctx.has_bias = (h, w), stride, padding, bool(bias)
        ctx.save_for_backward(x_rows if ctx.needs_input_grad[1] else None, weight)
        return y

    @staticmethod
    def backward(ctx, grad):
        x_rows, weight = ctx.saved_arrays
        cin, cout, kh, kw = weight.shape
        h, w = ctx.x_hw
        n = grad.shape[0]
        k, xp = kernels.for_arrays("conv", grad), array_module(grad)
        w2d = weight.reshape(cin, cout * kh * kw)
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]

        dx = dw = db = None
        dx_rows = xp.empty((cin, n * h * w), dtype=grad.dtype) if need_x else None
        blocks = sample_blocks(k, n, cout * kh * kw, cin, h * w, grad.dtype.itemsize) if need_x or need_w else []
        for b0, b1 in blocks:
            # im2col of the (N, Cout, OH, OW) gradient has exactly N*H*W columns: with
            # OH = (H-1)*s - 2p + kH + q and 0 <= q < s, (OH + 2p - kH) // s + 1 = H - 1 + q // s + 1 = H.
            cols = k.im2col(grad[b0:b1], (kh, kw), ctx.stride, ctx.padding)  # C: (Cout*kH*kW, block*H*W)
            columns = slice(b0 * h * w, b1 * h * w)
            if need_x:
                xp.matmul(w2d, cols, out=dx_rows[:, columns])       # W2d @ C: (Cin, block*H*W)
            if need_w:
                part = x_rows[:, columns] @ cols.T                  # X @ C^T: (Cin, Cout*kH*kW)
                dw = part if dw is None else dw + part
        if need_x:
            dx = k.from_channel_rows(dx_rows, n, h, w)
        if need_w:
            dw = dw.reshape(weight.shape)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = k.channel_sum(grad)
        return (dx, dw, db) if ctx.has_bias else (dx, dw)


# --------------------------------------------------------------------------------- user-facing functions
def _inputs(op, x, weight, bias):
    for name, t in (("input", x), ("weight", weight), ("bias", bias)):
        if t is not None and not isinstance(t, Tensor):
            raise TypeError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")
    return (x, weight) if bias is None else (x, weight, bias)


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """``F.conv2d``: see :class:`Conv2d`. ``stride`` and ``padding`` are ints or (height, width) pairs."""
    args = _inputs("conv2d", x, weight, bias)
    return Conv2d.apply(*args, stride=pair(stride, "conv2d", "stride", 1),
                        padding=pair(padding, "conv2d", "padding", 0))


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0):
    """``F.conv_transpose2d``: see :class:`ConvTranspose2d`. ``output_padding`` must be smaller than
    ``stride`` in each dimension."""
    op = "conv_transpose2d"
    args = _inputs(op, x, weight, bias)
    stride = pair(stride, op, "stride", 1)
    output_padding = pair(output_padding, op, "output_padding", 0)
    if output_padding[0] >= stride[0] or output_padding[1] >= stride[1]:
        raise ValueError(f"{op}: output_padding {output_padding} must be smaller than stride {stride} "
                         "in each dimension")
    return ConvTranspose2d.apply(*args, stride=stride, padding=pair(padding, op, "padding", 0),
                                 output_padding=output_padding)
