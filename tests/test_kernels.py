"""How the ops reach their kernels: one dispatch (``kernels.for_arrays``) over kernel families whose modules
share one interface, and size checks in front of every compiled kernel."""
from __future__ import annotations

import ast
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

import minigrad
from minigrad import kernels

SOURCE = pathlib.Path(minigrad.__file__).parent


@pytest.mark.parametrize("family", sorted(kernels.FAMILIES))
def test_every_module_of_a_family_has_the_family_interface(family):
    reference, fast = kernels.FAMILIES[family]
    for name in (reference, *fast):
        module = kernels.module(name)
        missing = [f for f in kernels.INTERFACES[family] if not callable(getattr(module, f, None))]
        assert not missing, f"kernels/{name}.py lacks {missing} of the {family} interface"
    assert kernels.module(reference).supports(np.zeros(2, np.float16)), "a reference module handles any array"


def test_dispatch_picks_fast_modules_where_they_apply_and_the_reference_otherwise():
    f32, f64 = np.zeros((1, 1, 2, 2), np.float32), np.zeros((1, 1, 2, 2))
    f16 = f32.astype(np.float16)
    with kernels.use("fast"):
        assert kernels.for_arrays("conv", f32) is kernels.module("conv_cpu")
        assert kernels.for_arrays("norm", f32, f32) is kernels.module("norm_cpu")
        assert kernels.for_arrays("elementwise", f64) is kernels.module("elementwise_cpu")
        assert kernels.for_arrays("elementwise", f16) is kernels.module("elementwise_reference")
        assert kernels.for_arrays("elementwise", f32, f64) is kernels.module("elementwise_reference")
        assert kernels.for_arrays("optim", f32, f32, f32, f32) is kernels.module("optim_cpu")
        assert kernels.for_arrays("optim", f32, f32[..., ::2], f32[..., ::2], f32) is kernels.module("optim_reference")
    with kernels.use("reference"):
        for family, (reference, _) in kernels.FAMILIES.items():
            assert kernels.for_arrays(family, f32) is kernels.module(reference)
    with pytest.raises(ValueError, match="unknown kernel family 'fft'"):
        kernels.for_arrays("fft", f32)


def _kernel_references(path):
    """Names under ``kernels`` that a source file uses: ``kernels.<name>`` attributes and
    ``from ..kernels import <name>`` / ``from ..kernels.<name> import ...`` imports."""
    tree = ast.parse(path.read_text())
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "kernels":
            used.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and node.module and "kernels" in node.module.split("."):
            parts = node.module.split(".")
            if parts[-1] != "kernels":
                used.add(parts[-1])
            else:
                used.update(alias.name for alias in node.names)
    return used


def test_ops_and_optimizers_reach_kernels_only_through_the_dispatch():
    files = sorted((SOURCE / "ops").glob("*.py")) + [SOURCE / "optim.py", SOURCE / "functional.py"]
    allowed = {"for_arrays", "block_bytes"}
    for path in files:
        stray = _kernel_references(path) - allowed
        assert not stray, f"{path.relative_to(SOURCE)} reaches kernels through {sorted(stray)}; use kernels.for_arrays"


def test_kernel_modules_are_named_by_what_they_compute():
    names = {p.stem for p in (SOURCE / "kernels").glob("*.py")} - {"__init__", "checks"}
    listed = {n for reference, fast in kernels.FAMILIES.values() for n in (reference, *fast)}
    assert names == listed, f"kernel modules outside a family: {sorted(names - listed)}"
    for name in names:
        family = next(f for f, (r, fast) in kernels.FAMILIES.items() if name in (r, *fast))
        assert name == "im2col" or name.startswith(family + "_"), f"kernels/{name}.py does not say it is {family}"


# ----------------------------------------------------------------------------- buffer sizes


