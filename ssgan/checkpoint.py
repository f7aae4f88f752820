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

Writing is atomic (``ssgan/files.py``): a crash, a kill or a full disk leaves the previous checkpoint
intact, never a half-written one.

Reading uses ``np.load(..., allow_pickle=False)`` and reads every entry at once, so a truncated or
corrupt file (bad zip directory, CRC mismatch, missing metadata) is refused with a
:class:`CheckpointError` naming the file, before anything in the running program is changed.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import minigrad as mg

from . import data, files
from .metrics import EpochSums

FORMAT = "ssgan-checkpoint/1"
META_KEY = "__meta__"


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not fit the run; the message names the file and the problem."""


# ------------------------------------------------------------------------------------------ raw file I/O
def save_npz_atomic(path, arrays: dict, meta: dict) -> None:
    """Write ``arrays`` (name -> NumPy array) and ``meta`` (JSON-able) to ``path`` atomically."""
    if META_KEY in arrays:
        raise ValueError(f"save_npz_atomic: {META_KEY!r} is reserved for the metadata")
    payload = {k: np.asarray(v) for k, v in arrays.items()}  # (ascontiguousarray would turn 0-d into 1-d)
    payload[META_KEY] = np.array(json.dumps(dict(meta, format=FORMAT), sort_keys=True, allow_nan=False))
    files.atomic_write(path, lambda f: np.savez(f, **payload))


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


def check_finite(path, arrays: dict) -> None:
    """Refuse a checkpoint whose weights or optimizer state hold NaN or infinity (saved after training
    diverged): evaluating it gives chance-level numbers and resuming it cannot recover."""
    bad = [k for k, v in arrays.items() if (k.startswith("model/") or k.startswith("optim/"))
           and np.issubdtype(v.dtype, np.floating) and not np.isfinite(v).all()]
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise CheckpointError(f"checkpoint {path} holds non-finite values (NaN or inf) in {shown}: it was saved "
                              "after the training diverged. Use an earlier copy of it, or start a new run "
                              "in another --out folder (for instance with a smaller --lr or another --seed)")


def unpack_state(path, arrays: dict, meta: dict, models: dict, optimizers: dict) -> None:
    """Load what :func:`pack_state` stored into ``models`` and ``optimizers``. Everything is checked before
    anything is changed; a mismatch (or a non-finite weight) is a :class:`CheckpointError` naming ``path``."""
    check_finite(path, arrays)
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


# ------------------------------------------------------------------------------------ a training run's state
@dataclass
class TrainingState:
    """Where a run is, besides its weights: the counters, the generators of the data order, the epoch's
    running sums. ``epoch`` is 0-based (the epoch in progress), ``position`` the steps done in it,
    ``step`` the steps done in all. ``epoch_order_state`` is ``order_rng``'s state as the current epoch
    began: drawing the epoch's permutation again from it and skipping ``position`` batches is how a run
    resumes in the middle of an epoch."""

    order_rng: np.random.Generator
    cycler: data.LabeledCycler
    epoch: int = 0
    position: int = 0
    step: int = 0
    epoch_order_state: str = ""
    sums: EpochSums = field(default_factory=EpochSums)

    def __post_init__(self):
        if not self.epoch_order_state:
            self.epoch_order_state = rng_state_json(self.order_rng)

    def next_epoch(self) -> None:
        self.epoch += 1
        self.position = 0
        self.epoch_order_state = rng_state_json(self.order_rng)


def save_checkpoint(path, config: dict, models: dict, optimizers: dict, state: TrainingState,
                    labeled: np.ndarray, steps_per_epoch: int) -> None:
    """Everything needed to continue the run bit for bit, in one atomic ``.npz``."""
    arrays, meta = pack_state(models, optimizers)
    cycler = state.cycler.state_dict()
    arrays["extra/labeled_order"] = cycler["order"]
    arrays["extra/labeled_indices"] = labeled
    meta.update(
        config=config, epoch=state.epoch, position=state.position, step=state.step,
        steps_per_epoch=steps_per_epoch, accum=state.sums.to_dict(),
        rng={"minigrad": mg.get_rng_state(), "epoch_order": state.epoch_order_state,
             "labeled": json.dumps(cycler["rng_state"]), "labeled_position": cycler["position"]},
        versions={"minigrad": mg.__version__, "numpy": np.__version__})
    save_npz_atomic(path, arrays, meta)


def restore_checkpoint(path, arrays: dict, meta: dict, models: dict, optimizers: dict, state: TrainingState,
                       labeled: np.ndarray, steps_per_epoch: int, device: str, seed: int) -> None:
    """Load a checkpoint of :func:`save_checkpoint` into the run's models, optimizers and ``state``."""
    saved_labeled = arrays.get("extra/labeled_indices")
    if saved_labeled is None or not np.array_equal(saved_labeled, labeled):
        raise CheckpointError(f"checkpoint {path}: its labeled subset differs from the one these dataset files "
                              "give (were the data files changed?)")
    if meta.get("steps_per_epoch") != steps_per_epoch:
        raise CheckpointError(f"checkpoint {path}: {meta.get('steps_per_epoch')} steps per epoch, the data "
                              f"now gives {steps_per_epoch} (were the data files changed?)")
    try:
        unpack_state(path, arrays, meta, models, optimizers)
        rng = meta["rng"]
        state.cycler.load_state_dict({"order": arrays["extra/labeled_order"], "position": rng["labeled_position"],
                                      "rng_state": json.loads(rng["labeled"])})
        state.epoch_order_state = rng["epoch_order"]
        if device != "cpu":
            # CuPy's generator has no saved state: give it a fresh stream that depends on the step, so a
            # resumed GPU run does not replay the noise it drew at the start (not bit for bit on the GPU)
            mg.manual_seed(seed * 1_000_003 + int(meta["step"]) + 1)
        mg.set_rng_state(rng["minigrad"])
        state.epoch, state.position, state.step = int(meta["epoch"]), int(meta["position"]), int(meta["step"])
        state.sums = EpochSums.from_dict(meta["accum"])
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} is incomplete or does not fit this run: "
                              f"{type(exc).__name__}: {exc}") from None
