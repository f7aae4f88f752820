"""``python -m ssgan.train``: train the semi-supervised GAN (or its supervised-only baseline) with minigrad.

Read it top to bottom: :func:`setup` builds a run from its settings (data, models, optimizers, the data
order), :func:`train` is the loop, :func:`main` is the command line. Where the pieces live:

===================  ===========================================================================
ssgan/settings.py    every setting, its default and help; the command line is made from it
ssgan/data.py        reading SVHN / MNIST, the labeled subset, the batches (downloads: download.py)
ssgan/models.py      the networks of each preset, built by one function (improved: models_improved.py)
ssgan/losses.py      each loss term, as the paper writes it
ssgan/steps.py       one function per preset: one training step, next to the paper
ssgan/checkpoint.py  everything saved and restored (weights, optimizers, counters, generators)
ssgan/metrics.py     metrics.jsonl and steps.jsonl; ssgan/plots.py the pictures; files.py atomic writes
===================  ===========================================================================

An epoch is one pass over the shuffled training set. Each step takes a labeled batch (a cycler over the
reshuffled labeled subset) and the epoch's next unlabeled batch (``--preset improved``: and one from a
second permutation, for its generator step). After each epoch: accuracy on the labeled examples and the
test set (and with the averaged weights, where the run keeps an average), a line in ``metrics.jsonl``, a
sample grid, the curves and a checkpoint. Ctrl-C or SIGTERM: the step ends, a checkpoint, exit 130 / 143.
"""
from __future__ import annotations

import itertools
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import minigrad as mg
from minigrad import backend, optim

from . import checkpoint as ckpt
from . import data, download, files, losses, metrics, plots, settings, steps
from .evaluate import ACCURACY_KEYS, epoch_accuracies
from .models import build_models
from .signals import StopRequests

EXIT_ERROR, EXIT_NONFINITE, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 3, 130, 143
EVAL_BATCH_SIZE = 500    # test-time batches (with running statistics the result does not depend on it)
SAMPLES = 100            # images in each sample grid (10 x 10)
INIT_IMAGES = 500        # --preset improved: images for the data-dependent initialisation
OUTPUTS = {"checkpoint": "checkpoint.npz", "metrics": "metrics.jsonl", "steps": "steps.jsonl",
           "config": "config.json", "curves": "curves.png", "samples": "samples"}


class TrainingError(Exception):
    """A problem with the command line, the output folder or a checkpoint: printed as one line, exit 2."""


@dataclass
class Run:
    """Everything a training run is made of (built by :func:`setup`)."""

    config: dict
    paths: dict
    train: data.Dataset
    test: data.Dataset
    labeled: np.ndarray          # indices of the labeled training examples
    steps_per_epoch: int
    models: dict                 # "D", and "G" / "D_ema" where the preset has them
    optimizers: dict
    state: ckpt.TrainingState
    sample_z: np.ndarray         # fixed noise for the sample grids

    def lr(self) -> float:
        """The learning rate of the epoch in progress (improved SVHN: held to 2/3 of the run, then linear
        to 0, as Improved-GAN's ``lr * min(3 - epoch / 300, 1)`` over 900 epochs)."""
        c, e = self.config, self.state.epoch
        if c["preset"] == "improved" and c["dataset"] == "svhn":
            return c["lr"] * min(1.0, 3.0 - 3.0 * e / c["epochs"])
        return c["lr"] * c["lr_decay"] ** e

    def step(self, labeled_idx, unlabeled_idx, unlabeled2_idx=None) -> steps.StepResult:
        """One training step of the run's preset on these batches (index arrays into the training set)."""
        c, m, o = self.config, self.models, self.optimizers
        where = f"epoch {self.state.epoch + 1}, step {self.state.step + 1}"
        batch = lambda idx: mg.tensor(self.train.images[idx], device=c["device"])  # noqa: E731
        y_lab = self.train.labels[labeled_idx]
        if c["preset"] == "notebook":
            mask = np.isin(unlabeled_idx, self.labeled)
            return steps.notebook_step(m["D"], m["G"], o["D"], o["G"], batch(unlabeled_idx),
                                       self.train.labels[unlabeled_idx], mask, z_dim=c["z_dim"], where=where)
        if c["preset"] == "improved":
            if c["supervised_only"]:
                return steps.improved_supervised_step(m["D"], o["D"], m["D_ema"], batch(labeled_idx), y_lab,
                                                      where=where)
            fm = losses.squared_feature_matching_loss if c["dataset"] == "mnist" else losses.feature_matching_loss
            return steps.improved_step(m["D"], m["G"], o["D"], o["G"], m["D_ema"], batch(labeled_idx), y_lab,
                                       batch(unlabeled_idx), batch(unlabeled2_idx), z_dim=c["z_dim"], where=where,
                                       feature_matching=fm)
        if c["supervised_only"]:
            return steps.supervised_step(m["D"], o["D"], batch(labeled_idx), y_lab, where=where, ema=m.get("D_ema"))
        study = {k: c[k] for k in ("real_target", "unlabeled_weight", "g_steps")}   # the seed model's options
        return steps.ssgan_step(m["D"], m["G"], o["D"], o["G"], batch(labeled_idx), y_lab, batch(unlabeled_idx),
                                z_dim=c["z_dim"], where=where, ema=m.get("D_ema"), **study)

    def save(self) -> None:
        ckpt.save_checkpoint(self.paths["checkpoint"], self.config, self.models, self.optimizers, self.state,
                             self.labeled, self.steps_per_epoch)


