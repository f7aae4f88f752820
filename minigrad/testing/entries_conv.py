"""Convolution problems for the tests: Hypothesis strategies for conv2d / conv_transpose2d settings and
their input arrays, and the conv ops' entries in the op registry.

A *problem* is a dict with the geometry (batch ``n``, channels ``cin``/``cout``, image ``h``/``w``,
``kernel``, ``stride``, ``padding``, ``output_padding``) and, once arrays are drawn, ``x``, ``weight`` and
``bias``. Sizes are small (sides up to about 8) so that gradient checks stay fast, but every combination
that matters is reachable: kernels larger than the stride and smaller, padding up to 2, strides up to 3,
images where the windows do not reach the last rows, width != height, 1x1 kernels, batch and channels of 1.

Values are standard normal draws from a drawn seed: convolution is linear in each input, so there are no
kinks or ties to keep away from, and NumPy draws are much cheaper than element-wise Hypothesis draws.
"""
from __future__ import annotations

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

__all__ = ["conv_geometries", "conv_problems", "draw_arrays", "conv_output_hw"]


def conv_output_hw(g):
    """The (OH, OW) of a problem's op: conv2d's or conv_transpose2d's output size."""
    (kh, kw), (sh, sw), (ph, pw) = g["kernel"], g["stride"], g["padding"]
    if g["transposed"]:
        qh, qw = g["output_padding"]
        return (g["h"] - 1) * sh - 2 * ph + kh + qh, (g["w"] - 1) * sw - 2 * pw + kw + qw
    return (g["h"] + 2 * ph - kh) // sh + 1, (g["w"] + 2 * pw - kw) // sw + 1


@st.composite
def conv_geometries(draw, transposed=False, max_batch=2, max_channels=3, max_kernel=3, max_stride=3,
                    max_padding=2, max_side=7):
    """A valid geometry for conv2d (``transposed=False``) or conv_transpose2d (``True``)."""
    side = st.integers(1, max_kernel)
    kernel = (draw(side), draw(side))
    stride = (draw(st.integers(1, max_stride)), draw(st.integers(1, max_stride)))
    padding = (draw(st.integers(0, max_padding)), draw(st.integers(0, max_padding)))
    g = dict(transposed=transposed, n=draw(st.integers(1, max_batch)), cin=draw(st.integers(1, max_channels)),
             cout=draw(st.integers(1, max_channels)), kernel=kernel, stride=stride, padding=padding,
             output_padding=(0, 0))
    if transposed:
        g["output_padding"] = (draw(st.integers(0, stride[0] - 1)), draw(st.integers(0, stride[1] - 1)))
        g["h"], g["w"] = draw(st.integers(1, 4)), draw(st.integers(1, 4))
        assume(min(conv_output_hw(g)) >= 1)  # a large padding can leave no output
    else:
        # The padded image must hold at least one window: h + 2p >= k.
        g["h"] = draw(st.integers(max(1, kernel[0] - 2 * padding[0]), max_side))
        g["w"] = draw(st.integers(max(1, kernel[1] - 2 * padding[1]), max_side))
    return g


def draw_arrays(g, seed, dtype=np.float64, bias=True):
    """Standard normal ``x``, ``weight`` (in the op's layout) and ``bias`` (or None) for geometry ``g``."""
    rng = np.random.default_rng(seed)
    kh, kw = g["kernel"]
    w_shape = (g["cin"], g["cout"], kh, kw) if g["transposed"] else (g["cout"], g["cin"], kh, kw)
    return dict(g,
                x=rng.standard_normal((g["n"], g["cin"], g["h"], g["w"])).astype(dtype),
                weight=rng.standard_normal(w_shape).astype(dtype),
                bias=rng.standard_normal(g["cout"]).astype(dtype) if bias else None)


@st.composite
def conv_problems(draw, transposed=False, dtype=np.float64, **geometry):
    """A geometry (see :func:`conv_geometries`) with drawn arrays; the bias is present or not."""
    g = draw(conv_geometries(transposed=transposed, **geometry))
    return draw_arrays(g, draw(st.integers(0, 2**32 - 1)), dtype=dtype, bias=draw(st.booleans()))
