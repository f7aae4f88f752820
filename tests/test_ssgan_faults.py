"""How ``ssgan.train`` and ``ssgan.evaluate`` meet faults and misuse: each case ends in one clear line and
loses nothing already written. Tiny fake datasets (``fake_data.py``), offline; a few seconds per test."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fake_data import tiny_run_argv as _argv
from ssgan import checkpoint as ckpt
from ssgan import evaluate, files, metrics, train

TIMING = {"seconds", "eval_seconds", "images_per_s"}




def _untimed(path):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in metrics.read_log(path)]


def _same_checkpoints(a, b):
    arrays_a, meta_a = ckpt.load_npz(a)
    arrays_b, meta_b = ckpt.load_npz(b)
    assert sorted(arrays_a) == sorted(arrays_b) and meta_a["step"] == meta_b["step"]
    for k in arrays_a:
        np.testing.assert_array_equal(arrays_a[k], arrays_b[k], err_msg=k)


@pytest.fixture(scope="module")
def reference_run(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    assert train.main(_argv(data_dir, out, "--epochs", "2")) == 0
    return out


# A real training process, for signals: the fake files' checksums are patched in before main() runs.
CHILD = """
import sys
from pathlib import Path
from ssgan import data, train
for path in Path({data!r}).glob("*/*"):
    data.MD5[path.name] = data.file_md5(path)
