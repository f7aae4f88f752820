"""The generator and the discriminator of the semi-supervised GAN (the blog notebook's models on minigrad).

Shapes (NCHW; ``m`` is the generator's width, ``w`` the discriminator's, C the image channels)::

    Generator(z_dim=100, width=m=32)                    Discriminator(width=w=64)
    z (N, 100)                                           x (N, C, 32, 32)   -> dropout(p/2.5)
    fc -> (N, 4m*4*4) -> reshape (N, 4m, 4, 4)           conv1 3x3 s2  -> (N, w, 16, 16)  lrelu, dropout(p)
       bn0, lrelu                                        conv2 3x3 s2  -> (N, w, 8, 8)    bn2, lrelu
    deconv1 5x5 s2 -> (N, 2m, 8, 8)   bn1, lrelu         conv3 3x3 s2  -> (N, w, 4, 4)    bn3, lrelu, dropout(p)
    deconv2 5x5 s2 -> (N, m, 16, 16)  bn2, lrelu         conv4 3x3 s1  -> (N, 2w, 4, 4)   bn4, lrelu
    deconv3 5x5 s2 -> (N, C, 32, 32)  tanh               conv5 3x3 s1  -> (N, 2w, 4, 4)   bn5, lrelu
                                                         conv7 3x3 valid -> (N, 2w, 2, 2) lrelu (no bn)
                                                         mean over H, W -> features (N, 2w)
                                                         fc -> class logits (N, 10)

``lrelu`` is LeakyReLU(0.2) everywhere. The transposed convolutions use padding 2 and output_padding 1,
which doubles the size exactly (out = (in - 1) * 2 - 2 * 2 + 5 + 1 = 2 * in), like TensorFlow's 'same'.
The discriminator has no layer 6: the notebook computed a stride-2 conv6 but fed conv7 from layer 5 and
never used conv6's output, so it is left out. conv7 has no batch norm on purpose: batch norm would pin
each feature's batch mean to its ``bias`` parameter, and feature matching works only if the feature means
can differ between data and generated batches.

The real/fake logit is not a separate output: it is ``logsumexp(class_logits, dim=1)`` (see
``ssgan/losses.py``).

Choices made here where the design is silent
--------------------------------------------
* Layers directly followed by batch norm have no bias (batch norm subtracts the mean, so a bias there is
  dead weight; its ``bias``, beta, plays that role). The others (the discriminator's conv1, conv7 and fc,
  the generator's last deconvolution) have biases. Weights start from PyTorch's default initialisation.
* **Batch norm and generated images.** In training mode every batch is normalised with its own
  statistics, as usual. The discriminator's *running* statistics (what evaluation uses) are updated only
  by batches of real images: ``D(x, real=False)`` normalises a generated batch with that batch's
  statistics and leaves the running statistics alone (``F.batch_norm`` with ``running_mean`` and
  ``running_var`` set to None). So at test time the discriminator normalises with statistics of real
  digits only; letting generated batches into the running averages would make test-time normalisation
  depend on how good the generator happened to be. The generator's batch norm is ordinary (it only ever
  sees its own activations).
* ``notebook=True`` (``--preset notebook``) reproduces the notebook's discriminator for comparison:
  batch norm *always* uses the current batch's statistics, even in evaluation mode (the notebook passed
  ``training=True`` to every discriminator batch norm), and conv2's batch norm is computed but not used
  (the notebook's ``relu2 = tf.maximum(alpha * x2, x2)`` applies the LeakyReLU to ``x2``, not to ``bn2``),
  so conv2 keeps its bias there. The notebook's dropout was inactive (``tf.layers.dropout`` defaults to
  ``training=False``); pass ``drop_rate=0`` for that.
"""
from __future__ import annotations

import numpy as np

import minigrad.functional as F
from minigrad import nn

SLOPE = 0.2  # LeakyReLU's negative slope, everywhere


