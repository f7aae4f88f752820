"""Registry entries for ``minigrad/ops/reduce.py``: the reductions (one row each in :data:`REDUCTIONS`, see
``tables.py``) and the log-sum-exp family (logsumexp, softmax, log_softmax), each spelled as ``F.<name>``
and as a Tensor method. See :mod:`minigrad.testing.registry` for what each field means.
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from .. import functional as F
from ..ops import reduce as red
from . import strategies as mst
from .references import np_logsumexp, np_softmax
from .registry import Case, OpSpec, register
from .tables import Reduction, axis, register_rows

REDUCTIONS = (
    #         name    Function  spelling       NumPy    torch   inputs
    Reduction("sum",  red.Sum,  "Tensor.sum",  np.sum,  "sum",  mst.float_arrays),
    Reduction("mean", red.Mean, "Tensor.mean", np.mean, "mean", mst.float_arrays),
    Reduction("max",  red.Max,  "Tensor.max",  np.max,  "amax", mst.distinct_arrays,
              notes="distinct values (no ties) so the max is differentiable; ties are tested in tests/test_tensor.py"),
)

register_rows(REDUCTIONS)


@st.composite
def _lse_cases(draw):
    x = draw(mst.float_arrays(mst.shapes(min_dims=1), -5.0, 5.0))
    dim = draw(mst.dims_for(x.ndim, allow_none=False))
    return Case((x,), {"dim": dim, "keepdim": draw(st.booleans()), "via": draw(st.sampled_from(["F", "method"]))})


register(OpSpec(
    name="logsumexp",
    fn=lambda x, dim, keepdim, via: (F.logsumexp(x, dim, keepdim=keepdim) if via == "F"
                                     else x.logsumexp(dim, keepdim=keepdim)),
    cases=_lse_cases(),
    reference=lambda x, dim, keepdim, via: np.asarray(np_logsumexp(x, axis(dim), keepdim)),
    covers=(red.LogSumExp, "F.logsumexp", "Tensor.logsumexp"),
    torch_reference=lambda torch, x, dim, keepdim, via: torch.logsumexp(x, dim=dim, keepdim=keepdim),
))


@st.composite
def _softmax_cases(draw):
    x = draw(mst.float_arrays(mst.shapes(min_dims=1), -5.0, 5.0))
    dim = draw(st.integers(-x.ndim, x.ndim - 1))
    return Case((x,), {"dim": dim, "via": draw(st.sampled_from(["F", "method"]))})


register(OpSpec(
    name="softmax",
    fn=lambda x, dim, via: F.softmax(x, dim) if via == "F" else x.softmax(dim),
    cases=_softmax_cases(),
    reference=lambda x, dim, via: np_softmax(x, dim),
    covers=(red.Softmax, "F.softmax", "Tensor.softmax"),
    torch_reference=lambda torch, x, dim, via: torch.softmax(x, dim),
))
register(OpSpec(
    name="log_softmax",
    fn=lambda x, dim, via: F.log_softmax(x, dim) if via == "F" else x.log_softmax(dim),
    cases=_softmax_cases(),
    reference=lambda x, dim, via: x - np_logsumexp(x, dim, keepdims=True),
    covers=(red.LogSoftmax, "F.log_softmax", "Tensor.log_softmax"),
    torch_reference=lambda torch, x, dim, via: torch.log_softmax(x, dim),
))
