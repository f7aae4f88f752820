"""Regularising noise layers, active in training mode only: ``Dropout`` (see ``F.dropout``) and
``GaussianNoise`` (see ``F.gaussian_noise``)."""
from __future__ import annotations

from .. import functional as F
from ..ops.dropout import check_dropout_p, check_noise_std
from .module import Module


class Dropout(Module):
    """Zero each value with probability ``p`` while training and scale the kept ones by 1 / (1 - p).

    The decisions are new on every call, from minigrad's seeded generators (``F.dropout``: on the CPU its
    counter-based stream, no mask kept); in evaluation mode (``.eval()``) the input is returned unchanged.
    """

    def __init__(self, p=0.5):
        super().__init__()
        self.p = check_dropout_p("Dropout", p)

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class GaussianNoise(Module):
    """Add ``std * N(0, 1)`` noise while training; the identity in evaluation mode.

    Not a PyTorch layer: Improved-GAN's MNIST discriminator puts one after its input (std 0.3) and after
    each hidden layer (std 0.5). The noise comes from minigrad's seeded generator, a fresh draw per call.
    """

    def __init__(self, std):
        super().__init__()
        self.std = check_noise_std("GaussianNoise", std)

    def forward(self, x):
        return F.gaussian_noise(x, self.std, self.training)

    def extra_repr(self):
        return f"std={self.std}"
