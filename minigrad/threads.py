"""How minigrad's two pools of CPU threads share the cores: numba's idle threads sleep instead of spinning.

On the CPU two libraries run threads for minigrad, taking turns all through a training step: OpenBLAS
(every matrix product, through NumPy) and numba (the kernels in ``minigrad/kernels``: im2col, col2im,
batch norm, activations, Adam), whose parallel loops run on a GNU OpenMP pool. An OpenMP pool keeps its
idle threads *spinning* for a while after each parallel loop, waiting for the next one, unless the
environment variable ``OMP_WAIT_POLICY`` is ``PASSIVE``. Here the next call is almost always a matrix
product, whose OpenBLAS threads then share the cores with numba's spinning ones: on a 2-core machine,
with 2 threads for each library, a ssgan training step took 1.4-2.2 times as long as with ``PASSIVE``
(882 -> 609 and 1027 -> 473 ms per step at generator width 32, in two measurement runs; ``benchmarks/RESULTS.md``),
and a spinning pool also takes CPU from every other process on the machine.

So importing minigrad sets ``OMP_WAIT_POLICY=PASSIVE`` unless the variable is already set (set it to
``ACTIVE`` yourself to get the spinning back). It takes effect because numba starts its OpenMP pool,
and the OpenMP library reads the variable, only when the first parallel kernel runs, which is after this
import. Two things to know:

* The variable is process-wide: another OpenMP library loaded later in the same process (PyTorch's, if
  it is imported after minigrad) reads it too and also lets its idle threads sleep.
* OpenBLAS's threads spin as well (for 2^28 cycles, about 0.1 s, after each product). OpenBLAS reads
  ``OPENBLAS_THREAD_TIMEOUT`` only when NumPy is imported, so that one is set in ``minigrad/__init__.py``,
  and only when minigrad is imported before NumPy (``ssgan`` imports minigrad first for that reason).
"""
from __future__ import annotations

import os

WAIT_POLICY_VARIABLE = "OMP_WAIT_POLICY"

os.environ.setdefault(WAIT_POLICY_VARIABLE, "PASSIVE")
