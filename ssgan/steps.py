"""One training step per preset, each a plain function that reads next to the paper.

Every step takes the models, their optimizers and the step's batches (tensors; labels as NumPy arrays),
updates the parameters, and returns a :class:`StepResult`: the losses (Python floats, checked finite
before any parameter changes, so a NaN never reaches the weights) and how many labeled examples of the
batch were classified right.

===========================  ==================================================================
``ssgan_step``               the default preset: a discriminator step and a feature-matching
                             generator step on a labeled, an unlabeled and a generated batch
``notebook_step``            ``--preset notebook``: the same, with the blog notebook's batches
``supervised_step``          ``--supervised-only``: the discriminator as a plain classifier
``improved_step``            ``--preset improved``: Improved-GAN's own step
``improved_supervised_step`` ``--preset improved --supervised-only``
===========================  ==================================================================
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np

import minigrad as mg

from . import losses


class NonFiniteLoss(Exception):
    """A loss became NaN or infinite; the run stops without writing anything more."""


@dataclass
class StepResult:
    """What one step reports: the discriminator's loss and its terms, the generator's loss (None where the
    step has no generator), and the labeled batch's correct count."""

    d_loss: float
    d_loss_class: float
    d_loss_real: float | None = None
    d_loss_fake: float | None = None
    g_loss: float | None = None
    correct: int = 0
    labeled: int = 0


def finite(name: str, value: float, where: str) -> float:
    """``value``, or :class:`NonFiniteLoss` naming the loss and the step when it is NaN or infinite."""
    if not math.isfinite(value):
        raise NonFiniteLoss(f"the {name} is {value} at {where}")
    return value


