"""minigrad: a small reverse-mode autodiff framework on NumPy (CPU) and CuPy (GPU), with PyTorch's names.

    import minigrad as mg
    import minigrad.functional as F
    from minigrad import nn, optim

Read the source in this order: ``backend.py``, ``autograd.py``, ``dtypes.py``, ``tensor.py``, ``ops/``,
``kernels/``, ``functional.py``, ``nn/``, ``optim.py``.

On import, if NumPy is not loaded yet and the variable is unset, minigrad sets ``OPENBLAS_THREAD_TIMEOUT=4``:
OpenBLAS's idle threads otherwise spin for about 0.1 s after every matrix product, and on a small machine
they take the cores from minigrad's numba kernels that run right after it (measured on 2 cores: several
conv passes 2-6x slower; see benchmarks/RESULTS.md). Set the variable yourself to choose otherwise.
"""
import os as _os
import sys as _sys

if "numpy" not in _sys.modules:
    _os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from . import threads  # noqa: F401  (first: numba's idle threads sleep, not spin; see threads.py)
from .autograd import Function, enable_grad, is_grad_enabled, no_grad
from .backend import cuda_available
from .creation import (arange, cat, full, ones, ones_like, rand, randn, stack, tensor, zeros, zeros_like)
from .dtypes import bool_, float32, float64, int32, int64
from .random import get_rng_state, manual_seed, set_rng_state
from .tensor import Tensor
from .averaging import AveragedModel  # noqa: E402  (after Tensor: it builds on nn)

__version__ = "0.1.0"

__all__ = [
    "Tensor", "Function", "tensor", "zeros", "ones", "full", "zeros_like", "ones_like", "randn", "rand",
    "arange", "cat", "stack", "no_grad", "enable_grad", "is_grad_enabled", "manual_seed", "get_rng_state",
    "set_rng_state", "cuda_available", "AveragedModel", "float32", "float64", "int64", "int32", "bool_",
]
