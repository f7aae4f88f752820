"""conv2d and conv_transpose2d: gradients, adjointness, PyTorch's numbers, bad inputs, nn layers.

Numeric tests run on both kernel paths ("fast": numba on the CPU; "reference": the NumPy im2col of
``minigrad/kernels/im2col.py``). PyTorch, when importable, is the outside reference.
"""
import contextlib
import math
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
import minigrad.functional as F
from minigrad import kernels, nn
from minigrad.ops import conv as conv_ops
from minigrad.testing.entries_conv import conv_output_hw, conv_problems, draw_arrays
from minigrad.testing.gradcheck import GradcheckError, gradcheck

try:
    import torch
except ImportError:  # pragma: no cover - torch is optional
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed (it is only a test reference)")
PATHS = ("fast", "reference")
paths = st.sampled_from(PATHS)


def apply_op(p, x, weight, bias):
    """Run the problem's op on tensors."""
    if p["transposed"]:
        return F.conv_transpose2d(x, weight, bias, stride=p["stride"], padding=p["padding"],
                                  output_padding=p["output_padding"])
    return F.conv2d(x, weight, bias, stride=p["stride"], padding=p["padding"])


def op_inputs(p):
    return [p["x"], p["weight"]] + ([p["bias"]] if p["bias"] is not None else [])


def op_fn(p):
    return lambda x, w, *b: apply_op(p, x, w, b[0] if b else None)


# ---------------------------------------------------------------------------------- gradient checks
@given(p=conv_problems(), path=paths)
def test_conv2d_gradcheck(p, path):
    """float64 central differences along random directions, random upstream gradient, x, weight and bias."""
    with kernels.use(path):
        gradcheck(op_fn(p), op_inputs(p), directions=True, n_directions=6, names=("x", "weight", "bias"))


@given(p=conv_problems(transposed=True), path=paths)
def test_conv_transpose2d_gradcheck(p, path):
    with kernels.use(path):
        gradcheck(op_fn(p), op_inputs(p), directions=True, n_directions=6, names=("x", "weight", "bias"))


SMALL = [  # (transposed, n, cin, cout, h, w, kernel, stride, padding, output_padding)
    (False, 2, 2, 3, 5, 4, (3, 2), (2, 1), (1, 0), (0, 0)),
    (False, 1, 1, 2, 4, 4, (2, 2), (3, 3), (2, 1), (0, 0)),
    (True, 2, 2, 3, 3, 2, (3, 2), (2, 1), (1, 0), (1, 0)),
    (True, 1, 3, 1, 2, 3, (3, 3), (3, 2), (0, 1), (2, 1)),
]


@pytest.mark.parametrize("case", SMALL)
@pytest.mark.parametrize("path", PATHS)
def test_full_jacobian_on_small_problems(case, path):
    """Every element of every input perturbed on its own (the gradcheck's full mode)."""
    transposed, n, cin, cout, h, w, kernel, stride, padding, output_padding = case
    g = dict(transposed=transposed, n=n, cin=cin, cout=cout, h=h, w=w, kernel=kernel, stride=stride,
             padding=padding, output_padding=output_padding)
    p = draw_arrays(g, seed=7)
    with kernels.use(path):
        gradcheck(op_fn(p), op_inputs(p), directions=False, names=("x", "weight", "bias"))


@pytest.mark.parametrize("transposed", [False, True])
def test_gradcheck_catches_a_flipped_kernel_in_the_backward(transposed, monkeypatch):
    """Negative control: a backward that uses the kernel flipped (a classic convolution bug) must fail."""
    cls = conv_ops.ConvTranspose2d if transposed else conv_ops.Conv2d
    right = cls.backward

    def wrong(ctx, grad):
        dx, dw, *rest = right(ctx, grad)
        return (dx, dw[:, :, ::-1, ::-1].copy(), *rest)

    monkeypatch.setattr(cls, "backward", staticmethod(wrong))
    g = dict(transposed=transposed, n=2, cin=2, cout=2, h=4, w=4, kernel=(3, 3), stride=(1, 1), padding=(1, 1),
             output_padding=(0, 0))
    p = draw_arrays(g, seed=3)
    with pytest.raises(GradcheckError, match="weight"):
        gradcheck(op_fn(p), op_inputs(p), directions=True, names=("x", "weight", "bias"))


