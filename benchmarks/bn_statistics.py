"""One default-preset checkpoint's test accuracy under four choices of batch-norm statistics.

    python -m benchmarks.bn_statistics --checkpoint runs/mnist-ssgan/checkpoint.npz [--weights averaged]

Why the default preset is evaluated with recalibrated statistics (``ssgan/models.py``, ``recalibrated``)
comes from this table. The discriminator's dropout sits in front of its batch norms. The question is how
much of the test error comes from the statistics, rather than from the weights, and whether dropout is
the cause. The four rows are:

* ``running``: the running statistics kept in training (the training log's ``test_acc``);
* ``recomputed, dropout on``: reset and averaged again over training batches with dropout *on*, as
  PyTorch's ``update_bn`` does in training mode. This checks whether the statistics are merely stale
  (momentum 0.1 lags the weights);
* ``recomputed, dropout off``: the same batches with dropout and input noise off;
* ``each test batch's own``: every test batch normalised by its own statistics, dropout off. This needs
  no training images at all.

The batches are ``--batches`` random batches of ``--batch`` training images (seeded), so the two
recomputed rows see the same images. The dropout draws come from ``mg.manual_seed(--seed)``. The
training log's ``test_acc_recal`` uses 10 000 fixed images (``models.calibration_indices``) and is what
``python -m ssgan.evaluate`` prints.
"""
from __future__ import annotations

import argparse
import copy
import sys

import numpy as np

import minigrad as mg
from ssgan import data
from ssgan.evaluate import load_discriminators, predict
from ssgan.models import recalibrated


def load(path, data_dir, weights):
    """The checkpoint's raw or averaged discriminator, with the training and test sets, through the loader
    ``ssgan.evaluate`` uses."""
    config, meta, models, test, folder, layout = load_discriminators(path, data_dir)
    if config["preset"] != "default":
        raise SystemExit(f"error: {path}: preset {config['preset']!r}; this compares the default preset's "
                         "batch-norm statistics")
    if weights == "averaged" and "D_ema" not in models:
        raise SystemExit(f"error: {path} holds no averaged weights (trained without --ema-rate)")
    train = data.load_dataset(config["dataset"], "train", folder, layout=layout)
    return (models["D_ema"].module if weights == "averaged" else models["D"]), train, test, meta


def recomputed(D, batches, dropout: bool):
    """A copy of ``D`` whose running statistics are the plain average over ``batches`` (real images, all of
    one size), with dropout and input noise on or off: ``ssgan.models.recalibrated`` on those batches."""
    return recalibrated(D, np.concatenate(batches), batch_size=len(batches[0]), dropout=dropout)


def per_test_batch(D, images, batch):
    """Predictions with every test batch normalised by its own statistics, dropout off."""
    model = copy.deepcopy(D)
    model.drop_rate, model.input_noise = 0.0, 0.0
    model.train()
    out = []
    with mg.no_grad():
        for start in range(0, len(images), batch):
            logits, _ = model(mg.tensor(images[start:start + batch]), real=False)   # real=False: no update
            out.append(logits.argmax(dim=1).numpy())
    return np.concatenate(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bn_statistics", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="a default-preset checkpoint.npz")
    p.add_argument("--data-dir", default=None, help="default: the folder saved with the run")
    p.add_argument("--weights", choices=("raw", "averaged"), default="raw")
    p.add_argument("--batches", type=int, default=60, help="training batches for the recomputed rows (default 60)")
    p.add_argument("--batch", type=int, default=256, help="images per batch (default 256)")
    p.add_argument("--seed", type=int, default=0, help="seeds the batches and the dropout draws (default 0)")
    args = p.parse_args(argv)
    D, train, test, meta = load(args.checkpoint, args.data_dir, args.weights)
    rng = np.random.default_rng(args.seed)
    batches = [train.images[rng.choice(len(train), args.batch, replace=False)] for _ in range(args.batches)]
    acc = lambda model: float(np.mean(predict(model, test.images, 500) == test.labels))  # noqa: E731
    mg.manual_seed(args.seed)
    rows = [("running (training's, the log's test_acc)", acc(D)),
            ("recomputed, dropout on", acc(recomputed(D, batches, dropout=True))),
            ("recomputed, dropout off", acc(recomputed(D, batches, dropout=False))),
            ("each test batch's own, dropout off", float(np.mean(per_test_batch(D, test.images, args.batch)
                                                                  == test.labels)))]
    print(f"{args.checkpoint}: {meta.get('epoch')} epochs done (step {meta.get('step')}), {args.weights} weights; "
          f"{args.batches} batches of {args.batch} training images, seed {args.seed}")
    print("| batch-norm statistics | test accuracy |\n|:--|--:|")
    for name, value in rows:
        print(f"| {name} | {100 * value:.2f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
