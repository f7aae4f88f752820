"""Helpers shared by the benchmarks: thread settings, the machine's measured peak, statistics, tables,
and a tiny protocol for timing code in worker processes.

Nothing here imports minigrad, ssgan or PyTorch, so a worker process can import this module and then
whichever framework it times, and no other.

Why worker processes
--------------------
The machine this was written on has two cores. A process that has run NumPy/BLAS, numba or PyTorch keeps
its thread pools; two pools alive at once on two cores spoil each other's timings, and each library reads
its thread count from the environment *when it is loaded*. So each framework is timed in its own child
process, started with the thread variables of :func:`thread_env`, and the parent only sends commands and
collects the numbers. The parent alternates the workers round by round (one minigrad round, one PyTorch
round, ...), so a change in the machine's load affects both sides of each ratio.

The protocol is one JSON object per line: the parent writes a command to the worker's stdin, the worker
answers with one line starting with :data:`REPLY_MARK` on its stdout (anything else a worker prints,
warnings or progress, is passed through to the parent's stderr).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPLY_MARK = "@@bench-reply "
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS")
ROOT = Path(__file__).resolve().parent.parent   # the repository root (workers run with it as cwd)


# --------------------------------------------------------------------------------------------- machine
CLOCKS = {"wall": time.perf_counter, "process": time.process_time}
CLOCK_HELP = ("wall: elapsed time (what a user waits; the default). process: this process's CPU time, which "
              "other processes' load hardly changes: use it with --threads 1 on a busy machine (with more "
              "threads it also counts threads that spin while waiting)")


def thread_env(threads: int, base=None) -> dict:
    """A copy of the environment with every thread-count variable (OpenMP, OpenBLAS, MKL, numba) set to
    ``threads``: what a worker process needs to run each library on exactly that many threads."""
    env = dict(os.environ if base is None else base)
    for name in THREAD_VARIABLES:
        env[name] = str(threads)
    return env


def loadavg() -> tuple:
    """The 1-, 5- and 15-minute load averages (``/proc/loadavg``), or ``(nan, nan, nan)`` elsewhere."""
    try:
        with open("/proc/loadavg") as f:
            return tuple(float(v) for v in f.read().split()[:3])
    except (OSError, ValueError):
        nan = float("nan")
        return nan, nan, nan


def cpu_model() -> str:
    """The CPU's model name (from ``/proc/cpuinfo``; ``lscpu`` prints the same) and the number of cores."""
    name = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} logical CPUs"


def measure_peak_gflops(threads: int | None = None, n: int = 2048, repeats: int = 5, clock=time.perf_counter) -> float:
    """This machine's attainable float32 GFLOP/s: the best of ``repeats`` products of two n x n matrices
    with NumPy (``2 n^3`` flops each, BLAS underneath).

    Call it in a process whose BLAS was loaded with the thread count wanted (see :func:`thread_env`);
    ``threads`` is only checked against the environment, it cannot change a loaded BLAS. ``clock``: one
    of :data:`CLOCKS`, the clock the step times use.
    """
    import numpy as np

    if threads is not None and os.environ.get("OPENBLAS_NUM_THREADS") not in (None, str(threads)):
        raise RuntimeError(f"measure_peak_gflops: asked for {threads} threads but this process's BLAS was "
                           f"loaded with OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=out)  # warm-up: thread start, page faults
    best = float("inf")
    for _ in range(repeats):
        t0 = clock()
        np.matmul(a, b, out=out)
        best = min(best, clock() - t0)
    return 2.0 * n ** 3 / best / 1e9


# ------------------------------------------------------------------------------------------ statistics
def summarize(values) -> dict:
    """Median, quartiles (``q1``, ``q3``: the inclusive method), min, max and count of a list of numbers."""
    v = sorted(float(x) for x in values)
    if not v:
        raise ValueError("summarize: no values")
    if len(v) == 1:
        q1 = q3 = v[0]
    else:
        q1, _, q3 = statistics.quantiles(v, n=4, method="inclusive")
    return {"median": statistics.median(v), "q1": q1, "q3": q3, "min": v[0], "max": v[-1], "n": len(v)}


# ---------------------------------------------------------------------------------------------- tables
def format_table(headers, rows, align=None) -> str:
    """A Markdown table (readable as plain text too). ``align``: one of "l"/"r" per column (default: the
    first column left, the others right)."""
    rows = [[str(c) for c in r] for r in rows]
    headers = [str(h) for h in headers]
    if align is None:
        align = ["l"] + ["r"] * (len(headers) - 1)
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells):
        return "| " + " | ".join(c.ljust(w) if a == "l" else c.rjust(w)
                                 for c, w, a in zip(cells, widths, align)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else (":" + "-" * (w + 1))
                          for w, a in zip(widths, align)) + "|"
    return "\n".join([line(headers), rule] + [line(r) for r in rows])


# ------------------------------------------------------------------------------------ worker protocol
def reply(obj) -> None:
    """Worker side: send one answer to the parent."""
    sys.stdout.write(REPLY_MARK + json.dumps(obj) + "\n")
    sys.stdout.flush()


def serve(handlers: dict) -> None:
    """Worker side: answer commands from stdin until "quit" or end of input.

    Each command is a JSON object ``{"cmd": name, ...}``; ``handlers[name](command)`` returns a JSON-able
    dict that is sent back. An exception is sent back as ``{"error": "..."}`` and the worker goes on.
    """
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        command = json.loads(line)
        name = command.get("cmd")
        if name == "quit":
            reply({"ok": True})
            return
        try:
            if name not in handlers:
                raise ValueError(f"unknown command {name!r}; expected one of {sorted(handlers)}")
            reply(handlers[name](command))
        except Exception as exc:  # report it to the parent, which decides whether to stop
            import traceback

            traceback.print_exc(file=sys.stderr)
            reply({"error": f"{type(exc).__name__}: {exc}"})


class WorkerError(RuntimeError):
    """A worker died or answered a command with an error."""


class Worker:
    """Parent side: a child process running :func:`serve`, started as ``python -m <module> <args>`` from
    the repository root with :func:`thread_env` applied.

    ``worker.call("round", steps=10)`` sends a command and returns the worker's answer (a dict).
    ``extra_env``: more environment variables for this worker only (experiments with library settings).
    """

    def __init__(self, name: str, module: str, args, threads: int, extra_env=None):
        self.name = name
        env = thread_env(threads)
        env.update(extra_env or {})
        self.proc = subprocess.Popen([sys.executable, "-m", module, *map(str, args)], cwd=ROOT,
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)

    def call(self, cmd: str, **fields) -> dict:
        self.proc.stdin.write(json.dumps(dict(fields, cmd=cmd)) + "\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith(REPLY_MARK):
                answer = json.loads(line[len(REPLY_MARK):])
                if "error" in answer:
                    raise WorkerError(f"{self.name} worker, command {cmd!r}: {answer['error']}")
                return answer
            sys.stderr.write(f"[{self.name}] {line}")
        raise WorkerError(f"{self.name} worker exited (status {self.proc.wait()}) before answering {cmd!r}; "
                          "its error is printed above")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("quit")
            except (WorkerError, OSError):
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
