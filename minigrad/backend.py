"""Devices and array modules.

minigrad keeps every tensor's values in a plain array: a ``numpy.ndarray`` on the ``"cpu"`` device and a
``cupy.ndarray`` on ``"cuda"``. This module is the only place that maps one to the other. CuPy is imported
lazily, the first time a CUDA array is asked for, so the CPU path never needs it installed. A CuPy array
made before that (the caller imported CuPy first) is still recognised: the module already in
``sys.modules`` is the one minigrad would import.

Ops never move data between devices: they take the array module from the arrays they are given
(:func:`array_module`), so the same op code runs on NumPy and on CuPy.

Whether the GPU works is :func:`cuda_status`: a real smoke test (an elementwise kernel, which CuPy compiles
with NVRTC; a matrix product, cuBLAS; a random draw, cuRAND; and the results read back), with the reason
when it fails. :func:`cuda_available` is its yes/no.

The tests run the whole CUDA path on a NumPy-backed stand-in for CuPy (``tests/fake_cupy.py``), installed
with :func:`set_cupy_module`; nothing else calls it.
"""
from __future__ import annotations

import sys

import numpy as np

DEVICES = ("cpu", "cuda")

_cupy = None     # the CUDA array module once imported (or set by set_cupy_module)
_status = None   # (module, (ok, reason)): the last cuda_status() result, for that module

INSTALL_HINT = ("install minigrad with the cuda extra, e.g. pip install -e '.[cuda]' (README.md, 'Set up', "
                "says which wheel fits your driver)")


def cupy_module():
    """Return the ``cupy`` module, importing it on first use, with a clear error if it cannot be imported."""
    global _cupy
    if _cupy is None:
        try:
            import cupy  # noqa: PLC0415 (lazy on purpose)
        except ImportError as exc:
            raise RuntimeError(f"device 'cuda' needs CuPy, which cannot be imported ({exc}): {INSTALL_HINT}") from exc
        _cupy = cupy
    return _cupy


def set_cupy_module(module) -> None:
    """Use ``module`` as the CUDA array module from now on; ``None`` goes back to importing ``cupy`` on first
    use. For tests: ``tests/fake_cupy.py`` installs its NumPy-backed stand-in this way. Arrays made with the
    previous module are not converted, and the cached :func:`cuda_status` is forgotten."""
    global _cupy, _status
    _cupy = module
    _status = None


def _loaded_cupy():
    """The CUDA array module if it is loaded (imported by minigrad, set for tests, or imported by the caller),
    else None. Never imports anything."""
    return _cupy if _cupy is not None else sys.modules.get("cupy")


def _is_device_array(x) -> bool:
    cp = _loaded_cupy()
    device_type = getattr(cp, "ndarray", None)   # None while a module is half imported
    return device_type is not None and isinstance(x, device_type)


# ------------------------------------------------------------------------------------------ the smoke test
def _smoke_test(cp):
    """Run CuPy through what minigrad needs, stage by stage; return None or the reason of the first failure."""
    try:
        count = cp.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - no driver, or a driver older than the CUDA runtime
        return f"CuPy finds no usable CUDA device or driver ({type(exc).__name__}: {exc}); is nvidia-smi working?"
    if count < 1:
        return "CuPy sees no CUDA device (cudaGetDeviceCount returned 0)"
    sync = cp.cuda.Device().synchronize
    stages = (
        ("an elementwise kernel failed: CuPy compiles each kernel with NVRTC, the CUDA runtime compiler "
         "(missing, or not matching the driver?)",
         lambda: cp.arange(8, dtype=cp.float32) * cp.float32(2) + cp.float32(1)),
        ("a matrix product failed: cuBLAS is missing or does not work",
         lambda: cp.matmul(cp.ones((4, 8), dtype=cp.float32), cp.ones((8, 2), dtype=cp.float32))),
        ("a random draw failed: cuRAND is missing or does not work",
         lambda: cp.random.RandomState(0).standard_normal((16,), dtype=cp.float32)),
    )
    results = []
    for what, stage in stages:
        try:
            results.append(stage())
            sync()
        except Exception as exc:  # noqa: BLE001 - the stage names what broke; the exception says how
            return f"{what} ({type(exc).__name__}: {exc})"
    try:
        values, product, draws = (cp.asnumpy(r) for r in results)
    except Exception as exc:  # noqa: BLE001
        return f"reading results back from the GPU failed ({type(exc).__name__}: {exc})"
    if not (np.array_equal(values, np.arange(8) * 2 + 1) and np.array_equal(product, np.full((4, 2), 8.0))
            and np.isfinite(draws).all() and draws.std() > 0):
        return "the GPU returned wrong results for the smoke test (elementwise, matmul or random draw)"
    return None