def setup(config: dict, out: Path, saved: tuple | None = None) -> Run:
    """Build the run ``config`` describes, in ``out``; with ``saved`` (a checkpoint's arrays and metadata),
    continue it."""
    c = config
    paths = {k: out / name for k, name in OUTPUTS.items()}
    improved, notebook = c["preset"] == "improved", c["preset"] == "notebook"

    # ---- data (NumPy arrays; batches become tensors one step at a time)
    info = data.dataset_info(c["dataset"])
    layout = "flat" if improved and c["dataset"] == "mnist" else "padded"
    download.ensure_files(c["dataset"], info.files["train"] + info.files["test"], c["data_dir"])
    train_set = data.load_dataset(c["dataset"], "train", c["data_dir"], remap_ten=not notebook, layout=layout)
    test_set = data.load_dataset(c["dataset"], "test", c["data_dir"], remap_ten=not notebook, layout=layout,
                                 fraction=0.5 if notebook else 1.0)
    try:
        labeled = (data.labeled_subset(train_set.labels, c["labels"], method="first_n") if notebook else
                   data.labeled_subset(train_set.labels, c["labels"], c["seed"], num_classes=info.num_classes))
    except ValueError as exc:
        raise TrainingError(f"--labels {c['labels']}: {exc}") from None
    steps_per_epoch = data.batches_per_epoch(len(train_set), c["batch_size"])
    if steps_per_epoch == 0:
        raise TrainingError(f"--batch-size {c['batch_size']} exceeds the {len(train_set)} training images")

    # ---- random generators: minigrad's (weights, noise, dropout) and one NumPy Generator per data stream
    mg.manual_seed(c["seed"])
    streams = np.random.SeedSequence(c["seed"]).spawn(4)
    order_rng = np.random.default_rng(streams[0])        # the unlabeled epoch order
    cycler = data.LabeledCycler(labeled, c["batch_size"], np.random.default_rng(streams[1]))
    z_low = 0.0 if improved else -1.0                    # improved: z ~ U(0, 1); the seed model: U(-1, 1)
    sample_z = np.random.default_rng(streams[2]).uniform(z_low, 1, (SAMPLES, c["z_dim"])).astype(np.float32)

    # ---- models and optimizers
    try:
        models = build_models(c, info.num_channels, info.num_classes, train_set.images.shape[1:])
    except ValueError as exc:
        raise TrainingError(str(exc)) from None
    for m in models.values():
        m.to(c["device"])
    if improved and saved is None:
        # data-dependent init (noise, dropout on) as the recipe's: on 500 random training (SVHN: labeled) images
        pool = np.arange(len(train_set)) if c["dataset"] == "mnist" else labeled
        pick = np.random.default_rng(streams[3]).choice(pool, min(INIT_IMAGES, len(pool)), replace=False)
        models["D"].init_from_batch(mg.tensor(train_set.images[pick], device=c["device"]))
        if hasattr(models.get("G"), "init_from_noise"):
            models["G"].init_from_noise(mg.rand(c["batch_size"], c["z_dim"], device=c["device"]))
    optimizers = {}
    for name in ("D", "G"):
        if name in models:
            trained = [p for p in models[name].parameters() if p.requires_grad]
            # improved: Improved-GAN's Adam (nn.adam_updates) puts eps under the square root
            optimizers[name] = optim.Adam(trained, lr=c["lr"], betas=(c["beta1"], 0.999), eps_inside_sqrt=improved)

    run = Run(c, paths, train_set, test_set, labeled, steps_per_epoch, models, optimizers,
              ckpt.TrainingState(order_rng, cycler), sample_z)
    if saved is not None:
        ckpt.restore_checkpoint(paths["checkpoint"], *saved, models, optimizers, run.state, labeled,
                                steps_per_epoch, c["device"], c["seed"])
    return run