# ------------------------------------------------------------------------------------- adjointness
@given(p=conv_problems(), path=paths, seed=st.integers(0, 2**32 - 1))
def test_conv_transpose2d_is_the_adjoint_of_conv2d(p, path, seed):
    """<conv2d(x, w), y> == <x, conv_transpose2d(y, w)> for every stride, padding and output size.

    The transposed convolution takes conv2d's weight as it is ((Cout, Cin, kH, kW) read as (Cin', Cout'))
    and the output_padding that makes its output exactly x's size again."""
    (kh, kw), (sh, sw), (ph, pw) = p["kernel"], p["stride"], p["padding"]
    output_padding = ((p["h"] + 2 * ph - kh) % sh, (p["w"] + 2 * pw - kw) % sw)
    x, w = mg.tensor(p["x"]), mg.tensor(p["weight"])
    with kernels.use(path):
        y_shape = F.conv2d(x, w, stride=p["stride"], padding=p["padding"]).shape
        y = mg.tensor(np.random.default_rng(seed).standard_normal(y_shape))
        left = float((F.conv2d(x, w, stride=p["stride"], padding=p["padding"]) * y).sum().item())
        back = F.conv_transpose2d(y, w, stride=p["stride"], padding=p["padding"], output_padding=output_padding)
    assert back.shape == x.shape
    right = float((x * back).sum().item())
    assert math.isclose(left, right, rel_tol=1e-9, abs_tol=1e-9)


# ------------------------------------------------------------------------- fast path vs reference path
@given(p=st.one_of(conv_problems(dtype=np.float32), conv_problems(transposed=True, dtype=np.float32)))
def test_fast_and_reference_paths_agree_on_the_whole_op(p):
    """Forward and all gradients in float32: the numba path equals the NumPy reference to rounding."""
    results = {}
    upstream = None
    for path in PATHS:
        with kernels.use(path):
            ts = [mg.tensor(a, requires_grad=True) for a in op_inputs(p)]
            y = op_fn(p)(*ts)
            if upstream is None:
                upstream = np.random.default_rng(0).standard_normal(y.shape).astype(np.float32)
            y.backward(mg.tensor(upstream))
            results[path] = [y.numpy()] + [t.grad.numpy() for t in ts]
    for fast, ref in zip(results["fast"], results["reference"]):
        assert fast.dtype == ref.dtype == np.float32
        scale = max(1.0, float(np.abs(ref).max()))
        np.testing.assert_allclose(fast, ref, rtol=1e-5, atol=1e-5 * scale)


@contextlib.contextmanager
def block_size(setting):
    """$MINIGRAD_CONV_BLOCK_BYTES set for the block (Hypothesis tests cannot take pytest's monkeypatch)."""
    old = os.environ.get("MINIGRAD_CONV_BLOCK_BYTES")
    os.environ["MINIGRAD_CONV_BLOCK_BYTES"] = setting
    try:
        yield
    finally:
        if old is None:
            del os.environ["MINIGRAD_CONV_BLOCK_BYTES"]
        else:
            os.environ["MINIGRAD_CONV_BLOCK_BYTES"] = old


