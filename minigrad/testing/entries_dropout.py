"""Registry entries for ``minigrad/ops/dropout.py``: dropout. See :mod:`minigrad.testing.registry` for the
fields. (Gaussian noise, one op of its own, has its entries in ``entries_noise.py``.)

Dropout has three entries: the CPU's op at a given position of the Philox stream (``ops.dropout.
PhiloxDropout``: ``key`` and ``counter`` are options, so the decisions are fixed, and the reference
computes them with ``kernels/dropout_reference.py``); the op with a fixed mask (``ops.dropout.Dropout``,
the GPU's, takes the mask as an option, which is how a gradient check holds it still); and ``F.dropout``
on the settings where it is deterministic on every device (``p`` of 0 or 1, evaluation mode). Its random
behaviour (rate, expectation, seeding, the saved state, the fast kernel against the reference) is tested
in tests/test_dropout.py.
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from .. import backend
from .. import functional as F
from ..kernels import dropout_reference
from ..ops.dropout import Dropout, PhiloxDropout, keep_scale, keep_threshold
from .registry import Case, OpSpec, register

# ------------------------------------------------------------------------------------------- dropout


def _philox_mask(shape, p, key, counter):
    """The float64 multipliers of the Philox dropout at ``(key, counter)``: ``1 / (1 - p)`` where kept, else
    0 (the decisions do not depend on the dtype: one 32-bit word per value in both)."""
    n = int(np.prod(shape))
    keep = dropout_reference.keep_mask(n, keep_threshold(p), key, counter).reshape(shape)
    return np.where(keep, keep_scale(p), 0.0)


@st.composite
def _philox_cases(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    return Case((rng.standard_normal(shape),), {
        "p": draw(st.sampled_from([0.0, 0.2, 0.5, 0.9, 1.0])),
        "key": draw(st.integers(0, 2**64 - 1)),
        "counter": draw(st.sampled_from([0, 1, 12345, 2**64 - 1])),
    })


register(OpSpec(
    name="philox_dropout",
    fn=lambda x, p, key, counter: PhiloxDropout.apply(x, p=p, key=key, counter=counter),
    cases=_philox_cases(),
    reference=lambda x, p, key, counter: x * _philox_mask(x.shape, p, key, counter),
    covers=(PhiloxDropout,),
    torch_reference=lambda torch, x, p, key, counter: x * torch.tensor(_philox_mask(tuple(x.shape), p, key,
                                                                                     counter)),
    notes="The op behind F.dropout on the CPU, its decisions fixed by (key, counter): x * m, gradient "
          "upstream * m. A counter of 2**64 - 1 checks the wrap-around of the blocks.",
))


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
