"""Tests of ssgan.data: file checks and downloads, SVHN/MNIST reading, labeled subset, batching.

All offline: small files in the official formats are written by ``fake_data.py`` and their MD5s patched
into ``ssgan.data.MD5``; the downloader is replaced by one that records any call and fails, so a test
that reached for the network fails. The real-MNIST/SVHN tests read ``$SSGAN_DATA`` and skip otherwise.
"""
from __future__ import annotations

import gzip
import os
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from fake_data import fake_mnist_split, fake_svhn_split, idx_bytes, install_fake_datasets, write_idx_gz
from ssgan import data, download
from ssgan.data import DatasetError, LabeledCycler, epoch_batches, labeled_subset, load_dataset


REAL_FETCH_URL = download._fetch_url
REAL_URLOPEN = download.urllib.request.urlopen


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every test: a fresh MD5 cache, downloads allowed by the environment, and no network at all.

    Any call of the real downloader is recorded (and fails); the test fails at teardown if there was one.
    Tests that exercise downloading replace ``download._fetch_url`` with a fake of their own.
    """
    calls = []

    def forbidden(url, out, desc):
        calls.append(url)
        raise AssertionError(f"test tried to download {url}")

    def no_urlopen(*args, **kwargs):
        calls.append(args)
        raise AssertionError("test tried to open a URL")

    monkeypatch.setattr(download, "_fetch_url", forbidden)
    monkeypatch.setattr(download.urllib.request, "urlopen", no_urlopen)
    monkeypatch.setattr(download, "_MD5_CACHE", {})
    monkeypatch.delenv("SSGAN_OFFLINE", raising=False)
    yield
    assert not calls, f"network access attempted: {calls}"


@pytest.fixture
def fake_root(tmp_path, monkeypatch):
    root = tmp_path / "data"
    written = install_fake_datasets(monkeypatch, root, n_train=200, n_test=50, seed=3)
    return root, written


def listing(folder: Path) -> dict:
    """Every file under ``folder`` with its size and mtime: to check nothing was written."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


# ----------------------------------------------------------------------------------------------
# Reading SVHN and MNIST
# ----------------------------------------------------------------------------------------------

def test_svhn_layout_scaling_and_label_ten(fake_root):
    root, written = fake_root
    raw_x, raw_y = written["train_32x32.mat"]
    images, labels = load_dataset("svhn", "train", root, download=False)
    assert images.shape == (200, 3, 32, 32) and images.dtype == np.float32 and images.flags.c_contiguous
    assert labels.shape == (200,) and labels.dtype == np.int64
    # label 10 is the digit 0
    assert np.array_equal(labels, np.where(raw_y == 10, 0, raw_y))
    assert set(labels.tolist()) == set(range(10))
    # NCHW: images[n, c, h, w] is X[h, w, c, n], scaled by x / 127.5 - 1
    rng = np.random.default_rng(0)
    for n, c, h, w in zip(*(rng.integers(0, k, 20) for k in (200, 3, 32, 32))):
        assert images[n, c, h, w] == np.float32(raw_x[h, w, c, n]) / np.float32(127.5) - 1
    assert np.array_equal(images, raw_x.transpose(3, 2, 0, 1).astype(np.float32) / np.float32(127.5) - 1)
    assert images.min() == -1.0 and images.max() == 1.0   # the fake holds pixels 0 and 255


def test_svhn_keeps_ten_when_asked(fake_root):
    root, written = fake_root
    _, raw_y = written["test_32x32.mat"]
    ds = load_dataset("svhn", "test", root, download=False, remap_ten=False)
    assert np.array_equal(ds.labels, raw_y) and ds.labels.max() == 10 and ds.labels.min() == 1
    assert len(ds) == 50


def test_mnist_padded_to_32_with_background(fake_root):
    root, written = fake_root
    raw_x, raw_y = written["train-images-idx3-ubyte.gz"]
    ds = load_dataset("mnist", "train", root, download=False)
    assert ds.images.shape == (200, 1, 32, 32) and ds.images.dtype == np.float32
    assert ds.labels.dtype == np.int64 and np.array_equal(ds.labels, raw_y)
    border = np.ones((32, 32), bool)
    border[2:30, 2:30] = False
    assert np.all(ds.images[:, 0][:, border] == -1.0)
    assert np.array_equal(ds.images[:, 0, 2:30, 2:30], raw_x.astype(np.float32) / np.float32(127.5) - 1)
    assert ds.images.min() == -1.0 and ds.images.max() == 1.0


