"""Registry entries for ``minigrad/ops/noise.py``: Gaussian noise drawn and added in one op. See
:mod:`minigrad.testing.registry` for the fields.

Three entries: the op itself at a given position of the noise stream (``key`` and ``counter`` are options,
so the noise is fixed and the reference computes it with ``kernels/noise_reference.py``); ``F.gaussian_noise``
while training, its noise held still by re-seeding minigrad's generator inside ``fn``; and the settings where
``F.gaussian_noise`` is the identity (evaluation mode, std 0). Statistics, seeding, the saved state and the
fast kernel against the reference are tested in tests/test_fused_noise.py.
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from .. import functional as F
from .. import random as mg_random
from ..kernels import noise_reference
from ..ops.noise import GaussianNoise
from .registry import Case, OpSpec, register


def _noise(shape, std, key, counter):
    """``std * z`` for float64 values of the stream at ``counter`` under ``key``, shaped ``shape``."""
    n = int(np.prod(shape))
    return std * noise_reference.standard_normal(n, np.float64, key, counter).reshape(shape)


@st.composite
def _op_cases(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    return Case((rng.standard_normal(shape),), {
        "std": draw(st.sampled_from([0.3, 0.5, 2.0])),
        "key": draw(st.integers(0, 2**64 - 1)),
        "counter": draw(st.sampled_from([0, 1, 12345, 2**64 - 2])),
    })


register(OpSpec(
    name="gaussian_noise_op",
    fn=lambda x, std, key, counter: GaussianNoise.apply(x, std=std, key=key, counter=counter),
    cases=_op_cases(),
    reference=lambda x, std, key, counter: x + _noise(x.shape, std, key, counter),
    covers=(GaussianNoise,),
    torch_reference=lambda torch, x, std, key, counter: x + torch.tensor(
        _noise(tuple(x.shape), std, key, counter)),
    dtypes=(np.float64,),
    notes="The noise is a function of (key, counter) and the position alone. float64 only: a float32 input "
          "draws one 32-bit word per value (another layout of the stream), which the float64 reference "
          "cannot reproduce; tests/test_fused_noise.py compares float32 with the reference kernel. A "
          "counter near 2**64 checks the wrap-around.",
))

_NOISE_SEED = 3


def _seeded_noise(x, std, training):
    """``F.gaussian_noise`` with minigrad's generator re-seeded first, so the noise is the same on every call
    (gradcheck evaluates fn many times, and each call must be the same function of x)."""
    mg_random.manual_seed(_NOISE_SEED)
    return F.gaussian_noise(x, std, training=training)


def _seeded_values(shape, std):
    """The noise :func:`_seeded_noise` adds to a float64 CPU input: the stream's float64 values from the
    start of the seed's noise stream, times ``std``."""
    mg_random.manual_seed(_NOISE_SEED)
    key, counter = mg_random.noise_stream(0)
    return _noise(shape, std, key, counter)


@st.composite
def _f_cases(draw, training):
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
    cases=_f_cases(True),
    reference=lambda x, std, training: x + _seeded_values(x.shape, std),
    covers=("F.gaussian_noise",),
    torch_reference=lambda torch, x, std, training: x + torch.tensor(_seeded_values(tuple(x.shape), std)),
    dtypes=(np.float64,),
    same_on_every_device=False,
    notes="Noise held still by re-seeding inside fn. float64 only, as for gaussian_noise_op; the GPU draws "
          "from CuPy's generator, another stream, so on CUDA only the gradient (the identity) is compared.",
))

register(OpSpec(
    name="gaussian_noise_off",
    fn=_seeded_noise,
    cases=_f_cases(False),
    reference=lambda x, std, training: x,
    covers=("F.gaussian_noise",),
    torch_reference=lambda torch, x, std, training: x,
    notes="Evaluation mode or std = 0: the input itself, in every dtype and on every device.",
))
