"""``python -m ssgan.train``: train the semi-supervised GAN (or its supervised-only baseline) on minigrad.

What one training step computes (the default, semi-supervised run)
-------------------------------------------------------------------
With a labeled batch (x_l, y_l) from the labeled cycler, an unlabeled batch x_u (the epoch's next slice
of the shuffled training set) and noise z ~ U(-1, 1)^(B x 100), all of batch size B:

1. ``fake = G(z)``, once (the generator in training mode: its batch norm uses the batch's statistics).
2. Discriminator step. One pass over the real images, ``D(cat(x_l, x_u))`` (batch norm statistics of the
   2B real images; the running statistics are updated from them), and one pass over ``fake.detach()``
   with ``real=False`` (batch statistics of the fakes; running statistics untouched, see
   ``ssgan/models.py``). ``L_D = BCE(logsumexp l(x_u), 0.9) + BCE(logsumexp l(fake), 0) +
   CE(l(x_l), y_l)`` (``ssgan/losses.py``); backpropagate into D only; one Adam step on D.
3. Generator step. The *updated* D runs once more on the same ``fake``, this time through the graph
   (with D's parameters frozen, so no weight gradient of D is computed), giving the fakes' pooled
   features; the real features are those of x_u from step 2, detached. ``L_G = mean |mean f(x_u) -
   mean f(fake)|``; backpropagate through D into G; one Adam step on G.

So a step costs one generator forward/backward over B images, a discriminator forward/backward over 2B
real and B fake images, and one more discriminator forward/backward (input gradients only) over the B
fakes. ``--supervised-only`` trains the same discriminator on the labeled batch alone:
``D(x_l)``, ``CE``, one Adam step -- the same number of steps per epoch, so the two runs are comparable.

``--preset notebook`` batches as the blog notebook did (:meth:`Trainer.notebook_step`): no labeled batch;
the real batch is the unlabeled slice x_u, and the labeled examples are those of x_u that belong to the
labeled subset (the first N training images), found by a mask; the real term and the real features use
all of x_u. The model differences of that preset are described in ``ssgan/models.py``.

An epoch is one pass over the shuffled training set (``len(train) // B`` steps); the learning rate of
both optimizers is ``lr * lr_decay ** epoch``. After each epoch: accuracy on the labeled examples and
on the test set (evaluation mode: no dropout, batch norm with running statistics; in batches, without
gradients), one line in ``metrics.jsonl``, a sample grid, the learning-curve picture and a checkpoint.

Run ``python -m ssgan.train --help`` for every option; README.md shows the commands.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

import minigrad as mg
from minigrad import optim

from . import checkpoint as ckpt
from . import data, losses, plots, steps
from .evaluate import predict
from .models import Discriminator, Generator
from .models_improved import MnistDiscriminator, MnistGenerator

# ------------------------------------------------------------------------------------------- the config
# Every setting a run is made of. ``None`` here means "depends on another setting" (see resolve_config).
DEFAULTS = {
    "dataset": "svhn",
    "labels": None,            # 1000 for svhn, 100 for mnist
    "epochs": None,            # these five depend on the preset (and dataset): PRESET_DEFAULTS
    "batch_size": None,
    "lr": None,
    "beta1": None,
    "lr_decay": None,
    "seed": 0,
    "preset": "default",
    "g_width": 32,
    "d_width": 64,
    "z_dim": 100,
    "supervised_only": False,
    "device": "cpu",
    "data_dir": None,
    "max_steps": None,
    "checkpoint_every": 100,
    "progress": True,
}
DEFAULT_LABELS = {"svhn": 1000, "mnist": 100}
_SEED_MODEL = {"epochs": 25, "batch_size": 128, "lr": 3e-4, "beta1": 0.5, "lr_decay": 0.9}
# (preset, dataset) -> the training settings a run of it gets unless the command line says otherwise.
# improved: Improved-GAN's scripts (train_mnist_feature_matching.py: batch 100, lr 0.003 constant, Adam
# mom1 0.5, 300 epochs; train_svhn_feature_matching.py: batch 100, lr 3e-4, mom1 0.5, 900 epochs, the lr
# constant to epoch 600 and then linear to 0 -- see Trainer._lr).
PRESET_DEFAULTS = {
    ("default", "svhn"): _SEED_MODEL, ("default", "mnist"): _SEED_MODEL,
    ("notebook", "svhn"): _SEED_MODEL, ("notebook", "mnist"): _SEED_MODEL,
    ("improved", "mnist"): {"epochs": 300, "batch_size": 100, "lr": 3e-3, "beta1": 0.5, "lr_decay": 1.0},
    ("improved", "svhn"): {"epochs": 900, "batch_size": 100, "lr": 3e-4, "beta1": 0.5, "lr_decay": 1.0},
}
EMA_RATE = 1e-4          # --preset improved: a <- a + 1e-4 (p - a) after every discriminator step
INIT_IMAGES = 500        # --preset improved: images for the data-dependent initialisation
# The settings that shape the model and its training trajectory: a resumed run must use the checkpoint's.
TRAINING_KEYS = ("dataset", "labels", "batch_size", "lr", "beta1", "lr_decay", "seed", "preset", "g_width",
                 "d_width", "z_dim", "supervised_only")
# The settings a resumed run may change (train longer, move to another device or data folder...).
RUN_KEYS = ("epochs", "device", "data_dir", "max_steps", "checkpoint_every", "progress")

REAL_TARGET = 0.9        # one-sided label smoothing
DROP_RATE = 0.5          # the discriminator's dropout (0 under --preset notebook: the notebook's was inactive)
EVAL_BATCH_SIZE = 500    # test-time batches (with running statistics the result does not depend on it)
SAMPLES = 100            # images in each sample grid (10 x 10)

CHECKPOINT_NAME = "checkpoint.npz"
METRICS_NAME = "metrics.jsonl"
CONFIG_NAME = "config.json"
CURVES_NAME = "curves.png"
SAMPLES_DIR = "samples"

EXIT_ERROR, EXIT_NONFINITE, EXIT_INTERRUPTED = 2, 3, 130


class TrainingError(Exception):
    """A problem with the command line, the output folder or a checkpoint: printed as one line, exit 2."""


class NonFiniteLoss(Exception):
    """A loss became NaN or infinite; the run stops without writing anything more."""


# ------------------------------------------------------------------------------------------ command line
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ssgan.train",
        description="Train the semi-supervised GAN of Salimans et al. (2016) on SVHN or MNIST with minigrad "
                    "(or, with --supervised-only, the same discriminator on the labeled examples alone).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python -m ssgan.train --dataset mnist --epochs 10 --out runs/mnist-ssgan\n"
               "  python -m ssgan.train --dataset mnist --epochs 10 --supervised-only --out runs/mnist-sup\n"
               "  python -m ssgan.train --resume --out runs/mnist-ssgan          # continue where it stopped\n"
               "  python -m ssgan.train --resume --out runs/mnist-ssgan --epochs 20   # and train longer\n"
               "\noutputs in --out: config.json, metrics.jsonl (one JSON line per epoch), samples/*.png, "
               "curves.png, checkpoint.npz\n"
               "exit status: 0 done, 2 bad arguments/folder/checkpoint/data, 3 a loss became NaN or inf "
               "(the last good checkpoint is kept), 130 interrupted (a checkpoint is written first)")
    a = p.add_argument
    a("--dataset", choices=("svhn", "mnist"), default=None,
      help="svhn (3x32x32 house numbers) or mnist (28x28 digits padded to 32x32); default svhn")
    data.add_data_dir_argument(p)
    a("--device", choices=("cpu", "cuda"), default=None,
      help="where tensors live: cpu (NumPy + numba) or cuda (CuPy); default cpu. A resumed run may switch")
    a("--labels", type=int, default=None, metavar="N",
      help="how many training examples keep their label, N/10 per class, chosen by --seed (the notebook "
           "preset takes the first N instead); default 1000 for svhn, 100 for mnist")
    a("--epochs", type=int, default=None, metavar="E",
      help="epochs to train in all (one epoch = one pass over the shuffled training set); default 25 (improved: 300 on mnist, 900 on svhn). "
           "With --resume, a larger value trains on")
    a("--batch-size", type=int, default=None, metavar="B",
      help="images per batch; each step uses B labeled, B unlabeled and B generated images; default 128 (improved: 100)")
    a("--lr", type=float, default=None, help="Adam learning rate of both networks at epoch 0; default 3e-4 (improved: 3e-3 on mnist)")
    a("--beta1", type=float, default=None, help="Adam's beta1 (first-moment decay); default 0.5")
    a("--lr-decay", type=float, default=None, metavar="GAMMA",
      help="the learning rate is multiplied by GAMMA after every epoch; default 0.9 (improved: 1, and on svhn a linear decay to 0 over the last third)")
    a("--seed", type=int, default=None,
      help="seeds the weights, the noise, dropout, the labeled subset and the batch order; default 0")
    a("--out", default=None, metavar="DIR",
      help="output folder (created if needed); default runs/<dataset>-ssgan or runs/<dataset>-supervised. "
           "A fresh run refuses a folder that holds an earlier run's files")
    a("--resume", action="store_true",
      help="continue the run saved in DIR/checkpoint.npz (bit for bit on the CPU, mid-epoch too); "
           "training settings default to the checkpoint's and may not differ from them")
    a("--max-steps", type=int, default=None, metavar="S",
      help="stop after S training steps in all (for quick runs); the partial epoch is evaluated and "
           "checkpointed, and --resume continues it")
    a("--checkpoint-every", type=int, default=None, metavar="N",
      help="also write the checkpoint every N steps (0: only at the end of each epoch); default 100")
    a("--supervised-only", action="store_true", default=None,
      help="the baseline: train the discriminator as a plain classifier on the labeled batches alone "
           "(no generator, no unlabeled data)")
    a("--preset", choices=("default", "notebook", "improved"), default=None,
      help="default: the model with the blog notebook's quirks fixed. notebook: reproduce them for "
           "comparison (the first N images labeled and found by a mask inside each batch instead of a "
           "labeled batch, SVHN label 10 kept, no dropout, batch norm in batch mode even at test time, "
           "conv2's batch norm unused, test on the first half of the test set). improved: Improved-GAN's own "
           "recipe per dataset (weight norm, Gaussian noise, averaged weights for evaluation; see "
           "ssgan/models_improved.py); its own batch size, lr and epochs unless given")
    a("--g-width", type=int, default=None, metavar="M",
      help="generator width: its layers have 4M, 2M, M channels; default 32")
    a("--d-width", type=int, default=None, metavar="W",
      help="discriminator width: W, W, W then 2W channels, 2W pooled features; default 64")
    a("--z-dim", type=int, default=None, metavar="Z", help="noise dimension; default 100")
    a("--no-progress", dest="progress", action="store_false", default=None,
      help="no progress bar (the per-epoch summary lines are still printed)")
    return p


def resolve_config(args: argparse.Namespace, saved: dict | None = None) -> dict:
    """The run's settings: the command line's, else the checkpoint's (``saved``), else the defaults.

    With a checkpoint, a training setting given on the command line that differs from the checkpoint's is
    an error that lists every such key.
    """
    given = {k: getattr(args, k) for k in DEFAULTS if getattr(args, k, None) is not None}
    if saved is not None:
        differ = [f"{k} (checkpoint: {saved.get(k)!r}, command line: {given[k]!r})"
                  for k in TRAINING_KEYS if k in given and given[k] != saved.get(k)]
        if differ:
            raise TrainingError(
                "--resume: the command line asks for a different configuration than the checkpoint's: "
                + "; ".join(differ) + ". Leave those options out to continue the saved run, or start a new "
                "run in another --out folder")
        config = {k: saved.get(k, DEFAULTS[k]) for k in TRAINING_KEYS}
        config.update({k: DEFAULTS[k] for k in RUN_KEYS})
        config["epochs"] = saved.get("epochs")
        config.update({k: v for k, v in given.items() if k in RUN_KEYS})
    else:
        config = dict(DEFAULTS)
        config.update(given)
        if config["labels"] is None:
            config["labels"] = DEFAULT_LABELS[config["dataset"]]
    for k, v in PRESET_DEFAULTS[(config["preset"], config["dataset"])].items():
        if config.get(k) is None:
            config[k] = v
    _check_config(config)
    return config


def _check_config(c: dict) -> None:
    positive = ("labels", "epochs", "batch_size", "g_width", "d_width", "z_dim")
    bad = [f"--{k.replace('_', '-')} {c[k]}" for k in positive if not (isinstance(c[k], int) and c[k] > 0)]
    if c["max_steps"] is not None and c["max_steps"] <= 0:
        bad.append(f"--max-steps {c['max_steps']}")
    if c["checkpoint_every"] < 0:
        bad.append(f"--checkpoint-every {c['checkpoint_every']}")
    if not (c["lr"] > 0 and math.isfinite(c["lr"])):
        bad.append(f"--lr {c['lr']}")
    if not 0 <= c["beta1"] < 1:
        bad.append(f"--beta1 {c['beta1']}")
    if not 0 < c["lr_decay"] <= 1:
        bad.append(f"--lr-decay {c['lr_decay']}")
    if c["preset"] == "notebook" and c["supervised_only"]:
        raise TrainingError("--supervised-only has no notebook counterpart: use it with --preset default")
    if bad:
        raise TrainingError("invalid options: " + ", ".join(bad) + " (sizes and counts must be positive, "
                            "0 <= beta1 < 1, 0 < lr-decay <= 1)")


# ------------------------------------------------------------------------------------------ small helpers
def _json_line(record: dict) -> str:
    return json.dumps(record, sort_keys=False, allow_nan=True)


def _write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_metrics(path: Path) -> list[dict]:
    """The records of a ``metrics.jsonl`` (an absent file has none)."""
    if not path.is_file():
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


@contextlib.contextmanager
def frozen(module):
    """Parameters of ``module`` stop requiring gradients inside the block: gradients still flow *through*
    the module to its input, but no weight gradient is computed (the generator step does not need D's)."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad = False
    try:
        yield
    finally:
        for p in params:
            p.requires_grad = True


def _finite(name: str, value: float, where: str) -> float:
    if not math.isfinite(value):
        raise NonFiniteLoss(f"the {name} is {value} at {where}")
    return value


class _Interrupt:
    """Turns the first Ctrl-C into a flag checked between steps (so the checkpoint written on the way out
    holds a whole step); a second Ctrl-C interrupts at once."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread: leave signals alone
            self._previous = None
        return self

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\ninterrupt: finishing this step and writing a checkpoint (Ctrl-C again to quit at once)",
              file=sys.stderr)

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


# ---------------------------------------------------------------------------------------------- trainer
class Trainer:
    """One training run: the data, the models and optimizers, the random generators and the counters.

    Counters: ``epoch`` (0-based, the epoch in progress), ``position`` (steps done in it), ``step`` (steps
    done in all). ``accum`` holds the running sums of the epoch's losses and timings, so an epoch's line
    in ``metrics.jsonl`` is the same whether or not the run was resumed in its middle.
    """

    def __init__(self, config: dict, out: Path, resume: tuple | None = None):
        self.config, self.out = config, out
        c = config
        self.device = c["device"]
        self.notebook = c["preset"] == "notebook"
        self.improved = c["preset"] == "improved"
        layout = "flat" if self.improved and c["dataset"] == "mnist" else "padded"
        self.supervised_only = c["supervised_only"]
        self.info = data.dataset_info(c["dataset"])
        self.paths = {
            "checkpoint": out / CHECKPOINT_NAME, "metrics": out / METRICS_NAME, "config": out / CONFIG_NAME,
            "curves": out / CURVES_NAME, "samples": out / SAMPLES_DIR}

        # ---- data (NumPy arrays; batches become tensors one step at a time)
        self.train = data.load_dataset(c["dataset"], "train", c["data_dir"], remap_ten=not self.notebook,
                                       layout=layout)
        self.test = data.load_dataset(c["dataset"], "test", c["data_dir"], remap_ten=not self.notebook,
                                      fraction=0.5 if self.notebook else 1.0, layout=layout)
        try:
            if self.notebook:
                self.labeled = data.labeled_subset(self.train.labels, c["labels"], method="first_n")
            else:
                self.labeled = data.labeled_subset(self.train.labels, c["labels"], c["seed"],
                                                   num_classes=self.info.num_classes)
        except ValueError as exc:
            raise TrainingError(f"--labels {c['labels']}: {exc}") from None
        self.is_labeled = np.zeros(len(self.train), dtype=bool)
        self.is_labeled[self.labeled] = True
        self.steps_per_epoch = data.batches_per_epoch(len(self.train), c["batch_size"])
        if self.steps_per_epoch == 0:
            raise TrainingError(f"--batch-size {c['batch_size']} exceeds the {len(self.train)} training images")

        # ---- random generators: minigrad's (weights, noise, dropout) and one NumPy Generator per data stream
        mg.manual_seed(c["seed"])
        streams = np.random.SeedSequence(c["seed"]).spawn(3)
        self.order_rng = np.random.default_rng(streams[0])       # the unlabeled epoch order
        self.labeled_rng = np.random.default_rng(streams[1])     # the labeled cycler's reshuffles
        z_low = 0.0 if self.improved else -1.0     # improved: z ~ U(0, 1); the seed model: U(-1, 1)
        self.sample_z = np.random.default_rng(streams[2]).uniform(z_low, 1, (SAMPLES, c["z_dim"])).astype(np.float32)
        self.cycler = data.LabeledCycler(self.labeled, c["batch_size"], self.labeled_rng)

        # ---- models and optimizers
        self.ema = None
        if self.improved:
            self._build_improved(resume is None, np.random.default_rng(np.random.SeedSequence(c["seed"]).spawn(4)[3]))
        else:
            self.D = Discriminator(self.info.num_channels, c["d_width"], self.info.num_classes,
                                   drop_rate=0.0 if self.notebook else DROP_RATE,
                                   notebook=self.notebook).to(self.device)
            betas = (c["beta1"], 0.999)
            self.opt_d = optim.Adam(self.D.parameters(), lr=c["lr"], betas=betas)
            self.models, self.optimizers = {"D": self.D}, {"D": self.opt_d}
            self.G = self.opt_g = None
            if not self.supervised_only:
                self.G = Generator(c["z_dim"], c["g_width"], self.info.num_channels).to(self.device)
                self.opt_g = optim.Adam(self.G.parameters(), lr=c["lr"], betas=betas)
                self.models["G"], self.optimizers["G"] = self.G, self.opt_g

        # ---- counters
        self.epoch = self.position = self.step = 0
        self.epoch_order_state = ckpt.rng_state_json(self.order_rng)  # order_rng as the current epoch began
        self.accum = self._fresh_accum()
        self.last_checkpoint_step = None
        if resume is not None:
            self._restore(*resume)

    def _build_improved(self, fresh: bool, init_rng: np.random.Generator) -> None:
        """``--preset improved``: Improved-GAN's networks (``ssgan/models_improved.py``), its Adam (beta1
        from the config, eps 1e-8 under the square root), the data-dependent initialisation on
        ``INIT_IMAGES`` random training images (a fresh run only: a resumed one loads its weights), and
        the discriminator's parameter average for evaluation, starting at zero as the recipe's."""
        c = self.config
        if c["dataset"] != "mnist":
            raise TrainingError("--preset improved: only --dataset mnist is built so far")
        self.D = MnistDiscriminator(self.train.images.shape[1], self.info.num_classes).to(self.device)
        if fresh:
            batch = self.train.images[init_rng.choice(len(self.train), INIT_IMAGES, replace=False)]
            self.D.init_from_batch(mg.tensor(batch, device=self.device))
        betas = (c["beta1"], 0.999)
        trained = lambda m: [p for p in m.parameters() if p.requires_grad]  # noqa: E731
        self.opt_d = optim.Adam(trained(self.D), lr=c["lr"], betas=betas, eps_inside_sqrt=True)
        self.ema = mg.AveragedModel(self.D, decay=1.0 - EMA_RATE, start="zeros")
        self.models, self.optimizers = {"D": self.D, "D_ema": self.ema}, {"D": self.opt_d}
        self.G = self.opt_g = None
        if not self.supervised_only:
            self.G = MnistGenerator(c["z_dim"], out_features=self.train.images.shape[1]).to(self.device)
            self.opt_g = optim.Adam(trained(self.G), lr=c["lr"], betas=betas, eps_inside_sqrt=True)
            self.models["G"], self.optimizers["G"] = self.G, self.opt_g

    # ------------------------------------------------------------------------------ state and checkpoints
    @staticmethod
    def _fresh_accum() -> dict:
        return {"steps": 0, "d_loss": 0.0, "d_loss_real": 0.0, "d_loss_fake": 0.0, "d_loss_class": 0.0,
                "g_loss": 0.0, "train_batch_correct": 0, "train_batch_seen": 0, "seconds": 0.0}

    def save_checkpoint(self) -> None:
        arrays, meta = ckpt.pack_state(self.models, self.optimizers)
        cycler = self.cycler.state_dict()
        arrays["extra/labeled_order"] = cycler["order"]
        arrays["extra/labeled_indices"] = self.labeled
        meta.update(
            config=self.config, epoch=self.epoch, position=self.position, step=self.step,
            steps_per_epoch=self.steps_per_epoch, accum=self.accum,
            rng={"minigrad": mg.get_rng_state(), "epoch_order": self.epoch_order_state,
                 "labeled": json.dumps(cycler["rng_state"]), "labeled_position": cycler["position"]},
            versions={"minigrad": mg.__version__, "numpy": np.__version__})
        ckpt.save_npz_atomic(self.paths["checkpoint"], arrays, meta)
        self.last_checkpoint_step = self.step

    def _restore(self, arrays: dict, meta: dict) -> None:
        where = self.paths["checkpoint"]
        saved_labeled = arrays.get("extra/labeled_indices")
        if saved_labeled is None or not np.array_equal(saved_labeled, self.labeled):
            raise TrainingError(f"checkpoint {where}: its labeled subset differs from the one these dataset files "
                                "give (were the data files changed?)")
        if meta.get("steps_per_epoch") != self.steps_per_epoch:
            raise TrainingError(f"checkpoint {where}: {meta.get('steps_per_epoch')} steps per epoch, the data "
                                f"now gives {self.steps_per_epoch} (were the data files changed?)")
        try:
            ckpt.unpack_state(where, arrays, meta, self.models, self.optimizers)
            rng = meta["rng"]
            self.cycler.load_state_dict({"order": arrays["extra/labeled_order"],
                                         "position": rng["labeled_position"],
                                         "rng_state": json.loads(rng["labeled"])})
            self.epoch_order_state = rng["epoch_order"]
            if self.device != "cpu":
                # CuPy's generator has no saved state: give it a fresh stream that depends on the step, so a
                # resumed GPU run does not replay the noise it drew at the start (not bit for bit on the GPU)
                mg.manual_seed(self.config["seed"] * 1_000_003 + int(meta["step"]) + 1)
            mg.set_rng_state(rng["minigrad"])
            self.epoch, self.position, self.step = int(meta["epoch"]), int(meta["position"]), int(meta["step"])
            self.accum = dict(self._fresh_accum(), **meta["accum"])
        except (KeyError, ValueError, TypeError) as exc:
            raise TrainingError(f"checkpoint {where} is incomplete or does not fit this run: "
                                f"{type(exc).__name__}: {exc}") from None
        self.last_checkpoint_step = self.step

    # ------------------------------------------------------------------------------------------ the steps
    def _batch(self, indices: np.ndarray) -> mg.Tensor:
        return mg.tensor(self.train.images[indices], device=self.device)

    def ssgan_step(self, labeled_idx: np.ndarray, unlabeled_idx: np.ndarray) -> dict:
        """One discriminator step and one generator step (the module docstring spells them out)."""
        G, D, c = self.G, self.D, self.config
        n_lab, n_unl = len(labeled_idx), len(unlabeled_idx)
        where = f"epoch {self.epoch + 1}, step {self.step + 1}"
        real = self._batch(np.concatenate([labeled_idx, unlabeled_idx]))   # one gather, one transfer
        y_lab = self.train.labels[labeled_idx]
        z = mg.rand(n_unl, c["z_dim"], device=self.device) * 2.0 - 1.0
        fake = G(z)

        # discriminator: real pass (updates the running statistics), fake pass (does not)
        logits_real, features_real = D(real, real=True)
        logits_fake, _ = D(fake.detach(), real=False)
        d = losses.discriminator_loss(logits_real[:n_lab], y_lab, logits_real[n_lab:], logits_fake, REAL_TARGET)
        d_total = self._update_discriminator(d, where)

        # generator: feature matching against the real unlabeled features of the D pass above
        g_value = self._update_generator(fake, features_real[n_lab:], where)

        correct = int((logits_real.data[:n_lab].argmax(axis=1) == mg.tensor(y_lab, device=self.device).data).sum())
        return {"d_loss": d_total, "d_loss_real": d.real.item(), "d_loss_fake": d.fake.item(),
                "d_loss_class": d.classes.item(), "g_loss": g_value, "correct": correct, "labeled": n_lab}

    def improved_step(self, labeled_idx: np.ndarray, unlabeled_idx: np.ndarray, unlabeled2_idx) -> dict:
        """``--preset improved`` (``ssgan/steps.py``)."""
        where = f"epoch {self.epoch + 1}, step {self.step + 1}"
        x_lab, y_lab = self._batch(labeled_idx), self.train.labels[labeled_idx]
        if self.supervised_only:
            result = steps.improved_supervised_step(self.D, self.opt_d, self.ema, x_lab, y_lab, where=where)
        else:
            result = steps.improved_step(self.D, self.G, self.opt_d, self.opt_g, self.ema, x_lab, y_lab,
                                         self._batch(unlabeled_idx), self._batch(unlabeled2_idx),
                                         z_dim=self.config["z_dim"], where=where)
        return {k: v for k, v in dataclasses.asdict(result).items() if v is not None}

    def notebook_step(self, batch_idx: np.ndarray) -> dict:
        """``--preset notebook``: the same two steps, with the notebook's batches. There is no labeled batch:
        the labeled examples are those of the real batch that belong to the labeled subset (a mask), the
        real term and the real features use the whole real batch (``losses.notebook_discriminator_loss``)."""
        G, D, c = self.G, self.D, self.config
        where = f"epoch {self.epoch + 1}, step {self.step + 1}"
        real = self._batch(batch_idx)
        labels, mask = self.train.labels[batch_idx], self.is_labeled[batch_idx]
        fake = G(mg.rand(len(batch_idx), c["z_dim"], device=self.device) * 2.0 - 1.0)

        logits_real, features_real = D(real, real=True)
        logits_fake, _ = D(fake.detach(), real=False)
        d = losses.notebook_discriminator_loss(logits_real, labels, mask, logits_fake, REAL_TARGET)
        d_total = self._update_discriminator(d, where)
        g_value = self._update_generator(fake, features_real, where)

        predicted = logits_real.numpy().argmax(axis=1)
        correct = int(((predicted == labels) & mask).sum())
        return {"d_loss": d_total, "d_loss_real": d.real.item(), "d_loss_fake": d.fake.item(),
                "d_loss_class": d.classes.item(), "g_loss": g_value, "correct": correct, "labeled": int(mask.sum())}

    def _update_discriminator(self, d, where: str) -> float:
        """One Adam step of the discriminator on the loss parts ``d``; returns the loss (checked finite)."""
        total = _finite("discriminator loss", d.total.item(), where)
        self.opt_d.zero_grad()
        d.total.backward()
        self.opt_d.step()
        return total

    def _update_generator(self, fake, features_real, where: str) -> float:
        """One Adam step of the generator on feature matching: the (already updated) discriminator runs on
        the same fakes with its weights frozen, against the real features of its earlier pass (detached)."""
        with frozen(self.D):
            _, features_fake = self.D(fake, real=False)
            g_loss = losses.feature_matching_loss(features_real.detach(), features_fake)
            g_value = _finite("generator loss", g_loss.item(), where)
            self.opt_g.zero_grad()
            g_loss.backward()
        self.opt_g.step()
        return g_value

    def supervised_step(self, labeled_idx: np.ndarray) -> dict:
        """The baseline: one Adam step of the discriminator as a classifier on the labeled batch."""
        x = self._batch(labeled_idx)
        y = self.train.labels[labeled_idx]
        logits, _ = self.D(x, real=True)
        loss = losses.supervised_loss(logits, y)
        value = _finite("classification loss", loss.item(), f"epoch {self.epoch + 1}, step {self.step + 1}")
        self.opt_d.zero_grad()
        loss.backward()
        self.opt_d.step()
        correct = int((logits.data.argmax(axis=1) == mg.tensor(y, device=self.device).data).sum())
        return {"d_loss": value, "d_loss_class": value, "correct": correct, "labeled": len(labeled_idx)}

    # ------------------------------------------------------------------------------------ epoch bookkeeping
    def _lr(self) -> float:
        return self.config["lr"] * self.config["lr_decay"] ** self.epoch

    def _record(self, complete: bool, eval_seconds: float, test_acc: float, train_acc: float) -> dict:
        a, c = self.accum, self.config
        steps = max(a["steps"], 1)
        mean = lambda k: (a[k] / steps) if a["steps"] else None  # noqa: E731
        images = a["steps"] * c["batch_size"]
        record = {
            "epoch": self.epoch + 1, "step": self.step, "epoch_complete": complete,
            "steps_per_epoch": self.steps_per_epoch, "lr": self._lr(),
            "d_loss": mean("d_loss"), "d_loss_class": mean("d_loss_class"),
            "d_loss_real": None if self.supervised_only else mean("d_loss_real"),
            "d_loss_fake": None if self.supervised_only else mean("d_loss_fake"),
            "g_loss": None if self.supervised_only else mean("g_loss"),
            "train_acc": train_acc,
            "train_batch_acc": a["train_batch_correct"] / a["train_batch_seen"] if a["train_batch_seen"] else None,
            "test_acc": test_acc,
            "test_acc_ema": self.test_acc_ema,
            "seconds": a["seconds"], "eval_seconds": eval_seconds,
            "images_per_s": images / a["seconds"] if a["seconds"] > 0 else None,
        }
        return record

    def evaluate(self) -> tuple[float, float, float]:
        """(labeled-train accuracy, test accuracy, seconds), in evaluation mode."""
        t0 = time.perf_counter()
        bs = self.config["batch_size"] if self.notebook else EVAL_BATCH_SIZE  # notebook: batch statistics
        lab = self.train.images[self.labeled]
        train_acc = float(np.mean(predict(self.D, lab, bs, self.device) == self.train.labels[self.labeled]))
        test_acc = float(np.mean(predict(self.D, self.test.images, bs, self.device) == self.test.labels))
        self.test_acc_ema = None
        if self.ema is not None:
            predicted = predict(self.ema.module, self.test.images, bs, self.device)
            self.test_acc_ema = float(np.mean(predicted == self.test.labels))
        return train_acc, test_acc, time.perf_counter() - t0

    def write_samples(self, name: str) -> None:
        if self.G is None:
            return
        self.G.eval()
        try:
            with mg.no_grad():
                images = self.G(mg.tensor(self.sample_z, device=self.device)).numpy()
        finally:
            self.G.train()
        if images.ndim == 2:  # improved MNIST: (N, 784) in [0, 1] -> (N, 1, 28, 28) in [-1, 1]
            side = int(round(images.shape[1] ** 0.5))
            images = images.reshape(len(images), 1, side, side) * 2.0 - 1.0
        self.paths["samples"].mkdir(exist_ok=True)
        plots.save_image_grid(images, self.paths["samples"] / name, nrow=10)

    def end_of_period(self, complete: bool, log) -> dict:
        """Evaluate, append the metrics line, draw the samples and the curves."""
        train_acc, test_acc, eval_seconds = self.evaluate()
        record = self._record(complete, eval_seconds, test_acc, train_acc)
        with open(self.paths["metrics"], "a") as f:
            f.write(_json_line(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.write_samples(f"epoch_{self.epoch + 1:03d}.png" if complete else f"step_{self.step:07d}.png")
        plots.save_learning_curves(read_metrics(self.paths["metrics"]), self.paths["curves"])
        parts = [f"epoch {record['epoch']}" + ("" if complete else f" (partial, step {self.step})"),
                 f"d_loss {record['d_loss']:.4f}" if record["d_loss"] is not None else "d_loss -"]
        if record["g_loss"] is not None:
            parts.append(f"g_loss {record['g_loss']:.4f}")
        parts += [f"train_acc {train_acc:.4f}", f"test_acc {test_acc:.4f}"]
        if record["test_acc_ema"] is not None:
            parts.append(f"test_acc_ema {record['test_acc_ema']:.4f}")
        parts.append(f"{record['seconds']:.1f} s")
        if record["images_per_s"]:
            parts.append(f"{record['images_per_s']:.0f} img/s")
        log("  ".join(parts))
        return record

    # --------------------------------------------------------------------------------------------- the run
    def run(self) -> int:
        from tqdm import tqdm

        c, B = self.config, self.config["batch_size"]
        max_steps = c["max_steps"]
        if self.epoch >= c["epochs"] or (max_steps is not None and self.step >= max_steps):
            print(f"nothing to do: the run is at epoch {self.epoch} of {c['epochs']}, step {self.step}"
                  + (f" (--max-steps {max_steps})" if max_steps is not None else ""))
            return 0
        log = tqdm.write
        with _Interrupt() as interrupt:
            while self.epoch < c["epochs"]:
                if self.position == 0:
                    self.accum = self._fresh_accum()
                # The order generator as it was when this epoch began: drawing the epoch's permutation again
                # and skipping the batches already done is how a run resumes in the middle of an epoch.
                ckpt.set_rng_state_json(self.order_rng, self.epoch_order_state)
                batches = data.epoch_batches(len(self.train), B, self.order_rng, start_batch=self.position)
                # improved: the generator step draws from a second, independent permutation of the epoch
                batches2 = (data.epoch_batches(len(self.train), B, self.order_rng, start_batch=self.position)
                            if self.improved else None)
                for opt in self.optimizers.values():
                    opt.param_groups[0]["lr"] = self._lr()
                stop = False
                bar = tqdm(total=self.steps_per_epoch, initial=self.position,
                           desc=f"epoch {self.epoch + 1}/{c['epochs']}", unit="step", disable=not c["progress"], mininterval=1.0, dynamic_ncols=True, leave=False)
                try:
                    for unlabeled_idx in batches:
                        t0 = time.perf_counter()
                        if self.improved:
                            out = self.improved_step(next(self.cycler), unlabeled_idx,
                                                     None if batches2 is None else next(batches2))
                        elif self.notebook:
                            out = self.notebook_step(unlabeled_idx)
                        elif self.supervised_only:
                            out = self.supervised_step(next(self.cycler))
                        else:
                            out = self.ssgan_step(next(self.cycler), unlabeled_idx)
                        seconds = time.perf_counter() - t0
                        self.step += 1
                        self.position += 1
                        a = self.accum
                        a["steps"] += 1
                        a["seconds"] += seconds
                        for k in ("d_loss", "d_loss_real", "d_loss_fake", "d_loss_class", "g_loss"):
                            a[k] += out.get(k, 0.0)
                        a["train_batch_correct"] += out["correct"]
                        a["train_batch_seen"] += out["labeled"]
                        bar.update(1)
                        postfix = {"d": f"{out['d_loss']:.3f}"}
                        if "g_loss" in out:
                            postfix["g"] = f"{out['g_loss']:.3f}"
                        postfix["img/s"] = f"{B / seconds:.0f}"
                        bar.set_postfix(postfix, refresh=False)
                        stop = (max_steps is not None and self.step >= max_steps) or interrupt.requested
                        if stop:
                            break
                        if (c["checkpoint_every"] and self.step % c["checkpoint_every"] == 0
                                and self.position < self.steps_per_epoch):
                            self.save_checkpoint()
                finally:
                    bar.close()
                if self.position == self.steps_per_epoch:
                    self.end_of_period(True, log)
                    self.epoch += 1
                    self.position = 0
                    self.epoch_order_state = ckpt.rng_state_json(self.order_rng)  # where the next epoch begins
                    self.save_checkpoint()
                elif stop:
                    if not interrupt.requested:
                        self.end_of_period(False, log)
                    self.save_checkpoint()
                if stop:
                    if interrupt.requested:
                        log(f"interrupted at step {self.step}; checkpoint written: {self.paths['checkpoint']}")
                        return EXIT_INTERRUPTED
                    log(f"stopped at step {self.step} (--max-steps {max_steps}); continue with --resume")
                    return 0
        return 0


# -------------------------------------------------------------------------------------------------- main
def _prepare_out(out: Path, resume: bool) -> tuple | None:
    """Check the output folder; with --resume, return the checkpoint's (arrays, meta)."""
    checkpoint = out / CHECKPOINT_NAME
    if resume:
        if not checkpoint.is_file():
            raise TrainingError(f"--resume: there is no checkpoint to continue at {checkpoint}")
        try:
            return ckpt.load_npz(checkpoint)
        except ckpt.CheckpointError as exc:
            raise TrainingError(str(exc)) from None
    if checkpoint.exists():
        raise TrainingError(f"{out} already holds a run (checkpoint {checkpoint}); pass --resume to continue it, "
                            "or choose another --out folder. Nothing was changed")
    leftovers = [n for n in (METRICS_NAME, CONFIG_NAME) if (out / n).exists()]
    if leftovers:
        raise TrainingError(f"{out} already holds files of an earlier run ({', '.join(leftovers)}) but no "
                            f"checkpoint to resume; choose another --out folder or remove them. Nothing was changed")
    return None


