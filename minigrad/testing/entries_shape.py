"""Registry entries for ``minigrad/ops/shape.py``: reshape and its spellings (view, flatten, unsqueeze,
squeeze), permute and transpose, basic and advanced indexing, cat, stack and pad. See
:mod:`minigrad.testing.registry` for what each field means.
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from .. import backend, creation
from .. import functional as F
from ..ops import shape as sh
from . import strategies as mst
from .registry import Case, OpSpec, register



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
    cases=mst.float_arrays(mst.shapes()).map(lambda a: Case((a,))),
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
