"""The autograd engine (minigrad/autograd.py): graph walk, accumulation, memory, grad modes, checks."""
import gc
import sys
import weakref

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import Function, Tensor
from minigrad.autograd import unbroadcast


def _leaf(*shape, seed=0, dtype=np.float64):
    return mg.tensor(np.random.default_rng(seed).standard_normal(shape), dtype=dtype, requires_grad=True)


def _graph_tensors(out):
    """Every tensor of the graph behind ``out`` (out included), found through the nodes."""
    seen, stack, found = set(), [out], []
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        found.append(t)
        if t._node is not None and t._node.inputs is not None:
            stack.extend(t._node.inputs)
    return found


# ----------------------------------------------------------------------------- the walk


def test_a_chain_of_100000_ops_backpropagates_without_recursion():
    x = mg.tensor(1.5, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = -y
    limit = sys.getrecursionlimit()
    y.backward()
    assert sys.getrecursionlimit() == limit
    assert x.grad.shape == () and x.grad.item() == 1.0   # an even number of negations


def test_a_tensor_used_twice_gets_both_contributions():
    x = _leaf(3)
    (x * x).sum().backward()                      # d(x^2)/dx = 2x: both operands are x
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy())

    a = _leaf(3, seed=1)
    b = a.exp()                                   # a diamond: b feeds two ops, both feed the output
    (b * 3 + b * b).sum().backward()
    e = np.exp(a.numpy())
    np.testing.assert_allclose(a.grad.numpy(), (3 + 2 * e) * e)


def test_add_of_a_tensor_with_itself():
    x = _leaf(2, 2)
    (x + x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2.0)


def test_leaf_gradients_accumulate_across_backward_calls():
    x = _leaf(3)
    (x * 2).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 5.0)
    x.zero_grad_()
    assert x.grad is None


def test_each_leaf_gets_its_own_writable_gradient_array():
    a, b = _leaf(3), _leaf(3, seed=1)
    (a + b).sum().backward()              # Add hands the same array to both inputs
    assert a.grad.data is not b.grad.data
    assert a.grad.data.flags.writeable and b.grad.data.flags.writeable
    a.grad.data *= 0                      # an in-place edit (gradient clipping) must not leak into b
    np.testing.assert_allclose(b.grad.numpy(), 1.0)

    g = np.ones(3)
    c = _leaf(3)
    c.backward(gradient=g)                # the caller's array is not adopted as .grad
    assert c.grad.data is not g


def test_zero_dim_leaf_gets_a_zero_dim_gradient():
    x = mg.tensor(2.0, requires_grad=True)
    (x * x * x).backward()
    assert x.grad.shape == () and x.grad.item() == pytest.approx(12.0)


def test_gradients_keep_each_inputs_dtype():
    a = _leaf(3, dtype=np.float32)
    b = _leaf(3, seed=1, dtype=np.float64)
    out = a * b + 2
    assert out.dtype == np.float64
    out.sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64
    np.testing.assert_allclose(a.grad.numpy(), b.numpy(), rtol=1e-6)


def test_retain_grad_keeps_an_intermediate_gradient():
    x = _leaf(3)
    h = x * 2
    h.retain_grad()
    k = x * 3
    (h * k).sum().backward()
    np.testing.assert_allclose(h.grad.numpy(), k.numpy())
    assert k.grad is None                 # not asked for: intermediates keep no gradient


def test_backward_with_an_explicit_gradient():
    x = _leaf(2, 3)
    g = np.arange(6.0).reshape(2, 3)
    (x * 5).backward(gradient=g)
    np.testing.assert_allclose(x.grad.numpy(), 5 * g)
    with pytest.raises(ValueError, match=r"gradient has shape \(3,\) but the tensor has shape \(2, 3\)"):
        (x * 5).backward(gradient=np.ones(3))


def test_only_tensors_that_require_grad_are_visited():
    x = _leaf(3)
    c = mg.tensor(np.ones(3))             # a constant
    out = (x * c + c.exp()).sum()
    out.backward()
    assert c.grad is None
    assert all(t.requires_grad for t in _graph_tensors(out) if t._node is not None)


def test_unbroadcast_sums_over_broadcast_axes():
    g = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_allclose(unbroadcast(g, (3, 1)), g.sum(axis=(0, 2))[:, None])
    np.testing.assert_allclose(unbroadcast(g, (4,)), g.sum(axis=(0, 1)))
    np.testing.assert_allclose(unbroadcast(g, ()), g.sum())
    assert unbroadcast(g, (2, 3, 4)) is g


