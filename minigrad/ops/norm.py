"""Batch normalisation (registry entries: ``minigrad/testing/entries_norm.py``).

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

The per-channel passes are the ``norm`` kernel family (``kernels.for_arrays("norm", x)``): the array code
of ``minigrad/kernels/norm_reference.py`` (NumPy or CuPy: the readable reference), and numba kernels that
fuse each pass into one sweep over memory (``kernels/norm_cpu.py``), used for NumPy arrays unless
``MINIGRAD_KERNELS=reference``. This module holds the math that combines them. On the GPU the module the
dispatch picks, ``kernels/norm_cuda.py``, fuses more (``FUSED``): each direction is one kernel with a block
of threads per channel, the per-channel reductions with everything done per channel (statistics, running
update, coefficients, parameter gradients) and then the elementwise pass, the same formulas as here; the op
hands it the whole pass.
"""
from __future__ import annotations

import numbers

from .. import kernels
from ..autograd import Function
from ..backend import array_module
from ..tensor import Tensor


def _per_channel(v, ndim, dtype):
    """A per-channel vector (C,) shaped (1, C, 1, ...) to broadcast against an ndim-dim input."""
    return v.reshape((1, -1) + (1,) * (ndim - 2)).astype(dtype, copy=False)


class BatchNorm(Function):
    """Batch norm over dim 1. Tensor inputs: ``x`` then, when present, ``weight`` and ``bias``
    (``has_weight`` / ``has_bias`` say which were passed). Options: ``running_mean`` / ``running_var``
    (arrays updated in place in training mode, or None), ``training``, ``momentum``, ``eps``.

    Call it through ``F.batch_norm``, which checks the arguments first.
    """

    name = "batch_norm"
    adds_into_pending = True    # the CUDA kernel adds the parameters' gradients into earlier passes' sums

    @staticmethod
    def forward(ctx, x, *params, has_weight=False, has_bias=False, running_mean=None, running_var=None,
                training=False, momentum=0.1, eps=1e-5):
        xp = array_module(x)
        channels = x.shape[1]
        count = x.size // channels if channels else 0  # values per channel
        weight = params[0] if has_weight else None
        bias = params[1 if has_weight else 0] if has_bias else None

        k = kernels.for_arrays("norm", x)
        use_batch_stats = training or running_mean is None
        ctx.use_batch_stats, ctx.count = use_batch_stats, count
        ctx.has_weight, ctx.has_bias = has_weight, has_bias
        ctx.fused = getattr(k, "FUSED", False)
        if ctx.fused:
            # the whole pass in one kernel (kernels/norm_cuda.py): statistics, running update and
            # coefficients per channel, then the normalisation
            y, coef, x_buffer, ctx.x_layout = k.forward(
                x, weight, bias, running_mean, running_var, batch_stats=use_batch_stats,
                update_running=training and running_mean is not None, momentum=momentum, eps=eps)
            ctx.kernel = k
            ctx.save_for_backward(x_buffer, coef)
            return y
        if use_batch_stats:
            mean, var = k.channel_stats(x)
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
        return k.normalize(x, mean, gamma * invstd, beta)

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
        need_x, need_params = ctx.needs_input_grad[0], ctx.needs_input_grad[1:]
        if ctx.fused:   # the same formulas in one kernel (kernels/norm_cuda.py)
            x_buffer, coef = ctx.saved_arrays
            pending = iter(getattr(ctx, "pending", None) or (None,) * len(ctx.needs_input_grad))
            next(pending)                                                 # x's
            into = (next(pending) if ctx.has_weight else None, next(pending) if ctx.has_bias else None)
            dx, dgamma, dbeta = ctx.kernel.backward(grad, x_buffer, ctx.x_layout, coef, batch_stats=ctx.use_batch_stats,
                                                    need_x=need_x, need_params=any(need_params), into=into)
            return (dx,) + ((dgamma,) if ctx.has_weight else ()) + ((dbeta,) if ctx.has_bias else ())
        x, mean, invstd, gamma = ctx.saved_arrays
        k = kernels.for_arrays("norm", grad, x)
        dx = None
        sums = None
        if ctx.use_batch_stats or any(need_params):
            sums = k.backward_sums(grad, x, mean, invstd)             # sum(g), sum(g * xhat)
        if need_x:
            if ctx.use_batch_stats:
                sum_g, sum_gxhat = sums
                dx = k.training_dx(grad, x, mean, invstd, gamma, sum_g / ctx.count, sum_gxhat / ctx.count)
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
