"""``Tensor``: an array, where it lives, and - when it takes part in a graph - the op that made it.

A Tensor is a thin wrapper: ``.data`` is the raw NumPy or CuPy array and every operator dispatches to a
:class:`~minigrad.autograd.Function` in ``minigrad/ops``. The names and semantics are PyTorch's; the dtype
rules (which dtypes exist, what a Python number or a mix of dtypes becomes) are in ``minigrad/dtypes.py``.

The op modules this file imports (elementwise, reduce, shape, matmul) import only the engine
(``autograd``), ``backend`` and ``kernels``, never this module, so there is no import cycle between
``Tensor`` and its ops. (The engine does reach ``Tensor`` at call time, since this module imports it.)
"""
from __future__ import annotations

import functools
import numbers

import numpy as np

from . import autograd, backend, dtypes
from .ops.elementwise import (Abs, Add, Cast, Clone, Div, Exp, Log, Mul, Neg, Pow, PowScalar, ReLU, Sigmoid,
                              Sqrt, Sub, Tanh, ToDevice)
from .ops.matmul import MatMul
from .ops.reduce import LogSoftmax, LogSumExp, Max, Mean, Softmax, Sum
from .ops.shape import GetItem, Permute, Reshape


@functools.lru_cache(maxsize=16)
def _implied_gradient(xp, dtype, shape):
    """The gradient ``backward()`` implies for a one-element output: ones, an array (also for a 0-d tensor)
    made once per array module, dtype and shape and read-only where the array type has the flag. Nothing
    writes into it - the engine copies a root gradient before keeping it, and ops never write into the
    gradient they receive - so a backward pass need not begin with a kernel to make it."""
    one = xp.ones(shape, dtype=dtype)
    if hasattr(one.flags, "writeable"):
        one.flags.writeable = False
    return one


