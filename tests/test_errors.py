"""Bad input gets a clear ValueError/TypeError naming the op, the argument and the shapes, never a
traceback from deep inside NumPy. Each test asserts on the message."""
import re

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F


def t(*shape, dtype=np.float32, requires_grad=False):
    return mg.tensor(np.ones(shape), dtype=dtype, requires_grad=requires_grad)


def raises(exc, *parts):
    """pytest.raises with every part required (in order) in the message; parts are literal text."""
    return pytest.raises(exc, match=".*".join(re.escape(p) for p in parts))


# ----------------------------------------------------------------------------- matmul / linear


def test_matmul_with_mismatched_inner_dims():
    with raises(ValueError, "matmul", "(2, 3)", "(4, 5)", "3 columns", "4 rows"):
        t(2, 3) @ t(4, 5)
    with raises(ValueError, "matmul", "(3,)", "(2,)"):
        t(3) @ t(2)


def test_matmul_with_batch_dims_that_do_not_broadcast():
    with raises(ValueError, "matmul: batch dims", "(2, 3, 4)", "(5, 4, 2)"):
        t(2, 3, 4) @ t(5, 4, 2)


def test_matmul_with_a_0d_operand():
    with raises(ValueError, "matmul", "at least 1 dim", "()", "(3,)"):
        t() @ t(3)


def test_linear_shape_and_dtype_errors():
    with raises(ValueError, "linear: input of shape (2, 3)", "weight of shape (4, 5)"):
        F.linear(t(2, 3), t(4, 5))
    with raises(ValueError, "linear: bias has shape (3,)", "expected (4,)"):
        F.linear(t(2, 5), t(4, 5), t(3))
    with raises(TypeError, "linear", "input float32", "weight float64"):
        F.linear(t(2, 5), t(4, 5, dtype=np.float64))
    with raises(TypeError, "linear: weight must be a Tensor", "ndarray"):
        F.linear(t(2, 5), np.ones((4, 5)))


# ----------------------------------------------------------------------------- elementwise


@pytest.mark.parametrize("op, name", [(lambda a, b: a + b, "add"), (lambda a, b: a - b, "sub"),
                                      (lambda a, b: a * b, "mul"), (lambda a, b: a / b, "div"),
                                      (lambda a, b: a ** b, "pow")])
def test_elementwise_ops_with_shapes_that_do_not_broadcast(op, name):
    with raises(ValueError, f"{name}: shapes (2, 3) and (4,) cannot be broadcast together"):
        op(t(2, 3), t(4))


def test_unsupported_operands():
    with raises(TypeError, "add: unsupported operand of type str"):
        t(2) + "a"
    with raises(TypeError, "pow: unsupported exponent of type str"):
        t(2) ** "a"


# ----------------------------------------------------------------------------- autograd


def test_an_integer_tensor_cannot_require_grad():
    with raises(TypeError, "requires_grad", "floating-point", "int64", "(2,)"):
        mg.tensor([1, 2], requires_grad=True)
    with raises(TypeError, "requires_grad", "int64"):
        mg.tensor([[1, 2]]).requires_grad_()


def test_backward_on_a_non_scalar_without_a_gradient():
    y = t(2, 3, requires_grad=True) * 2
    with raises(RuntimeError, "backward", "one-element output", "shape (2, 3)", "gradient="):
        y.backward()


def test_backward_on_a_tensor_without_a_graph():
    with raises(RuntimeError, "backward", "does not require grad"):
        t(3).sum().backward()


# ----------------------------------------------------------------------------- shape ops


def test_reshape_to_a_different_size():
    with raises(ValueError, "reshape", "shape (2, 3)", "6 elements", "(4,)"):
        t(2, 3).reshape(4)


def test_cat_with_mismatched_shapes_or_dtypes():
    with raises(ValueError, "cat", "same shape except along dim 0", "(2, 3)", "(2, 4)"):
        mg.cat([t(2, 3), t(2, 4)])
    with raises(ValueError, "cat", "float32", "float64"):
        mg.cat([t(2, 3), t(2, 3, dtype=np.float64)])
    with raises(ValueError, "cat: dim 2 is out of range", "2 dims"):
        mg.cat([t(2, 3), t(2, 3)], dim=2)
    with raises(TypeError, "cat", "non-empty sequence of Tensors"):
        mg.cat([])


def test_stack_with_mismatched_shapes():
    with raises(ValueError, "stack", "same shape", "(2, 3)", "(3, 2)"):
        mg.stack([t(2, 3), t(3, 2)])


