"""A strict stand-in for CuPy, backed by NumPy: minigrad's GPU path, run and counted where there is no GPU.

What it is
----------
A module with the part of CuPy's API that minigrad (and ssgan, and the tests) use. Its device array,
:class:`ndarray`, *wraps* a NumPy array (it is not a subclass) and behaves like ``cupy.ndarray`` where that
matters for finding bugs:

* it never turns into a host array implicitly: ``np.asarray(a)`` raises ``TypeError`` (``__array__``), NumPy
  functions and ufuncs refuse it (``__array_function__``, ``__array_ufunc__ = None``), and arithmetic with a
  NumPy array raises ``TypeError`` (Python and NumPy scalars are fine, as in CuPy). The only ways to the host
  are CuPy's: ``.get()``, ``cupy.asnumpy``, ``.item()``, ``.tolist()``, ``bool()``/``float()``/``int()``,
  printing, and a boolean-mask index (CuPy reads the number of selected elements back);
* ``cupy.empty`` gives NaN-filled memory (a byte pattern for integers), so a kernel that leaves part of its
  output unwritten shows up;
* the new results of elementwise operations, ufuncs and reductions are C-contiguous, as CuPy allocates them
  (NumPy follows its inputs' memory order);
* a ``RawKernel`` sees only pointers: its array arguments must be C-contiguous, its scalar arguments NumPy
  scalars of an explicit type (a Python int could be passed with the wrong width on a real GPU);
* unlike CuPy, it keeps NumPy's ``writeable`` flag, so the engine's read-only upstream gradients are enforced
  on the CUDA path as on the CPU (every op's CUDA path runs on it with them).

User kernels (``ElementwiseKernel``, ``RawKernel``) cannot run C here: each kernel *name* maps to a NumPy
function that computes the same thing (:data:`KERNELS`; the reference ``minigrad/kernels/im2col.py`` stands
in for the CUDA im2col / col2im). The kernel bodies themselves are compiled as C on the host and checked by
tests/test_conv_kernels.py and tests/test_fake_cuda_kernels.py.

What it counts (:data:`COUNTS`)
-------------------------------
* ``launches``: every operation that would launch a kernel on a GPU counts one (an elementwise op, a
  reduction, a copy, ``zeros``, a matrix product, a user kernel...; views, reshapes that need no copy,
  ``empty`` and same-dtype ``astype(copy=False)`` count none; a few CuPy routines that launch more than one
  kernel count what CuPy launches: ``random_sample`` 2, ``uniform`` 3, ``pad`` 2, a boolean-mask index 2,
  ``concatenate`` and ``stack`` one per array unless more than eight small arrays are joined in one);
  ``launch_sites`` counts them by the line of minigrad that asked for them;
* ``h2d``: host-to-device copies (``cupy.asarray`` of host data, NumPy index arrays);
* ``reads``: device-to-host reads, each recorded as the line that asked for it: the first caller in minigrad
  past the conversion plumbing (``Tensor.numpy``, ``backend.to_device``), else the first caller outside
  minigrad, e.g. ``"ssgan/steps.py:60 read_once get"``;
* ``syncs``: ``Device().synchronize()`` calls.

Installing it
-------------
``with installed() as counts:`` (or the :func:`fake_cuda` fixture) makes it minigrad's CUDA module through
``minigrad.backend.set_cupy_module`` and ``sys.modules["cupy"]`` (for code that imports CuPy itself),
with fresh counters and a fresh CUDA generator, and restores everything afterwards.
"""
from __future__ import annotations

import builtins as _b
import collections
import contextlib
import functools
import os
import sys
import types

import numpy as _np
import pytest

import minigrad

__all__ = ["ndarray", "COUNTS", "KERNELS", "installed", "fake_cuda"]

_HERE = os.path.abspath(__file__)
_MINIGRAD = os.path.dirname(os.path.abspath(minigrad.__file__)) + os.sep
_ROOT = os.path.dirname(_MINIGRAD.rstrip(os.sep)) + os.sep


