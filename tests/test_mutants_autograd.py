"""minigrad.autograd: the cases that mutation testing found unchecked (docs/testing.md).

The engine's contract where the rest of the suite did not look: the grad mode is a bool and is on in a
new thread (the mode is per thread; mutmut's forked workers inherit the parent's), an op may return
``None`` for an input that requires a gradient without stopping the walk for the others, and ``.grad``
is always a C-contiguous array, also when the gradient reaching a leaf is a transposed view; a gradient
array without a ``writeable`` flag (CuPy's have none) is handed on as it is; tensors of two devices are
refused before the op runs (on the CuPy stand-in of ``fake_cupy.py``).
"""
import threading

import numpy as np
import pytest

import minigrad as mg
from minigrad import Function

from fake_cupy import fake_cuda  # noqa: F401  (fixture)


def test_the_grad_mode_is_a_bool_inside_and_after_the_blocks():
    assert mg.is_grad_enabled() is True
    with mg.no_grad():
        assert mg.is_grad_enabled() is False
        with mg.enable_grad():
            assert mg.is_grad_enabled() is True
        assert mg.is_grad_enabled() is False
    assert mg.is_grad_enabled() is True


def test_a_new_thread_starts_with_gradients_on_whatever_another_thread_does():
    seen = {}

    def worker():
        seen["enabled"] = mg.is_grad_enabled()
        x = mg.tensor(np.array([1.0, 2.0]), requires_grad=True)
        (x * x).sum().backward()
        seen["grad"] = x.grad.numpy().tolist()

    with mg.no_grad():                             # the mode is per thread: this block is not the worker's
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
    assert seen == {"enabled": True, "grad": [2.0, 4.0]}


class _SecondOnly(Function):
    """a + b whose backward gives b its gradient and ``None`` to a (as an op does for an input it has no
    gradient for)."""

    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, grad):
        return None, grad


class _FirstOnly(_SecondOnly):
    @staticmethod
    def backward(ctx, grad):
        return grad, None


def test_an_input_without_a_gradient_does_not_stop_the_walk():
    # x reaches the output through two intermediates; the op hands one of them None. Whichever of the two
    # the walk meets first, x must still get the other's gradient.
    for op, expected in ((_SecondOnly, 3.0), (_FirstOnly, 2.0)):
        x = mg.tensor(np.array([1.0, -2.0]), requires_grad=True)
        op.apply(x * 2.0, x * 3.0).sum().backward()
        np.testing.assert_array_equal(x.grad.numpy(), [expected, expected])


def test_grad_is_c_contiguous_when_the_incoming_gradient_is_a_transposed_view():
    x = mg.tensor(np.arange(12.0).reshape(3, 4), requires_grad=True)
    c = mg.tensor(np.random.default_rng(0).normal(size=(4, 3)))
    (x.permute(1, 0) * c).sum().backward()                # permute's backward hands x a transposed view
    assert x.grad.data.flags["C_CONTIGUOUS"] and x.grad.data.flags["OWNDATA"]
    np.testing.assert_array_equal(x.grad.numpy(), c.numpy().T)


class _Flags:
    """Array flags without a ``writeable`` entry (CuPy's have none), and that take no new attribute."""

    __slots__ = ("c_contiguous",)

    def __init__(self):
        self.c_contiguous = True


class _NoWriteableFlag(np.ndarray):
    @property
    def flags(self):
        return _Flags()


def test_a_gradient_array_without_a_writeable_flag_is_handed_on_as_it_is():
    from minigrad import autograd

    x = mg.tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    y = x * 2.0
    seen = []

    class Spy(Function):
        @staticmethod
        def forward(ctx, a):
            return a.copy()

        @staticmethod
        def backward(ctx, grad):
            seen.append(type(grad))
            return grad

    z = Spy.apply(y)
    autograd.backward(z, np.array([1.0, -1.0, 0.5]).view(_NoWriteableFlag))
    assert seen == [_NoWriteableFlag]
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, -2.0, 1.0])


def test_an_op_on_tensors_of_two_devices_is_refused_before_it_runs(fake_cuda):
    cpu, gpu = mg.tensor(np.ones(3)), mg.tensor(np.ones(3), device="cuda")
    for attempt in (lambda: cpu + gpu, lambda: gpu * cpu, lambda: mg.cat([cpu, gpu])):
        with pytest.raises(ValueError, match=r"must be on one device, got (cpu \(3,\), cuda|cuda \(3,\), cpu) \(3,\)$"):
            attempt()
    assert (gpu + gpu).device == "cuda"
