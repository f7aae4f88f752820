"""Rule 3 of the engine (minigrad/autograd.py): a gradient is kept without a copy exactly when nobody else
holds its memory, and is added into in place only when it is the engine's own.

Fresh arrays an op returns (a product's result, a reshape of one, disjoint parts of one buffer) become
``.grad`` as they are; whatever an op could have handed on instead of a new array - the gradient it
received, its output, what it saved, its inputs' values, another input's gradient - is copied, as is a
non-contiguous or read-only array. Later backward passes add into a ``.grad`` the engine made, in place,
and never into one the caller assigned.
"""
from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
from minigrad.autograd import Function

from fake_cupy import fake_cuda  # noqa: F401  (fixture)


def _leaf(*shape, seed=0):
    return mg.tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=True)


def _returning(make):
    """An op y = x (a copy) whose backward returns ``make(ctx, grad, x)`` as x's gradient."""

    class Op(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x * 2.0)
            ctx.x = x
            return x.copy()

        @staticmethod
        def backward(ctx, grad):
            return make(ctx, grad, ctx.x)

    return Op


def test_a_fresh_gradient_becomes_grad_without_a_copy():
    made = []

    def fresh(ctx, grad, x):
        made.append(grad * 3.0)
        return made[-1]

    x = _leaf(4)
    _returning(fresh).apply(x).sum().backward()
    assert x.grad.data is made[0]
    np.testing.assert_array_equal(x.grad.numpy(), 3.0)


def test_a_reshape_of_a_fresh_array_is_kept_too():
    x = _leaf(2, 3)
    _returning(lambda ctx, g, x: (g * 2.0).reshape(-1).reshape(2, 3)).apply(x).sum().backward()
    assert x.grad.data.base is not None and x.grad.data.flags.c_contiguous   # kept: a view of the new array
    np.testing.assert_array_equal(x.grad.numpy(), 2.0)


@pytest.mark.parametrize("what, make", [
    ("the gradient it received", lambda ctx, g, x: g),
    ("a view of the gradient it received", lambda ctx, g, x: g.reshape(-1).reshape(g.shape)),
    ("a saved array", lambda ctx, g, x: ctx.saved_arrays[0]),
    ("an array attribute of its node", lambda ctx, g, x: ctx.x),
    ("a transposed new array", lambda ctx, g, x: np.ascontiguousarray((g * 1.0).T).T),
    ("a read-only new array", lambda ctx, g, x: _read_only(g * 1.0)),
])
def test_what_an_op_could_hand_on_is_copied(what, make):
    x = _leaf(3, 3)
    op = _returning(make)
    y = op.apply(x)
    seen = []
    original = op.backward

    def spy(ctx, grad):
        out = original(ctx, grad)
        seen.append(out)
        return out

    op.backward = staticmethod(spy)
    y.backward(gradient=np.full((3, 3), 2.0))
    assert not np.shares_memory(x.grad.data, seen[0]), what
    assert x.grad.data.flags.c_contiguous and x.grad.data.flags.writeable


def _read_only(a):
    a.flags.writeable = False
    return a


def test_an_op_returning_its_input_values_does_not_alias_the_callers_array():
    values = np.arange(4.0)
    x = mg.Tensor(values, requires_grad=True)          # no copy: x.data is the caller's array

    class Leak(Function):
        @staticmethod
        def forward(ctx, a):
            ctx.inputs_seen = a
            return a * 1.0

        @staticmethod
        def backward(ctx, grad):
            return ctx.inputs_seen       # the input's own array (as "d(a*a/2)/da = a")

    Leak.apply(x).sum().backward()
    assert x.data is values and not np.shares_memory(x.grad.data, values)
    x.grad.data *= 0
    np.testing.assert_array_equal(values, np.arange(4.0))   # the caller's array is untouched


class _Flags:
    """Array flags without a ``writeable`` entry, as CuPy's: the engine cannot hand such a gradient on
    read-only, so only its memory check keeps it from adopting the array it handed out."""

    __slots__ = ("c_contiguous",)

    def __init__(self):
        self.c_contiguous = True


class _NoWriteableFlag(np.ndarray):
    @property
    def flags(self):
        return _Flags()


def test_without_a_writeable_flag_the_gradient_an_op_received_is_still_copied():
    from minigrad import autograd

    x = _leaf(3)
    y = _returning(lambda ctx, g, x: g).apply(x)
    upstream = np.array([1.0, -1.0, 0.5]).view(_NoWriteableFlag)
    autograd.backward(y, upstream)
    assert not np.shares_memory(x.grad.data, upstream)
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, -1.0, 0.5])


def test_one_new_array_handed_to_two_inputs_is_copied_for_each():
    a, b = _leaf(3), _leaf(3, seed=1)

    class Both(Function):
        @staticmethod
        def forward(ctx, p, q):
            return p + q

        @staticmethod
        def backward(ctx, grad):
            shared = grad * 1.0
            return shared, shared

    Both.apply(a, b).sum().backward()
    assert not np.shares_memory(a.grad.data, b.grad.data)


