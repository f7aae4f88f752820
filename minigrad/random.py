"""minigrad's random number generators: one per device, seeded together by :func:`manual_seed`.

Everything random in minigrad (``randn``, parameter initialisation, dropout masks) draws from here, so
one ``manual_seed`` call makes a CPU run repeatable. The CPU generator is a NumPy ``Generator``
(PCG64); its state can be saved and restored (:func:`get_rng_state` / :func:`set_rng_state`), which is
how ssgan checkpoints resume bit for bit.
"""
from __future__ import annotations

import json
import numbers

import numpy as np

from . import backend

_DEFAULT_SEED = 0
_cpu = np.random.Generator(np.random.PCG64(_DEFAULT_SEED))
_cuda = None
_seed = _DEFAULT_SEED


def manual_seed(seed: int) -> None:
    """Seed every device's generator (as ``torch.manual_seed``).

    ``seed`` must be an integer (a Python or NumPy int, not a bool or a float) in [0, 2**64): NumPy's
    generators take non-negative seeds only, and a float such as 1.5 would otherwise be truncated silently.
    (PyTorch also accepts negative seeds, remapping them; minigrad refuses them, so a seed names one stream.)
    """
    global _cpu, _cuda, _seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"manual_seed: the seed must be an integer, got {type(seed).__name__} {seed!r}")
    if not 0 <= int(seed) < 2**64:
        raise ValueError(f"manual_seed: the seed must be in [0, 2**64), got {seed}")
    _seed = int(seed)
    _cpu = np.random.Generator(np.random.PCG64(_seed))
    _cuda = None  # re-created from _seed on first use


def generator(device: str = "cpu"):
    """The generator for ``device``: a NumPy Generator on the CPU, a CuPy RandomState on the GPU."""
    global _cuda
    if backend.check_device(device) == "cpu":
        return _cpu
    if _cuda is None:
        _cuda = backend.cupy_module().random.RandomState(_seed)
    return _cuda


def get_rng_state() -> str:
    """The CPU generator's state as a JSON string (storable in an ``.npz`` without pickling)."""
    return json.dumps(_cpu.bit_generator.state)


def set_rng_state(state: str) -> None:
    """Restore a state returned by :func:`get_rng_state`."""
    _cpu.bit_generator.state = json.loads(state)


def standard_normal(shape, dtype, device):
    gen = generator(device)
    if backend.check_device(device) == "cpu":
        return gen.standard_normal(shape, dtype=np.float64).astype(dtype, copy=False)
    return gen.standard_normal(shape, dtype=dtype)


def normal_noise(shape, std, dtype, device):
    """``std * N(0, 1)`` noise of ``dtype``, a fresh array. On the CPU, float32 noise is drawn in float32
    directly (NumPy's ziggurat ``standard_normal(dtype=float32)``: about twice as fast as drawing float64
    and casting, which is what :func:`standard_normal` does to keep the weight initialisation's stream)."""
    gen = generator(device)
    if backend.check_device(device) == "cpu":
        dt = np.dtype(dtype)
        out = gen.standard_normal(shape, dtype=dt if dt in (np.float32, np.float64) else np.float64)
        out = out.astype(dt, copy=False)
    else:
        out = gen.standard_normal(shape, dtype=dtype)
    out *= out.dtype.type(std)
    return out


def uniform(shape, low, high, dtype, device):
    gen = generator(device)
    if backend.check_device(device) == "cpu":
        return gen.uniform(low, high, size=shape).astype(dtype, copy=False)
    return gen.uniform(low, high, size=shape, dtype=dtype)
