"""``Dropout``: inverted dropout in training mode, the identity in evaluation mode (see ``F.dropout``)."""
from __future__ import annotations

from .. import functional as F
from ..ops.norm import check_dropout_p
from .module import Module


class Dropout(Module):
    """Zero each value with probability ``p`` while training and scale the kept ones by 1 / (1 - p).

    The mask is drawn from minigrad's seeded generator on every call; in evaluation mode (``.eval()``) the
    input is returned unchanged.
    """

    def __init__(self, p=0.5):
        super().__init__()
        self.p = check_dropout_p("Dropout", p)

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"
