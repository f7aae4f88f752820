"""Functions that make tensors: ``tensor``, ``zeros``, ``ones``, ``full``, ``randn``, ``rand``, ``arange``,
and the graph ops that take several tensors (``cat``, ``stack``)."""
from __future__ import annotations

import numpy as np

from . import backend, dtypes, random
from .ops.shape import Cat, Stack
from .tensor import Tensor, _shape_args


def tensor(data, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A new tensor from data (Python numbers, nested lists, NumPy/CuPy arrays, a Tensor).

    Python floats become float32 and NumPy float64 arrays stay float64, as ``torch.tensor`` does;
    Python ints become int64. ``dtype`` overrides both. Like ``torch.tensor`` it always copies: the new
    tensor never shares memory with the array (or Tensor) it was made from.

    ``device=None`` keeps the data where it is: a CuPy array (or a CUDA Tensor) gives a CUDA tensor, a copy
    made on the GPU; anything else a CPU tensor. Pass ``device`` to move it.
    """
    source = data.data if isinstance(data, Tensor) else data
    if device is None:
        device = backend.device_of(source) if backend.is_array(source) else "cpu"
    t = Tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)
    if t.data is source:  # no conversion happened, so the caller's array came through as it was
        t.data = t.data.copy()
    return t


def _filled(op, fill, shape, dtype, device, requires_grad):
    shape = _shape_args(shape)
    xp = backend.module_for(device)
    arr = xp.full(shape, fill, dtype=dtypes.check(op, dtype or np.float32))
    return Tensor(arr, requires_grad=requires_grad)


def zeros(*shape, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    return _filled("zeros", 0, shape, dtype, device, requires_grad)


def ones(*shape, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    return _filled("ones", 1, shape, dtype, device, requires_grad)


def full(shape, fill_value, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    return _filled("full", fill_value, (tuple(shape),), dtype, device, requires_grad)


def zeros_like(t: Tensor, requires_grad=False) -> Tensor:
    return zeros(*t.shape, dtype=t.dtype, device=t.device, requires_grad=requires_grad)


def ones_like(t: Tensor, requires_grad=False) -> Tensor:
    return ones(*t.shape, dtype=t.dtype, device=t.device, requires_grad=requires_grad)


def randn(*shape, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    """Standard normal samples from minigrad's seeded generator (see ``manual_seed``)."""
    arr = random.standard_normal(_shape_args(shape), dtypes.check("randn", dtype or np.float32), device)
    return Tensor(arr, requires_grad=requires_grad)


def rand(*shape, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    """Uniform samples in [0, 1) from minigrad's seeded generator."""
    arr = random.uniform(_shape_args(shape), 0.0, 1.0, dtypes.check("rand", dtype or np.float32), device)
    return Tensor(arr, requires_grad=requires_grad)


def arange(start, end=None, step=1, dtype=None, device="cpu") -> Tensor:
    """Values from ``start`` to ``end`` (excluded) by ``step``: int64 for integer arguments, float32 when
    any argument is a float (as ``torch.arange``); ``dtype`` overrides."""
    if end is None:
        start, end = 0, start
    if dtype is None:
        dtype = np.float32 if any(isinstance(v, (float, np.floating)) for v in (start, end, step)) else np.int64
    return Tensor(backend.module_for(device).arange(start, end, step, dtype=dtypes.check("arange", dtype)))


def _tensors(op, tensors):
    tensors = list(tensors)
    if not tensors or not all(isinstance(t, Tensor) for t in tensors):
        raise TypeError(f"{op}: expected a non-empty sequence of Tensors")
    return tensors


def cat(tensors, dim=0) -> Tensor:
    """Concatenate along an existing dim."""
    tensors = _tensors("cat", tensors)
    nd = tensors[0].ndim
    if not -nd <= dim < nd:
        raise ValueError(f"cat: dim {dim} is out of range for tensors with {nd} dims")
    return Cat.apply(*tensors, dim=dim % nd)


def stack(tensors, dim=0) -> Tensor:
    """Stack along a new dim."""
    tensors = _tensors("stack", tensors)
    nd = tensors[0].ndim + 1
    if not -nd <= dim < nd:
        raise ValueError(f"stack: dim {dim} is out of range for a result with {nd} dims")
    return Stack.apply(*tensors, dim=dim % nd)
