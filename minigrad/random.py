"""minigrad's random number generators: one per device, seeded together by :func:`manual_seed`.

Everything random in minigrad (``randn``, ``rand``, parameter initialisation, dropout masks, Gaussian
noise) draws from here, so one ``manual_seed`` call makes a CPU run repeatable. The CPU has two streams:

* a NumPy ``Generator`` (PCG64) for ``randn``, ``rand`` and the initialisers;
* the noise stream of ``F.gaussian_noise`` (float32 and float64) and ``F.dropout``: a Philox4x32-10 key and
  a counter of the blocks used so far (:func:`noise_stream`). The noise kernels turn blocks into N(0, 1)
  values with the ziggurat (``minigrad/kernels/noise_reference.py`` defines the stream), the dropout kernels
  into keep/drop decisions (``minigrad/kernels/dropout_reference.py``); each draw reserves blocks of its
  own, and each value depends on the key, the counter and its position alone, so it is the same however
  many threads draw it.

The GPU has a CuPy ``RandomState``, which ``randn``, ``rand`` and Gaussian noise on the GPU draw from.
Dropout takes its decisions from the Philox stream on both devices (its key and counter are plain integers
kept here, whatever the device), so a GPU run's dropout is saved and restored with the CPU state below.

Saving and restoring the CPU state
----------------------------------
:func:`get_rng_state` returns both CPU streams as one JSON string (storable in an ``.npz`` without
pickling; ssgan's checkpoints keep it)::

    {"format": "minigrad.random/2",
     "numpy": <the PCG64 bit generator's state>, "noise": {"key": <int>, "counter": <int>}}

:func:`set_rng_state` restores that, and also reads the state of earlier minigrad versions, which was the
PCG64 state alone (the JSON of ``Generator.bit_generator.state``), from before the noise had a stream of
its own. Such a state restores the PCG64 stream exactly; the noise key is derived from it
(:func:`_key_from_numpy_state`) and the counter starts at 0. A checkpoint written before the change
therefore loads and resumes, repeatably (resuming it twice gives the same run), but not bit for bit the
run the earlier version would have continued with: that version drew the noise from PCG64 itself, so
both its noise and the position of its later PCG64 draws differ from what is drawn now.
"""
from __future__ import annotations

import json
import numbers

import numpy as np

from . import backend

STATE_FORMAT = "minigrad.random/2"

_DEFAULT_SEED = 0
_MASK64 = 2**64 - 1
_NOISE_TAG = 0x6E6F697365                  # "noise": keeps the noise key apart from other uses of the seed

_cpu = np.random.Generator(np.random.PCG64(_DEFAULT_SEED))
_cuda = None
_seed = _DEFAULT_SEED
_noise_key = 0
_noise_counter = 0


def _mix64(z: int) -> int:
    """A bijective 64-bit mixer (the finaliser of SplitMix64: xor-shifts and two odd multipliers)."""
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _key_from_seed(seed: int) -> int:
    """The noise key of ``manual_seed(seed)``: the seed mixed with a tag, so that nearby seeds give unrelated
    keys."""
    return _mix64(_mix64(seed) ^ _NOISE_TAG)


def _key_from_numpy_state(state: dict) -> int:
    """The noise key for a state of the old format (the PCG64 state alone): its 128-bit state and increment
    folded into 64 bits and mixed. Deterministic, so an old checkpoint resumes the same way every time."""
    inner = state.get("state", {})
    folded = 0
    for part in (int(inner.get("state", 0)), int(inner.get("inc", 0))):
        folded = _mix64(folded ^ (part & _MASK64) ^ _mix64(part >> 64))
    return _mix64(folded ^ _NOISE_TAG)


_noise_key = _key_from_seed(_DEFAULT_SEED)


