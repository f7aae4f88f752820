"""The user-facing functions, named as in ``torch.nn.functional``: ``import minigrad.functional as F``.

Each function validates its arguments (so a mistake is reported in the caller's terms) and applies an
op from ``minigrad/ops``.
"""
from __future__ import annotations

import functools
import numbers

import numpy as np

from . import random as _random
from .ops import conv as _conv
from .ops import dropout as _dropout
from .ops import elementwise as _ew
from .ops import loss as _loss
from .ops import matmul as _mm
from .ops import norm as _norm
from .ops import noise as _noise
from .ops import shape as _shape
from .ops import weight_norm as _weight_norm
from .backend import device_of, is_array, module_for
from .tensor import Tensor

__all__ = [
    "relu", "leaky_relu", "sigmoid", "tanh", "softplus",
    "logsumexp", "log_softmax", "softmax",
    "linear", "pad",
    "cross_entropy", "binary_cross_entropy_with_logits",
    "batch_norm", "dropout", "gaussian_noise",
    "conv2d", "conv_transpose2d",
    "weight_norm",
]


@functools.lru_cache(maxsize=32)
def _constant(xp, shape, value, dtype):
    """``full(shape, value)`` made once per array module, shape, value and dtype, read-only where the array
    type has the flag: a number target (the 0.9 and 0 of a GAN's losses) is then the same array every step,
    not a kernel each time. Nothing writes into it: it is a constant input of the graph."""
    a = xp.full(shape, value, dtype=dtype)
    if hasattr(a.flags, "writeable"):
        a.flags.writeable = False
    return a


def _tensor(x, op, arg="input"):
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: {arg} must be a Tensor, got {type(x).__name__}")
    return x


def relu(x):
    return _ew.ReLU.apply(_tensor(x, "relu"))


def leaky_relu(x, negative_slope=0.01):
    return _ew.LeakyReLU.apply(_tensor(x, "leaky_relu"), negative_slope=float(negative_slope))


def sigmoid(x):
    return _ew.Sigmoid.apply(_tensor(x, "sigmoid"))


def tanh(x):
    return _ew.Tanh.apply(_tensor(x, "tanh"))


def softplus(x):
    return _ew.Softplus.apply(_tensor(x, "softplus"))


def logsumexp(x, dim, keepdim=False):
    """log(sum(exp(x))) over ``dim``, stable for large |x| and for all -inf rows (see ops/reduce.py)."""
    return _tensor(x, "logsumexp").logsumexp(dim, keepdim=keepdim)


def log_softmax(x, dim):
    return _tensor(x, "log_softmax").log_softmax(dim)


def softmax(x, dim):
    return _tensor(x, "softmax").softmax(dim)


def linear(x, weight, bias=None):
    """y = x @ weight.T + bias, with weight of shape (out_features, in_features)."""
    args = (_tensor(x, "linear"), _tensor(weight, "linear", "weight"))
    if bias is not None:
        args += (_tensor(bias, "linear", "bias"),)
    return _mm.Linear.apply(*args)


def pad(x, pad, value=0.0):
    """Constant padding, ``pad = (left, right, top, bottom, ...)`` starting from the last dim, as
    ``torch.nn.functional.pad`` with ``mode="constant"`` (the only mode)."""
    _tensor(x, "pad")
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(f"pad: pad must have an even length of at most 2 * {x.ndim}, got {pad}")
    if any(p < 0 for p in pad):
        raise ValueError(f"pad: negative padding is not supported, got {pad}")
    return _shape.Pad.apply(x, pad=pad, value=value)


