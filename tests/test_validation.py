"""Input validation: optimizers' hyper-parameters and parameters, seeds, dtypes and tensor data, and the
empty inputs that used to fail deep inside NumPy or numba (a zero-size batch through the convolutions,
reductions over an empty dim). Every bad input is a ValueError/TypeError whose message names the function,
the argument and what was wrong; every test asserts on the message."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import kernels, nn, optim


def raises(exc, *parts):
    """pytest.raises with every part required (in order) in the message; parts are literal text."""
    return pytest.raises(exc, match=".*".join(re.escape(p) for p in parts))


def _w():
    return mg.zeros(3, requires_grad=True)


# ----------------------------------------------------------------------------- optimizers

BAD_NUMBERS = [math.nan, math.inf, -math.inf, -0.1, "0.1", None, True]


@pytest.mark.parametrize("value", BAD_NUMBERS, ids=repr)
@pytest.mark.parametrize("name", ["lr", "eps", "weight_decay"])
def test_adam_refuses_bad_hyper_parameters(name, value):
    with raises(ValueError, "Adam: invalid hyper-parameters:", f"{name} must be a non-negative number", repr(value)):
        optim.Adam([_w()], **{name: value})


@pytest.mark.parametrize("betas", [(1.0, 0.999), (0.9, 1.0), (-0.1, 0.9), (math.nan, 0.9), (0.9, math.inf),
                                   (0.9, "0.99")], ids=repr)
def test_adam_refuses_betas_outside_zero_one(betas):
    bad = next(i for i, b in enumerate(betas)
               if not isinstance(b, float) or not (0 <= b < 1))
    with raises(ValueError, "Adam: invalid hyper-parameters:", f"betas[{bad}] must be a number in [0, 1)"):
        optim.Adam([_w()], betas=betas)
    with raises(ValueError, "betas must be a pair (beta1, beta2), got 0.9"):
        optim.Adam([_w()], betas=0.9)


@pytest.mark.parametrize("value", BAD_NUMBERS, ids=repr)
@pytest.mark.parametrize("name", ["lr", "momentum", "weight_decay"])
def test_sgd_refuses_bad_hyper_parameters(name, value):
    kwargs = {"lr": 0.1, name: value}
    with raises(ValueError, f"SGD: {name} must be a non-negative number (finite)", repr(value)):
        optim.SGD([_w()], **kwargs)


def test_good_hyper_parameters_are_kept_as_floats():
    opt = optim.Adam([_w()], lr=1, betas=[0, 0.5], eps=0, weight_decay=np.float32(0.25))
    group = opt.param_groups[0]
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (1.0, (0.0, 0.5), 0.0, 0.25)


@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam])
def test_optimizers_take_only_leaf_tensors_that_require_grad(cls):
    w = _w()
    with raises(ValueError, f"{cls.__name__}: parameter 1 (shape (3,)) is not a leaf tensor", "computed by mul"):
        cls([w, w * 2], lr=0.1)
    with raises(TypeError, f"{cls.__name__}: parameter 1 (shape (2,)) has requires_grad=False"):
        cls([w, mg.zeros(2)], lr=0.1)
    with raises(TypeError, f"{cls.__name__}: parameter 0 must be a Tensor, got ndarray"):
        cls([np.zeros(3)], lr=0.1)
    with raises(TypeError, f"{cls.__name__}: params must be an iterable of Tensors", "a single Tensor"):
        cls(w, lr=0.1)
    cls(nn.Linear(2, 2).parameters(), lr=0.1)     # a generator of parameters is fine


# ----------------------------------------------------------------------------- seeds


@pytest.mark.parametrize("seed", [1.5, 2.0, "3", None, True, np.bool_(False), np.float64(1)], ids=repr)
def test_manual_seed_wants_an_integer(seed):
    with raises(TypeError, "manual_seed: the seed must be an integer, got"):
        mg.manual_seed(seed)


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_manual_seed_range(seed):
    with raises(ValueError, "manual_seed: the seed must be in [0, 2**64)", str(seed)):
        mg.manual_seed(seed)


def test_manual_seed_accepts_python_and_numpy_integers():
    for seed in (0, 7, np.int64(7), np.uint32(7), 2**64 - 1):
        mg.manual_seed(seed)
    mg.manual_seed(7)
    a = mg.randn(4).numpy()
    mg.manual_seed(np.int64(7))
    np.testing.assert_array_equal(mg.randn(4).numpy(), a)


# ----------------------------------------------------------------------------- dtypes and data

SUPPORTED = "float32, float64, int32, int64, bool"


@pytest.mark.parametrize("dtype", [np.float16, np.uint8, np.int8, np.complex64, np.longdouble])
def test_unsupported_array_dtypes_are_refused_at_creation(dtype):
    name = np.dtype(dtype).name
    with raises(TypeError, f"tensor: an array of dtype {name} is not supported", f"supported dtypes are {SUPPORTED}"):
        mg.tensor(np.zeros(3, dtype=dtype))
    with raises(TypeError, f"tensor: dtype {dtype.__name__} is not supported", SUPPORTED):
        mg.tensor([1.0, 2.0], dtype=dtype)
    with raises(TypeError, f"zeros: dtype {dtype.__name__} is not supported", SUPPORTED):
        mg.zeros(2, dtype=dtype)
    with raises(TypeError, f"to: dtype {dtype.__name__} is not supported", SUPPORTED):
        mg.tensor([1.0]).to(dtype)
    # converting an unsupported array to a supported dtype is fine
    assert mg.tensor(np.zeros(3, dtype=dtype).real, dtype=np.float32).dtype == np.float32


def test_every_supported_dtype_makes_a_tensor():
    for dtype in (np.float32, np.float64, np.int32, np.int64, np.bool_):
        assert mg.tensor(np.zeros(2, dtype=dtype)).dtype == dtype
        assert mg.tensor([0, 1], dtype=dtype).dtype == dtype
        assert mg.ones(2, dtype=dtype).dtype == dtype


def test_dtypes_that_are_not_dtypes():
    with raises(TypeError, "tensor: dtype str is not supported", SUPPORTED):
        mg.tensor([1.0], dtype=str)
    with raises(TypeError, "tensor: dtype object is not supported"):
        mg.tensor([1.0], dtype=object)
    with raises(TypeError, "tensor: dtype 'float33' is not a dtype", SUPPORTED):
        mg.tensor([1.0], dtype="float33")
    with raises(TypeError, "randn: dtype float16 is not supported"):
        mg.randn(2, dtype="half")
    with raises(TypeError, "rand: dtype 'halfway' is not a dtype"):
        mg.rand(2, dtype="halfway")


def test_data_that_is_not_a_numeric_array():
    with raises(ValueError, "tensor: the nested lists have different lengths", "[[1, 2], [3]]"):
        mg.tensor([[1, 2], [3]])
    with raises(ValueError, "tensor: the nested lists have different lengths"):
        mg.tensor([[1.0, 2.0], [3.0]], dtype=np.float64)
    with raises(TypeError, "tensor: cannot make a tensor from list", "dtype <U1"):
        mg.tensor(["a", "b"])
    with raises(TypeError, "tensor: cannot make a tensor from str 'abc'"):
        mg.tensor("abc")
    with raises(TypeError, "tensor: cannot make a tensor from NoneType None"):
        mg.tensor(None)
    with raises(TypeError, "tensor: cannot make a tensor from", "not all numbers"):
        mg.tensor([1.0, {"a": 1}])


# ----------------------------------------------------------------------------- empty batches through conv


@pytest.mark.parametrize("path", ["fast", "reference"])
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_on_an_empty_batch(path, bias):
    with kernels.use(path):
        x = mg.zeros(0, 2, 5, 5, requires_grad=True)
        w = mg.randn(3, 2, 3, 3, requires_grad=True)
        b = mg.randn(3, requires_grad=True) if bias else None
        y = F.conv2d(x, w, b, stride=2, padding=1)
        assert y.shape == (0, 3, 3, 3)
        y.backward(np.zeros(y.shape, np.float32))
    assert x.grad.shape == (0, 2, 5, 5)
    np.testing.assert_array_equal(w.grad.numpy(), np.zeros((3, 2, 3, 3), np.float32))
    if bias:
        np.testing.assert_array_equal(b.grad.numpy(), np.zeros(3, np.float32))


@pytest.mark.parametrize("path", ["fast", "reference"])
@pytest.mark.parametrize("bias", [True, False])
def test_conv_transpose2d_on_an_empty_batch(path, bias):
    with kernels.use(path):
        x = mg.zeros(0, 2, 3, 3, requires_grad=True)
        w = mg.randn(2, 4, 5, 5, requires_grad=True)
        b = mg.randn(4, requires_grad=True) if bias else None
        y = F.conv_transpose2d(x, w, b, stride=2, padding=2, output_padding=1)
        assert y.shape == (0, 4, 6, 6)
        y.backward(np.zeros(y.shape, np.float32))
    assert x.grad.shape == (0, 2, 3, 3)
    np.testing.assert_array_equal(w.grad.numpy(), np.zeros((2, 4, 5, 5), np.float32))
    if bias:
        np.testing.assert_array_equal(b.grad.numpy(), np.zeros(4, np.float32))


def test_conv_layers_on_an_empty_batch():
    for layer, shape in ((nn.Conv2d(1, 2, 3), (0, 1, 4, 4)), (nn.ConvTranspose2d(1, 2, 4, stride=2), (0, 1, 4, 4))):
        y = layer(mg.zeros(*shape))
        assert y.shape[0] == 0 and y.shape[1] == 2


# ----------------------------------------------------------------------------- empty reductions


def test_logsumexp_of_an_empty_dim_is_minus_infinity():
    x = mg.zeros(3, 0, requires_grad=True)
    y = x.logsumexp(1)
    assert y.shape == (3,) and np.all(y.numpy() == -np.inf)
    assert F.logsumexp(x, 1, keepdim=True).shape == (3, 1)
    y.backward(np.ones(3, np.float32))
    assert x.grad.shape == (3, 0)
    assert mg.zeros(0, 3).logsumexp(1).shape == (0,)     # empty elsewhere: an empty result


@pytest.mark.parametrize("fn", [F.softmax, F.log_softmax])
def test_softmax_of_an_empty_dim_is_empty(fn):
    x = mg.zeros(3, 0, requires_grad=True)
    y = fn(x, 1)
    assert y.shape == (3, 0)
    y.backward(np.zeros((3, 0), np.float32))
    assert x.grad.shape == (3, 0)
    assert fn(mg.zeros(0, 4), 1).shape == (0, 4)


def test_mean_of_an_empty_dim_is_nan_and_sum_is_zero():
    x = mg.zeros(3, 0, requires_grad=True)
    with np.errstate(all="raise"):             # no NumPy warning on the way
        m = x.mean(1)
    assert m.shape == (3,) and np.isnan(m.numpy()).all()
    assert np.isnan(mg.zeros(0).mean().item())
    np.testing.assert_array_equal(x.sum(1).numpy(), np.zeros(3, np.float32))
    m.backward(np.ones(3, np.float32))
    assert x.grad.shape == (3, 0)


def test_max_of_an_empty_dim_is_an_error_naming_the_dim():
    with raises(ValueError, "max: cannot take the max of an empty tensor of shape (3, 0) over dim 1, which has size 0"):
        mg.zeros(3, 0).max(1)
    with raises(ValueError, "max: cannot take the max of an empty tensor of shape (0, 3) over dim 0"):
        mg.zeros(0, 3).max()
    assert mg.zeros(0, 3).max(1).shape == (0,)        # the reduced dim is not empty: an empty result


def test_empty_reductions_match_pytorch():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: the comparison with it is optional")
    ours, theirs = mg.zeros(3, 0), torch.zeros(3, 0)
    np.testing.assert_array_equal(ours.logsumexp(1).numpy(), torch.logsumexp(theirs, 1).numpy())
    np.testing.assert_array_equal(ours.mean(1).numpy(), theirs.mean(1).numpy())
    np.testing.assert_array_equal(ours.sum(1).numpy(), theirs.sum(1).numpy())
    assert ours.softmax(1).shape == tuple(torch.softmax(theirs, 1).shape)
    assert mg.zeros(0, 3).max(1).shape == tuple(torch.zeros(0, 3).amax(1).shape)
    with pytest.raises(IndexError):
        theirs.amax(1)                           # PyTorch refuses it too (minigrad: a ValueError)
