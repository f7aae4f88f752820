"""Registry entries for ``minigrad/ops/matmul.py``: ``a @ b`` (every combination of 1-D, 2-D and batched
operands, batch dims broadcast), an array on the left (``ndarray @ Tensor``) and ``F.linear``. See
:mod:`minigrad.testing.registry` for what each field means.
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from .. import functional as F
from ..ops import matmul as mm
from . import strategies as mst
from .registry import Case, OpSpec, register



@st.composite
def _matmul_cases(draw):
    kind = draw(st.sampled_from(["vv", "vm", "mv", "mm", "batched", "batched_v", "v_batched"]))
    side = st.integers(1, 4)
    m, k, n = draw(side), draw(side), draw(side)
    if kind == "batched":
        ba, bb = draw(mst.broadcastable_shapes(min_dims=1, max_dims=2, max_side=3))
        sa, sb = (*ba, m, k), (*bb, k, n)
    else:
        batch = (draw(st.integers(1, 3)),)
        sa, sb = {"vv": ((k,), (k,)), "vm": ((k,), (k, n)), "mv": ((m, k), (k,)), "mm": ((m, k), (k, n)),
                  "batched_v": ((*batch, m, k), (k,)), "v_batched": ((k,), (*batch, k, n))}[kind]
    return Case((draw(mst.float_arrays(sa)), draw(mst.float_arrays(sb))),
                {"via": draw(st.sampled_from(["operator", "method"]))})


register(OpSpec(
    name="matmul",
    fn=lambda a, b, via: a @ b if via == "operator" else a.matmul(b),
    cases=_matmul_cases(),
    reference=lambda a, b, via: np.asarray(a @ b),
    covers=(mm.MatMul, "Tensor.__matmul__", "Tensor.matmul"),
    torch_reference=lambda torch, a, b, via: a @ b,
    notes="1-D operands on either side, batch dims broadcast against each other",
))


@st.composite
def _rmatmul_cases(draw):
    m, k, n = (draw(st.integers(1, 4)) for _ in range(3))
    return Case((draw(mst.float_arrays((m, k))), draw(mst.float_arrays((k, n)))))


register(OpSpec(
    name="rmatmul",
    fn=lambda a, b: a.numpy() @ b,   # ndarray @ Tensor defers to Tensor.__rmatmul__ (__array_priority__)
    cases=_rmatmul_cases(),
    reference=lambda a, b: a @ b,
    covers=(mm.MatMul, "Tensor.__rmatmul__"),
    differentiable=(1,),
    torch_reference=lambda torch, a, b: a.detach() @ b,
    notes="the left operand is a NumPy constant, so only b is differentiated",
))


@st.composite
def _linear_cases(draw):
    fin, fout = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    lead = draw(mst.shapes(min_dims=0, max_dims=2, max_side=3))
    arrays = (draw(mst.float_arrays((*lead, fin))), draw(mst.float_arrays((fout, fin))))
    if draw(st.booleans()):
        arrays += (draw(mst.float_arrays((fout,))),)
    return Case(arrays)


register(OpSpec(
    name="linear",
    fn=lambda x, w, *b: F.linear(x, w, *b),
    cases=_linear_cases(),
    reference=lambda x, w, *b: x @ w.T + (b[0] if b else 0.0),
    covers=(mm.Linear, "F.linear"),
    torch_reference=lambda torch, x, w, *b: torch.nn.functional.linear(x, w, *b),
    notes="weight (out, in) as PyTorch; any number of leading dims, bias optional",
))
