"""The ssgan model and training step written in PyTorch, for ``benchmarks/train_step.py`` to time against.

This is a *benchmark reference*, kept inside ``benchmarks/``: minigrad and ssgan never import it, and it
never imports them. It mirrors, layer for layer and pass for pass, what ``ssgan.steps.ssgan_step``
computes with the default preset (read ``ssgan/models.py``, ``ssgan/losses.py`` and the docstring of
``ssgan/train.py`` for the why; only the what is repeated here):

* Generator(z_dim=100, width m): linear (no bias) -> (N, 4m, 4, 4), batch norm, LeakyReLU(0.2); three
  5x5 stride-2 transposed convolutions (padding 2, output_padding 1) to 2m, m and C channels, the first
  two without bias and followed by batch norm and LeakyReLU(0.2), the last with bias, then tanh.
* Discriminator(width w=64): input dropout (p/2.5); conv1 3x3 s2 (bias) LeakyReLU dropout(p); conv2 3x3
  s2, bn, LeakyReLU; conv3 3x3 s2, bn, LeakyReLU, dropout(p); conv4 and conv5 3x3 s1 to 2w, bn,
  LeakyReLU; conv7 3x3 'valid' (bias) LeakyReLU; mean over H, W -> features (N, 2w); linear -> 10 logits.
  Convolutions followed by batch norm have no bias. A generated batch (``real=False``) is normalised with
  its own statistics and leaves the running statistics alone.
* One step: ``fake = G(z)``; D on the 2B real images (labeled + unlabeled, one batch) and on
  ``fake.detach()``; L_D = BCE(logsumexp(l(x_u)), 0.9) + BCE(logsumexp(l(fake)), 0) + CE(l(x_l), y_l);
  Adam step on D. Then D, frozen (``requires_grad_(False)``), runs on ``fake`` through the graph;
  L_G = mean |mean f(x_u) - mean f(fake)|; Adam step on G. Adam(lr 3e-4, betas (0.5, 0.999)) for both.
  The losses and the labeled batch's correct count are read from the device once, at the end of the
  step, as ssgan's ``read_once`` does.

Run as a worker (``python -m benchmarks.torch_ssgan --worker ...``) it answers the commands of
``benchmarks/common.py``. ``python -m benchmarks.torch_ssgan --steps 5`` times a few steps on its own.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks import common

SLOPE = 0.2
DATASET_CHANNELS = {"svhn": 3, "mnist": 1}


class Generator(nn.Module):
    def __init__(self, z_dim=100, width=32, out_channels=3):
        super().__init__()
        m = self.width = width
        self.fc = nn.Linear(z_dim, 4 * 4 * 4 * m, bias=False)
        self.bn0 = nn.BatchNorm2d(4 * m)
        self.deconv1 = nn.ConvTranspose2d(4 * m, 2 * m, 5, stride=2, padding=2, output_padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(2 * m)
        self.deconv2 = nn.ConvTranspose2d(2 * m, m, 5, stride=2, padding=2, output_padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(m)
        self.deconv3 = nn.ConvTranspose2d(m, out_channels, 5, stride=2, padding=2, output_padding=1)

    def forward(self, z):
        h = self.fc(z).reshape(z.shape[0], 4 * self.width, 4, 4)
        h = F.leaky_relu(self.bn0(h), SLOPE)
        h = F.leaky_relu(self.bn1(self.deconv1(h)), SLOPE)
        h = F.leaky_relu(self.bn2(self.deconv2(h)), SLOPE)
        return torch.tanh(self.deconv3(h))


class Discriminator(nn.Module):
    def __init__(self, in_channels=3, width=64, num_classes=10, drop_rate=0.5):
        super().__init__()
        w = width
        self.drop_rate = drop_rate
        self.conv1 = nn.Conv2d(in_channels, w, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(w, w, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(w)
        self.conv3 = nn.Conv2d(w, w, 3, stride=2, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(w)
        self.conv4 = nn.Conv2d(w, 2 * w, 3, stride=1, padding=1, bias=False)
        self.bn4 = nn.BatchNorm2d(2 * w)
        self.conv5 = nn.Conv2d(2 * w, 2 * w, 3, stride=1, padding=1, bias=False)
        self.bn5 = nn.BatchNorm2d(2 * w)
        self.conv7 = nn.Conv2d(2 * w, 2 * w, 3, stride=1, padding=0)
        self.fc = nn.Linear(2 * w, num_classes)

    def _bn(self, bn, x, real):
        if self.training and not real:  # a generated batch: its own statistics, running ones untouched
            return F.batch_norm(x, None, None, bn.weight, bn.bias, training=True, momentum=bn.momentum, eps=bn.eps)
        return bn(x)

    def _dropout(self, x, p):
        return F.dropout(x, p, training=True) if self.training and p > 0 else x

    def forward(self, x, real=True):
        p = self.drop_rate
        h = self._dropout(x, p / 2.5)
        h = self._dropout(F.leaky_relu(self.conv1(h), SLOPE), p)
        h = F.leaky_relu(self._bn(self.bn2, self.conv2(h), real), SLOPE)
        h = F.leaky_relu(self._bn(self.bn3, self.conv3(h), real), SLOPE)
        h = self._dropout(h, p)
        h = F.leaky_relu(self._bn(self.bn4, self.conv4(h), real), SLOPE)
        h = F.leaky_relu(self._bn(self.bn5, self.conv5(h), real), SLOPE)
        h = F.leaky_relu(self.conv7(h), SLOPE)
        features = h.mean(dim=(2, 3))
        return self.fc(features), features


class TimedStep:
    """What both PyTorch references share: timing ``steps`` of ``self.step(*self.indices())``, counting one
    step's FLOPs with PyTorch's counter, and reading a step's scalars once, as ``ssgan.steps.read_once``."""

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def timed_steps(self, steps: int, clock=time.perf_counter) -> list:
        """Seconds of each of ``steps`` consecutive steps (index drawing not included), by ``clock``."""
        times = []
        for _ in range(steps):
            indices = self.indices()
            self.sync()
            t0 = clock()
            self.step(*indices)
            self.sync()
            times.append(clock() - t0)
        return times

    def count_flops(self) -> float:
        """FLOPs of one step as PyTorch's own counter sees them (matrix products and convolutions, forward
        and the backward products actually computed): a cross-check of minigrad's count."""
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            self.step(*self.indices())
        return float(counter.get_total_flops())

    @staticmethod
    def read_once(correct, **losses) -> dict:
        """The losses (0-d tensors) and the correct count in one device read, in float64."""
        with torch.no_grad():
            values = torch.stack([t.detach().double() for t in losses.values()] + [correct.double()]).tolist()
        return dict(zip(losses, values), correct=int(round(values[-1])))


