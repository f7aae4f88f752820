"""Dropout and Gaussian noise: the regularising noise of training (registry entries:
``minigrad/testing/entries_dropout.py``).

Dropout
-------
Inverted dropout: each value is kept with probability ``1 - p`` and scaled by ``1 / (1 - p)``, so the
expectation is unchanged and evaluation needs no rescaling. The result is ``x * m`` with ``m`` the scale
where a value is kept and 0 where it is dropped, and the gradient is ``grad * m``: the same ``m``.

:class:`PhiloxDropout` takes its decisions from minigrad's counter-based Philox stream
(``minigrad/random.py``; the layout and the rule are in ``kernels/dropout_reference.py``): value ``i`` is
kept when its 32-bit word is ``>= t``, with the threshold :func:`keep_threshold` ``t = round(p * 2**32)``
(so the keep probability is exactly ``1 - t / 2**32``). :func:`philox_dropout`, what ``F.dropout`` calls,
reserves ``ceil(n / 4)`` blocks of the stream and applies the op at their ``(key, counter)``; the op keeps
only those two numbers, the threshold and the scale for its backward, which computes the same decisions
again from them (one pass of the ``dropout`` kernels each way, no mask array in memory: a numba
pass on the CPU, one CUDA kernel on the GPU, so both devices make the same decisions for the same seed).
Being a function of its input and options, the op is gradient-checked like any other.

:class:`Dropout` is the same product with a mask given as an option (``x * mask``, gradient
``grad * mask``): the form a gradient check with a fixed mask, or a user with a mask of their own, uses.

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

#: the number of possible 32-bit words, which the threshold counts in
WORD_VALUES = 2**32


def keep_threshold(p) -> int:
    """The threshold ``t`` for drop probability ``p``: ``round(p * 2**32)`` (to nearest; ``p * 2**32`` is
    exact in float64), clamped to [0, 2**32]. A value is kept when its word is ``>= t``: with probability
    exactly ``1 - t / 2**32``, within ``2**-33`` of ``1 - p``; ``p = 0`` keeps all, ``p = 1`` drops all."""
    return min(max(round(float(p) * WORD_VALUES), 0), WORD_VALUES)


def keep_scale(p) -> float:
    """What a kept value is multiplied by: ``1 / (1 - p)`` (0 for ``p = 1``, where nothing is kept)."""
    return 0.0 if p >= 1.0 else 1.0 / (1.0 - p)


class PhiloxDropout(Function):
    """``x * m`` with ``m = 1 / (1 - p)`` where the Philox stream at ``counter`` under ``key`` keeps a value
    and 0 where it drops it; backward: ``grad * m``, the decisions computed again (see the module
    docstring). ``key`` and ``counter`` are options, so the op is a fixed function of ``x``."""

    name = "philox_dropout"

    @staticmethod
    def forward(ctx, x, p=0.5, key=0, counter=0):
        p = check_dropout_p("philox_dropout", p, x)
        if x.dtype.kind != "f":
            raise TypeError(f"philox_dropout: input must be floating point, got {x.dtype} of shape "
                            f"{tuple(x.shape)}")
        ctx.stream = (keep_threshold(p), keep_scale(p), _check_word("key", key), _check_word("counter", counter))
        return kernels.for_arrays("dropout", x).philox_dropout(x, *ctx.stream)

    @staticmethod
    def backward(ctx, grad):
        return kernels.for_arrays("dropout", grad).philox_dropout(grad, *ctx.stream)


def _check_word(name, value):
    """A key or counter of the stream as an int, or a ValueError: an integer in [0, 2**64)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or not 0 <= value < 2**64:
        raise ValueError(f"philox_dropout: {name} must be an integer in [0, 2**64), got {value!r}")
    return int(value)


def philox_dropout(x, p):
    """Dropout of a Tensor ``x`` with probability ``p``, a fresh draw from minigrad's Philox stream (its
    counter moves on past the blocks used)."""
    blocks = kernels.for_arrays("dropout", x.data).blocks(x.numel())
    key, counter = random.noise_stream(blocks)
    return PhiloxDropout.apply(x, p=p, key=key, counter=counter)


def check_dropout_p(op, p, x=None):
    """``p`` as a float, or a ValueError naming ``op`` (and the input's shape when ``x`` is given): a real
    number in [0, 1], not a bool or NaN."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or math.isnan(p) or not 0.0 <= p <= 1.0:
        shape = "" if x is None else f" (for an input of shape {tuple(x.shape)})"
        raise ValueError(f"{op}: the dropout probability p must be between 0 and 1, but got {p!r}{shape}")
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
