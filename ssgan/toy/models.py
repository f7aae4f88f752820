"""The toy networks: the image model's discriminator and generator shrunk to points in the plane.

ToyDiscriminator (the classifier; the supervised-only baseline is the same network)::

    x (N, 2) -> + N(0, 0.05^2) noise
    wide   Linear 2 -> 128, ReLU          = the features that feature matching compares
           + N(0, 0.3^2) noise
    narrow Linear 128 -> 2K, ReLU
           + N(0, 0.3^2) noise
    out    Linear 2K -> K                 = the K class logits; their logsumexp is the real/fake logit

ToyGenerator::

    z (N, 8) ~ U(0, 1) -> Linear 8 -> 64, LeakyReLU(0.2) -> Linear 64 -> 64, LeakyReLU(0.2) -> Linear 64 -> 2

Why these choices (each was tried against its alternatives on two moons, several seeds):

* Gaussian noise on the input and on the hidden layers, as Improved-GAN's MNIST discriminator has (there
  0.3 and 0.5 on pixels in [0, 1]): it smooths the logits, so one labeled point speaks for its
  neighbourhood. The noise is on in training only. On the input it is kept small, 0.05 against gaps of
  about 0.5 between the classes: with 0.1 the labels spread along the moons more slowly, and one seed of
  five (3) was still at 80% after the default steps where 0.05 reaches 95%.
* A narrow layer of 2K units before the class logits. With a 128-wide last hidden layer the class logits
  and the real/fake logit can be built from different units, and the class boundary stays where the few
  labels put it. Through a bottleneck of two units per class, the units that carve out where the data
  are (needed to call the generator's points fake) are also the ones that separate the classes, so the
  boundary follows the data's shape.
* Feature matching on the wide first layer, not on the bottleneck: matching the mean of only 2K units is
  so easy that the generator collapses onto a line (which a 2K-dimensional mean cannot tell apart from a
  cloud); 128 features keep its samples spread over the plane and into the gaps between the classes.
* ReLU in the discriminator (leaky ReLU, tanh and softplus did worse); leaky ReLU in the generator, as in
  DCGAN's discriminator, so that no generator unit is dead for all z. No weight normalization (tried with
  the MNIST model's noise levels 0.3 and 0.5: worse) and no batch norm: at this size they did not help,
  and leaving them out keeps the network short.
* Noise 0.5 on the hidden layers (the MNIST model's level) was worse than 0.3; a 256-wide first layer was
  no better than 128.
"""
from __future__ import annotations

import minigrad.functional as F
from minigrad import Tensor, nn

WIDE = 128
INPUT_NOISE, HIDDEN_NOISE = 0.05, 0.3
Z_DIM, G_HIDDEN, G_SLOPE = 8, 64, 0.2


class ToyDiscriminator(nn.Module):
    """(N, 2) points -> ``(class_logits (N, K), features (N, wide))``, the interface of the image model's
    discriminators, so that ``ssgan.losses`` takes its outputs as they are."""

    def __init__(self, num_classes: int, wide: int = WIDE, narrow: int | None = None,
                 input_noise: float = INPUT_NOISE, hidden_noise: float = HIDDEN_NOISE):
        super().__init__()
        self.num_classes = num_classes
        narrow = narrow or 2 * num_classes
        self.input_noise = nn.GaussianNoise(input_noise)
        self.wide = nn.Linear(2, wide)
        self.wide_noise = nn.GaussianNoise(hidden_noise)
        self.narrow = nn.Linear(wide, narrow)
        self.narrow_noise = nn.GaussianNoise(hidden_noise)
        self.out = nn.Linear(narrow, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """The wide layer's output alone: all that feature matching needs, so the generator's step skips
        the layers above it (and their noise draws, the most expensive part of a step here)."""
        if x.ndim != 2 or x.shape[1] != 2:
            raise ValueError(f"ToyDiscriminator: x must have shape (N, 2), got {x.shape}")
        return F.relu(self.wide(self.input_noise(x)))

    def forward(self, x: Tensor):
        features = self.features(x)
        h = F.relu(self.narrow(self.wide_noise(features)))
        return self.out(self.narrow_noise(h)), features


class ToyGenerator(nn.Module):
    """(N, z_dim) noise in [0, 1) -> (N, 2) points."""

    def __init__(self, z_dim: int = Z_DIM, hidden: int = G_HIDDEN):
        super().__init__()
        self.z_dim = z_dim
        self.fc1 = nn.Linear(z_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, 2)

    def forward(self, z: Tensor) -> Tensor:
        h = F.leaky_relu(self.fc1(z), G_SLOPE)
        return self.out(F.leaky_relu(self.fc2(h), G_SLOPE))
