"""Each preset's training step checked term by term against plain NumPy (float64) written here.

The steps of ``ssgan/steps.py`` run on tiny models; every call of the discriminator and the generator is
recorded (its input and outputs), and the test recomputes each loss term from the recorded arrays with
its own formulas. So a step that feeds the wrong rows to a term (feature matching against the labeled
half, say) fails even though every shape is right. The tests also check which parameters each
optimizer step touches, that the discriminator is frozen during the generator step, that the running
statistics see real batches only, and (improved) the parameter average's update.
"""
from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import optim
from numpy_losses import bce_with_logits, cross_entropy, lse
from ssgan import losses, steps
from ssgan.models import Discriminator, Generator
from ssgan.models_improved import MnistDiscriminator, MnistGenerator

N_LAB, N_UNL, Z = 5, 6, 8


# ----------------------------------------------------------------------------- independent formulas
# ------------------------------------------------------------------------------------ recording
class Recorder:
    """Wraps a model's forward: keeps (input, outputs) of every call as float64 NumPy arrays."""

    def __init__(self, model):
        self.calls, self._forward = [], model.forward
        model.forward = self

    def __call__(self, x, *args, **kwargs):
        out = self._forward(x, *args, **kwargs)
        outs = out if isinstance(out, tuple) else (out,)
        self.calls.append((x.numpy().astype(np.float64), kwargs, *[o.numpy().astype(np.float64) for o in outs]))
        return out


def params(model):
    """The model's parameters (not its buffers: a forward pass in training mode moves batch norm's running
    statistics, which is checked on its own)."""
    return {k: p.numpy().copy() for k, p in model.named_parameters()}


def watch_optimizer(opt, on_step):
    real = opt.step

    def step():
        on_step("before")
        real()
        on_step("after")
    opt.step = step


def _batches(rng, shape):
    x_lab = mg.tensor(rng.uniform(-1, 1, (N_LAB,) + shape).astype(np.float32))
    y_lab = rng.integers(0, 10, N_LAB)
    x_unl = mg.tensor(rng.uniform(-1, 1, (N_UNL,) + shape).astype(np.float32))
    x_unl2 = mg.tensor(rng.uniform(-1, 1, (N_UNL,) + shape).astype(np.float32))
    return x_lab, y_lab, x_unl, x_unl2


# ------------------------------------------------------------------------------------ default preset
@pytest.fixture
def seed_models():
    mg.manual_seed(0)
    D, G = Discriminator(1, width=4), Generator(Z, width=4, out_channels=1)
    return D, G, optim.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.999)), \
        optim.Adam(G.parameters(), lr=1e-3, betas=(0.5, 0.999))


