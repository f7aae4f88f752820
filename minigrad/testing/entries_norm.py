"""Registry entries for ``minigrad/ops/norm.py`` (batch norm) and for ``F.weight_norm`` (weight
normalization, the op of ``minigrad/ops/weight_norm.py``, whose own entry is in ``entries_weight_norm.py``).
See :mod:`minigrad.testing.registry` for the fields.

Batch norm has two entries, one per mode, because the two are different functions of ``x``: training
mode normalises with the batch's statistics (every output depends on every input of its channel),
evaluation mode with the running statistics (an affine map). Each case draws a 2-D or 4-D input, affine
or not; the running statistics are options (they are never differentiated), turned into Tensors of the
input's dtype and device by ``fn``.

Batch norm is ill-conditioned on a channel whose values are nearly equal (the gradient grows like
1/std), so training-mode cases keep every channel's variance above 0.05; values are NumPy normal draws
from a drawn seed, with a drawn offset and spread.
"""
from __future__ import annotations

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from .. import backend
from .. import functional as F
from ..ops.norm import BatchNorm
from ..tensor import Tensor
from .registry import Case, OpSpec, register

# ------------------------------------------------------------------------------------------- batch norm


@st.composite
def _batch_norm_cases(draw, training):
    c = draw(st.integers(1, 3))
    if draw(st.booleans()):
        shape = (draw(st.integers(1, 3)), c, draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    else:
        shape = (draw(st.integers(2, 5)), c)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal(shape) * rng.uniform(0.5, 2.0) + rng.uniform(-3.0, 3.0)
    if training:
        assume(x.size // c > 1)
        assume(x.var(axis=(0,) + tuple(range(2, x.ndim))).min() > 0.05)
    arrays = (x,)
    if draw(st.booleans()):  # affine
        arrays += (rng.uniform(0.5, 2.0, c) * rng.choice([-1.0, 1.0], c), rng.standard_normal(c))
    with_stats = not training or draw(st.booleans())
    options = dict(
        training=training,
        running_mean=rng.standard_normal(c) if with_stats else None,
        running_var=rng.uniform(0.5, 2.0, c) if with_stats else None,
        momentum=draw(st.sampled_from([0.1, 0.5])),
        eps=draw(st.sampled_from([1e-5, 1e-3])),
    )
    return Case(arrays, options)


def _stat(values, x):
    """A running statistic (option) as a Tensor of ``x``'s dtype on ``x``'s device, or None."""
    if values is None:
        return None
    return Tensor(backend.to_device(np.array(values, dtype=x.dtype), x.device))


def _batch_norm_fn(x, *params, training, running_mean, running_var, momentum, eps):
    w, b = params if params else (None, None)
    return F.batch_norm(x, _stat(running_mean, x), _stat(running_var, x), w, b, training=training,
                        momentum=momentum, eps=eps)


def _batch_norm_ref(x, *params, training, running_mean, running_var, momentum, eps):
    axes = (0,) + tuple(range(2, x.ndim))
    view = (1, -1) + (1,) * (x.ndim - 2)
    if training or running_mean is None:
        mean, var = x.mean(axis=axes), x.var(axis=axes)
    else:
        mean, var = np.asarray(running_mean), np.asarray(running_var)
    y = (x - mean.reshape(view)) / np.sqrt(var.reshape(view) + eps)
    if params:
        y = y * params[0].reshape(view) + params[1].reshape(view)
    return y


def _batch_norm_torch(torch, x, *params, training, running_mean, running_var, momentum, eps):
    w, b = params if params else (None, None)
    stat = (lambda v: None if v is None else torch.tensor(np.array(v), dtype=x.dtype))
    return torch.nn.functional.batch_norm(x, stat(running_mean), stat(running_var), w, b, training=training,
                                          momentum=momentum, eps=eps)


for _training in (True, False):
    register(OpSpec(
        name="batch_norm_" + ("train" if _training else "eval"),
        fn=_batch_norm_fn,
        cases=_batch_norm_cases(_training),
        reference=_batch_norm_ref,
        covers=(BatchNorm, "F.batch_norm"),
        torch_reference=_batch_norm_torch,
        directions=True,
        rtol={np.float32: 1e-4},
        atol={np.float32: 1e-5},
        notes="float32 forward tolerance: outputs are O(1) but |x - mean| / std amplifies float32 rounding "
              "of x by up to ~1/0.2; the statistics themselves are float64.",
    ))

# ------------------------------------------------------------------------------------------- weight norm


@st.composite
def _weight_norm_cases(draw):
    """v of 2 or 4 dims, every value at least 0.3 from zero (so every slice's norm is >= 0.3 and 1/norm stays
    moderate), g of PyTorch's weight_g shape for the drawn ``dim`` (0, 1, the last dim, negative, or None)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):
        shape = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    else:
        shape = tuple(draw(st.integers(1, 2)) for _ in range(4))
    v = rng.uniform(0.3, 2.0, shape) * rng.choice([-1.0, 1.0], shape)
    dim = draw(st.sampled_from([0, 1, -1, None, len(shape) - 1]))
    g_shape = (1,) * len(shape) if dim is None else tuple(
        n if a == dim % len(shape) else 1 for a, n in enumerate(shape))
    g = rng.uniform(0.5, 2.0, g_shape) * rng.choice([-1.0, 1.0], g_shape)
    return Case((v, g), {"dim": dim, "eps": draw(st.sampled_from([0.0, 1e-3, 0.5]))})


def _norm_axes(ndim, dim):
    return tuple(range(ndim)) if dim is None else tuple(a for a in range(ndim) if a != dim % ndim)


def _weight_norm_ref(v, g, dim, eps):
    return v * g / np.sqrt((v * v).sum(axis=_norm_axes(v.ndim, dim), keepdims=True) + eps)


def _weight_norm_torch(torch, v, g, dim, eps):
    if eps == 0.0:
        # torch._weight_norm's dim -1 means "one norm over everything" (nn.utils.weight_norm's dim=None)
        return torch._weight_norm(v, g, -1 if dim is None else dim % v.ndim)
    return v * (g / ((v * v).sum(dim=_norm_axes(v.ndim, dim), keepdim=True) + eps).sqrt())


register(OpSpec(
    name="weight_norm",
    fn=lambda v, g, dim, eps: F.weight_norm(v, g, dim=dim, eps=eps),
    cases=_weight_norm_cases(),
    reference=_weight_norm_ref,
    covers=("F.weight_norm",),
    torch_reference=_weight_norm_torch,
    notes="w = g * v / sqrt(sum(v^2) + eps), the norm over every dim but dim (all dims for None); "
          "one WeightNorm op (ops/weight_norm.py) with its backward written out.",
))
