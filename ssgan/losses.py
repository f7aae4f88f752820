"""The losses of the semi-supervised GAN, written to be read next to the paper.

Salimans, Goodfellow, Zaremba, Cheung, Radford, Chen: "Improved Techniques for Training GANs" (2016).

The discriminator is a K-class classifier (K = 10 digits) with logits l_1(x) ... l_K(x). Section 5 of the
paper adds a (K+1)-th class, "generated", and fixes its logit to l_{K+1}(x) = 0 (subtracting the same
function from every logit does not change the softmax, so nothing is lost). Then

    p(y = K+1 | x) = 1 / (Z(x) + 1)          with  Z(x) = sum_k exp l_k(x),

and the probability that x is real is

    D(x) = 1 - p(y = K+1 | x) = Z(x) / (Z(x) + 1) = sigmoid(log Z(x)).

So the real/fake logit of an ordinary GAN discriminator is ``log Z(x) = logsumexp_k l_k(x)``
(:func:`real_fake_logit`), and the unsupervised part of the discriminator's loss,

    L_unsupervised = - E_{x ~ data} log D(x)  -  E_{z ~ noise} log(1 - D(G(z))),

is two binary cross-entropies on that logit: target 1 for data, target 0 for generated images. Section 3.4
("one-sided label smoothing") replaces the target 1 by 0.9 and leaves the 0 alone; that is what
``real_target=0.9`` does below. The supervised part is the ordinary cross-entropy over the K classes on the
labeled examples, L_supervised = - E_{(x, y) ~ labeled data} log p(y | x, y < K+1).

The generator is trained by feature matching (section 3.1): instead of fooling D directly, it matches the
mean of an intermediate layer f(x) of D (here the pooled features just before the class layer) on data
and on its own samples. The paper writes the squared L2 distance ||E f(x) - E f(G(z))||^2; this code,
like the blog notebook it reproduces, uses the mean absolute difference over the features,
mean_j |mean_batch f_j(real) - mean_batch f_j(fake)|.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

import minigrad.functional as F
from minigrad import Tensor


class DiscriminatorLoss(NamedTuple):
    """The discriminator's loss and its three terms (Tensors; ``total`` is what is backpropagated)."""

    total: Tensor
    real: Tensor    # - log D(x) on unlabeled data, with the smoothed target
    fake: Tensor    # - log(1 - D(G(z)))
    classes: Tensor  # cross-entropy on the labeled examples


def real_fake_logit(class_logits: Tensor) -> Tensor:
    """log Z(x) = logsumexp over the K class logits: the logit of "x is real" (D(x) = sigmoid(log Z)).

    ``F.logsumexp`` shifts by the row maximum, so this is finite even for logits of size 1e4.
    """
    if class_logits.ndim != 2:
        raise ValueError(f"real_fake_logit: class_logits must be (N, K), got shape {class_logits.shape}")
    return F.logsumexp(class_logits, dim=1)


def supervised_loss(class_logits: Tensor, labels) -> Tensor:
    """L_supervised: the mean cross-entropy of the (N, K) class logits against the integer ``labels`` (N,).

    A label outside [0, K) contributes nothing and is still counted in the mean. That never happens with
    the default preset (labels are 0..9); it is how the blog notebook treated SVHN's label 10 (the digit 0)
    when it one-hot encoded it over 10 classes: the one-hot vector of 10 is all zeros, so that example's
    loss and gradient are 0. ``--preset notebook`` keeps that behaviour on purpose.
    """
    labels = np.asarray(labels.numpy() if isinstance(labels, Tensor) else labels)
    if class_logits.ndim != 2 or labels.shape != (class_logits.shape[0],):
        raise ValueError(f"supervised_loss: need (N, K) logits and (N,) labels, got {class_logits.shape} "
                         f"and {labels.shape}")
    n, k = class_logits.shape
    if n == 0:
        raise ValueError("supervised_loss: the labeled batch is empty")
    in_range = (labels >= 0) & (labels < k)
    target = np.where(in_range, labels, -100).astype(np.int64)   # -100: F.cross_entropy's ignore_index
    if in_range.all():
        # the plain mean cross-entropy: the same number as the sum over N below (the mean divides the sum
        # by the N weights' sum, N exactly), in one op instead of two
        return F.cross_entropy(class_logits, target, reduction="mean")
    # sum over the in-range examples / all N
    return F.cross_entropy(class_logits, target, reduction="sum", ignore_index=-100) / float(n)


def discriminator_loss(logits_labeled: Tensor, labels, logits_unlabeled: Tensor, logits_fake: Tensor,
                       real_target: float = 0.9, unlabeled_weight: float = 1.0) -> DiscriminatorLoss:
    """L_D = L_supervised + w L_unsupervised (section 5, w = ``unlabeled_weight``, 1 in the paper), with
    one-sided label smoothing (section 3.4): the real term's target is ``real_target`` (0.9; 1 is none).

    ``logits_labeled``: class logits of the labeled real batch, with their ``labels``;
    ``logits_unlabeled``: class logits of the unlabeled real batch; ``logits_fake``: class logits of the
    generator's batch. All are (N, K) Tensors. The ``real`` and ``fake`` terms are reported unweighted.
    """
    # - E_data log D(x), D = sigmoid(log Z): BCE-with-logits against the smoothed target 0.9 (not 1).
    real = F.binary_cross_entropy_with_logits(real_fake_logit(logits_unlabeled), float(real_target))
    # - E_z log(1 - D(G(z))): BCE-with-logits against 0. The fake target is never smoothed ("one-sided").
    fake = F.binary_cross_entropy_with_logits(real_fake_logit(logits_fake), 0.0)
    # - E_labeled log p(y | x, y < K+1): the softmax over the K real classes only.
    classes = supervised_loss(logits_labeled, labels)
    unsupervised = real + fake if unlabeled_weight == 1.0 else (real + fake) * float(unlabeled_weight)
    return DiscriminatorLoss(unsupervised + classes, real, fake, classes)