def test_wrong_buffer_sizes_are_refused_before_the_compiled_code_runs():
    from minigrad.kernels import conv_cpu, elementwise_cpu, norm_cpu, optim_cpu

    def refused(kernel, *parts):
        return pytest.raises(ValueError, match=".*".join(re.escape(p) for p in (kernel,) + parts))

    x = np.ones((2, 3, 4, 4), np.float32)
    with refused("col2im", "column matrix of shape (27, 5)", "(2, 3, 4, 4)"):
        conv_cpu.col2im(np.zeros((27, 5), np.float32), x.shape, (3, 3), (1, 1), (1, 1))
    with refused("col2im: argument bias has shape (2,)", "needs shape (3,)"):
        conv_cpu.col2im(conv_cpu.im2col(x, (3, 3), (1, 1), (1, 1)), x.shape, (3, 3), (1, 1), (1, 1),
                        bias=np.zeros(2, np.float32))
    with refused("from_channel_rows: argument rows has shape (3, 31)", "needs shape (3, 32)"):
        conv_cpu.from_channel_rows(np.zeros((3, 31), np.float32), 2, 4, 4)
    with refused("im2col: argument x must be a 4-D (N, C, H, W) array, got shape (3, 4, 4)"):
        conv_cpu.im2col(x[0], (3, 3), (1, 1), (0, 0))
    with refused("channel_sum: argument x must be a 4-D"):
        conv_cpu.channel_sum(x[0])

    a = np.ones((4, 3, 5))
    with refused("normalize: argument mean has shape (2,)", "needs shape (3,)"):
        norm_cpu.normalize(a, np.zeros(2), np.ones(3), np.zeros(3))
    with refused("backward_sums: argument g has shape (4, 3, 4)", "needs shape (4, 3, 5)"):
        norm_cpu.backward_sums(a[..., :4], a, np.zeros(3), np.ones(3))
    with refused("training_dx: argument mean_gxhat has shape (4,)", "needs shape (3,)"):
        norm_cpu.training_dx(a, a, np.zeros(3), np.ones(3), np.ones(3), np.zeros(3), np.zeros(4))
    with refused("channel_stats: activations must have shape (N, C, ...), got shape (5,)"):
        norm_cpu.channel_stats(np.ones(5))

    p = np.ones((3, 2), np.float32)
    with refused("adam_update: argument v has shape (2, 3)", "needs shape (3, 2)"):
        optim_cpu.adam_update(p, p, p.copy(), np.ones((2, 3), np.float32), 0.9, 0.999, 1e-3, 1e-8, 1)
    with refused("leaky_relu_backward: argument grad has shape (3,)", "needs shape (3, 2)"):
        elementwise_cpu.leaky_relu_backward(np.ones(3), np.ones((3, 2)), 0.1)


# ----------------------------------------------------------------------------- numba bounds checking

BOUNDS_CHECKED_TESTS = [
    "tests/test_conv_kernels.py",
    "tests/test_fused_cpu_kernels.py",
    "tests/test_norm.py::test_numba_kernels_agree_with_numpy_reference",
    "tests/test_dropout.py::test_numba_kernel_equals_the_reference_bit_for_bit",
    "tests/test_kernels.py::test_out_of_range_indices_are_index_errors_under_bounds_checking",
]


@pytest.mark.skipif(os.environ.get("NUMBA_BOUNDSCHECK") != "1", reason="runs inside the bounds-checked subprocess")
def test_out_of_range_indices_are_index_errors_under_bounds_checking():
    """Under NUMBA_BOUNDSCHECK=1 the kernels run serially with every index checked: handed too small a
    buffer directly (past the wrappers' size checks), a kernel raises IndexError instead of writing past it."""
    from minigrad.kernels import checks, conv_cpu, elementwise_cpu, norm_cpu, optim_cpu

    assert checks.PARALLEL is False
    x = np.ones((2, 3, 4))
    short = np.ones(2)
    with pytest.raises(IndexError):
        conv_cpu._channel_sum(x, np.empty(2))                               # a store past the end
    with pytest.raises(IndexError):
        norm_cpu._normalize(x, short, np.ones(3), np.ones(3), np.empty_like(x))  # a load past the end
    with pytest.raises(IndexError):
        elementwise_cpu._leaky_relu(np.ones(5), 0.1, np.empty(3))
    with pytest.raises(IndexError):
        optim_cpu._adam(*(np.ones(4),) * 3, np.ones(3), 0.9, 0.1, 0.999, 0.001, 0.1, 1.0, 1.0, 1e-8, False,
                        np.empty(4))


def test_kernel_tests_pass_with_numba_bounds_checking(tmp_path):
    """The numba kernel tests again, in a subprocess with NUMBA_BOUNDSCHECK=1 and a numba cache of its own (so
    the checked, serial compilations never replace the normal ones in minigrad/kernels/__pycache__)."""
    root = SOURCE.parent
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"),
               NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env.pop("MINIGRAD_KERNELS", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hypothesis-profile=ci",
         "-x", *BOUNDS_CHECKED_TESTS],
        cwd=root, env=env, capture_output=True, text=True, timeout=300)
    tail = (result.stdout + result.stderr)[-3000:]
    assert result.returncode == 0, f"bounds-checked kernel tests failed:\n{tail}"
    assert " passed" in result.stdout and "failed" not in result.stdout, tail
