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
  3. *Owning what it keeps*: a gradient the engine keeps - in ``.grad``, or as the running sum of a
     tensor that feeds several ops - must be an array nobody else holds, so that adding into it in place
     changes nothing behind anyone's back. An op's gradient is taken as it is when it is *fresh*:
     C-contiguous, writeable, and sharing no memory with what the op could have handed on instead of a
     new array - the gradient it received, its own output, the arrays its node holds (saved or as
     attributes), its inputs' values, and its other inputs' gradients (Add hands the same array to both
     inputs). Anything else is copied once, where it is kept (:func:`_is_fresh`). A second contribution
     is then added into the first in place when the first is the engine's own, and a later backward pass
     adds into a ``.grad`` the engine made (never into one the caller assigned). So the usual case - a
     weight gradient fresh from a matrix product - costs no copy. The other half of that contract: an
     op must not write into the gradient it receives (the same array may also be on its way to another
     op). The engine hands ``backward`` a read-only view wherever the array type has a writeable flag,
     so a violation fails loudly instead of corrupting another branch's gradient. NumPy arrays have that
     flag; CuPy arrays have none (a view cannot be made read-only on the GPU, and a copy per node would
     cost a kernel and memory), so on the GPU the rule is held by the tests: the CuPy stand-in they run
     every op's CUDA path on (``tests/fake_cupy.py``) keeps NumPy's flag, and the engine's read-only
     views reach the CUDA code there as they do on the CPU.

  4. *Adding in place, by the op* (optional): an op whose backward writes a gradient with a kernel anyway
     can add it into the sum the engine holds for that input so far, instead of the engine adding the
     two with a kernel of its own. Such an op sets ``adds_into_pending = True``; the engine then hands it
     ``ctx.pending``, for each input the engine's own running sum (a fresh array, rule 3) or None, and an
     input whose gradient comes back as that very array is left as it is. Batch norm's CUDA kernel does
     this for its weight and bias (``kernels/norm_cuda.py``), used twice in a step of a GAN's
     discriminator.

  Unless ``retain_graph=True``, each node's saved arrays and input links are dropped as soon as the
  node has been used, so memory is returned while the walk goes on.
"""
from __future__ import annotations

import contextlib
import threading

import numpy as np

from .backend import array_module, is_array

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
    #: Rule 4 of the module docstring: the backward may add into ``ctx.pending`` and return those arrays.
    adds_into_pending: bool = False

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


def _is_fresh(gi, held):
    """Whether the engine may keep the gradient ``gi`` an op returned without copying it (rule 3 above):
    C-contiguous, writeable where the array type says, and sharing no memory with any array of ``held``
    (``may_share_memory`` compares memory bounds on the host: no kernel, and never a wrong "no")."""
    flags = gi.flags
    if not flags.c_contiguous or not getattr(flags, "writeable", True):
        return False
    xp = array_module(gi)
    # (an array on the other device - ToDevice's input - cannot share memory with gi)
    return not any(array_module(a) is xp and xp.may_share_memory(gi, a) for a in held)


def _held_by(node, output, upstream):
    """The arrays an op's backward could hand on instead of new ones: the gradient it received, its output,
    what its node holds (saved arrays, array attributes) and its inputs' values."""
    held = [upstream, output, *node.saved_arrays, *(t.data for t in node.inputs)]
    held += [v for v in vars(node).values() if is_array(v)]
    return [a for a in held if is_array(a)]


def _keep_grad(tensor, g, fresh):
    """Accumulate ``g`` into ``tensor.grad``: ``g`` itself when it is fresh (else a C-contiguous copy: it
    may be a read-only broadcast view, another input's gradient, or the caller's array), added in place
    into a ``.grad`` the engine made earlier, out of place into one the caller assigned. (``xp.array``
    rather than ascontiguousarray, which would turn 0-d into 1-d.)"""
    from .tensor import Tensor

    xp = array_module(g)
    previous = tensor.grad
    if previous is not None and previous.data is tensor._engine_grad:
        previous.data += g
        return
    if previous is None:
        total = g if fresh else xp.array(g, order="C")
    else:
        total = xp.asarray(previous.data + g, order="C")
    tensor.grad = Tensor._wrap(total)
    tensor._engine_grad = total


