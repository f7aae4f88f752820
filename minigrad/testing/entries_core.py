"""Registry entries for the core ops: elementwise arithmetic and activations, reductions and the
log-sum-exp family, matrix products, shape ops and indexing, the losses, casts and copies.

See :mod:`minigrad.testing.registry` for what each field means. Where an entry covers several spellings
of one op (``F.relu(x)`` and ``x.relu()``, ``x @ y`` and ``x.matmul(y)``), the case draws a ``via``
option that picks the spelling, so every spelling is exercised by the same checks.

NumPy references compute in float64 and take the same arguments as ``fn`` (arrays, then options);
PyTorch references receive the ``torch`` module first.
"""
from __future__ import annotations

import operator

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from .. import backend, creation
from .. import functional as F
from ..ops import elementwise as ew
from ..ops import loss as loss_ops
from ..ops import matmul as mm
from ..ops import reduce as red
from ..ops import shape as sh
from ..tensor import Tensor
from . import strategies as mst
from .registry import Case, OpSpec, register

# ------------------------------------------------------------------------------------------- helpers


def _unary_case(values):
    """Cases of one array drawn by ``values(shape_strategy)``."""
    return values(mst.shapes()).map(lambda a: Case((a,)))


def _with_via(cases, vias):
    """Add a ``via`` option (which spelling of the op to call) to every case."""
    return st.tuples(cases, st.sampled_from(vias)).map(
        lambda cv: Case(cv[0].arrays, {**cv[0].options, "via": cv[1]}))