def _truncate_metrics(path: Path, step: int) -> None:
    """Keep only the metrics lines written up to the checkpoint's step (later ones are redone on resume)."""
    records = read_metrics(path)
    kept = [r for r in records if r.get("step", 0) <= step]
    if len(kept) != len(records):
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w") as f:
            f.writelines(_json_line(r) + "\n" for r in kept)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.out is None:
            if args.resume:
                raise TrainingError("--resume needs --out DIR: the folder of the run to continue")
            dataset = args.dataset or DEFAULTS["dataset"]
            args.out = f"runs/{dataset}-{'supervised' if args.supervised_only else 'ssgan'}"
        out = Path(args.out).expanduser()
        saved = _prepare_out(out, args.resume)
        config = resolve_config(args, saved[1]["config"] if saved else None)
        if config["device"] == "cuda" and not mg.cuda_available():
            raise TrainingError("--device cuda: CuPy is not installed or sees no GPU (see README.md, 'Set up')")
        out.mkdir(parents=True, exist_ok=True)
        trainer = Trainer(config, out, resume=saved)
        if saved:
            _truncate_metrics(trainer.paths["metrics"], trainer.step)
            print(f"resuming {out} at epoch {trainer.epoch + 1}, step {trainer.step}")
        _write_json_atomic(trainer.paths["config"], dict(
            config, steps_per_epoch=trainer.steps_per_epoch, train_images=len(trainer.train),
            test_images=len(trainer.test), labeled_images=len(trainer.labeled), minigrad_version=mg.__version__))
        if not saved:
            trainer.save_checkpoint()  # step 0: the folder is now marked as this run's
        return trainer.run()
    except (TrainingError, data.DatasetError, ckpt.CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except NonFiniteLoss as exc:
        last = (f"the last good checkpoint, {out / CHECKPOINT_NAME} (step {trainer.last_checkpoint_step}), is kept"
                if trainer.last_checkpoint_step is not None else "no checkpoint was written")
        print(f"error: {exc}; stopping the run: {last}. Try a smaller --lr or another --seed", file=sys.stderr)
        return EXIT_NONFINITE


if __name__ == "__main__":
    sys.exit(main())
