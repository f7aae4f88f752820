"""The networks of ``--preset improved``: Improved-GAN's own models (openai/improved-gan,
``mnist_svhn_cifar10/``), rebuilt on minigrad. Every setting below names where it comes from.

MNIST (``train_mnist_feature_matching.py`` and the "older code used for MNIST" of ``nn.py``)::

    MnistDiscriminator                                  MnistGenerator
    x (N, 784) in [0, 1] -> + N(0, 0.3^2) noise         z (N, 100) ~ U(0, 1)
    fc1 1000, ReLU       -> + N(0, 0.5^2)               fc1 500 (no bias) -> batch norm (shift only), softplus
    fc2  500, ReLU       -> + N(0, 0.5^2)               fc2 500 (no bias) -> batch norm (shift only), softplus
    fc3  250, ReLU       -> + N(0, 0.5^2)               out 784, weight-normalised (scale trained), sigmoid
    fc4  250, ReLU       -> + N(0, 0.5^2)
    fc5  250, ReLU       = features; -> + N(0, 0.5^2)
    out   10             = class logits

* Every dense layer of the discriminator is weight-normalised (``nn.DenseLayer``: ``W = theta * scale /
  ||theta||`` per output unit, no epsilon), ``theta ~ N(0, 0.1^2)``, bias 0, scale 1; the hidden layers'
  scales are not trained (``train_scale=False``), the last layer's is (``train_scale=True``). Scales and
  biases are then set by the data-dependent initialisation (:meth:`MnistDiscriminator.init_from_batch`),
  on 500 training images with the noise on, as the script's ``init_param(trainx[:500])``.
* The features that feature matching compares are the output of ``fc5`` (``layers[-3]``), before its
  noise layer.
* The generator's dense layers start from Glorot-uniform weights (Lasagne's default), its batch norm is
  ``nn.batch_norm(..., g=None)``: a shift and no scale, epsilon 1e-6 under the square root; the output
  layer is ``l2normalize``: weight norm with epsilon 1e-6 and a trained scale starting at 1.
* The generator's batch norm always normalises with the batch's statistics while training, as Theano's
  graph did; in evaluation mode (only used here to draw the sample grids) it uses running statistics kept
  with PyTorch's rule.

SVHN (``train_svhn_feature_matching.py`` and ``nn.py``'s ``WeightNormLayer``)::

    SvhnDiscriminator                                   SvhnGenerator
    x (N, 3, 32, 32) in [-1, 1] -> dropout 0.2          z (N, 100) ~ U(0, 1)
    conv 3x3 64, 64, 64 stride 2 (pad 1), LReLU(0.2)    fc 4*4*512 (no bias) -> batch norm (shift), ReLU
    dropout 0.5                                         deconv 5x5 s2 -> 256 x 8 x 8, batch norm (shift), ReLU
    conv 3x3 128, 128, 128 stride 2, LReLU              deconv 5x5 s2 -> 128 x 16 x 16, batch norm (shift), ReLU
    dropout 0.5                                         deconv 5x5 s2 -> 3 x 32 x 32, weight norm, tanh
    conv 3x3 128 'valid' (6x6), LReLU
    two 1x1 convs (NIN) 128, LReLU
    global average pooling = features (N, 128)
    dense 10 = class logits

* Every layer of the discriminator is weight-normalised with a bias (``nn.weight_norm``: weights
  ``N(0, 0.05^2)``, scale 1, not trained, bias 0), the last dense layer with a trained scale; the
  data-dependent initialisation gives every layer unit-variance pre-activations on its batch, the last
  one 0.1 (``init_stdv=0.1``). Feature matching is L1 on the pooled features
  (``mean |mean f(x_unl) - mean f(G(z))|``).
* The generator's weights start ``N(0, 0.05^2)``; its output layer is weight-normalised per output
  channel (dim 1 of the transposed convolution's weight) with a trained scale and an initialisation of
  standard deviation 0.1 (on one batch of noise). Its batch norm has epsilon 1e-6 and no scale.
* The transposed convolutions use padding 2 and output_padding 1 (exact doubling: Theano's 'half' mode).
"""
from __future__ import annotations

import minigrad.functional as F
from minigrad import nn

MNIST_HIDDEN = (1000, 500, 250, 250, 250)
MNIST_INPUT_NOISE, MNIST_HIDDEN_NOISE = 0.3, 0.5
MNIST_THETA_STD = 0.1