class Tensor:
    """A multi-dimensional array with an optional gradient.

    Attributes
    ----------
    data : numpy.ndarray or cupy.ndarray
        The values. Assigning to ``data`` changes the tensor without recording anything (used by
        optimizers).
    grad : Tensor or None
        Filled by :meth:`backward` for leaves with ``requires_grad=True``. A gradient the engine made is
        accumulated into in place by later backward passes; one assigned to ``.grad`` is never written into
        (the next backward pass replaces it by a new array holding the sum).
    requires_grad : bool
        Whether ops on this tensor are recorded for backpropagation.
    """

    __slots__ = ("data", "_grad", "_engine_grad", "_requires_grad", "_node", "_retains_grad", "__weakref__")
    __array_priority__ = 1000  # make `numpy_array * tensor` call Tensor.__rmul__
    __hash__ = object.__hash__  # __eq__ is elementwise, as in PyTorch

    def __init__(self, data, dtype=None, device=None, requires_grad=False):
        if device is None:
            raw = data.data if isinstance(data, Tensor) else data
            device = backend.device_of(raw) if backend.is_array(raw) else "cpu"
        self.data = dtypes.as_array(data.data if isinstance(data, Tensor) else data, dtype, device)
        self._grad = self._engine_grad = None
        self._node = None
        self._retains_grad = False
        self._requires_grad = False
        self.requires_grad = requires_grad

    @classmethod
    def _wrap(cls, array, node=None):
        """Wrap an array an op produced (no copy, no dtype change); ``node`` is the op that made it."""
        t = cls.__new__(cls)
        t.data = array
        t._grad = t._engine_grad = None
        t._node = node
        t._retains_grad = False
        t._requires_grad = node is not None
        return t

    # ----------------------------------------------------------------------------- properties
    @property
    def grad(self):
        """The accumulated gradient (a Tensor), or None."""
        return self._grad

    @grad.setter
    def grad(self, value):
        # An assigned gradient is the caller's: forget which array the engine made (``_engine_grad``, the
        # only one ``autograd.backward`` adds into in place).
        self._grad, self._engine_grad = value, None

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value):
        if value and not dtypes.is_float(self.data.dtype):
            raise TypeError(
                "requires_grad: only floating-point tensors can require gradients, this one has dtype "
                f"{self.data.dtype} and shape {tuple(self.data.shape)}"
            )
        if not value and self._node is not None:
            raise RuntimeError("requires_grad: cannot turn off gradients of a non-leaf tensor; use detach()")
        self._requires_grad = bool(value)

    def requires_grad_(self, requires_grad=True):
        self.requires_grad = requires_grad
        return self

    @property
    def shape(self):
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self) -> str:
        return backend.device_of(self.data)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    @property
    def grad_fn(self):
        """The op class that produced this tensor (None for leaves)."""
        return None if self._node is None else self._node.fn

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[dim]

    def dim(self) -> int:
        return self.ndim

    def numel(self) -> int:
        return int(self.data.size)

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __repr__(self):
        extra = ""
        if self.device != "cpu":
            extra += f", device='{self.device}'"
        if self._node is not None:
            extra += f", grad_fn=<{self._node.fn.name}>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(")
        return f"tensor({body}, dtype={self.dtype}{extra})"

    # ----------------------------------------------------------------------------- conversion
    def numpy(self) -> np.ndarray:
        """The values as a NumPy array (a copy from the GPU; the array itself on the CPU)."""
        return backend.to_numpy(self.data)

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item: only a tensor with one element has an item, this one has shape {self.shape}")
        return self.data.reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def detach(self) -> "Tensor":
        """A tensor sharing the same array, cut from the graph."""
        return Tensor._wrap(self.data)

    def clone(self) -> "Tensor":
        return Clone.apply(self)

    def to(self, device=None, dtype=None) -> "Tensor":
        """``to("cuda")``, ``to("cpu")``, ``to(np.float64)`` or both. Moving devices is recorded (the
        gradient flows back to the original device); changing dtype is a recorded cast."""
        if device is not None and not isinstance(device, str):
            device, dtype = None, device
        out = self
        if dtype is not None and dtypes.check("to", dtype) != self.dtype:
            out = Cast.apply(out, dtype=np.dtype(dtype))
        if device is not None and backend.check_device(device) != out.device:
            out = ToDevice.apply(out, device=backend.check_device(device))
        return out

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    def long(self):
        return self.to(np.int64)

    # ----------------------------------------------------------------------------- autograd
    def backward(self, gradient=None, retain_graph=False):
        """Backpropagate from this tensor. ``gradient`` defaults to 1 for a one-element tensor."""
        if not self.requires_grad:
            raise RuntimeError(
                "backward: this tensor does not require grad and has no grad_fn "
                "(was it computed under no_grad, or from tensors without requires_grad=True?)"
            )
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward: a gradient can be implied only for a one-element output, this one has shape "
                    f"{self.shape}; pass gradient= with that shape"
                )
            g = _implied_gradient(backend.array_module(self.data), self.dtype, self.shape)
        else:
            g = dtypes.as_array(gradient.data if isinstance(gradient, Tensor) else gradient, dtype=self.dtype,
                                device=self.device, op="backward")
            if g.shape != self.data.shape:
                raise ValueError(f"backward: gradient has shape {tuple(g.shape)} but the tensor has shape {self.shape}")
        autograd.backward(self, g, retain_graph=retain_graph)

    def retain_grad(self):
        """Keep ``.grad`` on this intermediate tensor too after ``backward()``."""
        self._retains_grad = True
        return self

    def zero_grad_(self):
        """Forget the accumulated gradient (``.grad = None``, which is what PyTorch's set_to_none does)."""
        self.grad = None
        return self

    # ----------------------------------------------------------------------------- operators
    def _other(self, other, op):
        """A Python scalar or array as a constant tensor of this tensor's dtype and device."""
        if isinstance(other, Tensor):
            return other
        if dtypes.is_scalar(other):
            dtype = dtypes.scalar_dtype(self.dtype, other)
            return Tensor._wrap(backend.module_for(self.device).asarray(other, dtype=dtype))
        if backend.is_array(other) or isinstance(other, (list, tuple)):
            return Tensor(other, device=self.device)
        raise TypeError(f"{op}: unsupported operand of type {type(other).__name__}")

    def _binary(self, fn, other, reverse=False):
        other = self._other(other, fn.name)
        a, b = (other, self) if reverse else (self, other)
        a, b = _promote(a, b)
        return fn.apply(a, b)

    def __add__(self, other):
        return self._binary(Add, other)

    def __radd__(self, other):
        return self._binary(Add, other, reverse=True)

    def __sub__(self, other):
        return self._binary(Sub, other)

    def __rsub__(self, other):
        return self._binary(Sub, other, reverse=True)

    def __mul__(self, other):
        return self._binary(Mul, other)

    def __rmul__(self, other):
        return self._binary(Mul, other, reverse=True)

    def __truediv__(self, other):
        return self._binary(Div, other)

    def __rtruediv__(self, other):
        return self._binary(Div, other, reverse=True)

    def __matmul__(self, other):
        return self._binary(MatMul, other)

    def __rmatmul__(self, other):
        return self._binary(MatMul, other, reverse=True)

    def __pow__(self, exponent):
        """``x ** 2`` (a constant exponent: one input) or ``x ** y`` (a tensor exponent: two inputs)."""
        if isinstance(exponent, Tensor):
            return self._binary(Pow, exponent)
        if not isinstance(exponent, (numbers.Real, np.number)):
            raise TypeError(f"pow: unsupported exponent of type {type(exponent).__name__}")
        return PowScalar.apply(self, exponent=float(exponent))

    def __rpow__(self, base):
        return self._binary(Pow, base, reverse=True)

    def pow(self, exponent):
        return self ** exponent

    def __neg__(self):
        return Neg.apply(self)

    def __pos__(self):
        return self

    def _compare(self, other, name):
        other = self._other(other, name)
        return Tensor._wrap(getattr(self.data, name)(other.data))

    def __eq__(self, other):
        return self._compare(other, "__eq__")

    def __ne__(self, other):
        return self._compare(other, "__ne__")

    def __lt__(self, other):
        return self._compare(other, "__lt__")

    def __le__(self, other):
        return self._compare(other, "__le__")

    def __gt__(self, other):
        return self._compare(other, "__gt__")

    def __ge__(self, other):
        return self._compare(other, "__ge__")

    def __bool__(self):
        if self.data.size != 1:
            raise RuntimeError(f"bool: the truth value of a tensor of shape {self.shape} is ambiguous")
        return bool(self.item())

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __getitem__(self, index):
        return GetItem.apply(self, index=_index_arrays(index))

    # ----------------------------------------------------------------------------- elementwise
    def exp(self):
        return Exp.apply(self)

    def log(self):
        return Log.apply(self)

    def abs(self):
        return Abs.apply(self)

    def sqrt(self):
        return Sqrt.apply(self)

    def tanh(self):
        return Tanh.apply(self)

    def sigmoid(self):
        return Sigmoid.apply(self)

    def relu(self):
        return ReLU.apply(self)

    # ----------------------------------------------------------------------------- reductions
    def sum(self, dim=None, keepdim=False):
        return Sum.apply(self, dim=_dims(dim, self.ndim, "sum"), keepdim=keepdim)

    def mean(self, dim=None, keepdim=False):
        """Mean over ``dim`` (an int, a tuple, or None for all); ``x.mean(dim=(2, 3))`` is global average
        pooling of an NCHW batch."""
        return Mean.apply(self, dim=_dims(dim, self.ndim, "mean"), keepdim=keepdim)

    def max(self, dim=None, keepdim=False):
        """Largest value over ``dim`` (values only, unlike torch's (values, indices) pair for an int dim;
        use :meth:`argmax` for the indices). Ties split the gradient evenly among the maxima."""
        return Max.apply(self, dim=_dims(dim, self.ndim, "max"), keepdim=keepdim)

    def logsumexp(self, dim, keepdim=False):
        return LogSumExp.apply(self, dim=_dims(dim, self.ndim, "logsumexp"), keepdim=keepdim)

    def softmax(self, dim):
        return Softmax.apply(self, dim=_dim1(dim, self.ndim, "softmax"))

    def log_softmax(self, dim):
        return LogSoftmax.apply(self, dim=_dim1(dim, self.ndim, "log_softmax"))

    def argmax(self, dim=None, keepdim=False):
        """Indices of the maxima (an int64 tensor, no gradient)."""
        xp = backend.array_module(self.data)
        if dim is None:
            return Tensor._wrap(xp.asarray(self.data.argmax(), dtype=np.int64))
        out = self.data.argmax(axis=dim)
        if keepdim:
            out = xp.expand_dims(out, dim)
        return Tensor._wrap(out.astype(np.int64))

    # ----------------------------------------------------------------------------- shape
    def reshape(self, *shape):
        shape = _shape_args(shape)
        return Reshape.apply(self, shape=shape)

    view = reshape

    def flatten(self, start_dim=0, end_dim=-1):
        nd = max(self.ndim, 1)
        s, e = _axis(start_dim, nd, "flatten", self.shape), _axis(end_dim, nd, "flatten", self.shape)
        if s > e:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for shape {self.shape}")
        shape = self.shape[:s] + (-1,) + self.shape[e + 1:]
        return self.reshape(*shape)

    def unsqueeze(self, dim):
        d = _axis(dim, self.ndim + 1, "unsqueeze", self.shape)
        return self.reshape(*self.shape[:d], 1, *self.shape[d:])

    def squeeze(self, dim=None):
        if dim is None:
            return self.reshape(*[n for n in self.shape if n != 1])
        d = _axis(dim, max(self.ndim, 1), "squeeze", self.shape)
        if self.ndim == 0 or self.shape[d] != 1:
            return self
        return self.reshape(*self.shape[:d], *self.shape[d + 1:])

    def permute(self, *dims):
        dims = _shape_args(dims)
        nd = max(self.ndim, 1)
        if len(dims) != self.ndim or any(not -nd <= d < nd for d in dims) \
                or sorted(d % nd for d in dims) != list(range(self.ndim)):
            raise ValueError(f"permute: dims {dims} are not a permutation of the {self.ndim} dims of shape {self.shape}")
        return Permute.apply(self, dims=tuple(d % nd for d in dims))

    def transpose(self, dim0, dim1):
        dims = list(range(self.ndim))
        try:
            dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
        except IndexError:
            raise ValueError(f"transpose: dims ({dim0}, {dim1}) out of range for shape {self.shape}") from None
        return self.permute(*dims)

    @property
    def T(self):
        return self.permute(*reversed(range(self.ndim)))

    def matmul(self, other):
        return self @ other


