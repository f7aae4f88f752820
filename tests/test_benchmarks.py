"""The training-step benchmark's machinery (benchmarks/common.py, train_step.py, torch_ssgan.py,
torch_improved.py, profile_step.py): statistics, the FLOP count, the PyTorch mirrors of the models, the
profiler's patching.

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


def _patched_by_the_profiler():
    from minigrad import autograd, averaging, optim
    from minigrad import functional as mgF
    from minigrad import random as mg_random
    from minigrad.nn import utils
    from minigrad.ops import conv

    return (autograd.Function.__dict__["apply"], autograd.backward, conv.Conv2d.__dict__["forward"],
            optim.Adam.__dict__.get("step"), optim.Optimizer.__dict__["step"], mg_random.normal_noise,
            mgF.gaussian_noise, utils._WeightNormHook.__dict__["__call__"],
            averaging.AveragedModel.__dict__["update_parameters"])


def test_profiler_restores_everything_and_accounts_for_the_step(small_trainer):
    trainer, pairs = small_trainer
    saved = _patched_by_the_profiler()
    with StepProfiler() as prof:
        trainer.step(*next(pairs))
    assert saved == _patched_by_the_profiler()
    assert prof.calls[("forward", "conv2d")] == 3 * 6 and prof.calls[("forward", "conv_transpose2d")] == 3
    assert prof.calls[("optimizer", "Optimizer")] == 2 and prof.calls[("engine", "")] == 2
    total = sum(prof.times.values()) + 0.5
    rows = category_table(total, prof, steps=1)
    assert rows[-1][0] == "total (one step)"
    assert abs(sum(float(r[1]) for r in rows[:-1]) - total * 1e3) < 0.1 * len(rows)


# ------------------------------------------------------------------------------------ --preset improved
MNIST_D = (784, 1000, 500, 250, 250, 250, 10)     # MnistDiscriminator's dense layers; features: fc5's output
MNIST_G = (100, 500, 500, 784)                     # MnistGenerator's


def _dense_macs(rows, sizes):
    """Multiply-accumulates of one product per layer of a dense stack (rows x in x out each)."""
    return [rows * a * b for a, b in zip(sizes[:-1], sizes[1:])]


def improved_mnist_flops(b):
    """FLOPs of the matrix products of one ``--preset improved`` MNIST step with batch ``b``, from the layer
    sizes: (forward, backward)."""
    d, g = (lambda rows: _dense_macs(rows, MNIST_D)), (lambda rows: _dense_macs(rows, MNIST_G))
    forward = (sum(g(b)) + sum(d(3 * b))          # D step: fake = G(z); D on the stacked 3b rows
               + sum(g(b)) + 2 * sum(d(b)))       # G step: fake2 = G(z2); D on x_unl2 (no graph) and on fake2
    backward = (sum(d(3 * b))                     # D step: every layer's weight gradient ...
                + sum(d(3 * b)[1:])               # ... and input gradients, except fc1's (images need none)
                + sum(d(b)[:-1])                  # G step, D frozen: input gradients only, fc1..fc5 (the
                                                  # class layer is off the features' path)
                + sum(g(b))                       # G's weight gradients
                + sum(g(b)[1:]))                  # G's input gradients, except fc1's (z needs none)
    return 2 * forward, 2 * backward


def _conv_macs(n, c_in, c_out, k, out_hw):
    return n * c_out * out_hw * out_hw * c_in * k * k


def improved_svhn_flops(b):
    """The same for the ``--preset improved`` SVHN step: SvhnDiscriminator's convolutions (3x3; output
    sizes 32, 32, 16, 16, 16, 8 and 6 'valid'), its two 1x1 NIN layers and the 128 -> 10 class layer;
    SvhnGenerator's dense 100 -> 4*4*512 and 5x5 transposed convolutions 512 -> 256 -> 128 -> 3 on 4x4,
    8x8 and 16x16 inputs (MACs: input positions x Cin x Cout x 25)."""
    convs = ((3, 64, 32), (64, 64, 32), (64, 64, 16), (64, 128, 16), (128, 128, 16), (128, 128, 8), (128, 128, 6))

    def d(n):   # per layer, in order; the last entry is the class layer
        return ([_conv_macs(n, a, c, 3, hw) for a, c, hw in convs] + [_conv_macs(n, 128, 128, 1, 6)] * 2
                + [n * 128 * 10])

    def g(n):
        return [n * 100 * 4 * 4 * 512] + [n * a * hw * hw * c * 25 for a, c, hw in ((512, 256, 4), (256, 128, 8),
                                                                                     (128, 3, 16))]
    forward = sum(g(b)) + sum(d(3 * b)) + sum(g(b)) + 2 * sum(d(b))
    backward = sum(d(3 * b)) + sum(d(3 * b)[1:]) + sum(d(b)[:-1]) + sum(g(b)) + sum(g(b)[1:])
    return 2 * forward, 2 * backward


@pytest.fixture(scope="module")
def improved_trainer():
    return make_trainer("mnist", preset="improved")


def test_improved_benchmark_builds_the_improved_run_on_flat_random_images(improved_trainer):
    from ssgan import train
    from ssgan.models_improved import MnistDiscriminator, MnistGenerator

    trainer = improved_trainer
    assert type(trainer) is train.Run and trainer.config["preset"] == "improved"
    assert trainer.config["batch_size"] == 100 and trainer.config["lr"] == 3e-3 and trainer.config["beta1"] == 0.5
    images = trainer.train.images
    assert images.shape == (1280, 784) and images.dtype == np.float32 and 0 <= images.min() < images.max() <= 1
    assert isinstance(trainer.models["D"], MnistDiscriminator) and isinstance(trainer.models["G"], MnistGenerator)
    assert "D_ema" in trainer.models


def test_improved_batches_are_triples_from_two_permutations_per_epoch(improved_trainer):
    trainer = improved_trainer
    triples = batches(trainer)
    epoch = [next(triples) for _ in range(trainer.steps_per_epoch)]
    assert all(len(t) == 3 and all(len(i) == 100 for i in t) for t in epoch)
    for stream in (1, 2):   # each unlabeled stream: one permutation of the training set, cut into batches
        seen = np.concatenate([t[stream] for t in epoch])
        assert len(np.unique(seen)) == len(seen) == trainer.steps_per_epoch * 100
    assert not np.array_equal(epoch[0][1], epoch[0][2])
    assert np.isin(np.concatenate([t[0] for t in epoch]), trainer.labeled).all()


def test_improved_step_runs_with_finite_losses(improved_trainer):
    out = improved_trainer.step(*next(batches(improved_trainer)))
    assert all(np.isfinite(v) for v in (out.d_loss, out.d_loss_class, out.d_loss_real, out.d_loss_fake, out.g_loss))
    assert out.labeled == 100 and 0 <= out.correct <= 100


def test_improved_mnist_counted_flops_equal_the_hand_count(improved_trainer):
    counts = count_step_flops(improved_trainer, batches(improved_trainer))
    forward, backward = improved_mnist_flops(100)
    assert (counts["forward"], counts["backward"]) == (forward, backward)
    assert counts["by_op"] == {"linear": forward + backward} and forward + backward == 3_760_300_000


def test_improved_svhn_counted_flops_equal_the_hand_count():
    trainer = make_trainer("svhn", preset="improved", batch_size=4, n_images=40)   # init on 20 labeled images
    assert trainer.train.images.shape == (40, 3, 32, 32)
    counts = count_step_flops(trainer, batches(trainer))
    assert (counts["forward"], counts["backward"]) == improved_svhn_flops(4)
    assert sum(improved_svhn_flops(100)) == 376_893_798_400     # the figure --flops-only prints for batch 100


def test_flops_only_prints_the_improved_mnist_count(capsys):
    from benchmarks import train_step

    assert train_step.main(["--preset", "improved", "--threads", "1", "--flops-only"]) == 0
    out = capsys.readouterr().out
    assert "--preset improved step, mnist, batch 100: 3.7603 GFLOP/step" in out and "3760300000 FLOPs" in out


@needs_torch
def test_improved_flops_equal_pytorch_flop_counter_on_the_mirror():
    from benchmarks.torch_improved import TorchImproved

    ref = TorchImproved(batch_size=100)
    assert ref.count_flops() == sum(improved_mnist_flops(100))
    out = ref.step(*ref.indices())
    assert all(np.isfinite(v) for k, v in out.items() if k != "correct")


@needs_torch
def test_improved_mirror_has_the_same_parameters_and_buffers():
    from benchmarks.torch_improved import TorchImproved
    from ssgan.models_improved import MnistDiscriminator, MnistGenerator

    ref = TorchImproved(batch_size=8)
    for ours, theirs in ((MnistGenerator(), ref.G), (MnistDiscriminator(), ref.D)):
        assert ({k: tuple(np.shape(v)) for k, v in ours.state_dict().items()}
                == {k: tuple(v.shape) for k, v in theirs.state_dict().items()})
        assert ([(tuple(p.shape), p.requires_grad) for p in ours.parameters()]
                == [(tuple(p.shape), p.requires_grad) for p in theirs.parameters()])   # same trained set, order


def test_profiler_charges_noise_weight_norm_and_the_average(improved_trainer):
    trainer = improved_trainer
    saved = _patched_by_the_profiler()
    with StepProfiler() as prof:
        trainer.step(*next(batches(trainer)))
    assert saved == _patched_by_the_profiler()
    # 3 D passes x 6 noise layers; weight norm: 3 D passes x 6 layers + 2 G passes x its output layer
    assert prof.calls[("forward", "gaussian_noise [noise]")] == prof.calls[("tag", "noise")] == 18
    assert prof.calls[("tag", "weight norm")] == 20 and prof.calls[("average", "update_parameters")] == 1
    assert prof.calls[("forward", "weight_norm [weight norm]")] == 20 and prof.calls[("forward", "linear")] == 24
    assert prof.calls[("backward", "weight_norm [weight norm]")] > 0
    rows = {r[0]: float(r[1]) for r in category_table(1.0, prof, steps=1)}
    assert all(rows[c] > 0 for c in ("GEMM", "parameter average", "optimizer")
               ) and any("weight norm" in c and v > 0 for c, v in rows.items())


# ------------------------------------------------------------------ benchmarks.products: the products alone
def test_recorded_products_are_the_counted_flops_of_the_improved_step(improved_trainer):
    from benchmarks.products import recording_products

    pairs = batches(improved_trainer)
    with recording_products() as specs:
        improved_trainer.step(*next(pairs))
    assert sum(2 * m * k * n for m, k, n, _, _ in specs) == sum(improved_mnist_flops(100)) == 3_760_300_000
    # the forward products read the weight transposed; the weight gradients read the upstream gradient so
    assert (100, 784, 1000, False, True) in specs and (300, 784, 1000, False, True) in specs
    assert (1000, 300, 784, True, False) in specs      # dW of the first layer: G^T (1000 x 300) x (300 x 784)
    with recording_products() as after:
        pass
    assert after == []                                  # the ops are restored: nothing more is recorded


def test_recorded_products_are_the_products_the_ops_compute():
    from benchmarks.products import operands, recording_products

    rng = np.random.default_rng(3)
    x = mg.tensor(rng.standard_normal((5, 4)), requires_grad=True)
    w = mg.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    m = mg.tensor(rng.standard_normal((3, 2)), requires_grad=True)
    with recording_products() as specs:
        y = F.linear(x, w) @ m
        y.backward(mg.tensor(rng.standard_normal((5, 2))))
    assert sorted(specs) == sorted([(5, 4, 3, False, True), (5, 3, 2, False, False),          # forward
                                    (5, 2, 3, False, True), (3, 5, 2, True, False),           # matmul backward
                                    (5, 3, 4, False, False), (3, 5, 4, True, False)])         # linear backward
    made = operands(specs, lambda shape: np.ones(shape, np.float32))
    for (mm, k, n, ta, tb), (a, b) in zip(specs, made):
        assert (a @ b).shape == (mm, n) and a.shape == (mm, k) and a.flags.c_contiguous != ta
        assert b.flags.c_contiguous != tb


def test_recording_refuses_batched_products():
    from benchmarks.products import recording_products

    with recording_products(), pytest.raises(ValueError, match="only 2-D products"):
        mg.ones(2, 3, 4) @ mg.ones(4, 5)
