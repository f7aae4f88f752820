"""The run's logs: ``metrics.jsonl`` (one JSON line per epoch, or per partial epoch when a run stops in
its middle) and ``steps.jsonl`` (the losses every ``--log-every`` steps), and the sums an epoch's line is
made of.

Both logs are appended one fsync'ed line at a time (``files.append_line``). A process killed while
writing can leave a torn last line: :func:`read_log` drops it with a warning (a torn line anywhere else
is an error naming the file and line). On resume, lines written after the checkpoint's step are dropped
(:func:`truncate_log`), since the resumed run writes them again.
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from . import files


class LogError(RuntimeError):
    """A log file cannot be read (a corrupt line that is not the last)."""


def read_log(path, *, warn=True) -> list:
    """The records of a JSON-lines log (an absent file has none)."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as f:
        lines = [line for line in f.read().split("\n")]
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            if any(rest.strip() for rest in lines[number:]):
                raise LogError(f"{path}: line {number} is not valid JSON (a corrupt log; restore it or start "
                               "a new run)") from None
            if warn:
                print(f"warning: {path}: dropped a torn last line (the process was killed while writing it)",
                      file=sys.stderr)
    return records


def append_record(path, record: dict) -> None:
    files.append_line(path, json.dumps(record, allow_nan=True))


def truncate_log(path, step: int) -> int:
    """Keep the records with ``step <= step`` (and drop a torn last line); returns how many were dropped."""
    path = Path(path)
    if not path.is_file():
        return 0
    with open(path, encoding="utf-8") as f:
        raw = f.read()
    records = read_log(path)
    kept = [r for r in records if r.get("step", 0) <= step]
    if len(kept) != len(records) or not raw.endswith("\n") and raw.strip():
        files.write_text_atomic(path, "".join(json.dumps(r, allow_nan=True) + "\n" for r in kept))
    return len(records) - len(kept)


@dataclass
class EpochSums:
    """Running sums over the steps of the epoch in progress. Saved in the checkpoint (as a dict with these
    keys), so an epoch's line is the same whether or not the run was resumed in its middle."""

    steps: int = 0
    d_loss: float = 0.0
    d_loss_real: float = 0.0
    d_loss_fake: float = 0.0
    d_loss_class: float = 0.0
    g_loss: float = 0.0
    train_batch_correct: int = 0
    train_batch_seen: int = 0
    seconds: float = 0.0

    def add(self, result, seconds: float) -> None:
        """Add one step's :class:`ssgan.steps.StepResult` and its time."""
        self.steps += 1
        self.seconds += seconds
        for name in ("d_loss", "d_loss_real", "d_loss_fake", "d_loss_class", "g_loss"):
            value = getattr(result, name)
            if value is not None:
                setattr(self, name, getattr(self, name) + value)
        self.train_batch_correct += result.correct
        self.train_batch_seen += result.labeled

    def mean(self, name: str):
        return getattr(self, name) / self.steps if self.steps else None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, saved: dict) -> "EpochSums":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in known})
