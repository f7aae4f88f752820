"""Gaussian noise from the counter-based stream (minigrad/random.py, minigrad/ops/noise.py, the ``noise``
kernels): the generator against published answers, the numba kernel against the reference, the
statistics of large draws, independence, seeding, and the saved state (the current format and the
earlier one, a PCG64 state alone).

The registry (minigrad/testing/entries_noise.py) checks the op's values and gradient in float64; here float32
is compared with the reference kernel too.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

import minigrad as mg
import minigrad.functional as F
from minigrad import kernels, nn
from minigrad import random as mg_random
from minigrad.kernels import noise_cpu, noise_reference
from minigrad.ops.noise import GaussianNoise

DTYPES = (np.float32, np.float64)

# Philox4x32-10 known answers (counter words, key words, output words), from the generator's authors
PHILOX_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def _z(n, dtype, key=12345, counter=0, path="fast"):
    """n values of the stream (x = 0, std = 1), on the given kernel path."""
    with kernels.use(path):
        k = kernels.for_arrays("noise", np.zeros(1, dtype))
        return k.add_normal(np.zeros(n, dtype), 1.0, key, counter)


# ------------------------------------------------------------------------------------------- the generator


@pytest.mark.parametrize("counter, key, expected", PHILOX_ANSWERS)
def test_philox_matches_the_published_answers(counter, key, expected):
    words = noise_reference.philox4x32(*(np.array([c], np.uint64) for c in counter), key[0] | key[1] << 32)
    assert [int(w[0]) for w in words] == list(expected)
    compiled = noise_cpu._philox(*(np.uint64(c) for c in counter), np.uint64(key[0]), np.uint64(key[1]))
    assert [int(w) for w in compiled] == list(expected)


def test_ziggurat_tables_close_on_the_density():
    x, f = noise_reference.LAYER_X, noise_reference.LAYER_F
    assert x[1] == noise_reference.R and x[-1] == 0.0 and np.all(np.diff(x) < 0)
    # every layer has the same area: the base (strip + tail), and each rectangle x_i (f(x_{i+1}) - f(x_i))
    tail = math.sqrt(math.pi / 2) * math.erfc(noise_reference.R / math.sqrt(2))
    np.testing.assert_allclose(x[0] * f[1], noise_reference.R * f[1] + tail, rtol=1e-9)
    np.testing.assert_allclose(x[1:-2] * (f[2:-1] - f[1:-2]), noise_reference.AREA, rtol=1e-9)
    assert abs(f[-2] + noise_reference.AREA / x[-2] - 1.0) < 1e-9      # the top layer ends at f(0) = 1


# ------------------------------------------------------------------------------------------- fast = reference


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 3, 4, 5, 4095, 4096, 4097, 3 * 4096 + 7, 200_003])
def test_numba_kernel_equals_the_reference(dtype, n):
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n).astype(dtype)
    for key, counter in ((0, 0), (2**64 - 1, 2**64 - 3), (0x243F6A8885A308D3, 987654321)):
        fast = noise_cpu.add_normal(x, 0.7, key, counter)
        ref = noise_reference.add_normal(x, 0.7, key, counter)
        assert fast.dtype == dtype and fast.shape == x.shape
        # the same values: bit for bit, but for the last bit of a rare tail value in float64 (the
        # logarithm of the C library against the array module's)
        np.testing.assert_allclose(fast, ref, rtol=4 * np.finfo(dtype).eps, atol=0)
        assert np.count_nonzero(fast != ref) <= max(1, n // 1000)


@pytest.mark.parametrize("dtype", DTYPES)
def test_shapes_layouts_and_empty_inputs(dtype):
    x = np.arange(24, dtype=dtype).reshape(2, 3, 4)
    out = noise_cpu.add_normal(x.transpose(2, 0, 1), 0.0, 1, 2)           # a non-contiguous input
    np.testing.assert_array_equal(out, x.transpose(2, 0, 1))               # std 0: x itself (C-ordered)
    assert out.flags.c_contiguous
    a = noise_cpu.add_normal(np.zeros((6, 5), dtype), 1.0, 9, 4)
    np.testing.assert_array_equal(a.reshape(-1), noise_cpu.add_normal(np.zeros(30, dtype), 1.0, 9, 4))
    assert noise_cpu.add_normal(np.zeros((0, 3), dtype), 1.0, 1, 0).shape == (0, 3)
    assert noise_reference.add_normal(np.zeros((0, 3), dtype), 1.0, 1, 0).shape == (0, 3)


@pytest.mark.parametrize("dtype, per_block", [(np.float32, 4), (np.float64, 2)])
def test_each_value_depends_on_its_position_alone(dtype, per_block):
    """Value j at counter c is value j - per_block * k at counter c + k: any split of a draw into parts
    gives the same values, which is what makes the threads' chunks independent of their number."""
    n, c = 3 * noise_cpu.CHUNK + 5, 1000
    whole = _z(n, dtype, counter=c)
    for k in (1, 3, noise_cpu.CHUNK // per_block + 1):
        np.testing.assert_array_equal(_z(n - per_block * k, dtype, counter=c + k), whole[per_block * k:])
    assert noise_cpu.blocks(n, dtype) == noise_reference.blocks(n, dtype) == -(-n // per_block)


def test_two_threads_draw_the_same_values(tmp_path):
    code = ("import numpy as np, numba; from minigrad.kernels import noise_cpu; "
            "assert numba.get_num_threads() == 2; "
            "np.save({path!r}, noise_cpu.add_normal(np.zeros(100_003, np.{dt}), 1.0, 77, 5))")
    env = dict(os.environ, NUMBA_NUM_THREADS="2", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    for dt in ("float32", "float64"):
        path = str(tmp_path / f"{dt}.npy")
        subprocess.run([sys.executable, "-c", code.format(path=path, dt=dt)], env=env, check=True, timeout=300)
        np.testing.assert_array_equal(np.load(path), _z(100_003, np.dtype(dt), key=77, counter=5))


# ------------------------------------------------------------------------------------------- statistics


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_draw_has_the_normal_distribution(dtype):
    n = 2_000_000
    z = _z(n, dtype, key=2024).astype(np.float64)
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.var() - 1.0) < 5 * math.sqrt(2.0 / n)
    assert abs(stats.skew(z)) < 5 * math.sqrt(6.0 / n) and abs(stats.kurtosis(z)) < 5 * math.sqrt(24.0 / n)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    # chi-square on 64 equiprobable bins (their edges the normal quantiles)
    edges = stats.norm.ppf(np.linspace(0, 1, 65)[1:-1])
    counts = np.bincount(np.searchsorted(edges, z), minlength=64)
    assert stats.chisquare(counts).pvalue > 1e-3
    # the tails, where the ziggurat switches method: beyond R = 3.654 and beyond 4.5
    for t in (noise_reference.R, 4.5):
        expected = n * 2 * stats.norm.sf(t)
        assert abs(np.count_nonzero(np.abs(z) > t) - expected) < 5 * math.sqrt(expected) + 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_consecutive_values_and_draws_are_independent(dtype):
    n = 1_000_000
    a = _z(n, dtype, key=5, counter=0).astype(np.float64)
    b = _z(n, dtype, key=5, counter=noise_cpu.blocks(n, dtype)).astype(np.float64)   # the next draw
    c = _z(n, dtype, key=6, counter=0).astype(np.float64)                            # another key
    bound = 5 / math.sqrt(n)
    for lag in (1, 2, 3, 4, 5, 8):                    # neighbours in a block and across blocks
        assert abs(np.corrcoef(a[:-lag], a[lag:])[0, 1]) < bound
        assert abs(np.corrcoef(a[:-lag] ** 2, a[lag:] ** 2)[0, 1]) < bound     # magnitudes too
    for other in (b, c):
        assert abs(np.corrcoef(a, other)[0, 1]) < bound
        assert abs(np.corrcoef(a ** 2, other ** 2)[0, 1]) < bound
    # signs of neighbours: a runs test on the sign sequence
    s = a > 0
    runs = 1 + np.count_nonzero(s[1:] != s[:-1])
    p = s.mean()
    mean_runs = 1 + 2 * n * p * (1 - p)
    assert abs(runs - mean_runs) < 5 * math.sqrt(2 * n * p * (1 - p))


# ------------------------------------------------------------------------------------------- F.gaussian_noise


@pytest.mark.parametrize("dtype", DTYPES)
def test_f_gaussian_noise_draws_the_stream_and_moves_the_counter_on(dtype):
    mg.manual_seed(21)
    key, start = mg_random.noise_stream(0)
    x = np.linspace(-1, 1, 10).astype(dtype)
    first = F.gaussian_noise(mg.tensor(x), 0.5).numpy()
    second = F.gaussian_noise(mg.tensor(x), 0.5).numpy()
    used = noise_reference.blocks(10, dtype)
    assert mg_random.noise_stream(0) == (key, start + 2 * used)
    np.testing.assert_allclose(first, noise_reference.add_normal(x, 0.5, key, start), rtol=1e-15, atol=0)
    np.testing.assert_allclose(second, noise_reference.add_normal(x, 0.5, key, start + used), rtol=1e-15, atol=0)
    assert first.dtype == dtype and not np.array_equal(first, second)


def test_f_gaussian_noise_is_one_node_whose_gradient_is_the_identity():
    x = mg.tensor(np.ones((3, 4), np.float32), requires_grad=True)
    y = F.gaussian_noise(x, 0.3)
    assert y.grad_fn is not None and y._node.fn is GaussianNoise and y._node.saved_arrays == ()
    upstream = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    y.backward(upstream)
    np.testing.assert_array_equal(x.grad.numpy(), upstream)


def test_the_reference_path_draws_the_same_noise_and_pcg64_is_left_alone():
    mg.manual_seed(4)
    pcg64 = json.loads(mg.get_rng_state())["numpy"]
    F.gaussian_noise(mg.zeros(1000), 1.0)
    assert json.loads(mg.get_rng_state())["numpy"] == pcg64      # the noise has a stream of its own
    x = np.random.default_rng(1).standard_normal(5000).astype(np.float32)
    results = []
    for path in ("fast", "reference"):
        mg.manual_seed(4)
        with kernels.use(path):
            results.append(F.gaussian_noise(mg.tensor(x), 0.5).numpy())
    np.testing.assert_array_equal(*results)


def test_the_same_seed_gives_the_same_noise():
    x = mg.zeros(1000)
    mg.manual_seed(7)
    a = nn.GaussianNoise(1.0)(x).numpy()
    b = nn.GaussianNoise(1.0)(x).numpy()
    mg.manual_seed(7)
    np.testing.assert_array_equal(nn.GaussianNoise(1.0)(x).numpy(), a)
    mg.manual_seed(8)
    c = nn.GaussianNoise(1.0)(x).numpy()
    assert not np.array_equal(a, b) and not np.array_equal(a, c)
    # nearby seeds give unrelated keys
    keys = set()
    for seed in (0, 1, 2, 2**63, 2**64 - 1):
        mg.manual_seed(seed)
        keys.add(mg_random.noise_stream(0)[0])
    assert len(keys) == 5


# ------------------------------------------------------------------------------------------- saved state


def test_state_round_trips_both_streams():
    mg.manual_seed(5)
    x = mg.zeros(777)
    F.gaussian_noise(x, 1.0)
    mg.randn(3)
    state = mg.get_rng_state()
    parsed = json.loads(state)
    assert parsed["format"] == mg_random.STATE_FORMAT and parsed["numpy"]["bit_generator"] == "PCG64"
    noise, normal = F.gaussian_noise(x, 1.0).numpy(), mg.randn(4).numpy()
    mg.manual_seed(99)
    mg.set_rng_state(state)
    np.testing.assert_array_equal(F.gaussian_noise(x, 1.0).numpy(), noise)
    np.testing.assert_array_equal(mg.randn(4).numpy(), normal)
    mg.set_rng_state(state)
    assert mg.get_rng_state() == state


def test_a_state_of_the_earlier_format_still_loads():
    """A checkpoint written before the noise stream holds the PCG64 state alone: the PCG64 stream resumes
    exactly, the noise from a key derived from that state, the same way every time."""
    old = np.random.Generator(np.random.PCG64(31))
    old.standard_normal(10)
    old_state = json.dumps(old.bit_generator.state)
    expected = old.standard_normal(5)

    mg.set_rng_state(old_state)
    key = mg_random.noise_stream(0)
    assert key[1] == 0
    np.testing.assert_array_equal(mg.randn(5, dtype=np.float64).numpy(), expected)
    noise = F.gaussian_noise(mg.zeros(100), 1.0).numpy()
    assert json.loads(mg.get_rng_state())["format"] == mg_random.STATE_FORMAT
    mg.manual_seed(0)
    mg.set_rng_state(old_state)
    mg.randn(5)
    np.testing.assert_array_equal(F.gaussian_noise(mg.zeros(100), 1.0).numpy(), noise)
    other = np.random.Generator(np.random.PCG64(32))
    mg.set_rng_state(json.dumps(other.bit_generator.state))       # another old state: another key
    assert mg_random.noise_stream(0)[0] != key[0]
    assert not np.array_equal(F.gaussian_noise(mg.zeros(100), 1.0).numpy(), noise)


def test_bad_states_are_refused_and_change_nothing():
    mg.manual_seed(3)
    state = mg.get_rng_state()
    parsed = json.loads(state)
    bad = [
        "not json", json.dumps([1, 2]), json.dumps({"format": "minigrad.random/9"}),
        json.dumps({"format": mg_random.STATE_FORMAT, "numpy": parsed["numpy"]}),
        json.dumps(dict(parsed, noise={"key": -1, "counter": 0})),
        json.dumps(dict(parsed, noise={"key": 1, "counter": 2**64})),
        json.dumps(dict(parsed, noise={"key": 1.5, "counter": 0})),
    ]
    for text in bad:
        with pytest.raises(ValueError, match="set_rng_state"):
            mg.set_rng_state(text)
        assert mg.get_rng_state() == state
    with pytest.raises(ValueError, match="blocks must be >= 0"):
        mg_random.noise_stream(-1)


def test_a_checkpoint_with_the_earlier_state_resumes_repeatably(tmp_path):
    """An ``--preset improved`` checkpoint whose saved minigrad state is of the earlier format (what runs
    before the noise stream wrote) loads and resumes; two resumptions of it give the same run."""
    import shutil

    from fake_data import install_fake_datasets
    from ssgan import checkpoint as ckpt
    from ssgan import metrics, train

    timing = {"seconds", "eval_seconds", "images_per_s"}
    with pytest.MonkeyPatch.context() as mp:
        install_fake_datasets(mp, tmp_path / "data", n_train=200, n_test=50)
        mp.setenv("SSGAN_OFFLINE", "1")
        run = tmp_path / "run"
        assert train.main(["--dataset", "mnist", "--preset", "improved", "--data-dir", str(tmp_path / "data"),
                           "--out", str(run), "--labels", "20", "--batch-size", "16", "--no-progress",
                           "--epochs", "1", "--max-steps", "3", "--checkpoint-every", "3"]) == 0
        path = run / "checkpoint.npz"
        arrays, meta = ckpt.load_npz(path)
        meta["rng"]["minigrad"] = json.dumps(json.loads(meta["rng"]["minigrad"])["numpy"])  # the earlier format
        ckpt.save_npz_atomic(path, arrays, meta)
        results = []
        for name in ("a", "b"):
            copy = tmp_path / name
            shutil.copytree(run, copy)
            assert train.main(["--resume", "--out", str(copy), "--no-progress", "--max-steps", "6"]) == 0
            records = [{k: v for k, v in r.items() if k not in timing}
                       for r in metrics.read_log(copy / "metrics.jsonl")]
            resumed, resumed_meta = ckpt.load_npz(copy / "checkpoint.npz")
            assert resumed_meta["step"] == 6
            assert json.loads(resumed_meta["rng"]["minigrad"])["format"] == mg_random.STATE_FORMAT
            results.append((records, resumed))
    (records_a, arrays_a), (records_b, arrays_b) = results
    assert records_a == records_b and sorted(arrays_a) == sorted(arrays_b)
    for k in arrays_a:
        np.testing.assert_array_equal(arrays_a[k], arrays_b[k], err_msg=k)
