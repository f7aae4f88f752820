"""The GPU shape kernels (``shape_cuda``): joining a few arrays along their first axis in one CuPy
``ElementwiseKernel`` launch.

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
kernel) - goes to the reference. CuPy is imported lazily (through ``minigrad.backend``).
"""
from __future__ import annotations

import functools

import numpy as np

from .. import backend
from . import shape_reference as reference

__all__ = ["supports", "concatenate", "stack", "MOST", "join_params", "join_body"]

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


def join_body(k):
    """The body for ``k`` arrays: the first range that holds ``i`` names the array to copy from."""
    lines = ["if (i < o1) out = a0[i];"]
    lines += [f"else if (i < o{j + 1}) out = a{j}[i - o{j}];" for j in range(1, k - 1)]
    lines.append(f"else out = a{k - 1}[i - o{k - 1}];")
    return "\n".join(lines) + "\n"


@functools.lru_cache(maxsize=None)
def _kernel(cp, k):
    return cp.ElementwiseKernel(*join_params(k), join_body(k), f"minigrad_join{k}")


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
