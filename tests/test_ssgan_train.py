"""``python -m ssgan.train`` / ``ssgan.evaluate`` end to end on tiny fake datasets (offline, a few seconds).

The runs call ``main(argv)`` in this process with tiny widths (generator 4, discriminator 8) and batch 16
on 200 training / 50 test images written by ``fake_data.py``: 12 steps per epoch.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fake_data import tiny_run_argv as _argv
from ssgan import checkpoint as ckpt
from ssgan import evaluate, losses, metrics, settings, train

TIMING = {"seconds", "eval_seconds", "images_per_s"}
STEPS_PER_EPOCH = 12




def _resume(data_dir, out, *extra):
    return ["--resume", "--out", str(out), "--data-dir", str(data_dir), "--no-progress", *extra]


def _metrics(out):
    return metrics.read_log(Path(out) / "metrics.jsonl")


def _without_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def _arrays(path):
    arrays, meta = ckpt.load_npz(path)
    return arrays, meta


@pytest.fixture(scope="module")
def reference_run(data_dir, tmp_path_factory):
    """Two uninterrupted epochs, a checkpoint every 5 steps."""
    out = tmp_path_factory.mktemp("reference")
    assert train.main(_argv(data_dir, out, "--epochs", "2", "--checkpoint-every", "5")) == 0
    return out


def test_end_to_end_writes_every_output(data_dir, tmp_path):
    out = tmp_path / "run"
    assert train.main(_argv(data_dir, out, "--epochs", "2", "--max-steps", "5")) == 0
    (record,) = _metrics(out)
    assert record["epoch"] == 1 and record["step"] == 5 and record["epoch_complete"] is False
    for key in ("d_loss", "d_loss_real", "d_loss_fake", "d_loss_class", "g_loss", "train_acc", "test_acc",
                "seconds", "images_per_s"):
        assert isinstance(record[key], float) and np.isfinite(record[key]), key
    assert record["d_loss"] == pytest.approx(record["d_loss_real"] + record["d_loss_fake"] + record["d_loss_class"])
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"] == "mnist" and config["labels"] == 20 and config["steps_per_epoch"] == STEPS_PER_EPOCH
    samples = Image.open(out / "samples" / "step_0000005.png")
    assert samples.size[0] > 10 * 32 and samples.mode == "RGB"
    assert Image.open(out / "curves.png").size == (1100, 420)
    arrays, meta = _arrays(out / "checkpoint.npz")
    assert meta["step"] == 5 and meta["position"] == 5 and meta["epoch"] == 0
    assert any(k.startswith("model/G/") for k in arrays) and any(k.startswith("optim/D/") for k in arrays)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]   # no temporary files left behind


def test_resume_mid_epoch_continues_bit_for_bit(data_dir, reference_run, tmp_path):
    out = tmp_path / "run"
    assert train.main(_argv(data_dir, out, "--epochs", "2", "--checkpoint-every", "5", "--max-steps", "7")) == 0
    assert train.main(_resume(data_dir, out)) == 0                      # the saved --max-steps 7 still holds
    assert _metrics(out)[-1]["step"] == 7
    assert train.main(_resume(data_dir, out, "--max-steps", "0")) == 0  # 0 lifts the limit
    ref, got = _metrics(reference_run), _metrics(out)
    assert [r["epoch_complete"] for r in got] == [False, True, True]      # the stop at step 7 left a partial line
    assert _without_timing([r for r in got if r["epoch_complete"]]) == _without_timing(ref)
    a, meta_a = _arrays(reference_run / "checkpoint.npz")
    b, meta_b = _arrays(out / "checkpoint.npz")
    assert meta_a["step"] == meta_b["step"] == 2 * STEPS_PER_EPOCH and meta_a["rng"] == meta_b["rng"]
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_nan_loss_stops_keeps_the_last_good_checkpoint_and_resume_matches(data_dir, reference_run, tmp_path,
                                                                          monkeypatch, capsys):
    out = tmp_path / "run"
    real_loss, calls = losses.feature_matching_loss, []

    def poisoned(f_real, f_fake):
        calls.append(1)
        loss = real_loss(f_real, f_fake)
        return loss * float("nan") if len(calls) == 18 else loss

    monkeypatch.setattr(losses, "feature_matching_loss", poisoned)
    code = train.main(_argv(data_dir, out, "--epochs", "2", "--checkpoint-every", "5"))
    err = capsys.readouterr().err
    assert code == train.EXIT_NONFINITE
    assert "generator loss is nan" in err and "epoch 2, step 18" in err and str(out / "checkpoint.npz") in err
    _, meta = _arrays(out / "checkpoint.npz")
    assert meta["step"] == 15 and meta["epoch"] == 1 and meta["position"] == 3   # the periodic checkpoint
    assert len(_metrics(out)) == 1
    # the kept checkpoint is good: resuming from it gives the uninterrupted run's numbers
    monkeypatch.setattr(losses, "feature_matching_loss", real_loss)
    assert train.main(_resume(data_dir, out)) == 0
    assert _without_timing(_metrics(out)) == _without_timing(_metrics(reference_run))


def test_same_seed_same_numbers_other_seed_differs(data_dir, tmp_path):
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        out = tmp_path / name
        assert train.main(_argv(data_dir, out, "--max-steps", "4", "--seed", str(seed))) == 0
        runs[name] = (_without_timing(_metrics(out)), _arrays(out / "checkpoint.npz")[0])
    assert runs["a"][0] == runs["b"][0]
    for k in runs["a"][1]:
        np.testing.assert_array_equal(runs["a"][1][k], runs["b"][1][k], err_msg=k)
    assert runs["a"][0] != runs["c"][0]


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_checkpoint_is_refused_with_the_file_named(data_dir, reference_run, tmp_path, capsys, damage):
    out = tmp_path / "run"
    out.mkdir()
    raw = (reference_run / "checkpoint.npz").read_bytes()
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    else:  # flip bytes in the middle of the data: the zip's CRC check catches it
        middle = len(raw) // 2
        raw = raw[:middle] + bytes(b ^ 0xFF for b in raw[middle:middle + 64]) + raw[middle + 64:]
    (out / "checkpoint.npz").write_bytes(raw)
    assert train.main(_resume(data_dir, out)) == train.EXIT_ERROR
    err = capsys.readouterr().err
    assert str(out / "checkpoint.npz") in err and "corrupt or truncated" in err and "Traceback" not in err
    assert (out / "checkpoint.npz").read_bytes() == raw   # left as it was
    assert evaluate.main(["--checkpoint", str(out / "checkpoint.npz"), "--data-dir", str(data_dir)]) == 2
    assert "corrupt or truncated" in capsys.readouterr().err


def test_resume_with_a_different_config_is_refused(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(_argv(data_dir, out, "--max-steps", "2")) == 0
    before = (out / "checkpoint.npz").read_bytes()
    assert train.main(_resume(data_dir, out, "--d-width", "16", "--lr", "0.01")) == train.EXIT_ERROR
    err = capsys.readouterr().err
    assert "d_width (checkpoint: 8, command line: 16)" in err and "lr (checkpoint: 0.0003" in err
    assert (out / "checkpoint.npz").read_bytes() == before
    # the same values, or run settings like --epochs, are fine
    assert train.main(_resume(data_dir, out, "--d-width", "8", "--max-steps", "3")) == 0


def test_fresh_run_refuses_a_folder_with_a_run_in_it(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(_argv(data_dir, out, "--max-steps", "1")) == 0
    files = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert train.main(_argv(data_dir, out, "--max-steps", "1")) == train.EXIT_ERROR
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == files
    empty = tmp_path / "empty"
    assert train.main(_resume(data_dir, empty)) == train.EXIT_ERROR
    assert "no checkpoint to continue" in capsys.readouterr().err


def test_supervised_only_baseline(data_dir, tmp_path):
    out = tmp_path / "sup"
    assert train.main(_argv(data_dir, out, "--supervised-only", "--epochs", "1")) == 0
    (record,) = _metrics(out)
    assert record["epoch_complete"] and record["step"] == STEPS_PER_EPOCH
    assert record["g_loss"] is None and record["d_loss_real"] is None and record["d_loss"] == record["d_loss_class"]
    arrays, _ = _arrays(out / "checkpoint.npz")
    assert not any(k.startswith("model/G/") for k in arrays)
    assert not (out / "samples").exists()


def test_notebook_preset_keeps_label_ten_and_tests_on_half(data_dir, tmp_path, capsys):
    out = tmp_path / "nb"
    assert train.main(_argv(data_dir, out, "--preset", "notebook", "--max-steps", "3", dataset="svhn")) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["preset"] == "notebook" and config["test_images"] == 25 and config["train_images"] == 200
    capsys.readouterr()
    assert evaluate.main(["--checkpoint", str(out / "checkpoint.npz"), "--data-dir", str(data_dir)]) == 0
    printed = capsys.readouterr().out
    assert "on 50 images" in printed and "label 10" in printed


def test_notebook_preset_resumes_bit_for_bit_and_refuses_supervised_only(data_dir, tmp_path, capsys):
    whole, split = tmp_path / "whole", tmp_path / "split"
    common = ("--preset", "notebook", "--epochs", "2", "--checkpoint-every", "0")
    assert train.main(_argv(data_dir, whole, *common, "--max-steps", "15", dataset="svhn")) == 0
    assert train.main(_argv(data_dir, split, *common, "--max-steps", "9", dataset="svhn")) == 0
    assert train.main(_resume(data_dir, split, "--max-steps", "15")) == 0
    a, b = _arrays(whole / "checkpoint.npz")[0], _arrays(split / "checkpoint.npz")[0]
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert _without_timing(_metrics(whole))[-1] == _without_timing(_metrics(split))[-1]
    assert train.main(_argv(data_dir, tmp_path / "x", "--preset", "notebook", "--supervised-only")) == 2
    assert "no notebook counterpart" in capsys.readouterr().err


def test_evaluate_reports_accuracy_per_class_and_confusion(data_dir, reference_run, tmp_path, capsys):
    report = tmp_path / "eval.json"
    assert evaluate.main(["--checkpoint", str(reference_run / "checkpoint.npz"), "--data-dir", str(data_dir),
                          "--json", str(report)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(report.read_text())
    m = np.array(result["confusion_matrix"])
    assert m.shape == (10, 10) and m.sum() == 50 == result["test_images"]
    assert result["test_acc"] == pytest.approx(np.trace(m) / 50)
    # the default preset is evaluated with batch-norm statistics recomputed without dropout: the log's
    # test_acc_recal; --bn-stats running gives the log's test_acc (the statistics kept in training)
    assert result["bn_stats"] == "recalibrated" and result["weights"] == "raw"
    assert result["test_acc"] == pytest.approx(_metrics(reference_run)[-1]["test_acc_recal"])
    assert f"test accuracy: {result['test_acc']:.4f}" in printed and "true\\pred" in printed
    assert "batch-norm statistics: recalibrated" in printed
    assert evaluate.main(["--checkpoint", str(reference_run / "checkpoint.npz"), "--data-dir", str(data_dir),
                          "--bn-stats", "running", "--json", str(report)]) == 0
    running = json.loads(report.read_text())
    assert running["bn_stats"] == "running"
    assert running["test_acc"] == pytest.approx(_metrics(reference_run)[-1]["test_acc"])


def test_help_explains_every_flag():
    parser = settings.build_parser()
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help and len(action.help) > 15, action.option_strings
    text = parser.format_help()
    for flag in ("--dataset", "--data-dir", "--device", "--labels", "--epochs", "--batch-size", "--lr", "--beta1",
                 "--lr-decay", "--seed", "--out", "--resume", "--max-steps", "--checkpoint-every",
                 "--supervised-only", "--preset", "--g-width", "--d-width"):
        assert flag in text


def test_bad_options_are_one_clear_line(data_dir, tmp_path, capsys):
    assert train.main(_argv(data_dir, tmp_path / "x", "--batch-size", "0")) == train.EXIT_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "argument --batch-size: expected a positive integer, got 0" in err
    assert train.main(_argv(data_dir, tmp_path / "s", "--seed", "-1")) == train.EXIT_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "argument --seed: expected a non-negative integer, got -1" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "s").exists()
    assert train.main(_argv(data_dir, tmp_path / "y", "--batch-size", "1000")) == train.EXIT_ERROR
    assert "exceeds the 200 training images" in capsys.readouterr().err
    assert train.main(_argv(data_dir, tmp_path / "z", "--labels", "25")) == train.EXIT_ERROR
    assert "--labels 25: labeled_subset: n_labels=25 is not a multiple of the 10 classes" in capsys.readouterr().err


@pytest.mark.cuda
def test_cuda_run_writes_outputs(data_dir, tmp_path):
    out = tmp_path / "gpu"
    assert train.main(_argv(data_dir, out, "--device", "cuda", "--max-steps", "3")) == 0
    (record,) = _metrics(out)
    assert record["step"] == 3 and np.isfinite(record["d_loss"])
    assert train.main(_resume(data_dir, out, "--max-steps", "5")) == 0
    assert _metrics(out)[-1]["step"] == 5