sys.exit(train.main({argv!r}))
"""


def test_sigterm_checkpoints_and_resume_matches_an_uninterrupted_run(data_dir, reference_run, tmp_path):
    out = tmp_path / "run"
    argv = _argv(data_dir, out, "--epochs", "2", "--log-every", "1", "--checkpoint-every", "0")
    env = dict(os.environ, SSGAN_OFFLINE="1")
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(data=str(data_dir), argv=argv)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(metrics.read_log(out / "steps.jsonl", warn=False)) < 3:   # a few steps in: mid-epoch
        assert child.poll() is None and time.monotonic() < deadline, child.communicate()
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=120)
    assert child.returncode == train.EXIT_TERMINATED, err
    assert "SIGTERM: finishing this step and writing a checkpoint" in err
    _, meta = ckpt.load_npz(out / "checkpoint.npz")
    assert 3 <= meta["step"] < 24                                  # written at the signal, not at the start
    assert train.main(["--resume", "--out", str(out), "--no-progress"]) == 0
    assert _untimed(out / "metrics.jsonl") == _untimed(reference_run / "metrics.jsonl")
    _same_checkpoints(out / "checkpoint.npz", reference_run / "checkpoint.npz")


def test_unusable_out_folders_are_one_line(data_dir, tmp_path, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("mine")
    for out, expected in ((a_file, "exists and is not a folder"), (a_file / "run", "Not a directory"),
                          (Path("/sys/ssgan-test-run"), "/sys/ssgan-test-run")):
        assert train.main(_argv(data_dir, out, "--max-steps", "2")) == train.EXIT_ERROR
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and expected in err, err
    assert a_file.read_text() == "mine"


def test_a_full_disk_keeps_the_previous_checkpoint(data_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert train.main(_argv(data_dir, out, "--max-steps", "3")) == 0
    before = (out / "checkpoint.npz").read_bytes()
    real = files.atomic_write

    def full_disk(path, write):
        if Path(path).name == "checkpoint.npz":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, write)

    monkeypatch.setattr(files, "atomic_write", full_disk)
    assert train.main(["--resume", "--out", str(out), "--no-progress", "--max-steps", "6"]) == train.EXIT_ERROR
    err = capsys.readouterr().err
    assert "No space left on device" in err and "checkpoint.npz" in err and err.count("\n") == 1
    assert (out / "checkpoint.npz").read_bytes() == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_torn_metrics_line_is_dropped_on_resume(data_dir, reference_run, tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(_argv(data_dir, out, "--epochs", "2", "--max-steps", "12")) == 0   # exactly one epoch
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "step": 1')                                                 # killed mid-line
    assert train.main(["--resume", "--out", str(out), "--no-progress", "--max-steps", "0"]) == 0
    assert "dropped a torn last line" in capsys.readouterr().err
    assert _untimed(out / "metrics.jsonl") == _untimed(reference_run / "metrics.jsonl")


def test_orphan_temporary_files_are_removed_at_start(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(_argv(data_dir, out, "--max-steps", "2")) == 0
    orphan = out / ".checkpoint.npz.0badf00d.ssgan-tmp"
    orphan.write_bytes(b"x" * 1000)
    mine = out / "notes.tmp"
    mine.write_text("a file of the user's")
    assert train.main(["--resume", "--out", str(out), "--no-progress", "--max-steps", "3"]) == 0
    assert not orphan.exists() and mine.exists()
    assert "removed 1 temporary file" in capsys.readouterr().out


def _poisoned_copy(src: Path, dst: Path) -> Path:
    arrays, meta = ckpt.load_npz(src)
    key = next(k for k in arrays if k.startswith("model/D/") and k.endswith("weight"))
    arrays[key] = arrays[key].copy()
    arrays[key].flat[0] = np.nan
    dst.mkdir()
    ckpt.save_npz_atomic(dst / "checkpoint.npz", arrays, meta)
    return dst / "checkpoint.npz"


def test_non_finite_weights_are_refused_by_evaluate_and_resume(data_dir, reference_run, tmp_path, capsys):
    bad = _poisoned_copy(reference_run / "checkpoint.npz", tmp_path / "bad")
    assert evaluate.main(["--checkpoint", str(bad), "--data-dir", str(data_dir)]) == 2
    err = capsys.readouterr().err
    assert "non-finite values (NaN or inf) in model/D/" in err and "start a new run" in err
    assert train.main(["--resume", "--out", str(bad.parent), "--no-progress", "--epochs", "3"]) == train.EXIT_ERROR
    assert "non-finite values" in capsys.readouterr().err


def test_evaluate_json_to_an_unwritable_path_keeps_the_printed_results(data_dir, reference_run, tmp_path, capsys):
    code = evaluate.main(["--checkpoint", str(reference_run / "checkpoint.npz"), "--data-dir", str(data_dir),
                          "--json", str(tmp_path / "missing-folder" / "r.json")])
    captured = capsys.readouterr()
    assert code == 2 and "test accuracy:" in captured.out
    assert captured.err.startswith("error: cannot write --json") and captured.err.count("\n") == 1


def test_a_config_missing_a_key_is_named(data_dir, reference_run, tmp_path, capsys):
    arrays, meta = ckpt.load_npz(reference_run / "checkpoint.npz")
    del meta["config"]["d_width"]
    (tmp_path / "edited").mkdir()
    path = tmp_path / "edited" / "checkpoint.npz"
    ckpt.save_npz_atomic(path, arrays, meta)
    assert evaluate.main(["--checkpoint", str(path), "--data-dir", str(data_dir)]) == 2
    assert "lacks 'd_width'" in capsys.readouterr().err
    del meta["config"]["batch_size"]
    ckpt.save_npz_atomic(path, arrays, meta)
    assert train.main(["--resume", "--out", str(path.parent), "--no-progress"]) == train.EXIT_ERROR
    assert "lacks 'batch_size'" in capsys.readouterr().err


def test_non_finite_loss_advice_does_not_suggest_resuming_with_other_settings(data_dir, tmp_path, monkeypatch,
                                                                               capsys):
    from ssgan import losses

    real = losses.feature_matching_loss
    monkeypatch.setattr(losses, "feature_matching_loss", lambda a, b: real(a, b) * float("inf"))
    assert train.main(_argv(data_dir, tmp_path / "run", "--max-steps", "3")) == train.EXIT_NONFINITE
    err = capsys.readouterr().err
    assert "generator loss is" in err and "start a new run in another --out folder" in err
    assert "resume" not in err.replace("resuming it would repeat", "")


def test_the_run_says_what_it_does(data_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    argv = [a for a in _argv(data_dir, out, "--max-steps", "5", "--log-every", "2") if a != "--no-progress"]
    assert train.main(argv) == 0
    captured = capsys.readouterr()
    assert "mnist (200 training images, 20 labeled; 50 test images), 12 steps per epoch" in captured.out
    assert "compiles minigrad's numba kernels" in captured.out
    assert "0/5 " in captured.err and "/12" not in captured.err      # the bar's total honours --max-steps
    assert [r["step"] for r in metrics.read_log(out / "steps.jsonl")] == [2, 4]
    config = json.loads((out / "config.json").read_text())
    assert config["data_dir"] == str(Path(data_dir).resolve()) and config["max_steps"] == 5
    # resuming in a new shell: no --data-dir, no $SSGAN_DATA; the saved folder and limits are reused
    monkeypatch.delenv("SSGAN_DATA", raising=False)
    assert train.main(["--resume", "--out", str(out), "--no-progress"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert train.main(["--resume", "--out", str(out), "--no-progress", "--max-steps", "0", "--epochs", "2"]) == 0
    out_text = capsys.readouterr().out
    assert "resuming at epoch 1 of 2, step 5: 1 more full epoch to train" in out_text
    assert [r["epoch"] for r in metrics.read_log(out / "metrics.jsonl") if r["epoch_complete"]] == [1, 2]


def test_device_cuda_without_a_working_gpu_is_one_line_and_writes_nothing(data_dir, tmp_path, monkeypatch, capsys):
    from minigrad import backend

    monkeypatch.setattr(backend, "cuda_status", lambda: (False, "no CUDA device is visible (a stand-in reason)"))
    out = tmp_path / "gpu"
    assert train.main(_argv(data_dir, out, "--device", "cuda", "--max-steps", "2")) == train.EXIT_ERROR
    err = capsys.readouterr().err
    assert err == "error: --device cuda: no CUDA device is visible (a stand-in reason)\n"
    assert not out.exists()                                      # nothing written, so a plain rerun works
