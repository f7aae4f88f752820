"""``python -m ssgan.evaluate --checkpoint PATH``: accuracy, per-class accuracy and the confusion matrix of a
trained discriminator on the full test set.

The model and the dataset come from the config stored in the checkpoint, so only the checkpoint is needed
(plus ``--data-dir`` / ``--device`` when they differ from the training machine's). Evaluation runs in
evaluation mode (no dropout; batch norm with its running statistics, except under the notebook preset,
whose batch norm always uses the batch's statistics), in batches, without building a graph.

The helpers :func:`predict`, :func:`confusion_matrix` and :func:`per_class_accuracy` are also what the
training loop uses for its per-epoch accuracies.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

import minigrad as mg
from minigrad import backend

from . import checkpoint as ckpt
from . import data, files


def predict(model, images: np.ndarray, batch_size: int = 500, device: str = "cpu") -> np.ndarray:
    """Predicted classes (int64, one per image) of ``model`` (a Discriminator) for (N, C, H, W) ``images``.

    The model is put in evaluation mode for the call and given back in the mode it was in.
    """
    if batch_size < 1:
        raise ValueError(f"predict: batch_size must be positive, got {batch_size}")
    was_training = model.training
    model.eval()
    out = []
    try:
        with mg.no_grad():
            for start in range(0, len(images), batch_size):
                logits, _ = model(mg.tensor(images[start:start + batch_size], device=device))
                out.append(logits.argmax(dim=1).numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``m[true, predicted]``. Rows run over every label present (so a label outside the classes,
    like the notebook preset's 10, gets a row of its own), columns over the ``num_classes`` classes."""
    labels, predictions = np.asarray(labels, dtype=np.int64), np.asarray(predictions, dtype=np.int64)
    if labels.shape != predictions.shape:
        raise ValueError(f"confusion_matrix: {labels.shape} labels but {predictions.shape} predictions")
    rows = max(num_classes, int(labels.max()) + 1 if labels.size else 0)
    m = np.zeros((rows, num_classes), dtype=np.int64)
    np.add.at(m, (labels, predictions), 1)
    return m


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    """Per true class (row): correct / examples (NaN for a class with no examples). Row k is right only in
    column k, so a row beyond the columns (an out-of-range label) has accuracy 0."""
    totals = matrix.sum(axis=1)
    diag = np.array([matrix[k, k] if k < matrix.shape[1] else 0 for k in range(matrix.shape[0])])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, diag / np.maximum(totals, 1), np.nan)


def format_report(matrix: np.ndarray) -> str:
    """The confusion matrix with a per-class accuracy column, as text."""
    rows, cols = matrix.shape
    width = max(6, len(str(int(matrix.max()))) + 1 if matrix.size else 6)
    acc = per_class_accuracy(matrix)
    head = "true\\pred" + "".join(f"{k:>{width}}" for k in range(cols)) + "   accuracy   count"
    lines = [head]
    for r in range(rows):
        a = f"{'-':>9}" if np.isnan(acc[r]) else f"{acc[r]:>9.4f}"
        lines.append(f"{r:>9}" + "".join(f"{int(v):>{width}}" for v in matrix[r]) + f"  {a}  {int(matrix[r].sum()):>6}")
    return "\n".join(lines)


# The test accuracies logged after each epoch, in the order they are printed (None where the run has none).
ACCURACY_KEYS = ("test_acc", "test_acc_ema", "test_acc_recal", "test_acc_ema_recal")


def recalibrates(config: dict) -> bool:
    """Whether the run's discriminator has batch norm with running statistics fitted with dropout on (the
    default preset), so that :func:`ssgan.models.recalibrated` gives it statistics fit for evaluation."""
    return config.get("preset") == "default"


def calibration_images(train, config: dict):
    """The training images the run's batch-norm statistics are recomputed on (``models.calibration_indices``
    of the run's seed; a config without a seed was not written by ssgan.train and is taken as seed 0)."""
    from .models import calibration_indices

    return train.images[calibration_indices(len(train), config.get("seed", 0))]


