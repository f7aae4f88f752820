"""Datasets for the semi-supervised GAN: SVHN cropped digits and MNIST, as NumPy arrays.

This module knows nothing about minigrad: it hands out plain NumPy arrays (images ``float32`` in NCHW
layout scaled to [-1, 1], labels ``int64``) and index arrays for batching; the training loop wraps them
in tensors. Read it top to bottom:

1. **Getting the files** is ``ssgan/download.py``'s job: where they live (``--data-dir``, else
   ``$SSGAN_DATA``, else ``~/.cache/ssgan``), their official MD5 checksums, and the download of a missing
   file. Its names (``ensure_file``, ``DatasetError``...) are importable from here too.
2. **The datasets.** :data:`DATASETS` says what each one is (channels, classes, files per split).
3. **Reading a file.** SVHN's ``.mat`` files (``X`` is 32x32x3xN uint8, ``y`` is Nx1 with 10 meaning the
   digit 0) go through ``scipy.io.loadmat``; MNIST's idx files are parsed here (magic number and sizes
   checked) and the 28x28 digits padded with background to 32x32. :func:`load_dataset` returns a
   :class:`Dataset` of ``(images, labels)``.
4. **Which examples carry labels, and the batches**: ``ssgan/batches.py`` (:func:`labeled_subset`,
   :func:`epoch_batches`, :class:`LabeledCycler`; importable from here too).

``python -m ssgan.data svhn mnist`` downloads and checks the files ahead of time.
"""
from __future__ import annotations

import argparse
import gzip
import struct
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .batches import LabeledCycler, batches_per_epoch, epoch_batches, labeled_subset
from .download import (MD5, MIRRORS, DatasetError, add_data_dir_argument, default_data_dir, ensure_file,
                       ensure_files, file_md5, resolve_data_dir)

__all__ = [
    "DatasetError", "DatasetInfo", "Dataset", "DATASETS", "MD5", "MIRRORS",
    "dataset_info", "default_data_dir", "resolve_data_dir", "add_data_dir_argument",
    "ensure_file", "file_md5", "read_idx", "load_dataset", "labeled_subset",
    "batches_per_epoch", "epoch_batches", "LabeledCycler",
]


# --------------------------------------------------------------------------------------------------
# The datasets: their files, official MD5 checksums and download mirrors
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset, and which files hold each split."""

    name: str
    num_channels: int
    num_classes: int
    image_size: int                  # images are image_size x image_size after loading
    files: dict = field(hash=False)  # split ("train" / "test") -> tuple of file names


DATASETS = {
    "svhn": DatasetInfo("svhn", num_channels=3, num_classes=10, image_size=32, files={
        "train": ("train_32x32.mat",),
        "test": ("test_32x32.mat",),
    }),
    "mnist": DatasetInfo("mnist", num_channels=1, num_classes=10, image_size=32, files={
        "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
        "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    }),
}

SPLITS = ("train", "test")


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``"svhn"`` or ``"mnist"`` (channels, classes, image size, files)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: expected one of {sorted(DATASETS)}")
    return DATASETS[name]


# --------------------------------------------------------------------------------------------------
# Reading the files
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Dataset:
    """One split of a dataset: ``images`` (N, C, 32, 32) float32 in [-1, 1] and ``labels`` (N,) int64.

    ``len(dataset)`` is N, and ``images, labels = load_dataset(...)`` unpacks it.
    """

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self):
        return iter((self.images, self.labels))


def _to_unit_range(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [-1, 1]: x / 127.5 - 1 (0 -> -1, 255 -> 1), in a new contiguous array."""
    out = np.ascontiguousarray(pixels, dtype=np.float32)
    out /= np.float32(127.5)
    out -= np.float32(1.0)
    return out


def _read_svhn(path: Path, remap_ten: bool) -> Dataset:
    """Read an SVHN ``*_32x32.mat``: ``X`` (32, 32, 3, N) uint8 -> NCHW; ``y`` (N, 1) in 1..10."""
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure is one clear error naming the file
        raise DatasetError(f"{path}: cannot read it as a MATLAB .mat file "
                           f"({type(exc).__name__}: {exc})") from None
    if "X" not in mat or "y" not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise DatasetError(f"{path}: expected variables 'X' and 'y' (the SVHN layout), found {found}")
    x, y = mat["X"], mat["y"]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise DatasetError(f"{path}: 'X' should be 32x32x3xN uint8, got shape {x.shape} dtype {x.dtype}")
    n = x.shape[3]
    if y.size != n or (y.ndim == 2 and y.shape[1] != 1) or y.ndim > 2:
        raise DatasetError(f"{path}: 'y' should be {n}x1 (one label per image), got shape {y.shape}")
    labels = y.reshape(-1).astype(np.int64)
    if n and (labels.min() < 1 or labels.max() > 10):
        raise DatasetError(f"{path}: labels should be in 1..10 (10 is the digit 0), got "
                           f"{labels.min()}..{labels.max()}")
    if remap_ten:
        labels[labels == 10] = 0
    # (H, W, C, N) -> (N, C, H, W)
    images = _to_unit_range(x.transpose(3, 2, 0, 1))
    return Dataset(images, labels)


IDX_UBYTE_1D = 0x00000801   # 2049: the labels file (unsigned bytes, 1 dimension)
IDX_UBYTE_3D = 0x00000803   # 2051: the images file (unsigned bytes, 3 dimensions)