def _np_logsumexp(x, axis, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def _np_softmax(x, axis):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _np_softplus(x):
    return np.logaddexp(0.0, x)


def _np_sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _axis(dim):
    return tuple(dim) if isinstance(dim, (tuple, list)) else dim


# ------------------------------------------------------------------------------------------- binary


@st.composite
def _binary_cases(draw, lhs=mst.float_arrays, rhs=mst.float_arrays):
    s0, s1 = draw(mst.broadcastable_shapes())
    return Case((draw(lhs(s0)), draw(rhs(s1))))


def _register_binary(name, cls, op, dunder, rhs=mst.float_arrays, lhs=mst.float_arrays, notes=""):
    register(OpSpec(
        name=name,
        fn=lambda a, b: op(a, b),
        cases=_binary_cases(lhs=lhs, rhs=rhs),
        reference=op,
        covers=(cls, f"Tensor.{dunder}"),
        torch_reference=lambda torch, a, b: op(a, b),
        notes=notes,
    ))


_register_binary("add", ew.Add, operator.add, "__add__")
_register_binary("sub", ew.Sub, operator.sub, "__sub__")
_register_binary("mul", ew.Mul, operator.mul, "__mul__")
_register_binary("div", ew.Div, operator.truediv, "__truediv__",
                 rhs=lambda s: mst.away_from(s, 0.0, margin=0.5),
                 notes="divisors at least 0.5 from zero, so 1/b stays moderate")
_register_binary("pow", ew.Pow, operator.pow, "__pow__",
                 lhs=lambda s: mst.positive_arrays(s, 0.3, 2.5),
                 notes="positive bases: d(a**b)/db = a**b log(a) needs a > 0")

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

# ------------------------------------------------------------------------------------------- unary


def _register_unary(name, cls, fn_by_via, reference, covers, torch_reference, values=mst.float_arrays,
                    notes="", **extra):
    vias = sorted(fn_by_via)
    register(OpSpec(
        name=name,
        fn=lambda x, via: fn_by_via[via](x),
        cases=_with_via(_unary_case(values), vias),
        reference=lambda x, via: reference(x),
        covers=(cls, *covers),
        torch_reference=lambda torch, x, via: torch_reference(torch, x),
        notes=notes,
        **extra,
    ))


_register_unary("neg", ew.Neg, {"operator": operator.neg}, np.negative, ["Tensor.__neg__"],
                lambda torch, x: -x)
_register_unary("exp", ew.Exp, {"method": Tensor.exp}, np.exp, ["Tensor.exp"], lambda torch, x: x.exp(),
                values=lambda s: mst.float_arrays(s, -3.0, 3.0))
_register_unary("log", ew.Log, {"method": Tensor.log}, np.log, ["Tensor.log"], lambda torch, x: x.log(),
                values=lambda s: mst.positive_arrays(s, 0.2, 5.0))
_register_unary("abs", ew.Abs, {"method": Tensor.abs}, np.abs, ["Tensor.abs"], lambda torch, x: x.abs(),
                values=lambda s: mst.away_from(s, 0.0, margin=0.1), notes="kink at 0")
_register_unary("sqrt", ew.Sqrt, {"method": Tensor.sqrt}, np.sqrt, ["Tensor.sqrt"], lambda torch, x: x.sqrt(),
                values=lambda s: mst.positive_arrays(s, 0.2, 5.0))
_register_unary("tanh", ew.Tanh, {"F": F.tanh, "method": Tensor.tanh}, np.tanh, ["F.tanh", "Tensor.tanh"],
                lambda torch, x: torch.tanh(x), values=lambda s: mst.float_arrays(s, -4.0, 4.0))
_register_unary("sigmoid", ew.Sigmoid, {"F": F.sigmoid, "method": Tensor.sigmoid}, _np_sigmoid,
                ["F.sigmoid", "Tensor.sigmoid"], lambda torch, x: torch.sigmoid(x),
                values=lambda s: mst.float_arrays(s, -8.0, 8.0))
_register_unary("relu", ew.ReLU, {"F": F.relu, "method": Tensor.relu}, lambda x: np.maximum(x, 0.0),
                ["F.relu", "Tensor.relu"], lambda torch, x: torch.relu(x),
                values=lambda s: mst.away_from(s, 0.0, margin=0.1), notes="kink at 0")
_register_unary("softplus", ew.Softplus, {"F": F.softplus}, _np_softplus, ["F.softplus"],
                lambda torch, x: torch.nn.functional.softplus(x),
                values=lambda s: mst.float_arrays(s, -20.0, 20.0))
_register_unary("clone", ew.Clone, {"method": Tensor.clone}, np.copy, ["Tensor.clone"], lambda torch, x: x.clone())
_register_unary("to_device", ew.ToDevice,
                {"round_trip": lambda x: ew.ToDevice.apply(ew.ToDevice.apply(x, device="cpu"), device=x.device)},
                np.copy, [], lambda torch, x: x.clone(),
                notes="x -> cpu -> x's device: on the CPU this checks the graph plumbing of a device copy; "
                      "on a GPU (the cuda-marked registry test) it copies to the host and back")


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
    cases=_unary_case(lambda s: mst.float_arrays(s, -5.0, 5.0)),
    reference=lambda x: x.astype(np.int64),
    covers=("Tensor.long",),
    output_dtype=lambda case, dtype: np.dtype(np.int64),
    grad=False,
    torch_reference=lambda torch, x: x.long(),
    notes="no gradient: an integer result leaves the graph (truncation towards zero, as astype/torch)",
))

# ------------------------------------------------------------------------------------------- reductions


@st.composite
def _reduce_cases(draw, values=mst.float_arrays, min_dims=0):
    x = draw(values(mst.shapes(min_dims=min_dims)))
    return Case((x,), {"dim": draw(mst.dims_for(x.ndim)), "keepdim": draw(st.booleans())})


def _np_reduce(fn):
    def reference(x, dim, keepdim):
        axis = None if dim is None else _axis(dim)
        return np.asarray(fn(x, axis=axis, keepdims=keepdim))
    return reference


def _torch_reduce(name):
    def reference(torch, x, dim, keepdim):
        if dim is None:
            out = getattr(torch, "amax" if name == "max" else name)(x)
            return out.reshape((1,) * x.ndim) if keepdim else out
        if name == "max":
            return torch.amax(x, dim=dim, keepdim=keepdim)
        return getattr(torch, name)(x, dim=dim, keepdim=keepdim)
    return reference


