"""Pictures drawn with Pillow only (no plotting library): a grid of generated samples and the learning curves.

Both functions take plain NumPy arrays / Python records and write a PNG atomically (a temporary file in the
same folder, then ``os.replace``), so a reader never sees half a picture.
"""
from __future__ import annotations

import math
import os
import tempfile

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .checkpoint import chmod_as_new_file


def _save_atomically(image: Image.Image, path) -> None:
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".png")
    try:
        with os.fdopen(fd, "wb") as f:
            image.save(f, format="PNG")
        chmod_as_new_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


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
    _save_atomically(image_grid(images, nrow=nrow), path)


# ----------------------------------------------------------------------------------------- learning curves
_COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75)]


def _nice_ticks(lo: float, hi: float, count: int = 8) -> list[float]:
    """About ``count`` round numbers (1, 2 or 5 times a power of ten apart) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks, t = [], first
    while t <= hi + 1e-9 * step:
        ticks.append(round(t, 12))
        t += step
    return ticks


def _format_tick(v: float) -> str:
    return f"{v:.4g}"


class _Panel:
    """One chart: a rectangle on the canvas with data coordinates mapped into it."""

    def __init__(self, draw, box, title, xs, ys_by_name, ylim=None):
        self.draw, self.box, self.title = draw, box, title
        self.series = {k: v for k, v in ys_by_name.items() if v}
        self.font = ImageFont.load_default()
        all_x = [x for x in xs] or [0.0, 1.0]
        all_y = [y for ys in self.series.values() for _, y in ys if math.isfinite(y)] or [0.0, 1.0]
        self.x0, self.x1 = min(all_x), max(all_x)
        if self.x1 <= self.x0:
            self.x0, self.x1 = self.x0 - 0.5, self.x0 + 0.5
        pad = 0.03 * (self.x1 - self.x0)  # keep the end points off the frame
        self.x0, self.x1 = self.x0 - pad, self.x1 + pad
        if ylim is not None:
            self.y0, self.y1 = ylim[0] - 0.03 * (ylim[1] - ylim[0]), ylim[1] + 0.03 * (ylim[1] - ylim[0])
        else:
            self.y0, self.y1 = min(all_y), max(all_y)
            margin = 0.05 * (self.y1 - self.y0) or 0.5
            self.y0, self.y1 = self.y0 - margin, self.y1 + margin

    def to_pixel(self, x, y):
        left, top, right, bottom = self.box
        px = left + (x - self.x0) / (self.x1 - self.x0) * (right - left)
        py = bottom - (y - self.y0) / (self.y1 - self.y0) * (bottom - top)
        return px, py

    def render(self, xlabel):
        d, (left, top, right, bottom) = self.draw, self.box
        d.rectangle(self.box, outline=(0, 0, 0))
        d.text((left, top - 16), self.title, fill=(0, 0, 0), font=self.font)
        for t in _nice_ticks(self.y0, self.y1):
            _, py = self.to_pixel(self.x0, t)
            d.line([(left - 4, py), (left, py)], fill=(0, 0, 0))
            d.line([(left + 1, py), (right - 1, py)], fill=(230, 230, 230))
            d.text((left - 8 - 6 * len(_format_tick(t)), py - 6), _format_tick(t), fill=(0, 0, 0), font=self.font)
        for t in _nice_ticks(self.x0, self.x1):
            px, _ = self.to_pixel(t, self.y0)
            d.line([(px, bottom), (px, bottom + 4)], fill=(0, 0, 0))
            d.text((px - 3 * len(_format_tick(t)), bottom + 6), _format_tick(t), fill=(0, 0, 0), font=self.font)
        d.text(((left + right) // 2 - 3 * len(xlabel), bottom + 22), xlabel, fill=(0, 0, 0), font=self.font)
        for i, (name, points) in enumerate(self.series.items()):
            colour = _COLOURS[i % len(_COLOURS)]
            pts = [self.to_pixel(x, y) for x, y in points if math.isfinite(y)]
            if len(pts) > 1:
                d.line(pts, fill=colour, width=2)
            for px, py in pts:
                d.ellipse([px - 2.5, py - 2.5, px + 2.5, py + 2.5], fill=colour)
            # legend, top right inside the panel
            ly = top + 6 + 14 * i
            d.line([(right - 110, ly + 6), (right - 92, ly + 6)], fill=colour, width=2)
            d.text((right - 88, ly), name, fill=(0, 0, 0), font=self.font)


def learning_curves(records: list[dict]) -> Image.Image:
    """Two panels from metrics records (the lines of ``metrics.jsonl``): the losses and the accuracies,
    against the (fractional) epoch ``step / steps_per_epoch``. Missing or null values are skipped."""
    def series(key):
        return [(r["x"], float(r[key])) for r in points if r.get(key) is not None]

    points = []
    for r in records:
        spe = r.get("steps_per_epoch") or 1
        points.append(dict(r, x=r.get("step", 0) / spe))
    xs = [p["x"] for p in points]
    width, height = 900, 380
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    losses = {k: series(k) for k in ("d_loss", "d_loss_real", "d_loss_fake", "d_loss_class", "g_loss")}
    accuracy = {k: series(k) for k in ("train_acc", "test_acc")}
    _Panel(draw, (60, 30, 430, 320), "losses (mean over the epoch)", xs, losses).render("epoch")
    _Panel(draw, (510, 30, 880, 320), "accuracy", xs, accuracy, ylim=(0.0, 1.0)).render("epoch")
    return image


def save_learning_curves(records: list[dict], path) -> None:
    """Write :func:`learning_curves` of ``records`` to ``path`` (PNG)."""
    _save_atomically(learning_curves(records), path)
