"""The Tensor API: creation and dtype rules, promotion, conversions, metadata, and the behaviours the
registry's random cases avoid on purpose (ties of max, repeated indices written out by hand)."""
import numpy as np
import pytest

import minigrad as mg


# ----------------------------------------------------------------------------- creation and dtypes


def test_creation_dtypes_follow_pytorch():
    assert mg.tensor([1.0, 2.0]).dtype == np.float32            # Python floats -> float32
    assert mg.tensor(np.ones(2)).dtype == np.float64            # a float64 array stays float64
    assert mg.tensor(np.ones(2, dtype=np.float32)).dtype == np.float32
    assert mg.tensor([1, 2]).dtype == np.int64                  # Python ints -> int64
    assert mg.tensor([True]).dtype == np.bool_
    assert mg.tensor([1, 2], dtype=np.float64).dtype == np.float64
    assert mg.tensor(3.0).shape == () and mg.tensor(3.0).device == "cpu"


def test_tensor_copies_its_data():
    source = np.ones(3)
    x = mg.tensor(source)
    source[0] = 5.0
    assert x.numpy()[0] == 1.0
    y = mg.tensor(x)
    x.data[1] = 7.0
    assert y.numpy()[1] == 1.0


def test_factories():
    assert mg.zeros(2, 3).shape == (2, 3) and mg.zeros(2, 3).dtype == np.float32
    assert mg.ones((2, 3)).shape == (2, 3)
    np.testing.assert_array_equal(mg.full((2,), 3.5).numpy(), [3.5, 3.5])
    assert mg.zeros_like(mg.tensor(np.ones((2, 2)))).dtype == np.float64
    assert mg.ones(2, requires_grad=True).requires_grad
    assert mg.arange(4).dtype == np.int64
    np.testing.assert_array_equal(mg.arange(1, 7, 2).numpy(), [1, 3, 5])
    np.testing.assert_allclose(mg.arange(0.0, 1.0, 0.25).numpy(), [0, 0.25, 0.5, 0.75])
    assert mg.arange(0.0, 1.0, 0.25).dtype == np.float32        # float arguments -> float32, as torch
    assert mg.randn(3, 4).shape == (3, 4) and mg.randn(3, dtype=np.float64).dtype == np.float64
    r = mg.rand(1000).numpy()
    assert r.min() >= 0 and r.max() < 1 and abs(r.mean() - 0.5) < 0.05


def test_manual_seed_and_rng_state_make_draws_repeatable():
    mg.manual_seed(3)
    a = mg.randn(5).numpy()
    state = mg.get_rng_state()
    b = mg.randn(5).numpy()
    mg.set_rng_state(state)
    np.testing.assert_array_equal(mg.randn(5).numpy(), b)
    mg.manual_seed(3)
    np.testing.assert_array_equal(mg.randn(5).numpy(), a)
    assert not np.array_equal(a, b)


# ----------------------------------------------------------------------------- promotion


def test_python_scalars_take_the_tensors_dtype():
    x = mg.tensor([1.0, 2.0])
    for y in (x * 2, 2 * x, x / 3, 3 / x, x + 0.5, 1 - x, x ** 2, 2.0 ** x, x * np.float64(2)):
        assert y.dtype == np.float32


def test_mixed_float_dtypes_promote_and_gradients_keep_their_dtype():
    a = mg.tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    b = mg.tensor(np.full(3, 2.0), requires_grad=True)
    out = a * b
    assert out.dtype == np.float64
    out.sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64
    np.testing.assert_allclose(a.grad.numpy(), 2.0)


def test_integers_with_floats_and_scalars():
    i = mg.tensor([1, 2])
    assert (i + mg.tensor([0.5, 0.5])).dtype == np.float32      # the float's dtype, as PyTorch
    assert (i + mg.tensor(np.array([0.5, 0.5]))).dtype == np.float64
    assert (i * 2.5).dtype == np.float32 and (i * 2).dtype == np.int64
    np.testing.assert_array_equal((mg.tensor([True, False]) + 1).numpy(), [2, 1])   # counts, not logical or
    assert (mg.tensor([True, False]) + 1).dtype == np.int64


def test_float_to_float_casts_carry_gradients():
    x = mg.tensor(np.array([1.5, -2.5]), requires_grad=True)
    y = x.float()
    assert y.dtype == np.float32 and y.grad_fn is not None
    (y * 2).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_allclose(x.grad.numpy(), 2.0)
    assert x.double() is x and x.to("cpu") is x and x.to(np.float64) is x
    np.testing.assert_array_equal(x.long().numpy(), [1, -2])


# ----------------------------------------------------------------------------- non-differentiable corners


