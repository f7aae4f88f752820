"""minigrad's dtypes and the rules that pick them (PyTorch's rules, written down).

The supported dtypes are :data:`SUPPORTED`: ``float32`` and ``float64`` (the float dtypes every op and kernel
computes in), ``int32``, ``int64`` and ``bool`` (indices, targets, masks and comparison results). Anything
else (``float16``, ``uint8``, complex, strings, objects) is refused where a tensor is made or cast to, with an
error that lists the supported dtypes, instead of failing later inside an op.

* Python floats and lists of floats become ``float32``; NumPy/CuPy arrays keep their dtype (it must be a
  supported one); ``dtype=`` overrides. Python ints become ``int64`` and booleans stay booleans.
* A Python scalar in an expression takes the tensor's dtype (``x * 2`` stays float32; see
  :func:`scalar_dtype`).
* Two tensors of different dtypes are promoted to the wider one (``float32 + float64 -> float64``,
  ``int64 * float32 -> float32``; see :func:`promote_types`) through a recorded cast, so the gradient
  reaching each input is in that input's own dtype.
* Only floating tensors may require gradients.
"""
from __future__ import annotations

import numbers

import numpy as np

from . import backend

float32, float64, int64, int32, bool_ = np.float32, np.float64, np.int64, np.int32, np.bool_

#: Every dtype a tensor may have.
SUPPORTED = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int32), np.dtype(np.int64),
             np.dtype(np.bool_))
_NAMES = ", ".join(d.name for d in SUPPORTED)

__all__ = ["SUPPORTED", "float32", "float64", "int32", "int64", "bool_", "is_float", "check", "as_array",
           "scalar_dtype", "promote_types"]


def is_float(dtype) -> bool:
    return np.issubdtype(np.dtype(dtype), np.floating)


def check(op, dtype, what="dtype"):
    """``dtype`` as a ``numpy.dtype`` when it is supported, else a TypeError naming ``op`` and the supported
    dtypes. ``dtype`` may be anything NumPy reads as a dtype (``np.float32``, ``"float64"``...)."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{op}: {what} {dtype!r} is not a dtype; the supported dtypes are {_NAMES}") from None
    if dt not in SUPPORTED:
        shown = dtype.__name__ if isinstance(dtype, type) else dt
        raise TypeError(f"{op}: {what} {shown} is not supported; the supported dtypes are {_NAMES} "
                        "(convert first, e.g. array.astype(np.float32))")
    return dt


def as_array(data, dtype=None, device="cpu", op="tensor"):
    """User data (an array, a scalar, a nested list) as an array on ``device`` with minigrad's dtype rules.

    A ragged nested list, a list of strings or any other value NumPy cannot turn into a supported array is a
    ``TypeError``/``ValueError`` that says so in ``op``'s terms.
    """
    device = backend.check_device(device)
    xp = backend.module_for(device)
    if dtype is not None:
        dt = check(op, dtype)
        source = backend.to_device(data, device) if backend.is_array(data) else _from_python(op, data)
        return xp.asarray(source, dtype=dt)
    if backend.is_array(data):
        arr = backend.to_device(data, device)
        check(op, arr.dtype, what="an array of dtype")
        return arr
    arr = _from_python(op, data)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)  # Python floats -> float32, as torch.tensor does
    elif arr.dtype.kind in "iu":
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "fb":
        raise TypeError(f"{op}: cannot make a tensor from {type(data).__name__} (NumPy reads it as dtype "
                        f"{arr.dtype}); the supported dtypes are {_NAMES}")
    return xp.asarray(arr)


def _from_python(op, data):
    """``np.asarray(data)`` for Python numbers and nested lists, with a clear error for ragged lists."""
    if isinstance(data, (str, bytes)) or data is None:
        raise TypeError(f"{op}: cannot make a tensor from {type(data).__name__} {data!r}")
    try:
        arr = np.asarray(data)
    except ValueError as exc:  # NumPy 2 refuses ragged nested sequences
        raise ValueError(f"{op}: the nested lists have different lengths along some dimension (a ragged list "
                         f"cannot be a tensor): {_describe(data)}") from exc
    if arr.dtype == object:
        raise TypeError(f"{op}: cannot make a tensor from {_describe(data)}: its items are not all numbers")
    return arr


def _describe(data, limit=60):
    text = repr(data)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def scalar_dtype(dtype, value):
    """The dtype a Python or NumPy scalar takes next to a tensor of ``dtype`` (PyTorch's rule): the tensor's
    own, except that a float next to an integer/bool tensor is float32 and a number next to a bool tensor
    is int64 (``bool + 1`` counts instead of or-ing)."""
    if not is_float(dtype) and isinstance(value, (float, np.floating)):
        return np.dtype(np.float32)
    if dtype == np.bool_ and not isinstance(value, (bool, np.bool_)):
        return np.dtype(np.int64)
    return np.dtype(dtype)


def promote_types(a, b):
    """The common dtype of two tensors' dtypes: the float one when one is floating and the other is not (as
    PyTorch), else NumPy's promotion (the wider one)."""
    if is_float(a) != is_float(b):
        return np.dtype(a if is_float(a) else b)
    return np.promote_types(a, b)


def is_scalar(value) -> bool:
    """A Python or NumPy number (bools included), as an operand next to a tensor."""
    return isinstance(value, (numbers.Number, np.number, np.bool_))