def test_ssgan_step_terms_rows_and_updates(seed_models, monkeypatch):
    D, G, opt_d, opt_g = seed_models
    x_lab, y_lab, x_unl, _ = _batches(np.random.default_rng(1), (1, 32, 32))
    d_calls, g_calls = Recorder(D), Recorder(G)
    d0, g0 = params(D), params(G)
    seen = {}

    def on_d(when):
        if when == "before":     # the discriminator's update: only D has gradients, G none (fake detached)
            seen["G grads at D step"] = [p.grad for p in G.parameters()]
            seen["G at D step"] = params(G)
        else:
            seen["D after its step"] = params(D)
            seen["D grads"] = [p.grad.numpy().copy() for p in D.parameters()]

    def on_g(when):
        if when == "before":     # the generator's update: D was frozen (its gradients untouched)
            seen["D grads at G step"] = [p.grad.numpy().copy() for p in D.parameters()]
            seen["D at G step"] = params(D)

    watch_optimizer(opt_d, on_d)
    watch_optimizer(opt_g, on_g)
    bn_calls = []
    real_bn = F.batch_norm
    d_stats = {id(m.running_mean) for m in (D.bn2, D.bn3, D.bn4, D.bn5)}
    monkeypatch.setattr(F, "batch_norm", lambda x, rm, rv, *a, **k: bn_calls.append(
        (x.shape[0], "D running" if id(rm) in d_stats else "batch only" if rm is None else "G"))
        or real_bn(x, rm, rv, *a, **k))

    result = steps.ssgan_step(D, G, opt_d, opt_g, x_lab, y_lab, x_unl, z_dim=Z, where="test")

    # the calls: G once; D on the real images (labeled then unlabeled), on the fakes, again on the fakes
    assert len(g_calls.calls) == 1 and len(d_calls.calls) == 3
    (_, _, fake), = g_calls.calls
    (x_real, kw_real, l_real, f_real), (x_fake, kw_fake, l_fake, _), (x_fake2, kw_g, _, f_fake) = d_calls.calls
    np.testing.assert_array_equal(x_real, np.concatenate([x_lab.numpy(), x_unl.numpy()]).astype(np.float64))
    np.testing.assert_array_equal(x_fake, fake)
    np.testing.assert_array_equal(x_fake2, fake)
    assert kw_real == {"real": True} and kw_fake == {"real": False} and kw_g == {"real": False}

    # each term, recomputed from the recorded arrays
    real = bce_with_logits(lse(l_real[N_LAB:]), 0.9)
    fake_term = bce_with_logits(lse(l_fake), 0.0)
    classes = cross_entropy(l_real[:N_LAB], y_lab)
    g = np.mean(np.abs(f_real[N_LAB:].mean(axis=0) - f_fake.mean(axis=0)))   # the *unlabeled* rows
    assert result.d_loss_real == pytest.approx(real, rel=1e-5)
    assert result.d_loss_fake == pytest.approx(fake_term, rel=1e-5)
    assert result.d_loss_class == pytest.approx(classes, rel=1e-5)
    assert result.d_loss == pytest.approx(real + fake_term + classes, rel=1e-5)
    assert result.g_loss == pytest.approx(g, rel=1e-5)
    wrong = np.mean(np.abs(f_real[:N_LAB].mean(axis=0) - f_fake.mean(axis=0)))
    assert abs(wrong - g) > 1e-3 * abs(g)            # the check above can tell the halves apart
    assert result.correct == int((l_real[:N_LAB].argmax(1) == y_lab).sum()) and result.labeled == N_LAB

    # which optimizer step touched what
    assert all(grad is None for grad in seen["G grads at D step"])
    assert all(np.array_equal(seen["G at D step"][k], g0[k]) for k in g0)          # G untouched by D's step
    for before, after in zip(seen["D grads"], seen["D grads at G step"]):
        np.testing.assert_array_equal(before, after)                              # no D gradient in G's step
    assert all(np.array_equal(seen["D at G step"][k], params(D)[k]) for k in d0)  # D untouched by G's step
    changed = [k for k, p in D.named_parameters() if not np.array_equal(d0[k], p.numpy())]
    assert len(changed) == len(list(D.parameters()))
    assert all(not np.array_equal(g0[k], p.numpy()) for k, p in G.named_parameters())

    # batch norm: the real pass (all 11 real images) updates the running statistics, the fake passes do not
    assert bn_calls.count((N_LAB + N_UNL, "D running")) == 4          # bn2..bn5 on the 11 real images
    assert bn_calls.count((N_UNL, "batch only")) == 2 * 4              # the two passes over the fakes
    assert len(bn_calls) == 4 + 8 + 3 and bn_calls.count((N_UNL, "G")) == 3