def read_idx(path, expected_magic: int) -> np.ndarray:
    """Read a gzip-compressed idx file of unsigned bytes (MNIST's format) into a uint8 array.

    The idx header is a big-endian int32 magic number ``0x0000TTDD`` (``TT`` = 0x08 for unsigned bytes,
    ``DD`` = number of dimensions), then one big-endian int32 per dimension, then the data in C order.
    """
    path = Path(path)
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path}: not a complete gzip file ({type(exc).__name__}: {exc})") from None
    if len(raw) < 4:
        raise DatasetError(f"{path}: {len(raw)} bytes is too short for an idx header")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        raise DatasetError(f"{path}: idx magic number is 0x{magic:08x}, expected 0x{expected_magic:08x} "
                           f"(unsigned bytes, {expected_magic & 0xFF} dimensions)")
    ndim = magic & 0xFF
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DatasetError(f"{path}: {len(raw)} bytes is too short for an idx header of {ndim} dimensions")
    dims = struct.unpack(f">{ndim}I", raw[4:header_len])
    expected = int(np.prod(dims))
    if len(raw) - header_len != expected:
        raise DatasetError(f"{path}: the header says {'x'.join(map(str, dims))} = {expected} bytes of data "
                           f"but the file holds {len(raw) - header_len}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(dims)


def _read_mnist(images_path: Path, labels_path: Path, layout: str = "padded") -> Dataset:
    """Read MNIST's idx images and labels. ``layout="padded"``: the 28x28 digits padded to 32x32 with
    background (0, i.e. -1), pixels in [-1, 1]. ``layout="flat"``: (N, 784) vectors with pixels in [0, 1]
    (x / 255), the input of Improved-GAN's MNIST networks."""
    digits = read_idx(images_path, IDX_UBYTE_3D)
    labels = read_idx(labels_path, IDX_UBYTE_1D).astype(np.int64)
    if digits.shape[1:] != (28, 28):
        raise DatasetError(f"{images_path}: expected 28x28 images, the header says "
                           f"{digits.shape[1]}x{digits.shape[2]}")
    if len(labels) != len(digits):
        raise DatasetError(f"{labels_path} holds {len(labels)} labels but {images_path} holds "
                           f"{len(digits)} images")
    if len(labels) and labels.max() > 9:
        raise DatasetError(f"{labels_path}: labels should be digits 0..9, found {labels.max()}")
    if layout == "flat":
        flat = np.ascontiguousarray(digits.reshape(len(digits), -1), dtype=np.float32)
        flat /= np.float32(255.0)
        return Dataset(flat, labels)
    padded = np.pad(digits, ((0, 0), (2, 2), (2, 2)))   # zeros: MNIST's background
    return Dataset(_to_unit_range(padded[:, None]), labels)


def load_dataset(name: str, split: str = "train", data_dir=None, *, download=None,
                 remap_ten: bool = True, fraction: float = 1.0, layout: str = "padded") -> Dataset:
    """Load one split of ``"svhn"`` or ``"mnist"`` as a :class:`Dataset` of NumPy arrays.

    Args:
        name: ``"svhn"`` (3 x 32 x 32) or ``"mnist"`` (1 x 32 x 32: 28x28 digits padded with background).
        split: ``"train"`` or ``"test"``.
        data_dir: the folder holding ``svhn/`` and ``mnist/``; ``None`` -> :func:`default_data_dir`.
        download: ``False`` never touches the network (a missing file is then a :class:`DatasetError`);
            ``None``/``True`` download missing files unless ``$SSGAN_OFFLINE=1``.
        remap_ten: SVHN stores the digit 0 as label 10; ``True`` (the default) maps it to 0 so labels are
            0..9. ``False`` keeps 1..10, as the original notebook did (its one-hot encoding of depth 10
            turns label 10 into an all-zero row). Ignored for MNIST, whose labels are 0..9.
        fraction: keep only the first ``int(fraction * N)`` examples, in file order. The notebook preset
            tests on the first half of SVHN's test set (``fraction=0.5``), as the notebook's
            ``int(len(test) * (1 - val_frac))`` split with ``val_frac=0.5`` did.
        layout: MNIST only: ``"padded"`` (the default, described below) or ``"flat"``: (N, 784) float32 in
            [0, 1], as ``--preset improved`` feeds its MLP.

    Returns:
        ``Dataset(images, labels)``: images (N, C, 32, 32) float32 in [-1, 1] (x / 127.5 - 1), C-contiguous;
        labels (N,) int64.
    """
    info = dataset_info(name)
    if split not in SPLITS:
        raise ValueError(f"load_dataset: unknown split {split!r}: expected one of {SPLITS}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"load_dataset: fraction must be in (0, 1], got {fraction}")
    if layout not in ("padded", "flat") or (layout == "flat" and name != "mnist"):
        raise ValueError(f"load_dataset: layout {layout!r} is not available for {name} (mnist: 'padded' or "
                         "'flat'; svhn: 'padded')")
    paths = ensure_files(name, info.files[split], data_dir, download=download)
    data = _read_svhn(paths[0], remap_ten) if name == "svhn" else _read_mnist(*paths, layout=layout)
    if fraction < 1.0:
        keep = int(fraction * len(data))
        data = Dataset(data.images[:keep].copy(), data.labels[:keep].copy())
    return data


# --------------------------------------------------------------------------------------------------
# python -m ssgan.data: fetch and check the files ahead of time
# --------------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ssgan.data", description="Download (when missing) and check the dataset files.")
    parser.add_argument("datasets", nargs="+", choices=sorted(DATASETS))
    add_data_dir_argument(parser)
    parser.add_argument("--no-download", action="store_true", help="only check the files that are there")
    args = parser.parse_args(argv)
    try:
        for name in args.datasets:
            for split in SPLITS:
                data = load_dataset(name, split, args.data_dir, download=not args.no_download)
                print(f"{name} {split}: images {data.images.shape} {data.images.dtype}, "
                      f"labels {np.bincount(data.labels).tolist()} per class")
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
