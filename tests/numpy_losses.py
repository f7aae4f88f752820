"""The SSGAN's loss formulas written out in NumPy (float64), for tests that check ssgan against them."""
import numpy as np


def softplus(x):
    return np.logaddexp(0.0, x)


def bce_with_logits(logit, target):
    """Mean binary cross-entropy: -[t log s(x) + (1 - t) log(1 - s(x))], with log s(x) = -softplus(-x)
    and log(1 - s(x)) = -softplus(x)."""
    return np.mean(target * softplus(-logit) + (1 - target) * softplus(logit))


def lse(a):
    """log-sum-exp over the rows' entries, shifted by each row's maximum."""
    m = a.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(axis=1, keepdims=True)))[:, 0]


def cross_entropy_each(logits, labels):
    return lse(logits) - logits[np.arange(len(labels)), labels]


def cross_entropy(logits, labels):
    return np.mean(cross_entropy_each(logits, labels))
