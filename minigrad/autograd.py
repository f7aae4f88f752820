"""The autograd engine: ``Function`` (an op's forward and backward, side by side) and the graph walk.

How it fits together
--------------------
* An op is a subclass of :class:`Function` with two static methods that work on raw arrays
  (``numpy.ndarray`` or ``cupy.ndarray``, never Tensors)::

      class Exp(Function):
          @staticmethod
          def forward(ctx, x):
              y = xp.exp(x)
              ctx.save_for_backward(y)      # what backward will need
              return y

          @staticmethod
          def backward(ctx, grad):          # grad = dLoss/dOutput, same shape as the output
              (y,) = ctx.saved_arrays
              return grad * y               # dLoss/dInput, one per tensor input

* ``Function.apply(*tensors, **options)`` unwraps the tensors, runs ``forward``, and - when gradients are
  wanted - records a *node* (the :class:`Context`) on the output tensor. The node remembers the input
  tensors; that chain of nodes is the graph.

* :func:`backward` walks the graph once, in reverse topological order, without recursion (a chain of
  100 000 ops is fine). For each node it calls ``backward`` and hands each input its share of the
  gradient. Three rules are enforced here, in one place, instead of in every op:

  1. *Unbroadcasting*: an op may return a gradient in its output's broadcast shape; the engine sums it
     down to the input's shape (:func:`unbroadcast`). This is the only place that does it: elementwise
     ops return the upstream gradient in the broadcast shape, and ``MatMul`` returns gradients with the
     broadcast batch dims of its output (tests/test_engine.py checks that no op module unbroadcasts).
  2. *Checking*: after unbroadcasting, every gradient must have exactly its input's shape and dtype,
     otherwise the op has a bug and the engine says which op.
  3. *Accumulating out of place*: when a tensor feeds several ops, its gradients are added with
     ``a + b`` into a new array, so no array an op returned (or saved) is ever modified behind its back.
     The other half of that contract: an op must not write into the gradient it receives (the same
     array may also be on its way to another op). The engine hands ``backward`` a read-only view
     wherever the array type has a writeable flag, so a violation fails loudly instead of corrupting
     another branch's gradient. NumPy arrays have that flag; CuPy arrays have none (a view cannot be made
     read-only on the GPU, and a copy per node would cost a kernel and memory), so on the GPU the rule is
     held by the tests: the CuPy stand-in they run every op's CUDA path on (``tests/fake_cupy.py``) keeps
     NumPy's flag, and the engine's read-only views reach the CUDA code there as they do on the CPU.

  Unless ``retain_graph=True``, each node's saved arrays and input links are dropped as soon as the
  node has been used, so memory is returned while the walk goes on.
"""
from __future__ import annotations

import contextlib
import threading

import numpy as np

from .backend import array_module

_state = threading.local()


def is_grad_enabled() -> bool:
    """Whether ops currently record the graph (False inside ``with no_grad():``)."""
    return getattr(_state, "grad_enabled", True)


class _GradMode(contextlib.ContextDecorator):
    """Sets the grad mode on entry and restores the previous one on exit.

    The previous modes are kept on a stack, not in one attribute: used as a decorator, one instance is
    entered again by every (possibly recursive or nested) call of the decorated function, and each exit
    must restore what its own entry saw.
    """

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._previous = []

    def __enter__(self):
        self._previous.append(is_grad_enabled())
        _state.grad_enabled = self.enabled
        return self

    def __exit__(self, *exc):
        _state.grad_enabled = self._previous.pop()
        return False


def no_grad():
    """Context manager (and decorator) under which ops build no graph, as ``torch.no_grad``."""
    return _GradMode(False)


def enable_grad():
    """Context manager that turns graph recording back on inside a ``no_grad`` block."""
    return _GradMode(True)


class Context:
    """What one op application remembers for its backward pass (PyTorch calls this ``ctx``).

    ``forward`` stores arrays with :meth:`save_for_backward` and any other values (a stride, a mask
    shape...) as plain attributes. The engine fills in ``needs_input_grad`` before ``forward`` runs, so an
    op can skip work for inputs that need no gradient.
    """

    def __init__(self, fn, needs_input_grad):
        self.fn = fn
        self.needs_input_grad = needs_input_grad
        self.inputs = None
        self.saved_arrays = ()
        self.released = False

    def save_for_backward(self, *arrays):
        self.saved_arrays = arrays

    def release(self):
        """Drop everything this node holds (saved arrays, options, inputs); it cannot run again."""
        fn, needs = self.fn, self.needs_input_grad
        self.__dict__.clear()
        self.fn, self.needs_input_grad = fn, needs
        self.inputs = None
        self.saved_arrays = ()
        self.released = True