def _weight_normed_linear(n_in: int, n_out: int, theta_std: float, train_scale: bool) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    nn.init.normal_(layer.weight, 0.0, theta_std)
    nn.init.zeros_(layer.bias)
    nn.utils.weight_norm(layer)
    nn.init.ones_(layer.weight_g)
    layer.weight_g.requires_grad = train_scale
    return layer


class MnistDiscriminator(nn.Module):
    """(N, 784) images in [0, 1] -> ``(class_logits (N, 10), features (N, 250))``. ``real`` is accepted for
    the interface the training step shares with the seed model and ignored (there is no batch norm)."""

    def __init__(self, in_features: int = 784, num_classes: int = 10, hidden=MNIST_HIDDEN,
                 input_noise: float = MNIST_INPUT_NOISE, hidden_noise: float = MNIST_HIDDEN_NOISE):
        super().__init__()
        self.in_features, self.num_classes, self.hidden = in_features, num_classes, tuple(hidden)
        self.input_noise = nn.GaussianNoise(input_noise)
        sizes = (in_features,) + self.hidden
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            setattr(self, f"fc{i}", _weight_normed_linear(a, b, MNIST_THETA_STD, train_scale=False))
            setattr(self, f"noise{i}", nn.GaussianNoise(hidden_noise))
        self.out = _weight_normed_linear(sizes[-1], num_classes, MNIST_THETA_STD, train_scale=True)

    @property
    def num_features(self) -> int:
        return self.hidden[-1]

    def _layers(self):
        return [(getattr(self, f"fc{i}"), getattr(self, f"noise{i}")) for i in range(1, len(self.hidden) + 1)]

    def forward(self, x, real: bool = True):
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"MnistDiscriminator: x must have shape (N, {self.in_features}), got {x.shape}")
        h = self.input_noise(x)
        features = None
        for fc, noise in self._layers():
            features = F.relu(fc(h))
            h = noise(features)
        return self.out(h), features

    def init_from_batch(self, x) -> None:
        """Data-dependent initialisation, bottom up in one pass over ``x`` with the noise layers active
        (``nn.utils.weight_norm_data_init_`` on every dense layer, the output layer included)."""
        was_training = self.training
        self.train()
        try:
            h = self.input_noise(x)
            for fc, noise in self._layers():
                h = noise(F.relu(nn.utils.weight_norm_data_init_(fc, h)))
            nn.utils.weight_norm_data_init_(self.out, h)
        finally:
            self.train(was_training)

    def extra_repr(self):
        return f"in_features={self.in_features}, hidden={self.hidden}, num_classes={self.num_classes}"


class MnistGenerator(nn.Module):
    """Noise (N, z_dim) ~ U(0, 1) -> images (N, 784) in (0, 1)."""

    def __init__(self, z_dim: int = 100, width: int = 500, out_features: int = 784):
        super().__init__()
        self.z_dim, self.width, self.out_features = z_dim, width, out_features
        self.fc1 = nn.Linear(z_dim, width, bias=False)
        self.bn1 = nn.BatchNorm1d(width, eps=1e-6, scale=False)
        self.fc2 = nn.Linear(width, width, bias=False)
        self.bn2 = nn.BatchNorm1d(width, eps=1e-6, scale=False)
        self.out = nn.Linear(width, out_features)
        for layer in (self.fc1, self.fc2, self.out):
            nn.init.xavier_uniform_(layer.weight)
        nn.init.zeros_(self.out.bias)
        nn.utils.weight_norm(self.out, eps=1e-6)
        nn.init.ones_(self.out.weight_g)

    def forward(self, z):
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"MnistGenerator: z must have shape (N, {self.z_dim}), got {z.shape}")
        h = F.softplus(self.bn1(self.fc1(z)))
        h = F.softplus(self.bn2(self.fc2(h)))
        return F.sigmoid(self.out(h))

    def extra_repr(self):
        return f"z_dim={self.z_dim}, width={self.width}, out_features={self.out_features}"


# -------------------------------------------------------------------------------------------------- SVHN
SVHN_WEIGHT_STD = 0.05


def _weight_normed(layer, train_scale: bool, dim: int = 0):
    nn.init.normal_(layer.weight, 0.0, SVHN_WEIGHT_STD)
    nn.init.zeros_(layer.bias)
    nn.utils.weight_norm(layer, dim=dim)
    nn.init.ones_(layer.weight_g)
    layer.weight_g.requires_grad = train_scale
    return layer


