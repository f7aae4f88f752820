"""benchmarks/gpu_check.sh, the one-shot check for a GPU machine, cannot run here; what can be checked is that it
is valid bash and that every command it runs exists with the options it gives (each is parsed by that
command's own parser, or collected by pytest), so it does not fail on a typo once a GPU is there."""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.sh"


def _commands():
    """Each ``stage NAME LIMIT "$PYTHON" -m MODULE ARGS...`` of the script, as (module, args) with the
    shell variables replaced by stand-in paths."""
    text = SCRIPT.read_text().replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        m = re.match(r'\s*stage\s+\S+\s+"\$\{LIMIT_\w+:-\d+\}"\s+"\$PYTHON"\s+-m\s+(\S+)\s+(.*)$', line)
        if m:
            args = m.group(2).replace('"$OUT', '"/tmp/out').replace('"$SSGAN_DATA"', "/tmp/data")
            found.append((m.group(1), shlex.split(args)))
    return found


def test_the_script_is_valid_bash():
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    subprocess.run([bash, "-n", str(SCRIPT)], check=True)


def test_every_command_of_the_script_takes_its_options():
    from benchmarks import kernels, train_step
    from ssgan import settings

    commands = dict(_commands())
    assert set(commands) == {"pytest", "ssgan.train", "benchmarks.train_step", "benchmarks.kernels"}, commands
    parsed = settings.build_parser().parse_args(commands["ssgan.train"])
    assert parsed.device == "cuda" and parsed.dataset == "mnist" and parsed.epochs == 1 and parsed.labels == 100
    assert train_step.build_parser().parse_args(commands["benchmarks.train_step"]).device == "cuda"
    assert kernels.build_parser().parse_args(commands["benchmarks.kernels"]).device == "cuda"
    # pytest: the same options, collecting one small file instead of the whole suite
    args = [a for a in commands["pytest"] if a != "tests" and not a.startswith("--junitxml")]
    assert "-m" in args and args[args.index("-m") + 1] == "cuda"
    done = subprocess.run([sys.executable, "-m", "pytest", *args, "--co", "tests/test_fake_cuda_gpu_check.py"],
                          cwd=SCRIPT.parent.parent, capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 5), done.stdout + done.stderr   # 5: nothing cuda-marked in that file