def test_disjoint_parts_of_one_new_array_are_both_kept():
    a, b = _leaf(3), _leaf(3, seed=1)
    kept = []

    class Split(Function):
        @staticmethod
        def forward(ctx, p, q):
            return p + q

        @staticmethod
        def backward(ctx, grad):
            both = np.concatenate([grad * 2.0, grad * 3.0])
            kept.append(both)
            return both[:3], both[3:]

    Split.apply(a, b).sum().backward()
    assert a.grad.data.base is kept[0] and b.grad.data.base is kept[0]
    np.testing.assert_array_equal(a.grad.numpy(), 2.0)
    np.testing.assert_array_equal(b.grad.numpy(), 3.0)


def test_a_later_backward_adds_into_the_engines_grad_in_place():
    x = _leaf(3)
    (x * 2).sum().backward()
    first = x.grad
    array = first.data
    (x * 3).sum().backward()
    assert x.grad is first and x.grad.data is array
    np.testing.assert_array_equal(x.grad.numpy(), 5.0)


def test_an_assigned_grad_is_never_written_into():
    x = _leaf(3)
    mine = np.ones(3)
    x.grad = mg.Tensor(mine)              # Tensor() does not copy: x.grad holds the caller's array
    (x * 2).sum().backward()
    np.testing.assert_array_equal(mine, 1.0)
    np.testing.assert_array_equal(x.grad.numpy(), 3.0)
    (x * 2).sum().backward()              # the sum is the engine's now: added into in place
    np.testing.assert_array_equal(mine, 1.0)
    np.testing.assert_array_equal(x.grad.numpy(), 5.0)


def test_contributions_are_summed_for_a_tensor_used_many_times():
    x = _leaf(4)
    total = x * 1.0
    for k in range(2, 6):
        total = total + x * float(k)   # x feeds five products: four additions into the running sum
    total.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), 15.0)


def test_on_the_gpu_weight_gradients_are_kept_without_a_copy(fake_cuda):
    rng = np.random.default_rng(0)
    w = mg.tensor(rng.standard_normal((4, 3)).astype(np.float32), device="cuda", requires_grad=True)
    gamma = mg.tensor(np.ones(4, np.float32), device="cuda", requires_grad=True)
    beta = mg.tensor(np.zeros(4, np.float32), device="cuda", requires_grad=True)
    x = mg.tensor(rng.standard_normal((6, 3)).astype(np.float32), device="cuda")
    h = mg.functional.linear(x, w)
    y = mg.functional.batch_norm(h, None, None, gamma, beta, training=True)
    z = mg.functional.linear(x, w)                   # w feeds two ops: its two gradients are summed
    loss = (y * y).sum() + (z * z).sum()
    fake_cuda.reset()
    loss.backward()
    copies = {k: n for k, n in fake_cuda.launch_kinds.items() if "copy" in k or k == "ascontiguousarray"}
    assert copies == {}, copies
    assert all(t.grad.data.flags.c_contiguous for t in (w, gamma, beta))


def test_the_implied_gradient_of_a_scalar_costs_no_launch_and_is_never_adopted(fake_cuda):
    x = mg.tensor(np.array([1.0, 2.0]), device="cuda", requires_grad=True)
    (x * x).sum().backward()
    loss = (x * x).sum()
    fake_cuda.reset()
    loss.backward()
    assert fake_cuda.launch_kinds["ones"] == 0                    # the ones are made once, not per backward
    s = mg.tensor(3.0, requires_grad=True)                         # a leaf as the root: its .grad is a copy
    s.backward()
    s.grad.data += 1.0
    t = mg.tensor(5.0, requires_grad=True)
    t.backward()
    assert t.grad.item() == 1.0 and s.grad.item() == 2.0


def test_an_op_can_add_into_the_engines_running_sum_itself():
    class Scale(Function):
        """y = 3 x, whose backward adds 3 g into the pending sum of x when the engine offers one (rule 4)."""
        adds_into_pending = True
        offered = []

        @staticmethod
        def forward(ctx, x):
            return x * 3.0

        @staticmethod
        def backward(ctx, grad):
            (pending,) = ctx.pending
            Scale.offered.append(pending is not None)
            if pending is None:
                return grad * 3.0
            pending += grad * 3.0
            return pending

    x = _leaf(4)
    (Scale.apply(x) + Scale.apply(x) + Scale.apply(x)).sum().backward()
    assert Scale.offered == [False, True, True]
    np.testing.assert_array_equal(x.grad.numpy(), 9.0)


def test_batch_norm_on_the_gpu_adds_a_second_passs_parameter_gradients_into_the_first(fake_cuda):
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((6, 3, 2, 2)).astype(np.float32) for _ in range(2)]
    grads = {}
    for device in ("cpu", "cuda"):
        w = mg.tensor(np.array([1.0, 2.0, 0.5], np.float32), device=device, requires_grad=True)
        b = mg.tensor(np.zeros(3, np.float32), device=device, requires_grad=True)
        ys = [mg.functional.batch_norm(mg.tensor(x, device=device), None, None, w, b, training=True) for x in xs]
        loss = (ys[0] * ys[0]).sum() + (ys[1] * 2.0).sum()
        fake_cuda.reset()
        loss.backward()
        grads[device] = (w.grad.numpy(), b.grad.numpy(), fake_cuda.launch_kinds["add"])
    np.testing.assert_allclose(grads["cuda"][0], grads["cpu"][0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grads["cuda"][1], grads["cpu"][1], rtol=1e-5, atol=1e-5)
    assert grads["cuda"][2] == 1          # the loss's one addition: none for the weight's and the bias's sums
