"""ssgan.losses: the cases that mutation testing found unchecked (docs/testing.md).

Each test states a property of the losses against formulas written out here in NumPy: the total that is
backpropagated is the sum of its terms, the class term of the notebook preset divides by the number of
labeled examples even when there is exactly one, the unlabeled weight scales both unlabeled terms,
labels may be given as a Tensor, a batch of one works, and inputs of the wrong shape are refused.
"""
import numpy as np
import pytest

import minigrad as mg
from numpy_losses import bce_with_logits as _bce, cross_entropy_each as _ce_each, lse as _lse
from ssgan import losses


def _batches(seed, sizes=(6, 7, 5)):
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 2, (n, 10)) for n in sizes], rng


def test_improved_loss_total_is_the_sum_of_its_terms_and_the_weight_scales_both_unlabeled_terms():
    (lab, unl, fake), rng = _batches(10)
    y = rng.integers(0, 10, len(lab))
    classes = np.mean(_ce_each(lab, y))
    for weight in (1.0, 0.3):
        kwargs = {} if weight == 1.0 else {"unlabeled_weight": weight}   # 1 is the paper's (and the default)
        d = losses.improved_discriminator_loss(mg.tensor(lab), y, mg.tensor(unl), mg.tensor(fake), **kwargs)
        real = 0.5 * weight * _bce(_lse(unl), 1.0)
        fake_term = 0.5 * weight * _bce(_lse(fake), 0.0)
        assert d.real.item() == pytest.approx(real, rel=1e-12)
        assert d.fake.item() == pytest.approx(fake_term, rel=1e-12)
        assert d.classes.item() == pytest.approx(classes, rel=1e-12)
        assert d.total.item() == pytest.approx(classes + real + fake_term, rel=1e-12)


def test_notebook_loss_total_is_the_sum_of_its_terms():
    (real, fake), rng = _batches(11, (6, 4))
    y = rng.integers(0, 10, 6)
    mask = np.array([True, False, True, True, False, True])
    d = losses.notebook_discriminator_loss(mg.tensor(real), y, mask, mg.tensor(fake))
    expected_real, expected_fake = _bce(_lse(real), 0.9), _bce(_lse(fake), 0.0)
    expected_classes = _ce_each(real, y)[mask].sum() / mask.sum()
    assert d.classes.item() == pytest.approx(expected_classes, rel=1e-12)
    assert d.total.item() == pytest.approx(expected_real + expected_fake + expected_classes, rel=1e-12)


def test_notebook_class_term_with_exactly_one_labeled_example_is_its_cross_entropy():
    # about 1.7 labeled examples per batch of 128 under the notebook preset: one is a common case
    (real, fake), rng = _batches(12, (5, 3))
    y = rng.integers(0, 10, 5)
    mask = np.array([False, False, True, False, False])
    d = losses.notebook_discriminator_loss(mg.tensor(real), y, mask, mg.tensor(fake))
    assert d.classes.item() == pytest.approx(_ce_each(real, y)[2], rel=1e-12)


def test_notebook_loss_refuses_a_mask_of_the_wrong_length():
    (real, fake), rng = _batches(13, (4, 3))
    y = rng.integers(0, 10, 4)
    for mask in (np.array([True]), np.ones(3, bool)):     # a (1,) mask would otherwise broadcast
        with pytest.raises(ValueError, match="notebook_discriminator_loss"):
            losses.notebook_discriminator_loss(mg.tensor(real), y, mask, mg.tensor(fake))


def test_labels_given_as_a_tensor_give_the_same_losses():
    (lab, unl, fake), rng = _batches(14)
    y = rng.integers(0, 10, len(lab))
    as_tensor = losses.supervised_loss(mg.tensor(lab), mg.tensor(y))
    assert as_tensor.item() == pytest.approx(np.mean(_ce_each(lab, y)), rel=1e-12)
    mask = np.array([True, False, True, False, False, True])
    a = losses.notebook_discriminator_loss(mg.tensor(lab), mg.tensor(y), mask, mg.tensor(fake))
    b = losses.notebook_discriminator_loss(mg.tensor(lab), y, mask, mg.tensor(fake))
    assert a.classes.item() == b.classes.item() and a.total.item() == b.total.item()


def test_supervised_loss_of_a_single_example_and_of_an_empty_batch():
    (lab,), rng = _batches(15, (1,))
    y = np.array([4])
    assert losses.supervised_loss(mg.tensor(lab), y).item() == pytest.approx(_ce_each(lab, y)[0], rel=1e-12)
    with pytest.raises(ValueError, match="empty"):
        losses.supervised_loss(mg.tensor(np.zeros((0, 10))), np.zeros(0, np.int64))


def test_supervised_loss_refuses_labels_that_do_not_match_the_rows():
    logits = mg.tensor(np.zeros((4, 10)))
    for labels in (np.zeros(3, np.int64), np.zeros((4, 1), np.int64)):
        with pytest.raises(ValueError, match="supervised_loss"):
            losses.supervised_loss(logits, labels)


@pytest.mark.parametrize("loss", [losses.feature_matching_loss, losses.squared_feature_matching_loss],
                         ids=["l1", "squared"])
def test_feature_matching_refuses_features_that_are_not_matrices(loss):
    ok = mg.tensor(np.ones((4, 3)))
    for real, fake in ((mg.tensor(np.ones((4, 3, 2))), ok), (ok, mg.tensor(np.ones((5, 3, 2)))),
                       (ok, mg.tensor(np.ones((5, 2))))):
        with pytest.raises(ValueError, match=loss.__name__):
            loss(real, fake)