# ------------------------------------------------------------------------------------------ the counters
class Counters:
    """What the device was asked to do since the last :meth:`reset`."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.launches = 0
        self.h2d = 0
        self.reads = []
        self.syncs = 0
        self.launch_sites = collections.Counter()
        self.launch_kinds = collections.Counter()

    @property
    def d2h(self) -> int:
        return len(self.reads)


COUNTS = Counters()

#: Failure injection for ``minigrad.backend.cuda_status``'s tests: each name in this set breaks a part of the
#: stand-in: "device" (no device), "nvrtc" (no kernel compiles), "cublas" (matmul fails), "curand" (no random
#: generator), "results" (matmul gives wrong numbers).
FAULTS: set = set()


_PLUMBING = (os.path.join(_MINIGRAD, "backend.py"), os.path.join(_MINIGRAD, "tensor.py"))


def _site():
    """The line of minigrad that asked for what the fake is doing: the first caller in minigrad that is not
    the conversion plumbing (``backend.py``, ``tensor.py``: ``Tensor.numpy`` ends in ``backend.to_device``),
    else the first caller outside this file and that plumbing (ssgan's ``read_once``, a test...)."""
    frame = sys._getframe(2)
    outside = None
    while frame is not None:
        name = frame.f_code.co_filename
        if name != _HERE and name not in _PLUMBING:
            if outside is None:
                outside = frame
            if name.startswith(_MINIGRAD):
                break
        frame = frame.f_back
    frame = frame or outside
    if frame is None:
        return "?"
    path = frame.f_code.co_filename
    path = path[len(_ROOT):] if path.startswith(_ROOT) else os.path.basename(path)
    return f"{path}:{frame.f_lineno} {frame.f_code.co_name}"


def _launch(kind, size=1, count=1):
    """Count ``count`` kernel launches (none for an empty result: CuPy launches nothing then)."""
    if "nvrtc" in FAULTS and kind not in _PRECOMPILED and not kind.startswith("curand"):
        raise CompileException(f"fake cupy: NVRTC is broken (fault injected): cannot compile the {kind} kernel")
    if size and count:
        COUNTS.launches += count
        COUNTS.launch_kinds[kind] += count
        COUNTS.launch_sites[_site()] += count


_PRECOMPILED = ("matmul", "zeros")   # cuBLAS and memset: no NVRTC involved


def _read(what):
    COUNTS.reads.append(f"{_site()} {what}")


def _to_device_copy():
    COUNTS.h2d += 1


# ------------------------------------------------------------------------------------------ the array
_PY_SCALARS = (bool, int, float, complex)


def _uninitialised(shape, dtype):
    """New device memory: NaN for floats, a byte pattern otherwise (what a missed write leaves behind)."""
    a = _np.empty(shape, dtype=dtype)
    if a.dtype.kind in "fc":
        a.fill(_np.nan)
    else:
        a.view(_np.uint8).fill(0xA5)
    return a


def _result(a):
    """A device array for a new result of an elementwise or reduction routine: C-contiguous, as CuPy allocates
    those (NumPy would follow its inputs' memory order)."""
    if isinstance(a, _np.generic):
        a = _np.asarray(a)
    return _wrap(a if a.flags.c_contiguous else _np.ascontiguousarray(a))


def _wrap(a):
    if isinstance(a, _np.generic):
        a = _np.asarray(a)
    if not isinstance(a, _np.ndarray):
        raise TypeError(f"fake cupy: internal: expected a NumPy array to wrap, got {type(a).__name__}")
    obj = ndarray.__new__(ndarray)
    obj._a = a
    return obj


def _value(x):
    """An operand of a device operation: a device array's NumPy array, a Python or NumPy scalar. A host
    array (of any shape: CuPy refuses 0-d NumPy arrays too) is a TypeError, as in CuPy."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, _PY_SCALARS) or isinstance(x, _np.generic):
        return x
    raise TypeError(f"device operations take device arrays and Python or NumPy scalars, not "
                    f"{type(x).__module__}.{type(x).__name__} (fake cupy)")


class _Flags:
    """The flags of a device array: NumPy's, read through (``writeable`` included, see the module docstring)."""

    __slots__ = ("_f",)

    def __init__(self, flags):
        object.__setattr__(self, "_f", flags)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __setattr__(self, name, value):
        setattr(self._f, name, value)

    def __getitem__(self, key):
        return self._f[key]


def _binary(func, reflected=False):
    def op(self, other):
        try:
            o = _value(other)
        except TypeError:
            if isinstance(other, _np.ndarray):
                raise
            return NotImplemented
        with _np.errstate(all="ignore"):
            r = func(o, self._a) if reflected else func(self._a, o)
        out = _result(r)
        _launch(func.__name__, out.size)
        return out
    return op


def _inplace(func):
    def op(self, other):
        try:
            o = _value(other)
        except TypeError:
            if isinstance(other, _np.ndarray):
                raise
            return NotImplemented
        with _np.errstate(all="ignore"):
            func(self._a, o, out=self._a)
        _launch(func.__name__, self.size)
        return self
    return op


def _unary(func):
    def op(self):
        with _np.errstate(all="ignore"):
            out = _result(func(self._a))
        _launch(func.__name__, out.size)
        return out
    return op


def _unwrap_index(index):
    """An index for the wrapped array, and whether it is advanced / holds a boolean mask. Device index arrays
    are used as they are; NumPy arrays and lists are copied to the device first (CuPy does the same)."""
    parts = index if isinstance(index, tuple) else (index,)
    out, advanced, mask = [], False, False
    for p in parts:
        if isinstance(p, ndarray):
            p = p._a
        elif isinstance(p, (list, _np.ndarray)):
            _to_device_copy()
            p = _np.asarray(p)
            if p.dtype.kind == "f" and p.size == 0:
                p = p.astype(_np.int32)
        elif isinstance(p, (bool, _np.bool_)):
            p = _np.asarray(p)
        elif not (p is None or p is Ellipsis or isinstance(p, (slice, int, _np.integer))):
            raise IndexError(f"an index part must be an int, a slice, None, Ellipsis or an integer or boolean "
                             f"array, got {type(p).__name__}")
        if isinstance(p, _np.ndarray):
            if p.dtype.kind not in "biu":
                raise IndexError(f"an index array must hold integers or booleans, got {p.dtype}")
            advanced = True
            mask = mask or p.dtype.kind == "b"
        out.append(p)
    return tuple(out), advanced, mask


class ndarray:
    """A device array: a NumPy array held on the "device", with CuPy's rules for leaving it."""

    __slots__ = ("_a", "__weakref__")
    __array_ufunc__ = None   # NumPy ufuncs refuse it; ``np_array + device_array`` raises in __radd__
    __hash__ = None

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        self._a = _uninitialised(shape, dtype)

    # ---- no implicit way to the host
    def __array__(self, dtype=None, copy=None):
        raise TypeError("a device array does not become a NumPy array implicitly (fake cupy): copy it to the "
                        "host with .get() or cupy.asnumpy()")

    def __array_function__(self, func, types, args, kwargs):
        raise TypeError(f"numpy.{func.__name__} was given a device array (fake cupy): use the array module "
                        "of the arrays (cupy) instead of numpy")

    # ---- explicit reads
    def get(self, stream=None, order="C", out=None):
        _read("get")
        return _np.array(self._a, order=order, copy=True)

    def item(self):
        _read("item")
        return self._a.item()

    def tolist(self):
        _read("tolist")
        return self._a.tolist()

    def __bool__(self):
        _read("bool")
        return bool(self._a)

    def __float__(self):
        _read("float")
        return float(self._a)

    def __int__(self):
        _read("int")
        return int(self._a)

    def __complex__(self):
        _read("complex")
        return complex(self._a)

    def __repr__(self):
        _read("repr")
        return repr(self._a)

    def __str__(self):
        _read("str")
        return str(self._a)

    def __format__(self, spec):
        _read("format")
        return format(self._a.item() if self._a.ndim == 0 else self._a, spec)

    # ---- attributes
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: _Flags(self._a.flags))
    T = property(lambda self: _wrap(self._a.T))
    device = property(lambda self: cuda.Device(0))

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(len(self)))

    # ---- indexing
    def __getitem__(self, index):
        idx, advanced, mask = _unwrap_index(index)
        if mask:
            _read("boolean-mask index (the number of selected elements)")
        if not advanced:
            if not _b.any(p is Ellipsis for p in idx):
                idx = idx + (Ellipsis,)      # a 0-d view rather than a NumPy scalar
            return _wrap(self._a[idx])
        out = _wrap(self._a[idx if isinstance(index, tuple) else idx[0]])
        _launch("getitem", out.size, 2 if mask else 1)
        return out

    def __setitem__(self, index, value):
        idx, _, mask = _unwrap_index(index)
        if mask:
            _read("boolean-mask assignment")
        v = _value(value)
        self._a[idx if isinstance(index, tuple) else idx[0]] = v
        _launch("setitem", self.size)

    # ---- arithmetic (one kernel each)
    __add__, __radd__, __iadd__ = _binary(_np.add), _binary(_np.add, True), _inplace(_np.add)
    __sub__, __rsub__, __isub__ = _binary(_np.subtract), _binary(_np.subtract, True), _inplace(_np.subtract)
    __mul__, __rmul__, __imul__ = _binary(_np.multiply), _binary(_np.multiply, True), _inplace(_np.multiply)
    __truediv__, __rtruediv__ = _binary(_np.true_divide), _binary(_np.true_divide, True)
    __itruediv__ = _inplace(_np.true_divide)
    __floordiv__, __rfloordiv__ = _binary(_np.floor_divide), _binary(_np.floor_divide, True)
    __mod__, __rmod__ = _binary(_np.remainder), _binary(_np.remainder, True)
    __pow__, __rpow__, __ipow__ = _binary(_np.power), _binary(_np.power, True), _inplace(_np.power)
    __matmul__, __rmatmul__ = _binary(_np.matmul), _binary(_np.matmul, True)
    __and__, __rand__, __iand__ = _binary(_np.bitwise_and), _binary(_np.bitwise_and, True), _inplace(_np.bitwise_and)
    __or__, __ror__, __ior__ = _binary(_np.bitwise_or), _binary(_np.bitwise_or, True), _inplace(_np.bitwise_or)
    __xor__, __rxor__ = _binary(_np.bitwise_xor), _binary(_np.bitwise_xor, True)
    __eq__, __ne__ = _binary(_np.equal), _binary(_np.not_equal)
    __lt__, __le__ = _binary(_np.less), _binary(_np.less_equal)
    __gt__, __ge__ = _binary(_np.greater), _binary(_np.greater_equal)
    __neg__, __abs__, __invert__ = _unary(_np.negative), _unary(_np.absolute), _unary(_np.invert)

    def __pos__(self):
        return self.copy()

    # ---- copies, casts, views
    def copy(self, order="C"):
        out = _wrap(_np.array(self._a, order=order, copy=True))
        _launch("copy", out.size)
        return out

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        return self.copy()

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        dtype = _np.dtype(dtype)
        if dtype == self.dtype and not copy:
            return self
        out = _wrap(self._a.astype(dtype, order=order, copy=True))
        _launch("astype", out.size)
        return out

    def view(self, dtype=None):
        return _wrap(self._a.view() if dtype is None else self._a.view(dtype))

    def reshape(self, *shape, order="C"):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        r = self._a.reshape(shape, order=order)
        if r.size and not _np.may_share_memory(r, self._a):
            _launch("reshape copy", r.size)
        return _wrap(r)

    def transpose(self, *axes):
        if len(axes) == 1 and (axes[0] is None or isinstance(axes[0], (tuple, list, _np.ndarray))):
            axes = axes[0]      # a sequence of axes (a NumPy array is one, for CuPy too)
        return _wrap(self._a.transpose(tuple(int(a) for a in axes)) if axes is not None and len(axes)
                     else self._a.transpose())

    def swapaxes(self, a, b):
        return _wrap(self._a.swapaxes(a, b))

    def squeeze(self, axis=None):
        return _wrap(self._a.squeeze(axis))

    def ravel(self, order="C"):
        return self.reshape(-1, order=order)

    def flatten(self, order="C"):
        return self.copy(order=order).reshape(-1)

    def fill(self, value):
        self._a.fill(_value(value))
        _launch("fill", self.size)

    # ---- reductions and friends (one kernel each)
    def _reduce(self, name, *args, out=None, **kwargs):
        if out is not None:
            kwargs["out"] = out._a
        with _np.errstate(all="ignore"):
            r = getattr(self._a, name)(*args, **kwargs)
        result = out if out is not None else _result(r)
        _launch(name, _b.max(result.size, 1), 2 if name in ("var", "std") else 1)
        return result

    def sum(self, *a, **k): return self._reduce("sum", *a, **k)            # noqa: E704
    def mean(self, *a, **k): return self._reduce("mean", *a, **k)          # noqa: E704
    def max(self, *a, **k): return self._reduce("max", *a, **k)            # noqa: E704
    def min(self, *a, **k): return self._reduce("min", *a, **k)            # noqa: E704
    def prod(self, *a, **k): return self._reduce("prod", *a, **k)          # noqa: E704
    def argmax(self, *a, **k): return self._reduce("argmax", *a, **k)      # noqa: E704
    def argmin(self, *a, **k): return self._reduce("argmin", *a, **k)      # noqa: E704
    def any(self, *a, **k): return self._reduce("any", *a, **k)            # noqa: E704
    def all(self, *a, **k): return self._reduce("all", *a, **k)            # noqa: E704
    def var(self, *a, **k): return self._reduce("var", *a, **k)            # noqa: E704
    def std(self, *a, **k): return self._reduce("std", *a, **k)            # noqa: E704
    def cumsum(self, *a, **k): return self._reduce("cumsum", *a, **k)      # noqa: E704

    def clip(self, a_min=None, a_max=None):
        return clip(self, a_min, a_max)

    def dot(self, other):
        return matmul(self, other)

    def nonzero(self):
        _read("nonzero (the number of nonzero elements)")
        out = tuple(_wrap(i) for i in self._a.nonzero())
        _launch("nonzero", 1, 2)
        return out

    def set(self, arr):
        if not isinstance(arr, _np.ndarray) or arr.shape != self.shape:
            raise ValueError("set: needs a NumPy array of the same shape")
        _to_device_copy()
        self._a[...] = arr


