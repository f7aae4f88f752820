"""Registry entries for ``minigrad/ops/dropout.py``: dropout and Gaussian noise. See
:mod:`minigrad.testing.registry` for the fields.

Dropout has two entries: the op with a fixed mask (``ops.dropout.Dropout`` takes the mask as an option,
which is how a gradient check holds it still), and ``F.dropout`` on the settings where it is
deterministic on every device (``p`` of 0 or 1, evaluation mode). Its random behaviour (rate,
expectation, seeding) is tested in tests/test_dropout.py.

Gaussian noise has two as well: ``F.gaussian_noise`` while training, its noise held still by re-seeding
minigrad's generator inside ``fn``, and the settings where it is the identity (evaluation mode, std 0).
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from .. import backend
from .. import functional as F
from .. import random as mg_random
from ..ops.dropout import Dropout
from .registry import Case, OpSpec, register

# ------------------------------------------------------------------------------------------- dropout


@st.composite
def _dropout_mask_cases(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    p = draw(st.sampled_from([0.0, 0.2, 0.5, 0.9]))
    mask = np.where(rng.uniform(size=shape) >= p, 1.0 / (1.0 - p), 0.0)
    return Case((rng.standard_normal(shape),), {"mask": mask})


def _dropout_mask_fn(x, mask):
    return Dropout.apply(x, mask=backend.to_device(np.asarray(mask, dtype=x.dtype), x.device))


register(OpSpec(
    name="dropout_mask",
    fn=_dropout_mask_fn,
    cases=_dropout_mask_cases(),
    reference=lambda x, mask: x * mask,
    covers=(Dropout,),
    notes="The op behind F.dropout with its mask given: x * mask, gradient upstream * mask.",
))


@st.composite
def _f_dropout_cases(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    p, training = draw(st.sampled_from([(0.0, True), (1.0, True), (0.5, False), (1.0, False)]))
    return Case((rng.standard_normal(shape),), {"p": p, "training": training})


register(OpSpec(
    name="dropout",
    fn=lambda x, p, training: F.dropout(x, p=p, training=training),
    cases=_f_dropout_cases(),
    reference=lambda x, p, training: x * 0.0 if training and p == 1.0 else x,
    covers=("F.dropout",),
    torch_reference=lambda torch, x, p, training: torch.nn.functional.dropout(x, p=p, training=training),
    notes="Only the settings that are deterministic on every device (so CPU, CUDA and PyTorch agree); the "
          "random masks are tested in tests/test_dropout.py.",
))

# ------------------------------------------------------------------------------------------- noise

_NOISE_SEED = 3


def _seeded_noise(x, std, training):
    """``F.gaussian_noise`` with minigrad's generator re-seeded first, so the noise is the same on every call
    (gradcheck evaluates fn many times, and each call must be the same function of x)."""
    mg_random.manual_seed(_NOISE_SEED)
    return F.gaussian_noise(x, std, training=training)


def _noise_values(shape, std):
    """The noise :func:`_seeded_noise` adds to a float64 input: float64 normal draws of the seeded CPU
    generator, times ``std``."""
    return std * np.random.Generator(np.random.PCG64(_NOISE_SEED)).standard_normal(shape)


@st.composite
def _noise_cases(draw, training):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    if training:
        return Case((rng.standard_normal(shape),), {"std": draw(st.sampled_from([0.3, 0.5, 2.0])),
                                                      "training": True})
    std, training = draw(st.sampled_from([(0.0, True), (0.5, False), (0.0, False)]))
    return Case((rng.standard_normal(shape),), {"std": std, "training": training})


register(OpSpec(
    name="gaussian_noise",
    fn=_seeded_noise,
    cases=_noise_cases(True),
    reference=lambda x, std, training: x + _noise_values(x.shape, std),
    covers=("F.gaussian_noise",),
    torch_reference=lambda torch, x, std, training: x + torch.tensor(_noise_values(tuple(x.shape), std)),
    dtypes=(np.float64,),
    same_on_every_device=False,
    notes="Noise held still by re-seeding inside fn. float64 only: float32 inputs get float32 draws, a "
          "different stream, so the NumPy reference cannot reproduce them; the GPU's generator is another "
          "stream again, so on CUDA only the gradient (the identity) is compared. Statistics and seeding are "
          "tested in tests/test_weight_norm_ema.py.",
))

register(OpSpec(
    name="gaussian_noise_off",
    fn=_seeded_noise,
    cases=_noise_cases(False),
    reference=lambda x, std, training: x,
    covers=("F.gaussian_noise",),
    torch_reference=lambda torch, x, std, training: x,
    notes="Evaluation mode or std = 0: the input itself, in every dtype and on every device.",
))