def test_fraction_keeps_the_first_examples(fake_root):
    root, _ = fake_root
    full = load_dataset("svhn", "test", root, download=False)
    half = load_dataset("svhn", "test", root, download=False, fraction=0.5)
    assert len(half) == 25
    assert np.array_equal(half.images, full.images[:25]) and np.array_equal(half.labels, full.labels[:25])
    with pytest.raises(ValueError, match="fraction"):
        load_dataset("svhn", "test", root, download=False, fraction=0.0)


def test_dataset_info_and_bad_names():
    assert (data.dataset_info("svhn").num_channels, data.dataset_info("svhn").num_classes) == (3, 10)
    assert (data.dataset_info("mnist").num_channels, data.dataset_info("mnist").num_classes) == (1, 10)
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        data.dataset_info("cifar")
    with pytest.raises(ValueError, match="unknown split 'valid'"):
        load_dataset("mnist", "valid", download=False)


# ----------------------------------------------------------------------------------------------
# Bad files
# ----------------------------------------------------------------------------------------------

def test_truncated_file_is_a_clear_error_and_is_left_alone(fake_root):
    root, _ = fake_root
    path = root / "svhn" / "train_32x32.mat"
    good_md5 = data.MD5["train_32x32.mat"]
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DatasetError) as info:
        load_dataset("svhn", "train", root)     # downloads allowed: a bad file is still not replaced
    msg = str(info.value)
    assert str(path) in msg and "truncated or corrupt" in msg and good_md5 in msg
    assert "http://ufldl.stanford.edu/housenumbers/train_32x32.mat" in msg
    assert path.stat().st_size == 1000          # the user's file is not deleted
    assert sorted(p.name for p in (root / "svhn").iterdir()) == ["test_32x32.mat", "train_32x32.mat"]


def test_wrong_md5_names_file_and_both_checksums(fake_root, monkeypatch):
    root, _ = fake_root
    actual = data.file_md5(root / "mnist" / "t10k-labels-idx1-ubyte.gz")
    monkeypatch.setitem(data.MD5, "t10k-labels-idx1-ubyte.gz", "0123456789abcdef0123456789abcdef")
    with pytest.raises(DatasetError) as info:
        load_dataset("mnist", "test", root, download=False)
    msg = str(info.value)
    assert "t10k-labels-idx1-ubyte.gz" in msg and "0123456789abcdef0123456789abcdef" in msg and actual in msg
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz" in msg


@pytest.mark.parametrize("offline", ["download_false", "env"])
def test_missing_directory_without_download(tmp_path, monkeypatch, offline):
    root = tmp_path / "nowhere"
    if offline == "env":
        monkeypatch.setenv("SSGAN_OFFLINE", "1")
        kwargs = {"download": True}             # the environment variable wins
    else:
        kwargs = {"download": False}
    with pytest.raises(DatasetError) as info:
        load_dataset("svhn", "train", root, **kwargs)
    msg = str(info.value)
    assert "train_32x32.mat" in msg and data.MD5["train_32x32.mat"] in msg
    assert "downloads are disabled" in msg and str(root / "svhn" / "train_32x32.mat") in msg
    assert not root.exists()                    # nothing created


def test_missing_file_in_existing_folder_without_download(fake_root):
    root, _ = fake_root
    (root / "mnist" / "train-labels-idx1-ubyte.gz").unlink()
    before = listing(root)
    with pytest.raises(DatasetError, match="train-labels-idx1-ubyte.gz not found") as info:
        load_dataset("mnist", "train", root, download=False)
    assert data.MD5["train-labels-idx1-ubyte.gz"] in str(info.value)
    assert listing(root) == before


def _patch_md5_of(monkeypatch, path: Path):
    monkeypatch.setitem(data.MD5, path.name, data.file_md5(path))


def test_idx_wrong_magic(tmp_path, monkeypatch):
    x, y = fake_mnist_split(20, 0)
    folder = tmp_path / "mnist"
    folder.mkdir()
    write_idx_gz(folder / "t10k-images-idx3-ubyte.gz", x, magic=0x0801)   # a labels magic on images
    write_idx_gz(folder / "t10k-labels-idx1-ubyte.gz", y)
    for p in folder.iterdir():
        _patch_md5_of(monkeypatch, p)
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte.gz: idx magic number is 0x00000801, "
                                           r"expected 0x00000803") as info:
        load_dataset("mnist", "test", tmp_path, download=False)
    assert info.value.__context__ is None      # raised by the check itself, not from inside a reader


