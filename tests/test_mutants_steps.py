"""ssgan.steps: the cases that mutation testing found unchecked (docs/testing.md).

What the steps report (the correct count and the number of labeled examples), the noise each generator
batch is drawn from and how many rows it has, the running statistics of the supervised-only step, the
unlabeled weight of the improved step, and each step on the device of its batches (the CuPy stand-in).

To test the correct count with a count that is not 0, each step is first run on a deep copy of the
models with a fixed seed; the labels are then what that copy predicted, and the same step with the same
seed on the originals (the same draws: noise, dropout) must count every labeled example as right.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest

import minigrad as mg
from minigrad import optim
from ssgan import steps
from ssgan.models import Discriminator, Generator
from ssgan.models_improved import MnistDiscriminator, MnistGenerator

from fake_cupy import fake_cuda  # noqa: F401  (fixture)

N_LAB, N_UNL, Z = 5, 6, 8


class Recorder:
    """Wraps a model's forward; keeps (input, first output) of every call as float64 NumPy arrays."""

    def __init__(self, model):
        self.calls, self._forward = [], model.forward
        model.forward = self

    def __call__(self, x, *args, **kwargs):
        out = self._forward(x, *args, **kwargs)
        first = out[0] if isinstance(out, tuple) else out
        self.calls.append((x.numpy().astype(np.float64), first.numpy().astype(np.float64)))
        return out


def _bce(z, target):
    return np.mean(np.maximum(z, 0) - z * target + np.log1p(np.exp(-np.abs(z))))


def _lse(logits):
    m = logits.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True)))[:, 0]


def _seed_models(notebook=False):
    mg.manual_seed(0)
    D = Discriminator(1, width=4, drop_rate=0.0 if notebook else 0.5, notebook=notebook)
    G = Generator(Z, width=4, out_channels=1)
    return D, G, optim.Adam(D.parameters(), lr=1e-3), optim.Adam(G.parameters(), lr=1e-3)


def _improved_models():
    mg.manual_seed(0)
    D = MnistDiscriminator(784, 10, hidden=(16, 12, 8))
    G = MnistGenerator(Z, width=10)
    trained = lambda m: [p for p in m.parameters() if p.requires_grad]  # noqa: E731
    ema = mg.AveragedModel(D, decay=1 - 1e-4, start="zeros")
    return D, G, optim.Adam(trained(D), lr=1e-3), optim.Adam(trained(G), lr=1e-3), ema


def _images(rng, n, shape=(1, 32, 32), device="cpu"):
    return mg.tensor(rng.uniform(-1, 1, (n,) + shape).astype(np.float32), device=device)


def _labels_it_gets_right(objects, run, n, rows=slice(None), seed=123):
    """The labels a deep copy of ``objects`` (the discriminator first) predicts for ``rows`` of the first
    discriminator call of ``run(*objects, labels)`` (``n`` labels), the random generators seeded by ``seed``."""
    copies = copy.deepcopy(objects)
    record = Recorder(copies[0])
    mg.manual_seed(seed)
    run(*copies, np.zeros(n, np.int64))
    return record.calls[0][1][rows].argmax(axis=1)


# --------------------------------------------------------------------------------------------- noise
def test_the_seed_and_notebook_generators_get_one_uniform_minus_one_one_row_per_unlabeled_image():
    rng = np.random.default_rng(20)
    D, G, opt_d, opt_g = _seed_models()
    g = Recorder(G)
    steps.ssgan_step(D, G, opt_d, opt_g, _images(rng, N_LAB), rng.integers(0, 10, N_LAB), _images(rng, N_UNL),
                     z_dim=Z, where="test")
    D, G, opt_d, opt_g = _seed_models(notebook=True)
    g2 = Recorder(G)
    steps.notebook_step(D, G, opt_d, opt_g, _images(rng, 9), rng.integers(0, 10, 9), np.ones(9, bool), z_dim=Z,
                        where="test")
    for (z, _), rows in ((g.calls[0], N_UNL), (g2.calls[0], 9)):
        assert z.shape == (rows, Z)
        assert -1.0 <= z.min() < -0.8 and 0.8 < z.max() <= 1.0      # z ~ U(-1, 1) (48 and 72 draws)


