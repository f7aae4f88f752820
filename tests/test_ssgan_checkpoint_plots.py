"""ssgan.checkpoint (atomic npz round trip, refusals) and ssgan.plots (Pillow pictures)."""
import json
import os

import numpy as np
import pytest
from PIL import Image

import minigrad as mg
from minigrad import nn, optim
from ssgan import checkpoint as ckpt
from ssgan import plots


def _model_and_adam(seed):
    mg.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    opt = optim.Adam(model.parameters(), lr=1e-2, betas=(0.5, 0.999))
    for _ in range(2):
        opt.zero_grad()
        model(mg.randn(5, 3)).sum().backward()
        opt.step()
    return model, opt


def test_round_trip_restores_models_and_optimizers_exactly(tmp_path):
    model, opt = _model_and_adam(0)
    arrays, meta = ckpt.pack_state({"M": model}, {"M": opt})
    meta["note"] = {"rng": mg.get_rng_state()}
    path = tmp_path / "c.npz"
    ckpt.save_npz_atomic(path, arrays, meta)
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]          # no temporary file left
    loaded, loaded_meta = ckpt.load_npz(path)
    assert loaded_meta["note"] == meta["note"] and loaded_meta["format"] == ckpt.FORMAT

    other, other_opt = _model_and_adam(1)
    ckpt.unpack_state(path, loaded, loaded_meta, {"M": other}, {"M": other_opt})
    for (k, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=k)
        assert a.shape == b.shape  # 0-d buffers stay 0-d
    assert other_opt.param_groups[0]["betas"] == (0.5, 0.999)
    for s, t in zip(opt.state, other_opt.state):
        assert s["step"] == t["step"]
        np.testing.assert_array_equal(s["exp_avg_sq"], t["exp_avg_sq"])
    # one more identical step on both gives identical weights
    x = mg.randn(5, 3)
    for m, o in ((model, opt), (other, other_opt)):
        o.zero_grad()
        m(x).sum().backward()
        o.step()
    np.testing.assert_array_equal(model[0].weight.numpy(), other[0].weight.numpy())


def test_saving_over_an_old_checkpoint_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    ckpt.save_npz_atomic(path, {"a": np.arange(3)}, {"step": 1})
    before = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_npz_atomic(path, {"a": np.arange(4)}, {"step": 2})
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["c.npz"]


def test_refusals_name_the_file(tmp_path):
    missing = tmp_path / "nope.npz"
    with pytest.raises(ckpt.CheckpointError, match="nope.npz does not exist"):
        ckpt.load_npz(missing)
    not_ours = tmp_path / "plain.npz"
    np.savez(not_ours, x=np.zeros(2))
    with pytest.raises(ckpt.CheckpointError, match="plain.npz has no __meta__"):
        ckpt.load_npz(not_ours)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, __meta__=np.array(json.dumps({"format": ckpt.FORMAT})), x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ckpt.CheckpointError, match="pickled.npz is corrupt or truncated"):
        ckpt.load_npz(pickled)   # object arrays would need pickle: refused
    model, opt = _model_and_adam(0)
    arrays, meta = ckpt.pack_state({"M": model}, {"M": opt})
    small = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(ckpt.CheckpointError, match="does not fit model M"):
        ckpt.unpack_state("x.npz", arrays, meta, {"M": small}, {})


def test_image_grid_layout_and_values():
    images = np.full((12, 1, 32, 32), -1.0, dtype=np.float32)
    images[5] = 1.0
    grid = plots.image_grid(images, nrow=5, padding=2, scale=1)
    assert grid.size == (2 + 5 * 34, 2 + 3 * 34)
    pixels = np.asarray(grid)
    assert tuple(pixels[2 + 34 + 10, 2 + 10]) == (255, 255, 255)   # image 5: row 1, column 0, white
    assert tuple(pixels[2 + 10, 2 + 10]) == (0, 0, 0)              # image 0: black
    with pytest.raises(ValueError, match="image_grid"):
        plots.image_grid(np.zeros((2, 2, 32, 32)))


def test_learning_curves_show_every_series_in_a_readable_range(tmp_path):
    records = [{"step": 10 * (i + 1), "steps_per_epoch": 10, "d_loss": 2.0 - 0.1 * i, "g_loss": None,
                "train_acc": 1.0, "test_acc": 0.95 - 0.01 * i, "test_acc_ema": 0.90 + 0.01 * i} for i in range(5)]
    steps = [{"step": s, "d_loss": 1.0 / s, "g_loss": 0.5} for s in range(5, 55, 5)]
    fig = plots.learning_curves_figure(records, steps)
    ax_loss, ax_acc = fig.axes
    lines = {line.get_label(): line for line in ax_loss.get_lines()}
    assert set(lines) == {"d_loss", "g_loss"}                     # per logged step; the None series is skipped
    np.testing.assert_allclose(lines["d_loss"].get_xdata(), [s["step"] for s in steps])
    acc = {line.get_label(): line for line in ax_acc.get_lines()}
    assert set(acc) == {"test (raw weights)", "test (averaged weights)", "labeled training images"}
    np.testing.assert_allclose(acc["test (raw weights)"].get_xdata(), [1, 2, 3, 4, 5])
    lo, hi = ax_acc.get_ylim()      # zoomed on the data (0.90 .. 1.0), not 0 .. 1: a 3-point decay shows
    assert 0.85 <= lo < 0.90 and 1.0 <= hi <= 1.0 + 1e-9
    fig.canvas.draw()
    for ax in (ax_loss, ax_acc):    # each legend sits below its axes, clear of the lines
        legend, box = ax.get_legend().get_window_extent(), ax.get_window_extent()
        assert legend.y1 <= box.y0
    path = tmp_path / "curves.png"
    plots.save_learning_curves(records, path)          # epoch means when there is no per-step log
    assert Image.open(path).format == "PNG"
    plots.save_learning_curves(records[:1], path)      # one point: no zero range
    assert Image.open(path).size == (1100, 420)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