def test_idx_size_mismatch_and_truncated_gzip(tmp_path, monkeypatch):
    x, y = fake_mnist_split(20, 0)
    folder = tmp_path / "mnist"
    folder.mkdir()
    images = folder / "t10k-images-idx3-ubyte.gz"
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    with gzip.open(images, "wb") as f:                      # header says 20 images, data holds 19
        f.write(idx_bytes(x)[:-28 * 28])
    write_idx_gz(labels, y)
    for p in folder.iterdir():
        _patch_md5_of(monkeypatch, p)
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte.gz: the header says 20x28x28 = 15680 "
                                           r"bytes of data but the file holds 14896"):
        load_dataset("mnist", "test", tmp_path, download=False)

    write_idx_gz(images, x)
    labels.write_bytes(labels.read_bytes()[:-10])         # a gzip stream cut short
    for p in folder.iterdir():
        _patch_md5_of(monkeypatch, p)
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte.gz: not a complete gzip file") as info:
        load_dataset("mnist", "test", tmp_path, download=False)
    assert info.value.__suppress_context__       # no traceback from inside gzip


def test_idx_counts_must_agree(tmp_path, monkeypatch):
    x, y = fake_mnist_split(20, 0)
    folder = tmp_path / "mnist"
    folder.mkdir()
    write_idx_gz(folder / "t10k-images-idx3-ubyte.gz", x)
    write_idx_gz(folder / "t10k-labels-idx1-ubyte.gz", y[:15])
    for p in folder.iterdir():
        _patch_md5_of(monkeypatch, p)
    with pytest.raises(DatasetError, match="holds 15 labels but .* holds 20 images"):
        load_dataset("mnist", "test", tmp_path, download=False)


def test_svhn_wrong_layout(tmp_path, monkeypatch):
    folder = tmp_path / "svhn"
    folder.mkdir()
    x, y = fake_svhn_split(10, 0)
    path = folder / "test_32x32.mat"
    scipy.io.savemat(str(path), {"X": x.transpose(3, 0, 1, 2), "y": y.reshape(-1, 1)})   # N first: wrong
    _patch_md5_of(monkeypatch, path)
    with pytest.raises(DatasetError, match=r"test_32x32.mat: 'X' should be 32x32x3xN uint8"):
        load_dataset("svhn", "test", tmp_path, download=False)
    path.write_bytes(b"not a mat file at all" * 10)
    _patch_md5_of(monkeypatch, path)
    with pytest.raises(DatasetError, match="cannot read it as a MATLAB .mat file"):
        load_dataset("svhn", "test", tmp_path, download=False)


# ----------------------------------------------------------------------------------------------
# MD5 caching and read-only use
# ----------------------------------------------------------------------------------------------

def test_md5_is_computed_once_per_file_version(fake_root, monkeypatch):
    root, _ = fake_root
    hashed = []
    real = data.file_md5
    monkeypatch.setattr(download, "file_md5", lambda path: hashed.append(Path(path).name) or real(path))
    load_dataset("mnist", "test", root, download=False)
    load_dataset("mnist", "test", root, download=False)
    assert sorted(hashed) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    path = root / "mnist" / "t10k-labels-idx1-ubyte.gz"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))   # the file "changed": hash it again
    load_dataset("mnist", "test", root, download=False)
    assert sorted(hashed) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
                              "t10k-labels-idx1-ubyte.gz"]


def test_present_files_are_only_read(fake_root, monkeypatch):
    root, _ = fake_root
    before = listing(root)

    def no_download(*args, **kwargs):
        raise AssertionError("tried to download a file that is present")

    monkeypatch.setattr(download, "_download", no_download)
    for name in ("svhn", "mnist"):
        for split in ("train", "test"):
            load_dataset(name, split, root)     # downloads allowed, but nothing is missing
    assert listing(root) == before


# ----------------------------------------------------------------------------------------------
# Downloading (with a fake downloader: never the network)
# ----------------------------------------------------------------------------------------------

def test_download_appears_only_after_md5_matches(fake_root, tmp_path, monkeypatch):
    root, _ = fake_root
    good = (root / "mnist" / "t10k-images-idx3-ubyte.gz").read_bytes()
    target = tmp_path / "fresh" / "mnist" / "t10k-images-idx3-ubyte.gz"
    seen = []

    def fake_fetch(url, out, desc):
        seen.append(url)
        assert not target.exists()                        # not under its final name while it arrives
        assert Path(out.name).parent == target.parent     # a temporary name in the same folder
        out.write(good[:100])
        assert not target.exists()
        out.write(good[100:])

    monkeypatch.setattr(download, "_fetch_url", fake_fetch)
    path = data.ensure_file("mnist", "t10k-images-idx3-ubyte.gz", tmp_path / "fresh")
    assert path == target and path.read_bytes() == good
    assert seen == ["https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz"]
    assert [p.name for p in target.parent.iterdir()] == [target.name]   # no temporary file left