# ------------------------------------------------------------------------------------- module functions
float16, float32, float64 = _np.float16, _np.float32, _np.float64
int8, int16, int32, int64 = _np.int8, _np.int16, _np.int32, _np.int64
uint8, uint32, uint64 = _np.uint8, _np.uint32, _np.uint64
bool_, complex64, complex128 = _np.bool_, _np.complex64, _np.complex128
dtype, newaxis, inf, nan, pi, e = _np.dtype, None, _np.inf, _np.nan, _np.pi, _np.e
result_type, promote_types, can_cast, finfo, iinfo = (_np.result_type, _np.promote_types, _np.can_cast,
                                                      _np.finfo, _np.iinfo)
isscalar, issubdtype = _np.isscalar, _np.issubdtype


def get_array_module(*args):
    return sys.modules[__name__] if _b.any(isinstance(a, ndarray) for a in args) else _np


class ufunc:
    """A CuPy ufunc: one kernel per call; ``at`` (``cupy.add.at``) one kernel too."""

    def __init__(self, np_ufunc):
        self._u = np_ufunc
        self.__name__ = np_ufunc.__name__
        self.nin, self.nout = np_ufunc.nin, np_ufunc.nout

    def __call__(self, *args, out=None, dtype=None, **kwargs):
        a = [_value(x) for x in args]
        if out is not None:
            if not isinstance(out, ndarray):
                raise TypeError(f"{self.__name__}: out must be a device array, got {type(out).__name__}")
            kwargs["out"] = out._a
        if dtype is not None:
            kwargs["dtype"] = dtype
        with _np.errstate(all="ignore"):
            r = self._u(*a, **kwargs)
        res = out if out is not None else _result(r)
        _launch(self.__name__, res.size)
        return res

    def at(self, a, indices, b=None):
        if not isinstance(a, ndarray):
            raise TypeError(f"{self.__name__}.at: needs a device array")
        idx, _, _ = _unwrap_index(indices)
        idx = idx if isinstance(indices, tuple) else idx[0]
        args = () if b is None else (_value(b),)
        self._u.at(a._a, idx, *args)
        _launch(self.__name__ + ".at", a.size)


for _name in ("add", "subtract", "multiply", "divide", "true_divide", "floor_divide", "power", "maximum",
              "minimum", "fmax", "fmin", "exp", "expm1", "log", "log1p", "log2", "log10", "sqrt", "square",
              "absolute", "sign", "negative", "reciprocal", "tanh", "sinh", "cosh", "sin", "cos", "arctan",
              "isfinite", "isnan", "isinf", "logical_and", "logical_or", "logical_not", "logical_xor",
              "greater", "greater_equal", "less", "less_equal", "equal", "not_equal", "floor", "ceil", "rint",
              "bitwise_and", "bitwise_or", "remainder", "copysign", "signbit"):
    globals()[_name] = ufunc(getattr(_np, _name))