def cuda_status() -> tuple:
    """``(ok, reason)``: whether the CUDA device works for minigrad, and why not when it does not.

    Runs a real smoke test, once per process (the result is cached): CuPy imports, a device is there, an
    elementwise kernel compiles and runs (NVRTC), a matrix product runs (cuBLAS), a random draw works
    (cuRAND), and the results read back right. ``reason`` is ``""`` when everything works, else one sentence
    naming the stage that failed and the error it raised.
    """
    global _status
    if _status is not None and _status[0] is _loaded_cupy():
        return _status[1]
    try:
        cp = cupy_module()
    except Exception as exc:  # noqa: BLE001 - an ImportError inside CuPy (missing CUDA libraries) too
        cause = exc.__cause__ or exc
        result = (False, f"CuPy cannot be imported ({type(cause).__name__}: {cause}); {INSTALL_HINT}")
        _status = (_loaded_cupy(), result)
        return result
    try:
        reason = _smoke_test(cp)
    except Exception as exc:  # noqa: BLE001 - anything else the test did not foresee
        reason = f"the CUDA smoke test failed ({type(exc).__name__}: {exc})"
    result = (reason is None, reason or "")
    _status = (cp, result)
    return result


def cuda_available() -> bool:
    """True when the CUDA device works for minigrad (:func:`cuda_status` says why not otherwise)."""
    return cuda_status()[0]


# ----------------------------------------------------------------------------------- devices and arrays
def check_device(device) -> str:
    """Normalise a device name (``"cpu"``, ``"cuda"``, ``"cuda:0"``) to ``"cpu"`` or ``"cuda"``."""
    name = str(device)
    if name.startswith("cuda"):
        return "cuda"
    if name == "cpu":
        return "cpu"
    raise ValueError(f"unknown device {device!r}: expected 'cpu' or 'cuda'")


def module_for(device: str):
    """The array module (numpy or cupy) that holds a device's arrays."""
    return np if check_device(device) == "cpu" else cupy_module()


def is_array(x) -> bool:
    """True for a NumPy or a CuPy array (not for NumPy scalars, lists or Tensors). A CuPy array made before
    minigrad imported CuPy counts too."""
    return isinstance(x, np.ndarray) or _is_device_array(x)


def device_of(array) -> str:
    """``"cpu"`` for a NumPy array, ``"cuda"`` for a CuPy array (wherever it was made)."""
    if isinstance(array, np.ndarray) or np.isscalar(array):
        return "cpu"
    if _is_device_array(array):
        return "cuda"
    raise TypeError(f"expected a numpy or cupy array, got {type(array).__name__}")


def array_module(*arrays):
    """The array module of the given arrays: cupy if any of them lives on the GPU, else numpy."""
    for a in arrays:
        if not isinstance(a, np.ndarray) and _is_device_array(a):
            return _loaded_cupy()
    return np


def to_device(array, device: str):
    """Copy ``array`` to ``device`` (no copy when it is already there)."""
    device = check_device(device)
    if device == "cpu":
        if isinstance(array, np.ndarray):
            return array
        return array.get()
    cp = cupy_module()
    return cp.asarray(array)


def to_numpy(array) -> np.ndarray:
    """Always a NumPy array (copies from the GPU)."""
    return array if isinstance(array, np.ndarray) else to_device(array, "cpu")