@pytest.mark.parametrize("block_bytes", ["1", "700"])
@given(p=st.one_of(conv_problems(max_batch=5), conv_problems(transposed=True, max_batch=5)), path=paths)
def test_blocks_of_samples_give_the_whole_batch_result(p, path, block_bytes):
    """The ops go through the batch in blocks of samples (ops/conv.py, sample_blocks). With tiny blocks
    (one sample, or a few) forward and gradients must equal the whole batch at once, on both paths."""
    results = {}
    for name, setting in (("blocks", block_bytes), ("whole", "0")):
        with block_size(setting), kernels.use(path):
            ts = [mg.tensor(a, requires_grad=True) for a in op_inputs(p)]
            y = op_fn(p)(*ts)
            y.backward(mg.tensor(np.random.default_rng(2).standard_normal(y.shape)))
        results[name] = [y.numpy()] + [t.grad.numpy() for t in ts]
    for a, b in zip(results["blocks"], results["whole"]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_block_size_setting_is_checked(monkeypatch):
    from minigrad.kernels import conv_cpu as cpu
    from minigrad.ops.conv import sample_blocks

    monkeypatch.setenv("MINIGRAD_CONV_BLOCK_BYTES", "0")
    assert sample_blocks(cpu, 10, 10, 1, 10, 4) == [(0, 10)]
    # 10 rows x 10 columns x 4 bytes per sample, 1200-byte blocks: 3 samples each, so 4 nearly equal blocks
    monkeypatch.setenv("MINIGRAD_CONV_BLOCK_BYTES", "1200")
    assert sample_blocks(cpu, 10, 10, 1, 10, 4) == [(0, 2), (2, 5), (5, 7), (7, 10)]
    # a large weight (100 x 1000) makes blocks of at least 8 * 100 * 1000 / 1100 = 728 columns, 8 samples of
    # 100 columns, although one sample's matrix (40 kB) is already over the budget
    assert sample_blocks(cpu, 10, 100, 1000, 100, 4) == [(0, 5), (5, 10)]
    monkeypatch.setenv("MINIGRAD_CONV_BLOCK_BYTES", "lots")
    with pytest.raises(ValueError, match=r"MINIGRAD_CONV_BLOCK_BYTES must be a non-negative integer, got 'lots'"):
        sample_blocks(cpu, 10, 10, 1, 10, 4)


# ------------------------------------------------------------------------------------------ PyTorch
@needs_torch
@given(p=st.one_of(conv_problems(), conv_problems(transposed=True)), path=paths,
       dtype=st.sampled_from([np.float32, np.float64]))
def test_matches_torch(p, path, dtype):
    """Forward and gradients against torch.nn.functional, in float32 and float64."""
    arrays = [a.astype(dtype) for a in op_inputs(p)]
    upstream = np.random.default_rng(1).standard_normal(conv_output_hw(p)).astype(dtype)
    with kernels.use(path):
        ts = [mg.tensor(a, requires_grad=True) for a in arrays]
        y = op_fn(p)(*ts)
        g = np.broadcast_to(upstream, y.shape).copy()
        y.backward(mg.tensor(g))
    tts = [torch.tensor(a, requires_grad=True) for a in arrays]
    tb = tts[2] if len(tts) == 3 else None
    if p["transposed"]:
        ty = torch.nn.functional.conv_transpose2d(tts[0], tts[1], tb, stride=p["stride"], padding=p["padding"],
                                                  output_padding=p["output_padding"])
    else:
        ty = torch.nn.functional.conv2d(tts[0], tts[1], tb, stride=p["stride"], padding=p["padding"])
    ty.backward(torch.tensor(g))
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    assert y.shape == tuple(ty.shape) and y.dtype == dtype
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), **tol)
    for t, tt in zip(ts, tts):
        assert t.grad.dtype == dtype
        np.testing.assert_allclose(t.grad.numpy(), tt.grad.numpy(), **tol)


# ----------------------------------------------------------------------------------------- bad input
def t(*shape, dtype=np.float32):
    return mg.tensor(np.zeros(shape, dtype=dtype))


