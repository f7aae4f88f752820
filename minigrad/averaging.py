"""``AveragedModel``: a running average of a model's parameters, for evaluation (the role of PyTorch's
``torch.optim.swa_utils.AveragedModel`` with an exponential-moving-average rule).

    ema = AveragedModel(model, decay=0.9999)
    for batch in data:
        ...; opt.step()
        ema.update_parameters(model)      # a <- a + (1 - decay) (p - a), for every trained parameter
    evaluate(ema.module)

``ema.module`` is a deep copy of the model whose trained parameters hold the averages. What is averaged
and what is copied (choices made here, where PyTorch leaves them to the user):

* Parameters with ``requires_grad=True`` are averaged. Parameters that are not trained (for instance the
  hidden weight-norm scales of Improved-GAN's MNIST discriminator, fixed by the data-dependent
  initialisation) and buffers (batch norm's running statistics) are *copied* from the model at every
  update: averaging a constant would only delay it, and running statistics are averages already. They are
  the *raw* weights' statistics, though: for a model with batch norm, recompute them for the averaged
  weights before evaluating, as PyTorch advises with ``update_bn`` (ssgan does, ``ssgan/models.py``,
  ``recalibrated``).
* ``start="copy"`` (PyTorch's behaviour): the first update copies the parameters; later updates average.
  ``start="zeros"``: the averages start at zero and every update, the first included, applies the rule
  (Improved-GAN's ``disc_param_avg``, which begins at ``0 * p``); early averages are then pulled toward
  zero, by the factor ``1 - decay ** n`` after ``n`` updates.

The rule is applied to all the averaged parameters at once by the ``average`` kernels (one numba pass per
parameter on the CPU, ``minigrad/kernels/average_cpu.py``; the NumPy expression of
``average_reference.py`` elsewhere), in each parameter's dtype; each new average is a new array.

``state_dict()`` holds ``module.<name>`` for every entry of the model's state and ``n_averaged`` (the
updates so far), as PyTorch names them, so a checkpoint saves and restores the average with the model.
"""
from __future__ import annotations

import copy

import numpy as np

from . import kernels
from .autograd import no_grad
from .nn.module import Module
from .tensor import Tensor

STARTS = ("copy", "zeros")


class AveragedModel(Module):
    """An exponential moving average of ``model``'s trained parameters (see the module docstring)."""

    def __init__(self, model: Module, decay: float = 0.999, start: str = "copy"):
        super().__init__()
        if not isinstance(model, Module):
            raise TypeError(f"AveragedModel: model must be a Module, got {type(model).__name__}")
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 <= float(decay) < 1.0:
            raise ValueError(f"AveragedModel: decay must be a number in [0, 1), got {decay!r}")
        if start not in STARTS:
            raise ValueError(f"AveragedModel: start must be one of {STARTS}, got {start!r}")
        self.decay, self.start = float(decay), start
        self.module = copy.deepcopy(model)
        for p in self.module.parameters():
            p.grad = None
        if start == "zeros":
            for p in self._averaged(self.module):
                p.data = p.data * 0
        self.register_buffer("n_averaged", Tensor(np.array(0, dtype=np.int64), device=_device_of(model)))

    @staticmethod
    def _averaged(model):
        return [p for p in model.parameters() if p.requires_grad]

    def update_parameters(self, model: Module) -> None:
        """One averaging step toward ``model``'s current parameters (which must be laid out as the copy's)."""
        own = dict(self.module._named_state())
        theirs = dict(model._named_state())
        if own.keys() != theirs.keys():
            raise ValueError("AveragedModel.update_parameters: the model's parameters and buffers do not match "
                             "the averaged copy's")
        trained = {id(p) for p in self._averaged(model)}
        first = self.start == "copy" and int(self.n_averaged.item()) == 0
        averaged = []
        with no_grad():
            for name, mine in own.items():
                src = theirs[name]
                if id(src) in trained and not first:
                    averaged.append((mine, src))
                else:
                    mine.data = src.data.copy()
            if averaged:
                # every average in one call of the ``average`` kernels: one pass over each parameter
                current, targets = [m.data for m, _ in averaged], [s.data for _, s in averaged]
                new = kernels.for_arrays("average", current, targets).average_update(current, targets,
                                                                                     1.0 - self.decay)
                for (mine, _), data in zip(averaged, new):
                    mine.data = data
        self.n_averaged.data += 1  # in place: a 0-d array stays an array

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def extra_repr(self):
        return f"decay={self.decay}, start={self.start!r}"


def _device_of(model):
    for t in model.parameters():
        return t.device
    return "cpu"
