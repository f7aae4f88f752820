"""The picture: the supervised-only classifier and the semi-supervised one side by side (matplotlib,
headless), and the animation of the training as a GIF (Pillow).

Each panel colours the plane by the predicted class, draws the unlabeled pool faintly, the labeled points
as large ringed discs in their class's colour, and (on the semi-supervised panel) the generator's current
samples as small black crosses; its title gives the model's accuracy on the held-out test set.
"""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from PIL import Image  # noqa: E402

from .training import Result, predict  # noqa: E402

FIGSIZE, DPI = (10.0, 5.0), 100        # the PNG is 1000 x 500 pixels
PIXELS = (int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI))
GIF_DPI = 60                            # frames of 600 x 300 pixels
GRID = 250                              # the decision regions are evaluated on GRID x GRID points
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")   # one per class (at most 5)
LIGHT = ("#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5")     # the same, pale, for the regions


def _extent(result: Result) -> tuple[float, float, float, float]:
    x = result.problem.x_unlabeled
    lo, hi = x.min(axis=0), x.max(axis=0)
    pad = 0.15 * (hi - lo)
    return lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1]


def draw(result: Result, dpi: int = DPI) -> plt.Figure:
    """The two-panel figure for ``result`` as it is now (call ``plt.close(fig)`` when done with it)."""
    p, k = result.problem, result.problem.num_classes
    x0, x1, y0, y1 = _extent(result)
    gx, gy = np.meshgrid(np.linspace(x0, x1, GRID), np.linspace(y0, y1, GRID))
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)
    fig, axes = plt.subplots(1, 2, figsize=FIGSIZE, dpi=dpi)
    panels = ((axes[0], result.supervised, "supervised only", result.supervised_accuracy),
              (axes[1], result.semi_supervised, "semi-supervised GAN", result.semi_supervised_accuracy))
    for ax, model, name, acc in panels:
        regions = predict(model, grid).argmax(axis=1).reshape(gx.shape)
        ax.imshow(regions, origin="lower", extent=(x0, x1, y0, y1), cmap=ListedColormap(LIGHT[:k]),
                  vmin=-0.5, vmax=k - 0.5, interpolation="nearest", aspect="auto")
        ax.scatter(p.x_unlabeled[:, 0], p.x_unlabeled[:, 1], s=2, c="#555555", alpha=0.25, linewidths=0)
        ax.set_title(f"{name}: {100 * acc:.1f}% test accuracy", fontsize=12)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_xticks([])
        ax.set_yticks([])
    fake = result.samples()
    axes[1].scatter(fake[:, 0], fake[:, 1], s=9, marker="x", c="black", alpha=0.55, linewidths=0.8,
                    label="generator's samples")
    for ax in axes:
        ax.scatter(p.x_labeled[:, 0], p.x_labeled[:, 1], s=110, c=[COLOURS[c] for c in p.y_labeled],
                   edgecolors="black", linewidths=1.6, zorder=3, label="labeled points")
    axes[1].legend(loc="lower right", fontsize=8, framealpha=0.8)
    c = result.config
    fig.suptitle(f"{p.name}: {c.labels} labels per class, {len(p.x_unlabeled)} unlabeled points, "
                 f"step {result.step} of {c.steps}", fontsize=11)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.03, top=0.86, wspace=0.06)
    return fig


def save_png(result: Result, path) -> None:
    fig = draw(result)
    try:
        fig.savefig(path, dpi=DPI, format="png")
    finally:
        plt.close(fig)


class GifRecorder:
    """Collects one frame per call (use as ``train``'s ``on_frame``) and writes them as a looping GIF."""

    def __init__(self, dpi: int = GIF_DPI):
        self.dpi, self.frames = dpi, []

    def __call__(self, result: Result) -> None:
        fig = draw(result, dpi=self.dpi)
        buf = io.BytesIO()
        try:
            fig.savefig(buf, dpi=self.dpi, format="png")
        finally:
            plt.close(fig)
        buf.seek(0)
        # a shared adaptive palette keeps the file small; the pictures have few colours
        self.frames.append(Image.open(buf).convert("RGB").quantize(colors=64))

    def save(self, path, frame_ms: int = 120, last_frame_ms: int = 1500) -> None:
        if not self.frames:
            raise ValueError("GifRecorder.save: no frames were recorded")
        durations = [frame_ms] * (len(self.frames) - 1) + [last_frame_ms]
        self.frames[0].save(path, format="GIF", save_all=True, append_images=self.frames[1:],
                            duration=durations, loop=0, optimize=True)