register(OpSpec(
    name="sum", fn=lambda x, dim, keepdim: x.sum(dim=dim, keepdim=keepdim), cases=_reduce_cases(),
    reference=_np_reduce(np.sum), covers=(red.Sum, "Tensor.sum"), torch_reference=_torch_reduce("sum"),
))
register(OpSpec(
    name="mean", fn=lambda x, dim, keepdim: x.mean(dim=dim, keepdim=keepdim), cases=_reduce_cases(),
    reference=_np_reduce(np.mean), covers=(red.Mean, "Tensor.mean"), torch_reference=_torch_reduce("mean"),
))
register(OpSpec(
    name="max", fn=lambda x, dim, keepdim: x.max(dim=dim, keepdim=keepdim),
    cases=_reduce_cases(values=mst.distinct_arrays),
    reference=_np_reduce(np.max), covers=(red.Max, "Tensor.max"), torch_reference=_torch_reduce("max"),
    notes="distinct values (no ties) so the max is differentiable; ties are tested in tests/test_tensor.py",
))


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
    reference=lambda x, dim, keepdim, via: np.asarray(_np_logsumexp(x, _axis(dim), keepdim)),
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
    reference=lambda x, dim, via: _np_softmax(x, dim),
    covers=(red.Softmax, "F.softmax", "Tensor.softmax"),
    torch_reference=lambda torch, x, dim, via: torch.softmax(x, dim),
))
register(OpSpec(
    name="log_softmax",
    fn=lambda x, dim, via: F.log_softmax(x, dim) if via == "F" else x.log_softmax(dim),
    cases=_softmax_cases(),
    reference=lambda x, dim, via: x - _np_logsumexp(x, dim, keepdims=True),
    covers=(red.LogSoftmax, "F.log_softmax", "Tensor.log_softmax"),
    torch_reference=lambda torch, x, dim, via: torch.log_softmax(x, dim),
))

# ------------------------------------------------------------------------------------------- matmul


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

# ------------------------------------------------------------------------------------------- shape


def _factor_shape(draw, size):
    """A random shape with ``size`` elements (prime factors spread over 1 to 3 dims, maybe a -1)."""
    factors, n, p = [], size, 2
    while n > 1:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    ndim = draw(st.integers(1, 3))
    dims = [1] * ndim
    for f in factors:
        dims[draw(st.integers(0, ndim - 1))] *= f
    if draw(st.booleans()):
        dims[draw(st.integers(0, ndim - 1))] = -1
    return tuple(dims)


@st.composite
def _reshape_cases(draw):
    x = draw(mst.float_arrays(mst.shapes(min_dims=0)))
    return Case((x,), {"shape": _factor_shape(draw, x.size), "via": draw(st.sampled_from(["reshape", "view", "tuple"]))})


def _reshape_fn(x, shape, via):
    if via == "tuple":
        return x.reshape(shape)
    return getattr(x, via)(*shape)


register(OpSpec(
    name="reshape",
    fn=_reshape_fn,
    cases=_reshape_cases(),
    reference=lambda x, shape, via: x.reshape(shape),
    covers=(sh.Reshape, "Tensor.reshape", "Tensor.view"),
    torch_reference=lambda torch, x, shape, via: x.reshape(shape),
))


@st.composite
def _flatten_cases(draw):
    x = draw(mst.float_arrays(mst.shapes(min_dims=0)))
    nd = max(x.ndim, 1)
    start = draw(st.integers(0, nd - 1))
    end = draw(st.integers(start, nd - 1))
    neg = draw(st.booleans())
    return Case((x,), {"start_dim": start - nd if neg else start, "end_dim": end - nd if neg else end})


def _np_flatten(x, start_dim, end_dim):
    if x.ndim == 0:
        return x.reshape(1)
    s, e = start_dim % x.ndim, end_dim % x.ndim
    return x.reshape(x.shape[:s] + (-1,) + x.shape[e + 1:])


register(OpSpec(
    name="flatten",
    fn=lambda x, start_dim, end_dim: x.flatten(start_dim, end_dim),
    cases=_flatten_cases(),
    reference=_np_flatten,
    covers=(sh.Reshape, "Tensor.flatten"),
    torch_reference=lambda torch, x, start_dim, end_dim: x.flatten(start_dim, end_dim),
))


@st.composite
def _unsqueeze_cases(draw):
    x = draw(mst.float_arrays(mst.shapes(min_dims=0)))
    return Case((x,), {"dim": draw(st.integers(-x.ndim - 1, x.ndim))})


register(OpSpec(
    name="unsqueeze",
    fn=lambda x, dim: x.unsqueeze(dim),
    cases=_unsqueeze_cases(),
    reference=lambda x, dim: np.expand_dims(x, dim),
    covers=(sh.Reshape, "Tensor.unsqueeze"),
    torch_reference=lambda torch, x, dim: x.unsqueeze(dim),
))