class TorchSSGAN(TimedStep):
    """The models, optimizers, random data and the training step (:meth:`step`)."""

    def __init__(self, dataset_shape="svhn", g_width=32, d_width=64, batch_size=128, device="cpu",
                 n_images=1280, seed=0):
        torch.manual_seed(seed)
        self.device, self.batch_size, self.z_dim = torch.device(device), batch_size, 100
        channels = DATASET_CHANNELS[dataset_shape]
        rng = np.random.default_rng(seed)
        n_images = max(n_images, 2 * batch_size)
        self.images = rng.uniform(-1, 1, (n_images, channels, 32, 32)).astype(np.float32)
        self.labels = (np.arange(n_images) % 10).astype(np.int64)
        self.rng = rng
        self.G = Generator(self.z_dim, g_width, channels).to(self.device)
        self.D = Discriminator(channels, d_width).to(self.device)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=3e-4, betas=(0.5, 0.999))
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=3e-4, betas=(0.5, 0.999))

    def indices(self):
        """A labeled and an unlabeled batch of indices (random: which images does not change the cost)."""
        picked = self.rng.choice(len(self.images), 2 * self.batch_size, replace=False)
        return picked[:self.batch_size], picked[self.batch_size:]

    def step(self, labeled_idx, unlabeled_idx) -> dict:
        G, D = self.G, self.D
        n_lab, n_unl = len(labeled_idx), len(unlabeled_idx)
        real = torch.from_numpy(self.images[np.concatenate([labeled_idx, unlabeled_idx])]).to(self.device)
        y_lab = torch.from_numpy(self.labels[labeled_idx]).to(self.device)
        z = torch.rand(n_unl, self.z_dim, device=self.device) * 2.0 - 1.0
        fake = G(z)

        logits_real, features_real = D(real, real=True)
        logits_fake, _ = D(fake.detach(), real=False)
        lse_real = torch.logsumexp(logits_real[n_lab:], dim=1)
        lse_fake = torch.logsumexp(logits_fake, dim=1)
        loss_real = F.binary_cross_entropy_with_logits(lse_real, torch.full_like(lse_real, 0.9))
        loss_fake = F.binary_cross_entropy_with_logits(lse_fake, torch.zeros_like(lse_fake))
        loss_class = F.cross_entropy(logits_real[:n_lab], y_lab, reduction="sum") / float(n_lab)
        d_total = loss_real + loss_fake + loss_class
        self.opt_d.zero_grad()
        d_total.backward()
        self.opt_d.step()

        params = [p for p in D.parameters() if p.requires_grad]
        for p in params:
            p.requires_grad_(False)
        try:
            _, features_fake = D(fake, real=False)
            g_loss = (features_real[n_lab:].detach().mean(dim=0) - features_fake.mean(dim=0)).abs().mean()
            self.opt_g.zero_grad()
            g_loss.backward()
        finally:
            for p in params:
                p.requires_grad_(True)
        self.opt_g.step()

        correct = (logits_real.detach()[:n_lab].argmax(dim=1) == y_lab).sum()
        return self.read_once(correct, d_loss=d_total, g_loss=g_loss, d_loss_class=loss_class,
                              d_loss_real=loss_real, d_loss_fake=loss_fake)