abs = absolute  # noqa: A001 (CuPy's name)


def array(obj, dtype=None, copy=True, order="K", ndmin=0):
    if isinstance(obj, ndarray):
        out = _wrap(_np.array(obj._a, dtype=dtype, order=order, copy=True, ndmin=ndmin))
        _launch("array copy", out.size)
        return out
    if isinstance(obj, (list, tuple)) and _b.any(isinstance(x, ndarray) for x in obj):
        raise TypeError("fake cupy: array() of a list holding device arrays: use cupy.stack")
    _to_device_copy()
    return _wrap(_np.array(obj, dtype=dtype, order=order, copy=True, ndmin=ndmin))


def asarray(a, dtype=None, order=None, blocking=False):
    if isinstance(a, ndarray):
        dt = a.dtype if dtype is None else _np.dtype(dtype)
        if dt == a.dtype and (order in (None, "K", "A") or (order == "C" and a._a.flags.c_contiguous)
                              or (order == "F" and a._a.flags.f_contiguous)):
            return a
        out = _wrap(_np.asarray(a._a, dtype=dt, order=order).copy(order=order or "K"))
        _launch("asarray copy", out.size)
        return out
    if isinstance(a, (list, tuple)) and _b.any(isinstance(x, ndarray) for x in a):
        raise TypeError("fake cupy: asarray() of a list holding device arrays: use cupy.stack")
    _to_device_copy()
    return _wrap(_np.array(a, dtype=dtype, order=order or "K", copy=True))


def ascontiguousarray(a, dtype=None):
    if not isinstance(a, ndarray):
        return asarray(a, dtype=dtype, order="C")
    dt = a.dtype if dtype is None else _np.dtype(dtype)
    if dt == a.dtype and a._a.flags.c_contiguous:
        return a
    out = _wrap(_np.array(a._a, dtype=dt, order="C", copy=True))
    _launch("ascontiguousarray", out.size)
    return out


def asnumpy(a, stream=None, order="C", out=None, blocking=True):
    if isinstance(a, ndarray):
        _read("asnumpy")
        return _np.array(a._a, order=order, copy=True)
    return _np.asarray(a, order=order)


def empty(shape, dtype=float, order="C"):
    return _wrap(_uninitialised(shape, dtype))


def empty_like(a, dtype=None, order="K", shape=None):
    return empty(a.shape if shape is None else shape, a.dtype if dtype is None else dtype)


def _filled(name, shape, value, dtype):
    out = _wrap(_np.full(shape, value, dtype=dtype))
    _launch(name, out.size)
    return out


def zeros(shape, dtype=float, order="C"):
    return _filled("zeros", shape, 0, dtype)


def ones(shape, dtype=float, order="C"):
    return _filled("ones", shape, 1, dtype)


def full(shape, fill_value, dtype=None, order="C"):
    fill = _value(fill_value)
    return _filled("full", shape, fill, _np.result_type(fill) if dtype is None else dtype)


def zeros_like(a, dtype=None, order="K", shape=None):
    return zeros(a.shape if shape is None else shape, a.dtype if dtype is None else dtype)


def ones_like(a, dtype=None, order="K", shape=None):
    return ones(a.shape if shape is None else shape, a.dtype if dtype is None else dtype)


def full_like(a, fill_value, dtype=None, order="K", shape=None):
    return full(a.shape if shape is None else shape, fill_value, a.dtype if dtype is None else dtype)


def arange(start, stop=None, step=1, dtype=None):
    out = _wrap(_np.arange(start, stop, step, dtype=dtype) if stop is not None else
                _np.arange(start, dtype=dtype))
    _launch("arange", out.size)
    return out


def where(condition, x=None, y=None):
    if x is None and y is None:
        return condition.nonzero()
    with _np.errstate(all="ignore"):
        out = _result(_np.where(_value(condition), _value(x), _value(y)))
    _launch("where", out.size)
    return out


def clip(a, a_min, a_max, out=None):
    r = _np.clip(a._a, None if a_min is None else _value(a_min), None if a_max is None else _value(a_max),
                 out=None if out is None else out._a)
    res = out if out is not None else _wrap(r)
    _launch("clip", res.size)
    return res


def _checked_devices(name, arrays):
    arrays = list(arrays)
    if not arrays or not _b.all(isinstance(a, ndarray) for a in arrays):
        raise TypeError(f"{name}: only device arrays can be joined (fake cupy), got "
                        f"{[type(a).__name__ for a in arrays]}")
    return [a._a for a in arrays]


#: CuPy joins more than this many arrays of one dtype in one kernel (when they average under
#: :data:`_JOIN_BYTES` each); fewer, or larger ones, are copied into the result one kernel each.
_JOIN_IN_ONE_KERNEL, _JOIN_BYTES = 8, 2 * 1024 * 1024


def _join_launches(parts, dtype):
    """How many kernels ``cupy.concatenate`` launches to join ``parts`` (NumPy arrays) into ``dtype``."""
    if len(parts) > _JOIN_IN_ONE_KERNEL and _b.all(p.dtype == dtype for p in parts) and \
            _b.sum(p.nbytes for p in parts) < _JOIN_BYTES * len(parts):
        return 1
    return _b.sum(1 for p in parts if p.size)


def concatenate(arrays, axis=0, out=None, dtype=None):
    parts = _checked_devices("concatenate", arrays)
    res = _wrap(_np.concatenate(parts, axis=axis, dtype=dtype))
    _launch("concatenate", res.size, _join_launches(parts, res.dtype))
    return res


def stack(arrays, axis=0, out=None, dtype=None):
    """CuPy's stack is a concatenate of the arrays with a new axis: the same launches."""
    parts = _checked_devices("stack", arrays)
    res = _wrap(_np.stack(parts, axis=axis, dtype=dtype))
    _launch("stack", res.size, _join_launches(parts, res.dtype))
    return res


def split(a, indices_or_sections, axis=0):
    return [_wrap(p) for p in _np.split(a._a, indices_or_sections, axis=axis)]


def take(a, indices, axis=None, out=None):
    if isinstance(indices, (int, _np.integer)):
        idx = indices
    elif isinstance(indices, ndarray):
        idx = indices._a
    else:
        _to_device_copy()
        idx = _np.asarray(indices)
    res = _wrap(_np.take(a._a, idx, axis=axis))
    _launch("take", res.size)
    return res


def take_along_axis(a, indices, axis):
    if not isinstance(indices, ndarray):
        raise TypeError("take_along_axis: indices must be a device array")
    res = _wrap(_np.take_along_axis(a._a, indices._a, axis))
    _launch("take_along_axis", res.size)
    return res


def _view_fn(func):
    def fn(a, *args, **kwargs):
        if not isinstance(a, ndarray):
            raise TypeError(f"{func.__name__}: needs a device array, got {type(a).__name__}")
        return _wrap(func(a._a, *args, **kwargs))
    fn.__name__ = func.__name__
    return fn


