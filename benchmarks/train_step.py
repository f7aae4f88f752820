"""Time complete ssgan training steps with minigrad, and the same step in PyTorch, on this machine.

    python -m benchmarks.train_step                                  # svhn shape, g-width 32, 2 threads
    python -m benchmarks.train_step --g-width 128 --rounds 5 --steps 10
    python -m benchmarks.train_step --no-torch --steps 3 --rounds 1  # a quick look at minigrad alone
    python -m benchmarks.train_step --json benchmarks/step-cpu-g32.json
    python -m benchmarks.train_step --preset improved --threads 1 --clock process   # improved MNIST step
    python -m benchmarks.train_step --preset improved --dataset-shape svhn --flops-only

What is timed
-------------
Exactly what ``python -m ssgan.train`` runs per step: :meth:`ssgan.train.Run.step` of a real
``Run`` built from the training command line's defaults (``--dataset``, ``--batch-size``,
``--g-width`` and ``--device`` set from this command), on random images of the dataset's shape instead
of the dataset files (:func:`make_trainer`). One step is one discriminator update (D on 2B real and B
generated images, Adam) and one generator update (frozen D on the B generated images, feature matching,
Adam), including the batch gather, reading the losses and the accuracy count; see ``ssgan/train.py``.
The PyTorch side (``benchmarks/torch_ssgan.py``) is the same model and step, layer for layer.

``--preset improved`` times the step of ``python -m ssgan.train --preset improved`` in the same way (the
preset's batch size, 100, unless ``--batch-size`` says otherwise): on MNIST (the default shape with this
preset) random flat (N, 784) images in [0, 1], as the preset's data layout; each step gets a labeled
batch and two unlabeled batches, from two permutations of the training set drawn per epoch, as
``ssgan.train.train`` draws them (:func:`batches`). One step (``ssgan.steps.improved_step``) is one D
update (one pass of the weight-normalised MLP with its Gaussian noise layers over the stacked labeled,
unlabeled and generated batches; Adam; the parameter average) and one G update (a fresh generated batch;
D's features of the second unlabeled batch without a graph and of the generated batch with D frozen;
Adam). Its PyTorch mirror is ``benchmarks/torch_improved.py``. The improved SVHN step
(``--dataset-shape svhn``) has no mirror: minigrad alone is timed, and ``--flops-only`` just counts it.

How it is timed
---------------
* minigrad and PyTorch each run in their own worker process, started with every thread-count variable
  set to ``--threads`` (PyTorch also calls ``torch.set_num_threads``): two thread pools in one process,
  or one process's spinning threads next to another's, would spoil both timings on a small machine.
* Each worker runs ``--warmup`` untimed steps first (numba loads its cache, oneDNN builds its kernels,
  buffers are allocated). Then ``--rounds`` rounds of ``--steps`` timed steps alternate between the two
  workers in the order minigrad, torch, torch, minigrad, minigrad, ... so that a change in the machine's
  load shifts both sides of a pair. Each round's ratio is minigrad's median step time over PyTorch's
  median step time in the neighbouring round; the table gives the median ratio over rounds and its range.
* ms/step: the median over every timed step of every round, with the quartiles (IQR) and min/max.
  images/s = batch size / median step time (one batch of B images per step, as ``ssgan.train`` reports
  it; the step itself touches 2B real and B generated images).

FLOPs, counted (not estimated)
------------------------------
One extra, untimed minigrad step runs with the matrix-product ops instrumented (:func:`counting_flops`).
Every conv2d, conv_transpose2d, linear and matmul contributes ``2 * MACs`` for its forward product, and
``2 * MACs`` again for each backward product actually computed: the input gradient when the op's input
needs one, the weight gradient when its weight needs one (so D's first convolution has no input-gradient
product on real images, and frozen D in the generator update has no weight-gradient products). MACs of a
conv2d = N*Cout*OH*OW * Cin*kH*kW; of a conv_transpose2d = N*Cin*H*W * Cout*kH*kW (its input plays the
conv2d output's role); of a linear = rows * out * in. With ``--preset improved`` the same rules give: no
input-gradient product for D's first layer in the D update (its input is images), none of D's
weight-gradient products in the G update (D is frozen), and none at all for D's class layer there (the
loss is on the features before it). Batch norm, activations, losses, bias additions, weight norm, the
noise and the optimizer are excluded (they are memory-bound and below 1% of the flops).
``--flops-only`` builds the step, counts one step and prints the count (nothing is timed). PyTorch's own counter
(``torch.utils.flop_counter``) is run on the PyTorch step as a cross-check and printed next to it.
The peak is measured here: the best float32 ``numpy.matmul`` of two 2048 x 2048 matrices at the same
thread count (``benchmarks/common.py``), on the GPU a CuPy 8192 x 8192 product; it is measured before and
after the rounds and the larger value is used (a product disturbed by another process only looks slower).
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
import tempfile
import time
from pathlib import Path
from unittest import mock

from benchmarks import common

DATASET_SHAPES = ("svhn", "mnist")
PRESETS = ("default", "improved")
MNIST_FLAT = 28 * 28     # --preset improved on MNIST: the unpadded digits as flat vectors


# -------------------------------------------------------------------------------- the minigrad side
def make_trainer(dataset_shape="svhn", g_width=32, batch_size=None, device="cpu", n_images=1280, seed=0,
                 preset="default"):
    """A real :class:`ssgan.train.Run` (the training command's defaults, with these options) whose
    data are random images of the dataset's shape: ``ssgan.data.load_dataset`` is replaced while the
    run is built, and nothing is read or written on disk.

    The images are what ``ssgan.data`` gives the preset: (N, C, 32, 32) in [-1, 1], or for ``--preset
    improved`` on MNIST the flat layout, (N, 784) in [0, 1]. ``batch_size=None``: the preset's own
    (128; improved: 100)."""
    from ssgan import data, download, settings, train  # first, as ``python -m ssgan.train``: thread variables

    import numpy as np

    info = data.dataset_info(dataset_shape)
    rng = np.random.default_rng(seed)
    argv = ["--dataset", dataset_shape, "--preset", preset, "--g-width", str(g_width), "--device", device,
            "--no-progress"] + ([] if batch_size is None else ["--batch-size", str(batch_size)])
    config = settings.resolve(settings.build_parser().parse_args(argv))
    n_images = max(n_images, 2 * config["batch_size"])
    config["labels"] = min(config["labels"], n_images // 2)

    def random_dataset(name, split="train", *args, layout="padded", **kwargs):
        n = n_images if split == "train" else config["batch_size"]
        if layout == "flat":
            images = rng.uniform(0, 1, (n, MNIST_FLAT))
        else:
            images = rng.uniform(-1, 1, (n, info.num_channels, info.image_size, info.image_size))
        return data.Dataset(images.astype(np.float32), (np.arange(n) % info.num_classes).astype(np.int64))

    with mock.patch.object(data, "load_dataset", random_dataset), \
            mock.patch.object(download, "ensure_files", lambda *a, **k: []):
        return train.setup(config, Path(tempfile.gettempdir()) / "ssgan-benchmark-unused")


def batches(trainer):
    """Endless batches of indices, drawn as ``ssgan.train.train`` draws them: (labeled, unlabeled) pairs,
    and for ``--preset improved`` (labeled, unlabeled, unlabeled2) triples, the second unlabeled batch
    from a second permutation of the training set drawn right after the epoch's first."""
    from ssgan import data

    n, size, rng = len(trainer.train), trainer.config["batch_size"], trainer.state.order_rng
    improved = trainer.config["preset"] == "improved"
    while True:
        order = data.epoch_batches(n, size, rng)
        if not improved:
            for unlabeled_idx in order:
                yield next(trainer.state.cycler), unlabeled_idx
            continue
        for unlabeled_idx, unlabeled2_idx in zip(order, data.epoch_batches(n, size, rng)):
            yield next(trainer.state.cycler), unlabeled_idx, unlabeled2_idx


def _sync(device):
    if device == "cuda":
        import cupy

        cupy.cuda.Device().synchronize()


def timed_steps(trainer, pairs, steps, clock=time.perf_counter):
    """Seconds of each of ``steps`` consecutive ``trainer.step`` calls, by ``clock``."""
    device = trainer.config["device"]
    times = []
    for _ in range(steps):
        indices = next(pairs)
        _sync(device)
        t0 = clock()
        trainer.step(*indices)
        _sync(device)
        times.append(clock() - t0)
    return times


def _macs(cls_name, arrays, out):
    """Multiply-accumulates of one forward product (see the module docstring)."""
    x, weight = arrays[0], arrays[1]
    if cls_name == "Conv2d":              # out (N, Cout, OH, OW), weight (Cout, Cin, kH, kW)
        return out.size * (weight.size // weight.shape[0])
    if cls_name == "ConvTranspose2d":     # x (N, Cin, H, W), weight (Cin, Cout, kH, kW)
        return x.size * (weight.size // weight.shape[0])
    if cls_name == "Linear":              # out (..., out), weight (out, in)
        return out.size * weight.shape[1]
    return out.size * x.shape[-1]          # MatMul: out (..., M, N) from (..., M, K) @ (..., K, N)


@contextlib.contextmanager
def counting_flops():
    """Inside the block, minigrad's matrix-product ops add their FLOPs to the dict this yields:
    ``{"forward": flops, "backward": flops, "by_op": {op name: flops}}``. Only for measuring: the ops'
    ``forward``/``backward`` are wrapped while the block runs and restored after it."""
    from minigrad.ops import conv, matmul

    counts = {"forward": 0, "backward": 0, "by_op": {}}

    def add(name, kind, flops):
        counts[kind] += flops
        counts["by_op"][name] = counts["by_op"].get(name, 0) + flops

    originals = []
    for cls in (conv.Conv2d, conv.ConvTranspose2d, matmul.Linear, matmul.MatMul):
        fwd, bwd = cls.__dict__["forward"], cls.__dict__["backward"]
        originals.append((cls, fwd, bwd))

        def forward(ctx, *arrays, _fwd=fwd.__func__, _cls=cls, **options):
            out = _fwd(ctx, *arrays, **options)
            ctx.bench_macs = _macs(_cls.__name__, arrays, out)
            add(_cls.name, "forward", 2 * ctx.bench_macs)
            return out

        def backward(ctx, grad, _bwd=bwd.__func__, _cls=cls):
            products = int(ctx.needs_input_grad[0]) + int(ctx.needs_input_grad[1])  # input and weight
            add(_cls.name, "backward", 2 * ctx.bench_macs * products)
            return _bwd(ctx, grad)

        cls.forward, cls.backward = staticmethod(forward), staticmethod(backward)
    try:
        yield counts
    finally:
        for cls, fwd, bwd in originals:
            cls.forward, cls.backward = fwd, bwd


def count_step_flops(trainer, pairs) -> dict:
    with counting_flops() as counts:
        trainer.step(*next(pairs))
    return counts


def measure_peak(device, threads, clock=time.perf_counter):
    if device == "cuda":
        import cupy

        n = 8192
        a = cupy.random.standard_normal((n, n), dtype=cupy.float32)
        b = cupy.random.standard_normal((n, n), dtype=cupy.float32)
        best = float("inf")
        for _ in range(4):
            cupy.cuda.Device().synchronize()
            t0 = time.perf_counter()
            cupy.matmul(a, b)
            cupy.cuda.Device().synchronize()
            best = min(best, time.perf_counter() - t0)
        return 2.0 * n ** 3 / best / 1e9
    return common.measure_peak_gflops(threads, repeats=10, clock=clock)


def minigrad_worker(args):
    """The worker process: one Run, answering "setup", "flops", "peak", "warmup" and "round"
    (benchmarks/common.py)."""
    import minigrad as mg
    import numba
    import numpy as np

    if args.device == "cuda" and not mg.cuda_available():
        common.serve({"setup": lambda cmd: {"error": "--device cuda: CuPy is not installed or sees no GPU"}})
        return
    trainer = make_trainer(args.dataset_shape, args.g_width, args.batch_size, args.device, preset=args.preset)
    pairs = batches(trainer)
    clock = common.CLOCKS[args.clock]

    def flops(cmd):
        counts = count_step_flops(trainer, pairs)   # also the first warm-up step (numba loads its cache)
        return {"flops": counts["forward"] + counts["backward"], "flops_forward": counts["forward"],
                "flops_by_op": counts["by_op"], "batch_size": trainer.config["batch_size"]}

    def setup(cmd):
        return dict(flops(cmd), peak_gflops=measure_peak(args.device, args.threads, clock),
                    numpy=np.__version__, numba=numba.__version__, numba_threads=numba.get_num_threads(),
                    minigrad=getattr(mg, "__version__", "?"),
                    env={k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT")})

    common.serve({
        "setup": setup,
        "flops": flops,
        "peak": lambda cmd: {"peak_gflops": measure_peak(args.device, args.threads, clock)},
        "warmup": lambda cmd: {"times": timed_steps(trainer, pairs, cmd["steps"], clock)},
        "round": lambda cmd: {"times": timed_steps(trainer, pairs, cmd["steps"], clock)},
    })


# ------------------------------------------------------------------------------------------ the driver
# The PyTorch mirror of each (preset, dataset shape); the improved SVHN step has none (minigrad alone).
TORCH_MIRRORS = {("default", "svhn"): "benchmarks.torch_ssgan", ("default", "mnist"): "benchmarks.torch_ssgan",
                 ("improved", "mnist"): "benchmarks.torch_improved"}


def build_parser():
    p = argparse.ArgumentParser(prog="python -m benchmarks.train_step",
                                description="Time complete ssgan training steps, minigrad vs PyTorch.",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Read the module docstring (benchmarks/train_step.py) for what is timed "
                                       "and how FLOPs are counted.")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--preset", choices=PRESETS, default="default",
                   help="default: the seed model's step (PyTorch mirror: benchmarks/torch_ssgan.py); improved: "
                        "Improved-GAN's step (mirror of the MNIST step: benchmarks/torch_improved.py; the SVHN "
                        "step is timed for minigrad alone). Default: default")
    p.add_argument("--dataset-shape", choices=DATASET_SHAPES, default=None,
                   help="svhn: 3x32x32 images; mnist: 1x32x32, or flat 784-vectors with --preset improved "
                        "(default svhn; with --preset improved mnist)")
    p.add_argument("--g-width", type=int, default=32,
                   help="default preset: generator width m (default 32; 128 is the other width measured)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the preset's (128; improved: 100)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per round (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before the first round (default 3)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per framework, alternating (default 3)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="threads for BLAS, numba and PyTorch (default: every core, %(default)s here)")
    p.add_argument("--pause", type=float, default=0.5,
                   help="seconds of rest between rounds, so the last round's threads are asleep (default 0.5)")
    p.add_argument("--clock", choices=sorted(common.CLOCKS), default="wall", help=common.CLOCK_HELP)
    p.add_argument("--flops-only", action="store_true",
                   help="build the step, count minigrad's FLOPs of one step, print them and exit (nothing timed)")
    p.add_argument("--json", metavar="PATH", help="also write every measurement to this JSON file")
    p.add_argument("--no-torch", action="store_true", help="do not time PyTorch even when it is installed")
    p.add_argument("--minigrad-env", action="append", default=[], metavar="NAME=VALUE",
                   help="an environment variable for the minigrad worker only, e.g. OMP_WAIT_POLICY=passive "
                        "(for experiments with library settings; may be repeated)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return p


def _worker_args(args):
    return (["--worker", "--device", args.device, "--preset", args.preset, "--dataset-shape", args.dataset_shape,
             "--g-width", args.g_width, "--threads", args.threads, "--clock", args.clock]
            + ([] if args.batch_size is None else ["--batch-size", args.batch_size]))


def _torch_worker_args(args, batch_size):
    """The command line of the PyTorch worker (``batch_size``: the one minigrad's run resolved)."""
    common_args = ["--worker", "--device", args.device, "--batch-size", batch_size, "--threads", args.threads,
                   "--clock", args.clock]
    if args.preset == "improved":
        return common_args
    return common_args + ["--dataset-shape", args.dataset_shape, "--g-width", args.g_width]


def _step_name(args, batch_size):
    if args.preset == "improved":
        return f"ssgan --preset improved step, {args.dataset_shape}, batch {batch_size}"
    return f"ssgan step, {args.dataset_shape} shape, batch {batch_size}, generator width {args.g_width}"


def _row(name, times, flops, peak, batch_size):
    s = common.summarize(times)
    med = s["median"]
    rate = flops / med / 1e9
    return [name, f"{med * 1e3:.1f}", f"{s['q1'] * 1e3:.1f}-{s['q3'] * 1e3:.1f}",
            f"{s['min'] * 1e3:.1f}-{s['max'] * 1e3:.1f}", f"{batch_size / med:.0f}", f"{flops / 1e9:.2f}",
            f"{rate:.1f}", f"{100 * rate / peak:.0f}%"], s


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.worker:
        return minigrad_worker(args)
    for name in ("steps", "rounds", "threads", "batch_size", "g_width"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            build_parser().error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0:
        build_parser().error("--warmup must be at least 0")
    if args.dataset_shape is None:
        args.dataset_shape = "mnist" if args.preset == "improved" else "svhn"

    try:
        extra_env = dict(item.split("=", 1) for item in args.minigrad_env)
    except ValueError:
        build_parser().error(f"--minigrad-env takes NAME=VALUE, got {args.minigrad_env}")
    mirror = TORCH_MIRRORS.get((args.preset, args.dataset_shape))
    use_torch = (not args.no_torch and not args.flops_only and mirror is not None
                 and importlib.util.find_spec("torch") is not None)
    command = "python -m benchmarks.train_step " + " ".join(sys.argv[1:] if argv is None else argv)
    report = {"command": command, "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "machine": common.cpu_model(), "python": platform.python_version(), "options": vars(args),
              "load_before": common.loadavg()}
    print(f"{report['machine']}; {args.threads} threads; device {args.device}; {report['date']}")
    print(f"load average before: {report['load_before'][0]:.2f} {report['load_before'][1]:.2f} "
          f"{report['load_before'][2]:.2f}", flush=True)

    with contextlib.ExitStack() as stack:
        workers = {"minigrad": stack.enter_context(
            common.Worker("minigrad", "benchmarks.train_step", _worker_args(args), args.threads, extra_env))}
        try:
            report["minigrad"] = workers["minigrad"].call("flops" if args.flops_only else "setup")
        except common.WorkerError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        batch_size = report["minigrad"]["batch_size"]
        if args.flops_only:
            return _print_flops(args, report)
        if mirror is None and not args.no_torch:
            print(f"PyTorch not compared: there is no PyTorch mirror of the --preset {args.preset} "
                  f"{args.dataset_shape} step (minigrad alone)", flush=True)
        if use_torch:
            workers["torch"] = stack.enter_context(
                common.Worker("torch", mirror, _torch_worker_args(args, batch_size), args.threads))
            report["torch"] = workers["torch"].call("setup")
            if "unavailable" in report["torch"]:
                print(f"PyTorch not compared: {report['torch'].pop('unavailable')}", flush=True)
                workers.pop("torch").close()
                del report["torch"]
                use_torch = False
        for name, w in workers.items():
            report[name]["warmup_times"] = w.call("warmup", steps=args.warmup)["times"] if args.warmup else []
            time.sleep(args.pause)

        rounds = {name: [] for name in workers}
        order = list(workers)
        for r in range(args.rounds):
            for name in (order if r % 2 == 0 else order[::-1]):   # A B B A A B ...
                rounds[name].append(workers[name].call("round", steps=args.steps)["times"])
                print(f"  round {r + 1}/{args.rounds} {name}: median "
                      f"{statistics.median(rounds[name][-1]) * 1e3:.1f} ms/step", file=sys.stderr, flush=True)
                time.sleep(args.pause)
        report["minigrad"]["peak_gflops_after"] = workers["minigrad"].call("peak")["peak_gflops"]
    report["load_after"] = common.loadavg()

    peak = max(report["minigrad"]["peak_gflops"], report["minigrad"]["peak_gflops_after"])
    flops = report["minigrad"]["flops"]
    headers = ["framework", "ms/step (median)", "IQR", "min-max", "images/s", "GFLOP/step", "GFLOP/s", "% of peak"]
    rows, summaries = [], {}
    for name in rounds:
        all_times = [t for rnd in rounds[name] for t in rnd]
        label = name if name == "minigrad" else f"PyTorch {report['torch']['version']}"
        row, summaries[name] = _row(label, all_times, flops, peak, batch_size)
        rows.append(row)
    report["rounds"] = rounds
    report["summary"] = summaries

    print(f"\n{_step_name(args, batch_size)}, "
          f"device {args.device}: {args.rounds} rounds x {args.steps} steps after {args.warmup} warm-up steps"
          + ("" if args.clock == "wall" else f" (clock: {args.clock})"))
    print(common.format_table(headers, rows))
    print(f"\nGFLOP/step counted from minigrad's step: {flops / 1e9:.2f} "
          f"(forward products {report['minigrad']['flops_forward'] / 1e9:.2f}); "
          + (f"PyTorch's flop counter on its step: {report['torch']['flops'] / 1e9:.2f}. " if use_torch else "")
          + f"Peak (best float32 matmul, {args.threads} threads): {peak:.1f} GFLOP/s"
          + (f" (PyTorch's matmul: {report['torch']['peak_gflops_torch']:.1f})" if use_torch else "")
          + "; minigrad worker's " + ", ".join(f"{k}={v}" for k, v in report["minigrad"]["env"].items()))
    if use_torch:
        ratios = [statistics.median(a) / statistics.median(b) for a, b in zip(rounds["minigrad"], rounds["torch"])]
        report["ratios"] = ratios
        print(f"minigrad / PyTorch, round by round: {', '.join(f'{x:.2f}' for x in ratios)}; median "
              f"{statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f}); "
              f"below 1: minigrad is faster")
    print(f"load average after: {report['load_after'][0]:.2f} {report['load_after'][1]:.2f} "
          f"{report['load_after'][2]:.2f}")
    _write_json(args, report)
    return 0


def _write_json(args, report):
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"wrote {args.json}")


def _print_flops(args, report):
    """--flops-only: the counted FLOPs of one step, in all and by op."""
    m = report["minigrad"]
    print(f"\n{_step_name(args, m['batch_size'])}: {m['flops'] / 1e9:.4f} GFLOP/step counted "
          f"({m['flops']} FLOPs; forward products {m['flops_forward'] / 1e9:.4f}, backward products "
          f"{(m['flops'] - m['flops_forward']) / 1e9:.4f})")
    print("by op: " + ", ".join(f"{name} {v / 1e9:.4f}" for name, v in sorted(m["flops_by_op"].items())))
    _write_json(args, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
