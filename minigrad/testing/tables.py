"""Table rows for the registry: the simple elementwise ops and the reductions are one line each.

A row names the op's ``Function``, its spellings (the ``"F.<name>"`` / ``"Tensor.<name>"`` strings the
meta-test reads, which are also how ``fn`` calls the op), a NumPy reference, the PyTorch function (a dotted
path under ``torch``) and the inputs to draw; :func:`register_rows` turns each row into an :class:`OpSpec`
with the same checks as any hand-written entry. A case draws one spelling (option ``via``), so every
spelling runs through every check. The input domains (:func:`within`, :func:`positive`,
:func:`away_from_zero`) keep central differences meaningful; ``strategies.py`` explains why.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from hypothesis import strategies as st

from .. import functional as F
from ..tensor import Tensor
from . import strategies as mst
from .registry import Case, OpSpec, register

__all__ = ["Unary", "Binary", "Reduction", "register_rows", "spelling", "torch_function", "within", "positive",
           "away_from_zero", "axis"]


# ------------------------------------------------------------------------------------------ input domains
def within(low, high):
    """Values in [low, high] (e.g. exp's [-3, 3], where exp stays moderate)."""
    return lambda shape: mst.float_arrays(shape, low, high)


def positive(low, high):
    """Values in [low, high] with low > 0 (log, sqrt, fractional powers)."""
    return lambda shape: mst.positive_arrays(shape, low, high)


def away_from_zero(margin):
    """Values at least ``margin`` from 0 (a kink at 0: relu, abs; a pole at 0: 1/x)."""
    return lambda shape: mst.away_from(shape, 0.0, margin=margin)


# ------------------------------------------------------------------------------------------ spellings
def spelling(name) -> Callable:
    """``"F.relu"`` -> ``F.relu``; ``"Tensor.exp"`` -> ``Tensor.exp`` (called with the tensor first)."""
    space, attr = name.split(".", 1)
    return getattr(F if space == "F" else Tensor, attr)


def torch_function(torch, path):
    """``torch_function(torch, "nn.functional.softplus")`` -> ``torch.nn.functional.softplus``."""
    target = torch
    for part in path.split("."):
        target = getattr(target, part)
    return target


def axis(dim):
    """A ``dim`` option as NumPy's ``axis`` (tuples stay tuples)."""
    return tuple(dim) if isinstance(dim, (tuple, list)) else dim


def _with_via(cases, vias):
    return st.tuples(cases, st.sampled_from(vias)).map(
        lambda cv: Case(cv[0].arrays, {**cv[0].options, "via": cv[1]}))


# ------------------------------------------------------------------------------------------ rows
@dataclass(frozen=True)
class Unary:
    """``op(x)``: one array drawn by ``values(shape)``."""

    name: str
    op: type
    spellings: tuple
    reference: Callable
    torch: str
    values: Callable = mst.float_arrays
    notes: str = ""

    def spec(self):
        cases = _with_via(self.values(mst.shapes()).map(lambda a: Case((a,))), self.spellings)
        return OpSpec(
            name=self.name, fn=lambda x, via: spelling(via)(x), cases=cases,
            reference=lambda x, via: self.reference(x), covers=(self.op, *self.spellings),
            torch_reference=lambda torch, x, via: torch_function(torch, self.torch)(x), notes=self.notes)


@dataclass(frozen=True)
class Binary:
    """``operator(a, b)`` on two arrays of mutually broadcastable shapes."""

    name: str
    op: type
    operator: Callable
    spelling: str
    lhs: Callable = mst.float_arrays
    rhs: Callable = mst.float_arrays
    notes: str = ""

    def spec(self):
        @st.composite
        def cases(draw):
            s0, s1 = draw(mst.broadcastable_shapes())
            return Case((draw(self.lhs(s0)), draw(self.rhs(s1))))

        return OpSpec(
            name=self.name, fn=lambda a, b: self.operator(a, b), cases=cases(), reference=self.operator,
            covers=(self.op, self.spelling), torch_reference=lambda torch, a, b: self.operator(a, b),
            notes=self.notes)


@dataclass(frozen=True)
class Reduction:
    """``x.<method>(dim=..., keepdim=...)`` with ``dim`` None, an int or a tuple (negative ones too)."""

    name: str
    op: type
    spelling: str
    reference: Callable
    torch: str
    values: Callable = mst.float_arrays
    notes: str = ""

    def spec(self):
        @st.composite
        def cases(draw):
            x = draw(self.values(mst.shapes()))
            return Case((x,), {"dim": draw(mst.dims_for(x.ndim)), "keepdim": draw(st.booleans())})

        method = self.spelling.split(".", 1)[1]

        def reference(x, dim, keepdim):
            return np.asarray(self.reference(x, axis=None if dim is None else axis(dim), keepdims=keepdim))

        def torch_reference(torch, x, dim, keepdim):
            fn = torch_function(torch, self.torch)
            if dim is None:
                out = fn(x)
                return out.reshape((1,) * x.ndim) if keepdim else out
            return fn(x, dim=dim, keepdim=keepdim)

        return OpSpec(
            name=self.name, fn=lambda x, dim, keepdim: getattr(x, method)(dim=dim, keepdim=keepdim),
            cases=cases(), reference=reference, covers=(self.op, self.spelling), torch_reference=torch_reference,
            notes=self.notes)


def register_rows(rows: Any) -> None:
    """Register one :class:`OpSpec` per row."""
    for row in rows:
        register(row.spec())
