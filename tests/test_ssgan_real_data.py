"""``python -m ssgan.train`` on the real MNIST files from ``$SSGAN_DATA`` (skipped, saying why, without them).

Kept out of ``test_ssgan_train.py`` on purpose: that module patches ``ssgan.data.MD5`` with the checksums
of its fake files for the whole module, and the real files must be checked against the official ones.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ssgan import metrics, train


@pytest.mark.slow
def test_real_mnist_two_steps(tmp_path):
    root = os.environ.get("SSGAN_DATA")
    if not root or not (Path(root) / "mnist" / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("real MNIST not found: set $SSGAN_DATA to a folder holding mnist/*.gz")
    out = tmp_path / "mnist"
    argv = ["--dataset", "mnist", "--data-dir", root, "--out", str(out), "--max-steps", "2", "--g-width", "4",
            "--d-width", "8", "--no-progress"]
    assert train.main(argv) == 0
    (record,) = metrics.read_log(out / "metrics.jsonl")
    assert record["step"] == 2 and record["steps_per_epoch"] == 60000 // 128
    assert json.loads((out / "config.json").read_text())["test_images"] == 10000
