"""Weight initialisation, drawing from minigrad's seeded generator. The defaults of the layers follow
PyTorch: ``kaiming_uniform_(w, a=sqrt(5))`` for weights, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for biases."""
from __future__ import annotations

import math

from .. import random


def _fans(shape):
    """(fan_in, fan_out) as PyTorch computes them: dim 1 and dim 0, times the kernel's size."""
    if len(shape) < 2:
        raise ValueError(f"init: fan in/out needs a tensor with at least 2 dims, got shape {tuple(shape)}")
    receptive = 1
    for n in shape[2:]:
        receptive *= n
    return shape[1] * receptive, shape[0] * receptive


def uniform_(t, a=0.0, b=1.0):
    t.data = random.uniform(t.shape, a, b, t.dtype, t.device)
    return t


def normal_(t, mean=0.0, std=1.0):
    t.data = (random.standard_normal(t.shape, t.dtype, t.device) * std + mean).astype(t.dtype)
    return t


def zeros_(t):
    t.data = t.data * 0
    return t


def ones_(t):
    t.data = t.data * 0 + 1
    return t


def kaiming_uniform_(t, a=0.0, fan_in=None):
    """U(-bound, bound) with bound = gain * sqrt(3 / fan_in), gain = sqrt(2 / (1 + a^2)) (leaky ReLU's)."""
    fan_in = _fans(t.shape)[0] if fan_in is None else fan_in
    gain = math.sqrt(2.0 / (1 + a * a))
    bound = gain * math.sqrt(3.0 / fan_in)
    return uniform_(t, -bound, bound)


def xavier_uniform_(t, gain=1.0):
    fan_in, fan_out = _fans(t.shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(t, -bound, bound)


def default_bias_(bias, fan_in):
    """PyTorch's default bias initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return uniform_(bias, -bound, bound)