def test_the_improved_generator_gets_uniform_zero_one_rows_for_each_unlabeled_batch():
    rng = np.random.default_rng(21)
    D, G, opt_d, opt_g, ema = _improved_models()
    g = Recorder(G)
    x_unl2 = mg.tensor(rng.uniform(0, 1, (N_UNL + 3, 784)).astype(np.float32))   # a second batch of another size
    steps.improved_step(D, G, opt_d, opt_g, ema, mg.tensor(rng.uniform(0, 1, (N_LAB, 784)).astype(np.float32)),
                        rng.integers(0, 10, N_LAB), mg.tensor(rng.uniform(0, 1, (N_UNL, 784)).astype(np.float32)),
                        x_unl2, z_dim=Z, where="test")
    (z1, _), (z2, _) = g.calls
    assert z1.shape == (N_UNL, Z) and z2.shape == (N_UNL + 3, Z)
    for z in (z1, z2):
        assert 0.0 <= z.min() < 0.2 and 0.8 < z.max() <= 1.0


# ------------------------------------------------------------------------------- what a step reports
def test_supervised_step_counts_right_answers_and_updates_the_running_statistics():
    rng = np.random.default_rng(22)
    D, _, opt_d, _ = _seed_models()
    x_lab = _images(rng, N_LAB)
    run = lambda D, opt_d, y: steps.supervised_step(D, opt_d, x_lab, y, where="test")  # noqa: E731
    y = _labels_it_gets_right((D, opt_d), run, N_LAB)
    before = {name: bn.running_mean.numpy().copy() for name, bn in
              (("bn2", D.bn2), ("bn3", D.bn3), ("bn4", D.bn4), ("bn5", D.bn5))}
    mg.manual_seed(123)
    result = run(D, opt_d, y)
    assert result.correct == N_LAB and result.labeled == N_LAB
    for name, bn in (("bn2", D.bn2), ("bn3", D.bn3), ("bn4", D.bn4), ("bn5", D.bn5)):
        assert not np.array_equal(bn.running_mean.numpy(), before[name]), name   # the labeled batch is real


def test_improved_supervised_step_reports_its_loss_as_the_class_loss_and_counts_right_answers():
    rng = np.random.default_rng(23)
    D, _, opt_d, _, ema = _improved_models()
    x_lab = mg.tensor(rng.uniform(0, 1, (N_LAB, 784)).astype(np.float32))
    run = lambda D, opt_d, ema, y: steps.improved_supervised_step(D, opt_d, ema, x_lab, y, where="test")  # noqa
    y = _labels_it_gets_right((D, opt_d, ema), run, N_LAB)
    mg.manual_seed(123)
    result = run(D, opt_d, ema, y)
    assert result.correct == N_LAB and result.labeled == N_LAB
    assert result.d_loss_class == result.d_loss and np.isfinite(result.d_loss)


def test_ssgan_step_counts_right_answers_among_the_labeled_rows_only():
    rng = np.random.default_rng(24)
    D, G, opt_d, opt_g = _seed_models()
    x_lab, x_unl = _images(rng, N_LAB), _images(rng, N_UNL)
    run = lambda D, G, opt_d, opt_g, y: steps.ssgan_step(  # noqa: E731
        D, G, opt_d, opt_g, x_lab, y, x_unl, z_dim=Z, where="test")
    y = _labels_it_gets_right((D, G, opt_d, opt_g), run, N_LAB, slice(0, N_LAB))
    mg.manual_seed(123)
    result = run(D, G, opt_d, opt_g, y)
    assert result.correct == N_LAB and result.labeled == N_LAB
    wrong = (y + 1) % 10
    mg.manual_seed(123)
    assert run(*_seed_models(), wrong).correct == 0


