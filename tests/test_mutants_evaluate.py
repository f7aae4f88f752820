"""ssgan.evaluate: the cases that mutation testing found unchecked (docs/testing.md).

``evaluate_checkpoint`` and ``main`` on checkpoints written here directly (``checkpoint.pack_state`` and
``save_npz_atomic``, no training), on the tiny fake datasets of ``fake_data.py``: which weights are used
(averaged or raw), which labels (SVHN's 10 kept under the notebook preset), which layout (flat MNIST under
the improved preset), which batch size (the notebook preset's own, since its batch norm uses the batch's
statistics at test time), and that every number of the result is the one computed here from the model's
own forward pass. Also ``predict``, ``confusion_matrix``, ``per_class_accuracy`` and ``format_report``
on hand-made inputs.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import minigrad as mg
from ssgan import checkpoint as ckpt
from ssgan import data, evaluate
from ssgan.models import build_models, recalibrated

from fake_cupy import fake_cuda  # noqa: F401  (fixture)
from fake_data import install_fake_datasets

N_TEST = 30


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SSGAN_OFFLINE", "1")
    install_fake_datasets(monkeypatch, tmp_path / "data", n_train=10, n_test=N_TEST)
    return tmp_path / "data"


def _config(dataset, preset, data_dir, **changes):
    config = {"dataset": dataset, "preset": preset, "d_width": 4, "g_width": 4, "z_dim": 8,
              "supervised_only": False, "batch_size": 7, "data_dir": str(data_dir)}
    config.update(changes)
    return config


def _save(path, config, models):
    arrays, meta = ckpt.pack_state(models, {})
    meta.update(config=config, epoch=3, step=42)
    ckpt.save_npz_atomic(path, arrays, meta)
    return path


def _predictions(model, images, batch_size):
    """Class predictions of ``model`` in evaluation mode, in batches of ``batch_size``, written out here."""
    model.eval()
    with mg.no_grad():
        out = [model(mg.tensor(images[i:i + batch_size]))[0].numpy().argmax(axis=1)
               for i in range(0, len(images), batch_size)]
    return np.concatenate(out)


def _expected(labels, preds, num_classes=10):
    rows = max(num_classes, int(labels.max()) + 1)
    m = np.zeros((rows, num_classes), dtype=np.int64)
    for t, p in zip(labels, preds):
        m[t, p] += 1
    acc = [None if m[r].sum() == 0 else float(m[r, r] / m[r].sum()) if r < num_classes else 0.0
           for r in range(rows)]
    return m.tolist(), acc, float(np.mean(preds == labels))


def _improved(data_dir, tmp_path):
    config = _config("mnist", "improved", data_dir)
    mg.manual_seed(0)
    models = build_models(config, 1, 10, (784,))
    mg.manual_seed(1)
    other = build_models(config, 1, 10, (784,))["D"]
    for p in other.parameters():                  # weights that predict differently from the raw ones
        p.data = p.data * 3.0
    models["D_ema"].module.load_state_dict(other.state_dict())
    return config, models, _save(tmp_path / "improved.npz", config, models)


def test_improved_checkpoint_uses_the_averaged_weights_unless_told_raw(data_dir, tmp_path):
    config, models, path = _improved(data_dir, tmp_path)
    test = data.load_dataset("mnist", "test", data_dir, layout="flat")
    assert test.images.shape == (N_TEST, 784)
    raw_preds = _predictions(models["D"], test.images, N_TEST)
    averaged_preds = _predictions(models["D_ema"].module, test.images, N_TEST)
    assert not np.array_equal(raw_preds, averaged_preds)          # the two choices can be told apart
    for weights, preds, name in (("auto", averaged_preds, "averaged"), ("averaged", averaged_preds, "averaged"),
                                 ("raw", raw_preds, "raw")):
        result = evaluate.evaluate_checkpoint(path, weights=weights, batch_size=4)
        matrix, acc, test_acc = _expected(test.labels, preds)
        assert result["weights"] == name
        assert result["confusion_matrix"] == matrix and result["per_class_acc"] == acc
        assert result["test_acc"] == test_acc
        assert result == {"checkpoint": str(path), "dataset": "mnist", "preset": "improved", "weights": name,
                          "bn_stats": None, "epoch": 3, "step": 42, "test_images": N_TEST, "test_acc": test_acc,
                          "per_class_acc": acc, "confusion_matrix": matrix}


def test_weights_averaged_without_an_average_and_an_unknown_choice_are_refused(data_dir, tmp_path):
    config = _config("svhn", "default", data_dir)
    path = _save(tmp_path / "plain.npz", config, build_models(config, 3, 10, (3, 32, 32)))
    with pytest.raises(ckpt.CheckpointError, match="no averaged weights"):
        evaluate.evaluate_checkpoint(path, weights="averaged")
    with pytest.raises(ValueError, match="weights must be"):
        evaluate.evaluate_checkpoint(path, weights="best")
    assert evaluate.evaluate_checkpoint(path, weights="raw")["weights"] == "raw"


def test_default_preset_maps_label_ten_to_zero_and_does_not_depend_on_the_batch_size(data_dir, tmp_path):
    config = _config("svhn", "default", data_dir, supervised_only=True)
    mg.manual_seed(2)
    models = build_models(config, 3, 10, (3, 32, 32))
    path = _save(tmp_path / "default.npz", config, models)
    test = data.load_dataset("svhn", "test", data_dir)
    assert test.labels.max() == 9 and (test.labels == 0).any()
    matrix, acc, test_acc = _expected(test.labels, _predictions(models["D"], test.images, N_TEST))
    for batch_size in (4, 500):
        result = evaluate.evaluate_checkpoint(path, data_dir, batch_size=batch_size, bn_stats="running")
        assert result["confusion_matrix"] == matrix and result["test_acc"] == test_acc
        assert result["per_class_acc"] == acc and result["weights"] == "raw" and result["bn_stats"] == "running"
    # by default the statistics are recomputed: the predictions of the recalibrated copy
    calibration = data.load_dataset("svhn", "train", data_dir).images   # 10 images: all of them
    recal = recalibrated(models["D"], calibration, 500)
    matrix, acc, test_acc = _expected(test.labels, _predictions(recal, test.images, N_TEST))
    result = evaluate.evaluate_checkpoint(path, data_dir)
    assert result["bn_stats"] == "recalibrated" and result["confusion_matrix"] == matrix
    assert result["test_acc"] == test_acc and result["per_class_acc"] == acc


def test_notebook_preset_keeps_label_ten_and_uses_its_training_batch_size(data_dir, tmp_path):
    config = _config("svhn", "notebook", data_dir)
    mg.manual_seed(3)
    models = build_models(config, 3, 10, (3, 32, 32))
    for p in models["D"].parameters():
        p.data = p.data + np.float32(0.2) * np.sign(p.data)   # away from the initial zeros and ones
    path = _save(tmp_path / "notebook.npz", config, models)
    test = data.load_dataset("svhn", "test", data_dir, remap_ten=False)
    assert test.labels.max() == 10 and test.labels.min() == 1
    preds = _predictions(models["D"], test.images, config["batch_size"])
    assert not np.array_equal(preds, _predictions(models["D"], test.images, N_TEST))  # batch statistics matter
    matrix, acc, test_acc = _expected(test.labels, preds)
    result = evaluate.evaluate_checkpoint(path, batch_size=500)   # data_dir from the checkpoint's config
    assert len(result["confusion_matrix"]) == 11 and result["per_class_acc"][10] == 0.0
    assert result["confusion_matrix"] == matrix and result["test_acc"] == test_acc and result["per_class_acc"] == acc


def test_main_prints_the_accuracy_and_writes_the_result_as_json(data_dir, tmp_path, capsys):
    config, models, path = _improved(data_dir, tmp_path)
    out = tmp_path / "result.json"
    assert evaluate.main(["--checkpoint", str(path), "--data-dir", str(data_dir), "--json", str(out),
                          "--batch-size", "9"]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result == evaluate.evaluate_checkpoint(path, data_dir)
    assert f"test accuracy: {result['test_acc']:.4f} on {N_TEST} images (averaged weights)" in printed
    assert "3 epochs done, step 42" in printed
    assert evaluate.format_report(np.array(result["confusion_matrix"])) in printed
    assert evaluate.main(["--checkpoint", str(path), "--data-dir", str(data_dir), "--weights", "raw",
                          "--json", str(out)]) == 0
    assert json.loads(out.read_text())["weights"] == "raw"
    config["data_dir"] = str(tmp_path / "moved-away")        # --data-dir, not the training machine's folder
    moved = _save(tmp_path / "moved.npz", config, models)
    assert evaluate.main(["--checkpoint", str(moved), "--data-dir", str(data_dir), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["confusion_matrix"] == result["confusion_matrix"]


def test_main_refuses_what_it_cannot_do_with_exit_code_two(data_dir, tmp_path, capsys):
    config = _config("svhn", "default", data_dir)
    path = _save(tmp_path / "plain.npz", config, build_models(config, 3, 10, (3, 32, 32)))
    assert evaluate.main(["--checkpoint", str(path), "--weights", "averaged"]) == 2
    assert "no averaged weights" in capsys.readouterr().err
    assert evaluate.main(["--checkpoint", str(tmp_path / "missing.npz")]) == 2
    with pytest.raises(SystemExit) as exc:
        evaluate.main(["--checkpoint", str(path), "--batch-size", "0"])
    assert exc.value.code == 2


def test_format_report_rows_columns_accuracy_and_count():
    m = np.array([[3, 1, 0], [0, 0, 0], [2, 0, 12], [1, 0, 0]])     # row 3: a label outside the classes
    lines = evaluate.format_report(m).splitlines()
    assert len(lines) == 5 and lines[0].split() == ["true\\pred", "0", "1", "2", "accuracy", "count"]
    assert lines[1].split() == ["0", "3", "1", "0", "0.7500", "4"]
    assert lines[2].split() == ["1", "0", "0", "0", "-", "0"]
    assert lines[3].split() == ["2", "2", "0", "12", "0.8571", "14"]
    assert lines[4].split() == ["3", "1", "0", "0", "0.0000", "1"]
    assert len({len(lines[r]) for r in (1, 3, 4)}) == 1                      # aligned columns
    wide = evaluate.format_report(np.array([[1234567, 0], [0, 1]])).splitlines()
    assert lines[0].startswith("true\\pred     0     1     2   accuracy")     # columns at least 6 wide
    assert wide[0].startswith("true\\pred       0       1   accuracy")       # or as wide as the largest count
    assert wide[1].startswith("        0 1234567       0")


def test_predict_uses_every_image_once_in_order_whatever_the_batch_size():
    class ArgmaxOfFirstPixel(mg.nn.Module):
        def forward(self, x):
            k = x.numpy()[:, 0].astype(np.int64)
            return mg.tensor(np.eye(10, dtype=np.float32)[k]), None

    images = (np.arange(23) % 10).astype(np.float32)[:, None] * np.ones((1, 2), np.float32)
    model = ArgmaxOfFirstPixel()
    for batch_size in (1, 7, 23, 500):
        got = evaluate.predict(model, images, batch_size=batch_size)
        assert got.dtype == np.int64 and got.tolist() == (np.arange(23) % 10).tolist()
    model.eval()
    evaluate.predict(model, images)
    assert not model.training                      # given back in the mode it was in
    with pytest.raises(ValueError, match="batch_size"):
        evaluate.predict(model, images, batch_size=0)
    assert evaluate.predict(model, images[:0]).dtype == np.int64


def test_confusion_matrix_and_per_class_accuracy_on_a_known_case():
    labels, preds = np.array([2, 2, 0, 1, 2, 0]), np.array([2, 1, 0, 1, 2, 2])
    m = evaluate.confusion_matrix(labels, preds, num_classes=4)
    assert m.dtype == np.int64 and m.tolist() == [[1, 0, 1, 0], [0, 1, 0, 0], [0, 1, 2, 0], [0, 0, 0, 0]]
    acc = evaluate.per_class_accuracy(m)
    assert acc[:3].tolist() == [0.5, 1.0, 2 / 3] and np.isnan(acc[3])
    assert evaluate.confusion_matrix(np.zeros(0, np.int64), np.zeros(0, np.int64), 3).tolist() == [[0] * 3] * 3


def test_predict_feeds_the_model_on_the_device_it_is_given(fake_cuda):
    seen = []

    class Recorder(mg.nn.Module):
        def forward(self, x):
            seen.append(x.device)
            return mg.tensor(np.tile(np.arange(10, dtype=np.float32), (x.shape[0], 1)), device=x.device), None

    got = evaluate.predict(Recorder(), np.zeros((5, 3), np.float32), batch_size=2, device="cuda")
    assert got.tolist() == [9] * 5 and seen == ["cuda"] * 3


def test_the_data_dir_given_wins_over_the_checkpoints_and_the_generator_is_neither_loaded_nor_checked(
        data_dir, tmp_path):
    config, models, _ = _improved(data_dir, tmp_path)
    config["data_dir"] = str(tmp_path / "moved-away")            # the training machine's folder, gone
    for p in models["G"].parameters():
        p.data = p.data * np.nan                                   # a diverged generator: not evaluated
    path = _save(tmp_path / "moved.npz", config, models)
    test = data.load_dataset("mnist", "test", data_dir, layout="flat")
    matrix, _, test_acc = _expected(test.labels, _predictions(models["D_ema"].module, test.images, N_TEST))
    result = evaluate.evaluate_checkpoint(path, data_dir)
    assert result["confusion_matrix"] == matrix and result["test_acc"] == test_acc


def test_default_preset_on_mnist_reads_the_padded_images(data_dir, tmp_path):
    config = _config("mnist", "default", data_dir, supervised_only=True)
    mg.manual_seed(4)
    models = build_models(config, 1, 10, (1, 32, 32))
    path = _save(tmp_path / "mnist.npz", config, models)
    test = data.load_dataset("mnist", "test", data_dir)
    assert test.images.shape == (N_TEST, 1, 32, 32)
    matrix, _, test_acc = _expected(test.labels, _predictions(models["D"], test.images, N_TEST))
    result = evaluate.evaluate_checkpoint(path, data_dir, bn_stats="running")
    assert result["confusion_matrix"] == matrix and result["test_acc"] == test_acc


def test_a_config_without_the_model_settings_is_refused(data_dir, tmp_path):
    config = _config("svhn", "default", data_dir)
    models = build_models(config, 3, 10, (3, 32, 32))
    del config["z_dim"]
    path = _save(tmp_path / "old.npz", config, models)
    with pytest.raises(ckpt.CheckpointError, match="lacks 'z_dim'"):
        evaluate.evaluate_checkpoint(path, data_dir)


def test_evaluation_runs_on_the_device_it_is_given(data_dir, tmp_path, fake_cuda):
    _, _, path = _improved(data_dir, tmp_path)
    on_cpu = evaluate.evaluate_checkpoint(path, data_dir)
    on_gpu = evaluate.evaluate_checkpoint(path, data_dir, device="cuda")
    assert on_gpu["confusion_matrix"] == on_cpu["confusion_matrix"]
