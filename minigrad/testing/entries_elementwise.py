"""Registry entries for ``minigrad/ops/elementwise.py``: arithmetic (with tensors and with Python/NumPy
scalars), powers, activations, casts and copies.

The simple ops are one row each in :data:`BINARY` and :data:`UNARY` (see ``tables.py``); ops with options or
several spellings that are not plain calls have their own entries below. See
:mod:`minigrad.testing.registry` for what each field means.
"""
from __future__ import annotations

import operator

import numpy as np
from hypothesis import strategies as st

from .. import functional as F
from ..ops import elementwise as ew
from . import strategies as mst
from .references import np_softplus
from .registry import Case, OpSpec, register
from .tables import Binary, Unary, away_from_zero, positive, register_rows, within


def _np_sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _np_relu(x):
    return np.maximum(x, 0.0)


# ------------------------------------------------------------------------------------------- tables

BINARY = (
    #      name   Function  operator          spelling               inputs
    Binary("add", ew.Add,   operator.add,     "Tensor.__add__"),
    Binary("sub", ew.Sub,   operator.sub,     "Tensor.__sub__"),
    Binary("mul", ew.Mul,   operator.mul,     "Tensor.__mul__"),
    Binary("div", ew.Div,   operator.truediv, "Tensor.__truediv__", rhs=away_from_zero(0.5),
           notes="divisors at least 0.5 from zero, so 1/b stays moderate"),
    Binary("pow", ew.Pow,   operator.pow,     "Tensor.__pow__",     lhs=positive(0.3, 2.5),
           notes="positive bases: d(a**b)/db = a**b log(a) needs a > 0"),
)

UNARY = (
    #     name        Function     spellings                         NumPy         torch                     inputs
    Unary("neg",      ew.Neg,      ("Tensor.__neg__",),              np.negative,  "neg",                    mst.float_arrays),
    Unary("exp",      ew.Exp,      ("Tensor.exp",),                  np.exp,       "exp",                    within(-3.0, 3.0)),
    Unary("log",      ew.Log,      ("Tensor.log",),                  np.log,       "log",                    positive(0.2, 5.0)),
    Unary("abs",      ew.Abs,      ("Tensor.abs",),                  np.abs,       "abs",                    away_from_zero(0.1), "kink at 0"),
    Unary("sqrt",     ew.Sqrt,     ("Tensor.sqrt",),                 np.sqrt,      "sqrt",                   positive(0.2, 5.0)),
    Unary("tanh",     ew.Tanh,     ("F.tanh", "Tensor.tanh"),        np.tanh,      "tanh",                   within(-4.0, 4.0)),
    Unary("sigmoid",  ew.Sigmoid,  ("F.sigmoid", "Tensor.sigmoid"),  _np_sigmoid,  "sigmoid",                within(-8.0, 8.0)),
    Unary("relu",     ew.ReLU,     ("F.relu", "Tensor.relu"),        _np_relu,     "relu",                   away_from_zero(0.1), "kink at 0"),
    Unary("softplus", ew.Softplus, ("F.softplus",),                  np_softplus,  "nn.functional.softplus", within(-20.0, 20.0)),
    Unary("clone",    ew.Clone,    ("Tensor.clone",),                np.copy,      "clone",                  mst.float_arrays),
)

register_rows(BINARY)
register_rows(UNARY)

# ------------------------------------------------------------------------------------------- scalars

# Python and NumPy scalars on either side: x + 2, 2 - x, np.float64(3) * x, 1 / x ...
_SCALAR_OPS = {
    "add": operator.add, "sub": operator.sub, "mul": operator.mul, "truediv": operator.truediv,
    "radd": lambda x, s: s + x, "rsub": lambda x, s: s - x, "rmul": lambda x, s: s * x,
    "rtruediv": lambda x, s: s / x,
}


@st.composite
def _scalar_cases(draw):
    x = draw(mst.away_from(mst.shapes(), 0.0, margin=0.5))
    op = draw(st.sampled_from(sorted(_SCALAR_OPS)))
    value = draw(st.sampled_from([-2.5, -0.5, 0.75, 2.0, 3]))
    kind = draw(st.sampled_from(["python", "numpy"]))
    return Case((x,), {"op": op, "scalar": value, "kind": kind})


def _scalar_fn(x, op, scalar, kind):
    s = np.float64(scalar) if kind == "numpy" else scalar
    return _SCALAR_OPS[op](x, s)


def _scalar_ref(x, op, scalar, kind):
    return np.asarray(_SCALAR_OPS[op](x, float(scalar)))


register(OpSpec(
    name="scalar_arithmetic",
    fn=_scalar_fn,
    cases=_scalar_cases(),
    reference=_scalar_ref,
    covers=(ew.Add, ew.Sub, ew.Mul, ew.Div, "Tensor.__radd__", "Tensor.__rsub__", "Tensor.__rmul__",
            "Tensor.__rtruediv__"),
    torch_reference=lambda torch, x, op, scalar, kind: _SCALAR_OPS[op](x, float(scalar)),
    notes="a scalar takes the tensor's dtype (x * 2 stays float32); x is kept 0.5 away from 0 for s / x",
))