def manual_seed(seed: int) -> None:
    """Seed every device's generator (as ``torch.manual_seed``).

    ``seed`` must be an integer (a Python or NumPy int, not a bool or a float) in [0, 2**64): NumPy's
    generators take non-negative seeds only, and a float such as 1.5 would otherwise be truncated silently.
    (PyTorch also accepts negative seeds, remapping them; minigrad refuses them, so a seed names one stream.)
    """
    global _cpu, _cuda, _seed, _noise_key, _noise_counter
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"manual_seed: the seed must be an integer, got {type(seed).__name__} {seed!r}")
    if not 0 <= int(seed) < 2**64:
        raise ValueError(f"manual_seed: the seed must be in [0, 2**64), got {seed}")
    _seed = int(seed)
    _cpu = np.random.Generator(np.random.PCG64(_seed))
    _noise_key, _noise_counter = _key_from_seed(_seed), 0
    _cuda = None  # re-created from _seed on first use


def generator(device: str = "cpu"):
    """The generator for ``device``: a NumPy Generator on the CPU, a CuPy RandomState on the GPU."""
    global _cuda
    if backend.check_device(device) == "cpu":
        return _cpu
    if _cuda is None:
        _cuda = backend.cupy_module().random.RandomState(_seed)
    return _cuda


def noise_stream(blocks: int):
    """Reserve ``blocks`` Philox blocks of the CPU noise stream: returns ``(key, counter)``, where the
    reserved blocks begin, and moves the counter on past them (modulo 2**64)."""
    global _noise_counter
    blocks = int(blocks)
    if blocks < 0:
        raise ValueError(f"noise_stream: blocks must be >= 0, got {blocks}")
    counter = _noise_counter
    _noise_counter = (counter + blocks) & _MASK64
    return _noise_key, counter


def get_rng_state() -> str:
    """The CPU generators' state as a JSON string (see the module docstring for its fields)."""
    return json.dumps({"format": STATE_FORMAT, "numpy": _cpu.bit_generator.state,
                       "noise": {"key": _noise_key, "counter": _noise_counter}})


def _check_word(value, what):
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MASK64:
        raise ValueError(f"set_rng_state: the noise {what} must be an integer in [0, 2**64), got {value!r}")
    return value


def set_rng_state(state: str) -> None:
    """Restore a state returned by :func:`get_rng_state`, or one of the earlier format (a PCG64 state alone;
    see the module docstring for what that resumes)."""
    global _noise_key, _noise_counter
    try:
        parsed = json.loads(state)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"set_rng_state: not a JSON state string ({exc})") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"set_rng_state: expected a JSON object, got {type(parsed).__name__}")
    if "format" not in parsed and "bit_generator" in parsed:            # the earlier format
        _cpu.bit_generator.state = parsed
        _noise_key, _noise_counter = _key_from_numpy_state(parsed), 0
        return
    if parsed.get("format") != STATE_FORMAT:
        raise ValueError(f"set_rng_state: unknown state format {parsed.get('format')!r}; expected "
                         f"{STATE_FORMAT!r} or a NumPy PCG64 state")
    noise = parsed.get("noise")
    if not isinstance(noise, dict) or "numpy" not in parsed:
        raise ValueError("set_rng_state: the state lacks its 'numpy' or 'noise' part")
    key, counter = _check_word(noise.get("key"), "key"), _check_word(noise.get("counter"), "counter")
    _cpu.bit_generator.state = parsed["numpy"]
    _noise_key, _noise_counter = key, counter


def standard_normal(shape, dtype, device):
    gen = generator(device)
    if backend.check_device(device) == "cpu":
        return gen.standard_normal(shape, dtype=np.float64).astype(dtype, copy=False)
    return gen.standard_normal(shape, dtype=dtype)


def normal_noise(shape, std, dtype, device):
    """``std * N(0, 1)`` noise of ``dtype``, a fresh array, from the device's generator. ``F.gaussian_noise``
    uses it on the GPU; on the CPU it draws from the noise stream instead (:func:`noise_stream`)."""
    out = generator(device).standard_normal(shape, dtype=dtype)
    out *= out.dtype.type(std)
    return out


def uniform(shape, low, high, dtype, device):
    gen = generator(device)
    if backend.check_device(device) == "cpu":
        return gen.uniform(low, high, size=shape).astype(dtype, copy=False)
    return gen.uniform(low, high, size=shape, dtype=dtype)