def test_real_downloader_from_local_file_urls(fake_root, tmp_path, monkeypatch, capsys):
    """The real _fetch_url (urllib + tqdm), fed file:// URLs: no network, but every line of it runs."""
    root, _ = fake_root

    def local_only(request, *args, **kwargs):
        assert request.full_url.startswith("file:"), request.full_url
        return REAL_URLOPEN(request, *args, **kwargs)

    monkeypatch.setattr(download, "_fetch_url", REAL_FETCH_URL)
    monkeypatch.setattr(download.urllib.request, "urlopen", local_only)
    missing_mirror = (tmp_path / "no-such-mirror").as_uri() + "/"
    monkeypatch.setitem(data.MIRRORS, "mnist", (missing_mirror, (root / "mnist").as_uri() + "/"))
    old_umask = os.umask(0o022)
    try:
        ds = load_dataset("mnist", "test", tmp_path / "fresh")
    finally:
        os.umask(old_umask)
    assert len(ds) == 50
    expected = load_dataset("mnist", "test", root, download=False)
    assert np.array_equal(ds.images, expected.images) and np.array_equal(ds.labels, expected.labels)
    files = sorted((tmp_path / "fresh" / "mnist").iterdir())
    assert [p.name for p in files] == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in files)   # readable by all, like any new file
    assert "t10k-images-idx3-ubyte.gz" in capsys.readouterr().err   # the progress bar


def test_unwritable_data_dir_is_a_clear_error(tmp_path, monkeypatch):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("a file where the data directory should be")
    monkeypatch.setattr(download, "_fetch_url", lambda url, out, desc: out.write(b"never reached"))
    with pytest.raises(DatasetError, match="cannot create the folder") as info:
        data.ensure_file("svhn", "test_32x32.mat", not_a_dir)
    assert data.MD5["test_32x32.mat"] in str(info.value)


def test_download_with_bad_bytes_leaves_nothing(tmp_path, monkeypatch):
    def fake_fetch(url, out, desc):
        out.write(b"<html>not the file</html>")

    monkeypatch.setattr(download, "_fetch_url", fake_fetch)
    with pytest.raises(DatasetError) as info:
        load_dataset("svhn", "test", tmp_path)
    msg = str(info.value)
    assert "could not download test_32x32.mat" in msg and data.MD5["test_32x32.mat"] in msg
    assert "truncated or corrupt" in msg and "http://ufldl.stanford.edu/housenumbers/test_32x32.mat" in msg
    assert str(tmp_path / "svhn" / "test_32x32.mat") in msg
    assert list((tmp_path / "svhn").iterdir()) == []


