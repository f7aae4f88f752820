"""The GPU shape kernels (``shape_cuda``): joining a few arrays along their first axis, and scattering the
gradient of a slice of rows back, in one CuPy ``ElementwiseKernel`` launch each.

``cupy.concatenate`` (and ``cupy.stack``, a concatenate of the arrays with a new axis) copies each array into
the result with a kernel of its own, unless it joins more than eight small arrays at once (then one kernel
does it). A training step joins few: the labeled and the unlabeled batch (``mg.cat``), the step's losses for
its one read (``mg.stack`` of six scalars). Here two to eight arrays are joined by one kernel: in C order the
result of a join along the first axis is the arrays one after the other, so the thread for value ``i`` of
the result copies value ``i - offset_j`` of the array ``j`` whose range ``[offset_j, offset_j+1)`` holds ``i``.
The inputs are ``raw`` arguments, which CuPy indexes by their logical C-order index whatever their strides,
so they are read as they are. The body is plain C, generated for each number of arrays
(:func:`join_body`); the tests compile it with the host's C compiler.

Anything else - another axis, mixed dtypes, one array, or more than eight (which CuPy already joins in one
kernel) - goes to the reference.

The gradient of ``x[index]`` (:func:`scatter`) is zeros with the upstream gradient where ``index`` picked:
a ``zeros`` and a ``setitem``, two kernels, as the reference makes it. When the engine holds a running sum
for ``x`` already - a step takes the labeled and the unlabeled rows of one batch of logits, ``x[:n]`` and
``x[n:]`` - the gradient is added into that sum's picked part in place instead (one kernel, and none for the
engine's addition: rule 4 of ``minigrad/autograd.py``). Otherwise, for a slice of rows (``x[a:b]``), one
kernel writes the result (:data:`ROWS_BODY`: ``g[i - lo]`` inside the rows, 0 outside).

CuPy is imported lazily (through ``minigrad.backend``).
"""
from __future__ import annotations

import functools

import numpy as np

from .. import backend
from . import shape_reference as reference

__all__ = ["supports", "concatenate", "stack", "scatter", "MOST", "join_params", "join_body", "ROWS", "ROWS_BODY"]

#: The most arrays one join kernel takes; CuPy joins more than eight small arrays in one kernel itself.
MOST = 8


def supports(*arrays) -> bool:
    """Whether these kernels handle the arrays: CuPy arrays."""
    return all(backend.device_of(a) == "cuda" for a in arrays)


def join_params(k):
    """The parameters of the kernel joining ``k`` arrays: ``a0 .. a{k-1}`` (raw), the offsets ``o1 ..
    o{k-1}`` where each array after the first begins in the result, and the result ``out``."""
    inputs = [f"raw T a{j}" for j in range(k)] + [f"int64 o{j}" for j in range(1, k)]
    return ", ".join(inputs), "T out"


def join_body(k, target="out", arrays="a"):
    """The body for ``k`` arrays ``{arrays}0 ..`` and offsets ``o1 ..``: the first range that holds ``i`` names
    the array whose value ``target`` takes (``optim_cuda.py`` reads Adam's gradients this way too)."""
    if k == 1:
        return f"{target} = {arrays}0[i];\n"
    lines = [f"if (i < o1) {target} = {arrays}0[i];"]
    lines += [f"else if (i < o{j + 1}) {target} = {arrays}{j}[i - o{j}];" for j in range(1, k - 1)]
    lines.append(f"else {target} = {arrays}{k - 1}[i - o{k - 1}];")
    return "\n".join(lines) + "\n"


#: The gradient of a slice of rows: value ``i`` of the result, with the rows' values at ``[lo, hi)`` in C order.
ROWS = ("raw T g, int64 lo, int64 hi", "T out")
ROWS_BODY = "out = (i >= lo && i < hi) ? g[i - lo] : (T)0;\n"


@functools.lru_cache(maxsize=None)
def _kernel(cp, k):
    return cp.ElementwiseKernel(*join_params(k), join_body(k), f"minigrad_join{k}")


@functools.lru_cache(maxsize=None)
def _rows_kernel(cp):
    return cp.ElementwiseKernel(*ROWS, ROWS_BODY, "minigrad_scatter_rows")


def _joins(arrays):
    return 2 <= len(arrays) <= MOST and len({a.dtype for a in arrays}) == 1 and arrays[0].ndim >= 1


def _join(arrays, shape):
    """The arrays' values one after the other in C order, in a new array of ``shape``: one kernel."""
    cp = backend.cupy_module()
    out = cp.empty(shape, dtype=arrays[0].dtype)
    if out.size:
        offsets = np.cumsum([a.size for a in arrays])[:-1]
        _kernel(cp, len(arrays))(*arrays, *(np.int64(o) for o in offsets), out)
    return out


def concatenate(arrays, axis):
    """:func:`minigrad.kernels.shape_reference.concatenate`, in one kernel along the first axis."""
    if axis != 0 or not _joins(arrays):
        return reference.concatenate(arrays, axis)
    return _join(arrays, (sum(a.shape[0] for a in arrays),) + tuple(arrays[0].shape[1:]))


def stack(arrays, axis):
    """:func:`minigrad.kernels.shape_reference.stack`, in one kernel along a new first axis."""
    if axis != 0 or not (2 <= len(arrays) <= MOST and len({a.dtype for a in arrays}) == 1):
        return reference.stack(arrays, axis)
    return _join(arrays, (len(arrays),) + tuple(arrays[0].shape))


# ------------------------------------------------------------------------------------------- scatter
def _row_slice(index, shape):
    """``(a, b)`` when ``index`` picks the rows ``a:b`` of an array of ``shape`` (and everything else), else None."""
    parts = index if isinstance(index, tuple) else (index,)
    if not parts or not isinstance(parts[0], slice) or len(shape) == 0:
        return None
    if any(not (p is Ellipsis or (isinstance(p, slice) and p == slice(None))) for p in parts[1:]):
        return None
    start, stop, step = parts[0].indices(shape[0])
    return (start, max(start, stop)) if step == 1 else None


def _adds_into(into, shape, dtype):
    return into is not None and tuple(into.shape) == tuple(shape) and into.dtype == dtype and into.flags.c_contiguous


def scatter(grad, shape, dtype, index, basic, into=None):
    """:func:`minigrad.kernels.shape_reference.scatter`: added into ``into`` in place when it is given (and
    returned), one kernel for a slice of rows, the reference otherwise."""
    cp = backend.cupy_module()
    if _adds_into(into, shape, dtype) and grad.dtype == dtype:
        if basic:
            part = into[index]      # a view: ``into[index] += grad`` would also store the sum back (a copy)
            part += grad
        else:
            cp.add.at(into, index, grad)
        return into
    rows = _row_slice(index, shape) if basic else None
    if rows is None or grad.dtype != dtype:
        return reference.scatter(grad, shape, dtype, index, basic)
    inner = 1
    for side in shape[1:]:
        inner *= side
    out = cp.empty(shape, dtype=dtype)
    if out.size:
        _rows_kernel(cp)(grad, np.int64(rows[0] * inner), np.int64(rows[1] * inner), out)
    return out
