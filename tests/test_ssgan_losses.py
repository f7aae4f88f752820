"""ssgan.losses against formulas written out in NumPy (and PyTorch when it is installed)."""
import numpy as np
import pytest

import minigrad as mg
from numpy_losses import bce_with_logits as _bce, cross_entropy as _ce, lse as _lse
from ssgan import losses


def test_discriminator_loss_terms_match_the_formulas():
    rng = np.random.default_rng(0)
    lab, unl, fake = (rng.normal(0, 2, (n, 10)) for n in (6, 7, 5))
    y = rng.integers(0, 10, 6)
    d = losses.discriminator_loss(mg.tensor(lab), y, mg.tensor(unl), mg.tensor(fake), real_target=0.9)
    assert d.real.item() == pytest.approx(_bce(_lse(unl), 0.9), rel=1e-12)
    assert d.fake.item() == pytest.approx(_bce(_lse(fake), 0.0), rel=1e-12)
    assert d.classes.item() == pytest.approx(_ce(lab, y), rel=1e-12)
    assert d.total.item() == pytest.approx(d.real.item() + d.fake.item() + d.classes.item(), rel=1e-12)


def test_real_fake_logit_is_log_z_and_gives_d_of_the_paper():
    # D(x) = Z / (Z + 1) = sigmoid(log Z): the paper's (K+1)-class discriminator with l_{K+1} = 0
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, (4, 10))
    z = np.exp(logits).sum(axis=1)
    s = losses.real_fake_logit(mg.tensor(logits)).numpy()
    np.testing.assert_allclose(1 / (1 + np.exp(-s)), z / (z + 1), rtol=1e-12)
    # finite for huge logits (the sum of exponentials would overflow)
    big = losses.real_fake_logit(mg.tensor(np.full((2, 10), 1e4))).numpy()
    np.testing.assert_allclose(big, 1e4 + np.log(10))


def test_supervised_loss_ignores_out_of_range_labels_but_counts_them():
    # the notebook preset's SVHN label 10: loss and gradient 0 for that example, still in the mean's count
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(4, 10))
    y = np.array([3, 10, 0, 7])
    x = mg.tensor(logits, requires_grad=True)
    loss = losses.supervised_loss(x, y)
    keep = y < 10
    expected = np.sum(_lse(logits[keep]) - logits[keep][np.arange(3), y[keep]]) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    loss.backward()
    np.testing.assert_array_equal(x.grad.numpy()[1], 0.0)
    assert np.abs(x.grad.numpy()[0]).sum() > 0


def test_notebook_loss_masks_the_labeled_examples_inside_the_real_batch():
    rng = np.random.default_rng(5)
    real, fake = rng.normal(0, 2, (6, 10)), rng.normal(0, 2, (4, 10))
    y = np.array([3, 10, 0, 7, 1, 2])
    mask = np.array([True, True, False, True, False, False])
    d = losses.notebook_discriminator_loss(mg.tensor(real), y, mask, mg.tensor(fake))
    assert d.real.item() == pytest.approx(_bce(_lse(real), 0.9), rel=1e-12)      # the whole real batch
    assert d.fake.item() == pytest.approx(_bce(_lse(fake), 0.0), rel=1e-12)
    # sum over the masked examples (label 10 contributing 0) / the number masked
    ce = _lse(real) - real[np.arange(6), np.minimum(y, 9)]
    assert d.classes.item() == pytest.approx((ce[0] + ce[3]) / 3, rel=1e-12)
    none = losses.notebook_discriminator_loss(mg.tensor(real), y, np.zeros(6, bool), mg.tensor(fake))
    assert none.classes.item() == 0.0


def test_feature_matching_is_mean_absolute_difference_of_batch_means():
    rng = np.random.default_rng(3)
    fr, ff = rng.normal(size=(8, 6)), rng.normal(1, 1, size=(5, 6))
    value = losses.feature_matching_loss(mg.tensor(fr), mg.tensor(ff)).item()
    assert value == pytest.approx(np.mean(np.abs(fr.mean(0) - ff.mean(0))), rel=1e-12)
    with pytest.raises(ValueError, match="feature_matching_loss"):
        losses.feature_matching_loss(mg.tensor(fr), mg.tensor(ff[:, :5]))


def test_against_pytorch_when_installed():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed; the NumPy formulas are checked above")
    tF = torch.nn.functional
    rng = np.random.default_rng(4)
    lab, unl, fake = (rng.normal(0, 2, (n, 10)) for n in (6, 7, 5))
    y = rng.integers(0, 10, 6)
    d = losses.discriminator_loss(mg.tensor(lab), y, mg.tensor(unl), mg.tensor(fake))
    t = [torch.tensor(a) for a in (lab, unl, fake)]
    real_t = tF.binary_cross_entropy_with_logits(torch.logsumexp(t[1], 1), torch.full((7,), 0.9, dtype=torch.float64))
    fake_t = tF.binary_cross_entropy_with_logits(torch.logsumexp(t[2], 1), torch.zeros(5, dtype=torch.float64))
    ce_t = tF.cross_entropy(t[0], torch.tensor(y))
    assert d.total.item() == pytest.approx(float(real_t + fake_t + ce_t), rel=1e-12)
