"""``BatchNorm1d`` and ``BatchNorm2d``: batch norm layers with PyTorch's parameters, buffers and modes.

State, named as in PyTorch so ``state_dict`` keys match: parameters ``weight`` (ones) and ``bias`` (zeros)
when ``affine`` (``scale=False``, a minigrad extension, keeps only the shift ``bias``: the batch norm
"without a learned scale" of Improved-GAN's generators); buffers ``running_mean`` (zeros), ``running_var`` (ones) and ``num_batches_tracked`` (an
int64 0-d tensor) when ``track_running_stats``.

* Training mode normalises with the batch's statistics and updates the running ones (and counts the batch
  in ``num_batches_tracked``).
* Evaluation mode normalises with the running statistics, which stay untouched.
* ``track_running_stats=False`` keeps no running statistics: the batch's are used in both modes.
* ``momentum=None`` makes the running statistics a cumulative average over all batches seen
  (momentum ``1 / num_batches_tracked``), as in PyTorch.

The computation itself, with its backward pass, is ``F.batch_norm`` (``minigrad/ops/norm.py``).
"""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..creation import ones, zeros
from ..tensor import Tensor
from .module import Module, Parameter


class _BatchNorm(Module):
    _expected_ndims: tuple = ()
    _expected_text: str = ""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 dtype=np.float32, device="cpu", scale=True):
        super().__init__()
        name = type(self).__name__
        if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) or num_features < 1:
            raise ValueError(f"{name}: num_features must be a positive integer, got {num_features!r}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{name}: momentum must be in [0, 1] or None, got {momentum!r}")
        if not eps >= 0:
            raise ValueError(f"{name}: eps must be >= 0, got {eps!r}")
        self.num_features = int(num_features)
        self.eps, self.momentum = eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.scale = bool(scale) and bool(affine)
        if affine:
            self.weight = Parameter(ones(self.num_features, dtype=dtype, device=device)) if self.scale else None
            self.bias = Parameter(zeros(self.num_features, dtype=dtype, device=device))
        else:
            self.weight = None
            self.bias = None
        if track_running_stats:
            self.register_buffer("running_mean", zeros(self.num_features, dtype=dtype, device=device))
            self.register_buffer("running_var", ones(self.num_features, dtype=dtype, device=device))
            self.register_buffer("num_batches_tracked", Tensor(np.array(0, dtype=np.int64), device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self):
        """Running mean 0, running variance 1, no batches tracked (in place)."""
        if self.track_running_stats:
            self.running_mean.data[...] = 0
            self.running_var.data[...] = 1
            self.num_batches_tracked.data[...] = 0

    def reset_parameters(self):
        self.reset_running_stats()
        if self.affine:
            if self.weight is not None:
                self.weight.data[...] = 1
            self.bias.data[...] = 0

    def _check_input(self, x):
        name = type(self).__name__
        if not isinstance(x, Tensor):
            raise TypeError(f"{name}: input must be a Tensor, got {type(x).__name__}")
        if x.ndim not in self._expected_ndims:
            raise ValueError(f"{name}: expected {self._expected_text} input, got a {x.ndim}-D input of shape {x.shape}")
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"{name}: input of shape {x.shape} has {x.shape[1]} channels (dim 1) but the layer was made "
                f"for num_features={self.num_features}"
            )

    def forward(self, x):
        self._check_input(x)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data += 1  # in place, as PyTorch
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked.item())
        # PyTorch's rule: batch statistics in training mode, or whenever there are no running statistics;
        # the running statistics are passed (and so updated) only when they are used or being tracked.
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        track = not self.training or self.track_running_stats
        return F.batch_norm(
            x,
            self.running_mean if track else None,
            self.running_var if track else None,
            self.weight, self.bias, training=use_batch, momentum=factor, eps=self.eps)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}" + ("" if self.scale or not self.affine
                                                                     else ", scale=False"))


class BatchNorm1d(_BatchNorm):
    """Batch norm over the channels of an (N, C) or (N, C, L) input."""

    _expected_ndims = (2, 3)
    _expected_text = "2D (N, C) or 3D (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch norm over the channels of an (N, C, H, W) input."""

    _expected_ndims = (4,)
    _expected_text = "4D (N, C, H, W)"