expand_dims, squeeze, swapaxes, moveaxis, broadcast_to, atleast_1d = (
    _view_fn(_np.expand_dims), _view_fn(_np.squeeze), _view_fn(_np.swapaxes), _view_fn(_np.moveaxis),
    _view_fn(_np.broadcast_to), _view_fn(_np.atleast_1d))


def transpose(a, axes=None):
    return a.transpose(axes)


def reshape(a, newshape, order="C"):
    return a.reshape(newshape, order=order)


def ravel(a, order="C"):
    return a.ravel(order)


def pad(array, pad_width, mode="constant", constant_values=0):
    if mode != "constant":
        raise NotImplementedError("fake cupy: pad supports mode='constant' only")
    res = _wrap(_np.pad(array._a, pad_width, mode="constant", constant_values=_value(constant_values)))
    _launch("pad", res.size, 2)
    return res


def matmul(a, b, out=None):
    if not (isinstance(a, ndarray) and isinstance(b, ndarray)):
        raise TypeError("matmul: both operands must be device arrays (fake cupy)")
    if "cublas" in FAULTS:
        raise RuntimeError("fake cupy: cuBLAS is broken (fault injected): CUBLAS_STATUS_NOT_INITIALIZED")
    r = _np.matmul(a._a, b._a, out=None if out is None else out._a)
    if "results" in FAULTS:
        r = r + 1                          # a device that computes wrong numbers
    res = out if out is not None else _wrap(r)
    _launch("matmul", res.size)
    return res


dot = matmul


def copyto(dst, src, casting="same_kind"):
    _np.copyto(dst._a, _value(src), casting=casting)
    _launch("copyto", dst.size)


def _reduction(name):
    def fn(a, *args, **kwargs):
        return a._reduce(name, *args, **kwargs)
    fn.__name__ = name
    return fn


sum, mean, amax, amin, prod, argmax, argmin, any, all, var, std, cumsum = (  # noqa: A001
    _reduction("sum"), _reduction("mean"), _reduction("max"), _reduction("min"), _reduction("prod"),
    _reduction("argmax"), _reduction("argmin"), _reduction("any"), _reduction("all"), _reduction("var"),
    _reduction("std"), _reduction("cumsum"))
max, min = amax, amin  # noqa: A001


def count_nonzero(a, axis=None):
    res = _wrap(_np.asarray(_np.count_nonzero(a._a, axis=axis)))
    _launch("count_nonzero", 1)
    return res


def array_equal(a, b):
    res = _wrap(_np.asarray(_np.array_equal(_value(a), _value(b))))
    _launch("array_equal", 1)
    return res


def shares_memory(a, b, max_work=None):
    return _np.shares_memory(a._a, b._a)


def may_share_memory(a, b, max_work=None):
    return _np.may_share_memory(a._a, b._a)


# ------------------------------------------------------------------------------------------ cupy.random
class RandomState:
    """CuPy's RandomState on NumPy's PCG64, in the requested float dtype, with CuPy's launch counts."""

    def __init__(self, seed=None, method=None):
        if "curand" in FAULTS:
            raise RuntimeError("fake cupy: cuRAND is broken (fault injected)")
        self.seed(seed)

    def seed(self, seed=None):
        self._gen = _np.random.Generator(_np.random.PCG64(seed))

    @staticmethod
    def _dtype(dtype):
        dt = _np.dtype(dtype)
        if dt.char not in "fd":
            raise TypeError(f"cupy.random: dtype {dt} is not supported (float32 or float64)")
        return dt

    @staticmethod
    def _size(size):
        return () if size is None else size

    def standard_normal(self, size=None, dtype=float):
        out = _wrap(self._gen.standard_normal(self._size(size), dtype=self._dtype(dtype)))
        _launch("curand normal", out.size)
        return out

    def normal(self, loc=0.0, scale=1.0, size=None, dtype=float):
        z = self._gen.standard_normal(self._size(size), dtype=self._dtype(dtype))
        out = _wrap((z * z.dtype.type(scale) + z.dtype.type(loc)).astype(z.dtype, copy=False))
        _launch("curand normal", out.size)
        return out

    def random_sample(self, size=None, dtype=float):
        out = _wrap(self._gen.random(self._size(size), dtype=self._dtype(dtype)))
        _launch("curand uniform", out.size, 2)      # curandGenerateUniform, then CuPy's (0, 1] -> [0, 1) fix
        return out

    rand = lambda self, *size, dtype=float: self.random_sample(size or None, dtype)  # noqa: E731

    def randn(self, *size, dtype=float):
        return self.standard_normal(size or None, dtype)

    def uniform(self, low=0.0, high=1.0, size=None, dtype=float):
        dt = self._dtype(dtype)
        u = self._gen.random(self._size(size), dtype=dt)
        out = _wrap((dt.type(low) + u * dt.type(high - low)).astype(dt, copy=False))
        _launch("curand uniform", out.size, 3)      # random_sample (2) and the scale kernel
        return out

    def randint(self, low, high=None, size=None, dtype=int):
        out = _wrap(_np.asarray(self._gen.integers(low, high, size=self._size(size), dtype=dtype)))
        _launch("curand randint", out.size, 2)
        return out


random = types.ModuleType(__name__ + ".random", "cupy.random, backed by NumPy")
random.RandomState = RandomState
random._state = None


def _random_state():
    if random._state is None:
        random._state = RandomState()
    return random._state


random.get_random_state = _random_state
random.seed = lambda seed=None: _random_state().seed(seed)
for _name in ("standard_normal", "normal", "random_sample", "rand", "randn", "uniform", "randint"):
    setattr(random, _name, (lambda n: lambda *a, **k: getattr(_random_state(), n)(*a, **k))(_name))
random.random = random.random_sample


# ------------------------------------------------------------------------------------------ cupy.cuda
class CUDARuntimeError(RuntimeError):
    pass


class CompileException(Exception):
    pass


class _Device:
    def __init__(self, device=None):
        self.id = 0 if device is None else int(device)

    def synchronize(self):
        COUNTS.syncs += 1

    def use(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __repr__(self):
        return f"<CUDA Device {self.id}>"


class _Stream:
    def synchronize(self):
        COUNTS.syncs += 1


def _device_count():
    if "device" in FAULTS:
        raise CUDARuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected (fault injected)")
    return 1


cuda = types.ModuleType(__name__ + ".cuda", "cupy.cuda, faked")
cuda.Device = _Device
cuda.Stream = _Stream
cuda.get_current_stream = lambda device=None: _Stream()
cuda.is_available = lambda: "device" not in FAULTS
cuda.runtime = types.SimpleNamespace(getDeviceCount=_device_count, CUDARuntimeError=CUDARuntimeError,
                                     deviceSynchronize=lambda: _Device().synchronize())
cuda.compiler = types.SimpleNamespace(CompileException=CompileException)
cuda.CUDARuntimeError = CUDARuntimeError


# --------------------------------------------------------------------------------------- user kernels
#: kernel name -> NumPy function computing what the CUDA kernel computes. ElementwiseKernel equivalents
#: take the bound parameters as keywords (inputs broadcast to the launch shape, outputs writable NumPy
#: arrays to fill); RawKernel equivalents take ``(grid, block, *args)`` (arrays flat and C-contiguous).
KERNELS: dict = {}


def kernel_equivalent(name):
    def register(fn):
        KERNELS[name] = fn
        return fn
    return register


_TYPE_NAMES = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16",
               "float32", "float64", "complex64", "complex128"}


