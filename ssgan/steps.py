"""One training step per preset, each a plain function that reads next to the paper.

Every step takes the models, their optimizers and the step's batches (tensors; labels as NumPy arrays),
updates the parameters, and returns a :class:`StepResult`: the losses and how many labeled examples of
the batch were classified right. They are gathered on the device and read from it *once*, at the end of
the step (:func:`read_once`; on a GPU each read is a stall), and checked there: a NaN or infinite loss
raises :class:`NonFiniteLoss`, and the training loop stops without writing anything more, so the last
checkpoint on disk is the last good state.

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


LOSS_NAMES = {"d_loss": "discriminator loss", "g_loss": "generator loss", "d_loss_class": "classification loss",
              "d_loss_real": "discriminator loss", "d_loss_fake": "discriminator loss"}


def read_once(where: str, correct, **loss_tensors) -> dict:
    """The step's scalars in one read from the device: ``{name: float}`` for the 0-d loss tensors and
    ``"correct"`` (an int) for the 0-d count; :class:`NonFiniteLoss` when a loss is NaN or infinite."""
    names = list(loss_tensors)
    with mg.no_grad():
        stacked = mg.stack([loss_tensors[k].detach().double() for k in names] + [correct.double()])
        values = stacked.numpy().tolist()          # the one device -> host copy of the step
    out = dict(zip(names, values))
    for name in ("d_loss", "g_loss") + tuple(names):
        if name in out and not math.isfinite(out[name]):
            label = "classification loss" if name == "d_loss" and len(names) == 1 else LOSS_NAMES[name]
            raise NonFiniteLoss(f"the {label} is {out[name]} at {where}")
    out["correct"] = int(round(values[-1]))
    return out


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


def _correct(logits, labels: np.ndarray):
    """How many rows of ``logits`` pick their label: a 0-d tensor on the logits' device."""
    return (logits.detach().argmax(dim=1) == mg.tensor(labels, device=logits.device)).sum()


REAL_TARGET = 0.9   # one-sided label smoothing of the seed model (section 3.4)


def _update(opt, loss) -> None:
    """One optimizer step on ``loss``: clear the gradients, backpropagate, step."""
    opt.zero_grad()
    loss.backward()
    opt.step()


def _feature_matching_update(D, opt_g, fake, features_real):
    """One Adam step of the generator on feature matching: the (already updated) discriminator runs on the
    same fakes with its weights frozen, against the real features of its earlier pass (detached)."""
    with frozen(D):
        _, features_fake = D(fake, real=False)
        g_loss = losses.feature_matching_loss(features_real.detach(), features_fake)
        opt_g.zero_grad()
        g_loss.backward()
    opt_g.step()
    return g_loss


def _result(d, g_loss, correct, labeled: int, where: str) -> StepResult:
    """Read a semi-supervised step's scalars once and make its :class:`StepResult`."""
    v = read_once(where, correct, d_loss=d.total, g_loss=g_loss, d_loss_class=d.classes, d_loss_real=d.real,
                  d_loss_fake=d.fake)
    return StepResult(d_loss=v["d_loss"], d_loss_class=v["d_loss_class"], d_loss_real=v["d_loss_real"],
                      d_loss_fake=v["d_loss_fake"], g_loss=v["g_loss"], correct=v["correct"], labeled=labeled)