def test_batch_norm_running_mean_comes_from_the_real_pass(seed_models, monkeypatch):
    D, G, opt_d, opt_g = seed_models
    x_lab, y_lab, x_unl, _ = _batches(np.random.default_rng(2), (1, 32, 32))
    inputs = []
    real_bn = F.batch_norm

    def spy(x, rm, rv, *a, **k):
        if rm is D.bn4.running_mean:
            inputs.append(x.numpy().astype(np.float64))
        return real_bn(x, rm, rv, *a, **k)

    monkeypatch.setattr(F, "batch_norm", spy)
    before = D.bn4.running_mean.numpy().astype(np.float64).copy()
    steps.ssgan_step(D, G, opt_d, opt_g, x_lab, y_lab, x_unl, z_dim=Z, where="test")
    (x,) = inputs                                      # one pass with the running statistics: the real one
    assert x.shape[0] == N_LAB + N_UNL
    expected = 0.9 * before + 0.1 * x.mean(axis=(0, 2, 3))
    np.testing.assert_allclose(D.bn4.running_mean.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_notebook_step_uses_the_mask_for_the_class_term(seed_models):
    D, G, opt_d, opt_g = seed_models
    rng = np.random.default_rng(3)
    x = mg.tensor(rng.uniform(-1, 1, (8, 1, 32, 32)).astype(np.float32))
    labels = rng.integers(0, 10, 8)
    mask = np.array([1, 0, 0, 1, 0, 1, 0, 0], dtype=bool)
    d_calls = Recorder(D)
    result = steps.notebook_step(D, G, opt_d, opt_g, x, labels, mask, z_dim=Z, where="test")
    (_, _, l_real, f_real), (_, _, l_fake, _), (_, _, _, f_fake) = d_calls.calls
    per_example = lse(l_real) - l_real[np.arange(8), labels]
    assert result.d_loss_class == pytest.approx(per_example[mask].sum() / mask.sum(), rel=1e-5)
    assert result.d_loss_real == pytest.approx(bce_with_logits(lse(l_real), 0.9), rel=1e-5)   # the whole batch
    assert result.g_loss == pytest.approx(np.mean(np.abs(f_real.mean(0) - f_fake.mean(0))), rel=1e-5)
    assert result.labeled == 3


def test_supervised_step_is_cross_entropy_on_the_labeled_batch(seed_models):
    D, _, opt_d, _ = seed_models
    x_lab, y_lab, _, _ = _batches(np.random.default_rng(4), (1, 32, 32))
    d_calls = Recorder(D)
    result = steps.supervised_step(D, opt_d, x_lab, y_lab, where="test")
    ((x, _, logits, _),) = d_calls.calls
    np.testing.assert_array_equal(x, x_lab.numpy())
    assert result.d_loss == result.d_loss_class == pytest.approx(cross_entropy(logits, y_lab), rel=1e-5)
    assert result.g_loss is None


# ----------------------------------------------------------------------------------- improved preset
@pytest.fixture
def improved_models():
    mg.manual_seed(0)
    D = MnistDiscriminator(784, 10, hidden=(16, 12, 8))
    D.init_from_batch(mg.tensor(np.random.default_rng(0).uniform(0, 1, (40, 784)).astype(np.float32)))
    G = MnistGenerator(Z, width=10)
    trained = lambda m: [p for p in m.parameters() if p.requires_grad]  # noqa: E731
    opt_d = optim.Adam(trained(D), lr=3e-3, betas=(0.5, 0.999), eps_inside_sqrt=True)
    opt_g = optim.Adam(trained(G), lr=3e-3, betas=(0.5, 0.999), eps_inside_sqrt=True)
    ema = mg.AveragedModel(D, decay=1 - 1e-4, start="zeros")
    return D, G, opt_d, opt_g, ema


def test_improved_step_terms_rows_and_updates(improved_models):
    D, G, opt_d, opt_g, ema = improved_models
    x_lab, y_lab, x_unl, x_unl2 = _batches(np.random.default_rng(5), (784,))
    d_calls, g_calls = Recorder(D), Recorder(G)
    frozen_scales = {k: v for k, v in params(D).items() if k.startswith("fc") and k.endswith("weight_g")}
    g0, seen = params(G), {}
    watch_optimizer(opt_d, lambda when: seen.setdefault(f"D {when}", params(D)) and
                    seen.setdefault(f"G at D {when}", params(G)))
    watch_optimizer(opt_g, lambda when: seen.setdefault(f"D at G {when}", params(D)))

    result = steps.improved_step(D, G, opt_d, opt_g, ema, x_lab, y_lab, x_unl, x_unl2, z_dim=Z, where="test")

    (_, _, fake), (_, _, fake2) = g_calls.calls                # a fresh batch of fakes for each update
    (x_d, _, logits, _), (x_r, _, _, f_real), (x_f, _, _, f_fake) = d_calls.calls
    np.testing.assert_array_equal(x_d, np.concatenate([x_lab.numpy(), x_unl.numpy(), fake.astype(np.float32)]))
    np.testing.assert_array_equal(x_r, x_unl2.numpy())         # the generator step's own unlabeled batch
    np.testing.assert_array_equal(x_f, fake2)
    assert not np.array_equal(fake, fake2)

    l_lab, l_unl, l_fake = logits[:N_LAB], logits[N_LAB:N_LAB + N_UNL], logits[N_LAB + N_UNL:]
    classes = cross_entropy(l_lab, y_lab)
    real = 0.5 * bce_with_logits(lse(l_unl), 1.0)             # no label smoothing
    fake_term = 0.5 * bce_with_logits(lse(l_fake), 0.0)
    # the recipe's own way of writing the unlabeled part
    recipe = -0.5 * lse(l_unl).mean() + 0.5 * np.log1p(np.exp(lse(l_unl))).mean() + \
        0.5 * np.log1p(np.exp(lse(l_fake))).mean()
    assert real + fake_term == pytest.approx(recipe, rel=1e-9)
    assert result.d_loss_class == pytest.approx(classes, rel=1e-5)
    assert result.d_loss_real == pytest.approx(real, rel=1e-5)
    assert result.d_loss_fake == pytest.approx(fake_term, rel=1e-5)
    assert result.g_loss == pytest.approx(np.mean((f_real.mean(0) - f_fake.mean(0)) ** 2), rel=1e-5)

    # updates: G untouched by D's step, D untouched by G's step, the hidden scales never trained
    assert all(np.array_equal(seen["G at D before"][k], g0[k]) and np.array_equal(seen["G at D after"][k], g0[k])
               for k in g0)
    after = params(D)
    assert all(np.array_equal(seen["D after"][k], after[k]) for k in after)
    assert all(np.array_equal(frozen_scales[k], after[k]) for k in frozen_scales)
    assert all(not np.array_equal(g0[k], v) for k, v in params(G).items() if not k.startswith("bn"))

    # the average: one update a <- a + 1e-4 (p - a) from zero for the trained parameters, copies for the rest
    averaged = ema.state_dict()
    assert averaged["n_averaged"] == 1
    assert not np.array_equal(seen["D before"]["out.bias"], after["out.bias"])
    for name, p in D.named_parameters():
        expected = (1e-4 * p.numpy()) if p.requires_grad else p.numpy()
        np.testing.assert_allclose(averaged["module." + name], expected, rtol=1e-6, err_msg=name)


def test_improved_supervised_step(improved_models):
    D, _, opt_d, _, ema = improved_models
    x_lab, y_lab, _, _ = _batches(np.random.default_rng(6), (784,))
    d_calls = Recorder(D)
    result = steps.improved_supervised_step(D, opt_d, ema, x_lab, y_lab, where="test")
    ((x, _, logits, _),) = d_calls.calls
    np.testing.assert_array_equal(x, x_lab.numpy())
    assert result.d_loss == pytest.approx(cross_entropy(logits, y_lab), rel=1e-5)
    assert int(ema.n_averaged.item()) == 1


def test_a_non_finite_loss_is_reported_by_the_one_read_at_the_end(seed_models, monkeypatch):
    D, G, opt_d, opt_g = seed_models
    x_lab, y_lab, x_unl, _ = _batches(np.random.default_rng(7), (1, 32, 32))
    real = losses.discriminator_loss
    monkeypatch.setattr(losses, "discriminator_loss", lambda *a: real(*a)._replace(
        total=real(*a).total * float("nan")))
    reads = []
    real_numpy = mg.Tensor.numpy
    monkeypatch.setattr(mg.Tensor, "numpy", lambda self: reads.append(self.shape) or real_numpy(self))
    with pytest.raises(steps.NonFiniteLoss, match="discriminator loss is nan at test"):
        steps.ssgan_step(D, G, opt_d, opt_g, x_lab, y_lab, x_unl, z_dim=Z, where="test")
    assert reads == [(6,)]         # one read of the step's scalars (5 losses and the count), at its end


def test_one_read_per_step(seed_models, improved_models, monkeypatch):
    reads = []
    real_numpy, real_item = mg.Tensor.numpy, mg.Tensor.item
    monkeypatch.setattr(mg.Tensor, "numpy", lambda self: reads.append(self.shape) or real_numpy(self))
    monkeypatch.setattr(mg.Tensor, "item", lambda self: reads.append("item") or real_item(self))
    D, G, opt_d, opt_g = seed_models
    x_lab, y_lab, x_unl, _ = _batches(np.random.default_rng(8), (1, 32, 32))
    steps.ssgan_step(D, G, opt_d, opt_g, x_lab, y_lab, x_unl, z_dim=Z, where="test")
    steps.supervised_step(D, opt_d, x_lab, y_lab, where="test")
    D, G, opt_d, opt_g, ema = improved_models
    x_lab, y_lab, x_unl, x_unl2 = _batches(np.random.default_rng(9), (784,))
    steps.improved_step(D, G, opt_d, opt_g, ema, x_lab, y_lab, x_unl, x_unl2, z_dim=Z, where="test")
    assert reads == [(6,), (2,), (6,)]
