"""How the ops reach their kernels: one dispatch (``kernels.for_arrays``) over kernel families whose modules
share one interface, and size checks in front of every compiled kernel."""
from __future__ import annotations

import ast
import pathlib

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