@st.composite
def _squeeze_cases(draw):
    x = draw(mst.float_arrays(mst.shapes(min_dims=1, max_side=2)))
    dim = draw(st.one_of(st.none(), st.integers(-x.ndim, x.ndim - 1)))
    return Case((x,), {"dim": dim})


def _np_squeeze(x, dim):
    if dim is None:
        return np.squeeze(x)
    return np.squeeze(x, axis=dim) if x.shape[dim] == 1 else x


register(OpSpec(
    name="squeeze",
    fn=lambda x, dim: x.squeeze() if dim is None else x.squeeze(dim),
    cases=_squeeze_cases(),
    reference=_np_squeeze,
    covers=(sh.Reshape, "Tensor.squeeze"),
    torch_reference=lambda torch, x, dim: x.squeeze() if dim is None else x.squeeze(dim),
    notes="sides of 1 or 2, so that there is something to squeeze",
))


@st.composite
def _permute_cases(draw):
    x = draw(mst.float_arrays(mst.shapes(min_dims=1)))
    dims = draw(st.permutations(range(x.ndim)))
    dims = tuple(d - x.ndim if draw(st.booleans()) else d for d in dims)
    return Case((x,), {"dims": dims, "via": draw(st.sampled_from(["args", "tuple"]))})


register(OpSpec(
    name="permute",
    fn=lambda x, dims, via: x.permute(*dims) if via == "args" else x.permute(dims),
    cases=_permute_cases(),
    reference=lambda x, dims, via: np.transpose(x, [d % x.ndim for d in dims]),
    covers=(sh.Permute, "Tensor.permute"),
    torch_reference=lambda torch, x, dims, via: x.permute(*dims),
))


@st.composite
def _transpose_cases(draw):
    x = draw(mst.float_arrays(mst.shapes(min_dims=1)))
    d = st.integers(-x.ndim, x.ndim - 1)
    return Case((x,), {"dim0": draw(d), "dim1": draw(d)})


register(OpSpec(
    name="transpose",
    fn=lambda x, dim0, dim1: x.transpose(dim0, dim1),
    cases=_transpose_cases(),
    reference=lambda x, dim0, dim1: np.swapaxes(x, dim0, dim1),
    covers=(sh.Permute, "Tensor.transpose"),
    torch_reference=lambda torch, x, dim0, dim1: x.transpose(dim0, dim1),
))

register(OpSpec(
    name="T",
    fn=lambda x: x.T,
    cases=_unary_case(mst.float_arrays),
    reference=lambda x: x.T,
    covers=(sh.Permute, "Tensor.T"),
    torch_reference=lambda torch, x: x.permute(tuple(reversed(range(x.ndim)))),
    notes="all dims reversed (PyTorch's deprecated x.T on n-d tensors; numpy's .T)",
))


@st.composite
def _getitem_basic_cases(draw):
    x = draw(mst.float_arrays(mst.shapes(min_dims=1)))
    index = draw(hnp.basic_indices(x.shape, allow_newaxis=True, allow_ellipsis=True))
    return Case((x,), {"index": index})


def _torch_index(torch, index):
    """NumPy index -> torch index (arrays become tensors; torch has no negative slice steps)."""
    parts = index if isinstance(index, tuple) else (index,)
    out = tuple(torch.as_tensor(p) if isinstance(p, np.ndarray) else p for p in parts)
    return out if isinstance(index, tuple) else out[0]


def _torch_getitem(torch, x, index, **_):
    parts = index if isinstance(index, tuple) else (index,)
    if any(isinstance(p, slice) and (p.step or 1) < 0 for p in parts):
        # torch refuses negative steps: take the elements through a flat position map instead
        pos = np.arange(x.numel()).reshape(tuple(x.shape))[index]
        return x.reshape(-1)[torch.as_tensor(np.ascontiguousarray(pos).reshape(-1))].reshape(pos.shape)
    return x[_torch_index(torch, index)]


register(OpSpec(
    name="getitem_basic",
    fn=lambda x, index: x[index],
    cases=_getitem_basic_cases(),
    reference=lambda x, index: np.asarray(x[index]),
    covers=(sh.GetItem, "Tensor.__getitem__"),
    torch_reference=_torch_getitem,
    notes="ints (negative too), slices with any step, None and Ellipsis, from hypothesis' basic_indices",
))


