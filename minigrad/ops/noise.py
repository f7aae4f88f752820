"""Gaussian noise drawn and added in one op: ``x + std * z``, ``z ~ N(0, 1)`` (registry entries:
``minigrad/testing/entries_noise.py``).

The noise layers of Improved-GAN's MNIST discriminator add fresh noise to every activation they see, 1.5
million values per training step. Drawing the noise as an array of its own, scaling it and adding it is
three passes over memory and NumPy's ziggurat at about 9 ns per value; :class:`GaussianNoise` does the three
in one pass of the ``noise`` kernels, from minigrad's counter-based noise stream (``minigrad/random.py``,
``minigrad/kernels/noise_reference.py``).

Forward and backward
--------------------
The noise is a constant of the graph: ``y = x + std * z`` with ``z`` fixed by the op's options, so
``dy/dx`` is the identity and ``backward`` returns the upstream gradient itself (the op saves nothing).

Which noise: the options ``key`` and ``counter`` name the position in the noise stream where the draw
begins; the op is a pure function of its input and options (a gradient check evaluating it twice sees the
same noise). :func:`add_gaussian_noise`, what ``F.gaussian_noise`` calls on the CPU, reserves the blocks a
draw needs from minigrad's generator and applies the op there, so every call draws fresh noise and
``mg.manual_seed`` repeats it.
"""
from __future__ import annotations

from .. import kernels
from .. import random as _random
from ..autograd import Function


class GaussianNoise(Function):
    """``x + std * z`` for the noise stream's values at ``counter`` under ``key`` (see the module docstring)."""

    name = "gaussian_noise"

    @staticmethod
    def forward(ctx, x, std=0.0, key=0, counter=0):
        return kernels.for_arrays("noise", x).add_normal(x, std, key, counter)

    @staticmethod
    def backward(ctx, grad):
        return grad


def add_gaussian_noise(x, std):
    """``x + std * N(0, 1)`` for a Tensor ``x``, a fresh draw from minigrad's noise stream (its counter moves on
    past the blocks used)."""
    blocks = kernels.for_arrays("noise", x.data).blocks(x.numel(), x.dtype)
    key, counter = _random.noise_stream(blocks)
    return GaussianNoise.apply(x, std=float(std), key=key, counter=counter)
