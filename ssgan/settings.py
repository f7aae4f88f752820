"""The settings a training run is made of: the one place their defaults live.

Each :class:`Setting` names a config key (``batch_size``; the command-line flag is ``--batch-size``), its
default, its help text and whether it is a *training* setting (it shapes the model and the trajectory:
a resumed run must keep the checkpoint's) or a *run* setting (where and how long to run: a resumed run
keeps the saved value unless the command line gives another). :func:`build_parser` makes the command
line from the table, and :func:`resolve` turns parsed arguments (and, on resume, the saved config) into
the run's config dict, the only form the rest of ssgan reads.

A default of ``None`` means "depends on another setting": ``labels`` on the dataset (:data:`DEFAULT_LABELS`)
and the optimisation settings on the preset and dataset (:data:`PRESET_DEFAULTS`).
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass


class SettingsError(ValueError):
    """A setting is invalid or conflicts with the saved run: one line naming the setting."""


# (preset, dataset) -> the optimisation settings a run gets unless the command line says otherwise.
# default / notebook: the blog's model (Adam lr 3e-4, beta1 0.5, x0.9 per epoch, batch 128); MNIST trains
# 10 epochs by default, SVHN 25. improved: Improved-GAN's scripts -- train_mnist_feature_matching.py:
# batch 100, lr 0.003 constant, Adam mom1 0.5, 300 epochs; train_svhn_feature_matching.py: batch 100,
# lr 3e-4, mom1 0.5, 900 epochs with the rate held to epoch 600, then linear to 0 (ssgan/train.py).
_BLOG = {"batch_size": 128, "lr": 3e-4, "beta1": 0.5, "lr_decay": 0.9}
PRESET_DEFAULTS = {
    ("default", "svhn"): dict(_BLOG, epochs=25), ("default", "mnist"): dict(_BLOG, epochs=10),
    ("notebook", "svhn"): dict(_BLOG, epochs=25), ("notebook", "mnist"): dict(_BLOG, epochs=10),
    ("improved", "mnist"): {"epochs": 300, "batch_size": 100, "lr": 3e-3, "beta1": 0.5, "lr_decay": 1.0},
    ("improved", "svhn"): {"epochs": 900, "batch_size": 100, "lr": 3e-4, "beta1": 0.5, "lr_decay": 1.0},
}
DEFAULT_LABELS = {"svhn": 1000, "mnist": 100}
PRESETS = ("default", "notebook", "improved")


def _count(minimum: int):
    """An argparse type: an integer >= ``minimum``, with an error that names the expectation."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            kind = "a positive" if minimum == 1 else "a non-negative"
            raise argparse.ArgumentTypeError(f"expected {kind} integer, got {value}")
        return value
    parse.__name__ = "positive integer" if minimum == 1 else "non-negative integer"
    return parse


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


@dataclass(frozen=True)
class Setting:
    name: str
    default: object
    help: str
    kind: str = "training"          # "training" or "run"
    type: object = None
    choices: tuple | None = None
    metavar: str | None = None


