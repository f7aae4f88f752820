"""``--preset improved``: the networks' shapes and initialisation, and whole runs on tiny fake datasets
(training, resume with the parameter average bit for bit, evaluation with the average)."""
from __future__ import annotations

import json

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from ssgan import checkpoint as ckpt
from ssgan import evaluate, metrics, train
from ssgan.models import build_models
from ssgan.models_improved import MnistDiscriminator, MnistGenerator, SvhnDiscriminator, SvhnGenerator

TIMING = {"seconds", "eval_seconds", "images_per_s"}


def _argv(data_dir, out, *extra, dataset="mnist"):
    return ["--dataset", dataset, "--preset", "improved", "--data-dir", str(data_dir), "--out", str(out),
            "--labels", "20", "--batch-size", "16", "--no-progress", *extra]


def _untimed(path):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in metrics.read_log(path)]


def test_mnist_networks_have_the_recipe_shapes():
    mg.manual_seed(0)
    D, G = MnistDiscriminator(), MnistGenerator()
    logits, features = D(mg.rand(7, 784))
    assert logits.shape == (7, 10) and features.shape == (7, 250)
    widths = [getattr(D, f"fc{i}").weight_v.shape for i in range(1, 6)] + [D.out.weight_v.shape]
    assert widths == [(1000, 784), (500, 1000), (250, 500), (250, 250), (250, 250), (10, 250)]
    trained = {k for k, p in D.named_parameters() if p.requires_grad}
    assert {f"fc{i}.weight_g" for i in range(1, 6)}.isdisjoint(trained) and "out.weight_g" in trained
    x = G(mg.rand(7, 100))
    assert x.shape == (7, 784) and 0 < x.numpy().min() and x.numpy().max() < 1        # a sigmoid output
    assert sorted(G.state_dict()) == sorted(
        ["fc1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked",
         "fc2.weight", "bn2.bias", "bn2.running_mean", "bn2.running_var", "bn2.num_batches_tracked",
         "out.bias", "out.weight_g", "out.weight_v"])                                  # no batch-norm scale


def test_svhn_networks_have_the_recipe_shapes():
    mg.manual_seed(0)
    D, G = SvhnDiscriminator(), SvhnGenerator()
    logits, features = D(mg.rand(2, 3, 32, 32))
    assert logits.shape == (2, 10) and features.shape == (2, 128)
    assert G(mg.rand(2, 100)).shape == (2, 3, 32, 32)
    assert G.deconv3.weight_g.shape == (1, 3, 1, 1) and G.deconv3.weight_g.requires_grad   # per output channel
    assert [getattr(D, f"conv{i}").weight_v.shape[0] for i in range(1, 8)] == [64, 64, 64, 128, 128, 128, 128]
    assert D.nin1.weight_v.shape == (128, 128, 1, 1) and not D.nin1.weight_g.requires_grad


def test_data_dependent_init_standardises_every_layer_on_its_batch():
    mg.manual_seed(1)
    D = MnistDiscriminator(input_noise=0.0, hidden_noise=0.0)     # noise off, so a second pass sees the same
    x = mg.tensor(np.random.default_rng(0).uniform(0, 1, (300, 784)).astype(np.float32))
    D.init_from_batch(x)
    h = x
    for i in range(1, 6):
        pre = getattr(D, f"fc{i}")(h)
        np.testing.assert_allclose(pre.numpy().mean(0), 0, atol=1e-4)
        np.testing.assert_allclose(pre.numpy().std(0), 1, rtol=1e-3)
        h = F.relu(pre)
    out = D.out(h).numpy()
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(out.std(0), 1, rtol=1e-3)


def test_build_models_gives_the_average_under_improved_only():
    base = {"dataset": "mnist", "preset": "improved", "supervised_only": False, "z_dim": 100, "d_width": 64,
            "g_width": 32}
    assert sorted(build_models(base, 1, 10, (784,))) == ["D", "D_ema", "G"]
    assert sorted(build_models(dict(base, supervised_only=True), 1, 10, (784,))) == ["D", "D_ema"]
    assert sorted(build_models(dict(base, preset="default"), 1, 10, (1, 32, 32))) == ["D", "G"]


@pytest.fixture(scope="module")
def reference_run(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("improved")
    assert train.main(_argv(data_dir, out, "--epochs", "2")) == 0
    return out


def test_improved_run_logs_raw_and_averaged_accuracy(reference_run):
    records = metrics.read_log(reference_run / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2]
    for r in records:
        assert 0 <= r["test_acc"] <= 1 and 0 <= r["test_acc_ema"] <= 1
        assert r["d_loss"] == pytest.approx(r["d_loss_class"] + r["d_loss_real"] + r["d_loss_fake"])
    config = json.loads((reference_run / "config.json").read_text())
    assert config["lr"] == 3e-3 and config["lr_decay"] == 1.0 and config["epochs"] == 2
    arrays, meta = ckpt.load_npz(reference_run / "checkpoint.npz")
    assert int(arrays["model/D_ema/n_averaged"]) == 2 * 12           # one update per step
    assert meta["optimizers"]["D"]["param_groups"][0]["eps_inside_sqrt"] is True


def test_improved_resume_mid_epoch_is_bit_for_bit_with_the_average(data_dir, reference_run, tmp_path):
    out = tmp_path / "run"
    assert train.main(_argv(data_dir, out, "--epochs", "2", "--max-steps", "7", "--checkpoint-every", "3")) == 0
    assert train.main(["--resume", "--out", str(out), "--no-progress", "--max-steps", "0"]) == 0
    assert _untimed(out / "metrics.jsonl")[1:] == _untimed(reference_run / "metrics.jsonl")
    a, _ = ckpt.load_npz(out / "checkpoint.npz")
    b, _ = ckpt.load_npz(reference_run / "checkpoint.npz")
    assert sorted(a) == sorted(b) and any(k.startswith("model/D_ema/") for k in a)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_evaluate_uses_the_average_when_there_is_one(data_dir, reference_run, capsys):
    path = str(reference_run / "checkpoint.npz")
    averaged = evaluate.evaluate_checkpoint(path, data_dir)
    raw = evaluate.evaluate_checkpoint(path, data_dir, weights="raw")
    last = metrics.read_log(reference_run / "metrics.jsonl")[-1]
    assert averaged["weights"] == "averaged" and averaged["test_acc"] == pytest.approx(last["test_acc_ema"])
    assert raw["weights"] == "raw" and raw["test_acc"] == pytest.approx(last["test_acc"])
    assert evaluate.main(["--checkpoint", path, "--data-dir", str(data_dir)]) == 0
    assert "(averaged weights)" in capsys.readouterr().out


def test_supervised_only_improved_baseline_runs(data_dir, tmp_path):
    out = tmp_path / "sup"
    assert train.main(_argv(data_dir, out, "--supervised-only", "--max-steps", "4")) == 0
    (record,) = metrics.read_log(out / "metrics.jsonl")
    assert record["g_loss"] is None and record["test_acc_ema"] is not None


def test_svhn_improved_trains_a_few_steps_on_a_tiny_mat_file(data_dir, tmp_path):
    out = tmp_path / "svhn"
    assert train.main(_argv(data_dir, out, "--max-steps", "2", "--batch-size", "4", "--labels", "10",
                            dataset="svhn")) == 0
    (record,) = metrics.read_log(out / "metrics.jsonl")
    assert np.isfinite(record["d_loss"]) and np.isfinite(record["g_loss"]) and record["step"] == 2
    arrays, _ = ckpt.load_npz(out / "checkpoint.npz")
    assert arrays["model/G/deconv3.weight_g"].shape == (1, 3, 1, 1)
