"""The toy problems: two moons and a five-arm pinwheel in the plane, made by the program from a seed.

Each problem is a :class:`Problem`: a pool of unlabeled points (their classes are kept only to draw the
labeled subset and are never shown to a model), a handful of labeled points per class drawn from that
pool, as the image model draws its labeled subset from the training set, and a held-out test set drawn
from the same distribution. Classes are balanced: point ``i`` of a sample belongs to class ``i % K``.

Both problems are built so that the classes are separated by clear low-density gaps, which is what
semi-supervised learning can exploit, and so that a classifier that sees only the few labels has no way
of knowing where those gaps run: the moons interlock, so the straight-ish boundary that separates three
labeled points of each class cuts through the tips; the pinwheel's arms curl, so a boundary drawn from
three points per arm cuts across the arms' outer ends.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

PROBLEMS = ("moons", "pinwheel")

MOONS_NOISE = 0.07         # std of the Gaussian jitter (in the moons' original units: radius 1, gap 0.5)
PINWHEEL_ARMS = 5
PINWHEEL_TWIST = 2.2       # radians an arm turns from its inner end to its outer end
PINWHEEL_RADII = (0.4, 2.0)
PINWHEEL_NOISE = 0.05


class Problem(NamedTuple):
    name: str
    num_classes: int
    x_unlabeled: np.ndarray   # (N, 2) float32
    y_unlabeled: np.ndarray   # (N,) int64: used only to pick the labeled subset
    x_labeled: np.ndarray     # (L * K, 2) float32, a subset of x_unlabeled
    y_labeled: np.ndarray     # (L * K,) int64
    x_test: np.ndarray        # (M, 2) float32
    y_test: np.ndarray        # (M,) int64


def num_classes(name: str) -> int:
    if name == "moons":
        return 2
    if name == "pinwheel":
        return PINWHEEL_ARMS
    raise ValueError(f"unknown problem {name!r} (choose from {', '.join(PROBLEMS)})")


def moons(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points of the two interlocking half circles: class 0 the upper arc of the unit circle, class 1
    the lower arc shifted by (1, 0.5); then centred and scaled to about [-2, 2] on each axis."""
    y = np.arange(n) % 2
    t = rng.uniform(0.0, np.pi, n)
    x0 = np.where(y == 0, np.cos(t), 1.0 - np.cos(t))
    x1 = np.where(y == 0, np.sin(t), 0.5 - np.sin(t))
    x = np.stack([x0, x1], axis=1) + rng.normal(0.0, MOONS_NOISE, (n, 2))
    return ((x - (0.5, 0.25)) / 0.8).astype(np.float32), y.astype(np.int64)


def pinwheel(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points on five spiral arms: arm k starts at angle 2 pi k / 5 and radius 0.4 and turns by
    ``PINWHEEL_TWIST`` radians on its way out to radius 2."""
    y = np.arange(n) % PINWHEEL_ARMS
    t = rng.uniform(0.0, 1.0, n)
    r = PINWHEEL_RADII[0] + (PINWHEEL_RADII[1] - PINWHEEL_RADII[0]) * t
    angle = 2.0 * np.pi * y / PINWHEEL_ARMS + PINWHEEL_TWIST * t
    x = np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1) + rng.normal(0.0, PINWHEEL_NOISE, (n, 2))
    return x.astype(np.float32), y.astype(np.int64)


def make_problem(name: str, labels_per_class: int, n_unlabeled: int, n_test: int, seed: int) -> Problem:
    """The problem ``name`` with ``n_unlabeled`` pool points, ``labels_per_class`` labeled ones per class
    drawn from the pool without replacement, and ``n_test`` test points, all from ``seed``."""
    k = num_classes(name)
    if labels_per_class < 1:
        raise ValueError(f"labels per class must be at least 1, got {labels_per_class}")
    if labels_per_class > n_unlabeled // k:
        raise ValueError(f"{labels_per_class} labels per class is more than the {n_unlabeled // k} points "
                         f"of each class in a pool of {n_unlabeled}")
    if n_test < 1:
        raise ValueError(f"the test set needs at least 1 point, got {n_test}")
    make = moons if name == "moons" else pinwheel
    pool_rng, label_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    x, y = make(n_unlabeled, pool_rng)
    picked = np.concatenate([label_rng.choice(np.flatnonzero(y == c), labels_per_class, replace=False)
                             for c in range(k)])
    x_test, y_test = make(n_test, test_rng)
    return Problem(name, k, x, y, x[picked], y[picked], x_test, y_test)
