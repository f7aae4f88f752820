"""The ``--preset improved`` MNIST model and training step written in PyTorch, for
``benchmarks/train_step.py --preset improved`` to time against.

A *benchmark reference*, like ``benchmarks/torch_ssgan.py``: minigrad and ssgan never import it, and it
never imports them. It mirrors, layer for layer and pass for pass, what ``ssgan.steps.improved_step``
computes on MNIST with the models of ``ssgan/models_improved.py`` (the why of every setting is there;
only the what is repeated here):

* Discriminator, on flat (N, 784) images in [0, 1]: ``x + 0.3 * N(0, 1)``; five hidden dense layers
  784-1000-500-250-250-250, each weight-normalised (``w = g * v / ||v||`` per output unit, recomputed on
  every forward, as a weight-norm reparametrisation does), ReLU, then ``+ 0.5 * N(0, 1)``; the output of
  the fifth (before its noise) is the feature vector; a weight-normalised dense layer 250 -> 10 gives the
  class logits. The hidden layers' scales ``g`` are not trained, the output layer's is.
* Generator, on z (N, 100) ~ U(0, 1): dense 100 -> 500 (no bias), batch norm with a shift and no scale
  (eps 1e-6, batch statistics, running statistics updated), softplus; the same 500 -> 500; a dense
  500 -> 784 layer weight-normalised with eps 1e-6 under the square root and a trained scale; sigmoid.
* One step: ``fake = G(z)``; one D pass over ``cat(x_lab, x_unl, fake.detach())`` (fresh noise for every
  row); ``L_D = CE(x_lab) + 0.5 BCE(log Z(x_unl), 1) + 0.5 BCE(log Z(fake), 0)`` with log Z the
  logsumexp of the class logits; Adam on D's trained parameters; the parameter average
  ``a <- a + 1e-4 (p - a)`` over them (the untrained scales are copied, as ``mg.AveragedModel`` does).
  Then a fresh ``fake2 = G(z2)``; D's features of the second unlabeled batch without a graph, and of
  ``fake2`` with D's parameters frozen (``requires_grad_(False)``: no weight gradient of D);
  ``L_G = mean_j (mean f_j(x_unl2) - mean f_j(fake2))^2``; Adam on G. Adam(lr 3e-3, betas (0.5, 0.999))
  for both. The five losses and the labeled batch's correct count are gathered into one float64 vector
  and read once, at the end of the step, as ``ssgan.steps.read_once`` does.

Two differences of form, not of work: the weight norm of D's layers is ``torch._weight_norm``, the
function ``torch.nn.utils.weight_norm`` itself calls (the generator's output layer, which needs eps under
the square root, is written out as ``v * (g / sqrt(sum v^2 + eps))``); and the optimizer is
``torch.optim.Adam``, which adds eps outside the square root where Improved-GAN's Adam (and minigrad's
``eps_inside_sqrt=True``) adds it inside: the same passes over the same arrays.

Run as a worker (``python -m benchmarks.torch_improved --worker ...``) it answers the commands of
``benchmarks/common.py``. ``python -m benchmarks.torch_improved --steps 5`` times a few steps on its own.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks import common
from benchmarks.torch_ssgan import TimedStep

IN_FEATURES, NUM_CLASSES, Z_DIM = 28 * 28, 10, 100
HIDDEN = (1000, 500, 250, 250, 250)
INPUT_NOISE, HIDDEN_NOISE = 0.3, 0.5
G_WIDTH = 500
EMA_RATE = 1e-4
INIT_IMAGES = 500        # images of the data-dependent initialisation
LR, BETAS = 3e-3, (0.5, 0.999)


class WeightNormLinear(nn.Module):
    """A dense layer with ``weight = g * v / ||v||`` (one length per output unit), recomputed on every call.
    Parameters named as a weight-norm reparametrisation names them: ``weight_g`` (out, 1), ``weight_v``
    (out, in), ``bias``."""

    def __init__(self, n_in, n_out, eps=0.0, train_scale=True):
        super().__init__()
        self.eps = eps
        self.bias = nn.Parameter(torch.zeros(n_out))       # registered in minigrad's order: bias, g, v
        self.weight_g = nn.Parameter(torch.ones(n_out, 1), requires_grad=train_scale)
        self.weight_v = nn.Parameter(torch.randn(n_out, n_in) * 0.1)

    def weight(self):
        v, g = self.weight_v, self.weight_g
        if self.eps == 0.0:
            return torch._weight_norm(v, g, 0)
        return v * (g / ((v * v).sum(dim=1, keepdim=True) + self.eps).sqrt())

    def forward(self, x):
        return F.linear(x, self.weight(), self.bias)


class ShiftBatchNorm1d(nn.BatchNorm1d):
    """Batch norm with a learned shift and no scale: ``nn.BatchNorm1d`` without affine parameters, plus a
    ``bias`` (its buffers and its forward are ``nn.BatchNorm1d``'s, which accepts a weight of None)."""

    def __init__(self, num_features, eps=1e-6):
        super().__init__(num_features, eps=eps, affine=False)
        self.bias = nn.Parameter(torch.zeros(num_features))


class Discriminator(nn.Module):
    def __init__(self):
        super().__init__()
        sizes = (IN_FEATURES,) + HIDDEN
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            setattr(self, f"fc{i}", WeightNormLinear(a, b, train_scale=False))
        self.out = WeightNormLinear(sizes[-1], NUM_CLASSES, train_scale=True)

    @staticmethod
    def _noise(x, std):
        return x + std * torch.randn_like(x)

    def forward(self, x):
        h = self._noise(x, INPUT_NOISE)
        features = None
        for i in range(1, len(HIDDEN) + 1):
            features = F.relu(getattr(self, f"fc{i}")(h))
            h = self._noise(features, HIDDEN_NOISE)
        return self.out(h), features

    @torch.no_grad()
    def init_from_batch(self, x):
        """Weight norm's data-dependent initialisation, bottom up in one pass with the noise on: each
        layer's scale and bias are set so that its pre-activations on ``x`` have mean 0 and variance 1."""
        h = self._noise(x, INPUT_NOISE)
        layers = [getattr(self, f"fc{i}") for i in range(1, len(HIDDEN) + 1)] + [self.out]
        for layer in layers:
            t = F.linear(h, layer.weight())
            m, s = t.mean(dim=0), t.std(dim=0, correction=0)
            layer.weight_g.mul_((1.0 / s)[:, None])
            layer.bias.copy_(-m / s)
            h = self._noise(F.relu((t - m) / s), HIDDEN_NOISE)


class Generator(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(Z_DIM, G_WIDTH, bias=False)
        self.bn1 = ShiftBatchNorm1d(G_WIDTH)
        self.fc2 = nn.Linear(G_WIDTH, G_WIDTH, bias=False)
        self.bn2 = ShiftBatchNorm1d(G_WIDTH)
        self.out = WeightNormLinear(G_WIDTH, IN_FEATURES, eps=1e-6, train_scale=True)
        for layer in (self.fc1, self.fc2):
            nn.init.xavier_uniform_(layer.weight)
        nn.init.xavier_uniform_(self.out.weight_v)

    def forward(self, z):
        h = F.softplus(self.bn1(self.fc1(z)))
        h = F.softplus(self.bn2(self.fc2(h)))
        return torch.sigmoid(self.out(h))


class TorchImproved(TimedStep):
    """The models, optimizers, parameter average, random data and the training step (:meth:`step`)."""

    def __init__(self, batch_size=100, device="cpu", n_images=1280, seed=0):
        torch.manual_seed(seed)
        self.device, self.batch_size = torch.device(device), batch_size
        rng = np.random.default_rng(seed)
        n_images = max(n_images, 2 * batch_size)
        self.images = rng.uniform(0, 1, (n_images, IN_FEATURES)).astype(np.float32)
        self.labels = (np.arange(n_images) % NUM_CLASSES).astype(np.int64)
        self.rng = rng
        self.G = Generator().to(self.device)
        self.D = Discriminator().to(self.device)
        init = rng.choice(n_images, min(INIT_IMAGES, n_images), replace=False)
        self.D.init_from_batch(self._batch(init))
        self.d_trained = [p for p in self.D.parameters() if p.requires_grad]
        self.opt_d = torch.optim.Adam(self.d_trained, lr=LR, betas=BETAS)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=LR, betas=BETAS)
        with torch.no_grad():   # the average starts at zero (Improved-GAN's disc_param_avg); scales copied
            self.average = [torch.zeros_like(p) if p.requires_grad else p.detach().clone()
                            for p in self.D.parameters()]

    def indices(self):
        """A labeled and two unlabeled batches of indices (which images does not change the cost)."""
        b = self.batch_size
        labeled = self.rng.choice(len(self.images), b, replace=False)
        return labeled, self.rng.permutation(len(self.images))[:b], self.rng.permutation(len(self.images))[:b]

    def _batch(self, idx):
        return torch.from_numpy(self.images[idx]).to(self.device)

    def _update_average(self):
        with torch.no_grad():
            for a, p in zip(self.average, self.D.parameters()):
                if p.requires_grad:
                    a.lerp_(p, EMA_RATE)        # a + 1e-4 (p - a), one pass
                else:
                    a.copy_(p)

    def step(self, labeled_idx, unlabeled_idx, unlabeled2_idx) -> dict:
        G, D = self.G, self.D
        n_lab, n_unl = len(labeled_idx), len(unlabeled_idx)
        x_lab, x_unl, x_unl2 = self._batch(labeled_idx), self._batch(unlabeled_idx), self._batch(unlabeled2_idx)
        y_lab = torch.from_numpy(self.labels[labeled_idx]).to(self.device)

        # ---- discriminator
        fake = G(torch.rand(n_unl, Z_DIM, device=self.device))
        logits, _ = D(torch.cat([x_lab, x_unl, fake.detach()], dim=0))
        lse_unl = torch.logsumexp(logits[n_lab:n_lab + n_unl], dim=1)
        lse_fake = torch.logsumexp(logits[n_lab + n_unl:], dim=1)
        loss_real = F.binary_cross_entropy_with_logits(lse_unl, torch.ones_like(lse_unl)) * 0.5
        loss_fake = F.binary_cross_entropy_with_logits(lse_fake, torch.zeros_like(lse_fake)) * 0.5
        loss_class = F.cross_entropy(logits[:n_lab], y_lab, reduction="sum") / float(n_lab)
        d_total = loss_class + loss_real + loss_fake
        self.opt_d.zero_grad()
        d_total.backward()
        self.opt_d.step()
        self._update_average()

        # ---- generator: feature matching against the second unlabeled batch
        fake2 = G(torch.rand(len(unlabeled2_idx), Z_DIM, device=self.device))
        with torch.no_grad():
            _, features_real = D(x_unl2)
        for p in self.d_trained:
            p.requires_grad_(False)
        try:
            _, features_fake = D(fake2)
            gap = features_real.mean(dim=0) - features_fake.mean(dim=0)
            g_loss = (gap * gap).mean()
            self.opt_g.zero_grad()
            g_loss.backward()
        finally:
            for p in self.d_trained:
                p.requires_grad_(True)
        self.opt_g.step()

        # the step's scalars, gathered and read once at its end (in float64), as ssgan.steps.read_once
        correct = (logits.detach()[:n_lab].argmax(dim=1) == y_lab).sum()
        return self.read_once(correct, d_loss=d_total, g_loss=g_loss, d_loss_class=loss_class,
                              d_loss_real=loss_real, d_loss_fake=loss_fake)


def build_parser():
    p = argparse.ArgumentParser(prog="python -m benchmarks.torch_improved",
                                description="The --preset improved MNIST training step in PyTorch "
                                            "(the benchmark's reference).")
    p.add_argument("--worker", action="store_true", help="answer benchmark commands on stdin (used by train_step)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    p.add_argument("--clock", choices=sorted(common.CLOCKS), default="wall", help=common.CLOCK_HELP)
    p.add_argument("--steps", type=int, default=5, help="standalone mode: steps to time")
    p.add_argument("--warmup", type=int, default=2, help="standalone mode: untimed steps first")
    return p


def main(argv=None):
    from benchmarks.torch_ssgan import run_worker

    args = build_parser().parse_args(argv)
    run_worker("torch_improved", args, lambda: TorchImproved(batch_size=args.batch_size, device=args.device))


if __name__ == "__main__":
    main()