class Generator(nn.Module):
    """Noise (N, z_dim) -> images (N, out_channels, 32, 32) in [-1, 1]."""

    def __init__(self, z_dim: int = 100, width: int = 32, out_channels: int = 3):
        super().__init__()
        if min(z_dim, width, out_channels) < 1:
            raise ValueError(f"Generator: z_dim, width and out_channels must be positive, got {z_dim}, {width}, "
                             f"{out_channels}")
        self.z_dim, self.width, self.out_channels = z_dim, width, out_channels
        m = width
        self.fc = nn.Linear(z_dim, 4 * 4 * 4 * m, bias=False)
        self.bn0 = nn.BatchNorm2d(4 * m)
        self.deconv1 = nn.ConvTranspose2d(4 * m, 2 * m, 5, stride=2, padding=2, output_padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(2 * m)
        self.deconv2 = nn.ConvTranspose2d(2 * m, m, 5, stride=2, padding=2, output_padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(m)
        self.deconv3 = nn.ConvTranspose2d(m, out_channels, 5, stride=2, padding=2, output_padding=1)

    def forward(self, z):
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"Generator: z must have shape (N, {self.z_dim}), got {z.shape}")
        h = self.fc(z).reshape(z.shape[0], 4 * self.width, 4, 4)
        h = F.leaky_relu(self.bn0(h), SLOPE)
        h = F.leaky_relu(self.bn1(self.deconv1(h)), SLOPE)
        h = F.leaky_relu(self.bn2(self.deconv2(h)), SLOPE)
        return F.tanh(self.deconv3(h))

    def extra_repr(self):
        return f"z_dim={self.z_dim}, width={self.width}, out_channels={self.out_channels}"


class Discriminator(nn.Module):
    """Images (N, in_channels, 32, 32) -> ``(class_logits (N, num_classes), features (N, 2 * width))``.

    ``forward(x, real=True)``: pass ``real=False`` for a batch of generated images, so that batch norm
    leaves its running statistics alone (see the module docstring). ``drop_rate`` is the dropout
    probability after conv1 and conv3; the input's is ``drop_rate / 2.5``.
    """

    def __init__(self, in_channels: int = 3, width: int = 64, num_classes: int = 10, drop_rate: float = 0.5,
                 notebook: bool = False, input_noise: float = 0.0):
        super().__init__()
        if min(in_channels, width, num_classes) < 1:
            raise ValueError(f"Discriminator: in_channels, width and num_classes must be positive, got "
                             f"{in_channels}, {width}, {num_classes}")
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"Discriminator: drop_rate must be in [0, 1), got {drop_rate}")
        self.in_channels, self.width, self.num_classes = in_channels, width, num_classes
        if not 0.0 <= input_noise < float("inf"):
            raise ValueError(f"Discriminator: input_noise must be a finite number >= 0, got {input_noise}")
        self.drop_rate, self.notebook, self.input_noise = float(drop_rate), bool(notebook), float(input_noise)
        w = width
        self.conv1 = nn.Conv2d(in_channels, w, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(w, w, 3, stride=2, padding=1, bias=self.notebook)  # notebook: bn2 unused
        self.bn2 = nn.BatchNorm2d(w)
        self.conv3 = nn.Conv2d(w, w, 3, stride=2, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(w)
        self.conv4 = nn.Conv2d(w, 2 * w, 3, stride=1, padding=1, bias=False)
        self.bn4 = nn.BatchNorm2d(2 * w)
        self.conv5 = nn.Conv2d(2 * w, 2 * w, 3, stride=1, padding=1, bias=False)
        self.bn5 = nn.BatchNorm2d(2 * w)
        self.conv7 = nn.Conv2d(2 * w, 2 * w, 3, stride=1, padding=0)  # 'valid': 4x4 -> 2x2
        self.fc = nn.Linear(2 * w, num_classes)

    @property
    def num_features(self) -> int:
        return 2 * self.width

    def _bn(self, bn, x, real):
        """Batch norm with the choice of statistics explained in the module docstring."""
        if self.notebook or (self.training and not real):
            # the batch's own statistics; the running ones are neither used nor updated
            return F.batch_norm(x, None, None, bn.weight, bn.bias, training=True, momentum=bn.momentum, eps=bn.eps)
        # real images in training mode (batch statistics, running ones updated), or evaluation mode (running
        # statistics): the layer itself, which also counts the batch and honours momentum=None
        return bn(x)

    def _dropout(self, x, p):
        return F.dropout(x, p, training=True) if self.training and p > 0 else x

    def forward(self, x, real: bool = True):
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[2:] != (32, 32):
            raise ValueError(f"Discriminator: x must have shape (N, {self.in_channels}, 32, 32), got {x.shape}")
        p = self.drop_rate
        h = F.gaussian_noise(x, self.input_noise, training=self.training) if self.input_noise > 0 else x
        h = self._dropout(h, p / 2.5)
        h = self._dropout(F.leaky_relu(self.conv1(h), SLOPE), p)
        h = self.conv2(h)
        h = F.leaky_relu(h if self.notebook else self._bn(self.bn2, h, real), SLOPE)
        h = F.leaky_relu(self._bn(self.bn3, self.conv3(h), real), SLOPE)
        h = self._dropout(h, p)
        h = F.leaky_relu(self._bn(self.bn4, self.conv4(h), real), SLOPE)
        h = F.leaky_relu(self._bn(self.bn5, self.conv5(h), real), SLOPE)
        h = F.leaky_relu(self.conv7(h), SLOPE)
        features = h.mean(dim=(2, 3))          # global average pooling: (N, 2w, 2, 2) -> (N, 2w)
        return self.fc(features), features

    def extra_repr(self):
        return (f"in_channels={self.in_channels}, width={self.width}, num_classes={self.num_classes}, "
                f"drop_rate={self.drop_rate}, notebook={self.notebook}"
                + (f", input_noise={self.input_noise}" if self.input_noise else ""))


# --------------------------------------------------------------------- batch-norm statistics for evaluation
CALIBRATION_IMAGES = 10_000   # training images the evaluation statistics are computed on (or all, if fewer)


def calibration_indices(num_train: int, seed: int) -> np.ndarray:
    """The training images (sorted indices) whose statistics :func:`recalibrated` computes: a fixed subset
    of :data:`CALIBRATION_IMAGES`, drawn from ``seed`` by a generator of its own (the run's random state is
    not touched, so training is the same with or without evaluation)."""
    n = min(CALIBRATION_IMAGES, num_train)
    return np.sort(np.random.default_rng([seed, 0xB17]).choice(num_train, n, replace=False))


def recalibrated(D: "Discriminator", images: np.ndarray, batch_size: int = 500, device: str = "cpu",
                 dropout: bool = False):
    """A copy of the discriminator ``D``, in evaluation mode, whose batch-norm running statistics are
    recomputed on ``images`` with dropout and input noise *off*; ``D`` itself is left as it was.

    Why: the discriminator's dropout sits in front of batch norm (after conv1 and conv3, and on the input).
    In training, each batch norm normalises activations computed from dropped-out inputs, and its running
    statistics average those; in evaluation dropout is off, the activations have another variance, and the
    running statistics no longer fit them (the "variance shift" of Li et al., 2019, *Understanding the
    Disharmony between Dropout and Batch Normalization*). The gap grows as the weights grow: on MNIST with
    100 labels the same weights classify the test set several points better with statistics computed
    without dropout (``benchmarks/RESULTS.md``, "Why the default run decays"). The averaged discriminator
    (``--ema-rate``) needs this too: its buffers are the raw model's statistics, which do not fit the
    averaged weights.

    The statistics are those of PyTorch's ``torch.optim.swa_utils.update_bn`` (each batch norm's running
    mean and variance reset, then the cumulative average over the batches, momentum ``None``), computed in
    training mode on real images (``real=True``) in batches of ``batch_size``; only dropout and noise are
    turned off (``dropout=True`` leaves them on, as ``update_bn`` in training mode would: only for
    comparison, ``benchmarks/bn_statistics.py``). The preset ``notebook`` (batch statistics always) and
    models without batch norm get an unchanged copy.
    """
    import copy

    import minigrad as mg

    model = copy.deepcopy(D)
    layers = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if getattr(model, "notebook", False) or not layers:
        return model.eval()
    momenta = [bn.momentum for bn in layers]
    stochastic = model.drop_rate, model.input_noise
    for bn in layers:
        bn.reset_running_stats()
        bn.momentum = None
    if not dropout:
        model.drop_rate, model.input_noise = 0.0, 0.0
    model.train()
    with mg.no_grad():
        for start in range(0, len(images), batch_size):
            model(mg.tensor(images[start:start + batch_size], device=device), real=True)
    for bn, momentum in zip(layers, momenta):
        bn.momentum = momentum
    model.drop_rate, model.input_noise = stochastic
    return model.eval()


# ------------------------------------------------------------------------------------ one builder for all
DROP_RATE = 0.5          # the seed discriminator's dropout (0 under --preset notebook: the notebook's was inactive)
EMA_RATE = 1e-4          # --preset improved: a <- a + 1e-4 (p - a) after every discriminator step


def build_models(config: dict, num_channels: int, num_classes: int, input_shape: tuple) -> dict:
    """The networks of a run, by name: ``"D"`` always, ``"G"`` unless ``supervised_only``, and
    ``"D_ema"`` (the averaged discriminator, ``mg.AveragedModel``) under ``--preset improved`` and, with
    ``--ema-rate R > 0``, under the default preset.
    ``input_shape`` is one image's shape as the data gives it ((784,) for improved MNIST, else (C, 32, 32)).
    Training and ``ssgan.evaluate`` both build their models here, so a checkpoint always fits.
    """
    import minigrad as mg

    from .models_improved import MnistDiscriminator, MnistGenerator, SvhnDiscriminator, SvhnGenerator

    preset = config["preset"]
    models = {}
    if preset == "improved":
        if config["dataset"] == "mnist":
            models["D"] = MnistDiscriminator(input_shape[0], num_classes)
        else:
            models["D"] = SvhnDiscriminator(num_channels, num_classes)
        if not config["supervised_only"]:
            models["G"] = (MnistGenerator(config["z_dim"], out_features=input_shape[0]) if config["dataset"] == "mnist"
                           else SvhnGenerator(config["z_dim"], num_channels))
        models["D_ema"] = mg.AveragedModel(models["D"], decay=1.0 - EMA_RATE, start="zeros")
        return models
    notebook = preset == "notebook"
    models["D"] = Discriminator(num_channels, config["d_width"], num_classes,
                                drop_rate=0.0 if notebook else DROP_RATE, notebook=notebook,
                                input_noise=config.get("d_noise", 0.0))
    if not config["supervised_only"]:
        models["G"] = Generator(config["z_dim"], config["g_width"], num_channels)
    if config.get("ema_rate", 0.0) > 0:   # --ema-rate: PyTorch's AveragedModel start (a copy of D)
        models["D_ema"] = mg.AveragedModel(models["D"], decay=1.0 - config["ema_rate"], start="copy")
    return models
