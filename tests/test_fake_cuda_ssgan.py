"""``python -m ssgan.train --device cuda`` and ``ssgan.evaluate --device cuda`` on the CuPy stand-in
(tests/fake_cupy.py), in this process on tiny fake datasets (tests/fake_data.py): every preset for a few
steps, checkpoints resumed from the GPU on the CPU and the other way round, evaluation, and the cap on what
one training step asks of the device: one read (the losses, gathered on the device; ssgan/steps.py's
``read_once``) and a launch budget.

Launches per step do not depend on the batch size or the widths (batch 16, widths 4 and 8 here).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ssgan import checkpoint as ckpt
from ssgan import evaluate, metrics, train

import fake_cupy
from fake_data import tiny_run_argv
from fake_cupy import fake_cuda  # noqa: F401  (fixture)

#: Launches allowed per step of the default preset (after the first, which also makes Adam's state): where
#: they go is what _where prints, e.g. in test_the_default_step_reaches_300_launches's message below.
LAUNCH_BUDGET = 300


def _argv(data_dir, out, *extra, dataset="mnist"):
    return tiny_run_argv(data_dir, out, "--checkpoint-every", "0", *extra, dataset=dataset)


def _resume(data_dir, out, *extra):
    return ["--resume", "--out", str(out), "--data-dir", str(data_dir), "--no-progress", *extra]


@pytest.fixture
def step_counts(monkeypatch, fake_cuda):
    """What each training step asked of the device: a list of (launches, reads) per ``Run.step`` call."""
    recorded = []
    real_step = train.Run.step

    def counted(self, *args, **kwargs):
        fake_cuda.reset()
        result = real_step(self, *args, **kwargs)
        recorded.append((fake_cuda.launches, list(fake_cuda.reads), fake_cuda.launch_sites.copy()))
        return result

    monkeypatch.setattr(train.Run, "step", counted)
    return recorded


def _finite_run(out, steps):
    record = metrics.read_log(Path(out) / "metrics.jsonl")[-1]
    assert record["step"] == steps and np.isfinite(record["d_loss"]) and np.isfinite(record["test_acc"])
    arrays, meta = ckpt.load_npz(Path(out) / "checkpoint.npz")
    assert meta["step"] == steps and all(np.isfinite(a).all() for a in arrays.values() if a.dtype.kind == "f")
    return record


PRESETS = {
    "default": ((), "mnist"),
    "supervised-only": (("--supervised-only",), "mnist"),
    "notebook": (("--preset", "notebook", "--labels", "200"), "svhn"),
    "improved": (("--preset", "improved"), "mnist"),
    "improved supervised-only": (("--preset", "improved", "--supervised-only"), "mnist"),
}


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_trains_on_the_gpu_reading_once_per_step(data_dir, tmp_path, step_counts, preset):
    extra, dataset = PRESETS[preset]
    out = tmp_path / "run"
    assert train.main(_argv(data_dir, out, "--device", "cuda", "--max-steps", "3", *extra, dataset=dataset)) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["device"] == "cuda"
    _finite_run(out, 3)
    assert len(step_counts) == 3
    for launches, reads, _ in step_counts:
        assert len(reads) == 1 and "read_once" in reads[0], reads      # the one read of ssgan/steps.py
        assert launches > 0
    print(f"{preset}: {step_counts[-1][0]} launches in its last step")   # shown with pytest -s


def test_the_default_step_stays_within_its_launch_budget(data_dir, tmp_path, step_counts):
    assert train.main(_argv(data_dir, tmp_path / "run", "--device", "cuda", "--max-steps", "4")) == 0
    steady = [launches for launches, _, _ in step_counts[1:]]
    assert len(set(steady)) == 1, steady                                 # the same work every step
    assert steady[0] <= LAUNCH_BUDGET, _where(step_counts[-1][2])


def _where(sites, top=25):
    by_file = {}
    for site, n in sites.items():
        path = site.split(":")[0]
        by_file[path] = by_file.get(path, 0) + n
    lines = [f"{n:5d} {path}" for path, n in sorted(by_file.items(), key=lambda kv: -kv[1])]
    return f"{sum(sites.values())} launches per step, by file:\n" + "\n".join(lines[:top])


def test_the_default_step_reaches_300_launches(data_dir, tmp_path, step_counts):
    assert train.main(_argv(data_dir, tmp_path / "run", "--device", "cuda", "--max-steps", "2")) == 0
    print(_where(step_counts[-1][2]))      # the breakdown, shown with pytest -s
    assert step_counts[-1][0] <= 300, _where(step_counts[-1][2])


def test_notebook_batches_without_labeled_examples_on_the_gpu(data_dir, tmp_path, fake_cuda):
    argv = _argv(data_dir, tmp_path / "run", "--device", "cuda", "--preset", "notebook", "--max-steps", "12",
                 dataset="svhn")                    # 20 labels in 200 images: some batches of 16 have none
    assert train.main(argv) == 0


def test_checkpoints_move_between_the_gpu_and_the_cpu(data_dir, tmp_path, fake_cuda):
    gpu, cpu = tmp_path / "gpu", tmp_path / "cpu"
    # GPU -> CPU: the weights and Adam's state trained on the GPU continue on the CPU
    assert train.main(_argv(data_dir, gpu, "--device", "cuda", "--max-steps", "3")) == 0
    saved, _ = ckpt.load_npz(gpu / "checkpoint.npz")
    assert train.main(_resume(data_dir, gpu, "--device", "cpu", "--max-steps", "5")) == 0
    _finite_run(gpu, 5)
    assert json.loads((gpu / "config.json").read_text())["device"] == "cpu"
    # CPU -> GPU
    assert train.main(_argv(data_dir, cpu, "--max-steps", "3")) == 0
    assert train.main(_resume(data_dir, cpu, "--device", "cuda", "--max-steps", "5")) == 0
    _finite_run(cpu, 5)
    # and the GPU run resumed on the GPU again, from where the CPU left it
    assert train.main(_resume(data_dir, gpu, "--device", "cuda", "--max-steps", "6")) == 0
    after, _ = ckpt.load_npz(gpu / "checkpoint.npz")
    assert sorted(after) == sorted(saved)
    assert any(not np.array_equal(after[k], saved[k]) for k in saved if k.startswith("model/"))


def test_evaluate_on_the_gpu_gives_the_cpu_numbers(data_dir, tmp_path, capsys, fake_cuda):
    out = tmp_path / "run"
    assert train.main(_argv(data_dir, out, "--device", "cuda", "--max-steps", "3")) == 0
    results = {}
    for device in ("cpu", "cuda"):
        report = tmp_path / f"{device}.json"
        assert evaluate.main(["--checkpoint", str(out / "checkpoint.npz"), "--data-dir", str(data_dir),
                              "--device", device, "--json", str(report)]) == 0
        results[device] = json.loads(report.read_text())
    assert results["cuda"]["confusion_matrix"] == results["cpu"]["confusion_matrix"]
    assert results["cuda"]["test_acc"] == results["cpu"]["test_acc"]
    assert "test accuracy" in capsys.readouterr().out


def test_device_cuda_is_refused_with_the_reason_when_the_gpu_does_not_work(data_dir, tmp_path, capsys,
                                                                           fake_cuda):
    from minigrad import backend

    fake_cupy.FAULTS.add("nvrtc")
    backend.set_cupy_module(fake_cupy)              # forget the cached smoke test
    out = tmp_path / "run"
    assert train.main(_argv(data_dir, out, "--device", "cuda", "--max-steps", "1")) == train.EXIT_ERROR
    assert "--device cuda" in capsys.readouterr().err
    assert not out.exists()                          # nothing was written
