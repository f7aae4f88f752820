"""Which training examples carry labels, and the batches a training step draws.

1. **The labeled subset.** :func:`labeled_subset` picks ``n_labels`` indices, class-balanced and seeded
   (or simply the first ``n_labels``, as the original notebook does).
2. **Batches.** Each training step draws an unlabeled batch and a labeled batch: :func:`epoch_batches`
   walks once over a shuffled training set, :class:`LabeledCycler` cycles through the labeled subset,
   reshuffled on every pass. All randomness comes from NumPy ``Generator`` objects the caller passes in,
   so their ``bit_generator.state`` can be saved in a checkpoint and restored.

Everything here works on index arrays; nothing knows about images or minigrad.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np


# --------------------------------------------------------------------------------------------------
# 1. The labeled subset
# --------------------------------------------------------------------------------------------------

def labeled_subset(labels, n_labels: int, seed=0, *, method: str = "balanced",
                   num_classes=None) -> np.ndarray:
    """Indices (sorted, int64) of the training examples whose labels the model may use.

    ``method="balanced"`` (the default): ``n_labels / K`` examples of each of the ``K`` classes, drawn
    without replacement by ``numpy.random.default_rng(seed)`` (a permutation of each class's indices, in
    class order, so the same seed always gives the same subset). The classes are the distinct values of
    ``labels``; pass ``num_classes`` to also check that all of them are present. ``n_labels`` must be a
    multiple of ``K`` and no class may have fewer than ``n_labels / K`` examples.

    ``method="first_n"``: the first ``n_labels`` examples, whatever their classes (the original notebook's
    choice; ``seed`` is unused).
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labeled_subset: labels must be a 1-D integer array, got shape {labels.shape} "
                         f"dtype {labels.dtype}")
    if isinstance(n_labels, bool) or not isinstance(n_labels, (int, np.integer)) or n_labels <= 0:
        raise ValueError(f"labeled_subset: n_labels must be a positive integer, got {n_labels!r}")
    if n_labels > len(labels):
        raise ValueError(f"labeled_subset: n_labels={n_labels} exceeds the {len(labels)} examples")
    if method == "first_n":
        return np.arange(n_labels, dtype=np.int64)
    if method != "balanced":
        raise ValueError(f"labeled_subset: unknown method {method!r}: expected 'balanced' or 'first_n'")
    classes, counts = np.unique(labels, return_counts=True)
    if num_classes is not None and len(classes) != num_classes:
        raise ValueError(f"labeled_subset: expected {num_classes} classes, the labels hold {len(classes)}: "
                         f"{classes.tolist()}")
    if n_labels % len(classes):
        raise ValueError(f"labeled_subset: n_labels={n_labels} is not a multiple of the "
                         f"{len(classes)} classes")
    per_class = n_labels // len(classes)
    short = [f"class {c} has {k}" for c, k in zip(classes.tolist(), counts.tolist()) if k < per_class]
    if short:
        raise ValueError(f"labeled_subset: n_labels={n_labels} needs {per_class} examples of each class but "
                         + ", ".join(short))
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in classes]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


# --------------------------------------------------------------------------------------------------
# 2. Batches
# --------------------------------------------------------------------------------------------------