def _add_pending(grads, key, gi, fresh):
    """Add an op's gradient ``gi`` to the pending gradient of the tensor with id ``key``: kept as it is (or
    marked to be copied if kept), or added into the running sum - in place when that sum is the engine's."""
    if key not in grads:
        grads[key] = (gi, fresh)
        return
    previous, previous_fresh = grads[key]
    if previous_fresh:
        previous += gi
        return
    total = previous + gi
    if isinstance(total, np.generic):  # the sum of two 0-d arrays is a NumPy scalar
        total = np.asarray(total)
    grads[key] = (total, _is_fresh(total, ()))   # new, but not C-contiguous when NumPy kept a transposed order


def _pending_sums(node, grads):
    """For each input of ``node``, the engine's own running sum of its gradient so far (fresh, rule 3), or
    None: what an op with ``adds_into_pending`` may add into (rule 4)."""
    pending = (grads.get(id(inp), (None, False)) for inp in node.inputs)
    return tuple(sum_ if fresh else None for sum_, fresh in pending)


def _pass_on(node, output, upstream, input_grads, grads, offered=None):
    """Check the gradients an op's backward returned (unbroadcast first, then shape and dtype) and add each
    to its input's pending gradient, saying whether it is fresh (rule 3); one that is the running sum the
    engine ``offered`` the op (rule 4) is already in. A function of its own, so that what it looks at is
    let go when it returns (the walk frees results as it goes)."""
    held = None
    for i, (inp, gi, needed) in enumerate(zip(node.inputs, input_grads, node.needs_input_grad)):
        if gi is None or not needed:
            continue
        returned = gi
        gi = unbroadcast(gi, inp.shape)
        if isinstance(gi, np.generic):
            gi = np.asarray(gi)
        if gi.shape != inp.shape or gi.dtype != inp.dtype:
            raise RuntimeError(
                f"{node.fn.name}: backward produced a gradient of shape {tuple(gi.shape)} and dtype "
                f"{gi.dtype} for an input of shape {tuple(inp.shape)} and dtype {inp.dtype} (a bug in the op)"
            )
        if offered is not None and offered[i] is gi:   # the op added into the running sum itself (rule 4)
            continue
        if gi is returned:   # the op's own array: fresh only if nothing else holds it
            if held is None:
                held = _held_by(node, output, upstream)
            others = [o for j, o in enumerate(input_grads) if j != i and is_array(o)]
            fresh = _is_fresh(gi, held + others)
        else:                # a sum unbroadcast made
            fresh = _is_fresh(gi, ())
        _add_pending(grads, id(inp), gi, fresh)


def backward(root, grad, retain_graph=False):
    """Backpropagate ``grad`` (an array shaped like ``root``) to every leaf that requires a gradient.

    Leaves (tensors created by the user with ``requires_grad=True``) accumulate into ``.grad``; so does any
    intermediate tensor on which ``retain_grad()`` was called.
    """
    order = _topological_order(root)
    # tensor id -> (pending gradient, fresh): the caller's array is not the engine's to keep
    grads = {id(root): (np.asarray(grad) if isinstance(grad, np.generic) else grad, False)}
    while order:
        # Pop rather than iterate: once a tensor's gradient has been passed on, the walk holds no
        # reference to it, so an intermediate result (and its array) is freed as soon as its node is done.
        tensor = order.pop()
        g, fresh = grads.pop(id(tensor), (None, False))
        if g is None:
            continue
        node = tensor._node
        if node is None or tensor._retains_grad:
            _keep_grad(tensor, g, fresh)
        if node is None:
            continue

        upstream = g
        if getattr(g.flags, "writeable", False):
            # The same gradient array may reach several ops (Add hands one array to both inputs), so an
            # op must never write into the gradient it is given: hand it a read-only view to enforce that
            # (where the array type has the flag; CuPy's has not, see rule 3 above).
            g = g.view()
            g.flags.writeable = False
        offered = node.pending = _pending_sums(node, grads) if node.fn.adds_into_pending else None
        input_grads = node.fn.backward(node, g)
        node.pending = None
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        if len(input_grads) != len(node.inputs):
            raise RuntimeError(
                f"{node.fn.name}: backward returned {len(input_grads)} gradients for {len(node.inputs)} inputs"
            )
        _pass_on(node, tensor.data, upstream, input_grads, grads, offered)
        if not retain_graph:
            node.release()