def test_download_falls_back_to_the_next_mirror(fake_root, tmp_path, monkeypatch):
    root, _ = fake_root
    good = (root / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes()
    seen = []

    def fake_fetch(url, out, desc):
        seen.append(url)
        if "ossci" in url:
            out.write(good[:10])                         # a partial write, then the connection drops
            raise urllib.error.URLError("connection reset")
        out.write(good)

    monkeypatch.setattr(download, "_fetch_url", fake_fetch)
    path = data.ensure_file("mnist", "t10k-labels-idx1-ubyte.gz", tmp_path)
    assert path.read_bytes() == good and len(seen) == 2 and "yann.lecun.com" in seen[1]
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_offline_is_one_error_listing_every_mirror(tmp_path, monkeypatch):
    def fake_fetch(url, out, desc):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(download, "_fetch_url", fake_fetch)
    with pytest.raises(DatasetError) as info:
        data.ensure_file("mnist", "train-labels-idx1-ubyte.gz", tmp_path)
    msg = str(info.value)
    assert msg.count("Temporary failure in name resolution") == 2
    assert data.MD5["train-labels-idx1-ubyte.gz"] in msg and "train-labels-idx1-ubyte.gz" in msg
    assert list((tmp_path / "mnist").iterdir()) == []


def test_interrupted_download_leaves_nothing(tmp_path, monkeypatch):
    def fake_fetch(url, out, desc):
        out.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(download, "_fetch_url", fake_fetch)
    with pytest.raises(KeyboardInterrupt):
        data.ensure_file("svhn", "train_32x32.mat", tmp_path)
    assert list((tmp_path / "svhn").iterdir()) == []


# ----------------------------------------------------------------------------------------------
# Data directory
# ----------------------------------------------------------------------------------------------

def test_data_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("SSGAN_DATA", str(tmp_path / "env"))
    assert data.resolve_data_dir(None) == tmp_path / "env"
    assert data.resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("SSGAN_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.resolve_data_dir(None) == tmp_path / "xdg" / "ssgan"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.resolve_data_dir(None) == tmp_path / "home" / ".cache" / "ssgan"


def test_data_dir_argument():
    import argparse
    parser = argparse.ArgumentParser()
    data.add_data_dir_argument(parser)
    assert parser.parse_args([]).data_dir is None
    assert parser.parse_args(["--data-dir", "/x"]).data_dir == "/x"


def test_command_line(fake_root, tmp_path, capsys):
    root, _ = fake_root
    assert data.main(["mnist", "svhn", "--data-dir", str(root), "--no-download"]) == 0
    out = capsys.readouterr().out
    assert "mnist train: images (200, 1, 32, 32) float32" in out and "svhn test: images (50, 3, 32, 32)" in out
    assert data.main(["mnist", "--data-dir", str(tmp_path / "empty"), "--no-download"]) == 1
    err = capsys.readouterr().err   # every missing file of the split is named in one message
    assert "2 mnist files are missing" in err
    assert "train-images-idx3-ubyte.gz" in err and "train-labels-idx1-ubyte.gz" in err


# ----------------------------------------------------------------------------------------------
# Labeled subset
# ----------------------------------------------------------------------------------------------

def _labels(n_per_class, seed=0):
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(10), n_per_class))


def test_labeled_subset_is_class_balanced_and_seeded():
    labels = _labels([30, 25, 40, 20, 33, 50, 21, 22, 60, 20])
    idx = labeled_subset(labels, 100, seed=7)
    assert idx.dtype == np.int64 and len(idx) == 100 and len(np.unique(idx)) == 100
    assert np.all(np.diff(idx) > 0) and idx.min() >= 0 and idx.max() < len(labels)
    assert np.array_equal(np.bincount(labels[idx], minlength=10), np.full(10, 10))
    assert np.array_equal(idx, labeled_subset(labels, 100, seed=7))
    assert not np.array_equal(idx, labeled_subset(labels, 100, seed=8))
    # every class with exactly n/10 examples is taken whole
    assert set(np.flatnonzero(labels == 3)) <= set(labeled_subset(labels, 200, seed=1).tolist())


def test_labeled_subset_first_n_and_errors():
    labels = _labels(20)
    assert np.array_equal(labeled_subset(labels, 37, method="first_n"), np.arange(37))
    with pytest.raises(ValueError, match="not a multiple of the 10 classes"):
        labeled_subset(labels, 105)
    with pytest.raises(ValueError, match="needs 25 examples of each class but class 0 has 20"):
        labeled_subset(_labels([20] + [30] * 9), 250)        # 290 examples, but class 0 is short
    with pytest.raises(ValueError, match="exceeds the 200 examples"):
        labeled_subset(labels, 201, method="first_n")
    with pytest.raises(ValueError, match="expected 10 classes, the labels hold 9"):
        labeled_subset(labels[labels != 4], 90, num_classes=10)
    with pytest.raises(ValueError, match="1-D integer array"):
        labeled_subset(labels.astype(np.float32), 10)
    with pytest.raises(ValueError, match="positive integer"):
        labeled_subset(labels, 0)
    with pytest.raises(ValueError, match="unknown method"):
        labeled_subset(labels, 10, method="random")


# ----------------------------------------------------------------------------------------------
# Batching
# ----------------------------------------------------------------------------------------------

def test_epoch_batches_one_pass_drops_the_last_incomplete_batch():
    batches = list(epoch_batches(1000, 128, np.random.default_rng(0)))
    assert len(batches) == 7 == data.batches_per_epoch(1000, 128)
    assert all(b.shape == (128,) for b in batches)
    seen = np.concatenate(batches)
    assert len(np.unique(seen)) == 896 and seen.min() >= 0 and seen.max() < 1000
    assert not np.array_equal(seen, np.arange(896))       # shuffled