def notebook_discriminator_loss(logits_real: Tensor, labels, label_mask, logits_fake: Tensor,
                                real_target: float = 0.9) -> DiscriminatorLoss:
    """The same three terms as the blog notebook arranged its batches (``--preset notebook``).

    The notebook had no separate labeled batch: every real batch is a slice of the shuffled training set,
    and ``label_mask`` (N,) marks the few of its examples that belong to the labeled subset (about 1.7 per
    batch of 128 with 1000 labels out of 73 257). The real term runs over the whole real batch; the class
    term is ``sum(mask * CE) / max(1, sum(mask))``, so a batch without a labeled example contributes 0.
    """
    labels = np.asarray(labels.numpy() if isinstance(labels, Tensor) else labels)
    mask = np.asarray(label_mask, dtype=bool)
    if logits_real.ndim != 2 or labels.shape != mask.shape or labels.shape != (logits_real.shape[0],):
        raise ValueError(f"notebook_discriminator_loss: need (N, K) logits, (N,) labels and (N,) mask, got "
                         f"{logits_real.shape}, {labels.shape}, {mask.shape}")
    real = F.binary_cross_entropy_with_logits(real_fake_logit(logits_real), float(real_target))
    fake = F.binary_cross_entropy_with_logits(real_fake_logit(logits_fake), 0.0)
    k = logits_real.shape[1]
    target = np.where(mask & (labels >= 0) & (labels < k), labels, -100).astype(np.int64)
    classes = F.cross_entropy(logits_real, target, reduction="sum", ignore_index=-100) / float(max(1, mask.sum()))
    return DiscriminatorLoss(real + fake + classes, real, fake, classes)


def feature_matching_loss(features_real: Tensor, features_fake: Tensor) -> Tensor:
    """L_G = mean_j | mean_batch f_j(real) - mean_batch f_j(fake) | over the pooled features (section 3.1).

    ``features_real`` should be detached (it is a target: the generator cannot change the data).
    """
    if features_real.ndim != 2 or features_fake.ndim != 2 or features_real.shape[1] != features_fake.shape[1]:
        raise ValueError(f"feature_matching_loss: need (N, F) and (M, F) features, got {features_real.shape} "
                         f"and {features_fake.shape}")
    # fake minus real: the same number (|a - b| = |b - a| exactly, in floating point too), and the side that
    # needs a gradient comes first, so the difference hands it on as it is (no negation to compute)
    return (features_fake.mean(dim=0) - features_real.mean(dim=0)).abs().mean()


# ------------------------------------------------------------------------------------ --preset improved
def improved_discriminator_loss(logits_labeled: Tensor, labels, logits_unlabeled: Tensor, logits_fake: Tensor,
                                unlabeled_weight: float = 1.0) -> DiscriminatorLoss:
    """Improved-GAN's own discriminator loss (``train_*_feature_matching.py``):

        L_D = CE(labeled) + w * (0.5 BCE(log Z(x_unl), 1) + 0.5 BCE(log Z(G(z)), 0))

    with ``w = unlabeled_weight`` (1 in the paper). No label smoothing. The code writes the unlabeled part
    as ``-0.5 mean(l_unl) + 0.5 mean(softplus(l_unl)) + 0.5 mean(softplus(l_fake))``, which is the same
    thing, since BCE(l, 1) = softplus(-l) = softplus(l) - l. ``real`` and ``fake`` in the result carry the
    0.5 (and ``w``), so ``total = classes + real + fake``.
    """
    real = F.binary_cross_entropy_with_logits(real_fake_logit(logits_unlabeled), 1.0) * (0.5 * unlabeled_weight)
    fake = F.binary_cross_entropy_with_logits(real_fake_logit(logits_fake), 0.0) * (0.5 * unlabeled_weight)
    classes = supervised_loss(logits_labeled, labels)
    return DiscriminatorLoss(classes + real + fake, real, fake, classes)


def squared_feature_matching_loss(features_real: Tensor, features_fake: Tensor) -> Tensor:
    """L_G = mean_j (mean_batch f_j(real) - mean_batch f_j(fake))^2: the squared distance of section 3.1,
    averaged over the features, as the MNIST script's ``T.mean(T.square(mom_gen - mom_real))``."""
    if features_real.ndim != 2 or features_fake.ndim != 2 or features_real.shape[1] != features_fake.shape[1]:
        raise ValueError(f"squared_feature_matching_loss: need (N, F) and (M, F) features, got "
                         f"{features_real.shape} and {features_fake.shape}")
    gap = features_real.mean(dim=0) - features_fake.mean(dim=0)
    return (gap * gap).mean()
