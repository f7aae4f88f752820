"""Batch normalisation and dropout.

Batch norm (Ioffe & Szegedy 2015) with PyTorch's semantics
-----------------------------------------------------------
For an input of shape (N, C) or (N, C, *spatial), every channel ``c`` is normalised over all the values it
has in the batch (every dim but dim 1, ``m`` values in all)::

    mean = sum(x) / m,   var = sum((x - mean)^2) / m        (the *biased* variance)
    y = (x - mean) / sqrt(var + eps) * weight + bias

* Training mode normalises with the batch's statistics and, when running statistics are given, updates
  them *in place* (the arrays of the ``running_mean`` / ``running_var`` tensors are written into, as
  PyTorch does): ``new = (1 - momentum) * old + momentum * batch``, where the batch variance stored is the
  *unbiased* one, ``var * m / (m - 1)``. The update is a side effect of the forward pass and is not
  differentiated: the running statistics are plain arrays passed as options, not inputs of the graph.
* Evaluation mode normalises with the running statistics, so the op is an affine map of ``x``.
* With no running statistics at all (``running_mean is None and running_var is None``) the batch's
  statistics are used in both modes. (``torch.nn.functional.batch_norm`` raises in evaluation mode
  instead; minigrad follows ``nn.BatchNorm*(track_running_stats=False)``, which always uses the batch.)
* ``weight`` (gamma) and ``bias`` (beta) are each optional.

Numerics: per-channel statistics are float64 whatever the input's dtype, accumulated in float64 (the NumPy
path: ``mean(..., dtype=float64)`` then the mean of squared deviations from it, a two-pass variance; the
numba path: one pass of shifted sums, see ``minigrad/kernels/norm_cpu.py``), so float32 inputs with a
large mean and a small spread keep their variance. Outputs and gradients are in the input's dtype.

Two implementations compute the same thing: the NumPy code below (array-module generic: it is also the
CuPy path, and the readable reference), and numba kernels that fuse each step into one pass over memory,
used for NumPy arrays unless ``MINIGRAD_KERNELS=reference``.

Dropout
-------
Inverted dropout: each value is kept with probability ``1 - p`` and scaled by ``1 / (1 - p)``, so the
expectation is unchanged and evaluation needs no rescaling. :class:`Dropout` takes its mask as an option
(so a gradient check can hold the mask fixed); ``F.dropout`` draws it with :func:`dropout_mask` from
minigrad's seeded generator.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import kernels, random
from ..autograd import Function
from ..backend import array_module


# ----------------------------------------------------------------------------------------------- dispatch
def use_numba(x) -> bool:
    """Whether the numba kernels handle ``x``: NumPy arrays on the "fast" kernel path (the default; the
    path is ``minigrad.kernels.get_path()``, set by ``$MINIGRAD_KERNELS`` or ``kernels.use(...)``)."""
    return isinstance(x, np.ndarray) and kernels.get_path() == "fast"


def _ncs(a):
    """View an (N, C, *spatial) array as a C-contiguous (N, C, S) array (copying only if it must)."""
    spatial = 1
    for n in a.shape[2:]:
        spatial *= n
    return np.ascontiguousarray(a).reshape(a.shape[0], a.shape[1], spatial)


def _per_channel(v, ndim, dtype):
    """A per-channel vector (C,) shaped (1, C, 1, ...) to broadcast against an ndim-dim input."""
    return v.reshape((1, -1) + (1,) * (ndim - 2)).astype(dtype, copy=False)


def _reduce_axes(ndim):
    return (0,) + tuple(range(2, ndim))


# --------------------------------------------------------------------------------- batch norm pieces
def batch_stats(x):
    """Per-channel mean and biased variance of ``x`` (N, C, ...), as float64 vectors of length C."""
    if use_numba(x):
        from ..kernels import norm_cpu

        return norm_cpu.channel_stats(_ncs(x))
    xp = array_module(x)
    axes = _reduce_axes(x.ndim)
    mean = x.mean(axis=axes, dtype=xp.float64)
    centered = _centered(x, mean)  # two passes: the mean, then the mean square of the deviations from it
    var = (centered * centered).mean(axis=axes, dtype=xp.float64)
    return mean, var


def _centered(x, mean):
    """``x - mean[c]`` in ``x``'s dtype, accurate even when |mean| >> std in float32.

    Rounding the float64 mean to float32 first would shift every deviation by up to eps32 * |mean| (for
    mean 1000 and std 0.01, 0.3% of a standard deviation). So the mean is split in two float32 parts,
    ``hi`` (the mean rounded) and ``lo`` (what rounding lost, rounded): ``x - hi`` is exact for ``x`` near
    ``hi`` (Sterbenz's lemma), and subtracting ``lo`` afterwards leaves a single rounding of the small result.
    For float64 inputs ``lo`` is zero.
    """
    hi = mean.astype(x.dtype)
    lo = (mean - hi).astype(x.dtype)
    return (x - _per_channel(hi, x.ndim, x.dtype)) - _per_channel(lo, x.ndim, x.dtype)


def _normalize(x, mean, scale, shift):
    """``(x - mean) * scale + shift`` per channel, in ``x``'s dtype (``mean``/``scale``/``shift`` float64)."""
    if use_numba(x):
        from ..kernels import norm_cpu

        out = np.empty(x.shape, dtype=x.dtype)
        norm_cpu.normalize(_ncs(x), mean, scale, shift, _ncs(out))
        return out
    c = lambda v: _per_channel(v, x.ndim, x.dtype)  # noqa: E731
    return _centered(x, mean) * c(scale) + c(shift)


def _backward_sums(g, x, mean, invstd):
    """Per-channel ``sum(g)`` and ``sum(g * xhat)`` (float64), xhat = (x - mean) * invstd."""
    if use_numba(x):
        from ..kernels import norm_cpu

        sum_g, sum_gx = norm_cpu.backward_sums(_ncs(g), _ncs(x), mean)
        return sum_g, sum_gx * invstd
    xp = array_module(x)
    axes = _reduce_axes(x.ndim)
    xhat = _centered(x, mean) * _per_channel(invstd, x.ndim, x.dtype)
    return g.sum(axis=axes, dtype=xp.float64), (g * xhat).sum(axis=axes, dtype=xp.float64)


def _training_dx(g, x, mean, invstd, gamma, sum_g, sum_gxhat, count):
    """dx = (gamma / sigma) * (g - mean(g) - xhat * mean(g * xhat)), per channel (derivation in
    :meth:`BatchNorm.backward`)."""
    mean_g, mean_gxhat = sum_g / count, sum_gxhat / count
    if use_numba(x):
        from ..kernels import norm_cpu

        # The same formula with xhat = (x - mean) * invstd folded into one coefficient of (x - mean).
        scale = gamma * invstd
        out = np.empty(x.shape, dtype=x.dtype)
        norm_cpu.backward_dx(_ncs(g), _ncs(x), mean, scale, mean_g, scale * invstd * mean_gxhat, _ncs(out))
        return out
    c = lambda v: _per_channel(v, x.ndim, x.dtype)  # noqa: E731
    xhat = _centered(x, mean) * c(invstd)
    return c(gamma * invstd) * (g - c(mean_g) - xhat * c(mean_gxhat))


class BatchNorm(Function):
    """Batch norm over dim 1. Tensor inputs: ``x`` then, when present, ``weight`` and ``bias``
    (``has_weight`` / ``has_bias`` say which were passed). Options: ``running_mean`` / ``running_var``
    (arrays updated in place in training mode, or None), ``training``, ``momentum``, ``eps``.

    Call it through ``F.batch_norm``, which checks the arguments first.
    """

    name = "batch_norm"

    @staticmethod
    def forward(ctx, x, *params, has_weight=False, has_bias=False, running_mean=None, running_var=None,
                training=False, momentum=0.1, eps=1e-5):
        xp = array_module(x)
        channels = x.shape[1]
        count = x.size // channels if channels else 0  # values per channel
        weight = params[0] if has_weight else None
        bias = params[1 if has_weight else 0] if has_bias else None

        use_batch_stats = training or running_mean is None
        if use_batch_stats:
            mean, var = batch_stats(x)
            if training and running_mean is not None:
                # Side effect, not differentiated: blend the batch's statistics into the running ones, in
                # float64, and store them into the running arrays themselves (their tensors see it).
                unbiased = var * (count / (count - 1))
                running_mean[...] = (1.0 - momentum) * running_mean.astype(xp.float64) + momentum * mean
                running_var[...] = (1.0 - momentum) * running_var.astype(xp.float64) + momentum * unbiased
        else:
            mean, var = running_mean.astype(xp.float64), running_var.astype(xp.float64)

        invstd = 1.0 / xp.sqrt(var + eps)
        gamma = weight.astype(xp.float64) if weight is not None else xp.ones(channels, dtype=xp.float64)
        beta = bias.astype(xp.float64) if bias is not None else xp.zeros(channels, dtype=xp.float64)
        ctx.save_for_backward(x, mean, invstd, gamma)
        ctx.use_batch_stats, ctx.count = use_batch_stats, count
        ctx.has_weight, ctx.has_bias = has_weight, has_bias
        return _normalize(x, mean, gamma * invstd, beta)

    @staticmethod
    def backward(ctx, grad):
        # Per channel, with m values x_i, upstream gradient g_i = dL/dy_i and
        #     mu = (1/m) sum_i x_i,   s2 = (1/m) sum_i (x_i - mu)^2,   sigma = sqrt(s2 + eps),
        #     xhat_i = (x_i - mu) / sigma,   y_i = gamma * xhat_i + beta:
        #
        # * dL/dbeta = sum_i g_i  and  dL/dgamma = sum_i g_i xhat_i   (y is linear in beta and gamma).
        # * Training mode: mu and sigma depend on every x_j. With d(mu)/dx_j = 1/m and
        #   d(sigma)/dx_j = (1 / (2 sigma)) * (2/m) (x_j - mu) = xhat_j / m
        #   (the term through mu vanishes because sum_i (x_i - mu) = 0),
        #       d(xhat_i)/dx_j = (delta_ij - 1/m) / sigma - (x_i - mu) / sigma^2 * xhat_j / m
        #                      = (1 / sigma) * (delta_ij - 1/m - xhat_i xhat_j / m).
        #   Chaining with dL/dxhat_i = gamma g_i:
        #       dL/dx_j = sum_i gamma g_i d(xhat_i)/dx_j
        #               = (gamma / sigma) * (g_j - mean(g) - xhat_j * mean(g * xhat)).
        #   This needs two per-channel reductions, sum(g) and sum(g * xhat) (the same two the parameters'
        #   gradients need), then one elementwise pass.
        # * Evaluation mode (running statistics): mu and sigma are constants, so dL/dx_j = gamma g_j / sigma.
        x, mean, invstd, gamma = ctx.saved_arrays
        need_x, need_params = ctx.needs_input_grad[0], ctx.needs_input_grad[1:]
        dx = None
        sums = None
        if ctx.use_batch_stats or any(need_params):
            sums = _backward_sums(grad, x, mean, invstd)
        if need_x:
            if ctx.use_batch_stats:
                dx = _training_dx(grad, x, mean, invstd, gamma, *sums, ctx.count)
            else:
                dx = grad * _per_channel(gamma * invstd, x.ndim, x.dtype)
        param_grads = []
        if ctx.has_weight:
            param_grads.append(sums[1].astype(x.dtype) if sums is not None else None)
        if ctx.has_bias:
            param_grads.append(sums[0].astype(x.dtype) if sums is not None else None)
        return (dx, *param_grads)


# ------------------------------------------------------------------------------------- argument checks
def _check_channel_vector(op, name, t, channels, x):
    """A per-channel tensor argument: shape (C,), floating, on the input's device."""
    from ..tensor import Tensor

    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor or None, got {type(t).__name__}")
    if t.shape != (channels,):
        raise ValueError(
            f"{op}: {name} has shape {t.shape} but the input of shape {x.shape} has {channels} channels "
            f"(dim 1), so {name} must have shape ({channels},)"
        )
    if t.dtype.kind != "f":
        raise TypeError(f"{op}: {name} must be floating point, got {t.dtype}")
    if t.device != x.device:
        raise ValueError(f"{op}: {name} is on {t.device} but the input is on {x.device}")


def check_batch_norm_args(x, running_mean, running_var, weight, bias, training, momentum, eps):
    """Every check ``F.batch_norm`` makes before running the op, with errors in the caller's terms."""
    from ..tensor import Tensor

    op = "batch_norm"
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: input must be a Tensor, got {type(x).__name__}")
    if x.ndim < 2:
        raise ValueError(f"{op}: input must have shape (N, C) or (N, C, *spatial), got shape {x.shape}")
    if x.dtype.kind != "f":
        raise TypeError(f"{op}: input must be floating point (float32 or float64), got {x.dtype}")
    channels = x.shape[1]
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{op}: running_mean and running_var must both be Tensors or both be None")
    for name, t in (("running_mean", running_mean), ("running_var", running_var)):
        if t is not None:
            _check_channel_vector(op, name, t, channels, x)
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None:
            _check_channel_vector(op, name, t, channels, x)
            if t.dtype != x.dtype:
                raise TypeError(f"{op}: {name} has dtype {t.dtype} but the input has {x.dtype}; they must match")
    if not isinstance(momentum, numbers.Real) or not 0.0 <= float(momentum) <= 1.0:
        raise ValueError(f"{op}: momentum must be a number in [0, 1], got {momentum!r}")
    if not isinstance(eps, numbers.Real) or not float(eps) >= 0.0:
        raise ValueError(f"{op}: eps must be a number >= 0, got {eps!r}")
    count = x.numel() // channels if channels else 0
    if (training or running_mean is None) and count <= 1:
        raise ValueError(
            f"{op}: Expected more than 1 value per channel when training, got input of shape {x.shape} "
            f"({count} value(s) per channel)"
        )


# ------------------------------------------------------------------------------------------------ dropout
def dropout_mask(shape, p, dtype, device):
    """A dropout mask: 0 with probability ``p``, else ``1 / (1 - p)``, drawn from minigrad's generator.

    A value is kept when its uniform draw ``u`` in [0, 1) satisfies ``u >= p``. On the CPU the draws are
    float32 (``Generator.random(dtype=float32)``: half the work of float64, and a resolution of 2**-24
    is far finer than any useful ``p``); the same seed gives the same mask.
    """
    gen = random.generator(device)
    if device == "cpu":
        u = gen.random(shape, dtype=np.float32)
    else:
        u = gen.random_sample(shape, dtype=np.float32)
    if p >= 1.0:
        return array_module(u).zeros(shape, dtype=dtype)
    mask = (u >= np.float32(p)).astype(dtype)
    mask *= np.dtype(dtype).type(1.0 / (1.0 - p))
    return mask


def check_dropout_p(op, p):
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or math.isnan(p) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{op}: dropout probability has to be between 0 and 1, but got {p!r}")
    return float(p)


class Dropout(Function):
    """``x * mask`` with a given mask (0 or 1/(1-p) per value); backward multiplies by the same mask.

    The mask is an option, not an input: it is not differentiated, and a gradient check passes a fixed one.
    """

    name = "dropout"

    @staticmethod
    def forward(ctx, x, mask=None):
        if mask is None or tuple(mask.shape) != tuple(x.shape):
            got = None if mask is None else tuple(mask.shape)
            raise ValueError(f"dropout: the mask must have the input's shape {tuple(x.shape)}, got {got}")
        if array_module(mask) is not array_module(x):
            raise ValueError("dropout: the mask and the input must be on the same device")
        mask = mask.astype(x.dtype, copy=False)
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_arrays
        return grad * mask