@st.composite
def _getitem_advanced_cases(draw):
    x = draw(mst.float_arrays(mst.shapes(min_dims=1)))
    kind = draw(st.sampled_from(["first", "second", "pair", "mask", "mixed"] if x.ndim > 1 else ["first", "mask"]))
    if kind == "first":
        index = draw(mst.index_arrays(x.shape[0]))
    elif kind == "second":
        index = (slice(None), draw(mst.index_arrays(x.shape[1])))
    elif kind == "pair":
        n = draw(st.integers(1, 6))
        index = (draw(mst.index_arrays(x.shape[0], n, n)), draw(mst.index_arrays(x.shape[1], n, n)))
    elif kind == "mixed":
        index = (draw(mst.index_arrays(x.shape[0])), draw(st.integers(-x.shape[1], x.shape[1] - 1)))
    else:
        index = draw(hnp.arrays(np.bool_, x.shape[:draw(st.integers(1, x.ndim))]))
    form = draw(st.sampled_from(["array", "tensor", "list"]))
    return Case((x,), {"index": index, "form": form})


def _convert_index(index, form, device):
    """The drawn NumPy index in the form the case asks for, on the tensor's device."""
    def one(p):
        if not isinstance(p, np.ndarray):
            return p
        if form == "list":
            return p.tolist()
        p = backend.to_device(p, device)
        return creation.tensor(p, device=device) if form == "tensor" else p
    return tuple(one(p) for p in index) if isinstance(index, tuple) else one(index)


register(OpSpec(
    name="getitem_advanced",
    fn=lambda x, index, form: x[_convert_index(index, form, x.device)],
    cases=_getitem_advanced_cases(),
    reference=lambda x, index, form: np.asarray(x[index]),
    covers=(sh.GetItem, "Tensor.__getitem__"),
    torch_reference=lambda torch, x, index, form: x[_torch_index(torch, index)],
    notes="integer arrays with repeated indices (their gradients add up), index pairs, a boolean mask, "
          "an array mixed with an int; given as a NumPy array, an int64 Tensor or a list",
))


@st.composite
def _cat_cases(draw):
    base = draw(mst.shapes(min_dims=1))
    dim = draw(st.integers(-len(base), len(base) - 1))
    sizes = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    arrays = []
    for n in sizes:
        shape = list(base)
        shape[dim] = n
        arrays.append(draw(mst.float_arrays(tuple(shape))))
    return Case(tuple(arrays), {"dim": dim})


register(OpSpec(
    name="cat",
    fn=lambda *xs, dim: creation.cat(list(xs), dim=dim),
    cases=_cat_cases(),
    reference=lambda *xs, dim: np.concatenate(xs, axis=dim),
    covers=(sh.Cat, "mg.cat"),
    torch_reference=lambda torch, *xs, dim: torch.cat(xs, dim=dim),
))


@st.composite
def _stack_cases(draw):
    shape = draw(mst.shapes(min_dims=0))
    n = draw(st.integers(1, 3))
    dim = draw(st.integers(-len(shape) - 1, len(shape)))
    return Case(tuple(draw(mst.float_arrays(shape)) for _ in range(n)), {"dim": dim})


register(OpSpec(
    name="stack",
    fn=lambda *xs, dim: creation.stack(list(xs), dim=dim),
    cases=_stack_cases(),
    reference=lambda *xs, dim: np.stack(xs, axis=dim),
    covers=(sh.Stack, "mg.stack"),
    torch_reference=lambda torch, *xs, dim: torch.stack(xs, dim=dim),
))


@st.composite
def _pad_cases(draw):
    x = draw(mst.float_arrays(mst.shapes(min_dims=1)))
    k = draw(st.integers(1, x.ndim))
    pad = tuple(draw(st.integers(0, 2)) for _ in range(2 * k))
    return Case((x,), {"pad": pad, "value": draw(st.sampled_from([0.0, 1.5]))})


