"""Registry entries for ``minigrad/ops/weight_norm.py``: the fused weight-norm op ``WeightNorm``. See
:mod:`minigrad.testing.registry` for the fields.

``F.weight_norm``, which applies this op after validating its arguments, keeps its entry in
``entries_norm.py`` (every ``dim``, negative ones and None, and every ``eps``, 2-D and 4-D weights); the
entry here drives the op directly, on larger weights than that entry (up to 6 x 5 and 3 x 3 x 2 x 2, so a
slice has many terms and the random directions of the gradient check are used), including ``g`` slices of
both signs and size-1 dims. The fast kernels against the reference path, and a deliberately broken
backward, are tested in tests/test_fused_weight_norm.py.
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from ..ops.weight_norm import WeightNorm
from .registry import Case, OpSpec, register


@st.composite
def _cases(draw):
    """v of 2 to 4 dims, every value at least 0.3 from zero (so every slice's norm stays >= 0.3), g of the
    weight_g shape for the drawn ``dim``."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    ndim = draw(st.integers(2, 4))
    sides = {2: (1, 6), 3: (1, 4), 4: (1, 3)}[ndim]
    shape = tuple(draw(st.integers(*sides)) for _ in range(ndim))
    v = rng.uniform(0.3, 2.0, shape) * rng.choice([-1.0, 1.0], shape)
    dim = draw(st.sampled_from([0, 1, ndim - 1, -1, None]))
    g_shape = (1,) * ndim if dim is None else tuple(n if a == dim % ndim else 1 for a, n in enumerate(shape))
    g = rng.uniform(0.5, 2.0, g_shape) * rng.choice([-1.0, 1.0], g_shape)
    return Case((v, g), {"dim": dim, "eps": draw(st.sampled_from([0.0, 1e-6, 0.25]))})


def _axes(ndim, dim):
    return tuple(range(ndim)) if dim is None else tuple(a for a in range(ndim) if a != dim % ndim)


def _reference(v, g, dim, eps):
    return g * v / np.sqrt((v * v).sum(axis=_axes(v.ndim, dim), keepdims=True) + eps)


def _torch(torch, v, g, dim, eps):
    return g * v / ((v * v).sum(dim=_axes(v.ndim, dim), keepdim=True) + eps).sqrt()


register(OpSpec(
    name="weight_norm_op",
    fn=lambda v, g, dim, eps: WeightNorm.apply(v, g, dim=dim, eps=eps),
    cases=_cases(),
    reference=_reference,
    covers=(WeightNorm,),
    torch_reference=_torch,
    directions=True,
    notes="w = g v / sqrt(sum v^2 + eps) per slice along dim; backward dg = w_hat . gw, "
          "dv = (g / n) (gw - (w_hat . gw) w_hat), written out in ops/weight_norm.py.",
))
