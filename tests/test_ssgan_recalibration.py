"""Batch-norm statistics for evaluation: ``ssgan.models.recalibrated`` and where training and evaluation use it.

The default preset's discriminator has dropout in front of its batch norms, so the running statistics it keeps
in training describe dropped-out activations; evaluation recomputes them without dropout (models.py explains why).
"""
import json

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from ssgan import evaluate, metrics, train
from ssgan.models import Discriminator, calibration_indices, recalibrated

from fake_data import install_fake_datasets, tiny_run_argv

SLOPE = 0.2


def _model(seed=0, **kwargs):
    mg.manual_seed(seed)
    D = Discriminator(in_channels=1, width=4, **kwargs)
    D.train()
    # some training-like history, so the running statistics are not the initial 0 / 1
    with mg.no_grad():
        for i in range(3):
            D(mg.tensor(np.random.default_rng(i).uniform(-1, 1, (6, 1, 32, 32)).astype(np.float32)))
    return D


def _stats(D):
    return {k: v.copy() for k, v in D.state_dict().items() if "running" in k or "num_batches" in k}


def _images(n, seed):
    return np.random.default_rng(seed).uniform(-1, 1, (n, 1, 32, 32)).astype(np.float32)


def test_the_first_statistics_are_those_of_the_batch_without_dropout():
    D = _model()
    x = _images(8, 1)
    R = recalibrated(D, x, batch_size=8)
    # bn2 normalises conv2 of LeakyReLU(conv1(x)): with no dropout anywhere before it
    with mg.no_grad():
        h = D.conv2(F.leaky_relu(D.conv1(mg.tensor(x)), SLOPE)).numpy().astype(np.float64)
    mean = h.mean(axis=(0, 2, 3))
    var = h.var(axis=(0, 2, 3), ddof=1)                    # the running variance keeps the unbiased one
    np.testing.assert_allclose(R.bn2.running_mean.numpy(), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(R.bn2.running_var.numpy(), var, rtol=1e-5, atol=1e-6)
    assert int(R.bn2.num_batches_tracked.item()) == 1 and not R.training
    # the statistics the model kept in training are something else
    assert not np.allclose(D.bn2.running_mean.numpy(), mean, rtol=1e-3)


def test_statistics_are_the_plain_average_over_the_batches():
    D = _model()
    a, b = _images(8, 2), _images(8, 3)
    Ra, Rb = recalibrated(D, a, batch_size=8), recalibrated(D, b, batch_size=8)
    Rab = recalibrated(D, np.concatenate([a, b]), batch_size=8)
    for name in ("bn2", "bn3", "bn4", "bn5"):
        for stat in ("running_mean", "running_var"):
            got = getattr(getattr(Rab, name), stat).numpy()
            want = (getattr(getattr(Ra, name), stat).numpy() + getattr(getattr(Rb, name), stat).numpy()) / 2
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"{name}.{stat}")
        assert int(getattr(Rab, name).num_batches_tracked.item()) == 2


def test_the_model_is_left_alone_and_dropout_and_noise_stay_off():
    D = _model(input_noise=0.3)
    before, params = _stats(D), {k: v.copy() for k, v in D.state_dict().items()}
    x = _images(10, 4)
    mg.manual_seed(1)
    R1 = recalibrated(D, x, batch_size=5)
    mg.manual_seed(2)
    R2 = recalibrated(D, x, batch_size=5)      # another random stream: no draw may matter
    for k, v in _stats(R1).items():
        np.testing.assert_array_equal(v, _stats(R2)[k], err_msg=k)
    after = D.state_dict()
    for k, v in params.items():
        np.testing.assert_array_equal(after[k], v, err_msg=k)
    assert _stats(D).keys() == before.keys() and D.training
    assert (D.drop_rate, D.input_noise) == (R1.drop_rate, R1.input_noise) == (0.5, 0.3)
    assert all(bn.momentum == 0.1 for bn in (R1.bn2, R1.bn3, R1.bn4, R1.bn5, D.bn2))
    # in evaluation mode the copy's logits do not depend on the rest of the batch (running statistics)
    with mg.no_grad():
        whole = R1(mg.tensor(x))[0].numpy()
        part = R1(mg.tensor(x[:3]))[0].numpy()
    np.testing.assert_allclose(whole[:3], part, rtol=1e-5, atol=1e-6)