# ----------------------------------------------------------------------------- grad modes


def test_no_grad_builds_no_graph():
    x = _leaf(3)
    with mg.no_grad():
        y = (x * 2).exp().sum()
        assert not mg.is_grad_enabled()
        with mg.enable_grad():
            z = x * 2
    assert mg.is_grad_enabled()
    assert y.grad_fn is None and not y.requires_grad and y._node is None
    assert z.grad_fn is not None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_no_grad_as_a_decorator_restores_the_mode_even_when_recursive():
    @mg.no_grad()
    def depth(n):
        assert not mg.is_grad_enabled()
        return 0 if n == 0 else 1 + depth(n - 1)

    assert depth(3) == 3
    assert mg.is_grad_enabled()


def test_no_grad_restores_the_mode_after_an_exception():
    with pytest.raises(KeyError):
        with mg.no_grad():
            raise KeyError("boom")
    assert mg.is_grad_enabled()


def test_integer_results_are_not_part_of_the_graph():
    x = _leaf(3)
    assert x.long().grad_fn is None and not x.long().requires_grad
    assert (x > 0).grad_fn is None and x.argmax().grad_fn is None


# ----------------------------------------------------------------------------- memory


def _count_tensors():
    gc.collect()
    # issubclass(type(o)) rather than isinstance: isinstance reads o.__class__, which some foreign
    # objects (torch's deprecated module proxies) answer with a warning.
    return sum(issubclass(type(o), Tensor) for o in gc.get_objects())


def test_after_backward_and_del_no_tensor_of_the_graph_stays_alive():
    w, b = _leaf(4, 3), _leaf(3, seed=1)
    before = _count_tensors()
    x = mg.tensor(np.random.default_rng(2).standard_normal((5, 4)))
    loss = ((x @ w + b).tanh() ** 2).mean()
    refs = [weakref.ref(t) for t in _graph_tensors(loss) if t is not w and t is not b]
    assert len(refs) >= 6
    loss.backward()
    del loss, x
    # Plain reference counting frees everything (the graph has no reference cycles) ...
    assert [r() for r in refs] == [None] * len(refs)
    # ... and the only tensors left are the leaves' two new .grad tensors.
    assert _count_tensors() == before + 2


def test_a_graph_is_freed_by_del_without_backward_too():
    w = _leaf(3, 3)
    out = (w @ w).relu().sum()
    refs = [weakref.ref(t) for t in _graph_tensors(out) if t is not w]
    del out
    assert [r() for r in refs] == [None] * len(refs)


def test_saved_arrays_are_freed_by_backward():
    x = _leaf(1000)
    y = F.softplus(x * 2.0)               # saves its input, an intermediate array that nothing else holds
    node = y._node
    mask = weakref.ref(node.saved_arrays[0])
    y.sum().backward()
    assert mask() is None
    assert node.released and node.saved_arrays == () and node.inputs is None


def test_intermediate_arrays_are_released_during_the_walk():
    """While backward runs, the results of ops already passed are freed: when the first op of a chain
    computes its gradient (last in the walk), the arrays of the later ops are gone."""
    alive_during_walk = []

    class First(Function):
        @staticmethod
        def forward(ctx, a):
            return a * 1.0

        @staticmethod
        def backward(ctx, grad):
            alive_during_walk.extend(r() is not None for r in later)
            return grad

    x = _leaf(100)
    b = First.apply(x).exp()
    c = b.exp()
    later = [weakref.ref(b.data), weakref.ref(c.data)]
    out = c.sum()
    del b, c
    out.backward()
    assert alive_during_walk == [False, False]


def test_retain_graph_keeps_saved_arrays_and_allows_a_second_backward():
    x = _leaf(50)
    y = F.softplus(x * 2.0)               # its saved input is held by the graph alone
    out = (y * y).sum()
    mask = weakref.ref(y._node.saved_arrays[0])
    out.backward(retain_graph=True)
    assert mask() is not None and not y._node.released
    first = x.grad.numpy().copy()
    out.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * first)
    assert mask() is None


def test_a_second_backward_without_retain_graph_is_a_clear_error():
    x = _leaf(3)
    out = (x.exp() * 2).sum()
    out.backward()
    with pytest.raises(RuntimeError, match="already freed.*retain_graph=True"):
        out.backward()


def test_reusing_a_part_of_a_freed_graph_names_the_op():
    x = _leaf(3)
    h = x.exp()
    h.sum().backward()
    with pytest.raises(RuntimeError, match="'exp'"):
        (h * 2).sum().backward()


# ----------------------------------------------------------------------------- the engine's checks


def test_a_backward_with_the_wrong_shape_is_reported_with_the_op():
    class WrongShape(Function):
        name = "wrong_shape"

        @staticmethod
        def forward(ctx, a):
            return a * 2

        @staticmethod
        def backward(ctx, grad):
            return grad[:1]

    with pytest.raises(RuntimeError, match=r"wrong_shape: backward produced a gradient of shape \(1,\).*\(3,\)"):
        WrongShape.apply(_leaf(3)).sum().backward()


def test_a_backward_with_the_wrong_dtype_is_reported():
    class WrongDtype(Function):
        @staticmethod
        def forward(ctx, a):
            return a * 2

        @staticmethod
        def backward(ctx, grad):
            return grad.astype(np.float64)

    with pytest.raises(RuntimeError, match="wrongdtype: .*float64.*float32"):
        WrongDtype.apply(_leaf(3, dtype=np.float32)).sum().backward()


def test_a_backward_with_the_wrong_number_of_gradients_is_reported():
    class TwoForOne(Function):
        @staticmethod
        def forward(ctx, a):
            return a.copy()

        @staticmethod
        def backward(ctx, grad):
            return grad, grad

    with pytest.raises(RuntimeError, match="twoforone: backward returned 2 gradients for 1 inputs"):
        TwoForOne.apply(_leaf(3)).sum().backward()


def test_an_op_cannot_write_into_the_gradient_it_receives():
    class DoublesInPlace(Function):
        @staticmethod
        def forward(ctx, a):
            return a * 1.0

        @staticmethod
        def backward(ctx, grad):
            grad *= 2        # would also change what a sibling op receives (Add gives both the same array)
            return grad

    x = _leaf(3)
    with pytest.raises(ValueError, match="read-only"):
        (DoublesInPlace.apply(x) + x).sum().backward()


def test_apply_refuses_non_tensors():
    class Ident(Function):
        @staticmethod
        def forward(ctx, a):
            return a

    with pytest.raises(TypeError, match="ident: argument 0 must be a Tensor, got ndarray"):
        Ident.apply(np.ones(3))


def test_needs_input_grad_tells_the_op_which_gradients_to_compute():
    seen = []

    class Record(Function):
        @staticmethod
        def forward(ctx, a, b):
            seen.append(ctx.needs_input_grad)
            return a * b

        @staticmethod
        def backward(ctx, grad):
            return grad, grad

    Record.apply(_leaf(2), mg.tensor(np.ones(2)))
    with mg.no_grad():
        Record.apply(_leaf(2), _leaf(2))
    assert seen == [(True, False), (False, False)]


def test_requires_grad_cannot_be_turned_off_on_a_non_leaf():
    y = _leaf(2) * 2
    with pytest.raises(RuntimeError, match="non-leaf"):
        y.requires_grad = False
    assert not y.detach().requires_grad and y.detach().is_leaf


def test_unbroadcasting_happens_only_in_the_engine():
    """Rule 1 of the engine: ops return gradients in the broadcast shape and only autograd.unbroadcast sums
    them down (matmul's batch dims included), so no op module calls it."""
    import ast
    import pathlib

    import minigrad.ops

    for path in sorted(pathlib.Path(minigrad.ops.__file__).parent.glob("*.py")):
        names = {n.id if isinstance(n, ast.Name) else n.attr for n in ast.walk(ast.parse(path.read_text()))
                 if isinstance(n, (ast.Name, ast.Attribute))}
        assert "unbroadcast" not in names, f"ops/{path.name} unbroadcasts a gradient itself"


def test_matmul_batch_gradients_are_summed_by_the_engine():
    rng = np.random.default_rng(0)
    a = mg.tensor(rng.standard_normal((2, 1, 3, 4)), requires_grad=True)
    b = mg.tensor(rng.standard_normal((5, 4, 2)), requires_grad=True)
    v = mg.tensor(rng.standard_normal(4), requires_grad=True)
    g = rng.standard_normal((2, 5, 3, 2))
    (a @ b).backward(g)
    np.testing.assert_allclose(a.grad.numpy(), (g @ np.swapaxes(b.numpy(), -1, -2)).sum(1, keepdims=True))
    np.testing.assert_allclose(b.grad.numpy(), (np.swapaxes(a.numpy(), -1, -2) @ g).sum(0))
    gv = rng.standard_normal((2, 1, 3))
    (a @ v).backward(gv)
    np.testing.assert_allclose(v.grad.numpy(), np.einsum("abij,abi->j", a.numpy(), gv))
