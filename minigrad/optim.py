"""Optimizers with PyTorch's update rules: ``SGD`` (with momentum) and ``Adam``.

Both keep ``param_groups`` (a list with one dict of hyper-parameters and the parameter list, so a
learning-rate schedule can write ``opt.param_groups[0]["lr"]``) and a per-parameter ``state``.
``state_dict()`` returns plain numbers and NumPy arrays, keyed by parameter position, as PyTorch does.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from . import backend, kernels
from .tensor import Tensor


def _number(op, name, value, low=0.0, high=None):
    """``value`` as a float when it is a finite real number (not a bool) in [low, high) (or >= low when
    ``high`` is None); else a ValueError that names the hyper-parameter after ``op``."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
    ok = ok and low <= float(value) and (high is None or float(value) < high)
    if not ok:
        wanted = "a non-negative number (finite)" if high is None else f"a number in [{low:g}, {high:g})"
        raise ValueError(f"{op} {name} must be {wanted}, got {value!r}")
    return float(value)


class Optimizer:
    defaults: dict = {}

    def __init__(self, params, **hyper):
        name = type(self).__name__
        if isinstance(params, Tensor):
            raise TypeError(f"{name}: params must be an iterable of Tensors (e.g. model.parameters() or [w]), "
                            "got a single Tensor")
        params = list(params)
        if not params:
            raise ValueError(f"{name}: got an empty parameter list")
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"{name}: parameter {i} must be a Tensor, got {type(p).__name__}")
            if not p.requires_grad:
                raise TypeError(f"{name}: parameter {i} (shape {p.shape}) has requires_grad=False; every "
                                "parameter must be a Tensor with requires_grad=True")
            if not p.is_leaf:
                raise ValueError(f"{name}: parameter {i} (shape {p.shape}) is not a leaf tensor (it was computed "
                                 f"by {p.grad_fn.name}), so backward() never fills its .grad; optimize the "
                                 "leaves it was computed from, or detach() it and set requires_grad=True")

        group = dict(self.defaults)
        group.update(hyper)
        group["params"] = params
        self.param_groups = [group]
        self.state = [dict() for _ in params]

    @property
    def params(self):
        return self.param_groups[0]["params"]

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        group = self.param_groups[0]
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            self._update(p, p.grad.data, self.state[i], group)

    def _update(self, p, g, state, group):  # pragma: no cover - abstract
        raise NotImplementedError

    def state_dict(self):
        """{"state": {index: {name: value}}, "param_groups": [hyper-parameters]} with NumPy arrays."""
        state = {i: {k: (backend.to_numpy(v).copy() if not np.isscalar(v) else v) for k, v in s.items()}
                 for i, s in enumerate(self.state) if s}
        groups = [{k: v for k, v in g.items() if k != "params"} for g in self.param_groups]
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        groups = state_dict["param_groups"]
        if len(groups) != 1:
            raise ValueError(f"{type(self).__name__}.load_state_dict: expected 1 parameter group, got {len(groups)}")
        for i, s in state_dict["state"].items():
            i = int(i)
            if i >= len(self.params):
                raise ValueError(f"{type(self).__name__}.load_state_dict: state for parameter {i} but the "
                                 f"optimizer has {len(self.params)} parameters")
            p = self.params[i]
            restored = {}
            for k, v in s.items():
                if np.isscalar(v) or np.ndim(v) == 0:
                    restored[k] = v.item() if hasattr(v, "item") else v
                else:
                    if tuple(np.shape(v)) != p.shape:
                        raise ValueError(f"{type(self).__name__}.load_state_dict: state {k!r} of parameter {i} "
                                         f"has shape {tuple(np.shape(v))}, the parameter has {p.shape}")
                    restored[k] = backend.to_device(np.asarray(v, dtype=p.dtype).copy(), p.device)
            self.state[i] = restored
        self.param_groups[0].update({k: v for k, v in groups[0].items() if k != "params"})


class SGD(Optimizer):
    """p <- p - lr * b, with b = momentum * b + g (b = g on the first step), as ``torch.optim.SGD``
    (dampening 0, no Nesterov). ``weight_decay`` adds ``weight_decay * p`` to g."""

    defaults = {"lr": None, "momentum": 0.0, "weight_decay": 0.0}

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        lr, momentum, weight_decay = (_number("SGD:", k, v) for k, v in
                                      (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)))
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)

    def _update(self, p, g, state, group):
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p.data
        if group["momentum"]:
            buf = state.get("momentum_buffer")
            buf = g.copy() if buf is None else group["momentum"] * buf + g
            state["momentum_buffer"] = buf
            g = buf
        p.data = p.data - p.data.dtype.type(group["lr"]) * g


