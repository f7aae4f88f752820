"""The run's pictures: a grid of generated samples (Pillow) and the learning curves (matplotlib, headless).

Both are written atomically (``ssgan/files.py``), so a reader never sees half a picture.
"""
from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

from . import files


def image_grid(images: np.ndarray, nrow: int | None = None, padding: int = 2, scale: int = 2) -> Image.Image:
    """Tile an (N, C, H, W) batch with values in [-1, 1] (C = 1 or 3) into one RGB picture.

    ``nrow`` images per row (default: a square-ish grid); ``scale`` enlarges each pixel (nearest neighbour)
    so that 32x32 digits are visible.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] not in (1, 3) or images.shape[0] == 0:
        raise ValueError(f"image_grid: need a non-empty (N, 1 or 3, H, W) batch, got shape {images.shape}")
    n, c, h, w = images.shape
    nrow = nrow or int(math.ceil(math.sqrt(n)))
    ncol_rows = int(math.ceil(n / nrow))
    pixels = np.clip((images.astype(np.float64) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    if c == 1:
        pixels = np.repeat(pixels, 3, axis=1)
    pixels = pixels.transpose(0, 2, 3, 1)  # NHWC for Pillow
    canvas = np.full((padding + ncol_rows * (h + padding), padding + nrow * (w + padding), 3), 255, np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        canvas[top:top + h, left:left + w] = pixels[i]
    picture = Image.fromarray(canvas)  # (rows, cols, 3) uint8 -> RGB
    if scale != 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    return picture


def save_image_grid(images: np.ndarray, path, nrow: int | None = None) -> None:
    """Write :func:`image_grid` of ``images`` to ``path`` (PNG)."""
    picture = image_grid(images, nrow=nrow)
    files.atomic_write(path, lambda f: picture.save(f, format="PNG"))


def save_samples(G, z: np.ndarray, device: str, folder, name: str) -> None:
    """The generator's images for the fixed noise ``z`` (evaluation mode), as a grid ``folder/name``.
    Flat MNIST vectors in [0, 1] (``--preset improved``) are shown as 28x28 images."""
    import minigrad as mg

    G.eval()
    try:
        with mg.no_grad():
            images = G(mg.tensor(z, device=device)).numpy()
    finally:
        G.train()
    if images.ndim == 2:
        side = int(round(images.shape[1] ** 0.5))
        images = images.reshape(len(images), 1, side, side) * 2.0 - 1.0
    folder.mkdir(exist_ok=True)
    save_image_grid(images, folder / name, nrow=10)


# ----------------------------------------------------------------------------------------- learning curves
LOSS_KEYS = ("d_loss", "d_loss_class", "d_loss_real", "d_loss_fake", "g_loss")
ACCURACY_KEYS = (("test_acc", "test (raw weights)"), ("test_acc_ema", "test (averaged weights)"),
                 ("test_acc_recal", "test (raw, batch-norm statistics without dropout)"),
                 ("test_acc_ema_recal", "test (averaged, batch-norm statistics without dropout)"),
                 ("train_acc", "labeled training images"))


def _accuracy_limits(values: list) -> tuple:
    """A y-range that shows the interesting part: the data's range with a margin, at least 2 points wide,
    inside [0, 1]."""
    lo, hi = min(values), max(values)
    margin = max(0.1 * (hi - lo), 0.01)
    lo, hi = max(0.0, lo - margin), min(1.0, hi + margin)
    if hi - lo < 0.02:
        lo, hi = max(0.0, hi - 0.02), min(1.0, lo + 0.02)
    return lo, hi


def _epochs_done(record: dict) -> float:
    """Where a metrics record sits on the epoch axis: steps done / steps per epoch (a partial epoch is a
    fraction)."""
    return record["step"] / max(record.get("steps_per_epoch") or 1, 1)


def learning_curves_figure(epochs: list, steps: list | None = None):
    """A matplotlib figure: losses (per logged step when ``steps`` has records, else per epoch) and accuracies
    per epoch, legends below the axes so they never cover the lines."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), dpi=100, layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    per_step = bool(steps)
    source = steps if per_step else epochs
    x_of = (lambda r: r["step"]) if per_step else _epochs_done
    for key in LOSS_KEYS:
        pts = [(x_of(r), r[key]) for r in source if r.get(key) is not None and math.isfinite(r[key])]
        if pts:
            ax_loss.plot(*zip(*pts), label=key, marker="" if per_step else "o", linewidth=1.2)
    ax_loss.set_xlabel("step" if per_step else "epoch")
    ax_loss.set_title("losses" + (" (every logged step)" if per_step else " (epoch means)"))
    ax_loss.grid(alpha=0.3)
    shown = []
    for key, label in ACCURACY_KEYS:
        pts = [(_epochs_done(r), r[key]) for r in epochs if r.get(key) is not None]
        if pts:
            ax_acc.plot(*zip(*pts), label=label, marker="o", markersize=3, linewidth=1.2)
            shown += [y for _, y in pts]
    if shown:
        ax_acc.set_ylim(*_accuracy_limits(shown))
    ax_acc.set_xlabel("epoch")
    from matplotlib.ticker import MaxNLocator

    ax_acc.xaxis.set_major_locator(MaxNLocator(integer=True))
    if not per_step:
        ax_loss.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_acc.set_title("accuracy")
    ax_acc.grid(alpha=0.3)
    for ax in (ax_loss, ax_acc):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, fontsize=8, frameon=False)
    return fig


def save_learning_curves(epochs: list, path, steps: list | None = None) -> None:
    """Draw :func:`learning_curves_figure` into ``path`` (PNG); nothing is written when there is no record."""
    if not epochs and not steps:
        return
    fig = learning_curves_figure(epochs, steps)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    files.atomic_write(path, lambda f: f.write(buffer.getvalue()))
