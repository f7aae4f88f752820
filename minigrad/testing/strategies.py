"""Hypothesis strategies for minigrad's tests: shapes, broadcastable shapes, and value domains that keep
central differences meaningful.

Why value domains matter: ``gradcheck`` perturbs every input by ``eps = 1e-6``. Near a kink (relu and
leaky_relu at 0, abs at 0) or a tie (two equal values competing for a max) the function is not
differentiable, the two one-sided slopes differ, and the numeric derivative lands in between: a correct
backward would "fail". So inputs are drawn

* away from kinks: ``|x - kink| >= margin`` (:func:`away_from`),
* without ties: every value distinct, any two at least ``gap`` apart (:func:`distinct_arrays`),
* inside a domain: positive values for log, sqrt and fractional powers (:func:`positive_arrays`).

All value strategies draw float64 NumPy arrays; a test that runs in float32 casts them (the domains were
chosen with enough room that the cast keeps them valid).

Shapes are small on purpose: gradcheck's cost grows with the number of elements, and bugs in shape
handling show up on shapes of side 1 to 4 as well as on big ones.
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

__all__ = [
    "MAX_SIDE", "MAX_DIMS", "shapes", "broadcastable_shapes", "float_arrays", "arrays", "away_from",
    "positive_arrays", "distinct_arrays", "float_dtypes", "dims_for", "index_arrays",
]

MAX_DIMS = 3
MAX_SIDE = 4

#: The float dtypes minigrad computes in. Forward checks run in both; gradient checks in float64.
FLOAT_DTYPES = (np.float32, np.float64)


def float_dtypes():
    """float32 or float64."""
    return st.sampled_from(FLOAT_DTYPES)


def shapes(min_dims=0, max_dims=MAX_DIMS, min_side=1, max_side=MAX_SIDE):
    """A small array shape (a tuple of ints). ``min_side=0`` allows empty arrays."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=MAX_DIMS, min_side=1, max_side=MAX_SIDE):
    """A tuple of ``num_shapes`` shapes that broadcast together under NumPy's rules (some sides are 1,
    some shapes have fewer dims), e.g. ``((3, 1), (4,))``."""
    return hnp.mutually_broadcastable_shapes(
        num_shapes=num_shapes, min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side,
    ).map(lambda bs: tuple(tuple(s) for s in bs.input_shapes))


def _as_shape_strategy(shape):
    if isinstance(shape, st.SearchStrategy):
        return shape
    return st.just(tuple(shape))


def float_arrays(shape, low=-2.0, high=2.0):
    """float64 arrays of ``shape`` (a shape or a strategy of shapes) with values in ``[low, high]``."""
    elements = st.floats(low, high, allow_nan=False, allow_infinity=False, allow_subnormal=False)
    return hnp.arrays(np.float64, _as_shape_strategy(shape), elements=elements)


arrays = float_arrays


def away_from(shape, kink=0.0, margin=0.1, low=-2.0, high=2.0):
    """float64 arrays with every value at least ``margin`` away from ``kink`` (in ``[low, high]``), for
    functions with a kink there (relu, leaky_relu, abs at 0)."""
    below = st.floats(low, kink - margin, allow_subnormal=False) if low <= kink - margin else st.nothing()
    above = st.floats(kink + margin, high, allow_subnormal=False) if kink + margin <= high else st.nothing()
    return hnp.arrays(np.float64, _as_shape_strategy(shape), elements=st.one_of(below, above))


def positive_arrays(shape, low=0.2, high=3.0):
    """float64 arrays with values in ``[low, high]``, ``low > 0`` (log, sqrt, fractional powers)."""
    if low <= 0:
        raise ValueError(f"positive_arrays: low must be > 0, got {low}")
    return float_arrays(shape, low, high)


@st.composite
def distinct_arrays(draw, shape, gap=0.05, low=-2.0):
    """float64 arrays whose values are all different, any two at least ``gap`` apart (no ties: max and
    anything else that picks one element stay differentiable under a perturbation of ``eps``).

    Drawn as distinct integers times ``gap`` plus one common offset, so values lie in
    ``[low, low + gap * (2 size + 1)]``.
    """
    shape = draw(_as_shape_strategy(shape))
    size = int(np.prod(shape, dtype=np.int64))
    ints = draw(hnp.arrays(np.int64, (size,), elements=st.integers(0, 2 * max(size, 1)), unique=True))
    offset = draw(st.floats(0.0, gap / 2))
    return (low + offset + gap * ints.astype(np.float64)).reshape(shape)


@st.composite
def dims_for(draw, ndim, allow_none=True, allow_tuple=True, allow_negative=True):
    """A ``dim`` argument for a tensor with ``ndim`` dims: None (all), one int (maybe negative) or a
    tuple of distinct ints."""
    choices = ["int"] if ndim else []
    if allow_none:
        choices.append("none")
    if allow_tuple and ndim:
        choices.append("tuple")
    if not choices:
        return None
    kind = draw(st.sampled_from(choices))
    if kind == "none":
        return None

    def maybe_negative(d):
        return d - ndim if allow_negative and draw(st.booleans()) else d

    if kind == "int":
        return maybe_negative(draw(st.integers(0, ndim - 1)))
    axes = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
    return tuple(maybe_negative(d) for d in axes)


def index_arrays(size, min_len=1, max_len=6):
    """int64 index arrays into a dim of ``size``; repeated indices are likely (their gradients must add up)."""
    return hnp.arrays(np.int64, st.integers(min_len, max_len), elements=st.integers(0, size - 1))
