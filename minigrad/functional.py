"""The user-facing functions, named as in ``torch.nn.functional``: ``import minigrad.functional as F``.

Each function validates its arguments (so a mistake is reported in the caller's terms) and applies an
op from ``minigrad/ops``.
"""
from __future__ import annotations

import numbers

import numpy as np

from .ops import conv as _conv
from .ops import elementwise as _ew
from .ops import loss as _loss
from .ops import matmul as _mm
from .ops import norm as _norm
from .ops import shape as _shape
from .backend import module_for
from .tensor import Tensor

__all__ = [
    "relu", "leaky_relu", "sigmoid", "tanh", "softplus",
    "logsumexp", "log_softmax", "softmax",
    "linear", "pad",
    "cross_entropy", "binary_cross_entropy_with_logits",
    "batch_norm", "dropout",
    "conv2d", "conv_transpose2d",
]


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
    target = target if isinstance(target, Tensor) else Tensor(np.asarray(target), device=logits.device)
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
        target = Tensor._wrap(module_for(logits.device).full(logits.shape, target, dtype=logits.dtype))
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
    ``p == 1``. The mask comes from minigrad's seeded generator (``mg.manual_seed``)."""
    _tensor(x, "dropout")
    p = _norm.check_dropout_p("dropout", p)
    if not training or p == 0.0:
        return x
    if x.dtype.kind != "f":
        raise TypeError(f"dropout: input must be floating point, got {x.dtype}")
    return _norm.Dropout.apply(x, mask=_norm.dropout_mask(x.shape, p, x.dtype, x.device))


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
