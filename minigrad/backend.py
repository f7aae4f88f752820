"""Devices and array modules.

minigrad keeps every tensor's values in a plain array: a ``numpy.ndarray`` on the ``"cpu"`` device and a
``cupy.ndarray`` on ``"cuda"``. This module is the only place that maps one to the other. CuPy is imported
lazily, the first time a CUDA array is asked for, so the CPU path never needs it installed.

Ops never move data between devices: they take the array module from the arrays they are given
(:func:`array_module`), so the same op code runs on NumPy and on CuPy.
"""
from __future__ import annotations

import numpy as np

DEVICES = ("cpu", "cuda")

_cupy = None


def cupy_module():
    """Return the ``cupy`` module, importing it on first use, with a clear error if it cannot work."""
    global _cupy
    if _cupy is None:
        try:
            import cupy  # noqa: PLC0415 (lazy on purpose)
        except ImportError as exc:  # pragma: no cover - depends on the machine
            raise RuntimeError(
                "device 'cuda' needs CuPy: install minigrad with the cuda extra, "
                "e.g. pip install -e '.[cuda]' (see README.md for picking the wheel that matches your driver)"
            ) from exc
        _cupy = cupy
    return _cupy


def cuda_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        cp = cupy_module()
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - any failure means "no usable GPU"
        return False


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
    """True for a NumPy or a CuPy array (not for NumPy scalars, lists or Tensors). A CuPy array is recognised
    by its class's module, so this works before minigrad has imported CuPy itself."""
    return isinstance(x, np.ndarray) or type(x).__module__.startswith("cupy")


def device_of(array) -> str:
    """``"cpu"`` for a NumPy array, ``"cuda"`` for a CuPy array."""
    if isinstance(array, np.ndarray) or np.isscalar(array):
        return "cpu"
    if _cupy is not None and isinstance(array, _cupy.ndarray):
        return "cuda"
    raise TypeError(f"expected a numpy or cupy array, got {type(array).__name__}")


def array_module(*arrays):
    """The array module of the given arrays: cupy if any of them lives on the GPU, else numpy."""
    if _cupy is not None:
        for a in arrays:
            if isinstance(a, _cupy.ndarray):
                return _cupy
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
