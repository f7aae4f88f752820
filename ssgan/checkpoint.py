"""Checkpoints: one ``.npz`` file holding everything needed to continue a run bit for bit.

What is in a checkpoint
-----------------------
* Arrays (one ``.npz`` entry each, no pickling anywhere):

  - ``model/<model>/<name>``: every parameter and buffer of each model, keyed by its ``state_dict`` name
    (``model/D/conv1.weight``, ``model/D/bn2.running_mean``...);
  - ``optim/<optimizer>/<index>/<key>``: each optimizer's per-parameter arrays (Adam's ``exp_avg`` and
    ``exp_avg_sq``), by the parameter's position in the optimizer;
  - any extra arrays the caller adds (``extra/<name>``, e.g. a data order).

* ``__meta__``: one JSON string (stored as a 0-d unicode array) with everything that is not a float
  array: the format tag, the run's config, the epoch/step counters, the random generators' states (as
  JSON: NumPy's ``bit_generator.state`` dictionaries), the optimizers' hyper-parameters and step counts.

Writing is atomic: the file is written under a temporary name in the same folder, flushed and fsync'ed,
then renamed over the old checkpoint with ``os.replace`` (and the folder is fsync'ed), so a crash or a
full disk leaves the previous checkpoint intact, never a half-written one.

Reading uses ``np.load(..., allow_pickle=False)`` and reads every entry at once, so a truncated or
corrupt file (bad zip directory, CRC mismatch, missing metadata) is refused with a
:class:`CheckpointError` naming the file, before anything in the running program is changed.
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

FORMAT = "ssgan-checkpoint/1"
META_KEY = "__meta__"


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not fit the run; the message names the file and the problem."""


# ------------------------------------------------------------------------------------------ raw file I/O
def save_npz_atomic(path, arrays: dict, meta: dict) -> None:
    """Write ``arrays`` (name -> NumPy array) and ``meta`` (JSON-able) to ``path`` atomically."""
    path = Path(path)
    if META_KEY in arrays:
        raise ValueError(f"save_npz_atomic: {META_KEY!r} is reserved for the metadata")
    payload = {k: np.asarray(v) for k, v in arrays.items()}  # (ascontiguousarray would turn 0-d into 1-d)
    payload[META_KEY] = np.array(json.dumps(dict(meta, format=FORMAT), sort_keys=True, allow_nan=False))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **payload)
            f.flush()
            os.fsync(f.fileno())
        chmod_as_new_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def chmod_as_new_file(path) -> None:
    """Give a file made by ``tempfile.mkstemp`` (always mode 0600) the mode ``open()`` would have given it
    (0666 minus the umask), so checkpoints and pictures are as readable as any other output."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (not possible on every platform; best effort)."""
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


def load_npz(path) -> tuple[dict, dict]:
    """Read a checkpoint written by :func:`save_npz_atomic`: ``(arrays, meta)``. Every entry is read (and
    its CRC checked) here; any problem is a :class:`CheckpointError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated and cannot be read "
                              f"({type(exc).__name__}: {exc}); use an intact copy or start a new run") from None
    if META_KEY not in arrays:
        raise CheckpointError(f"checkpoint {path} has no {META_KEY} entry: it is not an ssgan checkpoint")
    try:
        meta = json.loads(str(arrays.pop(META_KEY)[()]))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path}: its metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"checkpoint {path} has format {found!r}, this version reads {FORMAT!r}")
    return arrays, meta


# ------------------------------------------------------------------------- models and optimizers <-> arrays
def pack_state(models: dict, optimizers: dict) -> tuple[dict, dict]:
    """Arrays and JSON metadata for the parameters/buffers of ``models`` and the state of ``optimizers``
    (both dicts by a short name, e.g. ``{"G": generator, "D": discriminator}``)."""
    arrays, meta = {}, {"optimizers": {}}
    for name, model in models.items():
        for key, value in model.state_dict().items():
            arrays[f"model/{name}/{key}"] = value
    for name, opt in optimizers.items():
        sd = opt.state_dict()
        scalars = {}
        for index, state in sd["state"].items():
            for key, value in state.items():
                if np.ndim(value) == 0:
                    scalars.setdefault(str(index), {})[key] = value.item() if hasattr(value, "item") else value
                else:
                    arrays[f"optim/{name}/{index}/{key}"] = np.asarray(value)
        groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
        meta["optimizers"][name] = {"param_groups": groups, "scalars": scalars}
    return arrays, meta


def unpack_state(path, arrays: dict, meta: dict, models: dict, optimizers: dict) -> None:
    """Load what :func:`pack_state` stored into ``models`` and ``optimizers``. Everything is checked before
    anything is changed; a mismatch is a :class:`CheckpointError` naming ``path``."""
    model_states = {}
    for name, model in models.items():
        prefix = f"model/{name}/"
        state = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        own = model.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        shapes = [f"{k} {state[k].shape} vs {own[k].shape}"
                  for k in own if k in state and state[k].shape != own[k].shape]
        if missing or unexpected or shapes:
            raise CheckpointError(
                f"checkpoint {path} does not fit model {name}: missing {missing}, unexpected {unexpected}, "
                f"shape mismatches {shapes}")
        model_states[name] = state
    opt_states = {}
    for name, opt in optimizers.items():
        info = meta.get("optimizers", {}).get(name)
        if info is None:
            raise CheckpointError(f"checkpoint {path} has no state for optimizer {name}")
        prefix = f"optim/{name}/"
        state: dict = {}
        for key, value in arrays.items():
            if key.startswith(prefix):
                index, field = key[len(prefix):].split("/", 1)
                state.setdefault(int(index), {})[field] = value
        for index, fields in info["scalars"].items():
            state.setdefault(int(index), {}).update(fields)
        groups = [{k: (tuple(v) if isinstance(v, list) else v) for k, v in g.items()} for g in info["param_groups"]]
        bad = [i for i in state if not 0 <= i < len(opt.params)]
        if bad:
            raise CheckpointError(f"checkpoint {path}: optimizer {name} has state for parameters {bad}, "
                                  f"the optimizer has {len(opt.params)}")
        opt_states[name] = {"state": state, "param_groups": groups}
    for name, model in models.items():
        model.load_state_dict(model_states[name])
    for name, opt in optimizers.items():
        try:
            opt.load_state_dict(opt_states[name])
        except ValueError as exc:
            raise CheckpointError(f"checkpoint {path}: {exc}") from None


def rng_state_json(rng: np.random.Generator) -> str:
    """A NumPy Generator's state as a JSON string (Python ints of any size survive JSON)."""
    return json.dumps(rng.bit_generator.state)


def set_rng_state_json(rng: np.random.Generator, state: str) -> None:
    rng.bit_generator.state = json.loads(state)