def test_notebook_step_counts_right_answers_among_the_masked_rows_and_none_without_them():
    rng = np.random.default_rng(25)
    x = _images(rng, 8)
    mask = np.array([0, 1, 0, 0, 1, 1, 0, 0], dtype=bool)
    objects = _seed_models(notebook=True)
    run = lambda D, G, opt_d, opt_g, labels, mask=mask: steps.notebook_step(  # noqa: E731
        D, G, opt_d, opt_g, x, labels, mask, z_dim=Z, where="test")
    right = _labels_it_gets_right(objects, run, 8)
    labels = (right + 1) % 10                      # wrong on every row but the masked ones
    labels[mask] = right[mask]
    mg.manual_seed(123)
    result = run(*objects, labels)
    assert result.correct == 3 and result.labeled == 3
    # a batch without a labeled example (about one batch in six under the notebook preset)
    none = run(*_seed_models(notebook=True), right, np.zeros(8, bool))
    assert none.correct == 0 and none.labeled == 0 and none.d_loss_class == 0.0
    assert np.isfinite(none.d_loss) and none.d_loss == pytest.approx(none.d_loss_real + none.d_loss_fake)


def test_improved_step_scales_the_unlabeled_terms_by_the_unlabeled_weight():
    rng = np.random.default_rng(26)
    D, G, opt_d, opt_g, ema = _improved_models()
    d = Recorder(D)
    batch = lambda n: mg.tensor(rng.uniform(0, 1, (n, 784)).astype(np.float32))  # noqa: E731
    result = steps.improved_step(D, G, opt_d, opt_g, ema, batch(N_LAB), rng.integers(0, 10, N_LAB), batch(N_UNL),
                                 batch(N_UNL), z_dim=Z, where="test", unlabeled_weight=0.5)
    logits = d.calls[0][1]
    real = 0.25 * _bce(_lse(logits[N_LAB:N_LAB + N_UNL]), 1.0)
    fake = 0.25 * _bce(_lse(logits[N_LAB + N_UNL:]), 0.0)
    assert result.d_loss_real == pytest.approx(real, rel=1e-5)
    assert result.d_loss_fake == pytest.approx(fake, rel=1e-5)
    assert result.d_loss == pytest.approx(result.d_loss_class + real + fake, rel=1e-5)
    assert result.labeled == N_LAB


# ---------------------------------------------------------------------------------------- on a device
def test_every_step_runs_on_the_device_of_its_batches(fake_cuda):
    rng = np.random.default_rng(27)
    D, G, opt_d, opt_g = _seed_models()
    D.to("cuda"), G.to("cuda")
    opt_d, opt_g = optim.Adam(D.parameters(), lr=1e-3), optim.Adam(G.parameters(), lr=1e-3)
    x_lab, x_unl, y = _images(rng, N_LAB, device="cuda"), _images(rng, N_UNL, device="cuda"), np.arange(N_LAB)
    results = [steps.ssgan_step(D, G, opt_d, opt_g, x_lab, y, x_unl, z_dim=Z, where="test"),
               steps.notebook_step(D, G, opt_d, opt_g, x_unl, np.arange(N_UNL), np.arange(N_UNL) % 2 == 0,
                                   z_dim=Z, where="test"),
               steps.notebook_step(D, G, opt_d, opt_g, x_unl, np.arange(N_UNL), np.zeros(N_UNL, bool),
                                   z_dim=Z, where="test"),         # no labeled example: a count of 0 there
               steps.supervised_step(D, opt_d, x_lab, y, where="test")]
    D, G, _, _, ema = _improved_models()
    D.to("cuda"), G.to("cuda"), ema.to("cuda")
    trained = lambda m: [p for p in m.parameters() if p.requires_grad]  # noqa: E731
    opt_d, opt_g = optim.Adam(trained(D), lr=1e-3), optim.Adam(trained(G), lr=1e-3)
    flat = lambda n: mg.tensor(rng.uniform(0, 1, (n, 784)).astype(np.float32), device="cuda")  # noqa: E731
    results += [steps.improved_step(D, G, opt_d, opt_g, ema, flat(N_LAB), y, flat(N_UNL), flat(N_UNL), z_dim=Z,
                                    where="test"),
                steps.improved_supervised_step(D, opt_d, ema, flat(N_LAB), y, where="test")]
    for result in results:
        assert np.isfinite(result.d_loss) and 0 <= result.correct <= result.labeled