def _check_batching(where: str, n: int, batch_size: int, rng) -> None:
    for arg, value in (("n", n), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{where}: {arg} must be a positive integer, got {value!r}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{where}: rng must be a numpy.random.Generator, got {type(rng).__name__}")


def batches_per_epoch(n_train: int, batch_size: int) -> int:
    """Full batches in one epoch: ``n_train // batch_size`` (the incomplete last batch is dropped)."""
    return n_train // batch_size


def epoch_batches(n_train: int, batch_size: int, rng: np.random.Generator, *,
                  start_batch: int = 0) -> Iterator[np.ndarray]:
    """The unlabeled batches of one epoch: index arrays of length ``batch_size`` over a shuffled training set.

    One epoch is one pass over ``rng.permutation(n_train)``, cut into ``n_train // batch_size`` batches;
    the last ``n_train % batch_size`` indices of the permutation, too few for a full batch, are dropped for
    that epoch (every batch then has the same size, which batch norm and the loss averages like; the next
    epoch's permutation gives those examples their turn).

    The permutation is drawn when this function is called, not lazily. To resume in the middle of an epoch,
    restore ``rng.bit_generator.state`` to what it was before the epoch's call and pass ``start_batch``
    (the number of batches already done); give this function its own Generator so nothing else moves it.
    """
    _check_batching("epoch_batches", n_train, batch_size, rng)
    n_batches = batches_per_epoch(n_train, batch_size)
    if n_batches == 0:
        raise ValueError(f"epoch_batches: batch_size={batch_size} exceeds the {n_train} training examples")
    if not 0 <= start_batch <= n_batches:
        raise ValueError(f"epoch_batches: start_batch must be in [0, {n_batches}], got {start_batch}")
    order = rng.permutation(n_train)
    return (order[i * batch_size:(i + 1) * batch_size] for i in range(start_batch, n_batches))


class LabeledCycler:
    """Endless labeled batches: ``next(cycler)`` gives the next ``batch_size`` labeled indices.

    The stream is an endless concatenation of independent permutations of ``indices`` (each drawn by
    ``rng`` when the previous one is used up), cut into consecutive batches -- what Improved-GAN does by
    tiling reshuffled copies of its labeled set. A batch may span the end of one permutation and the start
    of the next, so when ``batch_size`` exceeds the number of labels a batch holds some examples twice (or
    more) and may miss others: with 100 labels and batch 128, every batch has at least 28 repeated entries.
    We chose this over sampling with replacement because over any whole number of passes every labeled
    example is drawn exactly equally often (e.g. 25 batches of 128 = 32 passes over 100 labels), and,
    when ``batch_size`` is at most the number of labels, a batch inside one pass holds no repeats.

    ``state_dict()`` / ``load_state_dict()`` save and restore the position, the current permutation and
    ``rng``'s state, so a resumed run draws the same batches. Give the cycler its own Generator.
    """

    def __init__(self, indices, batch_size: int, rng: np.random.Generator):
        indices = np.asarray(indices)
        if indices.ndim != 1 or len(indices) == 0 or not np.issubdtype(indices.dtype, np.integer):
            raise ValueError(f"LabeledCycler: indices must be a non-empty 1-D integer array, got shape "
                             f"{indices.shape} dtype {indices.dtype}")
        _check_batching("LabeledCycler", len(indices), batch_size, rng)
        self.indices = indices.astype(np.int64)
        self.batch_size = int(batch_size)
        self.rng = rng
        self._order = self.rng.permutation(self.indices)
        self._position = 0   # how much of self._order has been handed out

    def __iter__(self):
        return self

    def __next__(self) -> np.ndarray:
        parts, needed = [], self.batch_size
        while needed:
            if self._position == len(self._order):   # this pass is used up: reshuffle
                self._order = self.rng.permutation(self.indices)
                self._position = 0
            take = min(needed, len(self._order) - self._position)
            parts.append(self._order[self._position:self._position + take])
            self._position += take
            needed -= take
        return np.concatenate(parts)

    def state_dict(self) -> dict:
        """Everything that determines the next batches (arrays copied, so later draws do not change it)."""
        return {"order": self._order.copy(), "position": self._position,
                "rng_state": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (the rng must be of the same bit generator type)."""
        order = np.asarray(state["order"], dtype=np.int64)
        if order.shape != self.indices.shape or not np.array_equal(np.sort(order), np.sort(self.indices)):
            raise ValueError("LabeledCycler.load_state_dict: the saved order is not a permutation of this "
                             "cycler's indices")
        if not 0 <= int(state["position"]) <= len(order):
            raise ValueError(f"LabeledCycler.load_state_dict: position {state['position']} is out of "
                             f"[0, {len(order)}]")
        self._order = order.copy()
        self._position = int(state["position"])
        self.rng.bit_generator.state = state["rng_state"]
