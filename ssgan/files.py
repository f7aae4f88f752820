"""Every file ssgan writes goes through here: written whole or not at all, never half.

:func:`atomic_write` writes to a temporary file in the destination's folder, flushes and fsyncs it, gives
it the permissions ``open()`` would have (0666 minus the umask), renames it over the destination with
``os.replace`` (atomic on POSIX and Windows) and fsyncs the folder, so a crash, a kill or a full disk leaves
the previous version of the file intact. The temporary file is removed on any failure. If the process is
killed outright (``kill -9``) during a write, the temporary file stays behind: it is named
``.<name>.<random>.ssgan-tmp``, and :func:`remove_orphan_temporaries` deletes such files when a run starts.

:func:`append_line` appends one line to a log (``metrics.jsonl``) and fsyncs it; a kill can at worst leave
a torn last line, which the readers of those logs drop (``ssgan/metrics.py``).
"""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Callable

TEMP_SUFFIX = ".ssgan-tmp"


def chmod_as_new_file(path) -> None:
    """Give ``path`` the mode ``open()`` would have given a new file (0666 minus the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def fsync_dir(folder) -> None:
    """Make a rename in ``folder`` durable (best effort: not every platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def atomic_write(path, write: Callable) -> None:
    """Create or replace ``path`` with what ``write(f)`` writes to the binary file ``f``, atomically."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        chmod_as_new_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_text_atomic(path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_json_atomic(path, obj) -> None:
    """``obj`` as indented JSON with sorted keys and a final newline."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def append_line(path, line: str) -> None:
    """Append ``line`` (without its newline) and a newline to ``path``, then fsync."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def remove_orphan_temporaries(*folders) -> list:
    """Delete the temporary files an earlier, killed process left in ``folders`` (only names that
    :func:`atomic_write` makes); returns the paths removed."""
    removed = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        # (``.checkpoint.npz.*.tmp``: the name earlier versions gave a checkpoint being written)
        for p in [*folder.glob(f".*{TEMP_SUFFIX}"), *folder.glob(".checkpoint.npz.*.tmp")]:
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed
