"""Dropout and Gaussian noise: the regularising noise of training (registry entries:
``minigrad/testing/entries_dropout.py``).

Dropout
-------
Inverted dropout: each value is kept with probability ``1 - p`` and scaled by ``1 / (1 - p)``, so the
expectation is unchanged and evaluation needs no rescaling. :class:`Dropout` takes its mask as an option
(so a gradient check can hold the mask fixed); ``F.dropout`` draws it with :func:`dropout_mask` from
minigrad's seeded generator.

Gaussian noise
--------------
``x + std * N(0, 1)`` while training (not a PyTorch function: the noise layers of Improved-GAN's MNIST
discriminator). On the CPU it is one op of its own, drawn and added in one pass: ``minigrad/ops/noise.py``;
on the GPU the noise is drawn by :func:`minigrad.random.normal_noise` and added by the ``Add`` op. Either way
it is a constant of the graph and the gradient is the identity; :func:`check_noise_std` validates ``std``.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import kernels, random
from ..autograd import Function
from ..backend import array_module


def dropout_mask(shape, p, dtype, device):
    """A dropout mask: 0 with probability ``p``, else ``1 / (1 - p)``, drawn from minigrad's generator.

    A value is kept when its uniform draw ``u`` in [0, 1) satisfies ``u >= p``. The draws are float32
    (``Generator.random(dtype=float32)`` on the CPU: half the work of float64, and a resolution of 2**-24
    is far finer than any useful ``p``); the same seed gives the same mask. Turning the draws into the mask
    is the ``dropout`` kernel family (``kernels/dropout_reference.py``; one kernel on the GPU,
    ``kernels/dropout_cuda.py``).
    """
    gen = random.generator(device)
    if device == "cpu":
        u = gen.random(shape, dtype=np.float32)
    else:
        u = gen.random_sample(shape, dtype=np.float32)
    return kernels.for_arrays("dropout", u).dropout_mask(u, p, dtype)


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


def check_noise_std(op, std):
    """``std`` as a float, or a ValueError naming ``op``: a finite real number >= 0 (not a bool)."""
    if isinstance(std, bool) or not isinstance(std, numbers.Real) or not 0.0 <= float(std) < math.inf:
        raise ValueError(f"{op}: std must be a finite number >= 0, got {std!r}")
    return float(std)