def test_max_splits_the_gradient_among_ties():
    x = mg.tensor([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]], requires_grad=True)
    x.max(dim=1).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]])
    x.zero_grad_()
    x.max().backward()
    np.testing.assert_allclose(x.grad.numpy(), [[0, 0.5, 0.5], [0, 0, 0]])


def test_relu_and_abs_at_zero_have_zero_gradient():
    x = mg.tensor([0.0, 0.0], requires_grad=True)
    (x.relu() + x.abs()).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0])


def test_repeated_indices_add_up():
    x = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x[[0, 0, 2, 0]].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 0.0, 1.0])
    m = mg.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    (m[mg.tensor([1, 1]), mg.tensor([2, 2])] * mg.tensor([1.0, 10.0], dtype=np.float64)).sum().backward()
    np.testing.assert_array_equal(m.grad.numpy(), [[0, 0, 0], [0, 0, 11]])


def test_boolean_mask_indexing():
    x = mg.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    picked = x[x > 2.5]
    np.testing.assert_array_equal(picked.numpy(), [3, 4, 5])
    picked.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 0, 0], [1, 1, 1]])


# ----------------------------------------------------------------------------- conversions and metadata


def test_conversions_and_metadata():
    x = mg.tensor(np.arange(6.0).reshape(2, 3))
    assert x.shape == (2, 3) and x.size() == (2, 3) and x.size(1) == 3 and x.dim() == 2 and x.ndim == 2
    assert x.numel() == 6 and len(x) == 2
    assert x.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert isinstance(x.numpy(), np.ndarray)
    assert x[1, 2].item() == 5.0 and float(x[0, 1]) == 1.0 and int(x[1, 0]) == 3
    assert bool(mg.tensor([1.0])) and not bool(mg.tensor(0.0))
    assert [t.item() for t in mg.tensor([1.0, 2.0])] == [1.0, 2.0]
    with pytest.raises(TypeError, match="len"):
        len(mg.tensor(1.0))


def test_repr_says_what_a_tensor_is():
    assert repr(mg.tensor([1.0, 2.0])) == "tensor([1., 2.], dtype=float32)"
    assert "requires_grad=True" in repr(mg.tensor([1.0], requires_grad=True))
    assert "grad_fn=<mul>" in repr(mg.tensor([1.0], requires_grad=True) * 2)


def test_detach_shares_data_and_leaves_the_graph():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = (x * 2).detach()
    assert not y.requires_grad and y.is_leaf and y.grad_fn is None
    d = x.detach()
    assert d.data is x.data


def test_clone_is_a_copy_in_the_graph():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    c = x.clone()
    assert c.data is not x.data and c.grad_fn is not None
    (c * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 3.0)


def test_comparisons_give_bool_tensors_outside_the_graph():
    x = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    for r in (x > 2, x >= 2, x < 2, x <= 2, x == 2, x != 2):
        assert r.dtype == np.bool_ and r.grad_fn is None
    np.testing.assert_array_equal((x == 2).numpy(), [False, True, False])
    assert hash(x) != hash(mg.tensor([1.0, 2.0, 3.0]))      # hashable by identity (usable in sets)


def test_argmax():
    x = mg.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 1.0]])
    assert x.argmax().item() == 3 and x.argmax().dtype == np.int64
    np.testing.assert_array_equal(x.argmax(dim=1).numpy(), [1, 0])
    assert x.argmax(dim=1, keepdim=True).shape == (2, 1)


def test_reductions_of_a_0d_tensor_accept_dim_0():
    x = mg.tensor(3.0, requires_grad=True)
    for y in (x.sum(0), x.mean(-1), x.max(0), x.sum(dim=0, keepdim=True)):
        assert y.shape == () and y.item() == 3.0
    x.sum(0).backward()
    assert x.grad.shape == () and x.grad.item() == 1.0


def test_shape_helpers():
    x = mg.tensor(np.zeros((2, 1, 3, 1)))
    assert x.squeeze().shape == (2, 3) and x.squeeze(1).shape == (2, 3, 1) and x.squeeze(0).shape == x.shape
    assert x.unsqueeze(-1).shape == (2, 1, 3, 1, 1) and x.unsqueeze(0).shape == (1, 2, 1, 3, 1)
    assert x.flatten().shape == (6,) and x.flatten(1).shape == (2, 3) and x.flatten(0, 1).shape == (2, 3, 1)
    assert x.reshape(3, -1).shape == (3, 2) and x.view((6,)).shape == (6,)
    assert x.permute(3, 2, 1, 0).shape == (1, 3, 1, 2) and x.transpose(0, 2).shape == (3, 1, 2, 1)
    assert mg.tensor(np.zeros((2, 5))).T.shape == (5, 2)
    assert (+x) is x


def test_requires_grad_flag():
    x = mg.tensor([1.0])
    assert not x.requires_grad and x.requires_grad_() is x and x.requires_grad
    x.requires_grad = False
    assert not x.requires_grad