def _peak_gflops_torch(device="cpu", repeats=5, clock=time.perf_counter) -> float:
    """PyTorch's float32 matmul GFLOP/s at its current thread count (for reference; % of peak uses NumPy's)."""
    n = 8192 if device == "cuda" else 2048
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    out = torch.empty(n, n, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    torch.matmul(a, b, out=out)
    best = float("inf")
    for _ in range(repeats):
        sync()
        t0 = clock()
        torch.matmul(a, b, out=out)
        sync()
        best = min(best, clock() - t0)
    return 2.0 * n ** 3 / best / 1e9


def build_parser():
    p = argparse.ArgumentParser(prog="python -m benchmarks.torch_ssgan",
                                description="The ssgan training step in PyTorch (the benchmark's reference).")
    p.add_argument("--worker", action="store_true", help="answer benchmark commands on stdin (used by train_step)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--dataset-shape", default="svhn", choices=sorted(DATASET_CHANNELS))
    p.add_argument("--g-width", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    p.add_argument("--clock", choices=sorted(common.CLOCKS), default="wall", help=common.CLOCK_HELP)
    p.add_argument("--steps", type=int, default=5, help="standalone mode: steps to time")
    p.add_argument("--warmup", type=int, default=2, help="standalone mode: untimed steps first")
    return p


def run_worker(prog: str, args, make_model) -> None:
    """What both PyTorch references do with their options: time ``make_model()``'s steps standalone, or
    (``--worker``) answer the benchmark's "setup", "warmup" and "round" commands on stdin."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        reason = f"PyTorch {torch.__version__} sees no GPU"
        if not args.worker:
            raise SystemExit(f"{prog}: --device cuda but {reason}")
        common.serve({"setup": lambda cmd: {"unavailable": reason}})  # the parent goes on without PyTorch
        return
    model = make_model()
    clock = common.CLOCKS[args.clock]
    if not args.worker:
        model.timed_steps(args.warmup)
        s = common.summarize(model.timed_steps(args.steps, clock))
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads: median {s['median'] * 1e3:.1f} "
              f"ms/step (min {s['min'] * 1e3:.1f}, max {s['max'] * 1e3:.1f}) over {s['n']} steps")
        return

    def setup(cmd):
        return {"version": torch.__version__, "threads": torch.get_num_threads(),
                "flops": model.count_flops(), "peak_gflops_torch": _peak_gflops_torch(args.device, clock=clock)}

    common.serve({
        "setup": setup,
        "warmup": lambda cmd: {"times": model.timed_steps(cmd["steps"], clock)},
        "round": lambda cmd: {"times": model.timed_steps(cmd["steps"], clock)},
    })


def main(argv=None):
    args = build_parser().parse_args(argv)
    run_worker("torch_ssgan", args, lambda: TorchSSGAN(args.dataset_shape, args.g_width, batch_size=args.batch_size,
                                                       device=args.device))


if __name__ == "__main__":
    main()
