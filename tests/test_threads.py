"""minigrad/threads.py: importing minigrad makes numba's OpenMP threads sleep when idle, unless the user chose.

Each case runs in a fresh interpreter, since the variable only matters before numba starts its pool.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROBE = "import os, minigrad; print(os.environ.get('OMP_WAIT_POLICY'))"


def _policy_after_import(value):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if value is not None:
        env["OMP_WAIT_POLICY"] = value
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_unset_policy_becomes_passive():
    assert _policy_after_import(None) == "PASSIVE"


@pytest.mark.parametrize("chosen", ["ACTIVE", "passive"])
def test_a_policy_the_user_set_is_kept(chosen):
    assert _policy_after_import(chosen) == chosen