# ------------------------------------------------------------------------------------------ the loop
def train(run: Run) -> int:
    """Train until ``epochs`` (or ``max_steps``); returns the exit status."""
    from tqdm import tqdm

    c, s, B = run.config, run.state, run.config["batch_size"]
    log = tqdm.write
    if s.epoch >= c["epochs"]:
        log(f"nothing to do: the run has done its {c['epochs']} epochs (step {s.step}); give a larger --epochs "
            "to train on")
        return 0
    if c["max_steps"] is not None and s.step >= c["max_steps"]:
        log(f"nothing to do: the run is at step {s.step} of --max-steps {c['max_steps']} (in epoch {s.epoch + 1}); "
            "give a larger --max-steps, or 0 for no limit")
        return 0
    with StopRequests() as stop:
        while s.epoch < c["epochs"]:
            # the epoch's permutation(s), redrawn from the state the epoch began with, past the batches done
            ckpt.set_rng_state_json(s.order_rng, s.epoch_order_state)
            order = data.epoch_batches(len(run.train), B, s.order_rng, start_batch=s.position)
            order2 = (data.epoch_batches(len(run.train), B, s.order_rng, start_batch=s.position)
                      if c["preset"] == "improved" else itertools.repeat(None))
            for opt in run.optimizers.values():
                opt.param_groups[0]["lr"] = run.lr()
            left = run.steps_per_epoch - s.position
            if c["max_steps"] is not None:
                left = min(left, c["max_steps"] - s.step)
            bar = tqdm(total=s.position + left, initial=s.position, desc=f"epoch {s.epoch + 1}/{c['epochs']}",
                       unit="step", disable=not c["progress"], mininterval=1.0, dynamic_ncols=True, leave=False)
            with bar:
                for unlabeled_idx, unlabeled2_idx in zip(order, order2):
                    t0 = time.perf_counter()
                    result = run.step(next(s.cycler), unlabeled_idx, unlabeled2_idx)
                    seconds = time.perf_counter() - t0
                    s.step, s.position = s.step + 1, s.position + 1
                    s.sums.add(result, seconds)
                    bar.update(1)
                    bar.set_postfix({"d": f"{result.d_loss:.3f}", "img/s": f"{B / seconds:.0f}"}
                                    | ({"g": f"{result.g_loss:.3f}"} if result.g_loss is not None else {}),
                                    refresh=False)
                    if c["log_every"] and s.step % c["log_every"] == 0:
                        metrics.append_record(run.paths["steps"], dict(
                            epoch=s.epoch + 1, step=s.step, seconds=seconds,
                            **{k: v for k, v in asdict(result).items() if v is not None}))
                    if (c["max_steps"] is not None and s.step >= c["max_steps"]) or stop.signal is not None:
                        break
                    if (c["checkpoint_every"] and s.step % c["checkpoint_every"] == 0
                            and s.position < run.steps_per_epoch):
                        run.save()
            complete = s.position == run.steps_per_epoch
            if complete or stop.signal is None:   # an epoch's end, or --max-steps: evaluate and log
                end_of_period(run, complete, log)
            if complete:
                s.next_epoch()
                s.sums = metrics.EpochSums()
            run.save()
            if stop.signal is not None:
                log(f"stopped at step {s.step}; checkpoint written: {run.paths['checkpoint']} "
                    f"(continue with --resume --out {run.paths['checkpoint'].parent})")
                return EXIT_INTERRUPTED if stop.signal == signal.SIGINT else EXIT_TERMINATED
            if c["max_steps"] is not None and s.step >= c["max_steps"]:
                log(f"stopped at step {s.step} (--max-steps {c['max_steps']}); continue with --resume "
                    "(and a larger --max-steps, or --max-steps 0 for no limit)")
                return 0
    return 0