class _Param:
    __slots__ = ("raw", "ctype", "name", "dtype")

    def __init__(self, text):
        words = text.split()
        self.raw = words[0] == "raw"
        if self.raw:
            words = words[1:]
        if len(words) != 2:
            raise ValueError(f"fake cupy: cannot read kernel parameter {text!r}")
        self.ctype, self.name = words
        self.dtype = _np.dtype(self.ctype) if self.ctype in _TYPE_NAMES else None   # None: a placeholder (T)


def _params(text):
    return [_Param(p.strip()) for p in text.split(",") if p.strip()]


class ElementwiseKernel:
    """``cupy.ElementwiseKernel``: parameters read from the declarations, placeholders resolved from the
    arrays, inputs broadcast, outputs allocated or checked, then the kernel's NumPy equivalent runs."""

    def __init__(self, in_params, out_params, operation, name="kernel", reduce_dims=True, preamble="",
                 no_return=False, return_tuple=False, **kwargs):
        self.in_params, self.out_params = _params(in_params), _params(out_params)
        self.operation, self.name, self.preamble, self.options = operation, name, preamble, kwargs.get("options")
        self.no_return, self.return_tuple = no_return, return_tuple

    def __call__(self, *args, size=None, block_size=None, stream=None):
        if "nvrtc" in FAULTS:
            raise CompileException(f"fake cupy: NVRTC is broken (fault injected) compiling {self.name}")
        n_in, n_out = len(self.in_params), len(self.out_params)
        if len(args) not in (n_in, n_in + n_out):
            raise TypeError(f"{self.name}: wrong number of arguments ({len(args)}; {n_in} inputs, {n_out} outputs)")
        fn = KERNELS.get(self.name)
        if fn is None:
            raise NotImplementedError(f"fake cupy: no NumPy equivalent for user kernel {self.name!r}")
        types_, shapes = {}, []
        params = self.in_params + self.out_params[:len(args) - n_in]
        for p, a in zip(params, args):
            if isinstance(a, _np.ndarray) or (p.raw and not isinstance(a, ndarray)):
                raise TypeError(f"{self.name}: argument {p.name} must be a device array, got {type(a).__name__}")
            if isinstance(a, ndarray):
                if p.dtype is not None and a.dtype != p.dtype:
                    raise TypeError(f"{self.name}: argument {p.name} is {a.dtype}, the kernel declares {p.dtype}")
                if p.dtype is None:
                    if types_.setdefault(p.ctype, a.dtype) != a.dtype:
                        raise TypeError(f"{self.name}: type {p.ctype} is mismatched: {types_[p.ctype]} and "
                                        f"{a.dtype} (argument {p.name})")
                if not p.raw:
                    shapes.append(a.shape)
            else:
                _value(a)
        for p, a in zip(params, args):     # placeholders only scalars fix take the scalar's type
            if not isinstance(a, ndarray) and p.dtype is None and p.ctype not in types_:
                types_[p.ctype] = _np.asarray(a).dtype
        shape = _np.broadcast_shapes(*shapes) if shapes else ((size,) if size is not None else None)
        if shape is None:
            raise ValueError(f"{self.name}: the launch size is unknown (no non-raw array and no size=)")
        bound, outputs = {}, []
        for p, a in zip(self.in_params, args):
            if isinstance(a, ndarray):
                bound[p.name] = a._a if p.raw else _np.broadcast_to(a._a, shape)
            else:
                bound[p.name] = (p.dtype or types_[p.ctype]).type(a)
        for j, p in enumerate(self.out_params):
            if n_in + j < len(args):
                out = args[n_in + j]
                if not p.raw and out.shape != tuple(shape):
                    raise ValueError(f"{self.name}: output {p.name} has shape {out.shape}, the launch {shape}")
            else:
                if p.raw:
                    raise ValueError(f"{self.name}: raw output {p.name} must be given")
                out = empty(shape, p.dtype or types_[p.ctype])
            outputs.append(out)
            bound[p.name] = out._a
        launch_size = int(_np.prod(shape))
        if launch_size:
            with _np.errstate(all="ignore"):
                fn(**bound)
        _launch(f"kernel {self.name}", launch_size)
        if self.no_return:
            return None
        return tuple(outputs) if (self.return_tuple or len(outputs) > 1) else outputs[0]


class RawKernel:
    """``cupy.RawKernel``: ``kernel(grid, block, args, shared_mem=0)`` runs the kernel's NumPy equivalent on
    the flat arrays (which must be C-contiguous device arrays) and NumPy scalars."""

    def __init__(self, code, name, options=(), backend="nvrtc", translate_cucomplex=False, *,
                 enable_cooperative_groups=False, jitify=None):
        self.code, self.name, self.options = code, name, options

    def __call__(self, grid, block, args, *, shared_mem=0, stream=None):
        if "nvrtc" in FAULTS:
            raise CompileException(f"fake cupy: NVRTC is broken (fault injected) compiling {self.name}")
        fn = KERNELS.get(self.name)
        if fn is None:
            raise NotImplementedError(f"fake cupy: no NumPy equivalent for raw kernel {self.name!r}")
        grid = tuple(grid) if isinstance(grid, tuple) else (grid,)
        block = tuple(block) if isinstance(block, tuple) else (block,)
        if not _b.all(isinstance(g, (int, _np.integer)) and g >= 1 for g in grid + block) or _np.prod(block) > 1024:
            raise ValueError(f"{self.name}: invalid launch configuration grid={grid} block={block}")
        values = []
        for k, a in enumerate(args):
            if isinstance(a, ndarray):
                if not a._a.flags.c_contiguous:
                    raise ValueError(f"{self.name}: argument {k} is not C-contiguous; a raw kernel sees a pointer")
                values.append(a._a.reshape(-1))
            elif isinstance(a, _np.generic):
                values.append(a)
            else:
                raise TypeError(f"{self.name}: argument {k} must be a device array or a NumPy scalar of an "
                                f"explicit C type, got {type(a).__name__} {a!r}")
        with _np.errstate(all="ignore"):
            fn(grid, block, *values)
        _launch(f"kernel {self.name}", 1)


# ------------------------------------------------------------------------------------- installing it
@contextlib.contextmanager
def installed():
    """Make this module minigrad's CUDA array module (and ``sys.modules["cupy"]``) for the block; yields
    :data:`COUNTS`, reset. Restores the previous module, ``sys.modules`` and minigrad's CUDA generator."""
    from minigrad import backend
    from minigrad import random as mg_random

    me = sys.modules[__name__]
    previous, previous_sys, previous_gen = backend._cupy, sys.modules.get("cupy"), mg_random._cuda
    backend.set_cupy_module(me)
    sys.modules["cupy"] = me
    mg_random._cuda = None
    FAULTS.clear()
    COUNTS.reset()
    try:
        yield COUNTS
    finally:
        FAULTS.clear()
        backend.set_cupy_module(previous)
        if previous_sys is None:
            sys.modules.pop("cupy", None)
        else:
            sys.modules["cupy"] = previous_sys
        mg_random._cuda = previous_gen


