"""Training: the supervised-only baseline and the semi-supervised GAN, side by side, step for step.

Every step does three updates, all with Adam (lr 3e-3, betas (0.5, 0.999): the learning rate and beta1 of
Improved-GAN's scripts):

1. baseline: the cross-entropy of ``ssgan.losses.supervised_loss`` on all the labeled points;
2. discriminator: ``ssgan.losses.improved_discriminator_loss`` on the same labeled points, a batch of
   unlabeled points and a batch of the generator's points (detached), in one forward pass;
3. generator: ``ssgan.losses.feature_matching_loss`` between the discriminator's wide features on a fresh
   unlabeled batch (detached: a target) and on a fresh batch of generated points.

Two settings differ from the image model, both to give the unlabeled data more say against the six (or
fifteen) labeled points, whose cross-entropy is learned in a few dozen steps and otherwise fixes the
boundary where the labels alone put it:

* ``unlabeled_weight`` 10 (the paper's 1). The real term - log sigmoid(log Z(x)) is smaller when one class
  logit stands out than when they are level (at the same mean logit), so on unlabeled points it pushes
  the predictions away from a tie, that is, the boundary away from the data; the weight makes that push
  count. Weights 1, 3 and 5 left the boundary through the moons' tips on some seeds; 30 was worse again.
* ``batch`` 500 unlabeled and 500 generated points per step (the paper's 100): with 100 the same settings
  helped on some seeds and on others left the boundary where the labels put it; with 500, seeds 0-4 end
  at 96% or more on the moons and 93% or more on the pinwheel.

``steps`` 3000: the semi-supervised classifier overtakes the baseline after a few hundred steps and then
carries the labels along the classes, which takes up to about 2500 steps on the slowest seeds tried.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import minigrad as mg
from minigrad import optim

from .. import losses
from .data import Problem, make_problem
from .models import ToyDiscriminator, ToyGenerator


@dataclass
class Config:
    problem: str = "moons"
    labels: int = 3             # labeled points per class
    unlabeled: int = 2000       # points in the unlabeled pool
    test: int = 2000            # held-out test points
    steps: int = 3000
    batch: int = 500            # unlabeled and generated points per step
    lr: float = 3e-3
    unlabeled_weight: float = 10.0
    seed: int = 0


@dataclass
class Result:
    config: Config
    problem: Problem
    supervised: ToyDiscriminator        # the baseline
    semi_supervised: ToyDiscriminator   # the GAN's discriminator
    generator: ToyGenerator
    supervised_accuracy: float = 0.0
    semi_supervised_accuracy: float = 0.0
    seconds: float = 0.0
    step: int = 0
    history: list = field(default_factory=list)   # (step, supervised accuracy, semi-supervised accuracy)

    def samples(self, n: int = 400, seed: int = 1) -> np.ndarray:
        """``n`` of the generator's current points (from a fixed noise batch, so frames are comparable)."""
        z = np.random.default_rng(seed).uniform(0.0, 1.0, (n, self.generator.z_dim)).astype(np.float32)
        with mg.no_grad():
            return self.generator(mg.tensor(z)).numpy()


def predict(model: ToyDiscriminator, x: np.ndarray) -> np.ndarray:
    """The (N, K) class logits of ``model`` on the points ``x``, in evaluation mode (no noise)."""
    was_training = model.training
    model.eval()
    try:
        with mg.no_grad():
            return model(mg.tensor(np.asarray(x, dtype=np.float32)))[0].numpy()
    finally:
        model.train(was_training)


def accuracy(model: ToyDiscriminator, x: np.ndarray, y: np.ndarray) -> float:
    return float((predict(model, x).argmax(axis=1) == y).mean())


def train(config: Config, progress: bool = False, frame_every: int = 0,
          on_frame: Callable[[Result], None] | None = None) -> Result:
    """Train both models on the problem ``config`` describes and return them with their test accuracies.

    ``progress`` shows a tqdm bar; ``on_frame(result)`` is called every ``frame_every`` steps (and after the
    first and last) with the models as they are, for the animation.
    """
    c = config
    start = time.perf_counter()
    problem = make_problem(c.problem, c.labels, c.unlabeled, c.test, c.seed)
    batch_rng = np.random.default_rng(np.random.SeedSequence(c.seed).spawn(4)[3])
    mg.manual_seed(c.seed)   # weights, the noise layers and the generator's z
    k = problem.num_classes
    baseline, disc, gen = ToyDiscriminator(k), ToyDiscriminator(k), ToyGenerator()
    betas = (0.5, 0.999)
    opt_b = optim.Adam(baseline.parameters(), lr=c.lr, betas=betas)
    opt_d = optim.Adam(disc.parameters(), lr=c.lr, betas=betas)
    opt_g = optim.Adam(gen.parameters(), lr=c.lr, betas=betas)
    result = Result(c, problem, baseline, disc, gen)
    x_lab, y_lab = mg.tensor(problem.x_labeled), problem.y_labeled
    n_lab, B = len(y_lab), c.batch

    def unlabeled_batch():
        return mg.tensor(problem.x_unlabeled[batch_rng.integers(0, len(problem.x_unlabeled), B)])

    def frame(step):
        result.step = step
        result.supervised_accuracy = accuracy(baseline, problem.x_test, problem.y_test)
        result.semi_supervised_accuracy = accuracy(disc, problem.x_test, problem.y_test)
        result.history.append((step, result.supervised_accuracy, result.semi_supervised_accuracy))
        if on_frame is not None:
            on_frame(result)

    from tqdm import tqdm

    if frame_every:
        frame(0)
    with tqdm(total=c.steps, disable=not progress, desc=f"toy {c.problem}", unit="step", leave=False) as bar:
        for step in range(1, c.steps + 1):
            # 1. the baseline: the labeled points alone
            opt_b.zero_grad()
            losses.supervised_loss(baseline(x_lab)[0], y_lab).backward()
            opt_b.step()
            # 2. the discriminator: labeled, unlabeled and generated points in one pass
            fake = gen(mg.rand(B, gen.z_dim)).detach()
            logits, _ = disc(mg.cat([x_lab, unlabeled_batch(), fake], 0))
            d_loss = losses.improved_discriminator_loss(logits[:n_lab], y_lab, logits[n_lab:n_lab + B],
                                                        logits[n_lab + B:], unlabeled_weight=c.unlabeled_weight)
            opt_d.zero_grad()
            d_loss.total.backward()
            opt_d.step()
            # 3. the generator: match the mean of the wide features on data
            features = disc.features(mg.cat([unlabeled_batch(), gen(mg.rand(B, gen.z_dim))], 0))
            g_loss = losses.feature_matching_loss(features[:B].detach(), features[B:])
            opt_g.zero_grad()
            g_loss.backward()
            opt_g.step()
            bar.update(1)
            if step % 100 == 0:
                bar.set_postfix(d=f"{d_loss.total.item():.3f}", g=f"{g_loss.item():.3f}", refresh=False)
            if frame_every and step % frame_every == 0 and step != c.steps:
                frame(step)
    frame(c.steps)
    result.seconds = time.perf_counter() - start
    return result


def accuracies(config: Config | None = None, **overrides) -> tuple[float, float]:
    """(supervised-only, semi-supervised) test accuracy after training with ``config`` (default
    :class:`Config`) changed by ``overrides``, e.g. ``accuracies(steps=300, seed=0)``."""
    c = config or Config()
    if overrides:
        c = Config(**{**c.__dict__, **overrides})
    r = train(c)
    return r.supervised_accuracy, r.semi_supervised_accuracy