def _promote(a: Tensor, b: Tensor):
    """Bring two tensors to a common dtype (:func:`minigrad.dtypes.promote_types`), through recorded casts."""
    if a.dtype == b.dtype:
        return a, b
    target = dtypes.promote_types(a.dtype, b.dtype)
    return a.to(target), b.to(target)


def _dims(dim, ndim, op):
    """Normalise a ``dim`` argument to a tuple of non-negative axes (None -> all axes).

    As in PyTorch, a 0-d tensor accepts dim 0 and -1; they name no real axis, so they become ``()``.
    """
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    out = []
    for d in dims:
        if not -max(ndim, 1) <= d < max(ndim, 1):
            raise ValueError(f"{op}: dim {d} is out of range for a tensor with {ndim} dims")
        out.append(int(d) % max(ndim, 1))
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: dim {dim} repeats an axis")
    return tuple(out) if ndim else ()


def _axis(dim, n, op, shape):
    """``dim`` as an index in [0, n), where n is the number of valid positions (ndim, or ndim + 1 for
    unsqueeze); negative dims count from the end, anything outside [-n, n) is an error, not a wrap."""
    if not -n <= dim < n:
        raise ValueError(f"{op}: dim {dim} is out of range for shape {tuple(shape)} (expected a dim in [{-n}, {n - 1}])")
    return int(dim) % n


def _dim1(dim, ndim, op):
    """One axis, for the ops that work along a single dim (softmax, log_softmax)."""
    if ndim == 0:
        raise ValueError(f"{op}: needs a tensor with at least 1 dim, got a 0-d tensor")
    if not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{op}: dim must be an int, got {dim!r}")
    return _dims(dim, ndim, op)[0]


def _shape_args(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(s) for s in shape)


def _index_arrays(index):
    """Replace Tensors inside an index by their arrays (integer-array and boolean-mask indexing)."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index