@pytest.fixture
def fake_cuda():
    """The fake installed for one test; the value is :data:`COUNTS`."""
    with installed() as counts:
        yield counts


# ------------------------------------------------------------------------------- the kernels' equivalents
def _im2col_geometry(b):
    return ((int(b["kh"]), int(b["kw"])), (int(b["sh"]), int(b["sw"])), (int(b["ph"]), int(b["pw"])))


@kernel_equivalent("minigrad_im2col")
def _im2col(*, x, col, n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow):
    from minigrad.kernels import im2col as ref
    b = dict(kh=kh, kw=kw, sh=sh, sw=sw, ph=ph, pw=pw)
    col[...] = ref.im2col(x.reshape(int(n), int(c), int(h), int(w)), *_im2col_geometry(b))


@kernel_equivalent("minigrad_col2im")
def _col2im(*, cols, bias, img, n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow):
    from minigrad.kernels import im2col as ref
    b = dict(kh=kh, kw=kw, sh=sh, sw=sw, ph=ph, pw=pw)
    img[...] = ref.col2im(cols, (int(n), int(c), int(h), int(w)), *_im2col_geometry(b), bias=bias)


@kernel_equivalent("minigrad_leaky_relu")
def _leaky_relu(*, x, slope, y):
    y[...] = _np.where(x > 0, x, x * slope)


@kernel_equivalent("minigrad_leaky_relu_backward")
def _leaky_relu_backward(*, g, x, slope, dx):
    dx[...] = _np.where(x > 0, g, g * slope)


def _sigmoid_of(x):
    e = _np.exp(-_np.abs(x))
    return _np.where(x >= 0, 1 / (1 + e), e / (1 + e))


@kernel_equivalent("minigrad_sigmoid")
def _sigmoid(*, x, y):
    y[...] = _sigmoid_of(x)


@kernel_equivalent("minigrad_tanh_backward")
def _tanh_backward(*, g, y, dx):
    dx[...] = g * (1 - y * y)


@kernel_equivalent("minigrad_abs_backward")
def _abs_backward(*, g, x, dx):
    dx[...] = g * _np.sign(x)


def _adam_moments(p, g, m, v, beta1, one_minus_beta1, beta2, one_minus_beta2):
    m_new = beta1 * m + one_minus_beta1 * g
    v_new = beta2 * v + one_minus_beta2 * (g * g)
    m[...] = m_new
    v[...] = v_new
    return m_new, v_new


@kernel_equivalent("minigrad_adam")
def _adam(*, p, g, beta1, one_minus_beta1, beta2, one_minus_beta2, step_size, bias2, eps, p_out, m, v):
    m_new, v_new = _adam_moments(p, g, m, v, beta1, one_minus_beta1, beta2, one_minus_beta2)
    p_out[...] = p - step_size * m_new / (_np.sqrt(v_new) / bias2 + eps)


@kernel_equivalent("minigrad_adam_eps_inside")
def _adam_eps_inside(*, p, g, beta1, one_minus_beta1, beta2, one_minus_beta2, step_size, bias2, eps, p_out, m, v):
    m_new, v_new = _adam_moments(p, g, m, v, beta1, one_minus_beta1, beta2, one_minus_beta2)
    p_out[...] = p - step_size * m_new / _np.sqrt(v_new / bias2 + eps)


def _adam_joined(eps_inside, *, p, **bound):
    """``minigrad_adam[_eps_inside]_joined{k}``: Adam with the gradient read from ``g0 .. g{k-1}`` (raw)."""
    k = _b.sum(1 for name in bound if name[0] == "g" and name[1:].isdigit())
    g = _np.concatenate([_np.asarray(bound.pop(f"g{j}")).reshape(-1) for j in range(k)]).reshape(p.shape)
    for j in range(1, k):
        bound.pop(f"o{j}")
    (_adam_eps_inside if eps_inside else _adam)(p=p, g=g, **bound)


for _k in range(1, 33):
    KERNELS[f"minigrad_adam_joined{_k}"] = functools.partial(_adam_joined, False)
    KERNELS[f"minigrad_adam_eps_inside_joined{_k}"] = functools.partial(_adam_joined, True)


@kernel_equivalent("minigrad_dropout_philox")
def _dropout_philox(*, a, threshold, scale, key, counter, out):
    from minigrad.kernels import dropout_reference
    out[...] = dropout_reference.philox_dropout(a, int(threshold), scale, int(key), int(counter))


def _per_channel(v, c):
    return v[:c].reshape(1, c, 1)


def _check_grid(name, grid, block, c):
    from minigrad.kernels import norm_cuda
    if grid != (c,) or block != (norm_cuda.BLOCK,):
        raise ValueError(f"{name}: launched with grid {grid}, block {block}; it needs one block of "
                         f"{norm_cuda.BLOCK} threads per channel ({c})")


def _channels(buffer, layout, n, c, s):
    """A batch-norm kernel's flat buffer as (N, C, S) values: stored as (N, C, S) (layout 0) or in channel
    rows, (C, N, S) (layout 1). A view: writing into it writes the buffer."""
    if layout:
        return buffer[:n * c * s].reshape(c, n, s).transpose(1, 0, 2)
    return buffer[:n * c * s].reshape(n, c, s)


def _bn_batch_stats(xv, n, c, s):
    """The batch's mean and biased variance per channel, from shifted sums as the kernel computes them."""
    shift = xv[0, :, 0]
    d = xv - shift.reshape(1, c, 1)
    count = n * s
    m1 = d.sum(axis=(0, 2)) / count
    v = (d * d).sum(axis=(0, 2)) / count - m1 * m1
    return shift + m1, _np.where(v > 0.0, v, 0.0)


@kernel_equivalent("minigrad_bn_forward")
def _bn_forward(grid, block, x, x_layout, n, c, s, gamma, beta, has_gamma, has_beta, running_mean, running_var,
                mode, update_running, momentum, eps, coef, y):
    n, c, s = int(n), int(c), int(s)
    _check_grid("minigrad_bn_forward", grid, block, c)
    xv = _channels(x, x_layout, n, c, s).astype(_np.float64)
    if mode == 0:
        mean, var = _bn_batch_stats(xv, n, c, s)
        if update_running:
            count = n * s
            rm, rv = running_mean[:c], running_var[:c]
            rm[...] = (1.0 - momentum) * rm.astype(_np.float64) + momentum * mean
            rv[...] = (1.0 - momentum) * rv.astype(_np.float64) + momentum * (var * (count / (count - 1.0)))
    else:
        mean, var = running_mean[:c].astype(_np.float64), running_var[:c].astype(_np.float64)
    inv = 1.0 / _np.sqrt(var + eps)
    coef[:c] = mean
    coef[c:2 * c] = inv
    coef[2 * c:3 * c] = (gamma[:c].astype(_np.float64) if has_gamma else 1.0) * inv
    coef[3 * c:4 * c] = beta[:c].astype(_np.float64) if has_beta else 0.0
    out = (xv - _per_channel(coef, c)) * _per_channel(coef[2 * c:], c) + _per_channel(coef[3 * c:], c)
    _channels(y, 1, n, c, s)[...] = out