def cross_entropy(logits, target, reduction="mean", ignore_index=-100, sample_weight=None):
    """Cross-entropy between (N, C) logits and integer targets (N,), as ``torch.nn.functional.cross_entropy``.

    ``sample_weight`` (not in PyTorch) weights each example's loss, e.g. a 0/1 mask that keeps only the
    labeled examples of a batch; with ``reduction="mean"`` the result is sum(w * loss) / sum(w), and 0
    when every weight is 0. ``ignore_index`` works as in PyTorch.
    """
    _loss._check_reduction("cross_entropy", reduction)
    _tensor(logits, "cross_entropy", "logits")
    if not isinstance(target, Tensor):
        if not is_array(target) or device_of(target) == "cpu":
            # host targets are checked here, on the host, before they are copied to the logits' device
            host = np.asarray(target)
            if logits.ndim == 2:
                _loss.check_target_shape(host, logits.shape[0])
                _loss.check_target_values(host, *logits.shape, ignore_index)
            target = host
        target = Tensor(target, device=logits.device)
    args = (logits, target)
    if sample_weight is not None:
        sw = sample_weight if isinstance(sample_weight, Tensor) else Tensor(sample_weight, device=logits.device)
        args += (sw.to(logits.dtype),)
    return _loss.CrossEntropy.apply(*args, reduction=reduction, ignore_index=ignore_index)


