"""Convolution problems for the tests: Hypothesis strategies for conv2d / conv_transpose2d settings and
their input arrays, and the conv ops' entries in the op registry (see :mod:`minigrad.testing.registry`).

A *problem* is a dict with the geometry (batch ``n``, channels ``cin``/``cout``, image ``h``/``w``,
``kernel``, ``stride``, ``padding``, ``output_padding``) and, once arrays are drawn, ``x``, ``weight`` and
``bias``. Sizes are small (sides up to about 8) so that gradient checks stay fast, but every combination
that matters is reachable: kernels larger than the stride and smaller, padding up to 2, strides up to 3,
images where the windows do not reach the last rows, width != height, 1x1 kernels, batch and channels of 1.

Values are standard normal draws from a drawn seed: convolution is linear in each input, so there are no
kinks or ties to keep away from, and NumPy draws are much cheaper than element-wise Hypothesis draws.

The registry's NumPy references below follow the textbook definitions directly - conv2d as a sum over
kernel taps of strided slices of the padded input, conv_transpose2d as every input pixel *scattering*
its kernel-weighted value into the output - and share no code with minigrad's im2col, so they check
the ops from outside.
"""
from __future__ import annotations

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from .. import functional as F
from ..ops.conv import Conv2d, ConvTranspose2d
from .registry import Case, OpSpec, register

__all__ = ["conv_geometries", "conv_problems", "draw_arrays", "conv_output_hw", "conv2d_reference",
           "conv_transpose2d_reference"]


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


# ------------------------------------------------------------------------------------------ references
def conv2d_reference(x, weight, bias=None, stride=(1, 1), padding=(0, 0)):
    """conv2d by its definition, in NumPy: y[n, o, oy, ox] = b[o] + sum over (c, i, j) of
    weight[o, c, i, j] * xpad[n, c, oy*sH + i, ox*sW + j]."""
    (sh, sw), (ph, pw) = stride, padding
    cout, _, kh, kw = weight.shape
    xpad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh, ow = (xpad.shape[2] - kh) // sh + 1, (xpad.shape[3] - kw) // sw + 1
    y = np.zeros((x.shape[0], cout, oh, ow), dtype=np.result_type(x, weight))
    for i in range(kh):
        for j in range(kw):
            tap = xpad[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]   # (N, C, OH, OW)
            y += np.einsum("nchw,oc->nohw", tap, weight[:, :, i, j])
    return y if bias is None else y + bias.reshape(1, -1, 1, 1)


def conv_transpose2d_reference(x, weight, bias=None, stride=(1, 1), padding=(0, 0), output_padding=(0, 0)):
    """conv_transpose2d by its definition, in NumPy: input pixel (iy, ix) adds x[n, c, iy, ix] *
    weight[c, o, i, j] to output pixel (iy*sH + i - pH, ix*sW + j - pW); pixels that land outside the
    output (the cropped padding) are dropped, and the last ``output_padding`` rows/columns receive
    whatever lands there (possibly nothing)."""
    (sh, sw), (ph, pw), (qh, qw) = stride, padding, output_padding
    n, _, h, w = x.shape
    _, cout, kh, kw = weight.shape
    oh, ow = (h - 1) * sh - 2 * ph + kh + qh, (w - 1) * sw - 2 * pw + kw + qw
    full = np.zeros((n, cout, max((h - 1) * sh + kh, ph + oh), max((w - 1) * sw + kw, pw + ow)),
                    dtype=np.result_type(x, weight))
    for i in range(kh):
        for j in range(kw):
            full[:, :, i:i + sh * (h - 1) + 1:sh, j:j + sw * (w - 1) + 1:sw] += np.einsum(
                "nchw,co->nohw", x, weight[:, :, i, j])
    y = full[:, :, ph:ph + oh, pw:pw + ow]
    return y if bias is None else y + bias.reshape(1, -1, 1, 1)


# ------------------------------------------------------------------------------------ registry entries
@st.composite
def _registry_cases(draw, transposed):
    p = draw(conv_problems(transposed=transposed))
    arrays = (p["x"], p["weight"]) + ((p["bias"],) if p["bias"] is not None else ())
    options = dict(stride=p["stride"], padding=p["padding"])
    if transposed:
        options["output_padding"] = p["output_padding"]
    return Case(arrays, options)


def _bias(b):
    return b[0] if b else None


register(OpSpec(
    name="conv2d",
    fn=lambda x, w, *b, stride, padding: F.conv2d(x, w, _bias(b), stride=stride, padding=padding),
    cases=_registry_cases(False),
    reference=lambda x, w, *b, stride, padding: conv2d_reference(x, w, _bias(b), stride, padding),
    covers=(Conv2d, "F.conv2d"),
    torch_reference=lambda torch, x, w, *b, stride, padding: torch.nn.functional.conv2d(
        x, w, _bias(b), stride=stride, padding=padding),
    directions=True,
    rtol={np.float32: 1e-5},
    atol={np.float32: 1e-4},
    notes="float32 atol: outputs are sums of up to 3*3*3 products of N(0, 1) values (|y| up to ~10), "
          "so float32 rounding leaves absolute errors of a few 1e-6 on outputs near zero.",
))

register(OpSpec(
    name="conv_transpose2d",
    fn=lambda x, w, *b, stride, padding, output_padding: F.conv_transpose2d(
        x, w, _bias(b), stride=stride, padding=padding, output_padding=output_padding),
    cases=_registry_cases(True),
    reference=lambda x, w, *b, stride, padding, output_padding: conv_transpose2d_reference(
        x, w, _bias(b), stride, padding, output_padding),
    covers=(ConvTranspose2d, "F.conv_transpose2d"),
    torch_reference=lambda torch, x, w, *b, stride, padding, output_padding: torch.nn.functional.conv_transpose2d(
        x, w, _bias(b), stride=stride, padding=padding, output_padding=output_padding),
    directions=True,
    rtol={np.float32: 1e-5},
    atol={np.float32: 1e-4},
    notes="Same tolerances as conv2d (it is the same sums, scattered instead of gathered).",
))