@kernel_equivalent("minigrad_bn_backward")
def _bn_backward(grid, block, g, g_layout, x, x_layout, n, c, s, coef, batch_stats, want_sums, want_params, want_dx,
                 dgamma, dbeta, add_gamma, add_beta, dcoef, dx):
    n, c, s = int(n), int(c), int(s)
    _check_grid("minigrad_bn_backward", grid, block, c)
    gv = _channels(g, g_layout, n, c, s).astype(_np.float64)
    xv = _channels(x, x_layout, n, c, s).astype(_np.float64)
    sum_g = gv.sum(axis=(0, 2)) if want_sums else _np.zeros(c)
    sum_gxhat = ((gv * (xv - _per_channel(coef, c))).sum(axis=(0, 2)) if want_sums else _np.zeros(c)) * coef[c:2 * c]
    if want_params:
        dg, db = sum_gxhat.astype(dgamma.dtype), sum_g.astype(dbeta.dtype)
        dgamma[:c] = dgamma[:c] + dg if add_gamma else dg
        dbeta[:c] = dbeta[:c] + db if add_beta else db
    count = n * s
    dcoef[:c] = sum_g / count if batch_stats else 0.0
    dcoef[c:2 * c] = coef[2 * c:3 * c] * coef[c:2 * c] * (sum_gxhat / count) if batch_stats else 0.0
    if want_dx:
        scale = _per_channel(coef[2 * c:], c)
        if batch_stats:
            out = scale * (gv - _per_channel(dcoef, c)) - _per_channel(dcoef[c:], c) * (xv - _per_channel(coef, c))
        else:
            out = scale * gv
        _channels(dx, x_layout, n, c, s)[...] = out


# ---------------------------------------------------------------------------------------- the loss kernels
def _check_one_block(name, grid, block):
    from minigrad.kernels import loss_cuda
    if grid != (1,) or block != (loss_cuda.BLOCK,):
        raise ValueError(f"{name}: launched with grid {grid}, block {block}; it is one block of {loss_cuda.BLOCK} "
                         "threads")


def _shift_and_sum(rows):
    """Row maxima as NumPy's max has them (0 where not finite), the shifted exponentials and their sums."""
    m = rows.max(axis=1, keepdims=True)
    m = _np.where(_np.isfinite(m), m, 0).astype(rows.dtype)
    e = _np.exp(rows - m)
    return m, e, e.sum(axis=1, keepdims=True)


@kernel_equivalent("minigrad_logsumexp")
def _logsumexp(*, x, k, lse, p):
    rows = x.reshape(-1, int(k))
    m, e, s = _shift_and_sum(rows)
    lse[...] = (_np.log(s) + m).reshape(lse.shape)
    p[...] = (e / _np.where(s > 0, s, 1).astype(rows.dtype)).reshape(p.shape)


@kernel_equivalent("minigrad_cross_entropy")
def _cross_entropy(grid, block, x, target, sample_weight, has_weight, n, k, ignore_index, losses, p, w, sums):
    _check_one_block("minigrad_cross_entropy", grid, block)
    n, k = int(n), int(k)
    dt = losses.dtype.type
    if n == 0:
        sums[:3] = 0
        return
    logits, t = x[:n * k].reshape(n, k), target[:n]
    keep, in_range = t != ignore_index, (t >= 0) & (t < k)
    wi = _np.where(keep, _np.where(in_range, 1.0, _np.nan), 0.0).astype(dt)
    if has_weight:
        wi = wi * sample_weight[:n]
    m, e, s = _shift_and_sum(logits)
    picked = _np.take_along_axis(logits, _np.where(keep & in_range, t, 0)[:, None], axis=1) - m
    loss = wi * (_np.log(s) - picked)[:, 0]
    p[:n * k] = (e / _np.where(s > 0, s, 1).astype(dt)).reshape(-1)
    losses[:n], w[:n] = loss, wi
    total = dt(wi.astype(_np.float64).sum())
    sums[0], sums[1] = dt(loss.astype(_np.float64).sum()), total
    sums[2] = sums[0] / (total if total > 0 else dt(1))


@kernel_equivalent("minigrad_cross_entropy_backward")
def _cross_entropy_backward(*, p, target, w, g, sums, k, ignore_index, mode, dx):
    k = int(k)
    t = target.reshape(-1)
    safe = _np.where((t != ignore_index) & (t >= 0) & (t < k), t, 0)
    total = sums[1]
    if mode == 0:
        scale = w * g
    elif mode == 1:
        scale = w * g
    else:
        scale = w * (g / (total if total > 0 else total.dtype.type(1)))
    d = _np.array(p)
    d[_np.arange(d.shape[0]), safe] -= 1
    dx[...] = d * scale[:, None]


@kernel_equivalent("minigrad_bce_with_logits")
def _bce_with_logits(grid, block, x, t, count, sums):
    _check_one_block("minigrad_bce_with_logits", grid, block)
    c = int(count)
    v, tv = x[:c], t[:c]
    relu = _np.where((v > 0) | _np.isnan(v), v, 0).astype(v.dtype)
    total = (relu - v * tv + _np.log1p(_np.exp(-_np.abs(v)))).astype(_np.float64).sum()
    sums[0], sums[1] = total, total / _b.max(c, 1)


@kernel_equivalent("minigrad_bce_with_logits_backward")
def _bce_with_logits_backward(*, x, t, g, count, mean, dx):
    dx[...] = (_sigmoid_of(x) - t) * (g / count if mean else g)


# ---------------------------------------------------------------------------------------- the join kernel
def _join(*, out, **bound):
    """``minigrad_join{k}``: the raw arrays ``a0 .. a{k-1}``, flattened in C order, one after the other."""
    k = _b.sum(1 for name in bound if name.startswith("a"))
    out[...] = _np.concatenate([_np.asarray(bound[f"a{j}"]).reshape(-1) for j in range(k)]).reshape(out.shape)


for _k in range(2, 9):
    KERNELS[f"minigrad_join{_k}"] = _join


@kernel_equivalent("minigrad_scatter_rows")
def _scatter_rows(*, g, lo, hi, out):
    values = _np.zeros(out.size, dtype=out.dtype)
    values[int(lo):int(hi)] = _np.asarray(g).reshape(-1)
    out[...] = values.reshape(out.shape)


@kernel_equivalent("minigrad_linear")
def _linear(*, x, w, b, k, n_out, y):
    y[...] = _np.asarray(x).reshape(-1, int(k)) @ _np.asarray(w).reshape(int(n_out), int(k)).T + b
