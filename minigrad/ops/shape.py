"""Ops that move values around without arithmetic: reshape, permute, indexing, cat, stack, pad (registry
entries: ``minigrad/testing/entries_shape.py``). Each backward puts the upstream gradient back where the
value came from. Joining arrays is the ``shape`` kernel family (the array module's own on the CPU; on the
GPU a few arrays in one kernel, ``kernels/shape_cuda.py``)."""
from __future__ import annotations

import numpy as np

from .. import kernels
from ..autograd import Function
from ..backend import array_module


class Reshape(Function):
    @staticmethod
    def forward(ctx, x, shape):
        ctx.in_shape = x.shape
        try:
            return x.reshape(shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape a tensor of shape {tuple(x.shape)} "
                             f"({x.size} elements) into {tuple(shape)}") from None

    @staticmethod
    def backward(ctx, grad):
        return grad.reshape(ctx.in_shape)


class Permute(Function):
    @staticmethod
    def forward(ctx, x, dims):
        ctx.dims = dims
        return x.transpose(dims)

    @staticmethod
    def backward(ctx, grad):
        return grad.transpose(np.argsort(ctx.dims))


def _is_basic(index) -> bool:
    """True for indexes made only of ints, slices, None and Ellipsis (they never repeat an element)."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(p, (int, np.integer, slice)) or p is None or p is Ellipsis for p in parts)


class GetItem(Function):
    """``x[index]`` for basic (ints, slices, None, ...) and advanced (integer arrays, boolean masks)
    indexing, with NumPy's semantics. Backward scatters the gradient back; an element picked several
    times by an integer array receives the sum of its gradients (``add.at``)."""

    name = "getitem"
    adds_into_pending = True    # on the GPU the gradient is added into an earlier part's (kernels/shape_cuda.py)

    @staticmethod
    def forward(ctx, x, index):
        ctx.in_shape, ctx.dtype, ctx.index = x.shape, x.dtype, index
        try:
            return x[index]
        except (IndexError, TypeError) as exc:
            raise IndexError(f"getitem: index {index!r} does not fit a tensor of shape {tuple(x.shape)}: {exc}") from None

    @staticmethod
    def backward(ctx, grad):
        (into,) = ctx.pending or (None,)
        return kernels.for_arrays("shape", grad).scatter(grad, ctx.in_shape, ctx.dtype, ctx.index,
                                                         _is_basic(ctx.index), into=into)


class Cat(Function):
    @staticmethod
    def forward(ctx, *arrays, dim=0):
        _check_same("cat", arrays, dim)
        ctx.sizes, ctx.dim = [a.shape[dim] for a in arrays], dim
        return kernels.for_arrays("shape", *arrays).concatenate(arrays, dim)

    @staticmethod
    def backward(ctx, grad):
        xp = array_module(grad)
        return tuple(xp.split(grad, np.cumsum(ctx.sizes)[:-1].tolist(), axis=ctx.dim))


class Stack(Function):
    @staticmethod
    def forward(ctx, *arrays, dim=0):
        _check_same("stack", arrays, None)
        ctx.dim = dim
        return kernels.for_arrays("shape", *arrays).stack(arrays, dim)

    @staticmethod
    def backward(ctx, grad):
        xp = array_module(grad)
        return tuple(xp.take(grad, i, axis=ctx.dim) for i in range(grad.shape[ctx.dim]))


def _check_same(op, arrays, dim):
    """All shapes must agree, except along ``dim`` (cat) or everywhere (stack, dim=None)."""
    if not arrays:
        raise ValueError(f"{op}: needs at least one tensor")
    first = arrays[0].shape
    for a in arrays[1:]:
        same = len(a.shape) == len(first) and all(
            m == n for i, (m, n) in enumerate(zip(a.shape, first)) if i != dim)
        if not same or a.dtype != arrays[0].dtype:
            shapes = ", ".join(f"{tuple(b.shape)} {b.dtype}" for b in arrays)
            along = "" if dim is None else f" except along dim {dim}"
            raise ValueError(f"{op}: tensors must have the same shape{along} and dtype, got {shapes}")


class Pad(Function):
    """Constant padding with PyTorch's ``F.pad`` convention: ``pad = (left, right, top, bottom, ...)``
    pads the last dim first. Backward slices the padding off again."""

    @staticmethod
    def forward(ctx, x, pad, value=0.0):
        widths = [(0, 0)] * x.ndim
        for i in range(len(pad) // 2):
            widths[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
        ctx.slices = tuple(slice(lo, lo + n) for (lo, _), n in zip(widths, x.shape))
        return array_module(x).pad(x, widths, mode="constant", constant_values=value)

    @staticmethod
    def backward(ctx, grad):
        return grad[ctx.slices]
