"""Channel rows on the GPU path (kernels/conv_cuda.py), on the CuPy stand-in: a convolution's product is handed
on as an NCHW-shaped view in channel-rows order, the kernels next to convolutions (batch norm, LeakyReLU,
im2col) read it as it is and write the order their neighbours want, and so a chain of convolutions, batch
norms and LeakyReLUs runs both ways without a single layout move - with the CPU's numbers.
"""
from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad.kernels import conv_cuda, im2col as ref

import fake_cupy as cp
from fake_cupy import fake_cuda  # noqa: F401  (fixture)

MOVES = ("ascontiguousarray", "copy", "array copy", "asarray copy", "reshape copy", "setitem")


def _moves(counts):
    return {k: n for k, n in counts.launch_kinds.items() if k in MOVES}


def _rows_stored(a):
    """A device array with ``a``'s (N, C, ...) values, stored in channel-rows order."""
    return cp.ascontiguousarray(cp.asarray(a).swapaxes(0, 1)).swapaxes(0, 1)


def test_the_helpers_tell_and_make_the_order(fake_cuda):
    x = _rows_stored(np.arange(24.0).reshape(2, 3, 2, 2))
    assert conv_cuda.is_channel_rows(x) and not conv_cuda.is_channel_rows(cp.ones((2, 3, 2, 2)))
    assert not conv_cuda.is_channel_rows(cp.ones((1, 3, 2, 2)).swapaxes(0, 1).swapaxes(0, 1))   # N = 1: both
    buffer, layout = conv_cuda.kernel_buffer(x)
    assert layout == conv_cuda.CHANNEL_ROWS and buffer.flags.c_contiguous and buffer.shape == (3, 2, 2, 2)
    assert conv_cuda.logical_shape(buffer, layout) == (2, 3, 2, 2)
    assert conv_cuda.is_channel_rows(conv_cuda.empty_like(x)) and conv_cuda.empty_like(cp.ones(3)).shape == (3,)
    odd = cp.ones((2, 3, 4, 5)).transpose(0, 1, 3, 2)
    fake_cuda.reset()
    _, layout = conv_cuda.kernel_buffer(odd)                       # neither order: copied to NCHW
    assert layout == conv_cuda.NCHW and fake_cuda.launches == 1


def test_the_layout_moves_are_views_where_the_order_fits(fake_cuda):
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((3, 2 * 4 * 5))
    bias = rng.standard_normal(3)
    want = ref.from_channel_rows(rows, 2, 4, 5, bias=bias)
    fake_cuda.reset()
    d_rows = cp.asarray(rows)
    y = conv_cuda.from_channel_rows(d_rows, 2, 4, 5, bias=cp.asarray(bias))
    assert fake_cuda.launches == 1                                 # the bias, added into the product
    assert conv_cuda.is_channel_rows(y) and cp.shares_memory(y, d_rows)
    np.testing.assert_array_equal(y.get(), want)
    fake_cuda.reset()
    back = conv_cuda.to_channel_rows(y)
    assert fake_cuda.launches == 0 and cp.shares_memory(back, d_rows)
    assert conv_cuda.from_channel_rows(cp.asarray(rows), 2, 4, 5).shape == (2, 3, 4, 5)
    fake_cuda.reset()
    nchw = cp.asarray(want)
    np.testing.assert_array_equal(conv_cuda.to_channel_rows(nchw).get(), ref.to_channel_rows(want))
    assert fake_cuda.launches == 1                                 # an NCHW array is moved


def test_im2col_reads_an_input_in_channel_rows_as_it_is(fake_cuda):
    x = np.random.default_rng(1).standard_normal((2, 3, 5, 4))
    want = ref.im2col(x, (3, 3), (2, 1), (1, 1))
    xr = _rows_stored(x)
    fake_cuda.reset()
    got = conv_cuda.im2col(xr, (3, 3), (2, 1), (1, 1))
    assert fake_cuda.launches == 1
    np.testing.assert_array_equal(got.get(), want)


def test_leaky_relu_keeps_the_order_of_its_input(fake_cuda):
    from minigrad.kernels import elementwise_cuda, elementwise_reference

    x = np.random.default_rng(2).standard_normal((3, 4, 2, 2))
    g = np.random.default_rng(3).standard_normal(x.shape)
    for stored in (_rows_stored, cp.asarray):
        xs = stored(x)
        y = elementwise_cuda.leaky_relu(xs, 0.2)
        dx = elementwise_cuda.leaky_relu_backward(cp.asarray(g), xs, 0.2)
        assert conv_cuda.is_channel_rows(y) == conv_cuda.is_channel_rows(dx) == conv_cuda.is_channel_rows(xs)
        np.testing.assert_array_equal(y.get(), elementwise_reference.leaky_relu(x, 0.2))
        np.testing.assert_array_equal(dx.get(), elementwise_reference.leaky_relu_backward(g, x, 0.2))


def _chain(device, arrays, counts=None):
    """conv (bias) -> LeakyReLU -> conv -> batch norm -> LeakyReLU -> conv_transpose -> batch norm: forward,
    then backward from a given gradient; the output and every gradient as NumPy arrays."""
    x, w1, b1, w2, w3, g = arrays
    ts = [mg.tensor(a, device=device, requires_grad=i > 0) for i, a in enumerate((x, w1, b1, w2, w3))]
    x_t, w1_t, b1_t, w2_t, w3_t = ts
    if counts is not None:
        counts.reset()
    h = F.leaky_relu(F.conv2d(x_t, w1_t, b1_t, stride=2, padding=1), 0.2)
    h = F.leaky_relu(F.batch_norm(F.conv2d(h, w2_t, padding=1), None, None, training=True), 0.2)
    y = F.batch_norm(F.conv_transpose2d(h, w3_t, stride=2, padding=1, output_padding=1), None, None, training=True)
    y.backward(mg.tensor(g, device=device))
    return [y.numpy()] + [t.grad.numpy() for t in ts[1:]]


def test_a_chain_of_convolutions_runs_both_ways_without_a_layout_move(fake_cuda):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 3, 8, 8))
    w1, b1 = rng.standard_normal((5, 3, 3, 3)) * 0.3, rng.standard_normal(5)
    w2, w3 = rng.standard_normal((6, 5, 3, 3)) * 0.3, rng.standard_normal((6, 2, 3, 3)) * 0.3
    g = rng.standard_normal((4, 2, 8, 8))
    arrays = (x, w1, b1, w2, w3, g)
    want = _chain("cpu", arrays)
    got = _chain("cuda", arrays, fake_cuda)
    assert _moves(fake_cuda) == {}, fake_cuda.launch_sites
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("bias", [False, True])
def test_conv2d_hands_its_product_on_in_channel_rows(fake_cuda, bias):
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4) if bias else None
    want = F.conv2d(mg.tensor(x), mg.tensor(w), None if b is None else mg.tensor(b), padding=1).numpy()
    args = [mg.tensor(a, device="cuda") for a in (x, w)] + ([mg.tensor(b, device="cuda")] if bias else [])
    fake_cuda.reset()
    y = F.conv2d(*args, padding=1)
    assert fake_cuda.launches == 2 + bias                          # im2col, the product (and the bias)
    assert conv_cuda.is_channel_rows(y.data)
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-12, atol=1e-12)