class SvhnDiscriminator(nn.Module):
    """(N, 3, 32, 32) images in [-1, 1] -> ``(class_logits (N, 10), features (N, 128))``."""

    CONVS = ((3, 64, 1, 1), (64, 64, 1, 1), (64, 64, 2, 1), (64, 128, 1, 1), (128, 128, 1, 1),
             (128, 128, 2, 1), (128, 128, 1, 0))      # (in, out, stride, padding), all 3x3

    def __init__(self, in_channels: int = 3, num_classes: int = 10, input_drop: float = 0.2,
                 drop: float = 0.5):
        super().__init__()
        self.in_channels, self.num_classes, self.input_drop, self.drop = in_channels, num_classes, input_drop, drop
        for i, (a, b, stride, pad) in enumerate(self.CONVS, start=1):
            a = in_channels if i == 1 else a
            setattr(self, f"conv{i}", _weight_normed(nn.Conv2d(a, b, 3, stride=stride, padding=pad), False))
        self.nin1 = _weight_normed(nn.Conv2d(128, 128, 1), False)
        self.nin2 = _weight_normed(nn.Conv2d(128, 128, 1), False)
        self.out = _weight_normed(nn.Linear(128, num_classes), True)

    @property
    def num_features(self) -> int:
        return 128

    def _trunk(self, x, layer):
        """The network up to the pooled features; ``layer(module, h)`` applies one weight-normed layer
        (a plain call, or the data-dependent initialisation)."""
        drop = lambda h, p: F.dropout(h, p, training=self.training)  # noqa: E731
        h = drop(x, self.input_drop)
        for i in range(1, len(self.CONVS) + 1):
            h = F.leaky_relu(layer(getattr(self, f"conv{i}"), h), 0.2)
            if i in (3, 6):
                h = drop(h, self.drop)
        h = F.leaky_relu(layer(self.nin1, h), 0.2)
        h = F.leaky_relu(layer(self.nin2, h), 0.2)
        return h.mean(dim=(2, 3))

    def forward(self, x, real: bool = True):
        if x.ndim != 4 or x.shape[1:] != (self.in_channels, 32, 32):
            raise ValueError(f"SvhnDiscriminator: x must have shape (N, {self.in_channels}, 32, 32), got {x.shape}")
        features = self._trunk(x, lambda m, h: m(h))
        return self.out(features), features

    def init_from_batch(self, x) -> None:
        """Data-dependent initialisation in one pass over ``x`` (dropout on, as the recipe's init pass)."""
        was_training = self.training
        self.train()
        try:
            features = self._trunk(x, lambda m, h: nn.utils.weight_norm_data_init_(m, h))
            nn.utils.weight_norm_data_init_(self.out, features, init_scale=0.1)
        finally:
            self.train(was_training)


class SvhnGenerator(nn.Module):
    """Noise (N, z_dim) ~ U(0, 1) -> images (N, 3, 32, 32) in [-1, 1]."""

    def __init__(self, z_dim: int = 100, out_channels: int = 3):
        super().__init__()
        self.z_dim = z_dim
        self.fc = nn.Linear(z_dim, 4 * 4 * 512, bias=False)
        self.bn0 = nn.BatchNorm1d(4 * 4 * 512, eps=1e-6, scale=False)
        self.deconv1 = nn.ConvTranspose2d(512, 256, 5, stride=2, padding=2, output_padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(256, eps=1e-6, scale=False)
        self.deconv2 = nn.ConvTranspose2d(256, 128, 5, stride=2, padding=2, output_padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(128, eps=1e-6, scale=False)
        self.deconv3 = nn.ConvTranspose2d(128, out_channels, 5, stride=2, padding=2, output_padding=1)
        for layer in (self.fc, self.deconv1, self.deconv2):
            nn.init.normal_(layer.weight, 0.0, SVHN_WEIGHT_STD)
        _weight_normed(self.deconv3, True, dim=1)

    def _body(self, z):
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"SvhnGenerator: z must have shape (N, {self.z_dim}), got {z.shape}")
        h = F.relu(self.bn0(self.fc(z))).reshape(z.shape[0], 512, 4, 4)
        h = F.relu(self.bn1(self.deconv1(h)))
        return F.relu(self.bn2(self.deconv2(h)))

    def forward(self, z):
        return F.tanh(self.deconv3(self._body(z)))

    def init_from_noise(self, z) -> None:
        """The recipe's data-dependent initialisation of the output layer (std 0.1), on one noise batch."""
        nn.utils.weight_norm_data_init_(self.deconv3, self._body(z), init_scale=0.1)
