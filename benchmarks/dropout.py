"""Dropout on the CPU: the fused Philox kernel (``minigrad/kernels/dropout_philox_cpu.py``) against the
earlier path (float32 uniforms from NumPy's Generator, a mask of them, two products).

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python -m benchmarks.dropout

Prints the best of 7 times of both paths, forward and (where the step has one) backward, for one
activation and for the 9 dropouts of one training step of ssgan's default model. The figures and the
machine they were taken on are in the kernel module's docstring.
"""
from __future__ import annotations

import time

import numpy as np

from minigrad.kernels.dropout_philox_cpu import philox_dropout
from minigrad.ops.dropout import keep_scale, keep_threshold

#: the dropouts of one training step of ssgan's default (seed) model, batch 128: (shape, p, has a backward)
SEED_STEP = [((256, 3, 32, 32), 0.2, False), ((256, 64, 16, 16), 0.5, True), ((256, 64, 4, 4), 0.5, True),
             ((128, 3, 32, 32), 0.2, False), ((128, 64, 16, 16), 0.5, True), ((128, 64, 4, 4), 0.5, True),
             ((128, 3, 32, 32), 0.2, True), ((128, 64, 16, 16), 0.5, True), ((128, 64, 4, 4), 0.5, True)]


def _best_ms(fn, repeats=7):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def _mask_path(x, g, p, backward):
    """The earlier CPU path: float32 uniforms from NumPy's Generator, a mask of them, two products."""
    u = np.random.default_rng(0).random(x.shape, dtype=np.float32)
    mask = (u >= np.float32(p)).astype(x.dtype)
    mask *= x.dtype.type(1.0 / (1.0 - p))
    y = x * mask
    return (y, g * mask) if backward else y


def _fused_path(x, g, p, backward):
    t, scale = keep_threshold(p), keep_scale(p)
    y = philox_dropout(x, t, scale, 1, 0)
    return (y, philox_dropout(g, t, scale, 1, 0)) if backward else y


def main():
    rng = np.random.default_rng(0)
    cases = [("(128, 64, 16, 16) float32, p = 0.5", [((128, 64, 16, 16), 0.5, True)]),
             ("ssgan's default step (9 dropouts)", SEED_STEP)]
    for title, shapes in cases:
        arrays = [(rng.standard_normal(s, dtype=np.float32), rng.standard_normal(s, dtype=np.float32), p, b)
                  for s, p, b in shapes]
        row = []
        for path in (_mask_path, _fused_path):
            path(*arrays[0])                                 # compile (or load from the cache) first
            row.append(_best_ms(lambda: [path(*a) for a in arrays]))
        values = sum(x.size for x, _, _, _ in arrays)
        print(f"{title}: {values / 1e6:.1f} M values, mask path {row[0]:.1f} ms, fused {row[1]:.1f} ms "
              f"({row[0] / row[1]:.1f}x)")


if __name__ == "__main__":
    main()
