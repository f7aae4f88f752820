"""Small dataset files in the official formats, for tests that must not touch the network.

``install_fake_datasets(monkeypatch, root)`` writes a tiny SVHN (``.mat``, the official layout: ``X`` is
32x32x3xN uint8, ``y`` is Nx1 with 10 for the digit 0) and a tiny MNIST (gzip idx files) under ``root``
and patches ``ssgan.data.MD5`` to their checksums, so ``load_dataset(..., data_dir=root)`` reads them
exactly as it reads the real files. Other test modules (e.g. a training smoke test) can use it too.
"""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import scipy.io

from ssgan import data


def write_svhn_mat(path, images_hwcn: np.ndarray, labels: np.ndarray) -> None:
    """Write a ``.mat`` file in SVHN's layout: ``X`` (32, 32, 3, N) uint8 and ``y`` (N, 1) uint8 in 1..10."""
    assert images_hwcn.dtype == np.uint8 and images_hwcn.shape[:3] == (32, 32, 3)
    scipy.io.savemat(str(path), {"X": images_hwcn, "y": np.asarray(labels, dtype=np.uint8).reshape(-1, 1)})


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """The uncompressed idx encoding of a uint8 array (magic 0x000008DD, big-endian int32 dimensions)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    if magic is None:
        magic = 0x0800 | array.ndim
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.tobytes()


def write_idx_gz(path, array: np.ndarray, magic: int | None = None) -> None:
    """Write ``array`` as a gzip-compressed idx file, like MNIST's ``*-ubyte.gz``."""
    with gzip.open(path, "wb") as f:
        f.write(idx_bytes(array, magic))


def fake_svhn_split(n: int, seed: int):
    """Random SVHN-layout pixels and labels 1..10 (every class present once n >= 10), with 0 and 255 in."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
    x[0, 0, 0, 0], x[0, 0, 1, 0] = 0, 255
    y = rng.permutation(np.arange(n) % 10 + 1)
    return x, y


def fake_mnist_split(n: int, seed: int):
    """Random 28x28 uint8 digits (0 and 255 included) and labels 0..9 (every class present once n >= 10)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    x[0, 0, 0], x[0, 0, 1] = 0, 255
    y = rng.permutation(np.arange(n) % 10)
    return x, y


def install_fake_datasets(monkeypatch, root, n_train: int = 200, n_test: int = 50, seed: int = 0) -> dict:
    """Write fake SVHN and MNIST files under ``root/svhn`` and ``root/mnist``; patch their MD5s in.

    Returns ``{file name: (raw images, raw labels)}`` as written (SVHN images HWCN, MNIST images NHW).
    """
    root = Path(root)
    (root / "svhn").mkdir(parents=True, exist_ok=True)
    (root / "mnist").mkdir(parents=True, exist_ok=True)
    written = {}
    for offset, (split, n) in enumerate((("train", n_train), ("test", n_test))):
        x, y = fake_svhn_split(n, seed + offset)
        name = data.DATASETS["svhn"].files[split][0]
        write_svhn_mat(root / "svhn" / name, x, y)
        written[name] = (x, y)

        x, y = fake_mnist_split(n, seed + 10 + offset)
        images_name, labels_name = data.DATASETS["mnist"].files[split]
        write_idx_gz(root / "mnist" / images_name, x)
        write_idx_gz(root / "mnist" / labels_name, y)
        written[images_name], written[labels_name] = (x, y), (x, y)
    for name in written:
        folder = "svhn" if name.endswith(".mat") else "mnist"
        monkeypatch.setitem(data.MD5, name, data.file_md5(root / folder / name))
    return written


def tiny_run_argv(data_dir, out, *extra, dataset: str = "mnist") -> list:
    """``python -m ssgan.train`` options for a run of a few seconds on the fake datasets of
    :func:`install_fake_datasets`: 20 labels, batch 16 (12 steps per epoch of the 200 images), generator
    width 4, discriminator width 8, no progress bar; ``extra`` options follow."""
    return ["--dataset", dataset, "--data-dir", str(data_dir), "--out", str(out), "--labels", "20",
            "--batch-size", "16", "--g-width", "4", "--d-width", "8", "--no-progress", *extra]