def end_of_period(run: Run, complete: bool, log) -> dict:
    """Evaluate, append the metrics line, draw the samples and the curves."""
    c, s, models, t0 = run.config, run.state, run.models, time.perf_counter()
    bs = c["batch_size"] if c["preset"] == "notebook" else EVAL_BATCH_SIZE   # notebook: batch statistics
    acc = epoch_accuracies(models, c, run.train, run.test, run.labeled, bs)
    sums, semi = s.sums, "G" in models
    record = {
        "epoch": s.epoch + 1, "step": s.step, "epoch_complete": complete, "steps_per_epoch": run.steps_per_epoch,
        "lr": run.lr(), "d_loss": sums.mean("d_loss"), "d_loss_class": sums.mean("d_loss_class"),
        "d_loss_real": sums.mean("d_loss_real") if semi else None,
        "d_loss_fake": sums.mean("d_loss_fake") if semi else None,
        "g_loss": sums.mean("g_loss") if semi else None,
        "train_acc": acc.pop("train_acc"),
        "train_batch_acc": sums.train_batch_correct / sums.train_batch_seen if sums.train_batch_seen else None,
        **acc,
        "seconds": sums.seconds, "eval_seconds": time.perf_counter() - t0,
        "images_per_s": sums.steps * c["batch_size"] / sums.seconds if sums.seconds > 0 else None}
    metrics.append_record(run.paths["metrics"], record)
    if "G" in models:
        plots.save_samples(models["G"], run.sample_z, c["device"], run.paths["samples"],
                           f"epoch_{s.epoch + 1:03d}.png" if complete else f"step_{s.step:07d}.png")
    plots.save_learning_curves(metrics.read_log(run.paths["metrics"], warn=False), run.paths["curves"],
                               metrics.read_log(run.paths["steps"], warn=False))
    parts = [f"epoch {record['epoch']}" + ("" if complete else f" (partial, step {s.step})"),
             f"d_loss {record['d_loss']:.4f}" if record["d_loss"] is not None else "d_loss -"]
    if record["g_loss"] is not None:
        parts.append(f"g_loss {record['g_loss']:.4f}")
    parts += [f"{k} {record[k]:.4f}" for k in ("train_acc",) + ACCURACY_KEYS if record.get(k) is not None]
    parts.append(f"{record['seconds']:.1f} s")
    log("  ".join(parts))
    return record