SETTINGS = (
    Setting("dataset", "svhn", "svhn (3x32x32 house numbers) or mnist (28x28 digits)", choices=("svhn", "mnist")),
    Setting("preset", "default", "default: the blog's model with the notebook's quirks fixed. notebook: the "
            "quirks reproduced for comparison (see ssgan/models.py). improved: Improved-GAN's own recipe per "
            "dataset (weight norm, Gaussian noise, averaged weights for evaluation; ssgan/models_improved.py)",
            choices=PRESETS),
    Setting("labels", None, "training examples that keep their label, N/10 per class, chosen by --seed (the "
            "notebook preset takes the first N); default 1000 for svhn, 100 for mnist", type=_count(1), metavar="N"),
    Setting("epochs", None, "epochs to train in all (one epoch: one pass over the shuffled training set); "
            "default 10 on mnist and 25 on svhn (improved: 300 and 900). With --resume, a larger value trains on",
            kind="run", type=_count(1), metavar="E"),
    Setting("batch_size", None, "images per batch (each step uses B labeled, B unlabeled and B generated "
            "images); default 128 (improved: 100)", type=_count(1), metavar="B"),
    Setting("lr", None, "Adam's learning rate for both networks; default 3e-4 (improved: 3e-3 on mnist)",
            type=_finite),
    Setting("beta1", None, "Adam's beta1 (first-moment decay); default 0.5", type=_finite),
    Setting("lr_decay", None, "multiply the learning rate by GAMMA after every epoch; default 0.9 (improved: "
            "1, and on svhn the recipe's linear decay to 0 over the last third)", type=_finite, metavar="GAMMA"),
    Setting("seed", 0, "seeds the weights, the noise, dropout, the labeled subset and the batch order",
            type=_count(0)),
    Setting("g_width", 32, "seed-model generator width: its layers have 4M, 2M, M channels", type=_count(1),
            metavar="M"),
    Setting("d_width", 64, "seed-model discriminator width: W, W, W then 2W channels, 2W pooled features",
            type=_count(1), metavar="W"),
    Setting("z_dim", 100, "noise dimension", type=_count(1), metavar="Z"),
    # The seed model's study options (benchmarks/RESULTS.md, "Why the default run decays"); each default is
    # the seed model's own setting, so a run that leaves them alone trains exactly as before they existed.
    Setting("real_target", 0.9, "default preset: the target of the unlabeled real term (one-sided label "
            "smoothing, section 3.4); 1 is none, as Improved-GAN's code", type=_finite, metavar="T"),
    Setting("unlabeled_weight", 1.0, "default preset: the weight of the two unlabeled terms (real and fake) "
            "against the class term; Improved-GAN's code has 0.5", type=_finite, metavar="W"),
    Setting("d_noise", 0.0, "default preset: std of Gaussian noise added to the discriminator's input while "
            "training (real and generated images alike); 0 is none", type=_finite, metavar="STD"),
    Setting("g_steps", 1, "default preset: generator updates per discriminator update, each after the first "
            "on a fresh generated batch", type=_count(1), metavar="K"),
    Setting("ema_rate", 0.0, "default preset: also evaluate an average of the discriminator's parameters, "
            "a <- a + R (p - a) after every discriminator step (logged as test_acc_ema); 0 is none. The "
            "improved preset always averages, at 1e-4", type=_finite, metavar="R"),
    Setting("supervised_only", False, "the baseline: train the discriminator as a plain classifier on the "
            "labeled batches alone (no generator, no unlabeled data)"),
    Setting("device", "cpu", "where tensors live: cpu (NumPy + numba) or cuda (CuPy). A resumed run keeps "
            "the saved device unless given", kind="run", choices=("cpu", "cuda")),
    Setting("data_dir", None, "folder holding svhn/ and mnist/ (default: $SSGAN_DATA, else $XDG_CACHE_HOME/ssgan "
            "or ~/.cache/ssgan); missing files are downloaded there. The resolved folder is saved with the run",
            kind="run", metavar="DIR"),
    Setting("max_steps", None, "stop after S training steps in all (for quick looks); the partial epoch is "
            "evaluated and checkpointed and --resume continues it (give a larger S, or 0 for no limit)",
            kind="run", type=_count(0), metavar="S"),
    Setting("checkpoint_every", 100, "also write the checkpoint every N steps (0: only at the end of each epoch)",
            kind="run", type=_count(0), metavar="N"),
    Setting("log_every", 50, "append the losses to steps.jsonl every N steps (0: never)", kind="run",
            type=_count(0), metavar="N"),
    Setting("progress", True, "no progress bar (the start line and the per-epoch lines are still printed)",
            kind="run"),
)
BY_NAME = {s.name: s for s in SETTINGS}
#: the default preset's study options (their defaults are the seed model's settings)
SEED_STUDY_KEYS = ("real_target", "unlabeled_weight", "d_noise", "g_steps", "ema_rate")
TRAINING_KEYS = tuple(s.name for s in SETTINGS if s.kind == "training")
RUN_KEYS = tuple(s.name for s in SETTINGS if s.kind == "run")
# Run settings a resume takes from the saved config when the command line does not give them.
KEPT_ON_RESUME = ("epochs", "device", "data_dir", "max_steps", "checkpoint_every", "log_every")


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, ``error: ...``, exit status 2 (no usage dump)."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """``python -m ssgan.train``'s command line, made from :data:`SETTINGS` (plus ``--out`` and ``--resume``)."""
    p = OneLineParser(
        prog="python -m ssgan.train",
        description="Train the semi-supervised GAN of Salimans et al. (2016) on SVHN or MNIST with minigrad "
                    "(or, with --supervised-only, the same discriminator on the labeled examples alone).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python -m ssgan.train --dataset mnist --out runs/mnist-ssgan\n"
               "  python -m ssgan.train --dataset mnist --supervised-only --out runs/mnist-sup\n"
               "  python -m ssgan.train --dataset mnist --preset improved --out runs/mnist-improved\n"
               "  python -m ssgan.train --resume --out runs/mnist-ssgan          # continue where it stopped\n"
               "  python -m ssgan.train --resume --out runs/mnist-ssgan --epochs 20   # and train longer\n"
               "\noutputs in --out: config.json, metrics.jsonl (a JSON line per epoch), steps.jsonl (losses "
               "every --log-every steps), samples/*.png, curves.png, checkpoint.npz\n"
               "exit status: 0 done, 2 bad arguments/folder/checkpoint/data, 3 a loss became NaN or inf "
               "(the last good checkpoint is kept), 130 interrupted by Ctrl-C and 143 by SIGTERM (a "
               "checkpoint is written first)")
    for s in SETTINGS:
        flag = "--" + s.name.replace("_", "-")
        if s.name == "progress":
            p.add_argument("--no-progress", dest="progress", action="store_false", default=None, help=s.help)
        elif s.name == "supervised_only":
            p.add_argument(flag, action="store_true", default=None, help=s.help)
        else:
            shown = "" if s.default is None else f"; default {s.default}"
            p.add_argument(flag, default=None, type=s.type, choices=s.choices, metavar=s.metavar,
                           help=s.help + shown)
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (created if needed); default runs/<dataset>-ssgan or "
                        "runs/<dataset>-supervised. A fresh run refuses a folder that holds an earlier run's files")
    p.add_argument("--resume", action="store_true",
                   help="continue the run saved in DIR/checkpoint.npz (bit for bit on the CPU, mid-epoch too); "
                        "training settings default to the checkpoint's and may not differ from them")
    return p


