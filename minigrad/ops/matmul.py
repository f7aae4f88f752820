"""Matrix products: ``a @ b`` (NumPy's matmul semantics, batched and broadcast) and ``F.linear`` (registry
entries: ``minigrad/testing/entries_matmul.py``). ``F.linear``'s forward pass is the ``matmul`` kernel family
(the product and the bias as arrays on the CPU; a small layer in one kernel on the GPU,
``kernels/matmul_cuda.py``)."""
from __future__ import annotations

import numpy as np

from .. import kernels
from ..autograd import Function
from ..backend import array_module


def _check_matmul(a, b):
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: both operands need at least 1 dim, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    k_b = b.shape[-2] if b.ndim > 1 else b.shape[0]
    if a.shape[-1] != k_b:
        raise ValueError(
            f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} do not line up: "
            f"the first has {a.shape[-1]} columns but the second has {k_b} rows")
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch dims of shapes {tuple(a.shape)} and {tuple(b.shape)} "
                         "cannot be broadcast together") from None


class MatMul(Function):
    """``a @ b``. With A = a and B = b as (batches of) matrices and G the upstream gradient:
    dA = G B^T and dB = A^T G. A 1-D operand is treated as a row (a) or column (b) vector, as NumPy
    does, and its gradient is turned back into a vector.

    Batch dimensions broadcast as in NumPy, and the gradients come back in the *broadcast* batch shape
    (the output's): G B^T has the batch dims of G, not of A. Summing them down to each input's shape is
    the engine's job (``autograd.unbroadcast``, rule 1 of the engine), as for every other op; this op
    only removes the vector axes it added for a 1-D operand.
    """

    @staticmethod
    def forward(ctx, a, b):
        _check_matmul(a, b)
        ctx.save_for_backward(a, b)
        return a @ b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_arrays
        xp = array_module(grad)
        a2 = a if a.ndim > 1 else a[None, :]
        b2 = b if b.ndim > 1 else b[:, None]
        # Give the gradient back the axes NumPy dropped for 1-D operands. The column axis of a 1-D b
        # goes first: for vector @ vector the output is 0-d, and (,) -> (1,) -> (1, 1) only works in
        # that order.
        g = grad
        if b.ndim == 1:
            g = xp.expand_dims(g, -1)
        if a.ndim == 1:
            g = xp.expand_dims(g, -2)
        da = db = None
        if ctx.needs_input_grad[0]:
            da = g @ xp.swapaxes(b2, -1, -2)            # (*batch, M, K); (*batch, 1, K) for a 1-D a
            if a.ndim == 1:
                da = da[..., 0, :]                      # (*batch, K): the engine sums the batch away
        if ctx.needs_input_grad[1]:
            db = xp.swapaxes(a2, -1, -2) @ g            # (*batch, K, N); (*batch, K, 1) for a 1-D b
            if b.ndim == 1:
                db = db[..., 0]                         # (*batch, K)
        return da, db


class Linear(Function):
    """y = x W^T + b with W of shape (out_features, in_features), as ``torch.nn.functional.linear``.
    x may have any number of leading dims. dx = G W, dW = G^T x (summed over the leading dims),
    db = G summed over the leading dims."""

    @staticmethod
    def forward(ctx, x, weight, *bias):
        if weight.ndim != 2 or x.ndim < 1 or x.shape[-1] != weight.shape[1]:
            raise ValueError(f"linear: input of shape {tuple(x.shape)} does not fit weight of shape "
                             f"{tuple(weight.shape)} (expected input (..., {weight.shape[1] if weight.ndim == 2 else '?'}))")
        if bias and bias[0].shape != (weight.shape[0],):
            raise ValueError(f"linear: bias has shape {tuple(bias[0].shape)}, expected ({weight.shape[0]},)")
        if any(a.dtype != x.dtype for a in (weight, *bias)):
            got = ", ".join(f"{name} {a.dtype}" for name, a in zip(("input", "weight", "bias"), (x, weight, *bias)))
            raise TypeError(f"linear: input, weight and bias must have one dtype, got {got}")
        ctx.save_for_backward(x, weight)
        return kernels.for_arrays("matmul", x, weight, *bias).linear(x, weight, bias[0] if bias else None)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_arrays
        g2 = grad.reshape(-1, grad.shape[-1])
        dx = grad @ weight if ctx.needs_input_grad[0] else None
        dw = g2.T @ x.reshape(-1, x.shape[-1]) if ctx.needs_input_grad[1] else None
        if len(ctx.needs_input_grad) == 3:
            return dx, dw, (g2.sum(axis=0) if ctx.needs_input_grad[2] else None)
        return dx, dw