def ssgan_step(D, G, opt_d, opt_g, x_lab, y_lab: np.ndarray, x_unl, *, z_dim: int, where: str,
               real_target: float = REAL_TARGET, unlabeled_weight: float = 1.0, g_steps: int = 1,
               ema=None) -> StepResult:
    """The default preset's step (section 5 of the paper, with the blog's model).

    1. ``fake = G(z)``, z ~ U(-1, 1), once (the generator's batch norm uses the batch's statistics).
    2. Discriminator: one pass over the real images ``cat(x_lab, x_unl)`` (the running statistics of its
       batch norm are updated from them) and one over ``fake.detach()`` with ``real=False`` (the fakes'
       own statistics; running statistics untouched). ``L_D = BCE(log Z(x_unl), 0.9) + BCE(log Z(fake),
       0) + CE(x_lab)``; one Adam step on D.
    3. Generator: the *updated* D on the same ``fake``, with D frozen; the real features are those of
       ``x_unl`` from step 2. ``L_G = mean_j |mean f_j(x_unl) - mean f_j(fake)|``; one Adam step on G.

    The study options (``ssgan/settings.py``; the defaults are the step above): ``real_target`` replaces
    the 0.9, ``unlabeled_weight`` scales the two unlabeled terms, ``ema`` (an ``AveragedModel`` of D) is
    updated after D's step, and ``g_steps > 1`` adds generator updates, each on a fresh batch ``G(z)``
    against the same real features; the reported ``g_loss`` is the first update's.
    """
    n_lab = x_lab.shape[0]
    noise = lambda: mg.rand(x_unl.shape[0], z_dim, device=x_unl.device) * 2.0 - 1.0  # noqa: E731
    fake = G(noise())
    logits_real, features_real = D(mg.cat([x_lab, x_unl], dim=0), real=True)
    logits_fake, _ = D(fake.detach(), real=False)
    d = losses.discriminator_loss(logits_real[:n_lab], y_lab, logits_real[n_lab:], logits_fake, real_target,
                                  unlabeled_weight)
    _update(opt_d, d.total)
    if ema is not None:
        ema.update_parameters(D)
    g_loss = _feature_matching_update(D, opt_g, fake, features_real[n_lab:])
    for _ in range(g_steps - 1):
        _feature_matching_update(D, opt_g, G(noise()), features_real[n_lab:])
    return _result(d, g_loss, _correct(logits_real[:n_lab], y_lab), n_lab, where)


def notebook_step(D, G, opt_d, opt_g, x, labels: np.ndarray, label_mask: np.ndarray, *, z_dim: int,
                  where: str) -> StepResult:
    """``--preset notebook``: the same two updates with the notebook's batches. There is no labeled batch:
    the labeled examples are those of the real batch ``x`` that belong to the labeled subset
    (``label_mask``); the real term and the real features use all of ``x``."""
    fake = G(mg.rand(x.shape[0], z_dim, device=x.device) * 2.0 - 1.0)
    logits_real, features_real = D(x, real=True)
    logits_fake, _ = D(fake.detach(), real=False)
    d = losses.notebook_discriminator_loss(logits_real, labels, label_mask, logits_fake, REAL_TARGET)
    _update(opt_d, d.total)
    g_loss = _feature_matching_update(D, opt_g, fake, features_real)
    labeled = np.flatnonzero(label_mask)
    correct = (_correct(logits_real[labeled], labels[labeled]) if len(labeled)
               else mg.tensor(0, device=x.device))    # a batch without labeled examples: 0, on the same device
    return _result(d, g_loss, correct, len(labeled), where)


def supervised_step(D, opt_d, x_lab, y_lab: np.ndarray, *, where: str, ema=None) -> StepResult:
    """``--supervised-only``: one Adam step of the discriminator as a classifier on the labeled batch (and
    the update of its average ``ema``, where the run keeps one)."""
    logits, _ = D(x_lab, real=True)
    loss = losses.supervised_loss(logits, y_lab)
    _update(opt_d, loss)
    if ema is not None:
        ema.update_parameters(D)
    v = read_once(where, _correct(logits, y_lab), d_loss=loss)
    return StepResult(d_loss=v["d_loss"], d_loss_class=v["d_loss"], correct=v["correct"], labeled=x_lab.shape[0])


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
    _update(opt_d, d.total)
    ema.update_parameters(D)

    # ---- generator: feature matching against a second unlabeled batch
    fake2 = G(mg.rand(x_unl2.shape[0], z_dim, device=x_unl2.device))
    with mg.no_grad():
        _, features_real = D(x_unl2)
    with frozen(D):
        _, features_fake = D(fake2)
        g_loss = feature_matching(features_real, features_fake)
        opt_g.zero_grad()
        g_loss.backward()
    opt_g.step()
    return _result(d, g_loss, _correct(logits[:n_lab], y_lab), n_lab, where)


def improved_supervised_step(D, opt_d, ema, x_lab, y_lab: np.ndarray, *, where: str) -> StepResult:
    """The baseline of ``--preset improved --supervised-only``: the same discriminator (noise on) trained
    on the labeled batch alone, ``L = CE(x_lab)``, one Adam step, one update of the average."""
    logits, _ = D(x_lab)
    loss = losses.supervised_loss(logits, y_lab)
    _update(opt_d, loss)
    ema.update_parameters(D)
    v = read_once(where, _correct(logits, y_lab), d_loss=loss)
    return StepResult(d_loss=v["d_loss"], d_loss_class=v["d_loss"], correct=v["correct"], labeled=x_lab.shape[0])