def epoch_accuracies(models: dict, config: dict, train, test, labeled, batch_size: int) -> dict:
    """The accuracies of the end of an epoch: ``train_acc`` on the labeled training examples, ``test_acc``
    on the test set (both with the discriminator as it is), ``test_acc_ema`` with the averaged weights
    where the run keeps an average, and, for the default preset, ``test_acc_recal`` / ``test_acc_ema_recal``:
    the same weights with batch-norm statistics recomputed on training images without dropout
    (:func:`ssgan.models.recalibrated`)."""
    from .models import recalibrated

    device = config["device"]
    acc = lambda model, images, labels: float(np.mean(predict(model, images, batch_size, device) == labels))  # noqa: E731
    out = {"train_acc": acc(models["D"], train.images[labeled], train.labels[labeled]),
           "test_acc": acc(models["D"], test.images, test.labels), "test_acc_ema": None}
    if "D_ema" in models:
        out["test_acc_ema"] = acc(models["D_ema"].module, test.images, test.labels)
    if recalibrates(config):
        calibration = calibration_images(train, config)
        for key, model in (("test_acc_recal", models["D"]),
                           ("test_acc_ema_recal", models["D_ema"].module if "D_ema" in models else None)):
            if model is not None:
                out[key] = acc(recalibrated(model, calibration, batch_size, device), test.images, test.labels)
    return out


def load_discriminators(path, data_dir=None):
    """The discriminator(s) saved in the checkpoint ``path``, ready to evaluate, and what goes with them:
    ``(config, meta, models, test, folder, layout)``. ``models`` holds ``"D"`` and, where the run keeps an
    average, ``"D_ema"`` (the generator is not loaded); ``test`` is the dataset's test split as the run saw
    it, read from ``folder`` (``data_dir``, else the folder saved with the run) in the images' ``layout``.
    A checkpoint whose config was not written by ``ssgan.train`` is refused with :class:`CheckpointError`."""
    from .models import build_models

    arrays, meta = ckpt.load_npz(path)
    config = meta.get("config")
    if not isinstance(config, dict):
        raise ckpt.CheckpointError(f"checkpoint {path} has no run config")
    missing = [k for k in ("dataset", "preset", "d_width", "g_width", "z_dim", "supervised_only")
               if k not in config]
    if missing:
        raise ckpt.CheckpointError(f"checkpoint {path}: its config lacks {', '.join(map(repr, missing))} (it was "
                                   "not written by ssgan.train, or was edited)")
    info = data.dataset_info(config["dataset"])
    layout = "flat" if config["preset"] == "improved" and config["dataset"] == "mnist" else "padded"
    folder = data_dir if data_dir is not None else config.get("data_dir")
    test = data.load_dataset(config["dataset"], "test", folder, remap_ten=config["preset"] != "notebook",
                             layout=layout)
    try:
        models = build_models(config, info.num_channels, info.num_classes, test.images.shape[1:])
    except ValueError as exc:
        raise ckpt.CheckpointError(f"checkpoint {path}: {exc}") from None
    models.pop("G", None)   # only the discriminator is evaluated (and checked)
    ckpt.unpack_state(path, {k: v for k, v in arrays.items() if not k.startswith("model/G/")}, meta, models, {})
    return config, meta, models, test, folder, layout


