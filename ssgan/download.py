"""Getting the dataset files: where they live, their official MD5 checksums, and the download.

1. **Where the files live.** One data directory holds ``svhn/`` and ``mnist/``. It is the ``--data-dir``
   argument when given, else ``$SSGAN_DATA``, else a user cache folder (``$XDG_CACHE_HOME/ssgan``,
   i.e. ``~/.cache/ssgan`` by default).
2. **Getting a file.** :func:`ensure_file` checks a file's MD5 against the official one (once per process
   and per file version: the digest is remembered by path, size and modification time) and downloads a
   missing file on first use, with a progress bar, to a temporary name in the same folder that is renamed
   only once its MD5 matches. Anything wrong (offline, missing with downloads disabled, truncated,
   corrupt, unwritable folder) is one :class:`DatasetError` that names the file, its expected MD5, the
   URL and where to put the file; :func:`ensure_files` lists every missing file of a set at once.
   Nothing is ever written into the data directory except by a download, so a read-only directory that
   already holds the files works.

Reading the files is ``ssgan/data.py``'s job.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import urllib.request
from pathlib import Path


class DatasetError(RuntimeError):
    """A dataset file is missing, truncated, corrupt or cannot be downloaded; the message says what to do."""


# The official MD5 of every file. SVHN's are published on its site; MNIST's were computed from verified
# copies of the official files.
MD5 = {
    "train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
    "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

# Base URLs to try, in order; a file's URL is base + file name.
MIRRORS = {
    "svhn": ("http://ufldl.stanford.edu/housenumbers/",),
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
}

# --------------------------------------------------------------------------------------------------
# 1. The data directory
# --------------------------------------------------------------------------------------------------

def default_data_dir() -> Path:
    """``$SSGAN_DATA`` when set, else ``$XDG_CACHE_HOME/ssgan`` (``~/.cache/ssgan`` when that is unset)."""
    env = os.environ.get("SSGAN_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache).expanduser() / "ssgan"


def resolve_data_dir(data_dir=None) -> Path:
    """The data directory: ``data_dir`` when given (e.g. ``--data-dir``), else :func:`default_data_dir`."""
    if data_dir is None or str(data_dir) == "":
        return default_data_dir()
    return Path(data_dir).expanduser()


def add_data_dir_argument(parser: argparse.ArgumentParser) -> None:
    """Add the ``--data-dir`` option to an argparse parser (resolve it with :func:`resolve_data_dir`)."""
    parser.add_argument(
        "--data-dir", default=None, metavar="DIR",
        help="folder holding svhn/ and mnist/ (default: $SSGAN_DATA, else $XDG_CACHE_HOME/ssgan "
             "or ~/.cache/ssgan); missing files are downloaded there")


# --------------------------------------------------------------------------------------------------
# 2. Getting a file: MD5 check, download
# --------------------------------------------------------------------------------------------------

# Digests already computed in this process, keyed by (real path, size, mtime in ns, inode): a file is
# hashed again only when it changes. The digest is cached, not the verdict, so the check still follows MD5.
_MD5_CACHE: dict = {}


def file_md5(path) -> str:
    """The MD5 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _md5_key(path: Path) -> tuple:
    st = path.stat()
    return (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ino)


def _cached_md5(path: Path) -> str:
    key = _md5_key(path)
    if key not in _MD5_CACHE:
        _MD5_CACHE[key] = file_md5(path)
    return _MD5_CACHE[key]


def _downloads_allowed(download) -> bool:
    """``download=False`` or ``$SSGAN_OFFLINE`` set to 1/true/yes forbid downloads; the variable wins."""
    if os.environ.get("SSGAN_OFFLINE", "").strip().lower() in ("1", "true", "yes"):
        return False
    return download is None or bool(download)


def _urls(dataset: str, filename: str) -> list:
    return [base + filename for base in MIRRORS[dataset]]


def _what_to_do(dataset: str, filename: str, path: Path) -> str:
    """The end of every error message about a file: where it comes from and where it must go."""
    return (f"Expected MD5 {MD5[filename]}. Download it from {' or '.join(_urls(dataset, filename))} "
            f"and save it as {path} (or point --data-dir / $SSGAN_DATA at a folder holding "
            f"{dataset}/{filename}).")


def _fetch_url(url: str, out, desc: str) -> None:
    """Stream ``url`` into the open binary file ``out`` with a tqdm progress bar (the one network call).

    Tests replace this function to make sure no network access is attempted.
    """
    from tqdm import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": "ssgan-data/0.1"})
    with urllib.request.urlopen(request, timeout=60) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc) as bar:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
                bar.update(len(chunk))