def resolve(args: argparse.Namespace, saved: dict | None = None) -> dict:
    """The run's config: the command line's settings, else the saved run's (on resume), else the defaults.

    On resume, a training setting given on the command line that differs from the saved one is an error
    listing every such key, and a saved config that lacks a training setting is an error naming it.
    """
    given = {s.name: getattr(args, s.name) for s in SETTINGS if getattr(args, s.name, None) is not None}
    if saved is not None:
        if not isinstance(saved, dict):
            raise SettingsError("the checkpoint's config is not a dictionary")
        missing = [k for k in ("dataset", "labels", "batch_size", "lr", "beta1", "lr_decay", "seed")
                   if saved.get(k) is None]
        if missing:
            raise SettingsError("the checkpoint's config lacks " + ", ".join(repr(k) for k in missing)
                                + ": it was not written by ssgan.train, or was edited")
        differ = [f"{k} (checkpoint: {saved.get(k, BY_NAME[k].default)!r}, command line: {given[k]!r})"
                  for k in TRAINING_KEYS if k in given and given[k] != saved.get(k, BY_NAME[k].default)]
        if differ:
            raise SettingsError(
                "--resume: the command line asks for a different configuration than the checkpoint's: "
                + "; ".join(differ) + ". Leave those options out to continue the saved run, or start a new "
                "run in another --out folder")
        config = {s.name: saved.get(s.name, s.default) for s in SETTINGS if s.kind == "training"}
        config.update({s.name: s.default for s in SETTINGS if s.kind == "run"})
        config.update({k: saved[k] for k in KEPT_ON_RESUME if saved.get(k) is not None})
        config.update({k: v for k, v in given.items() if k in RUN_KEYS})
    else:
        config = {s.name: s.default for s in SETTINGS}
        config.update(given)
        if config["labels"] is None:
            config["labels"] = DEFAULT_LABELS[config["dataset"]]
    for k, v in PRESET_DEFAULTS[(config["preset"], config["dataset"])].items():
        if config.get(k) is None:
            config[k] = v
    if config["max_steps"] == 0:
        config["max_steps"] = None      # 0: no limit (how a resume lifts a saved limit)
    check(config)
    return config