def evaluate_checkpoint(path, data_dir=None, device: str = "cpu", batch_size: int = 500,
                        weights: str = "auto", bn_stats: str = "auto") -> dict:
    """Load the discriminator saved in ``path`` and evaluate it on its dataset's full test set.

    ``weights``: ``"auto"`` uses the averaged weights when the checkpoint has them (``--preset improved``)
    and the raw ones otherwise; ``"raw"`` / ``"averaged"`` choose. ``bn_stats``: ``"auto"`` evaluates the
    default preset with batch-norm statistics recomputed on the run's calibration images without dropout
    (the training log's ``test_acc_recal``) and every other preset as saved; ``"running"`` uses the saved
    running statistics (the log's ``test_acc``); ``"recalibrated"`` asks for the first. The result says
    which weights and which statistics were used.
    """
    from .models import recalibrated

    config, meta, models, test, folder, layout = load_discriminators(path, data_dir)
    notebook = config["preset"] == "notebook"
    has_average = "D_ema" in models
    if weights not in ("auto", "raw", "averaged"):
        raise ValueError(f"weights must be auto, raw or averaged, got {weights!r}")
    if weights == "averaged" and not has_average:
        raise ckpt.CheckpointError(f"checkpoint {path} holds no averaged weights (--preset improved "
                                   "keeps them, the default preset with --ema-rate); use --weights raw")
    if bn_stats not in ("auto", "running", "recalibrated"):
        raise ValueError(f"bn_stats must be auto, running or recalibrated, got {bn_stats!r}")
    if bn_stats == "recalibrated" and not recalibrates(config):
        raise ckpt.CheckpointError(f"checkpoint {path} (preset {config['preset']}): its discriminator has no batch-norm "
                                   "running statistics to recompute (only the default preset's has); use --bn-stats running")
    use_average = has_average and weights != "raw"
    model = models["D_ema"].module if use_average else models["D"]
    model.to(device)
    if notebook:
        batch_size = config["batch_size"]  # batch statistics at test time: evaluate in training-size batches
    recalibrate = recalibrates(config) and bn_stats != "running"
    if recalibrate:
        train = data.load_dataset(config["dataset"], "train", folder, remap_ten=True, layout=layout)
        model = recalibrated(model, calibration_images(train, config), batch_size, device)
    preds = predict(model, test.images, batch_size, device)
    if recalibrate:
        bn_stats_used = "recalibrated"
    elif notebook:
        bn_stats_used = "per batch"
    else:   # the default preset's running statistics; the improved discriminator has no batch norm
        bn_stats_used = "running" if recalibrates(config) else None
    matrix = confusion_matrix(test.labels, preds, data.dataset_info(config["dataset"]).num_classes)
    return {"checkpoint": str(path), "dataset": config["dataset"], "preset": config.get("preset"),
            "weights": "averaged" if use_average else "raw",
            "bn_stats": bn_stats_used,
            "epoch": meta.get("epoch"), "step": meta.get("step"), "test_images": len(test),
            "test_acc": float(np.mean(preds == test.labels)),
            "per_class_acc": [None if np.isnan(a) else float(a) for a in per_class_accuracy(matrix)],
            "confusion_matrix": matrix.tolist()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m ssgan.evaluate",
        description="Test accuracy, per-class accuracy and confusion matrix of a checkpoint's discriminator "
                    "on the full test set of the dataset it was trained on.")
    p.add_argument("--checkpoint", required=True, metavar="PATH", help="a checkpoint.npz written by ssgan.train")
    data.add_data_dir_argument(p)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to run; default cpu")
    p.add_argument("--batch-size", type=int, default=500, metavar="B",
                   help="images per forward pass; default 500 (the result does not depend on it, except under "
                        "the notebook preset, which uses its training batch size)")
    p.add_argument("--weights", choices=("auto", "raw", "averaged"), default="auto",
                   help="auto (default): the averaged weights when the checkpoint has them (--preset improved), "
                        "else the raw ones")
    p.add_argument("--bn-stats", choices=("auto", "running", "recalibrated"), default="auto",
                   help="batch-norm statistics of the default preset's discriminator: recalibrated (recomputed on "
                        "10 000 training images without dropout, the log's test_acc_recal) or running (as saved, "
                        "fitted with dropout on; the log's test_acc). auto (default): recalibrated where the "
                        "preset has batch norm with running statistics (default), else as saved")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    args = p.parse_args(argv)
    if args.batch_size < 1:
        p.error(f"--batch-size {args.batch_size}: expected a positive integer")
    try:
        ok, reason = backend.cuda_status() if args.device == "cuda" else (True, "")
        if not ok:
            raise ckpt.CheckpointError(f"--device cuda: {reason}")
        result = evaluate_checkpoint(args.checkpoint, args.data_dir, args.device, args.batch_size, args.weights,
                                     args.bn_stats)
    except (ckpt.CheckpointError, data.DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}", file=sys.stderr)
        return 2
    m = np.array(result["confusion_matrix"])
    epoch = result["epoch"]
    print(f"checkpoint {result['checkpoint']} ({result['dataset']}, preset {result['preset']}, "
          f"{epoch} epochs done, step {result['step']})")
    print(f"test accuracy: {result['test_acc']:.4f} on {result['test_images']} images "
          f"({result['weights']} weights" + (f"; batch-norm statistics: {result['bn_stats']})" if result["bn_stats"]
                                             else ")"))
    if result["preset"] == "notebook" and m.shape[0] > m.shape[1]:
        print("(notebook preset: SVHN label 10, the digit 0, was kept as in the notebook and never matches a class)")
    print("confusion matrix (rows: true class, columns: predicted class):")
    print(format_report(m))
    if args.json:
        try:
            files.write_json_atomic(args.json, result)
        except OSError as exc:
            print(f"error: cannot write --json {args.json}: {exc.strerror or exc} (the results above are "
                  "complete)", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