@st.composite
def _rpow_cases(draw):
    return Case((draw(mst.float_arrays(mst.shapes(), -2.0, 2.0)),), {"base": draw(st.sampled_from([0.5, 2.0, 3.0]))})


register(OpSpec(
    name="rpow",
    fn=lambda x, base: base ** x,
    cases=_rpow_cases(),
    reference=lambda x, base: np.power(base, x),
    covers=(ew.Pow, "Tensor.__rpow__"),
    torch_reference=lambda torch, x, base: base ** x,
))


@st.composite
def _pow_scalar_cases(draw):
    exponent = draw(st.sampled_from([2, 3, -1, -2, 0, 1, 0.5, 1.5, -0.5, 2.5]))
    if float(exponent).is_integer():
        x = draw(mst.away_from(mst.shapes(), 0.0, margin=0.3))  # negative bases allowed
    else:
        x = draw(mst.positive_arrays(mst.shapes(), 0.3, 2.5))
    return Case((x,), {"exponent": exponent, "via": draw(st.sampled_from(["operator", "method"]))})


register(OpSpec(
    name="pow_scalar",
    fn=lambda x, exponent, via: x ** exponent if via == "operator" else x.pow(exponent),
    cases=_pow_scalar_cases(),
    reference=lambda x, exponent, via: np.power(x, float(exponent)),
    covers=(ew.PowScalar, "Tensor.__pow__", "Tensor.pow"),
    torch_reference=lambda torch, x, exponent, via: x ** exponent,
    notes="integer exponents also take negative bases; fractional ones only positive bases",
))

# ------------------------------------------------------------------------------------------- more ops


@st.composite
def _leaky_cases(draw):
    x = draw(mst.away_from(mst.shapes(), 0.0, margin=0.1))
    return Case((x,), {"negative_slope": draw(st.sampled_from([None, 0.2, 0.01, 1.5]))})


register(OpSpec(
    name="leaky_relu",
    fn=lambda x, negative_slope: F.leaky_relu(x) if negative_slope is None else F.leaky_relu(x, negative_slope),
    cases=_leaky_cases(),
    reference=lambda x, negative_slope: np.where(x > 0, x, (0.01 if negative_slope is None else negative_slope) * x),
    covers=(ew.LeakyReLU, "F.leaky_relu"),
    torch_reference=lambda torch, x, negative_slope: torch.nn.functional.leaky_relu(
        x, 0.01 if negative_slope is None else negative_slope),
    notes="kink at 0; None means the default slope 0.01",
))

register(OpSpec(
    name="to_device",
    fn=lambda x: ew.ToDevice.apply(ew.ToDevice.apply(x, device="cpu"), device=x.device),
    cases=mst.float_arrays(mst.shapes()).map(lambda a: Case((a,))),
    reference=np.copy,
    covers=(ew.ToDevice,),
    torch_reference=lambda torch, x: x.clone(),
    notes="x -> cpu -> x's device: on the CPU this checks the graph plumbing of a device copy; "
          "on a GPU (the cuda-marked registry test) it copies to the host and back",
))

# ------------------------------------------------------------------------------------------- casts

_CAST_VIAS = {
    "to": lambda x, dtype: x.to(dtype),
    "to_kw": lambda x, dtype: x.to(dtype=dtype),
    "float": lambda x, dtype: x.float(),
    "double": lambda x, dtype: x.double(),
}


@st.composite
def _cast_cases(draw):
    via = draw(st.sampled_from(sorted(_CAST_VIAS)))
    dtype = {"float": "float32", "double": "float64"}.get(via) or draw(st.sampled_from(["float32", "float64"]))
    return Case((draw(mst.float_arrays(mst.shapes())),), {"dtype": dtype, "via": via})


register(OpSpec(
    name="cast",
    fn=lambda x, dtype, via: _CAST_VIAS[via](x, np.dtype(dtype)),
    cases=_cast_cases(),
    reference=lambda x, dtype, via: x.astype(dtype),
    covers=(ew.Cast, "Tensor.to", "Tensor.float", "Tensor.double"),
    output_dtype=lambda case, dtype: np.dtype(case.options["dtype"]),
    torch_reference=lambda torch, x, dtype, via: x.to(getattr(torch, dtype)),
    # A float32 result rounds to ~1e-7 relative; eps = 1e-3 keeps that rounding far below rtol.
    gradcheck_options={"eps": 1e-3},
    notes="gradcheck runs through a float32 rounding when dtype is float32, hence eps=1e-3",
))


register(OpSpec(
    name="cast_to_integer",
    fn=lambda x: x.long(),
    cases=mst.float_arrays(mst.shapes(), -5.0, 5.0).map(lambda a: Case((a,))),
    reference=lambda x: x.astype(np.int64),
    covers=("Tensor.long",),
    output_dtype=lambda case, dtype: np.dtype(np.int64),
    grad=False,
    torch_reference=lambda torch, x: x.long(),
    notes="no gradient: an integer result leaves the graph (truncation towards zero, as astype/torch)",
))