def _download(dataset: str, filename: str, path: Path) -> None:
    """Download ``filename`` to ``path`` from the first mirror that serves a copy with the right MD5.

    Each try writes to a temporary file in the same folder (so the final rename is atomic) and deletes
    it on any failure, interruption included: the data directory never holds a partial file.
    """
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"{filename} is missing and cannot be downloaded: cannot create the folder "
                           f"{folder} ({exc}). " + _what_to_do(dataset, filename, path)) from None
    failures = []
    for url in _urls(dataset, filename):
        # A hidden name no other download uses; "x" mode creates it (with the usual umask permissions,
        # unlike tempfile.mkstemp's owner-only ones) and never overwrites anything.
        tmp = folder / f".{filename}.{secrets.token_hex(6)}.part"
        try:
            out = open(tmp, "xb")
        except OSError as exc:
            raise DatasetError(f"{filename} is missing and cannot be downloaded: cannot write in the folder "
                               f"{folder} ({exc}). " + _what_to_do(dataset, filename, path)) from None
        try:
            with out:
                _fetch_url(url, out, desc=filename)
            got = file_md5(tmp)
            if got != MD5[filename]:
                size = tmp.stat().st_size
                failures.append(f"{url}: got MD5 {got} ({size} bytes), a truncated or corrupt copy")
                continue
            os.replace(tmp, path)
            _MD5_CACHE[_md5_key(path)] = got   # just checked: ensure_file need not hash it again
            return
        except Exception as exc:  # noqa: BLE001 - every failure of one mirror becomes one line of the error
            failures.append(f"{url}: {type(exc).__name__}: {exc}")
        finally:
            tmp.unlink(missing_ok=True)
    raise DatasetError(f"could not download {filename}:\n  " + "\n  ".join(failures) + "\n"
                       + _what_to_do(dataset, filename, path))


def ensure_file(dataset: str, filename: str, data_dir=None, *, download=None) -> Path:
    """Return the path of a dataset file whose MD5 is checked, downloading it first when it is missing.

    The file is ``<data_dir>/<dataset>/<filename>``. Downloads happen unless ``download=False`` or
    ``$SSGAN_OFFLINE=1``. A file that is present but has the wrong MD5 (truncated or corrupt) is an error
    and is left alone: delete it to download it again.
    """
    if dataset not in MIRRORS:
        raise ValueError(f"unknown dataset {dataset!r}: expected one of {sorted(MIRRORS)}")
    if filename not in MD5:
        raise ValueError(f"ensure_file: unknown file {filename!r}: expected one of {sorted(MD5)}")
    path = resolve_data_dir(data_dir) / dataset / filename
    if not path.is_file():
        if not _downloads_allowed(download):
            raise DatasetError(f"{filename} not found at {path} and downloads are disabled (download=False "
                               f"or $SSGAN_OFFLINE=1). " + _what_to_do(dataset, filename, path))
        _download(dataset, filename, path)
    try:
        got = _cached_md5(path)
    except OSError as exc:
        raise DatasetError(f"cannot read {path} ({exc}). " + _what_to_do(dataset, filename, path)) from None
    if got != MD5[filename]:
        raise DatasetError(f"{path} is truncated or corrupt: its MD5 is {got} ({path.stat().st_size} bytes). "
                           f"Delete it to download it again, or replace it. "
                           + _what_to_do(dataset, filename, path))
    return path




def ensure_files(dataset: str, filenames, data_dir=None, *, download=None) -> list:
    """:func:`ensure_file` for several files; when downloads are disabled, every missing one is listed in
    one error."""
    folder = resolve_data_dir(data_dir) / dataset
    missing = [name for name in filenames if not (folder / name).is_file()]
    if len(missing) > 1 and not _downloads_allowed(download):
        lines = [f"  {name} (MD5 {MD5[name]}): {' or '.join(_urls(dataset, name))}" for name in missing]
        raise DatasetError(f"{len(missing)} {dataset} files are missing from {folder} and downloads are "
                           "disabled (download=False or $SSGAN_OFFLINE=1). Download them into that folder "
                           "(or point --data-dir / $SSGAN_DATA at a folder holding " + dataset + "/...):\n"
                           + "\n".join(lines))
    return [ensure_file(dataset, name, data_dir, download=download) for name in filenames]
