"""The matrix products of one ``--preset improved`` MNIST step, timed alone: NumPy's BLAS against PyTorch's.

    python -m benchmarks.products --threads 2 --rounds 5 --repeats 10

Why: that step is dense layers only, so its floating-point work is a list of matrix products (40 of them,
3.76 GFLOP at batch 100) plus memory-bound passes (noise, weight norm, activations, Adam). Whatever
minigrad does around the products, its step cannot take less time than the products themselves take
with the BLAS it calls; PyTorch's step likewise cannot beat PyTorch's products. Timing the two lists alone,
in the same alternating rounds as ``benchmarks.train_step``, tells how far a step-time aim can be met by
work outside the products, and how much of it depends on the BLAS library.

What is timed: one untimed minigrad step runs with ``F.linear``/``@`` instrumented, which records every
product as (rows, inner, columns) and the layout of each operand: the forward ``x W^T`` reads the weight
transposed, the input gradient is ``G W``, the weight gradient ``G^T x`` reads the upstream gradient
transposed. A NumPy worker (the same process kind that runs minigrad, with its thread settings) and a
PyTorch worker each build those operands once, in those layouts, as float32, and then time passes over the
whole list; a round is ``--repeats`` passes, and rounds alternate between the two workers. Nothing else of
the step is timed: no noise, no bias, no activation, no allocation of the operands (the results are
allocated by each library per product, as in a step).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import json
import statistics
import sys
import time

from . import common


# ------------------------------------------------------------------------------------- recording a step
@contextlib.contextmanager
def recording_products():
    """Inside the block, minigrad's ``Linear`` and ``MatMul`` ops append one spec per matrix product they
    compute to the list this yields: ``(m, k, n, a_transposed, b_transposed)`` for ``op(A) @ op(B)`` with
    ``op(A)`` of shape (m, k); a transposed operand is stored as the transpose of what the product reads.
    Only 2-D operands are recorded (every product of a dense step); anything else raises."""
    from minigrad.ops import matmul

    specs = []
    originals = {cls: (cls.__dict__["forward"], cls.__dict__["backward"]) for cls in (matmul.Linear, matmul.MatMul)}

    def two_d(name, *arrays):
        if any(a.ndim != 2 for a in arrays):
            raise ValueError(f"recording_products: {name} with operands of shapes "
                             f"{[tuple(a.shape) for a in arrays]}; only 2-D products are recorded")

    def linear_forward(ctx, x, weight, *bias, _fwd=originals[matmul.Linear][0].__func__):
        two_d("linear", x, weight)
        m, k = x.shape
        specs.append((m, k, weight.shape[0], False, True))            # x @ W^T
        return _fwd(ctx, x, weight, *bias)

    def linear_backward(ctx, grad, _bwd=originals[matmul.Linear][1].__func__):
        x, weight = ctx.saved_arrays
        m, n = grad.shape
        if ctx.needs_input_grad[0]:
            specs.append((m, n, weight.shape[1], False, False))       # dx = G W
        if ctx.needs_input_grad[1]:
            specs.append((n, m, x.shape[1], True, False))             # dW = G^T x
        return _bwd(ctx, grad)

    def matmul_forward(ctx, a, b, _fwd=originals[matmul.MatMul][0].__func__):
        two_d("matmul", a, b)
        specs.append((a.shape[0], a.shape[1], b.shape[1], False, False))
        return _fwd(ctx, a, b)

    def matmul_backward(ctx, grad, _bwd=originals[matmul.MatMul][1].__func__):
        a, b = ctx.saved_arrays
        if ctx.needs_input_grad[0]:
            specs.append((grad.shape[0], grad.shape[1], b.shape[0], False, True))   # dA = G B^T
        if ctx.needs_input_grad[1]:
            specs.append((a.shape[1], a.shape[0], grad.shape[1], True, False))      # dB = A^T G
        return _bwd(ctx, grad)

    matmul.Linear.forward, matmul.Linear.backward = staticmethod(linear_forward), staticmethod(linear_backward)
    matmul.MatMul.forward, matmul.MatMul.backward = staticmethod(matmul_forward), staticmethod(matmul_backward)
    try:
        yield specs
    finally:
        for cls, (fwd, bwd) in originals.items():
            cls.forward, cls.backward = fwd, bwd


def operands(specs, make):
    """The operands of every product, stored as the specs say: ``make(shape)`` returns a new float32 array
    (or tensor) of that shape; a transposed operand is made in the stored shape and read through ``.T``."""
    pairs = []
    for m, k, n, ta, tb in specs:
        a = make((k, m)) if ta else make((m, k))
        b = make((n, k)) if tb else make((k, n))
        pairs.append((a.T if ta else a, b.T if tb else b))
    return pairs


def timed_passes(pairs, passes, clock, sync=lambda: None):
    """Seconds of each of ``passes`` passes over the products (``a @ b`` for every pair)."""
    times = []
    for _ in range(passes):
        sync()
        t0 = clock()
        for a, b in pairs:
            a @ b
        sync()
        times.append(clock() - t0)
    return times


# ---------------------------------------------------------------------------------------------- workers
def numpy_worker(args):
    """Records the step's products with minigrad, then times them with NumPy (this process's BLAS)."""
    import numpy as np

    from .train_step import batches, make_trainer

    trainer = make_trainer("mnist", batch_size=args.batch_size, preset="improved")
    pairs_of_batches = batches(trainer)
    trainer.step(*next(pairs_of_batches))                 # numba loads its cache; the weights are initialised
    with recording_products() as specs:
        trainer.step(*next(pairs_of_batches))
    rng = np.random.default_rng(0)
    products = operands(specs, lambda shape: rng.standard_normal(shape, dtype=np.float32))
    clock = common.CLOCKS[args.clock]
    common.serve({
        "setup": lambda cmd: {"specs": specs, "numpy": np.__version__,
                              "peak_gflops": common.measure_peak_gflops(args.threads, repeats=10, clock=clock)},
        "round": lambda cmd: {"times": timed_passes(products, cmd["passes"], clock)},
    })


def torch_worker(args):
    """Times the products it is sent with PyTorch (no minigrad in this process)."""
    import torch

    torch.set_num_threads(args.threads)
    clock = common.CLOCKS[args.clock]
    state = {}

    def setup(cmd):
        gen = torch.Generator().manual_seed(0)
        state["products"] = operands([tuple(s) for s in cmd["specs"]],
                                     lambda shape: torch.randn(shape, generator=gen, dtype=torch.float32))
        return {"version": torch.__version__}

    def round_(cmd):
        with torch.no_grad():
            return {"times": timed_passes(state["products"], cmd["passes"], clock)}

    common.serve({"setup": setup, "round": round_})


# ---------------------------------------------------------------------------------------------- driver
def build_parser():
    p = argparse.ArgumentParser(prog="python -m benchmarks.products",
                                description="Time the matrix products of one --preset improved MNIST step "
                                            "alone, NumPy (minigrad's BLAS) against PyTorch.")
    p.add_argument("--batch-size", type=int, default=100, help="the step's batch (default 100, the preset's)")
    p.add_argument("--threads", type=int, default=None, help="BLAS and PyTorch threads (default: every core)")
    p.add_argument("--rounds", type=int, default=5, help="rounds per library, alternating (default 5)")
    p.add_argument("--repeats", type=int, default=10, help="passes over the product list per round (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed passes first (default 3)")
    p.add_argument("--clock", choices=sorted(common.CLOCKS), default="wall", help=common.CLOCK_HELP)
    p.add_argument("--json", metavar="PATH", help="also write everything measured to PATH")
    p.add_argument("--worker", choices=("numpy", "torch"), help=argparse.SUPPRESS)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.threads is None:
        import os

        args.threads = os.cpu_count() or 1
    if args.worker == "numpy":
        return numpy_worker(args)
    if args.worker == "torch":
        return torch_worker(args)
    for name in ("batch_size", "threads", "rounds", "repeats"):
        if getattr(args, name) < 1:
            build_parser().error(f"--{name.replace('_', '-')} must be at least 1")
    worker_args = ["--threads", args.threads, "--clock", args.clock, "--batch-size", args.batch_size]
    report = {"command": "python -m benchmarks.products " + " ".join(sys.argv[1:] if argv is None else argv),
              "date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": common.cpu_model(),
              "load_before": common.loadavg()}
    print(f"{report['machine']}; {args.threads} threads; {report['date']}; load average before "
          + " ".join(f"{v:.2f}" for v in report["load_before"]), flush=True)
    with contextlib.ExitStack() as stack:
        workers = {"NumPy": stack.enter_context(common.Worker(
            "numpy", "benchmarks.products", ["--worker", "numpy", *worker_args], args.threads))}
        setup = workers["NumPy"].call("setup")
        specs = setup["specs"]
        labels = {"NumPy": f"NumPy {setup['numpy']} (minigrad's BLAS)"}
        if importlib.util.find_spec("torch") is not None:
            workers["PyTorch"] = stack.enter_context(common.Worker(
                "torch", "benchmarks.products", ["--worker", "torch", *worker_args], args.threads))
            labels["PyTorch"] = f"PyTorch {workers['PyTorch'].call('setup', specs=specs)['version']}"
        else:
            print("PyTorch is not installed: NumPy alone", flush=True)
        for w in workers.values():
            if args.warmup:
                w.call("round", passes=args.warmup)
        rounds = {name: [] for name in workers}
        order = list(workers)
        for r in range(args.rounds):
            for name in (order if r % 2 == 0 else order[::-1]):
                rounds[name].append(workers[name].call("round", passes=args.repeats)["times"])
                time.sleep(0.2)
    report["load_after"] = common.loadavg()
    flops = sum(2 * m * k * n for m, k, n, _, _ in specs)
    peak = setup["peak_gflops"]
    rows, summaries = [], {}
    for name, rs in rounds.items():
        s = common.summarize([t for rnd in rs for t in rnd])
        summaries[name] = s
        rows.append([labels[name], f"{s['median'] * 1e3:.1f}", f"{s['q1'] * 1e3:.1f}-{s['q3'] * 1e3:.1f}",
                     f"{flops / 1e9:.3f}", f"{flops / s['median'] / 1e9:.1f}", f"{100 * flops / s['median'] / 1e9 / peak:.0f}%"])
    print(f"\nthe {len(specs)} matrix products of one --preset improved MNIST step (batch {args.batch_size}), "
          f"{args.rounds} rounds x {args.repeats} passes" + ("" if args.clock == "wall" else f" (clock: {args.clock})"))
    print(common.format_table(["library", "ms per step's products (median)", "IQR", "GFLOP", "GFLOP/s", "% of peak"],
                              rows))
    print(f"peak (best float32 2048^3 NumPy matmul, {args.threads} threads): {peak:.1f} GFLOP/s")
    report.update(specs=specs, flops=flops, peak_gflops=peak, rounds=rounds, summary=summaries)
    if "PyTorch" in rounds:
        ratios = [statistics.median(a) / statistics.median(b) for a, b in zip(rounds["NumPy"], rounds["PyTorch"])]
        report["ratios"] = ratios
        print(f"NumPy / PyTorch, round by round: {', '.join(f'{x:.2f}' for x in ratios)}; median "
              f"{statistics.median(ratios):.2f}")
    print("load average after: " + " ".join(f"{v:.2f}" for v in report["load_after"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