def test_epoch_batches_determinism_and_resume():
    rng = np.random.default_rng(5)
    state = rng.bit_generator.state
    first = list(epoch_batches(300, 32, rng))
    second = list(epoch_batches(300, 32, rng))
    assert not all(np.array_equal(a, b) for a, b in zip(first, second))   # each epoch reshuffles
    rng.bit_generator.state = state
    resumed = list(epoch_batches(300, 32, rng, start_batch=4))
    assert len(resumed) == 5 and all(np.array_equal(a, b) for a, b in zip(first[4:], resumed))
    with pytest.raises(ValueError, match="batch_size=301 exceeds the 300"):
        epoch_batches(300, 301, rng)
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        epoch_batches(300, 32, np.random.RandomState(0))


def test_labeled_cycler_with_more_batch_than_labels():
    labeled = np.sort(np.random.default_rng(1).choice(5000, 100, replace=False))
    cycler = LabeledCycler(labeled, 128, np.random.default_rng(2))
    batches = [next(cycler) for _ in range(25)]            # 25 * 128 = 3200 = 32 whole passes
    assert all(b.shape == (128,) and b.dtype == np.int64 for b in batches)
    stream = np.concatenate(batches)
    assert set(stream.tolist()) == set(labeled.tolist())
    counts = np.unique(stream, return_counts=True)[1]
    assert np.all(counts == 32)                            # every label equally often
    passes = stream.reshape(32, 100)
    assert all(np.array_equal(np.sort(p), labeled) for p in passes)   # each pass is a permutation
    assert len({tuple(p) for p in passes}) == 32                      # reshuffled on every pass


def test_labeled_cycler_no_repeats_within_a_pass():
    labeled = np.arange(0, 2000, 2)
    cycler = LabeledCycler(labeled, 64, np.random.default_rng(3))
    first_pass = np.concatenate([next(cycler) for _ in range(15)])   # 960 of 1000
    assert len(np.unique(first_pass)) == 960


def test_labeled_cycler_state_round_trip():
    labeled = np.arange(100)
    cycler = LabeledCycler(labeled, 128, np.random.default_rng(4))
    for _ in range(3):
        next(cycler)
    state = cycler.state_dict()
    expected = [next(cycler) for _ in range(5)]
    restored = LabeledCycler(labeled, 128, np.random.default_rng(999))
    restored.load_state_dict(state)
    assert all(np.array_equal(a, b) for a, b in zip(expected, (next(restored) for _ in range(5))))
    with pytest.raises(ValueError, match="not a permutation"):
        LabeledCycler(np.arange(50), 8, np.random.default_rng(0)).load_state_dict(state)


def test_labeled_cycler_bad_arguments():
    with pytest.raises(ValueError, match="non-empty 1-D integer array"):
        LabeledCycler(np.array([], dtype=np.int64), 8, np.random.default_rng(0))
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        LabeledCycler(np.arange(10), 0, np.random.default_rng(0))
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        LabeledCycler(np.arange(10), 4, 0)


# ----------------------------------------------------------------------------------------------
# The real files, when $SSGAN_DATA holds them
# ----------------------------------------------------------------------------------------------

def _real_dir(name: str) -> Path:
    root = os.environ.get("SSGAN_DATA")
    if not root:
        pytest.skip("$SSGAN_DATA is not set: no real dataset files to read")
    missing = [f for split in ("train", "test") for f in data.DATASETS[name].files[split]
               if not (Path(root) / name / f).is_file()]
    if missing:
        pytest.skip(f"$SSGAN_DATA={root} lacks {name}/{', '.join(missing)}")
    return Path(root)


def test_real_mnist():
    root = _real_dir("mnist")
    before = listing(root / "mnist")
    for split, n in (("train", 60000), ("test", 10000)):
        ds = load_dataset("mnist", split, root, download=False)
        assert ds.images.shape == (n, 1, 32, 32) and ds.images.dtype == np.float32
        assert ds.labels.shape == (n,) and set(np.unique(ds.labels).tolist()) == set(range(10))
        assert ds.images.min() == -1.0 and ds.images.max() == 1.0
        assert np.all(ds.images[:, :, :2, :] == -1.0) and np.all(ds.images[:, :, :, 30:] == -1.0)
    assert listing(root / "mnist") == before


def test_real_svhn():
    root = _real_dir("svhn")
    for split, n in (("train", 73257), ("test", 26032)):
        ds = load_dataset("svhn", split, root, download=False)
        assert ds.images.shape == (n, 3, 32, 32) and ds.images.dtype == np.float32
        assert set(np.unique(ds.labels).tolist()) == set(range(10))
        assert ds.images.min() >= -1.0 and ds.images.max() <= 1.0