def check(c: dict) -> None:
    """Range checks that argparse's types cannot make (and that a saved config must pass too)."""
    bad = []
    for k in ("labels", "epochs", "batch_size", "g_width", "d_width", "z_dim"):
        if isinstance(c[k], bool) or not isinstance(c[k], int) or c[k] <= 0:
            bad.append(f"--{k.replace('_', '-')} {c[k]!r} (expected a positive integer)")
    for k in ("seed", "checkpoint_every", "log_every"):
        if isinstance(c[k], bool) or not isinstance(c[k], int) or c[k] < 0:
            bad.append(f"--{k.replace('_', '-')} {c[k]!r} (expected a non-negative integer)")
    if c["max_steps"] is not None and not (isinstance(c["max_steps"], int) and c["max_steps"] > 0):
        bad.append(f"--max-steps {c['max_steps']!r} (expected a positive integer, or 0 for no limit)")
    if not (isinstance(c["lr"], (int, float)) and math.isfinite(c["lr"]) and c["lr"] > 0):
        bad.append(f"--lr {c['lr']!r} (expected a finite number > 0)")
    if not (isinstance(c["beta1"], (int, float)) and 0 <= c["beta1"] < 1):
        bad.append(f"--beta1 {c['beta1']!r} (expected 0 <= beta1 < 1)")
    if not (isinstance(c["lr_decay"], (int, float)) and 0 < c["lr_decay"] <= 1):
        bad.append(f"--lr-decay {c['lr_decay']!r} (expected 0 < gamma <= 1)")
    if c["preset"] not in PRESETS:
        bad.append(f"--preset {c['preset']!r} (expected one of {', '.join(PRESETS)})")
    for k, ok, expected in (("real_target", lambda v: 0 < v <= 1, "0 < T <= 1"),
                            ("unlabeled_weight", lambda v: v >= 0, "W >= 0"),
                            ("d_noise", lambda v: v >= 0, "STD >= 0"),
                            ("ema_rate", lambda v: 0 <= v < 1, "0 <= R < 1")):
        v = c[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not ok(v):
            bad.append(f"--{k.replace('_', '-')} {v!r} (expected {expected})")
    if isinstance(c["g_steps"], bool) or not isinstance(c["g_steps"], int) or c["g_steps"] < 1:
        bad.append(f"--g-steps {c['g_steps']!r} (expected a positive integer)")
    if bad:
        raise SettingsError("invalid options: " + "; ".join(bad))
    changed = [f"--{s.name.replace('_', '-')}" for s in SETTINGS if s.name in SEED_STUDY_KEYS
               and c[s.name] != s.default]
    if changed and c["preset"] != "default":
        raise SettingsError(f"{', '.join(changed)}: only the default preset has these options, not "
                            f"--preset {c['preset']}")
    if c["preset"] == "notebook" and c["supervised_only"]:
        raise SettingsError("--supervised-only has no notebook counterpart: use it with --preset default or improved")
