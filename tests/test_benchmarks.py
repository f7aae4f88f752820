"""The training-step benchmark's machinery (benchmarks/common.py, train_step.py, torch_ssgan.py,
profile_step.py): statistics, the FLOP count, the PyTorch mirror of the model, the profiler's patching.

Nothing here times anything or asserts a speed: the benchmarks' figures live in benchmarks/RESULTS.md.
"""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from benchmarks import common
from benchmarks.profile_step import StepProfiler, category_table
from benchmarks.train_step import batches, count_step_flops, counting_flops, make_trainer

HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed: nothing to compare against")


def test_summarize_median_quartiles_extremes():
    s = common.summarize([5, 1, 4, 2, 3])
    assert (s["median"], s["q1"], s["q3"], s["min"], s["max"], s["n"]) == (3, 2, 4, 1, 5, 5)
    assert common.summarize([7.0])["q1"] == 7.0
    with pytest.raises(ValueError):
        common.summarize([])


def test_format_table_aligns_columns():
    text = common.format_table(["name", "ms"], [["a", "1.0"], ["longer", "10.25"]])
    lines = text.splitlines()
    assert len(lines) == 4 and len({len(line) for line in lines}) == 1
    assert lines[1].startswith("|:") and lines[1].endswith(":|")


def test_thread_env_sets_every_variable():
    env = common.thread_env(3, base={"PATH": "/bin"})
    assert env["PATH"] == "/bin" and all(env[v] == "3" for v in common.THREAD_VARIABLES)


def _layer_flops(fn, inputs, needs):
    """FLOPs counted for one forward and backward through ``fn``."""
    tensors = [mg.tensor(a, requires_grad=r) for a, r in zip(inputs, needs)]
    with counting_flops() as counts:
        out = fn(*tensors)
        out.backward(np.ones(out.shape, np.float32))
    return counts["forward"], counts["backward"]


@pytest.mark.parametrize("needs_x", [True, False])
def test_counted_flops_of_a_conv2d(needs_x):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 8, 8), dtype=np.float32)
    w = rng.standard_normal((4, 3, 3, 3), dtype=np.float32)
    fwd, bwd = _layer_flops(lambda a, b: F.conv2d(a, b, stride=2, padding=1), (x, w), (needs_x, True))
    macs = 2 * 4 * 4 * 4 * (3 * 3 * 3)   # N * Cout * OH * OW * (Cin * kH * kW), OH = OW = 4
    assert fwd == 2 * macs
    assert bwd == 2 * macs * (1 + needs_x)


def test_counted_flops_of_a_conv_transpose2d_and_a_linear():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 3, 3), dtype=np.float32)
    w = rng.standard_normal((4, 5, 5, 5), dtype=np.float32)
    fwd, bwd = _layer_flops(lambda a, b: F.conv_transpose2d(a, b, stride=2, padding=2, output_padding=1),
                            (x, w), (True, False))
    macs = 2 * 4 * 3 * 3 * (5 * 5 * 5)   # N * Cin * H * W * (Cout * kH * kW)
    assert (fwd, bwd) == (2 * macs, 2 * macs)
    fwd, bwd = _layer_flops(lambda a, b: F.linear(a, b), (rng.standard_normal((6, 7), dtype=np.float32),
                                                          rng.standard_normal((3, 7), dtype=np.float32)),
                            (False, True))
    assert (fwd, bwd) == (2 * 6 * 7 * 3, 2 * 6 * 7 * 3)


def test_counting_restores_the_ops():
    from minigrad.ops import conv, matmul

    before = [(c.__dict__["forward"], c.__dict__["backward"]) for c in (conv.Conv2d, matmul.Linear)]
    with counting_flops():
        pass
    assert before == [(c.__dict__["forward"], c.__dict__["backward"]) for c in (conv.Conv2d, matmul.Linear)]


@pytest.fixture(scope="module")
def small_trainer():
    trainer = make_trainer("svhn", g_width=8, batch_size=8)
    return trainer, batches(trainer)


def test_benchmark_trainer_is_ssgan_trainer_on_random_data(small_trainer):
    from ssgan import train

    trainer, pairs = small_trainer
    assert type(trainer) is train.Run
    assert trainer.train.images.shape[1:] == (3, 32, 32) and trainer.train.images.dtype == np.float32
    assert trainer.config["g_width"] == 8 and trainer.config["batch_size"] == 8
    labeled, unlabeled = next(pairs)
    assert len(labeled) == len(unlabeled) == 8
    out = trainer.step(labeled, unlabeled)
    assert np.isfinite(out.d_loss) and np.isfinite(out.g_loss)


@needs_torch
def test_step_flops_equal_pytorch_flop_counter(small_trainer):
    from benchmarks.torch_ssgan import TorchSSGAN

    trainer, pairs = small_trainer
    ours = count_step_flops(trainer, pairs)
    theirs = TorchSSGAN("svhn", g_width=8, batch_size=8).count_flops()
    assert ours["forward"] + ours["backward"] == theirs


@needs_torch
@pytest.mark.parametrize("dataset_shape, g_width", [("svhn", 32), ("mnist", 128)])
def test_torch_mirror_has_the_same_parameters_and_buffers(dataset_shape, g_width):
    from benchmarks.torch_ssgan import TorchSSGAN
    from ssgan.models import Discriminator, Generator

    channels = 3 if dataset_shape == "svhn" else 1
    ref = TorchSSGAN(dataset_shape, g_width=g_width, batch_size=8)
    for ours, theirs in ((Generator(100, g_width, channels), ref.G), (Discriminator(channels, 64), ref.D)):
        our_shapes = {k: tuple(np.shape(v)) for k, v in ours.state_dict().items()}
        their_shapes = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
        assert our_shapes == their_shapes


def test_profiler_restores_everything_and_accounts_for_the_step(small_trainer):
    from minigrad import autograd, optim
    from minigrad.ops import conv

    trainer, pairs = small_trainer
    saved = (autograd.Function.__dict__["apply"], autograd.backward, conv.Conv2d.__dict__["forward"],
             optim.Adam.__dict__.get("step"), optim.Optimizer.__dict__["step"])
    with StepProfiler() as prof:
        trainer.step(*next(pairs))
    assert saved == (autograd.Function.__dict__["apply"], autograd.backward, conv.Conv2d.__dict__["forward"],
                     optim.Adam.__dict__.get("step"), optim.Optimizer.__dict__["step"])
    assert prof.calls[("forward", "conv2d")] == 3 * 6 and prof.calls[("forward", "conv_transpose2d")] == 3
    assert prof.calls[("optimizer", "Optimizer")] == 2 and prof.calls[("engine", "")] == 2
    total = sum(prof.times.values()) + 0.5
    rows = category_table(total, prof, steps=1)
    assert rows[-1][0] == "total (one step)"
    assert abs(sum(float(r[1]) for r in rows[:-1]) - total * 1e3) < 0.1 * len(rows)