@pytest.mark.parametrize("call, error, words", [
    (lambda: F.conv2d(t(2, 4, 8, 8), t(16, 3, 3, 3)), ValueError,
     "conv2d: input has 4 channels but weight expects 3"),
    (lambda: F.conv_transpose2d(t(2, 4, 8, 8), t(3, 16, 3, 3)), ValueError,
     "conv_transpose2d: input has 4 channels but weight expects 3"),
    (lambda: F.conv2d(t(2, 3, 4, 4), t(8, 3, 7, 7), padding=1), ValueError,
     "conv2d: kernel 7x7 is larger than the padded input 6x6"),
    (lambda: F.conv2d(t(3, 32, 32), t(8, 3, 3, 3)), ValueError,
     r"conv2d: input must be 4-D \(N, C, H, W\), got shape \(3, 32, 32\)"),
    (lambda: F.conv_transpose2d(t(3, 4, 4), t(3, 8, 3, 3)), ValueError, "conv_transpose2d: input must be 4-D"),
    (lambda: F.conv2d(t(2, 3, 4, 4), t(8, 3, 3)), ValueError, "conv2d: weight must be 4-D"),
    (lambda: F.conv2d(t(2, 3, 4, 4), t(8, 3, 3, 3), t(4)), ValueError, r"conv2d: bias must have shape \(8,\)"),
    (lambda: F.conv_transpose2d(t(2, 3, 4, 4), t(3, 8, 3, 3), t(3)), ValueError,
     r"conv_transpose2d: bias must have shape \(8,\)"),
    (lambda: F.conv_transpose2d(t(2, 3, 4, 4), t(3, 8, 3, 3), stride=2, output_padding=2), ValueError,
     r"conv_transpose2d: output_padding \(2, 2\) must be smaller than stride \(2, 2\)"),
    (lambda: F.conv_transpose2d(t(2, 3, 4, 4), t(3, 8, 3, 3), output_padding=(0, 1)), ValueError,
     "must be smaller than stride"),
    (lambda: F.conv_transpose2d(t(2, 3, 1, 1), t(3, 8, 1, 1), padding=1), ValueError,
     "conv_transpose2d: the output would be -1x-1"),
    (lambda: F.conv2d(t(2, 3, 4, 4), t(8, 3, 3, 3, dtype=np.float64)), TypeError,
     "conv2d: input is float32 but weight is float64"),
    (lambda: F.conv2d(t(2, 3, 4, 4), t(8, 3, 3, 3), t(8, dtype=np.float64)), TypeError,
     "conv2d: input is float32 but bias is float64"),
    (lambda: F.conv2d(mg.tensor(np.zeros((1, 1, 3, 3), np.int64)), mg.tensor(np.zeros((1, 1, 3, 3), np.int64))),
     TypeError, "conv2d: needs floating-point tensors"),
    (lambda: F.conv2d(np.zeros((1, 1, 3, 3)), t(1, 1, 3, 3)), TypeError, "conv2d: input must be a Tensor"),
    (lambda: F.conv2d(t(1, 1, 3, 3), t(1, 1, 3, 3), stride=0), ValueError,
     r"conv2d: stride must be >= 1, got \(0, 0\)"),
    (lambda: F.conv2d(t(1, 1, 3, 3), t(1, 1, 3, 3), padding=-1), ValueError, "conv2d: padding must be >= 0"),
    (lambda: F.conv2d(t(1, 1, 3, 3), t(1, 1, 3, 3), stride=(1, 2, 3)), TypeError,
     "conv2d: stride must be an int or a pair of ints"),
    (lambda: F.conv2d(t(1, 1, 3, 3), t(1, 1, 3, 3), padding=1.5), TypeError, "conv2d: padding must be an int"),
])
def test_bad_inputs_get_clear_errors(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_error_names_both_shapes():
    with pytest.raises(ValueError) as info:
        F.conv2d(t(2, 4, 8, 8), t(16, 3, 3, 3))
    assert "(2, 4, 8, 8)" in str(info.value) and "(16, 3, 3, 3)" in str(info.value)


# ------------------------------------------------------------------------------------------ nn layers
def test_conv2d_layer_shapes_names_and_gradients():
    mg.manual_seed(0)
    layer = nn.Conv2d(3, 8, 3, stride=2, padding=1)
    assert layer.weight.shape == (8, 3, 3, 3) and layer.bias.shape == (8,)
    assert list(layer.state_dict()) == ["weight", "bias"]
    x = mg.randn(4, 3, 9, 9, requires_grad=True)
    y = layer(x)
    assert y.shape == (4, 8, 5, 5)
    y.sum().backward()
    assert x.grad.shape == x.shape and layer.weight.grad.shape == layer.weight.shape
    np.testing.assert_allclose(layer.bias.grad.numpy(), np.full(8, 4 * 25), rtol=1e-6)
    assert "3, 8, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1)" in repr(layer)


def test_conv_transpose2d_layer_doubles_the_size_like_the_generator():
    layer = nn.ConvTranspose2d(16, 8, 5, stride=2, padding=2, output_padding=1, bias=False)
    assert layer.weight.shape == (16, 8, 5, 5) and layer.bias is None
    assert list(layer.state_dict()) == ["weight"]
    assert layer(mg.randn(2, 16, 4, 4)).shape == (2, 8, 8, 8)
    with pytest.raises(ValueError, match="ConvTranspose2d: output_padding"):
        nn.ConvTranspose2d(4, 4, 3, stride=1, output_padding=1)
    with pytest.raises(ValueError, match="in_channels must be a positive int"):
        nn.Conv2d(0, 4, 3)


@pytest.mark.parametrize("cls, cin, cout, k, fan_in", [
    (nn.Conv2d, 64, 4, 3, 64 * 9),
    (nn.ConvTranspose2d, 64, 4, 5, 4 * 25),   # PyTorch's fan_in: weight dim 1 (out_channels) x kernel area
    (nn.ConvTranspose2d, 4, 64, 3, 64 * 9),
])
def test_default_initialisation_is_pytorchs(cls, cin, cout, k, fan_in):
    """kaiming_uniform_(a=sqrt(5)) is U(-1/sqrt(fan_in), 1/sqrt(fan_in)); so is the bias."""
    mg.manual_seed(1)
    layer = cls(cin, cout, k)
    bound = 1 / math.sqrt(fan_in)
    w = layer.weight.numpy()
    assert np.abs(w).max() <= bound
    assert np.abs(w).max() > 0.95 * bound               # the whole range is used (many draws)
    assert abs(w.std() - bound / math.sqrt(3)) < 0.05 * bound   # uniform: std = bound / sqrt(3)
    assert np.abs(layer.bias.numpy()).max() <= bound


@needs_torch
@pytest.mark.parametrize("transposed", [False, True])
def test_layers_match_torch_with_the_same_weights(transposed):
    if transposed:
        ours, theirs = nn.ConvTranspose2d(6, 4, 5, 2, 2, 1), torch.nn.ConvTranspose2d(6, 4, 5, 2, 2, 1)
    else:
        ours, theirs = nn.Conv2d(6, 4, 3, 2, 1), torch.nn.Conv2d(6, 4, 3, 2, 1)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((3, 6, 7, 7)).astype(np.float32)
    np.testing.assert_allclose(ours(mg.tensor(x)).numpy(), theirs(torch.tensor(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-5)


def test_global_average_pooling_is_a_mean_over_height_and_width():
    x = mg.tensor(np.random.default_rng(0).standard_normal((4, 5, 3, 2)), requires_grad=True)
    pooled = x.mean(dim=(2, 3))
    assert pooled.shape == (4, 5)
    np.testing.assert_allclose(pooled.numpy(), x.numpy().mean(axis=(2, 3)))
    pooled.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full(x.shape, 1 / 6))


def test_no_grad_builds_no_graph_and_saves_nothing():
    x, w = mg.randn(2, 3, 5, 5, requires_grad=True), mg.randn(4, 3, 3, 3, requires_grad=True)
    with mg.no_grad():
        y = F.conv2d(x, w)
    assert not y.requires_grad and y.grad_fn is None