class Adam(Optimizer):
    """Adam (Kingma & Ba) exactly as ``torch.optim.Adam`` computes it:

        m <- beta1 m + (1 - beta1) g          v <- beta2 v + (1 - beta2) g^2
        p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    ``eps_inside_sqrt=True`` (a minigrad extension) computes ``p <- p - lr m_hat / sqrt(v_hat + eps)``
    with ``m_hat = m / (1 - beta1^t)``, ``v_hat = v / (1 - beta2^t)``: the Adam of Improved-GAN's Theano
    code (``nn.adam_updates``), which puts eps under the square root.

    The update itself is the ``optim`` kernel family: for NumPy arrays one numba pass per parameter
    (``minigrad/kernels/optim_cpu.py``), bit for bit the array expressions of
    ``kernels/optim_reference.py`` (the reference and the CuPy path).

    On the GPU a step is one kernel for all the parameters (:meth:`_step_in_one_buffer`): the parameters
    and the two moments live in three flat buffers, each parameter's ``.data`` and state a view of its
    part, so the update is one pass over the buffers, reading each gradient where it is
    (``kernels/optim_cuda.py``, ``adam_update_joined``). The arithmetic per value is the per-parameter
    kernel's.
    """

    defaults = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "eps_inside_sqrt": False}

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, eps_inside_sqrt=False):
        op = "Adam: invalid hyper-parameters:"
        lr, eps, weight_decay = (_number(op, k, v) for k, v in (("lr", lr), ("eps", eps),
                                                                ("weight_decay", weight_decay)))
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{op} betas must be a pair (beta1, beta2), got {betas!r}")
        betas = tuple(_number(op, f"betas[{i}]", b, 0.0, 1.0) for i, b in enumerate(betas))
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         eps_inside_sqrt=bool(eps_inside_sqrt))
        self._buffers = None   # the GPU's flat buffers and the views handed out (see _step_in_one_buffer)

    def step(self):
        if not self._step_in_one_buffer():
            super().step()

    # ---------------------------------------------------------------------------- one buffer on the GPU
    def _one_buffer_applies(self):
        """Whether a step can be one launch: every parameter on the GPU, of one dtype, with a gradient, listed
        once, all at the same step number, and no weight decay (which the kernel does not take)."""
        params = self.params
        first = params[0].data
        if self.param_groups[0]["weight_decay"] or backend.device_of(first) != "cuda":
            return False
        if len({id(p) for p in params}) != len(params) or len({s.get("step", 0) for s in self.state}) != 1:
            return False
        return all(p.grad is not None and backend.device_of(p.data) == "cuda" and p.data.dtype == first.dtype
                   and p.grad.data.dtype == first.dtype for p in params)

    def _buffers_current(self):
        """Whether every parameter and state array is still the view of the buffers it was given (nothing
        assigned a new array in between: a checkpoint load, ``load_state_dict``, user code)."""
        if self._buffers is None:
            return False
        _, views = self._buffers
        return all(p.data is pv and s.get("exp_avg") is mv and s.get("exp_avg_sq") is vv
                   for p, s, (pv, mv, vv) in zip(self.params, self.state, views))

    def _gather(self, xp):
        """The three flat buffers from the parameters and their state as they are now (zeros for a first step)."""
        params, state = self.params, self.state
        flat = lambda arrays: xp.concatenate([a.reshape(-1) for a in arrays])  # noqa: E731
        p = flat([q.data for q in params])
        if not state[0]:
            return p, xp.zeros_like(p), xp.zeros_like(p)
        return p, flat([s["exp_avg"] for s in state]), flat([s["exp_avg_sq"] for s in state])

    def _bind(self, p, m, v, t):
        """Hand every parameter and its state their views of the buffers ``p``, ``m``, ``v``."""
        views, start = [], 0
        for q, s in zip(self.params, self.state):
            size, shape = q.data.size, q.data.shape
            part = [b[start:start + size].reshape(shape) for b in (p, m, v)]
            q.data = part[0]
            s.update(step=t, exp_avg=part[1], exp_avg_sq=part[2])
            views.append(tuple(part))
            start += size
        self._buffers = ((p, m, v), views)

    def _step_in_one_buffer(self):
        """One Adam step for all the parameters in one kernel launch over flat buffers, on the GPU; False
        (nothing done) where it does not apply. When the buffers have to be made (a first step, an array
        replaced since), the parameters and the moments are copied into them first (zeros for a first step's
        moments)."""
        if not self._one_buffer_applies():
            return False
        group = self.param_groups[0]
        xp = backend.array_module(self.params[0].data)
        p, m, v = self._buffers[0] if self._buffers_current() else self._gather(xp)
        t = self.state[0].get("step", 0) + 1
        beta1, beta2 = group["betas"]
        k = kernels.for_arrays("optim", p, m, v)
        p, m, v = k.adam_update_joined(p, [q.grad.data for q in self.params], m, v, beta1, beta2, group["lr"],
                                       group["eps"], t, eps_inside_sqrt=group.get("eps_inside_sqrt", False))
        self._bind(p, m, v, t)
        return True

    def _update(self, p, g, state, group):
        beta1, beta2 = group["betas"]
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p.data
        if not state:
            xp = backend.array_module(p.data)
            state.update(step=0, exp_avg=xp.zeros_like(p.data), exp_avg_sq=xp.zeros_like(p.data))
        state["step"] += 1
        t = state["step"]
        k = kernels.for_arrays("optim", p.data, g, state["exp_avg"], state["exp_avg_sq"])
        p.data, state["exp_avg"], state["exp_avg_sq"] = k.adam_update(
            p.data, g, state["exp_avg"], state["exp_avg_sq"], beta1, beta2, group["lr"], group["eps"], t,
            eps_inside_sqrt=group.get("eps_inside_sqrt", False))