# -------------------------------------------------------------------------------------------------- main
def _prepare_out(out: Path, resume: bool) -> tuple | None:
    """Check the output folder; with --resume, return the checkpoint's (arrays, meta)."""
    checkpoint = out / OUTPUTS["checkpoint"]
    if out.exists() and not out.is_dir():
        raise TrainingError(f"--out {out}: exists and is not a folder")
    if resume:
        if not checkpoint.is_file():
            raise TrainingError(f"--resume: there is no checkpoint to continue at {checkpoint}")
        return ckpt.load_npz(checkpoint)
    if checkpoint.exists():
        raise TrainingError(f"{out} already holds a run (checkpoint {checkpoint}); pass --resume to continue it, "
                            "or choose another --out folder. Nothing was changed")
    leftovers = [OUTPUTS[k] for k in ("metrics", "config") if (out / OUTPUTS[k]).exists()]
    if leftovers:
        raise TrainingError(f"{out} already holds files of an earlier run ({', '.join(leftovers)}) but no "
                            f"checkpoint to resume; choose another --out folder or remove them. Nothing was changed")
    return None


def _start_line(run: Run, resumed: bool) -> str:
    c, s = run.config, run.state
    threads = os.environ.get("NUMBA_NUM_THREADS") or str(os.cpu_count())
    what = ("supervised-only baseline" if c["supervised_only"] else "semi-supervised GAN") + f", preset {c['preset']}"
    line = (f"{what}: {c['dataset']} ({len(run.train)} training images, {len(run.labeled)} labeled; "
            f"{len(run.test)} test images), {run.steps_per_epoch} steps per epoch of batch {c['batch_size']}, "
            f"device {c['device']}, {threads} threads, output {run.paths['checkpoint'].parent}")
    if resumed:
        line += f"\nresuming at epoch {s.epoch + 1} of {c['epochs']}, step {s.step}"
        more = c["epochs"] - s.epoch - (1 if s.position else 0)
        if more > 0:
            line += f": {more} more full epoch{'s' if more != 1 else ''} to train"
    if c["device"] == "cpu":
        line += "\nthe first step compiles minigrad's numba kernels (up to a minute the first time; cached after)"
    return line


def main(argv=None) -> int:
    try:
        args = settings.build_parser().parse_args(argv)
    except SystemExit as exc:      # --help, or a bad option (already printed as one line)
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    run = None
    try:
        if args.out is None:
            if args.resume:
                raise TrainingError("--resume needs --out DIR: the folder of the run to continue")
            args.out = f"runs/{args.dataset or 'svhn'}-{'supervised' if args.supervised_only else 'ssgan'}"
        out = Path(args.out).expanduser()
        saved = _prepare_out(out, args.resume)
        config = settings.resolve(args, saved[1].get("config") if saved else None)
        config["data_dir"] = str(download.resolve_data_dir(config["data_dir"]).resolve())
        ok, reason = backend.cuda_status() if config["device"] == "cuda" else (True, "")
        if not ok:   # checked before anything is written
            raise TrainingError(f"--device cuda: {reason}")
        out.mkdir(parents=True, exist_ok=True)
        removed = files.remove_orphan_temporaries(out, out / OUTPUTS["samples"])
        if removed:
            print(f"removed {len(removed)} temporary file(s) left by an earlier process that was killed")
        run = setup(config, out, saved)
        if saved:
            for name in ("metrics", "steps"):
                metrics.truncate_log(run.paths[name], run.state.step)
        print(_start_line(run, resumed=bool(saved)), flush=True)
        files.write_json_atomic(run.paths["config"], dict(
            config, steps_per_epoch=run.steps_per_epoch, train_images=len(run.train), test_images=len(run.test),
            labeled_images=len(run.labeled), minigrad_version=mg.__version__))
        if not saved:
            run.save()  # step 0: the folder is now marked as this run's
        return train(run)
    except (TrainingError, settings.SettingsError, data.DatasetError, ckpt.CheckpointError,
            metrics.LogError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc} (nothing already written was lost)", file=sys.stderr)
        return EXIT_ERROR
    except steps.NonFiniteLoss as exc:
        last = run.paths["checkpoint"] if run else "the checkpoint"
        print(f"error: {exc}; stopping the run. Its last good checkpoint, {last}, is kept, but resuming it "
              "would repeat the same steps and diverge again: start a new run in another --out folder with a "
              "smaller --lr or another --seed", file=sys.stderr)
        return EXIT_NONFINITE


if __name__ == "__main__":
    sys.exit(main())