class Function:
    """Base class of every op. Subclasses define ``forward(ctx, *arrays, **options)`` and
    ``backward(ctx, grad)``; ``backward`` returns one gradient per tensor input (a tuple when there are
    several; ``None`` for an input that has no gradient or whose ``ctx.needs_input_grad`` is False).

    ``name`` is the op's name in error messages and in the test registry (defaults to the class name
    in lower case).
    """

    name: str = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("name"):
            cls.name = cls.__name__.lower()

    @staticmethod
    def forward(ctx, *arrays, **options):  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad):  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **options):
        """Run the op on tensors and record it in the graph when any input requires a gradient."""
        from .tensor import Tensor  # local: tensor.py imports this module

        for i, t in enumerate(inputs):
            if not isinstance(t, Tensor):
                raise TypeError(f"{cls.name}: argument {i} must be a Tensor, got {type(t).__name__}")
        if len(inputs) > 1:
            devices = {t.device for t in inputs}
            if len(devices) > 1:
                where = ", ".join(f"{t.device} {tuple(t.shape)}" for t in inputs)
                raise ValueError(f"{cls.name}: all tensors must be on one device, got {where}")

        record = is_grad_enabled() and any(t.requires_grad for t in inputs)
        ctx = Context(cls, tuple(t.requires_grad for t in inputs) if record else (False,) * len(inputs))
        out = cls.forward(ctx, *(t.data for t in inputs), **options)
        if isinstance(out, np.generic):  # NumPy reductions to 0-d give scalars; keep arrays everywhere
            out = np.asarray(out)
        if not record or out.dtype.kind != "f":  # integer/bool results (x.long()) have no gradient
            return Tensor._wrap(out)
        ctx.inputs = inputs
        return Tensor._wrap(out, node=ctx)


def unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape``: the one place where NumPy broadcasting is undone.

    If ``x`` of shape ``shape`` was broadcast to ``grad.shape`` in the forward pass, every copy of an
    element received part of the upstream gradient, and the element's gradient is the sum of those parts:
    sum over the leading axes broadcasting added, and over the axes where ``shape`` has size 1.
    """
    shape = tuple(shape)
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra < 0:
        return grad  # cannot be a broadcast; the shape check below reports it
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    ones = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if ones:
        grad = grad.sum(axis=ones, keepdims=True)
    return grad


def _topological_order(root):
    """Tensors that need a gradient, inputs before outputs, found by an iterative depth-first search."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        tensor, children_done = stack.pop()
        if children_done:
            order.append(tensor)
            continue
        if id(tensor) in visited:
            continue
        visited.add(id(tensor))
        stack.append((tensor, True))
        node = tensor._node
        if node is not None:
            if node.released:
                raise RuntimeError(
                    f"backward: the graph through '{node.fn.name}' was already freed by an earlier "
                    "backward(); pass retain_graph=True to the first backward() to go through it twice"
                )
            for inp in node.inputs:
                if inp.requires_grad and id(inp) not in visited:
                    stack.append((inp, False))
    return order


def backward(root, grad, retain_graph=False):
    """Backpropagate ``grad`` (an array shaped like ``root``) to every leaf that requires a gradient.

    Leaves (tensors created by the user with ``requires_grad=True``) accumulate into ``.grad``; so does any
    intermediate tensor on which ``retain_grad()`` was called.
    """
    from .tensor import Tensor

    order = _topological_order(root)
    grads = {id(root): np.asarray(grad) if isinstance(grad, np.generic) else grad}
    while order:
        # Pop rather than iterate: once a tensor's gradient has been passed on, the walk holds no
        # reference to it, so an intermediate result (and its array) is freed as soon as its node is done.
        tensor = order.pop()
        g = grads.pop(id(tensor), None)
        if g is None:
            continue
        node = tensor._node
        if node is None or tensor._retains_grad:
            # .grad always gets a C-contiguous array of its own: g may be a read-only broadcast view, the
            # very array another input received (Add hands the same gradient to both inputs), or the
            # array the caller passed to backward(). (ascontiguousarray would also turn 0-d into 1-d.)
            xp = array_module(g)
            total = xp.array(g, order="C") if tensor.grad is None else xp.asarray(tensor.grad.data + g, order="C")
            tensor.grad = Tensor._wrap(total)
        if node is None:
            continue

        if getattr(g.flags, "writeable", False):
            # The same gradient array may reach several ops (Add hands one array to both inputs), so an
            # op must never write into the gradient it is given: hand it a read-only view to enforce that
            # (where the array type has the flag; CuPy's has not, see rule 3 above).
            g = g.view()
            g.flags.writeable = False
        input_grads = node.fn.backward(node, g)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        if len(input_grads) != len(node.inputs):
            raise RuntimeError(
                f"{node.fn.name}: backward returned {len(input_grads)} gradients for {len(node.inputs)} inputs"
            )
        for inp, gi, needed in zip(node.inputs, input_grads, node.needs_input_grad):
            if gi is None or not needed:
                continue
            gi = unbroadcast(gi, inp.shape)
            if isinstance(gi, np.generic):
                gi = np.asarray(gi)
            if gi.shape != inp.shape or gi.dtype != inp.dtype:
                raise RuntimeError(
                    f"{node.fn.name}: backward produced a gradient of shape {tuple(gi.shape)} and dtype "
                    f"{gi.dtype} for an input of shape {tuple(inp.shape)} and dtype {inp.dtype} (a bug in the op)"
                )
            previous = grads.get(id(inp))
            if previous is not None:
                gi = previous + gi
                if isinstance(gi, np.generic):  # the sum of two 0-d arrays is a NumPy scalar
                    gi = np.asarray(gi)
            grads[id(inp)] = gi
        if not retain_graph:
            node.release()