@contextlib.contextmanager
def frozen(module):
    """Parameters of ``module`` stop requiring gradients inside the block: gradients still flow *through*
    the module to its input, but no weight gradient is computed (the generator step does not need D's)."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad = False
    try:
        yield
    finally:
        for p in params:
            p.requires_grad = True


def _correct(logits, labels: np.ndarray) -> int:
    return int((logits.numpy().argmax(axis=1) == labels).sum())


REAL_TARGET = 0.9   # one-sided label smoothing of the seed model (section 3.4)


def _discriminator_update(opt_d, d, where: str) -> float:
    """One Adam step of the discriminator on the loss parts ``d``; returns the loss (checked finite)."""
    total = finite("discriminator loss", d.total.item(), where)
    opt_d.zero_grad()
    d.total.backward()
    opt_d.step()
    return total


def _feature_matching_update(D, opt_g, fake, features_real, where: str) -> float:
    """One Adam step of the generator on feature matching: the (already updated) discriminator runs on the
    same fakes with its weights frozen, against the real features of its earlier pass (detached)."""
    with frozen(D):
        _, features_fake = D(fake, real=False)
        g_loss = losses.feature_matching_loss(features_real.detach(), features_fake)
        g_value = finite("generator loss", g_loss.item(), where)
        opt_g.zero_grad()
        g_loss.backward()
    opt_g.step()
    return g_value


def ssgan_step(D, G, opt_d, opt_g, x_lab, y_lab: np.ndarray, x_unl, *, z_dim: int, where: str) -> StepResult:
    """The default preset's step (section 5 of the paper, with the blog's model).

    1. ``fake = G(z)``, z ~ U(-1, 1), once (the generator's batch norm uses the batch's statistics).
    2. Discriminator: one pass over the real images ``cat(x_lab, x_unl)`` (the running statistics of its
       batch norm are updated from them) and one over ``fake.detach()`` with ``real=False`` (the fakes'
       own statistics; running statistics untouched). ``L_D = BCE(log Z(x_unl), 0.9) + BCE(log Z(fake),
       0) + CE(x_lab)``; one Adam step on D.
    3. Generator: the *updated* D on the same ``fake``, with D frozen; the real features are those of
       ``x_unl`` from step 2. ``L_G = mean_j |mean f_j(x_unl) - mean f_j(fake)|``; one Adam step on G.
    """
    n_lab = x_lab.shape[0]
    fake = G(mg.rand(x_unl.shape[0], z_dim, device=x_unl.device) * 2.0 - 1.0)
    logits_real, features_real = D(mg.cat([x_lab, x_unl], dim=0), real=True)
    logits_fake, _ = D(fake.detach(), real=False)
    d = losses.discriminator_loss(logits_real[:n_lab], y_lab, logits_real[n_lab:], logits_fake, REAL_TARGET)
    d_total = _discriminator_update(opt_d, d, where)
    g_value = _feature_matching_update(D, opt_g, fake, features_real[n_lab:], where)
    return StepResult(d_loss=d_total, d_loss_class=d.classes.item(), d_loss_real=d.real.item(),
                      d_loss_fake=d.fake.item(), g_loss=g_value, correct=_correct(logits_real[:n_lab], y_lab),
                      labeled=n_lab)


def notebook_step(D, G, opt_d, opt_g, x, labels: np.ndarray, label_mask: np.ndarray, *, z_dim: int,
                  where: str) -> StepResult:
    """``--preset notebook``: the same two updates with the notebook's batches. There is no labeled batch:
    the labeled examples are those of the real batch ``x`` that belong to the labeled subset
    (``label_mask``); the real term and the real features use all of ``x``."""
    fake = G(mg.rand(x.shape[0], z_dim, device=x.device) * 2.0 - 1.0)
    logits_real, features_real = D(x, real=True)
    logits_fake, _ = D(fake.detach(), real=False)
    d = losses.notebook_discriminator_loss(logits_real, labels, label_mask, logits_fake, REAL_TARGET)
    d_total = _discriminator_update(opt_d, d, where)
    g_value = _feature_matching_update(D, opt_g, fake, features_real, where)
    predicted = logits_real.numpy().argmax(axis=1)
    return StepResult(d_loss=d_total, d_loss_class=d.classes.item(), d_loss_real=d.real.item(),
                      d_loss_fake=d.fake.item(), g_loss=g_value,
                      correct=int(((predicted == labels) & label_mask).sum()), labeled=int(label_mask.sum()))


def supervised_step(D, opt_d, x_lab, y_lab: np.ndarray, *, where: str) -> StepResult:
    """``--supervised-only``: one Adam step of the discriminator as a classifier on the labeled batch."""
    logits, _ = D(x_lab, real=True)
    loss = losses.supervised_loss(logits, y_lab)
    value = finite("classification loss", loss.item(), where)
    opt_d.zero_grad()
    loss.backward()
    opt_d.step()
    return StepResult(d_loss=value, d_loss_class=value, correct=_correct(logits, y_lab), labeled=x_lab.shape[0])


def improved_step(D, G, opt_d, opt_g, ema, x_lab, y_lab: np.ndarray, x_unl, x_unl2, *, z_dim: int,
                  where: str, unlabeled_weight: float = 1.0,
                  feature_matching=losses.squared_feature_matching_loss) -> StepResult:
    """``--preset improved``: one discriminator step, then one generator step, as Improved-GAN's
    ``train_batch_disc`` and ``train_batch_gen`` (``train_mnist_feature_matching.py``).

    Discriminator: ``fake = G(z)``, z ~ U(0, 1); class logits of the labeled batch, the unlabeled batch
    and the fakes (one pass over the three stacked batches: the discriminator has no batch statistics, so
    this is the same function as three passes, with the noise layers drawing fresh noise for every row);
    ``L_D = CE(x_lab) + 0.5 BCE(log Z(x_unl), 1) + 0.5 BCE(log Z(fake), 0)``; one Adam step on D; one
    update of the parameter average ``ema``.

    Generator: a fresh ``fake2 = G(z2)`` and the step's *second* unlabeled batch ``x_unl2``; the updated
    D's features (noise on) of both; ``L_G = mean_j (mean f_j(x_unl2) - mean f_j(fake2))^2``; one Adam
    step on G. The real features are a target, computed without a graph; the fake pass runs with D's
    parameters frozen, so no weight gradient of D is computed. ``feature_matching``: the squared form of
    the MNIST script (the default) or ``losses.feature_matching_loss``, the L1 form of the SVHN script.
    """
    n_lab, n_unl = x_lab.shape[0], x_unl.shape[0]

    # ---- discriminator
    fake = G(mg.rand(n_unl, z_dim, device=x_unl.device))
    logits, _ = D(mg.cat([x_lab, x_unl, fake.detach()], dim=0))
    d = losses.improved_discriminator_loss(logits[:n_lab], y_lab, logits[n_lab:n_lab + n_unl],
                                           logits[n_lab + n_unl:], unlabeled_weight)
    d_total = finite("discriminator loss", d.total.item(), where)
    opt_d.zero_grad()
    d.total.backward()
    opt_d.step()
    ema.update_parameters(D)

    # ---- generator: feature matching against a second unlabeled batch
    fake2 = G(mg.rand(x_unl2.shape[0], z_dim, device=x_unl2.device))
    with mg.no_grad():
        _, features_real = D(x_unl2)
    with frozen(D):
        _, features_fake = D(fake2)
        g_loss = feature_matching(features_real, features_fake)
        g_value = finite("generator loss", g_loss.item(), where)
        opt_g.zero_grad()
        g_loss.backward()
    opt_g.step()

    return StepResult(d_loss=d_total, d_loss_class=d.classes.item(), d_loss_real=d.real.item(),
                      d_loss_fake=d.fake.item(), g_loss=g_value, correct=_correct(logits[:n_lab], y_lab),
                      labeled=n_lab)


def improved_supervised_step(D, opt_d, ema, x_lab, y_lab: np.ndarray, *, where: str) -> StepResult:
    """The baseline of ``--preset improved --supervised-only``: the same discriminator (noise on) trained
    on the labeled batch alone, ``L = CE(x_lab)``, one Adam step, one update of the average."""
    logits, _ = D(x_lab)
    loss = losses.supervised_loss(logits, y_lab)
    value = finite("classification loss", loss.item(), where)
    opt_d.zero_grad()
    loss.backward()
    opt_d.step()
    ema.update_parameters(D)
    return StepResult(d_loss=value, d_loss_class=value, correct=_correct(logits, y_lab), labeled=x_lab.shape[0])