def test_permute_transpose_and_dims_out_of_range():
    with raises(ValueError, "permute", "(0, 0)", "not a permutation", "(2, 3)"):
        t(2, 3).permute(0, 0)
    with raises(ValueError, "transpose", "(0, 2)", "out of range", "(2, 3)"):
        t(2, 3).transpose(0, 2)
    with raises(ValueError, "sum: dim 2 is out of range", "2 dims"):
        t(2, 3).sum(dim=2)
    with raises(ValueError, "mean", "repeats an axis"):
        t(2, 3).mean(dim=(1, -1))
    with raises(ValueError, "softmax", "0-d"):
        t().softmax(0)


def test_dims_out_of_range_are_errors_not_wrapped():
    with raises(ValueError, "squeeze: dim 5 is out of range for shape (2, 1)", "[-2, 1]"):
        t(2, 1).squeeze(5)
    with raises(ValueError, "unsqueeze: dim 3 is out of range for shape (2, 1)", "[-3, 2]"):
        t(2, 1).unsqueeze(3)
    with raises(ValueError, "flatten: start_dim 1 comes after end_dim 0", "(2, 1)"):
        t(2, 1).flatten(1, 0)
    with raises(ValueError, "permute: dims (0, 3)", "(2, 1)"):
        t(2, 1).permute(0, 3)           # 3 would wrap to 1 if taken modulo the number of dims


def test_getitem_out_of_range():
    with raises(IndexError, "getitem", "shape (2, 3)"):
        t(2, 3)[5]
    with raises(IndexError, "getitem", "shape (2, 3)"):
        t(2, 3)[np.array([0, 7])]


def test_pad_arguments():
    with raises(ValueError, "pad", "even length", "(1,)"):
        F.pad(t(2, 3), (1,))
    with raises(ValueError, "pad", "at most 2 * 2", "(1, 1, 1, 1, 1, 1)"):
        F.pad(t(2, 3), (1, 1, 1, 1, 1, 1))
    with raises(ValueError, "pad: negative padding", "(-1, 0)"):
        F.pad(t(2, 3), (-1, 0))


def test_reductions_that_need_floats_or_elements():
    with raises(TypeError, "mean", "floating-point", "int64"):
        mg.tensor([1, 2, 3]).mean()
    with raises(ValueError, "max", "empty", "(0, 3)"):
        t(0, 3).max()


# ----------------------------------------------------------------------------- losses


def test_cross_entropy_target_out_of_range():
    with raises(ValueError, "cross_entropy", "target values must lie in [0, 3)", "(2, 3)"):
        F.cross_entropy(t(2, 3), np.array([0, 3]))
    with raises(ValueError, "cross_entropy", "[0, 3)"):
        F.cross_entropy(t(2, 3), np.array([-1, 0]))


def test_cross_entropy_shapes_and_types():
    with raises(ValueError, "cross_entropy: logits must be (N, C)", "(3,)"):
        F.cross_entropy(t(3), np.array([0]))
    with raises(ValueError, "cross_entropy: target", "shape (2,)", "shape (3,)"):
        F.cross_entropy(t(2, 3), np.array([0, 1, 2]))
    with raises(ValueError, "cross_entropy: target", "integer", "float"):
        F.cross_entropy(t(2, 3), np.array([0.0, 1.0]))
    with raises(ValueError, "cross_entropy: sample_weight must have shape (2,)", "(3,)"):
        F.cross_entropy(t(2, 3), np.array([0, 1]), sample_weight=np.ones(3))
    with raises(ValueError, "cross_entropy: reduction", "'avg'"):
        F.cross_entropy(t(2, 3), np.array([0, 1]), reduction="avg")


def test_bce_with_logits_shapes_and_reduction():
    with raises(ValueError, "binary_cross_entropy_with_logits", "(3,)", "(2, 3)"):
        F.binary_cross_entropy_with_logits(t(2, 3), t(3))
    with raises(ValueError, "binary_cross_entropy_with_logits: reduction", "'avg'"):
        F.binary_cross_entropy_with_logits(t(2, 3), 0.5, reduction="avg")


# ----------------------------------------------------------------------------- tensors


def test_tensor_creation_and_conversion_errors():
    with raises(ValueError, "unknown device 'tpu'"):
        mg.tensor([1.0], device="tpu")
    with raises(TypeError, "tensor", "str"):
        mg.tensor("abc")
    with raises(ValueError, "item", "one element", "(2,)"):
        t(2).item()
    with raises(RuntimeError, "bool", "(2,)", "ambiguous"):
        bool(t(2))


def test_functional_refuses_non_tensors():
    with raises(TypeError, "relu: input must be a Tensor", "list"):
        F.relu([1.0, 2.0])
    with raises(TypeError, "softmax: input must be a Tensor"):
        F.softmax(np.ones(3), 0)