def binary_cross_entropy_with_logits(logits, target, reduction="mean"):
    """Binary cross-entropy on logits, stable for logits of +-1e4. ``target`` may be a Tensor or a number
    (a number fills the logits' shape, e.g. 0.9 for one-sided label smoothing)."""
    _loss._check_reduction("binary_cross_entropy_with_logits", reduction)
    _tensor(logits, "binary_cross_entropy_with_logits", "logits")
    if isinstance(target, numbers.Real):
        target = Tensor._wrap(_constant(module_for(logits.device), tuple(logits.shape), float(target), logits.dtype))
    target = target if isinstance(target, Tensor) else Tensor(target, device=logits.device)
    if target.dtype != logits.dtype:
        target = target.to(logits.dtype)
    return _loss.BCEWithLogits.apply(logits, target, reduction=reduction)


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Batch norm over dim 1 of an (N, C) or (N, C, *spatial) input, as ``torch.nn.functional.batch_norm``.

    Training mode normalises with the batch's mean and biased variance and updates ``running_mean`` /
    ``running_var`` in place (``new = (1 - momentum) * old + momentum * batch``, unbiased variance);
    evaluation mode uses the running statistics. With both running statistics None the batch's are used in
    either mode (PyTorch's functional form raises in evaluation mode). Details: ``minigrad/ops/norm.py``.
    """
    _norm.check_batch_norm_args(x, running_mean, running_var, weight, bias, training, momentum, eps)
    params = tuple(t for t in (weight, bias) if t is not None)
    return _norm.BatchNorm.apply(
        x, *params, has_weight=weight is not None, has_bias=bias is not None,
        running_mean=None if running_mean is None else running_mean.data,
        running_var=None if running_var is None else running_var.data,
        training=bool(training), momentum=float(momentum), eps=float(eps))


def dropout(x, p=0.5, training=True):
    """Inverted dropout, as ``torch.nn.functional.dropout``: zero each value with probability ``p`` and scale
    the rest by 1 / (1 - p). Returns ``x`` itself in evaluation mode or when ``p == 0``; all zeros when
    ``p == 1``. The decisions come from minigrad's seeded counter-based Philox stream (``mg.manual_seed``),
    decided and applied in one pass each way and never kept as a mask (``minigrad/ops/dropout.py``); the CPU
    and the GPU make the same decisions for the same seed."""
    _tensor(x, "dropout")
    p = _dropout.check_dropout_p("dropout", p, x)
    if not training or p == 0.0:
        return x
    if x.dtype.kind != "f":
        raise TypeError(f"dropout: input must be floating point, got {x.dtype} of shape {tuple(x.shape)}")
    return _dropout.philox_dropout(x, p)


def gaussian_noise(x, std, training=True):
    """``x + std * N(0, 1)`` while training, ``x`` itself otherwise (or when ``std == 0``).

    The noise layer of Improved-GAN's MNIST discriminator (not a PyTorch function). The noise is drawn
    from minigrad's seeded generators (``mg.manual_seed``) in the input's dtype, a fresh draw on every
    call; the gradient is the identity (the noise is a constant of the graph). On the CPU the noise comes
    from the counter-based noise stream, drawn and added in one pass (``minigrad/ops/noise.py``); on the
    GPU it is drawn from CuPy's generator and added.
    """
    _tensor(x, "gaussian_noise")
    std = _dropout.check_noise_std("gaussian_noise", std)
    if not training or std == 0:
        return x
    if x.dtype.kind != "f":
        raise TypeError(f"gaussian_noise: input must be floating point, got {x.dtype}")
    if x.device == "cpu" and x.dtype in (np.float32, np.float64):
        return _noise.add_gaussian_noise(x, std)
    return x + Tensor._wrap(_random.normal_noise(x.shape, std, x.dtype, x.device))


def weight_norm(v, g, dim=0, eps=0.0):
    """The weight-normalised weight ``w = g * v / ||v||`` (Salimans & Kingma 2016), as PyTorch's
    ``torch._weight_norm(v, g, dim)``: the norm is taken over every dimension except ``dim``, so each
    slice ``v[..., i, ...]`` along ``dim`` gets the length ``g[i]``. ``g`` has ``v``'s number of
    dimensions with size 1 everywhere but ``dim`` (PyTorch's ``weight_g`` shape). ``dim=None`` takes one
    norm over the whole tensor (``g`` is then a scalar-shaped ``(1,) * v.ndim``).

    ``eps`` (not in PyTorch, default 0) goes inside the square root, ``sqrt(sum v^2 + eps)``, as in
    Improved-GAN's ``l2normalize``. One op with its backward written out: ``minigrad/ops/weight_norm.py``.
    """
    _tensor(v, "weight_norm", "v")
    _tensor(g, "weight_norm", "g")
    if v.ndim == 0:
        raise ValueError("weight_norm: v must have at least one dimension, got a 0-d tensor")
    if dim is not None and not -v.ndim <= dim < v.ndim:
        raise ValueError(f"weight_norm: dim {dim} is out of range for v of shape {v.shape}")
    axes = tuple(range(v.ndim)) if dim is None else tuple(a for a in range(v.ndim) if a != dim % v.ndim)
    expected = tuple(1 if a in axes else n for a, n in enumerate(v.shape))
    if g.shape != expected:
        raise ValueError(f"weight_norm: g must have shape {expected} for v of shape {v.shape} and dim={dim}, "
                         f"got {g.shape}")
    if not eps >= 0:
        raise ValueError(f"weight_norm: eps must be >= 0, got {eps!r}")
    if v.dtype.kind != "f" or g.dtype.kind != "f":
        raise TypeError(f"weight_norm: v and g must be floating point, got {v.dtype} and {g.dtype}")
    if v.dtype != g.dtype:
        common = np.result_type(v.dtype, g.dtype)
        v, g = v.to(common), g.to(common)
    return _weight_norm.WeightNorm.apply(v, g, dim=dim, eps=float(eps))


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """2-D convolution of an (N, Cin, H, W) batch with ``weight`` (Cout, Cin, kH, kW), as
    ``torch.nn.functional.conv2d`` (a cross-correlation; no dilation or groups). ``stride`` and ``padding``
    are ints or (height, width) pairs. How it is computed: ``minigrad/ops/conv.py``."""
    return _conv.conv2d(x, weight, bias, stride=stride, padding=padding)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0):
    """Transposed 2-D convolution of an (N, Cin, H, W) batch with ``weight`` (Cin, Cout, kH, kW), as
    ``torch.nn.functional.conv_transpose2d`` (no dilation or groups): the adjoint of conv2d, with output
    size (H - 1) * stride - 2 * padding + kH + output_padding and ``output_padding < stride``."""
    return _conv.conv_transpose2d(x, weight, bias, stride=stride, padding=padding, output_padding=output_padding)