def test_the_notebook_model_gets_an_unchanged_copy():
    D = _model(notebook=True, drop_rate=0.0)
    R = recalibrated(D, _images(6, 5), batch_size=6)
    for k, v in _stats(D).items():
        np.testing.assert_array_equal(_stats(R)[k], v, err_msg=k)


def test_calibration_images_are_a_fixed_subset_drawn_from_the_seed():
    a, b, c = calibration_indices(60000, 0), calibration_indices(60000, 0), calibration_indices(60000, 1)
    assert len(a) == 10000 and len(np.unique(a)) == 10000 and np.all(np.diff(a) > 0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and a.max() < 60000
    np.testing.assert_array_equal(calibration_indices(200, 3), np.arange(200))   # fewer images: all of them


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("data")
    install_fake_datasets(mp, root)
    yield root
    mp.undo()


def test_the_default_preset_logs_recalibrated_accuracy_and_evaluate_reproduces_it(data_dir, tmp_path):
    out = tmp_path / "run"
    assert train.main(tiny_run_argv(data_dir, out, "--epochs", "1", "--ema-rate", "0.01")) == 0
    (record,) = metrics.read_log(out / "metrics.jsonl")
    for key in ("test_acc", "test_acc_ema", "test_acc_recal", "test_acc_ema_recal"):
        assert 0.0 <= record[key] <= 1.0, key
    for weights, key in (("raw", "test_acc_recal"), ("averaged", "test_acc_ema_recal")):
        report = tmp_path / f"{weights}.json"
        assert evaluate.main(["--checkpoint", str(out / "checkpoint.npz"), "--data-dir", str(data_dir),
                              "--weights", weights, "--json", str(report)]) == 0
        result = json.loads(report.read_text())
        assert (result["weights"], result["bn_stats"]) == (weights, "recalibrated")
        assert result["test_acc"] == pytest.approx(record[key])


def test_presets_without_running_statistics_log_no_recalibrated_accuracy(data_dir, tmp_path, capsys):
    out = tmp_path / "nb"
    assert train.main(tiny_run_argv(data_dir, out, "--epochs", "1", "--preset", "notebook")) == 0
    (record,) = metrics.read_log(out / "metrics.jsonl")
    assert "test_acc_recal" not in record and record["test_acc"] is not None
    code = evaluate.main(["--checkpoint", str(out / "checkpoint.npz"), "--data-dir", str(data_dir),
                          "--bn-stats", "recalibrated"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "no batch-norm running statistics" in err and "notebook" in err


def test_the_statistics_benchmark_agrees_with_recalibrated(data_dir, tmp_path, capsys):
    from benchmarks import bn_statistics

    out = tmp_path / "run"
    assert train.main(tiny_run_argv(data_dir, out, "--epochs", "1")) == 0
    capsys.readouterr()
    D, train_set, test, meta = bn_statistics.load(out / "checkpoint.npz", data_dir, "raw")
    batches = [train_set.images[i * 16:(i + 1) * 16] for i in range(3)]
    a = bn_statistics.recomputed(D, batches, dropout=False)
    b = recalibrated(D, np.concatenate(batches), batch_size=16)
    for k, v in a.state_dict().items():
        np.testing.assert_allclose(v, b.state_dict()[k], rtol=1e-6, atol=1e-7, err_msg=k)
    assert bn_statistics.main(["--checkpoint", str(out / "checkpoint.npz"), "--data-dir", str(data_dir),
                               "--batches", "2", "--batch", "16"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "%" in line]
    assert len(rows) == 4 and rows[0].startswith("| running")
    logged = metrics.read_log(out / "metrics.jsonl")[-1]["test_acc"]
    assert rows[0].endswith(f"| {100 * logged:.2f}% |")        # the first row is the log's test_acc
