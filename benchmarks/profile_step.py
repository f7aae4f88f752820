"""Where the time of one minigrad ssgan training step goes, as a table.

    python -m benchmarks.profile_step                      # svhn shape, g-width 32, 2 threads, 3 steps
    python -m benchmarks.profile_step --g-width 128 --by-op
    python -m benchmarks.profile_step --cprofile 25        # also cProfile's 25 most expensive functions
    python -m benchmarks.profile_step --preset improved --threads 1 --clock process --by-op   # improved MNIST

The step is the one ``benchmarks/train_step.py`` times (``Run.step`` on random data, built by
:func:`benchmarks.train_step.make_trainer`). After ``--warmup`` untimed steps, ``--steps`` steps run
with :class:`StepProfiler` active, which, for the duration of the profile only, wraps

* the ``forward`` and ``backward`` of every op (every :class:`minigrad.autograd.Function` subclass),
* the convolution kernels (``im2col``, ``col2im``, ``to_channel_rows``, ``from_channel_rows``,
  ``channel_sum`` of the kernel modules),
* ``Function.apply`` (the graph bookkeeping around each forward) and ``autograd.backward`` (the graph
  walk around each backward), and the optimizers' ``step``,
* for ``--preset improved``: the Gaussian noise (``F.gaussian_noise``, and the normal draw inside it),
  the weight-norm hook that recomputes a layer's ``w = g v / ||v||`` before its forward, and the
  averaged model's ``update_parameters``. The first two are *tagged* regions: the ops run inside them,
  and later those ops' backward passes, are charged to them instead of to "elementwise" and "reductions"
  (what the engine does for them - summing a broadcast gradient down to ``g / ||v||``'s shape, adding up
  the three gradient contributions ``v`` receives - stays in the graph row),

with a timer that measures *exclusive* time: a region's time minus that of the timed regions inside it.
So a conv op's own time is its matrix products (the kernels inside it are counted separately), and the
engine's is its bookkeeping alone. With ``--device cuda`` every region waits for the GPU before and after
(so GPU time lands where it is spent, at the price of losing the overlap of launches and work). What
no wrapped region covers - module calls, the step's own code, the batch gather, ``.item()`` - is "other
Python". The wrappers cost a few microseconds per call (a few hundred calls per step), which lands in
the engine's and other rows.

Categories: GEMM (conv2d, conv_transpose2d, linear and matmul ops: their matrix products), unfold/fold
(im2col, col2im), layout (NCHW <-> channel rows copies with the bias, bias sums), batch norm, dropout,
Gaussian noise, weight norm, elementwise (activations, arithmetic), reductions (mean, logsumexp, ...),
losses, shape ops (reshape, indexing, cat), optimizer, parameter average, graph (apply + backward walk)
and other Python.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from collections import defaultdict

from benchmarks import common

CATEGORY_OF_OP = {
    "conv2d": "GEMM", "conv_transpose2d": "GEMM", "linear": "GEMM", "matmul": "GEMM",
    "batch_norm": "batch norm", "dropout": "dropout", "philox_dropout": "dropout",
    "sum": "reductions", "mean": "reductions", "max": "reductions", "logsumexp": "reductions",
    "softmax": "reductions", "log_softmax": "reductions",
    "cross_entropy": "losses", "binary_cross_entropy_with_logits": "losses",
    "reshape": "shape ops", "permute": "shape ops", "getitem": "shape ops", "cat": "shape ops",
    "stack": "shape ops", "pad": "shape ops",
}
CATEGORY_OF_TAG = {"weight norm": "weight norm (recomputing w = g v / ||v||, forward and backward)",
                   "noise": "Gaussian noise (drawing N(0, 1), the add, its backward)"}
CATEGORY_OF_KERNEL = {
    "im2col": "unfold/fold (im2col, col2im)", "col2im": "unfold/fold (im2col, col2im)",
    "to_channel_rows": "layout copies, bias sums", "from_channel_rows": "layout copies, bias sums",
    "channel_sum": "layout copies, bias sums", "normal_noise": CATEGORY_OF_TAG["noise"],
}
CATEGORIES = ("GEMM", "unfold/fold (im2col, col2im)", "layout copies, bias sums", "batch norm", "dropout",
              CATEGORY_OF_TAG["noise"], CATEGORY_OF_TAG["weight norm"],
              "elementwise", "reductions", "losses", "shape ops", "optimizer", "parameter average",
              "graph: Function.apply + backward walk", "other Python (modules, step code, reading the losses)")
KERNEL_NAMES = ("im2col", "col2im", "to_channel_rows", "from_channel_rows", "channel_sum")


class StepProfiler:
    """A context manager that times minigrad's ops, kernels, engine and optimizers by name while active.

    ``times[(kind, name)]`` is the exclusive time in seconds and ``calls[(kind, name)]`` the number of
    calls, ``kind`` one of "forward", "backward", "kernel", "apply", "engine", "optimizer", "average" (the
    averaged model's update) and "tag" (the Python of a tagged region itself).

    Tagged regions: the weight-norm hook (``w = g v / ||v||`` recomputed before a layer's forward) and
    ``F.gaussian_noise``. The ops run inside one are keyed ``(kind, "<op> [<tag>]")``, and so are their
    backward passes later (the tag rides on the op's context), so that weight norm and the noise layers
    are charged with everything they cost.
    """

    def __init__(self, clock=time.perf_counter, sync=None):
        self.clock, self.sync = clock, sync   # sync: waits for the GPU (None on the CPU)
        self.times = defaultdict(float)
        self.calls = defaultdict(int)
        self._children = []      # one entry per open region: the time of the timed regions inside it
        self._tags = []          # the tagged regions open now (innermost last)
        self._undo = []

    def _timed(self, key, fn):
        """``fn`` wrapped with the exclusive timer; ``key``: a (kind, name) pair, or a function of the call's
        arguments that returns one."""
        clock, children, times, calls, sync = self.clock, self._children, self.times, self.calls, self.sync
        key_of = key if callable(key) else (lambda *args: key)

        def timed(*args, **kwargs):
            key = key_of(*args)
            children.append(0.0)
            if sync is not None:
                sync()
            t0 = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                if sync is not None:
                    sync()
                elapsed = clock() - t0
                times[key] += elapsed - children.pop()
                calls[key] += 1
                if children:
                    children[-1] += elapsed
        return timed

    def _op_key(self, kind, name):
        """The key of an op's forward (tagged by the innermost open tag, which is left on its context)
        or backward (tagged as its forward was)."""
        tags = self._tags

        def key(ctx, *args):
            if kind == "forward":
                tag = tags[-1] if tags else None
                if tag is not None:
                    ctx.bench_tag = tag
            else:
                tag = getattr(ctx, "bench_tag", None)
            return (kind, name if tag is None else f"{name} [{tag}]")
        return key

    def _tagged(self, tag, fn):
        tags, timed = self._tags, self._timed(("tag", tag), fn)

        def tagged(*args, **kwargs):
            tags.append(tag)
            try:
                return timed(*args, **kwargs)
            finally:
                tags.pop()
        return tagged

    def _patch(self, owner, attr, value):
        self._undo.append((owner, attr, owner.__dict__[attr]))
        setattr(owner, attr, value)

    def __enter__(self):
        from minigrad import autograd, kernels, optim
        import minigrad.functional  # noqa: F401  (imports every op module, so every op class exists)

        ops, todo = [], [autograd.Function]
        while todo:
            cls = todo.pop()
            todo.extend(cls.__subclasses__())
            ops.append(cls)
        for cls in ops:
            for kind in ("forward", "backward"):
                if cls is not autograd.Function and kind in cls.__dict__:
                    fn = cls.__dict__[kind].__func__
                    self._patch(cls, kind, staticmethod(self._timed(self._op_key(kind, cls.name), fn)))
        apply = autograd.Function.__dict__["apply"].__func__
        self._patch(autograd.Function, "apply", classmethod(self._timed(("apply", ""), apply)))
        self._patch(autograd, "backward", self._timed(("engine", ""), autograd.backward))
        for module_name in ("conv_cpu", "im2col", "conv_cuda"):
            try:
                module = __import__(f"{kernels.__name__}.{module_name}", fromlist=["_"])
            except ImportError:  # conv_cuda.py needs CuPy
                continue
            for name in KERNEL_NAMES:
                if name in module.__dict__:
                    self._patch(module, name, self._timed(("kernel", name), module.__dict__[name]))
        for cls in (optim.Adam, optim.SGD, optim.Optimizer):
            if "step" in cls.__dict__:
                self._patch(cls, "step", self._timed(("optimizer", cls.__name__), cls.__dict__["step"]))
        self._patch_optional("minigrad.random", None, "normal_noise",
                             lambda fn: self._timed(("kernel", "normal_noise"), fn))
        self._patch_optional("minigrad.functional", None, "gaussian_noise", lambda fn: self._tagged("noise", fn))
        self._patch_optional("minigrad.nn.utils", "_WeightNormHook", "__call__",
                             lambda fn: self._tagged("weight norm", fn))
        self._patch_optional("minigrad.averaging", "AveragedModel", "update_parameters",
                             lambda fn: self._timed(("average", "update_parameters"), fn))
        return self

    def _patch_optional(self, module_name, class_name, attr, wrap):
        """Wrap ``module.attr`` (or ``module.class.attr``) where it exists (minigrad's layout may move)."""
        import importlib

        try:
            owner = importlib.import_module(module_name)
        except ImportError:
            return
        owner = getattr(owner, class_name, None) if class_name else owner
        if owner is not None and attr in owner.__dict__:
            self._patch(owner, attr, wrap(owner.__dict__[attr]))

    def __exit__(self, *exc):
        while self._undo:
            owner, attr, value = self._undo.pop()
            setattr(owner, attr, value)
        return False


def category(kind, name):
    if kind == "tag":
        return CATEGORY_OF_TAG[name]
    if kind in ("forward", "backward"):
        if name.endswith("]") and " [" in name:
            return CATEGORY_OF_TAG[name[name.index(" [") + 2:-1]]
        return CATEGORY_OF_OP.get(name, "elementwise")
    if kind == "kernel":
        return CATEGORY_OF_KERNEL[name]
    if kind == "optimizer":
        return "optimizer"
    if kind == "average":
        return "parameter average"
    return "graph: Function.apply + backward walk"


def profile(trainer, pairs, steps, clock=time.perf_counter):
    """Run ``steps`` profiled steps; return (seconds per step, StepProfiler)."""
    from benchmarks.train_step import _sync

    device = trainer.config["device"]
    with StepProfiler(clock, sync=(lambda: _sync(device)) if device == "cuda" else None) as prof:
        _sync(device)
        t0 = clock()
        for _ in range(steps):
            trainer.step(*next(pairs))
        _sync(device)
        total = (clock() - t0) / steps
    return total, prof


def category_table(total, prof, steps):
    """Rows (category, ms per step, % of step), the remainder as "other Python", then the total."""
    per = defaultdict(float)
    for (kind, name), t in prof.times.items():
        per[category(kind, name)] += t / steps
    per[CATEGORIES[-1]] += max(total - sum(per.values()), 0.0)
    rows = [[cat, f"{per[cat] * 1e3:.1f}", f"{100 * per[cat] / total:.1f}%"] for cat in CATEGORIES]
    rows.append(["total (one step)", f"{total * 1e3:.1f}", "100%"])
    return rows


def op_table(prof, steps, total, top=25):
    rows = sorted(prof.times.items(), key=lambda kv: -kv[1])[:top]
    return [[f"{kind} {name}".strip(), str(prof.calls[(kind, name)] // steps), f"{t / steps * 1e3:.2f}",
             f"{100 * t / steps / total:.1f}%"] for (kind, name), t in rows]


def build_parser():
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile_step", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--preset", choices=("default", "improved"), default="default",
                   help="the step profiled: the default preset's or --preset improved's (default: default)")
    p.add_argument("--dataset-shape", choices=("svhn", "mnist"), default=None,
                   help="default svhn; with --preset improved mnist")
    p.add_argument("--g-width", type=int, default=32, help="default preset: generator width (default 32)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the preset's (128; improved: 100)")
    p.add_argument("--steps", type=int, default=3, help="profiled steps, averaged (default 3)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="threads for BLAS and numba (default: every core, %(default)s here)")
    p.add_argument("--clock", choices=sorted(common.CLOCKS), default="wall", help=common.CLOCK_HELP)
    p.add_argument("--by-op", action="store_true", help="also list the most expensive ops and kernels by name")
    p.add_argument("--cprofile", type=int, default=0, metavar="N",
                   help="also run one step under cProfile and print its N most expensive functions (own time)")
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if args.steps < 1 or args.threads < 1:
        build_parser().error("--steps and --threads must be at least 1")
    env = common.thread_env(args.threads)
    if any(os.environ.get(k) != env[k] for k in common.THREAD_VARIABLES):
        # BLAS and numba read their thread counts when they load: start again with the variables set.
        os.execve(sys.executable, [sys.executable, "-m", "benchmarks.profile_step", *argv], env)

    from benchmarks.train_step import batches, make_trainer

    if args.device == "cuda":
        import minigrad as mg

        if not mg.cuda_available():
            print("error: --device cuda: CuPy is not installed or sees no GPU", file=sys.stderr)
            return 2

    load = common.loadavg()
    if args.dataset_shape is None:
        args.dataset_shape = "mnist" if args.preset == "improved" else "svhn"
    trainer = make_trainer(args.dataset_shape, args.g_width, args.batch_size, args.device, preset=args.preset)
    pairs = batches(trainer)
    for _ in range(args.warmup):
        trainer.step(*next(pairs))
    total, prof = profile(trainer, pairs, args.steps, common.CLOCKS[args.clock])

    print(f"{common.cpu_model()}; {args.threads} threads; device {args.device}; load average before "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {args.clock} clock")
    what = (f"--preset improved, {args.dataset_shape}" if args.preset == "improved" else
            f"{args.dataset_shape} shape, generator width {args.g_width}")
    print(f"one minigrad ssgan step ({what}, batch {trainer.config['batch_size']}), mean of {args.steps} "
          f"profiled steps after {args.warmup} warm-up steps:\n")
    print(common.format_table(["category", "ms/step", "% of step"], category_table(total, prof, args.steps)))
    if args.by_op:
        print("\n" + common.format_table(["op / kernel (exclusive time)", "calls/step", "ms/step", "% of step"],
                                         op_table(prof, args.steps, total)))
    if args.cprofile:
        profiler = cProfile.Profile()
        profiler.enable()
        trainer.step(*next(pairs))
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(args.cprofile)
        print("\ncProfile of one step (tottime = own time):\n" + out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
