"""``nn.utils``: weight normalization (``weight_norm`` / ``remove_weight_norm``, as ``torch.nn.utils``) and
its data-dependent initialisation (``weight_norm_data_init_``).

Weight normalization (Salimans & Kingma 2016) writes a layer's weight as a direction and a length,
``w = g * v / ||v||``: ``v`` (``weight_v``) has the weight's shape, ``g`` (``weight_g``) one length per
slice along ``dim``. As in PyTorch, :func:`weight_norm` replaces the parameter ``weight`` by the two
parameters ``weight_g`` and ``weight_v`` (so ``state_dict`` keys read ``fc.weight_g``, ``fc.weight_v``),
starts them at ``g = ||w||, v = w`` (the layer computes the same function as before), and recomputes
``weight`` from them before every forward pass through a forward pre-hook.

``dim`` is the dimension that keeps its own length: 0 (the default, PyTorch's) for ``Linear`` and
``Conv2d``, whose dim 0 is the output; pass ``dim=1`` for ``ConvTranspose2d``, whose weight is
(in, out, kH, kW), to normalise per output channel as Improved-GAN does.
"""
from __future__ import annotations

from .. import functional as F
from ..autograd import no_grad
from ..tensor import Tensor
from .module import Module, Parameter


class _WeightNormHook:
    """Recomputes ``module.<name>`` from ``<name>_g`` and ``<name>_v`` (reached through the module it is
    called with, so a deep copy of the module computes from its own parameters)."""

    def __init__(self, name: str, dim, eps: float):
        self.name, self.dim, self.eps = name, dim, eps

    def compute(self, module) -> Tensor:
        return F.weight_norm(getattr(module, self.name + "_v"), getattr(module, self.name + "_g"), self.dim,
                             self.eps)

    def __call__(self, module, args) -> None:
        object.__setattr__(module, self.name, self.compute(module))


def _hook_of(module, name):
    for key, hook in module._forward_pre_hooks.items():
        if isinstance(hook, _WeightNormHook) and hook.name == name:
            return key, hook
    return None, None


def weight_norm(module: Module, name: str = "weight", dim=0, eps: float = 0.0) -> Module:
    """Reparametrise ``module.<name>`` as ``g * v / ||v||`` (in place; returns the module), as
    ``torch.nn.utils.weight_norm``. ``eps`` (a minigrad extension, default 0 as in PyTorch) is added
    under the square root."""
    if not isinstance(module, Module):
        raise TypeError(f"weight_norm: expected a Module, got {type(module).__name__}")
    if _hook_of(module, name)[0] is not None:
        raise RuntimeError(f"weight_norm: {type(module).__name__}.{name} is already weight-normalised")
    weight = module._parameters.get(name)
    if not isinstance(weight, Parameter):
        raise ValueError(f"weight_norm: {type(module).__name__} has no parameter {name!r}")
    if dim is not None and not -weight.ndim <= dim < weight.ndim:
        raise ValueError(f"weight_norm: dim {dim} is out of range for {name} of shape {weight.shape}")
    axes = tuple(range(weight.ndim)) if dim is None else tuple(
        a for a in range(weight.ndim) if a != dim % weight.ndim)
    data = weight.data
    xp_norm = ((data * data).sum(axis=axes, keepdims=True) + eps) ** 0.5
    del module._parameters[name]
    setattr(module, name + "_g", Parameter(Tensor._wrap(xp_norm.astype(data.dtype))))
    setattr(module, name + "_v", Parameter(Tensor._wrap(data.copy())))
    hook = _WeightNormHook(name, dim, float(eps))
    module.register_forward_pre_hook(hook)
    hook(module, ())
    return module


def remove_weight_norm(module: Module, name: str = "weight") -> Module:
    """Undo :func:`weight_norm`: ``<name>`` becomes one ordinary parameter again, holding the current
    ``g * v / ||v||``."""
    key, hook = _hook_of(module, name)
    if key is None:
        raise ValueError(f"remove_weight_norm: {type(module).__name__}.{name} is not weight-normalised")
    with no_grad():
        w = hook.compute(module)
    module.remove_forward_pre_hook(key)
    del module._parameters[name + "_g"], module._parameters[name + "_v"]
    module.__dict__.pop(name, None)
    setattr(module, name, Parameter(Tensor._wrap(w.data.copy())))
    return module


def weight_norm_data_init_(module: Module, x: Tensor, init_scale: float = 1.0, name: str = "weight") -> Tensor:
    """The data-dependent initialisation of weight normalization (Salimans & Kingma 2016, section 3), for
    one weight-normalised layer with a bias: run the layer on the batch ``x``, take each output channel's
    mean ``m`` and standard deviation ``s`` of the pre-activation over the batch (and over the image
    positions for 4-D outputs), then set ``g <- g * init_scale / s`` and ``bias <- -m * init_scale / s``,
    so that on this batch every output channel has mean 0 and standard deviation ``init_scale``.

    Returns the layer's new output on ``x`` (without a graph): feed it, through the next nonlinearity, to
    the next layer's call, so a network is initialised layer by layer from the bottom up in one pass.
    """
    key, hook = _hook_of(module, name)
    if key is None:
        raise ValueError(f"weight_norm_data_init_: {type(module).__name__}.{name} is not weight-normalised "
                         "(call nn.utils.weight_norm first)")
    bias = module._parameters.get("bias")
    if bias is None:
        raise ValueError(f"weight_norm_data_init_: {type(module).__name__} needs a bias")
    if not init_scale > 0:
        raise ValueError(f"weight_norm_data_init_: init_scale must be > 0, got {init_scale!r}")
    with no_grad():
        y = module(x)
        if y.ndim not in (2, 4) or y.shape[1] != bias.shape[0]:
            raise ValueError(f"weight_norm_data_init_: expected a (N, C) or (N, C, H, W) output with C = "
                             f"{bias.shape[0]}, got {y.shape}")
        axes = (0,) if y.ndim == 2 else (0, 2, 3)
        shape = (1, -1) if y.ndim == 2 else (1, -1, 1, 1)
        t = y.data - bias.data.reshape(shape)                    # the pre-activation without the bias
        m = t.mean(axis=axes)
        s = ((t - m.reshape(shape)) ** 2).mean(axis=axes) ** 0.5
        factor = (init_scale / s).astype(t.dtype)
        g = getattr(module, name + "_g")
        g_axis = [a for a, n in enumerate(g.shape) if n != 1]
        g_shape = [1] * g.ndim
        if g_axis:
            g_shape[g_axis[0]] = -1
        g.data = g.data * factor.reshape(g_shape)
        bias.data = (-m * factor).astype(bias.dtype)
        hook(module, ())
        return Tensor._wrap((t - m.reshape(shape)) * factor.reshape(shape))
