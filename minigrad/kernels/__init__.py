"""Raw-array kernels behind the convolution ops, chosen per device.

Three modules implement the same five functions (``im2col``, ``col2im``, ``to_channel_rows``,
``from_channel_rows``, ``channel_sum``; see ``im2col.py`` for what they compute), and each says how much
of a column matrix the ops should build at a time (``BLOCK_BYTES``, see :func:`block_bytes`):

* ``im2col.py`` - the reference: plain NumPy/CuPy slicing, readable, runs on either array module;
* ``cpu.py``    - numba kernels, used for NumPy arrays;
* ``cuda.py``   - CuPy kernels, used for CuPy arrays.

:func:`for_array` picks one for an array. The *path* decides between the reference and the fast
kernels: ``"fast"`` (the default) uses the fast kernels of the array's device, ``"reference"`` uses
``im2col.py`` everywhere - for debugging, and for tests that compare the two. The environment variable
``MINIGRAD_KERNELS=reference`` sets it for a whole run; :func:`set_path` and :func:`use` set it from code.
"""
from __future__ import annotations

import contextlib
import os

import numpy as np

PATHS = ("fast", "reference")

_path = None  # None: not chosen in code, follow $MINIGRAD_KERNELS


def _checked(name, source):
    if name not in PATHS:
        raise ValueError(f"kernels: {source} must be one of {PATHS}, got {name!r}")
    return name


def get_path() -> str:
    """The kernel path in force: ``"fast"`` or ``"reference"``. Unless :func:`set_path` chose one, it is read
    from ``$MINIGRAD_KERNELS`` on every call (unset or empty means ``"fast"``; anything else is an error, so a
    misspelt ``referense`` does not silently run the fast kernels)."""
    if _path is not None:
        return _path
    return _checked(os.environ.get("MINIGRAD_KERNELS", "").strip().lower() or "fast", "$MINIGRAD_KERNELS")


def set_path(name) -> None:
    """Choose the kernel path for the rest of the run (``None`` goes back to ``$MINIGRAD_KERNELS``)."""
    global _path
    _path = None if name is None else _checked(name, "the kernel path")


@contextlib.contextmanager
def use(name):
    """``with kernels.use("reference"): ...`` runs the block on the given path, then restores the old one."""
    global _path
    previous = _path
    set_path(name)
    try:
        yield
    finally:
        _path = previous


def block_bytes(module):
    """Bytes of column matrix per block of samples for the ops of ``ops/conv.py`` (None: the whole batch).

    The kernel module's ``BLOCK_BYTES`` unless ``$MINIGRAD_CONV_BLOCK_BYTES`` is set (an integer; 0 means
    the whole batch at once), which is how the benchmark compares block sizes.
    """
    text = os.environ.get("MINIGRAD_CONV_BLOCK_BYTES", "").strip()
    if not text:
        return module.BLOCK_BYTES
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"kernels: $MINIGRAD_CONV_BLOCK_BYTES must be a non-negative integer, got {text!r}")
    return value or None


def for_array(array):
    """The kernel module for ``array``: the reference on the reference path, else numba for a NumPy
    array and CuPy kernels for a CuPy array."""
    if get_path() == "reference":
        from . import im2col
        return im2col
    if isinstance(array, np.ndarray):
        from . import cpu
        return cpu
    from . import cuda
    return cuda
