"""The default preset's study options (``--real-target``, ``--unlabeled-weight``, ``--d-noise``,
``--g-steps``, ``--ema-rate``): each does what its help says, and leaving them alone trains as before.

The step is checked as ``tests/test_ssgan_steps.py`` checks the default one: every model call recorded,
every loss term recomputed from the recorded arrays in float64 NumPy.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import minigrad as mg
from fake_data import tiny_run_argv
from numpy_losses import bce_with_logits, cross_entropy, lse
from ssgan import settings, steps, train
from ssgan.models import Discriminator, Generator, build_models
from test_ssgan_steps import N_LAB, Z, Recorder, _batches, params, seed_models  # noqa: F401  (fixture)


def test_the_options_change_the_terms_the_generator_steps_and_the_average(seed_models):  # noqa: F811
    D, G, opt_d, opt_g = seed_models
    x_lab, y_lab, x_unl, _ = _batches(np.random.default_rng(2), (1, 32, 32))
    ema = mg.AveragedModel(D, decay=0.9, start="copy")
    d_calls, g_calls = Recorder(D), Recorder(G)
    g_updates = []
    real_step = opt_g.step
    opt_g.step = lambda: (g_updates.append(params(G)), real_step())

    result = steps.ssgan_step(D, G, opt_d, opt_g, x_lab, y_lab, x_unl, z_dim=Z, where="test", real_target=1.0,
                              unlabeled_weight=0.5, g_steps=3, ema=ema)

    # G: the first batch, then two fresh ones; D: real, fake (its step), then once per generator update
    assert len(g_calls.calls) == 3 and len(d_calls.calls) == 5 and len(g_updates) == 3
    fakes = [call[-1] for call in g_calls.calls]
    assert not np.allclose(fakes[1], fakes[2]) and not np.allclose(fakes[0], fakes[1])
    (_, _, l_real, f_real), (_, _, l_fake, _) = d_calls.calls[:2]
    for (x_seen, kw, _, _), fake in zip(d_calls.calls[2:], fakes):
        np.testing.assert_array_equal(x_seen, fake)
        assert kw == {"real": False}
    real = bce_with_logits(lse(l_real[N_LAB:]), 1.0)                 # no smoothing
    fake_term = bce_with_logits(lse(l_fake), 0.0)
    classes = cross_entropy(l_real[:N_LAB], y_lab)
    assert result.d_loss_real == pytest.approx(real, rel=1e-5)
    assert result.d_loss == pytest.approx(classes + 0.5 * (real + fake_term), rel=1e-5)
    first_fm = np.mean(np.abs(f_real[N_LAB:].mean(axis=0) - d_calls.calls[2][3].mean(axis=0)))
    assert result.g_loss == pytest.approx(first_fm, rel=1e-5)       # the first update's loss is reported
    # each generator update moved G; the average is a copy of D after its first update ("copy" start)
    assert not all(np.array_equal(g_updates[0][k], g_updates[1][k]) for k in g_updates[0])
    for (name, a), p in zip(ema.module.named_parameters(), D.parameters()):
        np.testing.assert_array_equal(a.numpy(), p.numpy(), err_msg=name)
    assert int(ema.n_averaged.numpy()) == 1


def test_the_defaults_are_the_seed_step(seed_models):  # noqa: F811
    """The step with every option at its default gives the same numbers as the step without them."""
    results = []
    for kwargs in ({}, {"real_target": 0.9, "unlabeled_weight": 1.0, "g_steps": 1, "ema": None}):
        mg.manual_seed(5)
        D, G = Discriminator(1, width=4), Generator(Z, width=4, out_channels=1)
        opt_d, opt_g = mg.optim.Adam(D.parameters(), lr=1e-3), mg.optim.Adam(G.parameters(), lr=1e-3)
        x_lab, y_lab, x_unl, _ = _batches(np.random.default_rng(3), (1, 32, 32))
        r = steps.ssgan_step(D, G, opt_d, opt_g, x_lab, y_lab, x_unl, z_dim=Z, where="test", **kwargs)
        results.append((r, params(D), params(G)))
    (r0, d0, g0), (r1, d1, g1) = results
    assert r0 == r1
    assert all(np.array_equal(d0[k], d1[k]) for k in d0) and all(np.array_equal(g0[k], g1[k]) for k in g0)


def test_input_noise_is_on_in_training_only():
    mg.manual_seed(0)
    plain = Discriminator(1, width=4)
    noisy = Discriminator(1, width=4, input_noise=0.3)
    noisy.load_state_dict(plain.state_dict())
    x = mg.tensor(np.random.default_rng(0).uniform(-1, 1, (4, 1, 32, 32)).astype(np.float32))
    seen = []
    noisy.conv1.forward = lambda h, f=noisy.conv1.forward: (seen.append(h.numpy().copy()), f(h))[1]
    noisy.drop_rate = plain.drop_rate = 0.0                              # so that only the noise differs
    noisy(x)
    spread = (seen[-1] - x.numpy()).std()
    assert 0.25 < spread < 0.35                                          # the std asked for, on 4096 values
    noisy.load_state_dict(plain.state_dict())                           # the running statistics too
    plain.eval(), noisy.eval()
    np.testing.assert_array_equal(noisy(x)[0].numpy(), plain(x)[0].numpy())
    with pytest.raises(ValueError, match="input_noise"):
        Discriminator(1, width=4, input_noise=-1.0)


def _config(**given):
    args = settings.build_parser().parse_args([a for k, v in given.items() for a in (f"--{k}", str(v))])
    return settings.resolve(args)


def test_settings_defaults_ranges_and_presets():
    c = _config(dataset="mnist")
    assert (c["real_target"], c["unlabeled_weight"], c["d_noise"], c["g_steps"], c["ema_rate"]) == (0.9, 1.0, 0.0, 1, 0.0)
    assert "D_ema" not in build_models(c, 1, 10, (1, 32, 32))
    c = _config(dataset="mnist", **{"ema-rate": 1e-3, "d-noise": 0.3})
    models = build_models(c, 1, 10, (1, 32, 32))
    assert models["D_ema"].decay == pytest.approx(0.999) and models["D"].input_noise == 0.3
    for flag, value in (("real-target", 0), ("real-target", 1.5), ("unlabeled-weight", -1), ("d-noise", -0.1),
                        ("ema-rate", 1)):
        with pytest.raises(settings.SettingsError, match=f"--{flag}"):
            _config(dataset="mnist", **{flag: value})
    with pytest.raises(settings.SettingsError, match="--g-steps, --ema-rate: only the default preset"):
        _config(dataset="mnist", preset="improved", **{"g-steps": 2, "ema-rate": 0.01})


def test_a_saved_config_without_the_options_resumes_as_the_seed_model():
    """Checkpoints written before the options existed resume with their defaults (the seed model)."""
    saved = dict(_config(dataset="mnist"))
    for k in settings.SEED_STUDY_KEYS:
        del saved[k]
    c = settings.resolve(settings.build_parser().parse_args(["--resume"]), saved)
    assert all(c[k] == settings.BY_NAME[k].default for k in settings.SEED_STUDY_KEYS)


def test_a_run_with_the_options_logs_the_average_and_resumes(data_dir, tmp_path):
    out = tmp_path / "run"
    argv = tiny_run_argv(data_dir, out, "--epochs", "2", "--ema-rate", "0.05", "--d-noise", "0.2", "--g-steps",
                         "2", "--real-target", "1", "--unlabeled-weight", "0.5", "--max-steps", "15")
    assert train.main(argv) == 0
    assert train.main(["--resume", "--out", str(out), "--data-dir", str(data_dir), "--max-steps", "0",
                       "--no-progress"]) == 0
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines if m["epoch_complete"]] == [1, 2]
    assert all(0.0 <= m["test_acc_ema"] <= 1.0 for m in lines)
    config = json.loads((out / "config.json").read_text())
    assert (config["g_steps"], config["ema_rate"], config["unlabeled_weight"]) == (2, 0.05, 0.5)
