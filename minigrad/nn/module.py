"""``Module`` and ``Parameter``: containers that find their parameters and buffers by attribute name,
so ``state_dict()`` keys read exactly as PyTorch's (``features.0.weight``, ``bn1.running_mean``...)."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .. import backend
from ..tensor import Tensor


class Parameter(Tensor):
    """A tensor that is a module's learnable weight: ``requires_grad=True`` and listed by ``parameters()``."""

    __slots__ = ()

    def __init__(self, data, requires_grad=True):
        raw = data.data if isinstance(data, Tensor) else data
        super().__init__(raw, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of layers and models.

    Assigning a :class:`Parameter` or a ``Module`` to an attribute registers it; buffers (running
    statistics and other state that is saved but not trained) are registered with :meth:`register_buffer`.
    Subclasses implement ``forward``; calling the module calls ``forward``.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        for table in (self._parameters, self._buffers, self._modules):
            table.pop(name, None)
        if isinstance(value, Parameter):
            table = self._parameters
        elif isinstance(value, Module):
            table = self._modules
        elif name in self.__dict__.get("_buffer_names", ()):
            table = self._buffers
        else:
            object.__setattr__(self, name, value)
            return
        # A plain attribute of that name (e.g. ``self.bias = None`` set earlier) would shadow the table
        # entry, since __getattr__ is only consulted when normal lookup fails.
        self.__dict__.pop(name, None)
        table[name] = value

    def __getattr__(self, name):
        for table in ("_parameters", "_buffers", "_modules"):
            d = self.__dict__.get(table)
            if d is not None and name in d:
                return d[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for table in (self._parameters, self._buffers, self._modules):
            if name in table:
                del table[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name, tensor):
        """Register non-trained state (a Tensor, or None) that ``state_dict`` saves and ``to`` moves."""
        names = self.__dict__.setdefault("_buffer_names", set())
        names.add(name)
        self.__dict__.pop(name, None)
        self._buffers[name] = tensor

    def add_module(self, name, module):
        self._modules[name] = module

    # ----------------------------------------------------------------------------- traversal
    def named_modules(self, prefix=""):
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def children(self):
        return iter(m for m in self._modules.values() if m is not None)

    def named_parameters(self, prefix=""):
        seen = set()
        for mod_prefix, m in self.named_modules(prefix):
            for name, p in m._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mod_prefix}.{name}" if mod_prefix else name), p

    def parameters(self):
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self, prefix=""):
        for mod_prefix, m in self.named_modules(prefix):
            for name, b in m._buffers.items():
                if b is not None:
                    yield (f"{mod_prefix}.{name}" if mod_prefix else name), b

    def buffers(self):
        for _, b in self.named_buffers():
            yield b

    # ----------------------------------------------------------------------------- modes and devices
    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def to(self, device):
        """Move every parameter and buffer to ``device`` in place (parameters stay the same objects, so an
        optimizer made before still holds them)."""
        device = backend.check_device(device)
        for m in self.modules():
            for table in (m._parameters, m._buffers):
                for t in table.values():
                    if t is not None:
                        t.data = backend.to_device(t.data, device)
                        if t.grad is not None:
                            t.grad = Tensor._wrap(backend.to_device(t.grad.data, device))
        return self

    # ----------------------------------------------------------------------------- state
    def _named_state(self):
        """(dotted name, tensor) of every parameter and buffer in PyTorch's state_dict order: module by
        module (parent first), each module's parameters then its buffers. A parameter shared by two
        modules appears under both names, as in PyTorch."""
        for mod_prefix, m in self.named_modules():
            for table in (m._parameters, m._buffers):
                for name, t in table.items():
                    if t is not None:
                        yield (f"{mod_prefix}.{name}" if mod_prefix else name), t

    def state_dict(self):
        """Parameters and buffers by PyTorch-style dotted name, as NumPy arrays (copies)."""
        return OrderedDict((name, t.numpy().copy()) for name, t in self._named_state())

    def load_state_dict(self, state, strict=True):
        """Copy arrays into the parameters and buffers. Names and shapes are checked first, and nothing is
        changed unless everything fits: the error lists what is missing, unexpected or mis-shaped."""
        own = dict(self._named_state())
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        shapes = [f"{k}: checkpoint {tuple(np.shape(state[k]))} vs model {own[k].shape}"
                  for k in own if k in state and tuple(np.shape(state[k])) != own[k].shape]
        problems = []
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        if shapes:
            problems.append("shape mismatches: " + "; ".join(shapes))
        if problems:
            raise ValueError(f"load_state_dict for {type(self).__name__}: " + " | ".join(problems))
        for k, t in own.items():
            if k in state:
                arr = np.asarray(state[k]).astype(t.dtype, copy=True)
                t.data = backend.to_device(arr, t.device)

    # ----------------------------------------------------------------------------- calling
    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def register_forward_pre_hook(self, hook):
        """Call ``hook(module, args)`` before every ``forward`` (how ``nn.utils.weight_norm`` recomputes the
        weight from its parts). Returns a key for :meth:`remove_forward_pre_hook`. Hooks are copied with
        the module by ``copy.deepcopy``, so a hook must reach the module through its argument."""
        key = len(self._forward_pre_hooks) and max(self._forward_pre_hooks) + 1
        self._forward_pre_hooks[key] = hook
        return key

    def remove_forward_pre_hook(self, key):
        del self._forward_pre_hooks[key]

    def __call__(self, *args, **kwargs):
        for hook in self._forward_pre_hooks.values():
            hook(self, args)
        return self.forward(*args, **kwargs)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [f"({name}): " + repr(m).replace("\n", "\n  ") for name, m in self._modules.items()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"