def _np_pad(x, pad, value):
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        widths[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    return np.pad(x, widths, constant_values=value)


register(OpSpec(
    name="pad",
    fn=lambda x, pad, value: F.pad(x, pad, value=value),
    cases=_pad_cases(),
    reference=_np_pad,
    covers=(sh.Pad, "F.pad"),
    torch_reference=lambda torch, x, pad, value: torch.nn.functional.pad(x, pad, value=value),
    notes="PyTorch's order: (left, right) of the last dim first",
))

# ------------------------------------------------------------------------------------------- losses


@st.composite
def _cross_entropy_cases(draw):
    n, c = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    logits = draw(mst.float_arrays((n, c), -4.0, 4.0))
    target = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, c - 1)))
    ignore_index = draw(st.sampled_from([-100, 0, -1]))
    if ignore_index != 0 and draw(st.booleans()):   # mark some targets as ignored
        target = np.where(draw(hnp.arrays(np.bool_, (n,))), ignore_index, target)
    arrays = (logits, target)
    if draw(st.booleans()):
        arrays += (draw(mst.float_arrays((n,), 0.0, 2.0)),)
    options = {"reduction": draw(st.sampled_from(["mean", "sum", "none"])), "ignore_index": ignore_index}
    return Case(arrays, options)


def _ce_weights(target, sample_weight, ignore_index, dtype):
    w = (target != ignore_index).astype(dtype)
    return w * sample_weight[0] if sample_weight else w


def _np_cross_entropy(logits, target, *sample_weight, reduction, ignore_index):
    w = _ce_weights(target, sample_weight, ignore_index, logits.dtype)
    safe = np.where(target == ignore_index, 0, target)
    lse = _np_logsumexp(logits, 1)
    losses = w * (lse - logits[np.arange(len(safe)), safe])
    if reduction == "none":
        return losses
    if reduction == "sum":
        return np.asarray(losses.sum())
    return np.asarray(losses.sum() / w.sum() if w.sum() > 0 else 0.0)


def _torch_cross_entropy(torch, logits, target, *sample_weight, reduction, ignore_index):
    losses = torch.nn.functional.cross_entropy(logits, target, reduction="none", ignore_index=ignore_index)
    w = (target != ignore_index).to(logits.dtype)
    if sample_weight:
        w = w * sample_weight[0]
    losses = losses * w
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / w.sum() if float(w.sum()) > 0 else losses.sum() * 0


register(OpSpec(
    name="cross_entropy",
    fn=lambda logits, target, *sw, reduction, ignore_index: F.cross_entropy(
        logits, target, reduction=reduction, ignore_index=ignore_index, sample_weight=sw[0] if sw else None),
    cases=_cross_entropy_cases(),
    reference=_np_cross_entropy,
    covers=(loss_ops.CrossEntropy, "F.cross_entropy"),
    torch_reference=_torch_cross_entropy,
    differentiable=(0,),
    notes="targets may equal ignore_index (-100, -1, or a real class 0); sample_weight is not "
          "differentiated (it is a weight, as PyTorch's class weights); 'mean' divides by sum of weights",
))


@st.composite
def _bce_cases(draw):
    x = draw(mst.float_arrays(mst.shapes(), -6.0, 6.0))
    reduction = draw(st.sampled_from(["mean", "sum", "none"]))
    if draw(st.booleans()):
        return Case((x, draw(mst.float_arrays(x.shape, 0.0, 1.0))), {"reduction": reduction, "target": None})
    return Case((x,), {"reduction": reduction, "target": draw(st.sampled_from([0.0, 0.9, 1.0]))})


def _np_bce(x, *t, reduction, target):
    t = t[0] if t else np.full(x.shape, target)
    losses = _np_softplus(x) - x * t
    return losses if reduction == "none" else np.asarray(losses.sum() if reduction == "sum" else losses.mean())


def _torch_bce(torch, x, *t, reduction, target):
    t = t[0] if t else torch.full(x.shape, target, dtype=x.dtype)
    return torch.nn.functional.binary_cross_entropy_with_logits(x, t, reduction=reduction)


register(OpSpec(
    name="binary_cross_entropy_with_logits",
    fn=lambda x, *t, reduction, target: F.binary_cross_entropy_with_logits(
        x, t[0] if t else target, reduction=reduction),
    cases=_bce_cases(),
    reference=_np_bce,
    covers=(loss_ops.BCEWithLogits, "F.binary_cross_entropy_with_logits"),
    torch_reference=_torch_bce,
    notes="the target is a tensor (differentiated too) or a number that fills the logits' shape",
))
