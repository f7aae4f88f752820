#!/usr/bin/env bash
# One-shot check of minigrad's GPU path on a machine with an NVIDIA GPU, CuPy, PyTorch (with CUDA and
# cuDNN) and numba already installed, and no network. Everything goes into one output folder:
#
#     bash benchmarks/gpu_check.sh OUT_DIR            # or: OUT=OUT_DIR bash benchmarks/gpu_check.sh
#     SSGAN_DATA=/path/holding/mnist bash benchmarks/gpu_check.sh OUT_DIR
#
# Stages, each under its own time limit (seconds; override with the variable in brackets), so that one
# hung stage cannot eat the others' time; about 5.5 minutes at most in all, kernel compilation included:
#
#   1. environment [LIMIT_ENV=30]: nvidia-smi, versions, minigrad.backend.cuda_status() (the smoke test:
#      an elementwise kernel through NVRTC, cuBLAS, cuRAND). The check stops here when it fails.
#   2. the cuda-marked tests [LIMIT_TESTS=120]: pytest -m cuda (the op registry, the convolution and fused
#      kernels, batch norm, dropout, training) against the CPU; CPU sides compile numba kernels first.
#   3. one epoch of MNIST with 100 labels [LIMIT_EPOCH=80]: python -m ssgan.train --device cuda (the default
#      preset), data from $SSGAN_DATA (skipped without it); the first steps compile CuPy's kernels.
#   4. whole training steps against PyTorch with cuDNN [LIMIT_STEP=55]: python -m benchmarks.train_step
#      --device cuda (its warm-up steps are untimed; the wall time here counts them).
#   5. the conv and batch-norm kernels on the ssgan layer shapes [LIMIT_KERNELS=40]:
#      python -m benchmarks.kernels --device cuda.
#
# OUT_DIR/summary.txt lists each stage's exit status (124: it ran past its limit) and seconds; each stage's
# output is in OUT_DIR/<stage>.log, the benchmarks' numbers also in .json (and kernels.md). CuPy's compiled
# kernels are cached in OUT_DIR/cupy-kernel-cache unless CUPY_CACHE_DIR is set.
set -u

OUT="${1:-${OUT:-}}"
if [ -z "$OUT" ]; then
    echo "usage: bash benchmarks/gpu_check.sh OUT_DIR   (or set OUT)" >&2
    exit 2
fi
mkdir -p "$OUT" || exit 2
OUT="$(cd "$OUT" && pwd)"
cd "$(dirname "$0")/.." || exit 2

PYTHON="${PYTHON:-python}"
export CUPY_CACHE_DIR="${CUPY_CACHE_DIR:-$OUT/cupy-kernel-cache}"
export SSGAN_OFFLINE=1 PYTHONUNBUFFERED=1
SUMMARY="$OUT/summary.txt"
START=$SECONDS
: > "$SUMMARY"

# stage NAME LIMIT COMMAND...: run COMMAND under `timeout`, its output in OUT/NAME.log, one summary line.
stage() {
    local name="$1" limit="$2" begin=$SECONDS rc
    shift 2
    echo "== $name (limit ${limit}s): $*"
    timeout --kill-after=5 "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    printf '%-12s exit %3d  %4ds  (limit %ss)  %s\n' "$name" "$rc" "$((SECONDS - begin))" "$limit" "$*" \
        | tee -a "$SUMMARY"
    tail -n 5 "$OUT/$name.log"
    return "$rc"
}

cat > "$OUT/environment.py" <<'PY'
import platform
import sys

import numba
import numpy

print("python", sys.version.split()[0], platform.platform())
print("numpy", numpy.__version__, "numba", numba.__version__)
try:
    import cupy
    print("cupy", cupy.__version__, "CUDA runtime", cupy.cuda.runtime.runtimeGetVersion(),
          "driver", cupy.cuda.runtime.driverGetVersion())
except Exception as exc:
    print("cupy: not usable:", type(exc).__name__, exc)
try:
    import torch
    print("torch", torch.__version__, "CUDA", torch.version.cuda, "available", torch.cuda.is_available(),
          "cuDNN", torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)
except Exception as exc:
    print("torch: not usable:", type(exc).__name__, exc)
from minigrad.backend import cuda_status

ok, reason = cuda_status()
print("minigrad cuda_status:", ok, reason)
sys.exit(0 if ok else 1)
PY
stage environment "${LIMIT_ENV:-30}" bash -c "nvidia-smi; $PYTHON '$OUT/environment.py'"
if [ $? -ne 0 ]; then
    echo "stopping: the GPU does not work for minigrad (see $OUT/environment.log)" | tee -a "$SUMMARY"
    exit 1
fi

stage cuda-tests "${LIMIT_TESTS:-120}" "$PYTHON" -m pytest -m cuda -q -p no:cacheprovider \
    --hypothesis-profile=ci --durations=15 --junitxml="$OUT/cuda-tests.xml" tests

if [ -n "${SSGAN_DATA:-}" ] && [ -d "$SSGAN_DATA/mnist" ]; then
    stage mnist-epoch "${LIMIT_EPOCH:-80}" "$PYTHON" -m ssgan.train --dataset mnist --labels 100 --epochs 1 \
        --device cuda --data-dir "$SSGAN_DATA" --out "$OUT/mnist-epoch" --no-progress --log-every 50
else
    echo "mnist-epoch  skipped: \$SSGAN_DATA does not hold mnist/ (the MNIST files)" | tee -a "$SUMMARY"
fi

stage train-step "${LIMIT_STEP:-55}" "$PYTHON" -m benchmarks.train_step --device cuda --steps 10 --warmup 3 \
    --rounds 3 --json "$OUT/train_step.json"

stage kernels "${LIMIT_KERNELS:-40}" "$PYTHON" -m benchmarks.kernels --device cuda --rounds 3 --repeat 3 \
    --json "$OUT/kernels.json" --markdown "$OUT/kernels.md"

echo "total $((SECONDS - START))s; summary: $SUMMARY" | tee -a "$SUMMARY"
! grep -qE 'exit +[1-9]' "$SUMMARY"
