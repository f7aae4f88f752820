"""Time minigrad's convolution and batch-norm kernels on every layer shape of the ssgan models.

    python -m benchmarks.kernels                              # CPU, every core, PyTorch alongside
    python -m benchmarks.kernels --threads 2 --rounds 5 --repeat 3 --json benchmarks/kernels-cpu.json
    python -m benchmarks.kernels --device cuda
    python -m benchmarks.kernels --only conv2 --rounds 2      # the rows whose layer name contains "conv2"
    python -m benchmarks.kernels --threads 1 --clock process  # a busy machine: CPU time of one thread

What is timed
-------------
For every conv2d / conv_transpose2d layer of the discriminator and the generator (batch 128, NCHW, 32x32
images; :func:`conv_layers`) three passes, separately: the forward pass, the input-gradient and the
weight-gradient (with the bias's gradient when the layer has a bias). The table gives milliseconds,
GFLOP/s, the percentage of this machine's measured FP32 peak and, when PyTorch is importable, PyTorch's
time and the ratio minigrad / PyTorch (below 1: minigrad is faster). Batch-norm rows (:func:`bn_layers`:
a training-mode forward pass, and the backward pass to input, weight and bias) give times and the ratio.

* minigrad: the op's own ``forward`` / ``backward`` (``minigrad.ops.conv``) on raw arrays, with the
  gradients of only the inputs being measured requested - no Tensor or graph bookkeeping around them.
  PyTorch: ``torch.nn.functional.conv2d`` / ``conv_transpose2d`` and ``torch.ops.aten.convolution_backward``
  with the matching output mask; batch norm through ``F.batch_norm`` and ``torch.autograd.grad``.
* FLOPs: 2 * N * Cout * OH * OW * Cin * kH * kW for each of a conv2d's three passes (the same products,
  reordered); for conv_transpose2d the same with its input in the conv2d output's place.
* The peak is measured, not looked up: the best float32 matrix product of two 2048 x 2048 matrices with
  NumPy (OpenBLAS) at the same thread count and with the same clock; on the GPU, CuPy's 8192 x 8192.

How it is timed (``benchmarks/common.py`` explains the worker processes)
--------------------------------------------------------------------------
* minigrad and PyTorch each run in their own worker process, started with every thread-count variable
  set to ``--threads`` (PyTorch also calls ``torch.set_num_threads``), so no two thread pools share one.
* Each worker builds its arrays and runs every row once, untimed (numba loads its cache, oneDNN picks its
  kernels, memory is touched). Then ``--rounds`` rounds alternate between the workers (minigrad, torch,
  torch, minigrad, ...) with a short pause between them; in a round every row runs ``--repeat`` times in
  a row. So a change of the machine's load lands on both sides of a ratio.
* ms: the median of all timed runs of the row. ratio: for each round, minigrad's median over PyTorch's
  median in the neighbouring round; the table shows the median of those ratios (the JSON file keeps
  every time, and the per-round ratios).

OpenBLAS's idle threads spin for a while (2^28 cycles, about 0.1 s, by default) after every matrix
product before they sleep; on a machine with as many threads as cores the numba kernel that runs next
shares its cores with them. ``--openblas-thread-timeout 4`` makes them sleep almost at once (the variable
must be set before NumPy loads, so it is set for the worker processes): comparing the two runs shows
what that contention costs.

The machine's other load changes the numbers: the load average is printed before and after. On a busy
machine, ``--threads 1 --clock process`` compares CPU time of one thread per side, which other
processes disturb much less (but it says nothing about how well either side uses two cores).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import json
import os
import platform
import statistics
import sys
import time

from benchmarks import common

BATCH = 128
PASSES = ("forward", "input grad", "weight grad")


# ------------------------------------------------------------------------------------------ the shapes
def conv_layers(batch=BATCH):
    """The conv / conv_transpose layers of the ssgan models (default preset), as dicts.

    Discriminator (width 64) on 32x32 images with C = 3 (SVHN) or 1 (MNIST); generator (z dim 100, dense to
    4x4x4m) at width m = 32 (the default) and m = 128, ending in C = 3 (SVHN) or 1 (MNIST).
    """
    def conv(name, cin, cout, hw, k, s, p, bias):
        return dict(name=name, op="conv2d", n=batch, cin=cin, cout=cout, h=hw, w=hw, k=k, stride=s, padding=p,
                    output_padding=0, bias=bias)

    def deconv(name, cin, cout, hw, bias):
        return dict(name=name, op="conv_transpose2d", n=batch, cin=cin, cout=cout, h=hw, w=hw, k=5, stride=2,
                    padding=2, output_padding=1, bias=bias)

    layers = [
        conv("D conv1 3->64 32->16 s2", 3, 64, 32, 3, 2, 1, True),
        conv("D conv1 1->64 32->16 s2 (MNIST)", 1, 64, 32, 3, 2, 1, True),
        conv("D conv2 64->64 16->8 s2", 64, 64, 16, 3, 2, 1, False),
        conv("D conv3 64->64 8->4 s2", 64, 64, 8, 3, 2, 1, False),
        conv("D conv4 64->128 4x4", 64, 128, 4, 3, 1, 1, False),
        conv("D conv5 128->128 4x4", 128, 128, 4, 3, 1, 1, False),
        conv("D conv7 128->128 4->2 valid", 128, 128, 4, 3, 1, 0, True),
    ]
    for m in (32, 128):
        layers += [
            deconv(f"G{m} deconv1 {4 * m}->{2 * m} 4->8", 4 * m, 2 * m, 4, False),
            deconv(f"G{m} deconv2 {2 * m}->{m} 8->16", 2 * m, m, 8, False),
            deconv(f"G{m} deconv3 {m}->3 16->32", m, 3, 16, True),
        ]
    layers.append(deconv("G32 deconv3 32->1 16->32 (MNIST)", 32, 1, 16, True))
    return layers


def bn_layers(batch=BATCH):
    """The batch-norm inputs of both models: discriminator bn2..bn5, generator bn0..bn2 at m = 32 and 128."""
    shapes = [("D bn2", (batch, 64, 8, 8)), ("D bn3", (batch, 64, 4, 4)), ("D bn4/bn5", (batch, 128, 4, 4))]
    for m in (32, 128):
        shapes += [(f"G{m} bn0", (batch, 4 * m, 4, 4)), (f"G{m} bn1", (batch, 2 * m, 8, 8)),
                   (f"G{m} bn2", (batch, m, 16, 16))]
    return [dict(name=f"{name} {shape[1]}x{shape[2]}x{shape[3]}", op="batch_norm", shape=shape)
            for name, shape in shapes]


def output_hw(layer):
    k, s, p, q = layer["k"], layer["stride"], layer["padding"], layer["output_padding"]
    if layer["op"] == "conv2d":
        return (layer["h"] + 2 * p - k) // s + 1, (layer["w"] + 2 * p - k) // s + 1
    return (layer["h"] - 1) * s - 2 * p + k + q, (layer["w"] - 1) * s - 2 * p + k + q


def conv_flops(layer):
    """2 x the multiply-adds of one pass."""
    if layer["op"] == "conv2d":
        oh, ow = output_hw(layer)
        return 2 * layer["n"] * layer["cout"] * oh * ow * layer["cin"] * layer["k"] ** 2
    return 2 * layer["n"] * layer["cin"] * layer["h"] * layer["w"] * layer["cout"] * layer["k"] ** 2


def _selected(layers, only):
    return [layer for layer in layers if not only or only in layer["name"]]


def _key(layer, pass_):
    return f"{layer['name']} | {pass_}"


# --------------------------------------------------------------------------------------- the workers
def _serve_rows(rows, sync, clock, extra_setup):
    """Worker side: answer "setup" (run every row once), and "round" (every row ``repeat`` times)."""
    def run(fn, repeat):
        times = []
        for _ in range(repeat):
            sync()
            start = clock()
            fn()
            sync()
            times.append(clock() - start)
        return times

    def setup(cmd):
        for fn in rows.values():
            run(fn, 1)
        return dict(extra_setup(), rows=list(rows))

    common.serve({"setup": setup,
                  "round": lambda cmd: {"times": {key: run(fn, cmd["repeat"]) for key, fn in rows.items()}}})


def minigrad_worker(args):
    import numba
    import numpy as np

    import minigrad.functional as F
    from minigrad import Tensor, kernels, no_grad
    from minigrad.autograd import Context
    from minigrad.ops.conv import Conv2d, ConvTranspose2d

    if args.device == "cuda":
        import cupy as xp

        sync = xp.cuda.Device().synchronize
    else:
        xp = np
        sync = lambda: None  # noqa: E731
    rng = np.random.default_rng(0)

    def array(*shape):
        return xp.asarray(rng.standard_normal(shape, dtype=np.float32))

    rows = {}
    for layer in _selected(conv_layers(), args.only):
        transposed = layer["op"] == "conv_transpose2d"
        cls = ConvTranspose2d if transposed else Conv2d
        w_shape = (layer["cin"], layer["cout"]) if transposed else (layer["cout"], layer["cin"])
        inputs = (array(layer["n"], layer["cin"], layer["h"], layer["w"]), array(*w_shape, layer["k"], layer["k"]))
        inputs += (array(layer["cout"]),) if layer["bias"] else ()
        options = dict(stride=(layer["stride"],) * 2, padding=(layer["padding"],) * 2)
        if transposed:
            options["output_padding"] = (layer["output_padding"],) * 2
        everything = (True,) * len(inputs)
        ctx = Context(cls, everything)   # the forward pass's saved arrays, for timing the backward alone
        grad = array(*cls.forward(ctx, *inputs, **options).shape)

        def forward(cls=cls, inputs=inputs, options=options, everything=everything):
            cls.forward(Context(cls, everything), *inputs, **options)

        def backward(which, cls=cls, ctx=ctx, grad=grad, count=len(inputs)):
            needs = (which == "input",) + (which == "weight",) * (count - 1)

            def run():
                ctx.needs_input_grad = needs
                cls.backward(ctx, grad)
            return run

        for pass_, fn in zip(PASSES, (forward, backward("input"), backward("weight"))):
            rows[_key(layer, pass_)] = fn

    for layer in _selected(bn_layers(), args.only):
        c = layer["shape"][1]
        x = Tensor(array(*layer["shape"]), requires_grad=True)
        weight, bias = Tensor(array(c), requires_grad=True), Tensor(array(c), requires_grad=True)
        mean, var = Tensor(xp.zeros(c, np.float32)), Tensor(xp.ones(c, np.float32))

        def bn_forward(x=x, mean=mean, var=var, weight=weight, bias=bias):
            with no_grad():
                F.batch_norm(x, mean, var, weight, bias, training=True)

        node = F.batch_norm(x, mean, var, weight, bias, training=True)._node  # the op's context
        grad = array(*layer["shape"])
        rows[_key(layer, "forward")] = bn_forward
        rows[_key(layer, "backward")] = lambda node=node, grad=grad: node.fn.backward(node, grad)

    def versions():
        return dict(peak_gflops=_peak(args.device, common.CLOCKS[args.clock]), numpy=np.__version__,
                    numba=numba.__version__,
                    numba_threads=numba.get_num_threads(),
                    threading_layer=numba.threading_layer() if args.device == "cpu" else None,
                    block_bytes=kernels.block_bytes(kernels.for_arrays("conv", xp.zeros(1))))

    _serve_rows(rows, sync, common.CLOCKS[args.clock], versions)


def _peak(device, clock):
    """The best float32 product of two large square matrices, in GFLOP/s, timed with ``clock`` (so that a
    ``--clock process`` run compares CPU time with CPU time): 2048 x 2048 with NumPy on the CPU (the
    same measurement as ``benchmarks/common.py``), 8192 x 8192 with CuPy on the GPU."""
    if device == "cuda":
        import cupy as xp

        n, sync = 8192, xp.cuda.Device().synchronize
    else:
        import numpy as xp

        n, sync = 2048, (lambda: None)
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = (xp.asarray(rng.standard_normal((n, n), dtype=np.float32)) for _ in range(2))
    out = xp.empty((n, n), dtype=np.float32)
    xp.matmul(a, b, out=out)
    best = float("inf")
    for _ in range(5):
        sync()
        start = clock()
        xp.matmul(a, b, out=out)
        sync()
        best = min(best, clock() - start)
    return 2.0 * n ** 3 / best / 1e9


def torch_worker(args):
    import torch

    torch.set_num_threads(args.threads)
    device = "cuda" if args.device == "cuda" else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("benchmarks.kernels: this PyTorch has no CUDA; run with --no-torch")
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    gen = torch.Generator().manual_seed(0)
    functional = torch.nn.functional

    def array(*shape):
        return torch.randn(*shape, generator=gen).to(device)

    rows = {}
    for layer in _selected(conv_layers(), args.only):
        transposed = layer["op"] == "conv_transpose2d"
        w_shape = (layer["cin"], layer["cout"]) if transposed else (layer["cout"], layer["cin"])
        x = array(layer["n"], layer["cin"], layer["h"], layer["w"])
        weight = array(*w_shape, layer["k"], layer["k"])
        bias = array(layer["cout"]) if layer["bias"] else None
        s, p, q = [layer["stride"]] * 2, [layer["padding"]] * 2, [layer["output_padding"]] * 2

        def forward(x=x, weight=weight, bias=bias, s=s, p=p, q=q, transposed=transposed):
            with torch.no_grad():
                if transposed:
                    return functional.conv_transpose2d(x, weight, bias, s, p, q)
                return functional.conv2d(x, weight, bias, s, p)

        grad = array(*forward().shape)

        def backward(mask, x=x, weight=weight, bias=bias, s=s, p=p, q=q, transposed=transposed, grad=grad):
            sizes = [bias.shape[0]] if bias is not None else None
            return lambda: torch.ops.aten.convolution_backward(grad, x, weight, sizes, s, p, [1, 1], transposed,
                                                               q, 1, mask)

        fns = (forward, backward([True, False, False]), backward([False, True, bias is not None]))
        for pass_, fn in zip(PASSES, fns):
            rows[_key(layer, pass_)] = fn

    for layer in _selected(bn_layers(), args.only):
        c = layer["shape"][1]
        x = array(*layer["shape"]).requires_grad_()
        weight, bias = array(c).requires_grad_(), array(c).requires_grad_()
        mean, var = torch.zeros(c, device=device), torch.ones(c, device=device)

        def bn_forward(x=x, mean=mean, var=var, weight=weight, bias=bias):
            with torch.no_grad():
                functional.batch_norm(x, mean, var, weight, bias, training=True)

        y = functional.batch_norm(x, mean, var, weight, bias, training=True)
        grad = array(*layer["shape"])
        rows[_key(layer, "forward")] = bn_forward
        rows[_key(layer, "backward")] = (lambda y=y, x=x, weight=weight, bias=bias, grad=grad:
                                         torch.autograd.grad(y, (x, weight, bias), grad, retain_graph=True))

    _serve_rows(rows, sync, common.CLOCKS[args.clock],
                lambda: dict(version=torch.__version__, torch_threads=torch.get_num_threads()))


# ---------------------------------------------------------------------------------------- the driver
def _table_rows(report):
    """One row per (layer, pass): name, pass, ms, GFLOP/s, % of peak, PyTorch ms, ratio."""
    peak = report["minigrad"]["peak_gflops"]
    flops = {_key(layer, p): conv_flops(layer) for layer in conv_layers() for p in PASSES}
    out = []
    for key, s in report["summary"]["minigrad"].items():
        layer, pass_ = key.split(" | ")
        ms = s["median"] * 1e3
        rate = flops[key] / s["median"] / 1e9 if key in flops else None
        theirs = report["summary"].get("torch", {}).get(key)
        ratio = report.get("ratios", {}).get(key)
        out.append([layer, pass_, f"{ms:.2f}", f"{rate:.1f}" if rate else "",
                    f"{100 * rate / peak:.0f}%" if rate else "",
                    f"{theirs['median'] * 1e3:.2f}" if theirs else "-",
                    f"{statistics.median(ratio):.2f}" if ratio else "-"])
    return out


HEADERS = ["layer", "pass", "minigrad ms", "GFLOP/s", "% of peak", "PyTorch ms", "minigrad / PyTorch"]
ALIGN = ["l", "l", "r", "r", "r", "r", "r"]


def _markdown(report, args):
    m = report["minigrad"]
    torch_line = (f"PyTorch {report['torch']['version']} ({report['torch']['torch_threads']} threads)"
                  if "torch" in report else "PyTorch not compared")
    lines = [
        f"- machine: {report['machine']}; device {args.device}; {args.threads} threads for BLAS, numba "
        f"(threading layer {m.get('threading_layer')}) and PyTorch",
        f"- date: {report['date']}; command: `{report['command']}`",
        f"- load average (1, 5, 15 min) before: {report['load_before']}, after: {report['load_after']}",
        f"- measured FP32 peak (best 2048^3 sgemm, NumPy/OpenBLAS): {m['peak_gflops']:.1f} GFLOP/s; "
        f"OPENBLAS_THREAD_TIMEOUT={os.environ.get('OPENBLAS_THREAD_TIMEOUT', 'unset (28)')}; "
        "conv ops build their column matrices " + (f"in blocks of {m['block_bytes']} bytes" if m["block_bytes"]
                                                     else "for the whole batch at once"),
        f"- {args.rounds} rounds x {args.repeat} runs per row and side, {args.clock} clock; NumPy {m['numpy']}, "
        f"numba {m['numba']}; {torch_line}",
        "",
        common.format_table(HEADERS, _table_rows(report), ALIGN),
    ]
    return "\n".join(lines) + "\n"


def build_parser():
    p = argparse.ArgumentParser(prog="python -m benchmarks.kernels",
                                description="Time minigrad's conv and batch-norm kernels on the ssgan layer shapes.",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Read the module docstring (benchmarks/kernels.py) for what is timed and how.")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="threads for BLAS, numba and PyTorch (default: every core, %(default)s here)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per side, alternating (default %(default)s)")
    p.add_argument("--repeat", type=int, default=3, help="timed runs of each row per round (default %(default)s)")
    p.add_argument("--pause", type=float, default=0.5, help="seconds of rest between rounds (default %(default)s)")
    p.add_argument("--clock", choices=sorted(common.CLOCKS), default="wall", help=common.CLOCK_HELP)
    p.add_argument("--openblas-thread-timeout", type=int, metavar="N",
                   help="set OPENBLAS_THREAD_TIMEOUT=N for the workers: OpenBLAS's idle threads spin for 2^N "
                        "cycles after each product (default 28, about 0.1 s) and slow down the numba kernels "
                        "that run next on the same cores; 4 puts them to sleep almost at once")
    p.add_argument("--block-bytes", type=int, metavar="B",
                   help="set MINIGRAD_CONV_BLOCK_BYTES=B for the workers: bytes of column matrix the conv ops "
                        "build at a time (0: the whole batch; default: the kernel module's, 1 MiB on the CPU)")
    p.add_argument("--only", metavar="TEXT", help="only the rows whose layer name contains TEXT")
    p.add_argument("--json", metavar="PATH", help="also write every time to this JSON file")
    p.add_argument("--markdown", metavar="PATH", help="also write the setting and the table as Markdown")
    p.add_argument("--no-torch", action="store_true", help="do not time PyTorch even when it is installed")
    p.add_argument("--worker", choices=("minigrad", "torch"), help=argparse.SUPPRESS)
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.worker:
        return minigrad_worker(args) if args.worker == "minigrad" else torch_worker(args)
    for name in ("threads", "rounds", "repeat"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if not _selected(conv_layers() + bn_layers(), args.only):
        parser.error(f"--only {args.only!r} matches no layer")

    use_torch = not args.no_torch and importlib.util.find_spec("torch") is not None
    if args.openblas_thread_timeout is not None:
        os.environ["OPENBLAS_THREAD_TIMEOUT"] = str(args.openblas_thread_timeout)  # the workers inherit it
    if args.block_bytes is not None:
        os.environ["MINIGRAD_CONV_BLOCK_BYTES"] = str(args.block_bytes)
    report = dict(command="python -m benchmarks.kernels " + " ".join(sys.argv[1:] if argv is None else argv),
                  date=datetime.datetime.now().isoformat(timespec="seconds"), machine=common.cpu_model(),
                  python=platform.python_version(), options=vars(args), load_before=common.loadavg())
    print(f"{report['machine']}; {args.threads} threads; device {args.device}; {report['date']}")
    print(f"load average before: {' '.join(f'{v:.2f}' for v in report['load_before'])}", flush=True)

    worker_args = ["--device", args.device, "--threads", args.threads, "--clock", args.clock]
    worker_args += ["--only", args.only] if args.only else []
    with contextlib.ExitStack() as stack:
        workers = {"minigrad": stack.enter_context(common.Worker(
            "minigrad", "benchmarks.kernels", ["--worker", "minigrad", *worker_args], args.threads))}
        if use_torch:
            workers["torch"] = stack.enter_context(common.Worker(
                "torch", "benchmarks.kernels", ["--worker", "torch", *worker_args], args.threads))
        for name, worker in workers.items():
            report[name] = worker.call("setup")
            time.sleep(args.pause)
        times = {name: {key: [] for key in report[name]["rows"]} for name in workers}
        rounds = {name: [] for name in workers}
        order = list(workers)
        for r in range(args.rounds):
            for name in (order if r % 2 == 0 else order[::-1]):   # A B B A A B ...
                answer = workers[name].call("round", repeat=args.repeat)["times"]
                rounds[name].append(answer)
                for key, ts in answer.items():
                    times[name][key] += ts
                print(f"  round {r + 1}/{args.rounds} {name} done", file=sys.stderr, flush=True)
                time.sleep(args.pause)
    report["load_after"] = common.loadavg()
    report["times"] = times
    report["summary"] = {name: {key: common.summarize(ts) for key, ts in rows.items()} for name, rows in times.items()}
    if use_torch:
        report["ratios"] = {key: [statistics.median(m[key]) / statistics.median(t[key])
                                  for m, t in zip(rounds["minigrad"], rounds["torch"])]
                            for key in times["minigrad"]}

    print(f"measured FP32 peak: {report['minigrad']['peak_gflops']:.1f} GFLOP/s; "
          + (f"PyTorch {report['torch']['version']}" if use_torch else "PyTorch not compared")
          + f"; {args.rounds} rounds x {args.repeat} runs per row, {args.clock} clock")
    print(common.format_table(HEADERS, _table_rows(report), ALIGN))
    print(f"load average after: {' '.join(f'{v:.2f}' for v in report['load_after'])}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"wrote {args.json}")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(_markdown(report, args))
        print(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
